"""The comparison `make course` runs before notebook 06: what each profile plans, without running it."""

from __future__ import annotations

import pytest

from helpers import course
from helpers.runs import run_name


@pytest.mark.parametrize("profile", sorted(course.COMPARISON))
def test_every_planned_run_is_distinct_and_valid(profile: str):
    planned = course.comparison_runs(profile)
    names = [(notebook, run_name(params)) for notebook, params in planned]
    assert len(names) == len(set(names)), "a run is planned twice: it would be reused, not repeated"
    for notebook, params in planned:
        assert notebook in {"04_keras_finetuning", "05_pytorch_finetuning"}
        assert params["LABELS_PER_CLASS"] >= 1 and params["SEED"] >= 0


def test_cpu_comparison_repeats_the_key_rows_over_three_seeds_and_extends_scratch():
    plan = course.COMPARISON["cpu"]
    honest = {(params["STRATEGY"], params["LABELS_PER_CLASS"], params["SEED"])
              for notebook, params in course.comparison_runs("cpu")
              if notebook == "05_pytorch_finetuning" and params["VALIDATION"] == "labelled"}
    key_rows = {"scratch", "linear_probe", "finetune_full", "lp_ft"}
    assert {(s, n, seed) for s in key_rows for n in (10, 50) for seed in (0, 1, 2)} <= honest
    assert ("scratch", max(plan["scratch_labels"]), 0) in honest
    assert max(plan["scratch_labels"]) > max(plan["labels"]), "scratch must reach past the transfer runs' labels"


def test_comparison_runs_two_at_a_time_in_plan_order_with_one_thread_each(tmp_path, monkeypatch):
    import os
    import threading
    import time

    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(course.os, "cpu_count", lambda: 2)
    running, most, seen_threads = [0], [0], set()
    lock = threading.Lock()

    def fake_run_one(notebook, params, folder):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            seen_threads.add(os.environ.get("OMP_NUM_THREADS"))
        time.sleep(0.05 if params["SEED"] % 2 else 0.01)  # later runs may finish first
        with lock:
            running[0] -= 1
        return {"params": params, "status": "ok", "folder": str(folder), "seconds": 0.0}

    monkeypatch.setattr(course, "run_one", fake_run_one)
    results = course.run_comparison("cpu", workers=2)
    planned = course.comparison_runs("cpu")
    assert [r["params"]["SEED"] for r in results] == [params["SEED"] for _, params in planned]
    assert [r["notebook"] for r in results] == [notebook for notebook, _ in planned]
    assert most[0] == 2 and seen_threads == {"1"}
    assert "OMP_NUM_THREADS" not in os.environ  # the course's own process is left as it was


def test_only_the_featured_run_cross_fits():
    for profile in ("smoke", "cpu", "full"):
        plan = course.COMPARISON[profile]
        crossed = [params for _, params in course.comparison_runs(profile) if "CROSS_FIT" in params]
        assert crossed == [{"STRATEGY": "lp_ft", "LABELS_PER_CLASS": max(plan["labels"]), "VALIDATION": "labelled",
                            "SEED": plan["seeds"][0], "CROSS_FIT": plan["cross_fit"]}]


def test_cpu_comparison_runs_lp_ft_with_scratchs_recipe_and_scratch_beyond_on_every_seed():
    planned = [params for notebook, params in course.comparison_runs("cpu") if notebook == "05_pytorch_finetuning"]
    arm = {(p["LABELS_PER_CLASS"], p["SEED"]) for p in planned if p.get("RECIPE") == "scratch"}
    assert arm == {(n, seed) for n in (10, 50) for seed in (0, 1, 2)}
    assert all(p["STRATEGY"] == "lp_ft" for p in planned if p.get("RECIPE") == "scratch")
    scratch = {(p["LABELS_PER_CLASS"], p["SEED"]) for p in planned if p["STRATEGY"] == "scratch"}
    assert {(n, seed) for n in (10, 50, 150, 500) for seed in (0, 1, 2)} <= scratch
