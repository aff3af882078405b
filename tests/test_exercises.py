"""Every coding exercise's check passes on its reference solution and fails on the notebook's untouched stub."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from notebook_code import NOTEBOOKS, notebook_definition
from torch import nn

from helpers import exercises

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
CHECK_CALL = re.compile(r'exercises\.check\("([0-9.]+)", (\w+)\)')


def exercise_cells() -> list[tuple[str, str, str]]:
    """List (key, notebook, function) for every check cell the notebooks contain."""
    return [(key, path.stem, function) for path in sorted(NOTEBOOKS.glob("*.py"))
            for key, function in CHECK_CALL.findall(path.read_text())]


def solution(notebook: str, function: str):
    """Load the reference solution of one exercise from solutions/<notebook>.py."""
    spec = importlib.util.spec_from_file_location(f"solutions_{notebook}", SOLUTIONS / f"{notebook}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def test_every_check_has_one_cell_and_every_notebook_with_one_has_a_solution_file():
    keys = [key for key, _, _ in exercise_cells()]
    assert sorted(keys) == sorted(exercises.CHECKS) and len(set(keys)) == len(keys)
    assert {notebook for _, notebook, _ in exercise_cells()} == {path.stem for path in SOLUTIONS.glob("*.py")}


@pytest.mark.parametrize(("key", "notebook", "function"), exercise_cells())
def test_check_passes_on_the_solution_and_fails_on_the_stub(key, notebook, function):
    assert exercises.problem(key, solution(notebook, function)) is None
    stub = notebook_definition(notebook, function, {"np": np, "torch": torch, "nn": nn})
    assert "not written yet" in exercises.problem(key, stub)  # no exception escapes: the learner sees a message


def test_a_wrong_answer_gets_a_message_not_a_traceback(capsys):
    exercises.check("06.1", lambda labels, probs, bins: 0.5)
    assert "❌" in (out := capsys.readouterr().out) and "expected" in out
    exercises.check("05.1", lambda model: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    exercises.check("06.1", solution("06_evaluation", "ece_by_hand"))
    assert "✅" in capsys.readouterr().out
    with pytest.raises(ValueError, match="exercises with a check: 00.1"):
        exercises.problem("99.9", print)


def _reversal_ignoring_lambda(x: torch.Tensor, lambd: float) -> torch.Tensor:
    """A gradient-reversal layer that always reverses with strength 1."""
    return solution("07_domain_adaptation", "reverse_gradient")(x, 1.0)


@pytest.mark.parametrize("wrong", [lambda x, lambd: x, lambda x, lambd: -lambd * x, lambda x, lambd: x.detach(),
                                   _reversal_ignoring_lambda],
                         ids=["identity both ways", "negated forward", "detached", "lambda ignored"])
def test_the_gradient_reversal_check_fails_each_plausible_bug(wrong):
    assert exercises.problem("07.2", wrong) is not None


def _distillation_bug(t_squared: bool = True, swap_alpha: bool = False, reverse_kl: bool = False,
                      reduction: str = "batchmean"):
    """The distillation loss with one plausible slip, built with kl_div (not from the check's own code)."""
    def loss(student, teacher, labels, temperature, alpha):
        log_student, log_teacher = (student / temperature).log_softmax(1), (teacher / temperature).log_softmax(1)
        first, second = (log_teacher, log_student) if reverse_kl else (log_student, log_teacher)
        soft = nn.functional.kl_div(first, second, reduction=reduction, log_target=True)
        weight = 1 - alpha if swap_alpha else alpha
        hard = nn.functional.cross_entropy(student, labels)
        return weight * (temperature ** 2 if t_squared else 1.0) * soft + (1 - weight) * hard
    return loss


def test_the_distillation_loss_check_names_each_plausible_bug():
    assert exercises.problem("08.2", _distillation_bug()) is None  # kl_div's batchmean is the right reduction
    for bug, words in ((_distillation_bug(t_squared=False), "T²"), (_distillation_bug(swap_alpha=True), "α weighs"),
                       (_distillation_bug(reverse_kl=True), "teacher to the student"),
                       (_distillation_bug(reduction="sum"), "not sum"), (_distillation_bug(reduction="mean"), "'mean'"),
                       (lambda s, t, y, temperature, alpha: _distillation_bug()(s, t, y, temperature, alpha).item(),
                        "gradients")):
        assert words in exercises.problem("08.2", bug)
