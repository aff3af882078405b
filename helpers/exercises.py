"""Checks for the notebooks' coding exercises: run the learner's function on fresh inputs, say pass or fail.

A check never raises: a wrong answer, or a function that raises (the untouched stub raises
NotImplementedError) or runs too long, prints a one-line verdict with a hint instead of a stack trace. Every
number an answer gives is compared by `expect`, which refuses NaN, infinities, wrong shapes and wrong types (a
string, None, a list where one number is due). The reference solutions live outside the notebooks, in
`solutions/` (one file per notebook), so the answer is not one scroll away.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics, models, selfsup
from . import transfer_math as tm

Check = Callable[[Callable[..., Any]], str | None]  # returns None when right, else what is wrong
CHECKS: dict[str, tuple[str, Check]] = {}
TIME_LIMIT_S = 20.0  # the longest one call of the learner's function may run before the check stops it


class WrongAnswer(Exception):
    """An answer that fails a check; its message is the verdict (raised by `expect`, reported by `problem`)."""


class TimeUp(BaseException):
    """The learner's function ran past the time limit (a BaseException: its own `except Exception` cannot hide it)."""


def exercise(key: str, title: str) -> Callable[[Check], Check]:
    """Register a check under its exercise key ("notebook.number")."""
    def register(check: Check) -> Check:
        CHECKS[key] = (title, check)
        return check
    return register


def call_with_time_limit(function: Callable[..., Any], args: tuple, kwargs: dict, seconds: float | None) -> Any:
    """Call `function`, raising TimeUp inside it after `seconds`, so an endless loop ends with a message.

    The timer is SIGALRM (signal.setitimer), which only the main thread can use, as in a notebook kernel; off the
    main thread, on Windows (no setitimer), or with `seconds` None or infinite, the function runs without a limit.
    A timer already set by someone else is put back afterwards, less the time used.
    """
    if (seconds is None or not math.isfinite(seconds) or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        return function(*args, **kwargs)

    def ring(signum: int, frame: Any) -> None:
        """Stop the learner's function where it is."""
        raise TimeUp

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, ring)
    outer_delay, outer_interval = 0.0, 0.0
    try:
        outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
        try:
            return function(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # skipped only when the one-shot timer has already rung
    finally:
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - started), 1e-3), outer_interval)


def problem(key: str, answer: Callable[..., Any], time_limit: float | None = None) -> str | None:
    """Run one exercise's check on the learner's function: None when right, else what is wrong (never raises).

    Each call of the learner's function may run `time_limit` seconds (TIME_LIMIT_S when None; see
    `call_with_time_limit` for where a limit applies).
    """
    if key not in CHECKS:
        raise ValueError(f"Unknown exercise {key!r}; exercises with a check: {', '.join(sorted(CHECKS))}")
    limit = TIME_LIMIT_S if time_limit is None else time_limit

    def timed(*args: Any, **kwargs: Any) -> Any:
        """Run the learner's function under the time limit."""
        return call_with_time_limit(answer, args, kwargs, limit)

    try:
        return CHECKS[key][1](timed)
    except WrongAnswer as wrong:
        return str(wrong)
    except NotImplementedError:
        return "not written yet: replace the `raise NotImplementedError` line with your code"
    except TimeUp:
        return (f"your function ran longer than {limit:g} s: it was stopped; look for a loop that never ends (a "
                "`while` whose condition stays true), or work on whole arrays instead of looping")
    except Exception as error:  # noqa: BLE001 - any mistake in the learner's code becomes a message
        return f"your function raised {type(error).__name__}: {error}"


def check(key: str, answer: Callable[..., Any], time_limit: float | None = None) -> None:
    """Print the verdict on the learner's function: correct, or what is wrong."""
    found = problem(key, answer, time_limit)
    title = CHECKS[key][0]
    print(f"✅ Exercise {key} ({title}): correct." if found is None else f"❌ Exercise {key} ({title}): {found}")


