"""Benchmark: few-shot, multi-task and layer transferability (notebook 09), several seeds, the full block range.

Runs notebook 09 through papermill once per seed (offline, on a local CIFAR-10 copy), each with every block
count n = 1..4 (the `cpu` profile's notebook stops at 3), and writes three tables: few-shot accuracy per K and
method (mean over seeds of the per-episode means), multi-task against sequential transfer (source and target
accuracy), and the AnB/BnB grid with the base B, plus the Figure-2-style plot, to
outputs/benchmarks/layers.{json,md,png}.

    python -m benchmarks.layers [--seeds 3] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from helpers.paths import outputs_root
from helpers.reporting import write_benchmark
from helpers.sweep import run_sweep
from helpers.transferability import VARIANTS

from .common import benchmark_parser, data_name, finished_records, runs_root, spread, use_offline_jpeg_copy

BLOCKS = [1, 2, 3, 4]


def layer_rows(metrics: list[dict]) -> list[dict]:
    """Mean and seed spread of every (variant, n) cell, base B as n = 0."""
    cells: dict[tuple[str, int], list[float]] = {}
    for m in metrics:
        for row in m["layers"]:
            cells.setdefault((row["variant"], row["n"]), []).append(row["test_acc"])
    rows = []
    for (variant, n), values in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
        summary = spread(values)
        rows.append({"table": "layers", "variant": variant, "n": n, "seeds": summary["n"],
                     "test_acc": round(summary["mean"], 4), "seed_std": round(summary["std"], 4)})
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    """Draw accuracy against n per variant, the base B as a line (the paper's Figure 2 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    base = next(r["test_acc"] for r in rows if r["variant"] == "base B")
    for variant, style in zip(VARIANTS, ("s-", "s--", "o-", "o--"), strict=True):
        points = sorted((r["n"], r["test_acc"], r["seed_std"]) for r in rows if r["variant"] == variant)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], fmt=style,
                    capsize=3, label=variant)
    ax.axhline(base, color="grey", linestyle=":", label="base B")
    ax.set(xlabel="n (blocks copied)", ylabel="target test accuracy", xticks=BLOCKS)
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run notebook 09 per seed, write the three tables and the plot; exit 1 if a run failed."""
    args = benchmark_parser(__doc__).parse_args(argv)
    use_offline_jpeg_copy(args.source)
    root = runs_root("layers", args.fresh)
    results = []
    for seed in range(args.seeds):  # one run per seed, so a finished seed is reused when the benchmark resumes
        results += run_sweep("09_few_shot_multi_task", {"PROFILE": [args.profile], "BLOCKS": [BLOCKS],
                                                        "SEEDS": [[seed]], "SEED": [seed]}, root / "runs")
    records = finished_records(results, root / "runs")
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    rows = []
    for k, method in sorted({(r["K"], r["method"]) for m in metrics for r in m["few_shot"]}):
        cells = [r for m in metrics for r in m["few_shot"] if (r["K"], r["method"]) == (k, method)]
        values, half = spread([r["accuracy"] for r in cells]), float(np.mean([r["ci95"] for r in cells]))
        rows.append({"table": "few-shot (5-way)", "variant": method, "n": f"K={k}", "seeds": values["n"],
                     "test_acc": round(values["mean"], 4), "seed_std": round(values["std"], 4),
                     "note": f"episode CI +-{half:.3f}"})
    for training in ("multi-task", "sequential"):
        for task in ("source_acc", "target_acc"):
            values = spread([next(r[task] for r in m["multi_task"] if r["training"] == training) for m in metrics])
            rows.append({"table": "multi-task", "variant": training, "n": task, "seeds": values["n"],
                         "test_acc": round(values["mean"], 4), "seed_std": round(values["std"], 4)})
    grid = layer_rows(metrics)
    figure = plot(grid, outputs_root() / "benchmarks" / "layers.png")
    identity = records[0]["data"]
    wall = float(np.mean([m["wall_seconds"] for m in metrics]))
    write_benchmark("layers", rows + grid, ["table", "variant", "n", "seeds", "test_acc", "seed_std", "note"],
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}, blocks n = {BLOCKS}; notebook 09 "
                          f"{wall:.0f} s per seed (mean); figure {figure.name}. Few-shot: 5-way episodes of the "
                          "target test images on the source model's frozen features.")
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
