"""Sweeps on Dask (loopback only): the same records as the sequential sweep, a killed worker loses only its run,
and an unreachable scheduler is named before anything runs."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from helpers import cluster, sweep

pytest.importorskip("dask.distributed")

NOTEBOOK = sweep.notebook_path("05_pytorch_finetuning")
GRID = {"PROFILE": ["smoke"], "DATASET": ["synthetic"], "WEIGHTS": ["none"], "STRATEGY": ["scratch"],
        "LABELS_PER_CLASS": [10, 20], "SEED": [0, 1]}


def _records(root: Path) -> dict[str, dict]:
    """Read every run's metrics.json under a sweep root, by run folder name."""
    return {folder.name: record for folder in sorted(root.iterdir())
            if (record := sweep.read_metrics({"folder": str(folder)})) is not None}


@pytest.mark.notebook
def test_two_workers_produce_the_records_the_sequential_sweep_does(tmp_path, capsys):
    parallel = sweep.run_sweep("05_pytorch_finetuning", GRID, tmp_path / "dask", workers=2)
    assert "Dask dashboard: http" in capsys.readouterr().out
    sequential = sweep.run_sweep("05_pytorch_finetuning", GRID, tmp_path / "one")
    assert [r["status"] for r in parallel] == [r["status"] for r in sequential] == ["ok"] * 4
    dask_records, one_records = _records(tmp_path / "dask"), _records(tmp_path / "one")
    assert sorted(dask_records) == sorted(one_records) == sorted(sweep.run_name(p) for p in sweep.expand_grid(GRID))
    for name, record in dask_records.items():
        assert record.keys() == one_records[name].keys()
        assert record["config"]["profile"] == "smoke" and record["data"] == one_records[name]["data"]
        assert abs(record["metrics"]["test_acc"] - one_records[name]["metrics"]["test_acc"]) <= 0.05  # same seed
    rerun = sweep.run_sweep("05_pytorch_finetuning", GRID, tmp_path / "dask", workers=2)
    assert [r["status"] for r in rerun] == ["done earlier"] * 4


@pytest.mark.notebook
def test_a_killed_worker_loses_only_its_run_which_a_rerun_redoes(tmp_path):
    combinations = sweep.expand_grid(GRID)
    folders = [tmp_path / sweep.run_name(p) for p in combinations]
    outcome: dict[str, list] = {}
    with cluster.dask_client(workers=2) as client:
        runner = threading.Thread(target=lambda: outcome.setdefault("results", cluster.run_on_dask(
            NOTEBOOK, combinations, folders, client, threads=1)))
        runner.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(tasks for tasks in client.processing().values()):
            time.sleep(0.2)
        time.sleep(3)  # the run is well under way: its kernel has started
        busy = next(worker for worker, tasks in client.processing().items() if tasks)
        victim = client.processing()[busy][0]
        os.kill(client.run(os.getpid, workers=[busy])[busy], signal.SIGKILL)
        runner.join(timeout=600)
    results = outcome["results"]
    killed = [r for r in results if r["status"].startswith("failed")]
    assert [Path(r["folder"]).name for r in killed] == [victim.removeprefix("run-")], killed
    assert "worker running it died" in killed[0]["status"]
    assert not (Path(killed[0]["folder"]) / "metrics.json").exists()  # never left looking complete
    assert all(sweep.read_metrics(r) for r in results if r["status"] == "ok") and len(results) - len(killed) == 3
    redo = [sweep.run_one(NOTEBOOK, params, folder) for params, folder in zip(combinations, folders, strict=True)]
    assert sorted(r["status"] for r in redo) == ["done earlier"] * 3 + ["ok"]


def test_an_unreachable_scheduler_is_named_before_anything_runs(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("notebook: 05_pytorch_finetuning\nparameters: {PROFILE: [smoke]}\n")
    with pytest.raises(SystemExit, match="Cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        sweep.main([str(grid), "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_bad_worker_counts_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["grid.yaml", "--workers", "0"])
    assert "--workers must be >= 1" in capsys.readouterr().err
