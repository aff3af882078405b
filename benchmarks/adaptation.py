"""Benchmark: unsupervised domain adaptation (notebook 07) on CIFAR-10-C-style corruptions, 3 seeds.

Runs notebook 07 through papermill once per seed (`cpu` profile, `METHOD="all"`, offline on a local CIFAR-10 copy)
and reads its records: no adaptation, norm (TENT's own baseline: per-batch statistics, no gradient step), AdaBN and
TENT on each of the eight corruptions at severity 5 (mean over them per seed), and DANN, its lambda = 0 control and
self-training on the notebook's chosen corruption, each with its wall time. The seed changes the corruption noise,
the image samples and the training. Targets: AdaBN >= no adaptation + 8 points (mean over the corruptions),
TENT >= AdaBN, the notebook <= 6 minutes. Writes outputs/benchmarks/adaptation.{json,md}.

`--source-smoothing 0` asks whether label smoothing in the source model holds TENT back: it trains notebook 03's
model with that LABEL_SMOOTHING in a data root of its own (the course's checkpoint is left alone), then runs none,
norm, AdaBN and TENT on it (the rest of the notebook as usual), and writes adaptation-smoothing-<value>.{json,md}.

    python -m benchmarks.adaptation [--seeds 3] [--corruption contrast] [--profile cpu] [--source PATH] [--fresh]
                                    [--source-smoothing 0]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from helpers.adaptation import CORRUPTIONS
from helpers.paths import DATA_ENV
from helpers.reporting import write_benchmark
from helpers.runner import NOTEBOOKS_DIR
from helpers.runs import run_one
from helpers.sweep import read_metrics, run_sweep

from .common import benchmark_parser, data_name, finished_records, runs_root, spread, use_offline_jpeg_copy

TARGETS = {"adabn_gain": 0.08, "notebook_seconds": 360}
ONLINE = ("none", "norm", "adabn", "tent")  # run on all eight corruptions
TRAINED = ("dann", "dann_lambda0", "self_training")  # run on the chosen corruption


def pretrain_with_smoothing(root: Path, profile: str, smoothing: float) -> dict:
    """Train notebook 03's source model with another label smoothing, in a data root of its own; return its record."""
    os.environ[DATA_ENV] = str((root / "data").resolve())  # the kernels inherit it: every notebook reads this model
    result = run_one(NOTEBOOKS_DIR / "03_pretrain_source_model.ipynb",
                     {"PROFILE": profile, "LABEL_SMOOTHING": smoothing}, root / "pretrain")
    record = read_metrics(result)
    if record is None:
        raise SystemExit(f"Source pretraining failed: {result['status']} (see {result['executed_notebook']})")
    return record


def main(argv: list[str] | None = None) -> int:
    """Run notebook 07 per seed, summarise every method over seeds, write the report; exit 1 if a run failed."""
    parser = benchmark_parser(__doc__)
    parser.add_argument("--corruption", default="contrast", choices=CORRUPTIONS)
    parser.add_argument("--source-smoothing", type=float, default=None,
                        help="train the source model with this LABEL_SMOOTHING first (default: the course model)")
    args = parser.parse_args(argv)
    use_offline_jpeg_copy(args.source)
    smoothing = args.source_smoothing
    name = "adaptation" if smoothing is None else f"adaptation-smoothing-{smoothing:g}"
    root = runs_root(name, args.fresh)
    source_note = "the course's source model"
    if smoothing is not None:
        source = pretrain_with_smoothing(root, args.profile, smoothing)
        source_note = (f"a source model trained by notebook 03 with LABEL_SMOOTHING = {smoothing:g} (source test "
                       f"accuracy {source['metrics']['source_test_acc']:.4f})")
    method = "all" if smoothing is None else "tent"  # the smoothing question needs the online methods only
    results = run_sweep("07_domain_adaptation", {"PROFILE": [args.profile], "CORRUPTION": [args.corruption],
                                                 "METHOD": [method], "SEED": list(range(args.seeds))}, root / "runs")
    records = finished_records(results, root / "runs")
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    rows = []
    for method_name in ONLINE:
        means = spread([m["mean_over_corruptions"][method_name] for m in metrics])
        rows.append({"method": method_name, "where": f"mean of {len(CORRUPTIONS)} corruptions, severity 5",
                     "accuracy": round(means["mean"], 4), "seed_std": round(means["std"], 4),
                     "seconds": (round(float(np.mean([m["seconds"][method_name] for m in metrics])), 1)
                                 if all(method_name in m["seconds"] for m in metrics) else "not timed")})
    unadapted = spread([m["on_corruption"]["none"] for m in metrics])["mean"]
    where = f"{args.corruption}, severity 5 (no adaptation {unadapted:.3f})"
    for method_name in (m for m in TRAINED if all(m in r["on_corruption"] for r in metrics)):
        values = spread([m["on_corruption"][method_name] for m in metrics])
        rows.append({"method": method_name, "where": where,
                     "accuracy": round(values["mean"], 4), "seed_std": round(values["std"], 4),
                     "seconds": round(float(np.mean([m["seconds"][method_name] for m in metrics])), 1)})
    by_method = {row["method"]: row["accuracy"] for row in rows}
    gain = by_method["adabn"] - by_method["none"]
    notebook_seconds = float(np.mean([m["wall_seconds"] for m in metrics]))
    met = {"AdaBN >= none + 0.08": gain >= TARGETS["adabn_gain"],
           "TENT >= AdaBN": by_method["tent"] >= by_method["adabn"],
           "notebook <= 360 s": notebook_seconds <= TARGETS["notebook_seconds"]}
    identity = records[0]["data"]
    write_benchmark(name, rows, ["method", "where", "accuracy", "seed_std", "seconds"],
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}, {source_note} "
                          f"({records[0]['weights'].get('sha256', '?')[:12]}); notebook 07 wall time "
                          f"{notebook_seconds:.0f} s (mean). AdaBN minus none: {gain:+.4f}; TENT minus norm: "
                          f"{by_method['tent'] - by_method['norm']:+.4f}. Targets: "
                          + "; ".join(f"{label}: {'met' if ok else 'NOT met'}" for label, ok in met.items()))
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
