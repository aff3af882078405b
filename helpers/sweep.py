"""Parameter sweeps over a notebook with papermill: one folder per combination, resumable, failures kept.

    python -m helpers.sweep grid.yaml

with a YAML grid such as

    notebook: 05_pytorch_finetuning
    parameters:
      PROFILE: [smoke]
      STRATEGY: [linear_probe, lp_ft]
      LABELS_PER_CLASS: [10, 50]
    seeds: [0, 1]

Each combination runs into outputs/runs/<notebook>/<parameters>/ (executed notebook and metrics.json); then
summary.csv, summary.md and, when LABELS_PER_CLASS varies, data_efficiency.png are written beside them.
Parameters are checked against the notebook's parameters cell before anything runs.

    python -m helpers.sweep grid.yaml --workers 2                  # two notebooks at once here (Dask LocalCluster)
    python -m helpers.sweep grid.yaml --scheduler tcp://host:8786  # on an existing Dask cluster
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import itertools
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .parameters import value_problem
from .paths import absolute_path_variables, atomic_write_text, outputs_root
from .reporting import markdown_table, read_record
from .runner import NOTEBOOKS_DIR
from .runs import run_name, run_one


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """List every combination of the grid's values, in a stable order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def notebook_path(notebook: str) -> Path:
    """Return a course notebook's path by name (one of notebooks/, no path), listing them when the name is wrong."""
    known = {p.stem: p for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}
    if notebook not in known:
        raise ValueError(f"No course notebook {notebook!r} (give a name, not a path); notebooks: {', '.join(known)}")
    return known[notebook]


MAX_UNCONFIRMED_RUNS = 100  # a bigger grid runs only with --yes: it is more likely a typo than a plan


def grid_size(grid: dict[str, list[Any]]) -> int:
    """Count a grid's combinations without listing them."""
    return math.prod(len(values) for values in grid.values())


def check_run_names(grid: dict[str, list[Any]]) -> None:
    """Refuse a grid whose combinations share a run folder name (values that differ only in stripped characters)."""
    names: dict[str, dict[str, Any]] = {}
    for params in expand_grid(grid):
        earlier = names.setdefault(run_name(params), params)
        if earlier is not params:
            raise ValueError(f"Two combinations would share the run folder {run_name(params)!r}: {earlier} and "
                             f"{params}. Folder names keep only letters, digits, '.' and '_': make the values differ "
                             "in those.")


