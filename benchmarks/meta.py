"""Benchmark: meta-learning and zero-shot transfer (notebook 11), several seeds.

Runs notebook 11 through papermill once per seed (offline, on a local CIFAR-10 copy, `cpu` profile by default) and
writes one table to outputs/benchmarks/meta.{json,md}: the sinusoid test error of MAML, FOMAML, Reptile and the
pretrained baseline at K = 5 and 10 after 1 and 10 steps; the image episodes' accuracy per method and the paired
differences; DAP and ESZSL zero-shot accuracy, and the generalised setting. Each row is the mean over seeds with
their spread; the note gives the mean of the seeds' own 95% half-widths. The figure (outputs/benchmarks/meta.png)
draws the sinusoid error against gradient steps and the image methods' accuracy, per seed.

    python -m benchmarks.meta [--seeds 3] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from helpers.paths import outputs_root
from helpers.reporting import write_benchmark

from .common import SeedTable, benchmark_parser, data_name, run_per_seed


def collect(metrics: list[dict]) -> SeedTable:
    """Every number the table reports, per seed, with its within-seed half-width."""
    table = SeedTable()
    add = table.add
    for m in metrics:
        for r in m["sinusoid"]:
            steps = sorted(int(key.split()[1]) for key in r if key.startswith("MSE,"))
            for s in steps[1:]:
                add(f"sinusoid MSE, K={r['K']}", f"{r['method']}, {s} step(s)", r[f"MSE, {s} steps"], r[f"ci95 ({s})"])
        for r in m["sinusoid_paired"]:
            add(f"sinusoid paired, K={r['K']}", f"MAML minus {r['MAML minus']}, {r['steps']} step(s)",
                r["MSE difference"], r["ci95"])
        for r in m["episodes"]:
            add("episodes (5-way 5-shot)", r["method"], r["accuracy"], r["ci95"])
        for r in m["episodes_paired"]:
            add("episodes paired", r["pair"], r["difference"], r["ci95"])
        zero = m["zero_shot"]
        add("zero-shot (5 target classes)", "DAP", zero["accuracy"], (zero["ci_high"] - zero["ci_low"]) / 2)
        add("zero-shot (5 target classes)", "ESZSL", m["eszsl"]["accuracy"],
            (m["eszsl"]["ci_high"] - m["eszsl"]["ci_low"]) / 2)
        add("zero-shot (5 target classes)", "ESZSL minus DAP", m["eszsl"]["minus_dap"],
            (m["eszsl"]["minus_dap_high"] - m["eszsl"]["minus_dap_low"]) / 2)
        for name, accuracy in zero["per_class"].items():
            add("zero-shot per class (DAP)", name, accuracy)
        for key, value in m["generalised"].items():
            add("generalised (10 classes, DAP)", key, value)
    return table


def plot(metrics: list[dict], path: Path) -> Path:
    """Sinusoid error after 0, 1 and 10 steps (K = 10) and the image methods' accuracy, one point per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    methods = [r["method"] for r in metrics[0]["sinusoid"] if r["K"] == 10]
    for method in methods:
        for seed, m in enumerate(metrics):
            row = next(r for r in m["sinusoid"] if r["K"] == 10 and r["method"] == method)
            steps = sorted(int(key.split()[1]) for key in row if key.startswith("MSE,"))
            left.plot(steps, [row[f"MSE, {s} steps"] for s in steps], "o-", color=f"C{methods.index(method)}",
                      alpha=0.8, label=method if seed == 0 else None)
    left.set(xlabel="gradient steps on K = 10 points", ylabel="test MSE", yscale="log", title="Sinusoids")
    left.legend(fontsize=8)
    names = [r["method"] for r in metrics[0]["episodes"]]
    for seed, m in enumerate(metrics):
        for i, r in enumerate(m["episodes"]):
            right.errorbar(i + 0.1 * (seed - 1), r["accuracy"], yerr=r["ci95"], fmt="o", color=f"C{i}", capsize=3)
    right.axhline(0.2, color="grey", linestyle=":", label="chance")
    right.set(xticks=range(len(names)), ylabel="query accuracy", title="5-way 5-shot target episodes (per seed)")
    right.set_xticklabels([textwrap.fill(name, 12) for name in names], fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run notebook 11 per seed, write the table and the figure; exit 1 if a run failed."""
    args = benchmark_parser(__doc__).parse_args(argv)
    results, records = run_per_seed("meta", "11_meta_learning_zero_shot", args)
    if not records:
        return 1
    metrics = [record["metrics"] for record in records]
    figure = plot(metrics, outputs_root() / "benchmarks" / "meta.png")
    identity = records[0]["data"]
    walls = [m["wall_seconds"] for m in metrics]
    write_benchmark("meta", collect(metrics).rows(), SeedTable.COLUMNS,
                    {**identity, "name": data_name(identity)},
                    notes=f"{len(records)} seeds, profile {args.profile}; notebook 11 {min(walls):.0f} to "
                          f"{max(walls):.0f} s per seed; figure {figure.name}. Sinusoid rows: mean test MSE over the "
                          "test tasks; paired rows: MAML minus the other method on the same tasks (negative: MAML "
                          "lower); episode rows: mean query accuracy over the shared test episodes; zero-shot: "
                          "accuracy on the target test images with no target label.")
    return 0 if len(records) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
