"""Benchmark: unsupervised domain adaptation (notebook 07) on CIFAR-10-C-style corruptions, 3 seeds.

Runs notebook 07 through papermill once per seed (`cpu` profile, `METHOD="all"`, offline on a local CIFAR-10 copy)
and reads its records: no adaptation, AdaBN and TENT on each of the eight corruptions at severity 5 (mean over
them per seed), and DANN and self-training on the notebook's chosen corruption, each with its wall time. The
seed changes the corruption noise, the image samples and the training. Targets: AdaBN >= no adaptation + 8
points (mean over the corruptions), TENT >= AdaBN, the notebook <= 6 minutes. Writes
outputs/benchmarks/adaptation.{json,md}.

    python -m benchmarks.adaptation [--seeds 3] [--corruption contrast] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys

import numpy as np

from helpers.adaptation import CORRUPTIONS
from helpers.reporting import write_benchmark
from helpers.sweep import run_sweep

from .common import benchmark_parser, data_name, finished_records, runs_root, spread, use_offline_jpeg_copy

TARGETS = {"adabn_gain": 0.08, "notebook_seconds": 360}


def main(argv: list[str] | None = None) -> int:
    """Run notebook 07 per seed, summarise every method over seeds, write the report; exit 1 if a run failed."""
    parser = benchmark_parser(__doc__)
    parser.add_argument("--corruption", default="contrast", choices=CORRUPTIONS)
    args = parser.parse_args(argv)
    use_offline_jpeg_copy(args.source)
    root = runs_root("adaptation", args.fresh)
    results = run_sweep("07_domain_adaptation", {"PROFILE": [args.profile], "CORRUPTION": [args.corruption],
                                                 "METHOD": ["all"], "SEED": list(range(args.seeds))}, root / "runs")
    records = finished_records(results, root / "runs")
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    rows = []
    for method in ("none", "adabn", "tent"):
        means = spread([m["mean_over_corruptions"][method] for m in metrics])
        rows.append({"method": method, "where": f"mean of {len(CORRUPTIONS)} corruptions, severity 5",
                     "accuracy": round(means["mean"], 4), "seed_std": round(means["std"], 4),
                     "seconds": round(float(np.mean([m["seconds"].get(method, np.nan) for m in metrics])), 1)})
    for method in ("dann", "self_training"):
        values = spread([m["on_corruption"][method] for m in metrics])
        none = spread([m["on_corruption"]["none"] for m in metrics])
        rows.append({"method": method, "where": f"{args.corruption}, severity 5 (no adaptation {none['mean']:.3f})",
                     "accuracy": round(values["mean"], 4), "seed_std": round(values["std"], 4),
                     "seconds": round(float(np.mean([m["seconds"][method] for m in metrics])), 1)})
    gain = rows[1]["accuracy"] - rows[0]["accuracy"]
    notebook_seconds = float(np.mean([m["wall_seconds"] for m in metrics]))
    met = {"AdaBN >= none + 0.08": gain >= TARGETS["adabn_gain"],
           "TENT >= AdaBN": rows[2]["accuracy"] >= rows[1]["accuracy"],
           "notebook <= 360 s": notebook_seconds <= TARGETS["notebook_seconds"]}
    identity = records[0]["data"]
    write_benchmark("adaptation", rows, ["method", "where", "accuracy", "seed_std", "seconds"],
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}; notebook 07 wall time "
                          f"{notebook_seconds:.0f} s (mean). AdaBN minus none: {gain:+.4f}. Targets: "
                          + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in met.items()))
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