def run_sweep(notebook: str, grid: dict[str, list[Any]], root: Path, workers: int | None = None,
              scheduler: str | None = None, gpu: bool = False) -> list[dict[str, Any]]:
    """Run every combination of a grid over a notebook into root/<run name>/, printing progress.

    One after another by default; `workers` runs that many at once on this machine and `scheduler` sends the runs
    to an existing Dask cluster (`gpu`: each run holds one worker resource GPU=1).
    """
    path = notebook_path(notebook)
    combinations = expand_grid(grid)
    if workers or scheduler:
        from .cluster import dask_client, run_on_dask

        threads = max(1, (os.cpu_count() or 1) // workers) if workers and not scheduler else None
        with dask_client(None if scheduler else workers, scheduler, gpus=1 if gpu else 0) as client:
            return run_on_dask(path, combinations, [root / run_name(p) for p in combinations], client, threads, gpu)
    results = []
    for number, params in enumerate(combinations, 1):
        result = run_one(path, params, root / run_name(params))
        results.append(result)
        print(f"[{number}/{len(combinations)}] {run_name(params)}: {result['status']} ({result['seconds']} s)",
              flush=True)
    return results


def read_metrics(result: dict[str, Any]) -> dict[str, Any] | None:
    """Load the metrics.json a successful run wrote, or None (also when it is damaged, which is named)."""
    path = Path(result["folder"]) / "metrics.json"
    return read_record(path) if path.exists() else None


def notebook_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """Read a notebook's parameters cell: each name with its default, its type and, from its comment, its choices."""
    import papermill

    parameters = {}
    for name, info in papermill.inspect_notebook(str(notebook)).items():
        default = ast.literal_eval(info["default"])
        choices = None
        help_text = re.sub(r"\s*#\s*noqa.*$", "", info["help"]).strip()  # a long list of choices may carry a noqa
        match = re.fullmatch(r"([\w.]+(?:, [\w.]+)*) or ([\w.]+)", help_text)
        if match and isinstance(default, str):
            choices = [c.strip() for c in match.group(1).split(",")] + [match.group(2)]
        parameters[name] = {"default": default, "type": info["inferred_type_name"], "choices": choices,
                            "help": help_text}
    return parameters


def validate_grid(notebook: Path, grid: dict[str, list[Any]]) -> None:
    """Fail before any run on an unknown name, a value of the wrong type, or a value outside its choices."""
    known = notebook_parameters(notebook)
    problems = []
    for name, values in grid.items():
        if name not in known:
            problems.append(f"unknown parameter {name!r}; {notebook.stem} takes: {', '.join(known)}")
            continue
        problems += [problem for value in values
                     if (problem := value_problem(name, value, known[name]["type"], known[name]["choices"]))]
    if problems:
        raise ValueError("Invalid sweep grid:\n  " + "\n  ".join(problems))


def load_grid(path: Path) -> tuple[str, dict[str, list[Any]]]:
    """Read a YAML sweep file into (notebook name, grid with SEED added); a malformed file is named with the fix."""
    import yaml

    shape = "expected a mapping with 'notebook', 'parameters' (a mapping of value lists) and optional 'seeds'"
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read it as YAML ({' '.join(str(error).split())}); {shape}") from error
    if not isinstance(spec, dict) or "notebook" not in spec or not isinstance(spec.get("parameters", {}), dict):
        raise ValueError(f"{path}: {shape}, e.g. notebook: 05_pytorch_finetuning")
    grid = {str(name): values if isinstance(values, list) else [values]
            for name, values in (spec.get("parameters") or {}).items()}
    seeds = spec.get("seeds", grid.get("SEED", [0]))
    grid["SEED"] = seeds if isinstance(seeds, list) else [seeds]
    empty = [name for name, values in grid.items() if not values]
    if empty:
        raise ValueError(f"{path}: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no values; give at least "
                         "one (a list such as [0, 1], or a single value)")
    return str(spec["notebook"]), grid


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: its parameters, status, accuracies, time, data and weights."""
    rows = []
    for result in results:
        record = read_metrics(result) or {}
        found = record.get("metrics", {})
        rows.append({**result["params"], "status": result["status"],
                     "profile": record.get("config", {}).get("profile"), "val_acc": found.get("val_acc"),
                     "test_acc": found.get("test_acc"), "wall_seconds": found.get("wall_seconds"),
                     "dataset": record.get("data", {}).get("dataset"),
                     "weights": record.get("weights", {}).get("weights"), "folder": result["folder"]})
    return rows


def plot_data_efficiency(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Plot mean test accuracy against labels per class, one line per strategy, bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("test_acc") is not None and r.get("LABELS_PER_CLASS")]
    if len({r["LABELS_PER_CLASS"] for r in done}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in sorted({r.get("STRATEGY", "run") for r in done}):
        points = sorted({r["LABELS_PER_CLASS"] for r in done if r.get("STRATEGY", "run") == strategy})
        accs = [[r["test_acc"] for r in done if r.get("STRATEGY", "run") == strategy and r["LABELS_PER_CLASS"] == n]
                for n in points]
        ax.errorbar(points, [np.mean(a) for a in accs], yerr=[np.std(a) for a in accs], marker="o", capsize=3,
                    label=strategy)
    ax.set(xscale="log", xlabel="labels per class", ylabel="test accuracy", title="Data efficiency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Validate, run and summarize a sweep; exit 1 if any run failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path, help="YAML file: notebook, parameters, seeds")
    parser.add_argument("--out", type=Path, help="output root (default outputs/runs/<notebook>)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="run N notebooks at once on this machine (a Dask LocalCluster)")
    where.add_argument("--scheduler", help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--gpu", action="store_true", help="each run needs one GPU: Dask workers started with "
                        "--resources GPU=1 (one per GPU) run one notebook at a time each")
    parser.add_argument("--yes", action="store_true", help=f"run a grid of more than {MAX_UNCONFIRMED_RUNS} "
                        "combinations")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    absolute_path_variables()  # kernels run in notebooks/: a relative path must mean what it meant here
    try:
        notebook, grid = load_grid(args.grid)
        count = grid_size(grid)
        if count > MAX_UNCONFIRMED_RUNS and not args.yes:
            raise ValueError(f"{args.grid} asks for {count:,} runs ({' x '.join(str(len(v)) for v in grid.values())}"
                             f" values of {', '.join(grid)}). Trim the grid, or pass --yes to run them all.")
        validate_grid(notebook_path(notebook), grid)
        check_run_names(grid)
        print(f"Sweep of {notebook}: {count} run{'s' if count != 1 else ''}", flush=True)
        root = args.out or outputs_root() / "runs" / notebook
        rows = summary_rows(run_sweep(notebook, grid, root, args.workers, args.scheduler, args.gpu))
    except (ValueError, ConnectionError) as error:
        raise SystemExit(str(error)) from error
    columns = [*grid, "status", "profile", "val_acc", "test_acc", "wall_seconds", "dataset", "weights"]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[*columns, "folder"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(root / "summary.csv", table.getvalue())
    atomic_write_text(root / "summary.md", f"# Sweep of {notebook}\n\n{markdown_table(rows, columns)}\n")
    plot = plot_data_efficiency(rows, root / "data_efficiency.png")
    failed = [r for r in rows if r["status"].startswith("failed")]
    print(f"\n{markdown_table(rows, columns)}\n\nsummary: {root / 'summary.csv'}" + (f", plot: {plot}" if plot else ""))
    for row in failed:
        print(f"FAILED {row['folder']}: {row['status']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
