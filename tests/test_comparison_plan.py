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