# ------------------------------------------------------------------------------------------ comparing answers

def _describe(value: Any) -> str:
    """Name what an answer is, for a message about its type."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, np.ndarray) or torch.is_tensor(value):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _as_numbers(got: Any, want: np.ndarray) -> np.ndarray:
    """Turn an answer into a numeric array shaped like `want`, or raise WrongAnswer naming what is wrong with it."""
    kinds = "biuf" if want.dtype.kind == "b" else "iuf"
    if want.ndim == 0:  # one number is due: a Python or NumPy number, or a 0-d array or tensor
        numeric = isinstance(got, (int, float, np.integer, np.floating)) and not isinstance(got, (bool, np.bool_))
        if not numeric and not ((isinstance(got, np.ndarray) or torch.is_tensor(got)) and got.ndim == 0):
            raise WrongAnswer(f"expected a number, got {_describe(got)}")
        array = np.asarray(got.detach().cpu() if torch.is_tensor(got) else got)
        if array.dtype.kind not in kinds:
            raise WrongAnswer(f"expected a number, got {_describe(got)}")
        return array
    if got is None or isinstance(got, (str, bytes)):
        raise WrongAnswer(f"expected an array of numbers of shape {want.shape}, got {_describe(got)}")
    try:
        array = np.asarray(got.detach().cpu() if torch.is_tensor(got) else got)
    except (TypeError, ValueError, RuntimeError) as error:
        raise WrongAnswer(f"expected an array of numbers of shape {want.shape}, got {_describe(got)} ({error})"
                          ) from None
    if array.dtype.kind not in kinds:
        raise WrongAnswer(f"expected an array of numbers of shape {want.shape}, got {_describe(got)} of "
                          f"{array.dtype} values")
    if array.shape != want.shape:
        raise WrongAnswer(f"expected shape {want.shape}, got shape {array.shape}")
    return array


def expect(got: Any, want: Any, hint: str = "", *, rtol: float = 1e-9, atol: float = 0.0, name: str = "") -> None:
    """Raise WrongAnswer unless `got` is close to `want` (math.isclose semantics: NaN and inf are never close).

    Types and shapes are checked first, so a string, None or a list where one number is due, or an array of another
    shape, is named as such; `name` says which part of the answer is meant, `hint` how to get it right.
    """
    expected = np.asarray(want.detach().cpu() if torch.is_tensor(want) else want)
    try:
        array = _as_numbers(got, expected)
        values, target = array.astype(float), expected.astype(float)
        broken = ~np.isfinite(values) & np.isfinite(target)
        if broken.any():
            raise WrongAnswer(f"got {values.item():g}, not a finite number" if values.ndim == 0 else
                              f"{int(broken.sum())} of the values are NaN or infinite")
        if not np.allclose(values, target, rtol=rtol, atol=atol, equal_nan=True):
            gap = float(np.nanmax(np.abs(values - target)))
            raise WrongAnswer(f"got {values.item():.6g}, expected {target.item():.6g}" if values.ndim == 0 else
                              f"the values differ from the expected ones by up to {gap:.3g}")
    except WrongAnswer as wrong:
        message = f"{name}: {wrong}" if name else str(wrong)
        raise WrongAnswer(f"{message}; {hint}" if hint else message) from None


def parts(result: Any, count: int, what: str) -> tuple:
    """Return the `count` values a function was asked to return, or raise WrongAnswer saying it returned otherwise."""
    if not isinstance(result, (tuple, list)) or len(result) != count:
        raise WrongAnswer(f"return {what} ({count} values), not {_describe(result)}"
                          + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return tuple(result)


# --------------------------------------------------------------------------------------------- notebook 02

@exercise("02.1", "fold a standardisation into a linear layer")
def _fold(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(11)
    mean, scale = rng.normal(size=6), rng.uniform(0.5, 2, 6)
    weight, bias = rng.normal(size=(3, 6)), rng.normal(size=3)
    folded_weight, folded_bias = parts(answer(weight, bias, mean, scale), 2, "the folded weight W' and bias b'")
    want_weight = weight / scale  # the only W', b' with W'x + b' = W (x - mean) / scale + b for every x
    hint = ("W'x + b' must equal W (x - mean) / scale + b for every x: divide each column of W by its scale, then "
            "move the mean into the bias")
    expect(folded_weight, want_weight, hint, atol=1e-8, name="W'")
    expect(folded_bias, bias - want_weight @ mean, hint, atol=1e-8, name="b'")
    return None


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
    expect(count, _trainable(model), f"return how many parameters are trainable, {_trainable(model):,}", rtol=0,
           name="the count you returned")
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
    expect(got, want, "alpha/2 times the squared distance of the transferred weights from their start, plus beta/2 "
           "times the squared norm of the new head", rtol=1e-5, atol=1e-8)
    return None


# --------------------------------------------------------------------------------------------- notebook 06

@exercise("06.1", "expected calibration error by hand")
def _ece(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4))
    logits[np.arange(500), labels] += 1.0
    probs = metrics.softmax(logits, 0.5)  # confidences >= 1/4: the lowest bins stay empty, and the rest are uneven,
    # so averaging over bins (empty ones included or not) instead of weighting by images gives another number
    expect(answer(labels, probs, 10), metrics.expected_calibration_error(labels, probs, bins=10),
           "bin by confidence (the top probability) into equal-width bins on [0, 1], and weight each bin's "
           "|accuracy - mean confidence| by its share of the images", rtol=0, atol=1e-9)
    return None


# --------------------------------------------------------------------------------------------- notebook 00

@exercise("00.1", "images to the model's input")
def _to_input(answer: Callable[..., Any]) -> str | None:
    from .data import normalization

    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    mean, std = (np.array(v) for v in normalization("cifar10"))
    want = ((images / 255 - mean) / std).transpose(0, 3, 1, 2)
    got = answer(images)
    expect(got, want, "scale to [0, 1] first, then subtract the channel mean and divide by the channel standard "
           "deviation, and put the channels first: (N, channels, height, width)", rtol=0, atol=1e-5)
    if np.asarray(got).dtype != np.float32:
        return f"expected float32 (what the network takes), got {np.asarray(got).dtype}"
    return None


# --------------------------------------------------------------------------------------------- notebook 01

@exercise("01.1", "the target task from CIFAR-10")
def _target_subset(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 60)
    images = rng.integers(0, 256, (60, 4, 4, 3), dtype=np.uint8)
    got_images, got_labels = parts(answer(images, labels), 2, "the images and their labels")
    keep = labels >= 5
    expect(got_labels, labels[keep] - 5, f"keep the {keep.sum()} images of classes 5-9 and renumber their labels "
           "0-4 (class 5 becomes 0, ..., 9 becomes 4), in the original order", rtol=0, name="the labels")
    expect(got_images, images[keep], "the images must be those of classes 5-9, unchanged, in their original order",
           rtol=0, name="the images")
    return None


# --------------------------------------------------------------------------------------------- notebook 03

@exercise("03.1", "the steepest point of a range test")
def _steepest(answer: Callable[..., Any]) -> str | None:
    rates = list(np.geomspace(1e-4, 10, 60))
    log_rate = np.log(rates)
    curve = 2 - np.tanh(log_rate + 5) + 0.02 * np.sin(3 * log_rate) + np.exp(log_rate - 1)  # a range-test shape
    want = rates[int(np.gradient(curve, log_rate).argmin())]
    expect(answer(rates, curve), want, "take the slope of the curve against log(rate) (np.gradient(curve, "
           "np.log(rates))) and the rate where it is most negative", rtol=1e-5, atol=1e-8)
    return None


# --------------------------------------------------------------------------------------------- notebook 04

@exercise("04.1", "the warm-up cosine schedule")
def _schedule(answer: Callable[..., Any]) -> str | None:
    from .keras_models import import_keras

    keras = sys.modules.get("keras") or import_keras("tensorflow")  # notebook 04 has imported it already

    total, peak = 200, 0.05
    warmup = int(0.2 * total)
    keras_schedule = keras.optimizers.schedules.CosineDecay(peak / 25, decay_steps=total - warmup, alpha=0.0,
                                                            warmup_target=peak, warmup_steps=warmup)
    for step in (0, 10, 39, 40, 41, 100, 150, 199, 200, 240):
        expect(answer(step, total, peak), float(keras_schedule(step)), "warm up linearly from peak/25 over the first "
               "20% of steps, then decay with a cosine over the remaining total - warm-up steps, to zero at the end",
               rtol=0, atol=1e-6 * peak, name=f"at step {step} of {total}")
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
    expect(got, entropy(logits), "the entropy of each row's softmax, in nats (natural log)", rtol=1e-5, atol=1e-5)
    return None


@exercise("07.2", "the gradient-reversal layer")
def _reversal(answer: Callable[..., Any]) -> str | None:
    torch.manual_seed(7)
    for lambd in (0.7, 0.25):
        x = torch.randn(4, 3, requires_grad=True)
        upstream = torch.randn(4, 3)
        got = answer(x, lambd)
        if not torch.is_tensor(got) or got.shape != x.shape:
            return f"return a tensor shaped like the input {tuple(x.shape)}, not {_describe(got)}"
        expect(got.detach(), x.detach(), "going forward the layer is the identity: return x unchanged", atol=1e-7,
               name="the forward pass")
        if not got.requires_grad:
            return "the output carries no gradient: apply your torch.autograd.Function to x (`.apply(x, lambd)`)"
        (got * upstream).sum().backward()
        if x.grad is None:
            return "no gradient reached x: the output must be computed from x, not a detached copy"
        expect(x.grad, -lambd * upstream, "going back, multiply the incoming gradient by -lambda (and return None "
               "for lambda itself)", atol=1e-6, name=f"the gradient at lambda = {lambd}")
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
        kept, precision = parts(answer(probs, labels, threshold), 2, "the number kept and their precision")
        expect(kept, int(keep.sum()), "count the images whose top probability is >= the threshold", rtol=0,
               name=f"at threshold {threshold}, the number kept")
        hint = "the fraction of right pseudo-labels among the kept; None when nothing is kept"
        if not keep.any():
            if precision is not None:
                return f"at threshold {threshold}, the precision: nothing is kept, so expected None, got {precision!r}"
            continue
        if precision is None:
            return f"at threshold {threshold}, the precision: {keep.sum()} images are kept, so None is wrong; {hint}"
        expect(precision, float((probs.argmax(1)[keep] == labels[keep]).mean()), hint, rtol=0, atol=1e-9,
               name=f"at threshold {threshold}, the precision")
    return None


def _distillation_variants(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                           alpha: float) -> dict[str, torch.Tensor]:
    """Compute the plausible mistakes in a distillation loss, each under the hint that mends it."""
    log_student = (student / temperature).log_softmax(1)
    log_teacher = (teacher / temperature).log_softmax(1)
    kl_rows = (log_teacher.exp() * (log_teacher - log_student)).sum(1)  # KL(teacher || student), one per row
    reversed_rows = (log_student.exp() * (log_student - log_teacher)).sum(1)
    hard = nn.functional.cross_entropy(student, labels)
    mix = lambda soft, t2=temperature ** 2, a=alpha: a * t2 * soft + (1 - a) * hard  # noqa: E731
    return {"multiply the soft term by T² (without it its gradient shrinks like 1/T²)": mix(kl_rows.mean(), 1.0),
            "α weighs the soft (teacher) term and 1 - α the cross-entropy on the labels, as in section 1":
                mix(kl_rows.mean(), a=1 - alpha),
            "the KL divergence runs from the teacher to the student, KL(p_teacher || p_student): the teacher's "
            "probabilities weigh the log-ratio": mix(reversed_rows.mean()),
            "average the KL divergence over the batch (sum over classes, mean over rows: 'batchmean'), not sum it":
                mix(kl_rows.sum()),
            "average the KL divergence over the rows only ('batchmean'), not over rows and classes ('mean')":
                mix(kl_rows.mean() / student.shape[1])}


@exercise("08.2", "the distillation loss")
def _distillation_loss(answer: Callable[..., Any]) -> str | None:
    torch.manual_seed(8)
    for temperature, alpha in ((4.0, 0.9), (2.0, 0.3)):
        student, teacher = (torch.randn(16, 5) * 2).requires_grad_(), torch.randn(16, 5) * 3
        labels = torch.randint(0, 5, (16,))
        got = answer(student, teacher, labels, temperature, alpha)
        want = tm.distillation_loss(student, teacher, labels, temperature, alpha)
        if not torch.is_tensor(got) or not got.requires_grad:
            return "return a tensor that gradients flow through (use torch operations, not .item() or numpy)"
        for hint, wrong in _distillation_variants(student, teacher, labels, temperature, alpha).items():
            if got.shape == () and torch.isclose(got.detach(), wrong.detach(), rtol=1e-5, atol=1e-7):
                return (f"at T = {temperature:g}, α = {alpha:g} you got {got.item():.6g}, expected "
                        f"{want.item():.6g}: {hint}")
        expect(got, want, "α T² KL(softmax(teacher / T) || softmax(student / T)), averaged over the rows, plus "
               "(1 - α) times the cross-entropy of the student's logits with the labels", rtol=1e-5, atol=1e-7,
               name=f"at T = {temperature:g}, α = {alpha:g}")
    return None


# --------------------------------------------------------------------------------------------- notebook 09

@exercise("09.1", "accuracy over episodes with its interval")
def _episodes(answer: Callable[..., Any]) -> str | None:
    accuracies = np.random.default_rng(5).uniform(0.3, 0.9, 600)
    mean, half_width = parts(answer(accuracies), 2, "the mean and the half-width of its 95% interval")
    expect(mean, accuracies.mean(), "the mean accuracy over the episodes", rtol=0, atol=1e-9, name="the mean")
    expect(half_width, 1.96 * accuracies.std(ddof=1) / np.sqrt(len(accuracies)), "1.96 times the standard error, "
           "the sample standard deviation (ddof=1) over the square root of the number of episodes", rtol=0,
           atol=1e-6, name="the half-width")
    return None


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@exercise("09.2", "prototypes and the cosine classifier")
def _prototype_logits(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(9)
    n_way, dim, n_query = 4, 6, 7
    labels = rng.permutation(np.repeat(np.arange(n_way), [3, 1, 4, 2]))  # shuffled, unequal: not grouped by class
    centres = 3 * rng.normal(size=(n_way, dim))
    support = (centres[labels] + rng.normal(size=(len(labels), dim))) * rng.uniform(0.3, 4, (len(labels), 1))
    queries = (centres[rng.integers(0, n_way, n_query)] + rng.normal(size=(n_query, dim))) * rng.uniform(
        0.3, 4, (n_query, 1))
    got = answer(support.copy(), labels.copy(), queries.copy(), n_way)
    means = np.stack([support[labels == c].mean(0) for c in range(n_way)])
    want = _unit(queries) @ _unit(means).T
    hint = ("one row per query, one column per class 0 to n_way - 1; the prototype of class c is the mean of the "
            "support features labelled c (the support set is shuffled, not grouped by class); the cosine "
            "similarity divides both the query and the prototype by their L2 norms")
    try:
        expect(got, want, hint, rtol=0, atol=1e-5)
        return None
    except WrongAnswer as wrong:
        unit_means = np.stack([_unit(support)[labels == c].mean(0) for c in range(n_way)])
        try:  # prototypes as means of unit-length features (SimpleShot, the notebook's cosine_predict): also right
            expect(got, _unit(queries) @ _unit(unit_means).T, rtol=0, atol=1e-5)
            return None
        except WrongAnswer:
            pass
        first_seen = list(dict.fromkeys(labels.tolist()))
        bugs = {"nothing is normalised (a dot product, not a cosine)": queries @ means.T,
                "only the queries are normalised, not the prototypes": _unit(queries) @ means.T,
                "only the prototypes are normalised, not the queries": queries @ _unit(means).T,
                "the prototypes are per-class sums, and only the queries are normalised":
                    _unit(queries) @ (means * np.bincount(labels)[:, None]).T,
                "the means of unit-length features are not normalised again, so they are not cosines":
                    _unit(queries) @ unit_means.T,
                "the columns follow the order in which classes first appear in the support set, not 0 to n_way - 1":
                    want[:, first_seen]}
        try:
            values = _as_numbers(got, want).astype(float)
        except WrongAnswer:
            raise wrong from None
        for bug, output in bugs.items():
            if np.allclose(values, output, rtol=0, atol=1e-5):
                return f"{bug}; {hint}"
        raise wrong from None


# --------------------------------------------------------------------------------------------- notebook 11

def _toy_regression() -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Build a tiny float64 regressor with parameters that require grad, and data to take a step on."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    params = {name: p.detach().clone().requires_grad_() for name, p in net.named_parameters()}
    return net, params, torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)


@exercise("11.1", "first-order MAML's meta-gradient")
def _fomaml_gradient(answer: Callable[..., Any]) -> str | None:
    net, params, x, y = _toy_regression()
    loss_fn = lambda p, x_, y_: ((torch.func.functional_call(net, p, (x_,)) - y_) ** 2).mean()  # noqa: E731
    support, query, lr = (x, y), (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)), 0.3
    got = answer(dict(params), loss_fn, support, query, lr)
    if not isinstance(got, dict) or set(got) != set(params):
        return f"return a dict with the same names as params ({', '.join(params)}), not {_describe(got)}"
    names, values = list(params), list(params.values())
    inner = torch.autograd.grad(loss_fn(params, *support), values, create_graph=True)
    adapted = {n: p - lr * g for n, p, g in zip(names, values, inner, strict=True)}
    at_adapted = {n: v.detach().requires_grad_() for n, v in adapted.items()}
    want = dict(zip(names, torch.autograd.grad(loss_fn(at_adapted, *query), list(at_adapted.values())), strict=True))
    bugs = {"this is MAML's full meta-gradient (through the inner step); FOMAML treats the step as a constant":
                torch.autograd.grad(loss_fn(adapted, *query), values, retain_graph=True),
            "this is the query gradient at the starting parameters; take it at the adapted ones, after the step":
                torch.autograd.grad(loss_fn(params, *query), values),
            "this is the support loss's gradient; the meta-gradient comes from the query set":
                torch.autograd.grad(loss_fn(params, *support), values)}
    hint = ("take one step on the support set, theta' = theta - lr * grad, then the gradient of the query loss at "
            "theta' (detached from the step)")
    try:
        for name in names:
            expect(got[name], want[name], hint, rtol=0, atol=1e-9, name=name)
        return None
    except WrongAnswer as wrong:
        for bug, grads in bugs.items():
            try:
                for name, g in zip(names, grads, strict=True):
                    expect(got[name], g, rtol=0, atol=1e-9)
                return f"{bug}; {hint}"
            except WrongAnswer:
                continue
        return str(wrong)


@exercise("11.2", "DAP's class scores")
def _dap_scores(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(12)
    probs, signatures = rng.uniform(0.05, 0.95, (7, 5)), rng.integers(0, 2, (4, 5)).astype(float)
    prior = rng.uniform(0.2, 0.8, 5)
    got = answer(probs.copy(), signatures.copy(), prior.copy())
    match = np.log(probs) @ signatures.T + np.log(1 - probs) @ (1 - signatures).T
    want = match - (signatures @ np.log(prior) + (1 - signatures) @ np.log(1 - prior))
    hint = ("for class z, sum over attributes m of log p(a_m = a_m^z | x) - log p(a_m = a_m^z): log p where the "
            "class has the attribute, log(1 - p) where it does not, for both the image's probabilities and the prior")
    try:
        expect(got, want, hint, rtol=0, atol=1e-8)
        return None
    except WrongAnswer as wrong:
        bugs = {"attributes a class lacks contribute nothing (use log(1 - p) for them)":
                    np.log(probs) @ signatures.T - signatures @ np.log(prior),
                "the prior is not divided out": match,
                "the scores are probabilities multiplied, not summed logs": np.exp(want)}
        for bug, wrong_values in bugs.items():
            if isinstance(got, np.ndarray) and got.shape == want.shape and np.allclose(got, wrong_values, atol=1e-8):
                return f"{bug}; {hint}"
        return str(wrong)


@exercise("10.1", "the kNN monitor")
def _knn_classify(answer: Callable[..., Any]) -> str | None:
    rng = np.random.default_rng(10)
    memory, queries = rng.normal(size=(40, 6)) * rng.uniform(0.5, 3, (40, 1)), rng.normal(size=(25, 6))
    labels = rng.integers(0, 4, 40)
    hint = ("scale rows to unit length, take each query's k largest cosine similarities, add exp(similarity / "
            "temperature) to the vote of each neighbour's label, return the label with the most votes")
    for k, temperature in ((5, 0.1), (40, 1.0), (1, 0.07)):
        want = selfsup.knn_predict(memory, labels, queries, k, temperature)
        got = answer(memory.copy(), labels.copy(), queries.copy(), k, temperature)
        unweighted = selfsup.knn_predict(memory, labels, queries, k, 1e6)  # every neighbour one vote
        if isinstance(got, np.ndarray) and got.shape == want.shape and not np.array_equal(got, want) \
                and np.array_equal(got, unweighted):
            return f"the neighbours' votes are not weighted by exp(similarity / temperature); {hint}"
        expect(got, want.astype(float), hint, rtol=0, atol=0, name=f"labels with k = {k}")
    return None


def _brute_supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon's L_out by loops over anchors and positives: the definition, slowly."""
    z = torch.nn.functional.normalize(z, dim=1)
    total = []
    for i in range(len(z)):
        others = [k for k in range(len(z)) if k != i]
        denominator = torch.logsumexp(torch.stack([z[i] @ z[k] / temperature for k in others]), 0)
        positives = [p for p in others if labels[p] == labels[i]]
        total.append(torch.stack([denominator - z[i] @ z[p] / temperature for p in positives]).mean())
    return torch.stack(total).mean()


@exercise("10.2", "supervised contrastive loss")
def _supervised_contrastive(answer: Callable[..., Any]) -> str | None:
    generator = torch.Generator().manual_seed(10)
    z = torch.randn(12, 5, generator=generator, dtype=torch.float64) * 3
    labels = torch.tensor([0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 1, 3])  # each label twice or more: every anchor has a positive
    hint = ("normalize the rows; for anchor i, average over positives p (same label, p != i) of "
            "log-sum-exp over k != i of sim(i, k)/T minus sim(i, p)/T; then the mean over anchors")
    for temperature in (0.5, 0.1):
        want = _brute_supcon(z, labels, temperature)
        got = answer(z.clone(), labels.clone(), temperature)
        expect(got, want, hint, rtol=1e-6, atol=1e-9, name=f"the loss at temperature {temperature}")
    pairs = torch.arange(6).repeat(2)  # each image its own class: SupCon is NT-Xent
    expect(answer(z.clone(), pairs, 0.5), _brute_supcon(z, pairs, 0.5), "with one positive per anchor it must equal "
           "NT-Xent", rtol=1e-6, atol=1e-9, name="the loss with one positive per anchor")
    return None
