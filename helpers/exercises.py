"""Checks for the notebooks' coding exercises: run the learner's function on fresh inputs, say pass or fail.

A check never raises: a wrong answer, or a function that raises (the untouched stub raises
NotImplementedError), prints a one-line verdict with a hint instead of a stack trace. The reference solutions
live outside the notebooks, in `solutions/` (one file per notebook), so the answer is not one scroll away.
"""

from __future__ import annotations

import sys
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


def problem(key: str, answer: Callable[..., Any]) -> str | None:
    """Run one exercise's check on the learner's function: None when right, else what is wrong (never raises)."""
    if key not in CHECKS:
        raise ValueError(f"Unknown exercise {key!r}; exercises with a check: {', '.join(sorted(CHECKS))}")
    try:
        return CHECKS[key][1](answer)
    except NotImplementedError:
        return "not written yet: replace the `raise NotImplementedError` line with your code"
    except Exception as error:  # noqa: BLE001 - any mistake in the learner's code becomes a message
        return f"your function raised {type(error).__name__}: {error}"


def check(key: str, answer: Callable[..., Any]) -> None:
    """Print the verdict on the learner's function: correct, or what is wrong."""
    found = problem(key, answer)
    title = CHECKS[key][0]
    print(f"✅ Exercise {key} ({title}): correct." if found is None else f"❌ Exercise {key} ({title}): {found}")


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


# --------------------------------------------------------------------------------------------- notebook 00

@exercise("00.1", "images to the model's input")
def _to_input(answer: Callable[..., Any]) -> str | None:
    from .data import normalization

    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    mean, std = (np.array(v) for v in normalization("cifar10"))
    want = ((images / 255 - mean) / std).transpose(0, 3, 1, 2)
    got = np.asarray(answer(images))
    if got.shape != want.shape:
        return f"expected shape {want.shape} (N, channels, height, width), got {got.shape}"
    if got.dtype != np.float32:
        return f"expected float32 (what the network takes), got {got.dtype}"
    gap = float(np.abs(got - want).max())
    return None if gap < 1e-5 else (f"values differ by up to {gap:.3g}: scale to [0, 1] first, then subtract the "
                                    "channel mean and divide by the channel standard deviation")


# --------------------------------------------------------------------------------------------- notebook 01

@exercise("01.1", "the target task from CIFAR-10")
def _target_subset(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 60)
    images = rng.integers(0, 256, (60, 4, 4, 3), dtype=np.uint8)
    got_images, got_labels = answer(images, labels)
    keep = labels >= 5
    if len(got_labels) != keep.sum():
        return f"expected the {keep.sum()} images of classes 5-9, got {len(got_labels)}"
    if not np.array_equal(np.asarray(got_labels), labels[keep] - 5):
        return "the labels must be renumbered 0-4 (class 5 becomes 0, ..., 9 becomes 4), in the original order"
    if not np.array_equal(np.asarray(got_images), images[keep]):
        return "the images must be those of classes 5-9, in their original order"
    return None


# --------------------------------------------------------------------------------------------- notebook 03

@exercise("03.1", "the steepest point of a range test")
def _steepest(answer: Callable[..., Any]) -> str | None:
    rates = list(np.geomspace(1e-4, 10, 60))
    log_rate = np.log(rates)
    curve = 2 - np.tanh(log_rate + 5) + 0.02 * np.sin(3 * log_rate) + np.exp(log_rate - 1)  # a range-test shape
    want = rates[int(np.gradient(curve, log_rate).argmin())]
    got = float(answer(rates, curve))
    return None if np.isclose(got, want) else (f"got {got:.3g}, expected {want:.3g}: take the slope of the curve "
                                               "against log(rate) (np.gradient(curve, np.log(rates))) and the rate "
                                               "where it is most negative")


# --------------------------------------------------------------------------------------------- notebook 04

@exercise("04.1", "the warm-up cosine schedule")
def _schedule(answer: Callable[..., Any]) -> str | None:
    from .keras_models import import_keras

    keras = sys.modules.get("keras") or import_keras("tensorflow")  # notebook 04 has imported it already

    total, peak = 200, 0.05
    keras_schedule = keras.optimizers.schedules.CosineDecay(peak / 25, decay_steps=total, alpha=0.0,
                                                            warmup_target=peak, warmup_steps=int(0.2 * total))
    for step in (0, 10, 39, 40, 41, 100, 150, 199, 200):
        got, want = float(answer(step, total, peak)), float(keras_schedule(step))
        if abs(got - want) > 1e-6 * peak:
            return (f"at step {step} of {total} you give {got:.6f}, Keras {want:.6f}; warm up linearly from peak/25 "
                    "over the first 20% of steps, then decay with a cosine over `total` further steps")
    return None


# --------------------------------------------------------------------------------------------- notebook 07

@exercise("07.1", "the entropy TENT minimises")
def _entropy(answer: Callable[..., Any]) -> str | None:
    from .adaptation import entropy

    torch.manual_seed(2)
    logits = torch.cat([torch.randn(6, 5), torch.tensor([[200.0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0]])])
    got = answer(logits)
    if not torch.is_tensor(got) or got.shape != (8,):
        return "return one entropy per row: a tensor of shape (rows,)"
    if not torch.isfinite(got).all():
        return "some entropies are not finite: use log_softmax, not log(softmax), for very confident rows"
    want = entropy(logits)
    if not torch.allclose(got, want, atol=1e-5):
        return f"expected {want.numpy().round(4)}, got {got.detach().numpy().round(4)} (in nats: natural log)"
    return None


# --------------------------------------------------------------------------------------------- notebook 08

@exercise("08.1", "how right are the kept pseudo-labels?")
def _kept_precision(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5))
    logits[np.arange(400), labels] += 1.2
    probs = metrics.softmax(logits)
    for threshold in (0.5, 0.8, 0.999):
        keep = probs.max(1) >= threshold
        want = (int(keep.sum()), float((probs.argmax(1)[keep] == labels[keep]).mean()) if keep.any() else None)
        kept, precision = answer(probs, labels, threshold)
        if int(kept) != want[0]:
            return f"at threshold {threshold}: {want[0]} images have a top probability >= it, you kept {kept}"
        if (precision is None) != (want[1] is None) or (want[1] is not None and abs(precision - want[1]) > 1e-9):
            return (f"at threshold {threshold}: precision should be {want[1]} (right pseudo-labels among the kept; "
                    f"None when nothing is kept), got {precision}")
    return None


# --------------------------------------------------------------------------------------------- notebook 09

@exercise("09.1", "accuracy over episodes with its interval")
def _episodes(answer: Callable[..., Any]) -> str | None:
    accuracies = np.random.default_rng(5).uniform(0.3, 0.9, 600)
    mean, half_width = (float(v) for v in answer(accuracies))
    want = 1.96 * accuracies.std(ddof=1) / np.sqrt(len(accuracies))
    if abs(mean - accuracies.mean()) > 1e-9:
        return f"the mean should be {accuracies.mean():.4f}, got {mean:.4f}"
    if abs(half_width - want) > 1e-6:
        return (f"the half-width should be {want:.5f}, got {half_width:.5f}: 1.96 times the standard error, the "
                "sample standard deviation (ddof=1) over the square root of the number of episodes")
    return None
