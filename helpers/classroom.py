"""The class's graded assignments (`make release`): one nbgrader assignment per notebook with coding exercises.

Each assignment holds only the exercise sheet: the instructions copied from the notebook's markdown, each function
with its stub's signature and docstring and the reference body from solutions/ between nbgrader's solution markers,
and one autograded test cell per exercise that runs the notebook's own check (`helpers.exercises`), so grading
never re-trains the course's models. The notebooks' .py twins and solutions/ are the one source of truth: the
course folder (default outputs/classroom/) is generated, then `nbgrader generate_assignment` makes the student
version in its release/ folder. Submissions, the gradebook and feedback stay there, untouched by a rerun.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .paths import PROJECT_ROOT, outputs_root, shown

if TYPE_CHECKING:
    from nbgrader.apps import NbGraderAPI

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
SOLUTIONS_DIR = PROJECT_ROOT / "solutions"
CHECK_CALL = re.compile(r'exercises\.check\("([0-9.]+)", (\w+)\)')
REFERENCE_LINK = re.compile(r"\s*Reference solutions?:\s+`solutions/[^`]+`(\s+\([^)]*\))?\.?")
POINTS = 1  # per exercise
CONFIG = """\
# nbgrader settings for this course folder, written by `make release` (python -m helpers.classroom).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "transfer-workbook"
c.Execute.timeout = 300  # seconds per cell: a check calls the learner's function a few times, 20 s each at most
"""
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@dataclass(frozen=True)
class Exercise:
    """One coding exercise as its notebook writes it: key, function name, instructions and stub cell."""

    key: str
    function: str
    instructions: str
    stub: str


def notebook_exercises(notebook: str) -> list[Exercise]:
    """List the coding exercises of notebooks/<notebook>.py, each with the markdown cell above its stub."""
    cells = jupytext.read(NOTEBOOKS_DIR / f"{notebook}.py").cells
    found = []
    for index, cell in enumerate(cells):
        call = CHECK_CALL.fullmatch(cell.source.strip()) if cell.cell_type == "code" else None
        if call is None:
            continue
        key, function = call.groups()
        stubs = [i for i in range(index) if cells[i].cell_type == "code" and re.search(rf"^def {function}\(",
                                                                                         cells[i].source, re.M)]
        if not stubs:
            raise ValueError(f"{notebook}.py checks {function} (exercise {key}) but defines no stub for it above the "
                             f"check: put `def {function}(...)` with `raise NotImplementedError` in the cell before")
        notes = [i for i in range(stubs[-1]) if cells[i].cell_type == "markdown"]
        found.append(Exercise(key, function, REFERENCE_LINK.sub("", cells[notes[-1]].source),
                              cells[stubs[-1]].source))
    return found


def solved(stub: str, function: str, solution: str) -> str:
    """Return the stub cell with its `raise NotImplementedError` line replaced by the reference body in markers."""
    [stub_def] = [node for node in ast.parse(stub).body if isinstance(node, ast.FunctionDef) and node.name == function]
    raise_line = stub_def.body[-1]
    if not (isinstance(raise_line, ast.Raise) and "NotImplementedError" in ast.unparse(raise_line)):
        raise ValueError(f"the stub of {function} must end with `raise NotImplementedError` (the line the learner "
                         "replaces); put it back as its last line")
    module = ast.parse(solution)
    definitions = {node.name: node for node in module.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    if function not in definitions:
        raise ValueError(f"solutions/ defines no {function}: add the reference solution with the stub's signature")
    needed, queue = [], [definitions[function]]
    while queue:  # the module's own classes and functions the solution uses, e.g. an autograd.Function
        for name in sorted({n.id for n in ast.walk(queue.pop()) if isinstance(n, ast.Name)}):
            if name in definitions and name != function and definitions[name] not in needed:
                needed.append(definitions[name])
                queue.append(definitions[name])
    lines = solution.splitlines()
    body = definitions[function].body
    body = body[1:] if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body
    blocks = [textwrap.dedent("\n".join(lines[min([n.lineno, *(d.lineno for d in n.decorator_list)]) - 1:n.end_lineno]))
              for n in reversed(needed)]
    blocks.append(textwrap.dedent("\n".join(lines[body[0].lineno - 1:body[-1].end_lineno])))
    indent = " " * raise_line.col_offset
    region = textwrap.indent("\n".join(["### BEGIN SOLUTION", *blocks, "### END SOLUTION"]), indent)
    stub_lines = stub.splitlines()
    return "\n".join([*stub_lines[:raise_line.lineno - 1], region, *stub_lines[raise_line.end_lineno:]])


def cell_metadata(grade_id: str, solution: bool = False, points: int | None = None) -> dict:
    """Return nbgrader's metadata for a solution cell, an autograded test worth `points`, or a locked cell."""
    return {"nbgrader": {"grade": points is not None, "grade_id": grade_id, "locked": not solution,
                         "schema_version": 3, "solution": solution, "task": False,
                         **({"points": points} if points is not None else {})}}


