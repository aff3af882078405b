"""Evaluation metrics: scikit-learn where it has the metric, small tested functions where it does not."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from scipy.optimize import minimize_scalar
from sklearn.metrics import (
    auc,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    """Refuse probability tables that do not match the labels."""
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be (n, classes) with n = {len(labels)} labels, got shape {probs.shape}")


def classification_summary(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, top-2 accuracy, macro and weighted F1, one-vs-rest ROC-AUC, and per-class P/R/F1."""
    _check(labels, probs)
    preds = probs.argmax(1)
    classes = np.arange(probs.shape[1])
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    return {
        "accuracy": float((preds == labels).mean()),
        "top2_accuracy": float(top_k_accuracy_score(labels, probs, k=2, labels=classes)),
        "macro_f1": float(f1_score(labels, preds, average="macro", labels=classes, zero_division=0)),
        "weighted_f1": float(f1_score(labels, preds, average="weighted", labels=classes, zero_division=0)),
        "roc_auc_ovr": float(roc_auc_score(labels, probs / probs.sum(1, keepdims=True), multi_class="ovr",
                                           labels=classes)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)},
    }


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix: rows are true classes, columns predicted ones."""
    return confusion_matrix(labels, preds, labels=np.arange(num_classes))


def most_confused(matrix: np.ndarray, class_names: list[str], top: int = 5) -> list[tuple[str, str, int]]:
    """Return the largest off-diagonal counts as (true class, predicted class, count)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1], off.shape))[0][:top]
    return [(class_names[i], class_names[j], int(off[i, j])) for i, j in order if off[i, j] > 0]


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (the data of a reliability diagram)."""
    _check(labels, probs)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    return {"edges": edges, "count": count, "confidence": np.bincount(which, confidence, bins) / safe,
            "accuracy": np.bincount(which, correct.astype(float), bins) / safe}


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over equal-width bins."""
    table = reliability(labels, probs, bins)
    return float((table["count"] * np.abs(table["accuracy"] - table["confidence"])).sum() / len(labels))


