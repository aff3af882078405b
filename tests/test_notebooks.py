"""Notebook hygiene: paired with py:percent sources, stored without outputs, one parameters cell, the parts."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from helpers.course import course_notebooks
from helpers.runner import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in notebook.cells]


def test_course_order_trains_the_source_model_before_the_lessons_that_use_it():
    order = [nb.stem[:2] for nb in course_notebooks()]
    assert sorted(course_notebooks()) == NOTEBOOKS
    assert order[:3] == ["00", "03", "01"] and order.index("03") < order.index("04") < order.index("06")


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
def test_notebook_carries_the_kernel_language_info(path: Path):
    """JupyterLab marks a notebook unsaved on opening when its kernel reports language info the file lacks."""
    from ipykernel.ipkernel import IPythonKernel

    stored = json.loads(path.read_text())["metadata"].get("language_info", {})
    reported = IPythonKernel.language_info
    assert {k: v for k, v in stored.items() if k != "version"} == {k: v for k, v in reported.items() if k != "version"}
    assert stored["version"].split(".")[:2] == reported["version"].split(".")[:2]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_small_literals(path: Path):
    cells = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    for line in cells[0].source.splitlines():
        assignment, _, comment = line.partition("#")
        assert "=" not in comment, f"papermill misreads '=' in a parameters comment: {line}"
        assert assignment.strip() in ("", "from typing import Optional") or assignment.count("=") == 1
    assert "PROFILE" in cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_with_its_type(path: Path):
    import papermill

    cell = next(c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split(":")[0].split("=")[0].strip() for line in cell.source.splitlines()
                if "=" in line.partition("#")[0]]
    found = papermill.inspect_notebook(str(path))
    assert list(found) == assigned, "papermill cannot parse some parameters (it reads Optional[int], not int | None)"
    untyped = [name for name, info in found.items() if info["inferred_type_name"] == "None"]
    assert not untyped, f"parameters without a type annotation: {untyped}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_the_parts_of_a_lesson(path: Path):
    text = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    for part in ["Learning objectives", "Estimated time", "## Exercises", "<details>", "## Summary"]:
        assert part in text, f"{path.name} lacks '{part}'"
    assert "%run" not in "\n".join(c.source for c in jupytext.read(path).cells)


def test_unknown_notebook_prefix_lists_the_notebooks():
    with pytest.raises(SystemExit, match="00_setup_and_data"):
        course_notebooks(["99"])