def title(notebook: str) -> str:
    """Return the notebook's first heading, without its `#`s."""
    for cell in jupytext.read(NOTEBOOKS_DIR / f"{notebook}.py").cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            return cell.source.lstrip().splitlines()[0].lstrip("#").strip()
    return notebook


def instructor_notebook(notebook: str) -> nbformat.NotebookNode:
    """Build the instructor version of one exercise sheet: instructions, solved functions, graded checks."""
    exercises = notebook_exercises(notebook)
    solution = (SOLUTIONS_DIR / f"{notebook}.py").read_text()
    imports = [ast.unparse(node) for node in ast.parse(solution).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    total = POINTS * len(exercises)
    cells = [new_markdown_cell(f"# Exercises: {title(notebook)}\n\nWrite each function where it says `# YOUR CODE "
                               "HERE`, run its cell, then run the test cell under it: it runs the check of notebook "
                               f"`{notebook}` and says what is wrong, if anything. {len(exercises)} exercise(s), "
                               f"{POINTS} point(s) each, {total} in all. Save the notebook before you submit it.",
                               metadata=cell_metadata("header")),
             new_code_cell("\n".join([*imports, "from helpers import exercises"]), metadata=cell_metadata("imports"))]
    shown: set[str] = set()
    for exercise in exercises:
        name = exercise.key.replace(".", "_")
        if exercise.instructions not in shown:  # two exercises may share one markdown cell
            shown.add(exercise.instructions)
            cells.append(new_markdown_cell(exercise.instructions, metadata=cell_metadata(f"instructions_{name}")))
        cells.append(new_code_cell(solved(exercise.stub, exercise.function, solution),
                                   metadata=cell_metadata(f"solution_{name}", solution=True)))
        cells.append(new_code_cell(f"# Exercise {exercise.key}: autograded, {POINTS} point(s)\n"
                                   f'assert (found := exercises.problem("{exercise.key}", {exercise.function})) is '
                                   "None, found", metadata=cell_metadata(f"test_{name}", points=POINTS)))
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})


def graded_notebooks() -> list[str]:
    """List the notebooks with coding exercises (those with a file in solutions/), in course order."""
    return sorted(path.stem for path in SOLUTIONS_DIR.glob("[0-9][0-9]_*.py"))


def write_source(root: Path, notebooks: list[str]) -> list[Path]:
    """Write nbgrader_config.py and each assignment's instructor notebook under root/source/; return the notebooks."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    written = []
    for notebook in notebooks:
        path = root / "source" / notebook / f"{notebook}_exercises.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(instructor_notebook(notebook), path)
        written.append(path)
    return written


def grader(root: Path) -> NbGraderAPI:
    """Open nbgrader's Python API on the course folder `root`, configured by its nbgrader_config.py."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    scripts = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH to open the gradebook
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    return NbGraderAPI(coursedir=CourseDirectory(root=str(root), config=config), config=config)


def release(root: Path, notebooks: list[str]) -> None:
    """Write the instructor notebooks, then generate each student version into root/release/."""
    write_source(root, notebooks)
    api = grader(root)
    for notebook in notebooks:
        result = api.generate_assignment(notebook)
        if not result["success"]:
            raise SystemExit(f"nbgrader generate_assignment {notebook} failed:\n"
                             f"{result['log']}{result.get('error', '')}")
        print(f"{notebook}: {shown(root / 'release' / notebook)}")


def main(argv: list[str] | None = None) -> int:
    """Generate the assignments (all notebooks with coding exercises, or those named)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=None,
                        help="the nbgrader course folder (default outputs/classroom)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 05 07")
    args = parser.parse_args(argv)
    notebooks = [nb for nb in graded_notebooks() if not args.only or nb.startswith(tuple(args.only))]
    if not notebooks:
        raise SystemExit(f"No notebook with exercises matches {args.only}; they are: {', '.join(graded_notebooks())}")
    release((args.root or outputs_root() / "classroom").absolute(), notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
