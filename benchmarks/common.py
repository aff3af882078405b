"""What every benchmark shares: naming the data honestly and summarizing seeds."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from helpers.metrics import seed_interval
from helpers.paths import CIFAR10_SOURCE_ENV, OFFLINE_ENV, PROJECT_ROOT, outputs_root
from helpers.reporting import read_record

JPEG_COPY = PROJECT_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
JPEG_COPY_SHA256 = "df7bfe88891954fd34fb2b4a082f29fae2adc2a2a4b02b8b42955c5f87fe3e21"


def data_name(identity: dict) -> str:
    """Name the data as reports must: the JPEG copy is not the official CIFAR-10."""
    if identity.get("sha256") == JPEG_COPY_SHA256:
        return "CIFAR-10 (JPEG copy)"
    if identity.get("dataset") == "synthetic":
        return "synthetic"
    return f"{identity.get('dataset')} ({identity.get('source')})"


def use_offline_jpeg_copy(source: Path | None = None) -> Path:
    """Run offline on a local CIFAR-10 copy: the given one, $WORKBOOK_CIFAR10_SOURCE, or the shared JPEG copy."""
    chosen = Path(source or os.environ.get(CIFAR10_SOURCE_ENV) or JPEG_COPY)
    if not chosen.exists():
        raise SystemExit(f"No CIFAR-10 copy at {chosen}: pass --source PATH or set {CIFAR10_SOURCE_ENV}.")
    os.environ[CIFAR10_SOURCE_ENV] = str(chosen.resolve())
    os.environ[OFFLINE_ENV] = "1"
    return chosen


def spread(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation, min and max of per-seed results."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()), "max": float(array.max()), "n": len(array)}


class SeedTable:
    """Per-seed values of a benchmark's cells, (table, item), and each seed's own 95% half-width where it has one."""

    COLUMNS = ["table", "item", "seeds", "value", "seed_std", "min", "max", "seed_ci_low", "seed_ci_high", "note"]

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], list[float]] = {}
        self.halves: dict[tuple[str, str], list[float]] = {}

    def add(self, table: str, item: str, value: float | None, half: float | None = None) -> None:
        """Append one seed's value (and its interval's half-width); a missing value is skipped."""
        if value is None:
            return
        self.cells.setdefault((table, item), []).append(float(value))
        if half is not None:
            self.halves.setdefault((table, item), []).append(float(half))

    def rows(self) -> list[dict]:
        """One row per cell: mean over seeds, their spread and t-interval, and the mean within-seed half-width."""
        rows = []
        for (table, item), values in self.cells.items():
            summary = spread(values)
            halves = self.halves.get((table, item))
            across = seed_interval(values) if len(values) > 1 else None
            rows.append({"table": table, "item": item, "seeds": summary["n"], "value": round(summary["mean"], 4),
                         "seed_std": round(summary["std"], 4), "min": round(summary["min"], 4),
                         "max": round(summary["max"], 4),
                         **({"seed_ci_low": round(across[1], 4), "seed_ci_high": round(across[2], 4)}
                            if across else {}),
                         **({"note": f"within-seed 95% +-{np.mean(halves):.3f}"} if halves else {})})
        return rows


def runs_root(benchmark: str, fresh: bool) -> Path:
    """Return outputs/benchmarks/<benchmark>/, emptied first when `fresh` (runs are otherwise resumed)."""
    root = outputs_root() / "benchmarks" / benchmark
    if fresh and root.exists():
        shutil.rmtree(root)
    return root


def drop_stale_runs(runs: Path, checkpoint_sha256: str | None) -> list[Path]:
    """Delete finished runs under `runs` that started from another course checkpoint, so they run again.

    Resumed runs are found by their parameters alone; after notebook 03 trains a new source model their numbers
    would silently mix with new ones. Runs without course weights (scratch) do not depend on the checkpoint.
    """
    stale = []
    for metrics_file in sorted(runs.rglob("metrics.json")):
        record = read_record(metrics_file)
        if record is None:  # damaged: sweep.run_one redoes it anyway
            continue
        weights = record.get("weights", {})
        started_from = weights.get("torch_sha256") or weights.get("sha256")  # Keras records the PyTorch file too
        if weights.get("weights") == "course" and started_from != checkpoint_sha256:
            shutil.rmtree(metrics_file.parent)
            stale.append(metrics_file.parent)
    if stale:
        print(f"{len(stale)} earlier run(s) in {runs} started from another source checkpoint: running them again.")
    return stale


def benchmark_parser(doc: str, seeds: int = 3) -> argparse.ArgumentParser:
    """Build the options every notebook benchmark takes: seeds, profile, a local CIFAR-10 copy, a fresh start."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    parser.add_argument("--source", type=Path, help="local CIFAR-10 copy (default: the shared JPEG copy)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier runs first")
    return parser


def finished_records(results: list[dict], folder: Path) -> list[dict]:
    """Read the records of the runs that finished; say where to look when none did."""
    from helpers.sweep import read_metrics

    records = [record for record in map(read_metrics, results) if record]
    if not records:
        print("No run finished; see the executed notebooks under", folder, file=sys.stderr)
    return records


def run_per_seed(benchmark: str, notebook: str, args: argparse.Namespace,
                 grid: Callable[[int], dict] | None = None) -> tuple[list[dict], list[dict]]:
    """Run a notebook once per seed (a finished seed is reused on resume): (every result, the finished records).

    `grid(seed)` gives the run's other parameters, as lists of one value each.
    """
    from helpers.sweep import run_sweep

    use_offline_jpeg_copy(args.source)
    root = runs_root(benchmark, args.fresh)
    results = []
    for seed in range(args.seeds):
        params = {"PROFILE": [args.profile], **(grid(seed) if grid else {}), "SEED": [seed]}
        results += run_sweep(notebook, params, root / "runs")
    return results, finished_records(results, root / "runs")
