"""Benchmark: few-shot, multi-task and layer transferability (notebook 09), several seeds, the full block range.

Runs notebook 09 through papermill once per seed (offline, on a local CIFAR-10 copy), each with every block
count n = 1..4 (the `cpu` profile's own range), base B and every AnB/BnB network trained the same number of steps
(the profile's `layer_steps`), and writes five tables: few-shot accuracy per K and method (mean over seeds of the
per-episode means), the classifiers' paired per-episode differences, multi-task against sequential transfer, the
task-weight sweep (source and target accuracy per w), and the AnB/BnB grid with the base B, plus the
Figure-2-style plot (base B with a 95% noise band), to outputs/benchmarks/layers.{json,md,png}.

    python -m benchmarks.layers [--seeds 3] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from helpers.paths import outputs_root
from helpers.reporting import write_benchmark
from helpers.transferability import VARIANTS, accuracy_noise, widened

from .common import benchmark_parser, data_name, run_per_seed, spread

BLOCKS = [1, 2, 3, 4]


def summary_rows(table: str, cells: dict[tuple, list[float]], notes: dict[tuple, str] | None = None) -> list[dict]:
    """One row per (variant, n) cell: the mean over seeds and their spread, with an optional note."""
    rows = []
    for (variant, n), values in cells.items():
        summary = spread(values)
        rows.append({"table": table, "variant": variant, "n": n, "seeds": summary["n"],
                     "test_acc": round(summary["mean"], 4), "seed_std": round(summary["std"], 4),
                     **({"note": notes[variant, n]} if notes and (variant, n) in notes else {})})
    return rows


def layer_rows(metrics: list[dict]) -> list[dict]:
    """Mean and seed spread of every (variant, n) cell, base B as n = 0."""
    cells: dict[tuple, list[float]] = {}
    for m in metrics:
        for row in m["layers"]:
            cells.setdefault((row["variant"], row["n"]), []).append(row["test_acc"])
    return summary_rows("layers", dict(sorted(cells.items(), key=lambda item: (item[0][1], item[0][0]))))


def few_shot_rows(metrics: list[dict]) -> list[dict]:
    """Few-shot accuracy per (method, K), and each pair's per-episode difference, both averaged over seeds."""
    cells, halves, gaps, gap_halves = {}, {}, {}, {}
    for m in metrics:
        for r in m["few_shot"]:
            cells.setdefault((r["method"], f"K={r['K']}"), []).append(r["accuracy"])
            halves.setdefault((r["method"], f"K={r['K']}"), []).append(r["ci95"])
        for r in m.get("few_shot_paired", []):  # runs recorded before the paired table have none
            gaps.setdefault((r["difference"], f"K={r['K']}"), []).append(r["mean"])
            gap_halves.setdefault((r["difference"], f"K={r['K']}"), []).append((r["high"] - r["low"]) / 2)
    order = lambda item: (int(item[0][1][2:]), item[0][0])  # noqa: E731 - by K, then by name
    note = lambda name: lambda h: {key: f"{name} +-{np.mean(v):.3f}" for key, v in h.items()}  # noqa: E731
    return (summary_rows("few-shot (5-way)", dict(sorted(cells.items(), key=order)), note("episode CI")(halves))
            + summary_rows("few-shot paired (a - b)", dict(sorted(gaps.items(), key=order)),
                           note("paired episode CI")(gap_halves)))


def multi_task_rows(metrics: list[dict]) -> list[dict]:
    """Multi-task against sequential transfer, then the task-weight sweep, source and target accuracy."""
    cells: dict[tuple, list[float]] = {}
    for m in metrics:
        for r in m["multi_task"]:
            if r["training"] in ("multi-task", "sequential"):
                for task in ("source_acc", "target_acc"):
                    cells.setdefault((r["training"], task), []).append(r[task])
    sweep: dict[tuple, list[float]] = {}
    for m in metrics:
        for r in m.get("task_weight_sweep", []):
            for task in ("source_acc", "target_acc"):
                sweep.setdefault((f"w={r['task_weight']}", task), []).append(r[task])
    return summary_rows("multi-task", cells) + summary_rows("task weight", dict(sorted(sweep.items())))


def plot(rows: list[dict], path: Path, n_test: int | None = None) -> Path:
    """Draw accuracy against n per variant, base B as a line with its 95% band (the paper's Figure 2 layout).

    The band is the wider of 1.96 seed standard deviations of base B and, given `n_test`, one accuracy's
    test-sampling noise; the y-axis is at least 15 points tall, so a one-point gap does not fill it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    base = next(r for r in rows if r["variant"] == "base B")
    band = max(1.96 * base["seed_std"], accuracy_noise(base["test_acc"], n_test) if n_test else 0.0)
    for variant, style in zip(VARIANTS, ("s-", "s--", "o-", "o--"), strict=True):
        points = sorted((r["n"], r["test_acc"], r["seed_std"]) for r in rows if r["variant"] == variant)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], fmt=style,
                    capsize=3, label=variant)
    ax.axhline(base["test_acc"], color="grey", linestyle=":", label="base B")
    ax.axhspan(base["test_acc"] - band, base["test_acc"] + band, color="grey", alpha=0.2,
               label="base B ± noise (95%)")
    ax.set(xlabel="n (blocks copied)", ylabel="target test accuracy", xticks=BLOCKS)
    ax.set_ylim(*widened(*ax.get_ylim()))
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run notebook 09 per seed, write the tables and the plot; exit 1 if a run failed."""
    args = benchmark_parser(__doc__).parse_args(argv)
    results, records = run_per_seed("layers", "09_few_shot_multi_task", args,
                                    lambda seed: {"BLOCKS": [BLOCKS], "SEEDS": [[seed]]})
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    if any("layer_steps" not in m for m in metrics):  # a resumed run from before equal budgets: not comparable
        runs = outputs_root() / "benchmarks" / "layers" / "runs"
        print(f"Runs under {runs} were recorded before base B and the AnB/BnB networks had equal budgets; rerun with "
              "--fresh.", file=sys.stderr)
        return 1
    grid = layer_rows(metrics)
    identity = records[0]["data"]
    n_test = metrics[0].get("base_b_noise", {}).get("test_images")  # runs recorded before the band have none
    figure = plot(grid, outputs_root() / "benchmarks" / "layers.png", n_test=n_test)
    wall = float(np.mean([m["wall_seconds"] for m in metrics]))
    steps = sorted({m.get("layer_steps") for m in metrics}, key=str)
    write_benchmark("layers", few_shot_rows(metrics) + multi_task_rows(metrics) + grid,
                    ["table", "variant", "n", "seeds", "test_acc", "seed_std", "note"],
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}, blocks n = {BLOCKS}, {steps} steps for "
                          f"base B and for every AnB/BnB network; notebook 09 {wall:.0f} s per seed (mean); figure "
                          f"{figure.name}. Few-shot: 5-way episodes of the target test images on the source model's "
                          "frozen features; paired rows are the mean over seeds of each seed's per-episode "
                          "difference (a - b), the note the mean of the seeds' paired 95% half-widths. Task weight: "
                          "test_acc is the source or target accuracy at that w, as n says.")
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
