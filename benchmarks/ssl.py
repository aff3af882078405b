"""Benchmark: self-supervised pretraining (notebook 10), several seeds.

Runs notebook 10 through papermill once per seed (offline, on a local CIFAR-10 copy, `cpu` profile by default) and
writes one table to outputs/benchmarks/ssl.{json,md}: the target test accuracy of the linear probe and LP-FT from
random, rotation, SimCLR and supervised (03) weights at each label count; the paired differences SimCLR minus random
and minus supervised; the augmentation ablation; Keras against PyTorch; the kNN monitor at the end of pretraining.
Each row is the mean over seeds with their spread; the note gives the mean of the seeds' own 95% half-widths.

    python -m benchmarks.ssl [--seeds 3] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys

from helpers.reporting import write_benchmark

from .common import SeedTable, benchmark_parser, data_name, run_per_seed


def half(low: float | None, high: float | None) -> float | None:
    """Half the width of a 95% interval, or None when the run recorded none."""
    return None if low is None or high is None else (float(high) - float(low)) / 2


def collect(metrics: list[dict]) -> SeedTable:
    """Every number the table reports, per seed, with its within-seed half-width."""
    table = SeedTable()
    add = table.add
    for m in metrics:
        for r in m["transfer"]:
            add(f"{r['mode']}, {r['labels']} labels/class", r["start"], r["test_acc"], half(r["ci_low"], r["ci_high"]))
        for r in m["comparisons"]:
            add(f"paired, {r['labels']} labels/class", r["comparison"], r["difference"],
                half(r["ci_low"], r["ci_high"]))
        for r in m.get("ablation", []):
            add("ablation (short schedule), probe at 50", r["views"], r["probe_50"], half(r["ci_low"], r["ci_high"]))
            add("ablation (short schedule), final NT-Xent", r["views"], r["final_loss"])
            add("ablation (short schedule), paired minus full", r["views"], r.get("minus_full"),
                half(r.get("diff_low"), r.get("diff_high")))
        if "keras" in m:
            k = m["keras"]
            add("keras (short schedule), probe at 50", "Keras SimCLR", k["probe_50"], half(k["ci_low"], k["ci_high"]))
            add("keras (short schedule), probe at 50", "Keras minus PyTorch", k.get("minus_pytorch"),
                half(k.get("diff_low"), k.get("diff_high")))
        for method, history in m["histories"].items():
            add("kNN monitor (validation, 50 labels/class)", f"{method}, step 0", history[0]["knn_acc"])
            add("kNN monitor (validation, 50 labels/class)", f"{method}, end", history[-1]["knn_acc"])
    return table


def main(argv: list[str] | None = None) -> int:
    """Run notebook 10 per seed and write the table; exit 1 if a run failed."""
    args = benchmark_parser(__doc__).parse_args(argv)
    results, records = run_per_seed("ssl", "10_self_supervised_pretraining", args)
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    identity = records[0]["data"]
    walls = [m["wall_seconds"] for m in metrics]
    write_benchmark("ssl", collect(metrics).rows(), SeedTable.COLUMNS,
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}; notebook 10 {min(walls):.0f} to "
                          f"{max(walls):.0f} s per seed (pretraining included: each seed pretrains its own models). "
                          "Accuracy rows: target test accuracy (5 classes, 5,000 images); paired rows: the first "
                          "model minus the second on the same test images; kNN monitor: the target's validation "
                          "images, never the test set.")
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
