"""Metrics: scikit-learn-backed ones on known answers, the rest against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import metrics


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(0, 1, (400, 4))
    logits[np.arange(400), labels] += 1.5
    return labels, metrics.softmax(logits)


def test_summary_on_a_perfect_and_a_known_classifier(predictions):
    labels, probs = predictions
    perfect = metrics.classification_summary(labels, np.eye(4)[labels] * 0.9 + 0.025, list("abcd"))
    assert perfect["accuracy"] == perfect["macro_f1"] == perfect["roc_auc_ovr"] == 1.0
    summary = metrics.classification_summary(labels, probs, list("abcd"))
    assert summary["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert summary["top2_accuracy"] >= summary["accuracy"]
    recall_a = ((probs.argmax(1) == 0) & (labels == 0)).sum() / (labels == 0).sum()
    assert summary["per_class"]["a"]["recall"] == pytest.approx(recall_a)


def test_ece_matches_its_brute_force_definition(predictions):
    labels, probs = predictions
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    total = 0.0
    for low, high in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    assert metrics.expected_calibration_error(labels, probs, bins=10) == pytest.approx(total / len(labels))


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, (5000, 5))
    labels = np.array([rng.choice(5, p=p) for p in metrics.softmax(true_logits)])
    overconfident = true_logits * 2.5
    assert metrics.fit_temperature(labels, overconfident) == pytest.approx(2.5, rel=0.1)
    calibrated = metrics.softmax(overconfident, metrics.fit_temperature(labels, overconfident))
    assert metrics.expected_calibration_error(labels, calibrated) < metrics.expected_calibration_error(
        labels, metrics.softmax(overconfident))


def test_bootstrap_interval_brackets_accuracy_and_narrows_with_data():
    rng = np.random.default_rng(2)
    small_labels, big_labels = rng.integers(0, 2, 100), rng.integers(0, 2, 10000)
    flip = lambda y: np.where(rng.random(len(y)) < 0.8, y, 1 - y)
    accuracy, low, high = metrics.bootstrap_accuracy(small_labels, flip(small_labels))
    assert low <= accuracy <= high
    _, big_low, big_high = metrics.bootstrap_accuracy(big_labels, flip(big_labels))
    assert big_high - big_low < (high - low) / 4
    assert metrics.bootstrap_accuracy(small_labels, small_labels, seed=3) == metrics.bootstrap_accuracy(
        small_labels, small_labels, seed=3)


def test_confusion_and_most_confused_pairs():
    labels, preds = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 2, 2, 2])
    matrix = metrics.confusion(labels, preds, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 2], [0, 0, 1]]
    assert metrics.most_confused(matrix, ["a", "b", "c"], top=2) == [("b", "c", 2), ("a", "b", 1)]


def test_bad_inputs_say_what_was_expected(predictions):
    labels, probs = predictions
    with pytest.raises(ValueError, match="shape"):
        metrics.expected_calibration_error(labels[:-1], probs)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        metrics.softmax(probs, 0.0)
    with pytest.raises(ValueError, match="level"):
        metrics.bootstrap_accuracy(labels, labels, level=1.5)


def test_paired_bootstrap_difference_sees_a_real_gap_and_no_gap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 2000)
    good = np.where(rng.random(2000) < 0.9, labels, (labels + 1) % 5)
    worse = np.where(rng.random(2000) < 0.8, labels, (labels + 1) % 5)
    gap, low, high = metrics.bootstrap_difference(labels, good, worse)
    assert 0.05 < gap < 0.15 and 0 < low < gap < high
    gap, low, high = metrics.bootstrap_difference(labels, good, good)
    assert gap == low == high == 0
