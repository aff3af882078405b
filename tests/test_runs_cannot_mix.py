"""Runs that cannot mix: one source checkpoint and one recipe table per evaluation, each run reused only as made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scratch_recipe
from helpers import profiles, runs
from helpers.runner import NOTEBOOKS_DIR

NOTEBOOK_05 = NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb"
CHECKPOINT = "a" * 64


def record(folder: Path, strategy: str = "lp_ft", seed: int = 0, labels: int = 50, sha256: str = CHECKPOINT,
           recipe_name: str = "own", profile: str = "cpu", **config) -> dict:
    """A run record as notebook 05 writes it (the fields the evaluation's selection reads)."""
    weights = "none" if strategy == "scratch" else "course"
    return {"framework": "pytorch", "folder": folder,
            "config": {"notebook": "05_pytorch_finetuning", "profile": profile, "strategy": strategy,
                       "recipe_name": recipe_name, "weights": weights, "model": "course_net", "task": "target",
                       "labels_per_class": labels, "validation": "labelled", "seed": seed,
                       "recipe": profiles.training_recipe(strategy, recipe_name, profile, labels), **config},
            "weights": {"weights": weights, **({"sha256": sha256} if weights == "course" else {})}}


def test_a_bench_run_of_another_checkpoint_is_left_out_and_named(tmp_path):
    course_run = record(tmp_path / "runs" / "comparison" / "05" / "a")
    bench_run = record(tmp_path / "benchmarks" / "pytorch_transfer" / "b", sha256="b" * 64)
    kept, left_out = runs.evaluation_runs([course_run, bench_run], CHECKPOINT, "cpu")
    assert kept == [course_run]
    assert left_out == [(bench_run["folder"], f"source model {'b' * 12}, not the course's current one "
                                              f"({'a' * 12})")]


def test_a_scratch_run_of_an_earlier_recipe_table_is_left_out(tmp_path):
    current = record(tmp_path / "new", strategy="scratch")
    earlier = record(tmp_path / "old", strategy="scratch", seed=1,
                     recipe={"augment": "standard", "weight_decay": 5e-4, "min_steps": 200})
    unrecorded = record(tmp_path / "older", strategy="scratch", seed=2)
    del unrecorded["config"]["recipe"]
    kept, left_out = runs.evaluation_runs([current, earlier, unrecorded], CHECKPOINT, "cpu")
    assert kept == [current]
    assert "trained with recipe" in left_out[0][1] and "not the current table's" in left_out[0][1]
    assert left_out[1][1] == "made before runs recorded their training recipe"


def test_runs_of_another_profile_or_other_weights_are_left_out(tmp_path):
    smoke = record(tmp_path / "s", profile="smoke")
    imagenet = record(tmp_path / "i", seed=3)
    imagenet["config"]["weights"] = "imagenet"
    self_supervised = record(tmp_path / "ssl", seed=4)  # notebook 10: its own pretraining, on the same data
    self_supervised["config"].update(notebook="10_self_supervised_pretraining", weights="self-supervised")
    kept, left_out = runs.evaluation_runs([smoke, imagenet, self_supervised], CHECKPOINT, "cpu")
    assert kept == [self_supervised] and [reason for _, reason in left_out] == [
        "profile 'smoke', not 'cpu'", "weights 'imagenet', not the course's source model"]


def test_two_runs_for_one_setting_are_refused(tmp_path):
    first, second = record(tmp_path / "one"), record(tmp_path / "two")
    with pytest.raises(ValueError, match="Two runs for one setting.*one and .*two. Delete all but one"):
        runs.evaluation_runs([first, second], CHECKPOINT, "cpu")
    other_recipe = record(tmp_path / "three", recipe_name="scratch")  # LP-FT with scratch's recipe: another setting
    assert len(runs.evaluation_runs([first, other_recipe], CHECKPOINT, "cpu")[0]) == 2


def test_a_comparison_run_an_earlier_plan_made_is_left_out(tmp_path):
    root = tmp_path / "comparison"
    current, earlier = root / "05_pytorch_finetuning" / "now", root / "05_pytorch_finetuning" / "before"
    runs.write_plan(root, [current])
    kept, left_out = runs.evaluation_runs([record(current), record(earlier, seed=1)], CHECKPOINT, "cpu")
    assert [run["folder"] for run in kept] == [current]
    assert left_out == [(earlier, "not in the course comparison's current plan (made by an earlier plan)")]


def test_editing_the_scratch_recipes_makes_a_scratch_run_unfinished(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBOOK_PROFILE", raising=False)  # the suite forces smoke; this request asks for cpu
    params = {"PROFILE": "cpu", "STRATEGY": "scratch", "LABELS_PER_CLASS": 50}
    folder = tmp_path / "run"
    folder.mkdir()
    request = runs.run_request(NOTEBOOK_05, params)
    (folder / "request.json").write_text(json.dumps(request))
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"test_acc": 0.7}, "weights": {"weights": "none"}}))
    assert runs.finished(folder, runs.run_request(NOTEBOOK_05, params))
    monkeypatch.setitem(profiles.SCRATCH_RECIPES, 50, {**profiles.SCRATCH_RECIPES[50], "weight_decay": 5e-4})
    assert not runs.finished(folder, runs.run_request(NOTEBOOK_05, params))
    lp_ft = runs.run_request(NOTEBOOK_05, {**params, "STRATEGY": "lp_ft"})
    assert lp_ft["resolved"]["recipe"] == profiles.TRANSFER_RECIPES["lp_ft"][50]  # the transfer proxy's choice
    assert runs.run_request(NOTEBOOK_05, {**params, "STRATEGY": "lp_ft", "RECIPE": "fixed"})["resolved"][
        "recipe"] == {**profiles.FINE_TUNING_RECIPE, "min_steps": 200}
    assert runs.run_request(NOTEBOOK_05, {**params, "STRATEGY": "lp_ft", "RECIPE": "scratch"})["resolved"][
        "recipe"] == profiles.SCRATCH_RECIPES[50]


def test_a_change_to_the_notebooks_code_makes_its_runs_unfinished(tmp_path):
    notebook = tmp_path / "05_pytorch_finetuning.ipynb"
    cells = json.loads(NOTEBOOK_05.read_text())
    notebook.write_text(json.dumps(cells))
    before = runs.code_hash(notebook)
    prose = next(cell for cell in cells["cells"] if cell["cell_type"] == "markdown")
    prose["source"] = "# prose only changed"
    notebook.write_text(json.dumps(cells))
    assert runs.code_hash(notebook) == before  # prose is not code: runs stay reusable
    code = next(cell for cell in cells["cells"] if cell["cell_type"] == "code")
    code["source"] = "".join(code["source"]) + "\nx = 1"
    notebook.write_text(json.dumps(cells))
    assert runs.code_hash(notebook) != before


def test_bench_scratch_counts_step_floors_that_train_alike_once():
    assert scratch_recipe.steps_run(500, 200) == scratch_recipe.steps_run(500, 600) == 1000  # 25 epochs of 40 batches
    assert scratch_recipe.distinct_step_floors(500, [200, 600]) == [600]
    assert scratch_recipe.distinct_step_floors(50, [200, 600]) == [200, 600]
    rows = [{"labels_per_class": 500, "augment": augment, "weight_decay": "0.005", "steps": 600, "steps_run": 1000,
             "proxy_acc_mean": accuracy} for augment, accuracy in (("standard", 0.74), ("strong", 0.69))]
    assert scratch_recipe.best_recipes(rows)[500] == profiles.SCRATCH_RECIPES[500]  # the checked-in table's choice
