"""Benchmark: the same 8-run grid one notebook at a time, then with `--workers 2` on a Dask LocalCluster.

Run with `make bench-sweep` (or `python -m benchmarks.sweep_dask [--profile smoke|cpu]`). The grid is notebook 05's
linear probe on the course model at 2 label counts x 4 seeds, on the CIFAR-10 JPEG copy (offline) or, without it,
synthetic data. Every run starts fresh (a temporary output root), so neither mode reuses the other's results; the
feature cache is warmed once first, so both modes do the same work. On 2 cores expect little gain: each run's
kernel already uses both cores, and two at once share them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from helpers.reporting import write_benchmark
from helpers.sweep import read_metrics, run_sweep

from .common import JPEG_COPY, data_name, use_offline_jpeg_copy


def grid(profile: str) -> dict[str, list]:
    """Return the benchmark's 8 runs: 2 label counts x 4 seeds of notebook 05's linear probe."""
    return {"PROFILE": [profile], "WEIGHTS": ["course"], "STRATEGY": ["linear_probe"], "LABELS_PER_CLASS": [10, 50],
            "SEED": [0, 1, 2, 3]}


def main(argv: list[str] | None = None) -> int:
    """Time the grid sequentially and with 2 workers; write outputs/benchmarks/sweep_dask.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu"])
    args = parser.parse_args(argv)
    if JPEG_COPY.exists() or os.environ.get("WORKBOOK_CIFAR10_SOURCE"):
        use_offline_jpeg_copy()
    runs = grid(args.profile)
    rows, identity = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        run_sweep("05_pytorch_finetuning", {**runs, "SEED": [0]}, Path(scratch) / "warm-up")  # checkpoint, features
        for mode, workers in (("sequential", None), ("dask, 2 workers", 2)):
            start = time.perf_counter()
            results = run_sweep("05_pytorch_finetuning", runs, Path(scratch) / mode, workers=workers)
            seconds = time.perf_counter() - start
            records = [read_metrics(r) for r in results]
            accuracies = [r["metrics"]["test_acc"] for r in records if r]
            identity = next((r["data"] for r in records if r), identity)
            rows.append({"mode": mode, "runs": len(results), "ok": sum(r["status"] == "ok" for r in results),
                         "wall_s": round(seconds, 1), "s_per_run": round(seconds / len(results), 1),
                         "mean_test_acc": round(sum(accuracies) / max(len(accuracies), 1), 4)})
    rows[1]["speedup"] = round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)
    write_benchmark("sweep_dask", rows, ["mode", "runs", "ok", "wall_s", "s_per_run", "mean_test_acc", "speedup"],
                    {**identity, "name": data_name(identity)},
                    notes=f"Grid: notebook 05, {runs}. Each mode ran every run fresh; Dask LocalCluster with 2 worker "
                          f"processes, each run's kernel given {max(1, (os.cpu_count() or 1) // 2)} thread(s).")
    return 0 if all(row["ok"] == row["runs"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
