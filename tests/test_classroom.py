"""`make release` end to end: nbgrader generates every assignment, and autograding gives made-up students the marks
their answers deserve (reference solutions: full marks in every assignment; the untouched student version: zero; one
wrong answer: partial credit with the check's message in the feedback). A scratch course folder and gradebook in
tmp_path; no model is trained.
"""

from __future__ import annotations

import html
import inspect
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from helpers import classroom, exercises

pytestmark = [pytest.mark.slow,  # a dozen kernels import torch and run the checks: minutes
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]  # nbgrader 0.9 on SQLAlchemy 2


def wrong_l2sp(params, anchors, head, alpha, beta):
    """L2-SP without the head's term: a plausible slip."""
    return alpha / 2 * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, anchors, strict=True))


def submit(root: Path, student: str, notebook: str, answer: nbformat.NotebookNode) -> None:
    """Put one student's notebook where `nbgrader collect` would: submitted/<student>/<assignment>/."""
    folder = root / "submitted" / student / notebook
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(answer, folder / f"{notebook}_exercises.ipynb")


def grade(root: Path, student: str, notebook: str) -> tuple[float, float]:
    """Autograde one submission; return its score and the assignment's maximum."""
    result = classroom.grader(root).autograde(notebook, student)
    assert result["success"], result["log"] + result.get("error", "")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(notebook, student)
        return submission.score, submission.max_score


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate every assignment into a scratch course folder."""
    root = tmp_path_factory.mktemp("classroom")
    classroom.release(root, classroom.graded_notebooks())
    return root


def test_every_exercise_is_graded_once_and_the_student_version_hides_the_solutions(course: Path):
    keys = []
    for notebook in classroom.graded_notebooks():
        released = nbformat.read(course / "release" / notebook / f"{notebook}_exercises.ipynb", as_version=4)
        text = "\n".join(cell.source for cell in released.cells)
        assert "BEGIN SOLUTION" not in text and "solutions/" not in text
        assert text.count("raise NotImplementedError()") == len(classroom.notebook_exercises(notebook))
        keys += [cell.metadata.nbgrader["grade_id"] for cell in released.cells if cell.metadata.nbgrader["grade"]]
    assert sorted(keys) == sorted(f"test_{key.replace('.', '_')}" for key in exercises.CHECKS)


@pytest.mark.parametrize("notebook", classroom.graded_notebooks())
def test_the_reference_solutions_get_full_marks(course: Path, notebook: str):
    answer = nbformat.read(course / "source" / notebook / f"{notebook}_exercises.ipynb", as_version=4)
    submit(course, "reference", notebook, answer)
    score, most = grade(course, "reference", notebook)
    assert score == most == len(classroom.notebook_exercises(notebook)) * classroom.POINTS


def test_the_untouched_student_version_gets_zero(course: Path):
    notebook = "05_pytorch_finetuning"  # two exercises; every stub failing its check is tests/test_exercises.py's
    submit(course, "stubs", notebook, nbformat.read(course / "release" / notebook / f"{notebook}_exercises.ipynb",
                                                    as_version=4))
    assert grade(course, "stubs", notebook) == (0, 2)


def test_one_wrong_answer_gets_partial_credit_and_the_checks_message(course: Path):
    notebook = "05_pytorch_finetuning"
    answer = nbformat.read(course / "source" / notebook / f"{notebook}_exercises.ipynb", as_version=4)
    [cell] = [cell for cell in answer.cells if cell.metadata.nbgrader.get("grade_id") == "solution_05_2"]
    cell.source = inspect.getsource(wrong_l2sp).replace("def wrong_l2sp", "def l2sp")
    submit(course, "partial", notebook, answer)
    assert grade(course, "partial", notebook) == (1, 2)
    result = classroom.grader(course).generate_feedback(notebook, "partial")
    assert result["success"], result["log"]
    feedback = (course / "feedback" / "partial" / notebook / f"{notebook}_exercises.html").read_text()
    message = exercises.problem("05.2", wrong_l2sp)
    assert message and html.escape(message, quote=False) in feedback, message
