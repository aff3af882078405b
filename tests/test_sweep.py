"""Sweeps: grid expansion, parameter validation before any run, and a real two-run smoke sweep."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from helpers import sweep
from helpers.runner import NOTEBOOKS_DIR

NOTEBOOK = NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb"


def test_grid_expands_to_every_combination_with_stable_names():
    runs = sweep.expand_grid({"A": [1, 2], "B": ["x", "y"]})
    assert runs == [{"A": 1, "B": "x"}, {"A": 1, "B": "y"}, {"A": 2, "B": "x"}, {"A": 2, "B": "y"}]
    assert sweep.run_name({"STRATEGY": "lp_ft", "SEED": 0}) == "STRATEGY-lp_ft_SEED-0"


def test_parameters_are_read_with_their_choices():
    parameters = sweep.notebook_parameters(NOTEBOOK)
    assert parameters["STRATEGY"]["choices"][:2] == ["scratch", "linear_probe"]
    assert parameters["SEED"]["default"] == 0 and parameters["LABELS_PER_CLASS"]["default"] is None


@pytest.mark.parametrize("grid, message", [
    ({"STRATEGEY": ["lp_ft"]}, "unknown parameter 'STRATEGEY'"),
    ({"STRATEGY": ["fastest"]}, "not one of: scratch, linear_probe"),
    ({"SEED": ["one"]}, "SEED='one' must be an int"),
    ({"PROFILE": [3]}, "PROFILE=3 must be a str"),
])
def test_bad_grids_fail_before_any_run(grid, message):
    with pytest.raises(ValueError, match=message):
        sweep.validate_grid(NOTEBOOK, grid)


def test_yaml_needs_a_notebook(tmp_path):
    (tmp_path / "grid.yaml").write_text("parameters: {SEED: [0]}\n")
    with pytest.raises(ValueError, match="expected a mapping with 'notebook'"):
        sweep.load_grid(tmp_path / "grid.yaml")


@pytest.mark.notebook
def test_two_run_smoke_sweep_writes_a_checked_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path / "outputs"))
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("notebook: 05_pytorch_finetuning\nparameters:\n  PROFILE: [smoke]\n"
                         "  WEIGHTS: [course]\n  STRATEGY: [linear_probe]\nseeds: [0, 1]\n")
    assert sweep.main([str(grid_file)]) == 0
    root = tmp_path / "outputs" / "runs" / "05_pytorch_finetuning"
    with open(root / "summary.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["SEED"] for row in rows] == ["0", "1"] and {row["status"] for row in rows} == {"ok"}
    for row in rows:  # the table reports exactly what each run recorded
        recorded = json.loads((Path(row["folder"]) / "metrics.json").read_text())["metrics"]["test_acc"]
        assert float(row["test_acc"]) == pytest.approx(recorded)
    assert sum(float(row["test_acc"]) for row in rows) / len(rows) > 0.2  # chance on the five target classes
    assert (root / "summary.md").read_text().count("linear_probe") == 2
    assert sweep.main([str(grid_file)]) == 0  # resumable: both runs are found done
    assert all(os.path.exists(row["folder"]) for row in rows)