def fit_temperature(val_labels: np.ndarray, val_logits: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimizing validation NLL of softmax(logits / T)."""
    _check(val_labels, val_logits)

    def nll(log_t: float) -> float:
        """Mean negative log-likelihood at temperature exp(log_t)."""
        scaled = val_logits / np.exp(log_t)
        scaled = scaled - scaled.max(1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(1, keepdims=True))
        return float(-log_probs[np.arange(len(val_labels)), val_labels].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits / temperature
    scaled = np.exp(scaled - scaled.max(1, keepdims=True))
    return scaled / scaled.sum(1, keepdims=True)


def _bootstrap_interval(statistic: Callable[[np.ndarray], float], size: int, level: float, resamples: int, seed: int,
                        method: str = "linear") -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(indices)` over `size` test images drawn with replacement."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    rng = np.random.default_rng(seed)
    draws = [statistic(indices) for indices in rng.integers(0, size, (resamples, size))]
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], method=method)
    return float(low), float(high)


def _bootstrap_mean(values: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-image values with a percentile bootstrap interval over images: (mean, low, high)."""
    low, high = _bootstrap_interval(lambda indices: values[indices].mean(), len(values), level, resamples, seed)
    return float(values.mean()), low, high


def bootstrap_accuracy(labels: np.ndarray, preds: np.ndarray, level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Accuracy with a percentile bootstrap confidence interval: (accuracy, low, high)."""
    correct = (np.asarray(preds) == np.asarray(labels)).astype(float)
    return _bootstrap_mean(correct, level, resamples, seed)


def bootstrap_difference(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, level: float = 0.95,
                         resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same test images, with a paired bootstrap interval.

    A and B may each be several models' predictions, one row per model (k, images): each image's correctness is
    then averaged over the rows, so the difference is a main effect of a factorial grid (the mean of A's cells
    minus the mean of B's), still resampled image by image.
    """
    labels = np.asarray(labels)
    correct = lambda preds: (np.asarray(preds) == labels).reshape(-1, len(labels)).mean(0)  # noqa: E731
    gain = correct(preds_a) - correct(preds_b)
    return _bootstrap_mean(gain, level, resamples, seed)


def noise_verdict(low: float, high: float) -> str:
    """Read a 95% interval of a difference: within the test-set noise when it covers zero, else beyond it."""
    if low <= 0 <= high:
        return "covers zero: within the test-set noise"
    return "leaves out zero: beyond the test-set noise"


def one_vs_rest_curves(labels: np.ndarray, probs: np.ndarray) -> list[dict[str, np.ndarray | float]]:
    """Per class, its one-vs-rest ROC curve with AUC and precision-recall curve with average precision."""
    _check(labels, probs)
    curves = []
    for k in range(probs.shape[1]):
        positive = np.asarray(labels) == k
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        precision, recall, _ = precision_recall_curve(positive, probs[:, k])
        curves.append({"fpr": fpr, "tpr": tpr, "auc": float(auc(fpr, tpr)), "precision": precision,
                       "recall": recall, "average_precision": float(average_precision_score(positive, probs[:, k]))})
    return curves


def mcnemar(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test of two classifiers on the same images: equal accuracy, judged on disagreements.

    Only the discordant images count: `only_a` right by A alone, `only_b` by B alone. Under the null hypothesis
    (equal accuracy) each discordant image is a fair coin, so the p-value is a two-sided exact binomial test.
    """
    right_a, right_b = np.asarray(preds_a) == labels, np.asarray(preds_b) == labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_value = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p_value)}


def paired_permutation_p(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, resamples: int = 9999,
                         seed: int = 0) -> float:
    """Two-sided p-value for equal accuracy by swapping A's and B's answers image by image (scipy)."""
    right_a = (np.asarray(preds_a) == labels).astype(float)
    right_b = (np.asarray(preds_b) == labels).astype(float)
    result = stats.permutation_test((right_a, right_b), lambda a, b: a.mean() - b.mean(), permutation_type="samples",
                                    n_resamples=resamples, rng=np.random.default_rng(seed))
    return float(result.pvalue)


def equivalent_labels(counts: list[int], accuracies: np.ndarray, target: float) -> float:
    """Labels per class a learning curve needs to reach `target`, interpolated linearly in log(labels).

    The curve is made monotone first (its running maximum), since more labels never have to be worse. A target at or
    below the first point returns the first count (reached with the fewest labels tried); one above every point
    returns infinity (not reached within the labels tried).
    """
    if len(counts) != len(accuracies) or not counts:
        raise ValueError(f"need one accuracy per label count, got {len(counts)} counts and {len(accuracies)} values")
    if list(counts) != sorted(set(counts)) or counts[0] <= 0:
        raise ValueError(f"label counts must be positive and increasing, got {list(counts)}")
    curve = np.maximum.accumulate(np.asarray(accuracies, dtype=float))
    if target <= curve[0]:
        return float(counts[0])
    if target > curve[-1]:
        return float("inf")
    upper = int(np.argmax(curve >= target))  # first point at or above the target; the one before is below it
    low_acc, high_acc = curve[upper - 1], curve[upper]
    fraction = (target - low_acc) / (high_acc - low_acc)
    return float(np.exp(np.log(counts[upper - 1]) + fraction * (np.log(counts[upper]) - np.log(counts[upper - 1]))))


def seed_interval(values: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds with a Student-t interval across them, (mean, low, high): the seeds are the sample.

    It covers what changes with the seed (the labelled images drawn, the initial weights, the batch order) on one
    test set; with 3 seeds the t factor is 4.3, so only a steady difference clears it.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError(f"an interval across seeds needs at least 2 seeds, got {len(values)}")
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def labels_to_match_over_seeds(labels: np.ndarray, curves: dict[int, dict[int, np.ndarray]],
                               runs: dict[int, np.ndarray], level: float = 0.95, resamples: int = 2000, seed: int = 0
                               ) -> tuple[float, float, float]:
    """Labels per class a curve (scratch) needs to equal a run, over seeds, with a two-level bootstrap interval.

    `curves[s][n]` and `runs[s]` are seed s's predictions (scratch with n labels per class, the transfer run) on the
    same test images. The estimate reads the seed-averaged run off the seed-averaged curve. Each resample draws seeds
    with replacement, then test images with replacement (the same images for every run), so the interval covers the
    seed noise and the test-set noise together. Returns (estimate, low, high); infinity: beyond the counts tried.
    """
    seeds = sorted(set(curves) & set(runs))
    if not seeds:
        raise ValueError("no seed has both a curve and a run")
    counts = sorted(set.intersection(*(set(curves[s]) for s in seeds)))
    labels = np.asarray(labels)
    curve_right = np.stack([[np.asarray(curves[s][n]) == labels for n in counts] for s in seeds]).astype(float)
    right = np.stack([np.asarray(runs[s]) == labels for s in seeds]).astype(float)  # (seeds, images)
    estimate = equivalent_labels(counts, curve_right.mean((0, 2)), right.mean())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        picked, images = rng.integers(0, len(seeds), len(seeds)), rng.integers(0, len(labels), len(labels))
        draws.append(equivalent_labels(counts, curve_right[picked][:, :, images].mean((0, 2)),
                                       right[picked][:, images].mean()))
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")
    return estimate, float(low), float(high)


def labels_to_match(labels: np.ndarray, curve_preds: dict[int, np.ndarray], preds: np.ndarray, level: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Labels per class a curve's runs (e.g. scratch) need to equal one run, with a paired bootstrap interval.

    All runs share the test images, so each resample draws images once for every run: (estimate, low, high), where
    infinity means "more than the largest count tried".
    """
    labels = np.asarray(labels)
    counts = sorted(curve_preds)
    curve_right = np.stack([np.asarray(curve_preds[n]) == labels for n in counts]).astype(float)
    right = (np.asarray(preds) == labels).astype(float)
    estimate = equivalent_labels(counts, curve_right.mean(1), right.mean())
    matched = lambda idx: equivalent_labels(counts, curve_right[:, idx].mean(1), right[idx].mean())  # noqa: E731
    low, high = _bootstrap_interval(matched, len(labels), level, resamples, seed, method="inverted_cdf")  # no blending
    return estimate, low, high
