"""Checks for the notebooks' coding exercises: run the learner's function on fresh inputs, say pass or fail.

A check never raises: a wrong answer, or a function that raises (the untouched stub raises
NotImplementedError), prints a one-line verdict with a hint instead of a stack trace. The reference solutions
live outside the notebooks, in `solutions/` (one file per notebook), so the answer is not one scroll away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics, models
from . import transfer_math as tm

Check = Callable[[Callable[..., Any]], str | None]  # returns None when right, else what is wrong
CHECKS: dict[str, tuple[str, Check]] = {}


def exercise(key: str, title: str) -> Callable[[Check], Check]:
    """Register a check under its exercise key ("notebook.number")."""
    def register(check: Check) -> Check:
        CHECKS[key] = (title, check)
        return check
    return register


def check(key: str, answer: Callable[..., Any]) -> bool:
    """Run one exercise's check on the learner's function, print a verdict, and return whether it passed."""
    if key not in CHECKS:
        raise ValueError(f"Unknown exercise {key!r}; exercises with a check: {', '.join(sorted(CHECKS))}")
    title, run = CHECKS[key]
    try:
        problem = run(answer)
    except NotImplementedError:
        problem = "not written yet: replace the `raise NotImplementedError` line with your code"
    except Exception as error:  # noqa: BLE001 - any mistake in the learner's code becomes a message
        problem = f"your function raised {type(error).__name__}: {error}"
    print(f"✅ Exercise {key} ({title}): correct." if problem is None else f"❌ Exercise {key} ({title}): {problem}")
    return problem is None


# --------------------------------------------------------------------------------------------- notebook 02

@exercise("02.1", "fold a standardisation into a linear layer")
def _fold(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(11)
    mean, scale = rng.normal(size=6), rng.uniform(0.5, 2, 6)
    weight, bias = rng.normal(size=(3, 6)), rng.normal(size=3)
    folded_weight, folded_bias = (np.asarray(v, dtype=float) for v in answer(weight, bias, mean, scale))
    if folded_weight.shape != weight.shape or folded_bias.shape != bias.shape:
        return f"expected shapes {weight.shape} and {bias.shape}, got {folded_weight.shape} and {folded_bias.shape}"
    x = rng.normal(size=(20, 6))
    gap = np.abs(x @ folded_weight.T + folded_bias - (((x - mean) / scale) @ weight.T + bias)).max()
    return None if gap < 1e-8 else (f"W'x + b' differs from W (x - mean) / scale + b by up to {gap:.3g}; divide "
                                    "each column of W by its scale, then move the mean into the bias")


# --------------------------------------------------------------------------------------------- notebook 05

def _trainable(model: nn.Module) -> int:
    """Count the parameters that will receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@exercise("05.1", "freeze all but the last residual stage and the head")
def _freeze(answer: Callable[..., Any]) -> str | None:
    model = models.course_net()
    count = answer(model)
    open_names = {name.split(".")[1] if name.startswith("features.") else name.split(".")[0]
                  for name, p in model.named_parameters() if p.requires_grad}
    if open_names != {"stage3", "norm", "head"}:
        return (f"trainable parts are {sorted(open_names)}; expected stage3, the feature norm and the head (set "
                "requires_grad False on every other parameter)")
    if count != _trainable(model):
        return f"you returned {count}, but {_trainable(model):,} parameters are trainable"
    return None


@exercise("05.2", "the L2-SP penalty")
def _l2sp(answer: Callable[..., Any]) -> str | None:
    torch.manual_seed(5)
    start = [torch.randn(4, 3), torch.randn(4)]
    moved = [(s + 0.1 * torch.randn_like(s)).requires_grad_() for s in start]
    head = [torch.randn(2, 4, requires_grad=True)]
    got = answer(moved, start, head, 0.01, 0.001)
    want = tm.l2sp_penalty(moved, start, head, 0.01, 0.001)
    if not torch.is_tensor(got) or not got.requires_grad:
        return "return a tensor that gradients flow through (use torch operations, not .item() or numpy)"
    if not torch.allclose(got, want, rtol=1e-5):
        return (f"got {got.item():.6f}, expected {want.item():.6f}: alpha/2 times the squared distance of the "
                "transferred weights from their start, plus beta/2 times the squared norm of the new head")
    return None


# --------------------------------------------------------------------------------------------- notebook 06

@exercise("06.1", "expected calibration error by hand")
def _ece(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4))
    logits[np.arange(500), labels] += 1.0
    probs = metrics.softmax(logits, 0.5)
    got, want = float(answer(labels, probs, 10)), metrics.expected_calibration_error(labels, probs, bins=10)
    if abs(got - want) > 1e-9:
        return (f"got {got:.5f}, expected {want:.5f}: bin by confidence (the top probability) into equal-width "
                "bins on [0, 1], and weight each bin's |accuracy - mean confidence| by its share of the images")
    return None
