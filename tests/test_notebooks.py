"""Notebook hygiene: paired with py:percent sources, stored without outputs, one parameters cell, the parts."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from helpers.course import NOTEBOOKS_DIR, course_notebooks

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in notebook.cells]


def test_there_are_notebooks():
    assert NOTEBOOKS and course_notebooks() == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_script_are_in_sync(path: Path):
    script = path.with_suffix(".py")
    assert script.exists(), f"{script.name} is missing: run `make sync`"
    assert _cells(jupytext.read(path)) == _cells(jupytext.read(script)), f"{path.name} differs: run `make sync`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    cells = json.loads(path.read_text())["cells"]
    assert not [c for c in cells if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_small_literals(path: Path):
    cells = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    for line in cells[0].source.splitlines():
        assignment, _, comment = line.partition("#")
        assert "=" not in comment, f"papermill misreads '=' in a parameters comment: {line}"
        assert assignment.strip() == "" or assignment.count("=") == 1
    assert "PROFILE" in cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_the_parts_of_a_lesson(path: Path):
    text = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    for part in ["Learning objectives", "Estimated time", "## Exercises", "<details>", "## Summary"]:
        assert part in text, f"{path.name} lacks '{part}'"
    assert "%run" not in "\n".join(c.source for c in jupytext.read(path).cells)


def test_unknown_notebook_prefix_lists_the_notebooks():
    with pytest.raises(SystemExit, match="00_setup_and_data"):
        course_notebooks(["99"])
