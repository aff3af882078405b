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


def test_bootstrap_difference_of_stacked_cells_is_a_main_effect():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 500)
    cells = [np.where(rng.random(500) < p, labels, (labels + 1) % 5) for p in (0.9, 0.8, 0.7, 0.5)]
    gap, low, high = metrics.bootstrap_difference(labels, np.stack(cells[:2]), np.stack(cells[2:]))
    accuracy = [float((c == labels).mean()) for c in cells]
    assert np.isclose(gap, (accuracy[0] + accuracy[1]) / 2 - (accuracy[2] + accuracy[3]) / 2) and low < gap < high
    assert metrics.bootstrap_difference(labels, cells[0], cells[1]) == metrics.bootstrap_difference(
        labels, cells[0][None], cells[1][None])  # one row is the plain difference


def test_bootstrap_interval_matches_scipy_bootstrap():
    from scipy import stats

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 1500)
    preds = np.where(rng.random(1500) < 0.8, labels, (labels + 1) % 5)
    _, low, high = metrics.bootstrap_accuracy(labels, preds, resamples=4000)
    reference = stats.bootstrap(((preds == labels).astype(float),), np.mean, method="percentile", n_resamples=4000,
                                rng=np.random.default_rng(7)).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.006) and high == pytest.approx(reference.high, abs=0.006)


def test_mcnemar_counts_discordant_images_and_follows_the_exact_binomial():
    labels = np.zeros(100, dtype=int)
    a = np.r_[np.zeros(70), np.ones(30)].astype(int)  # right on the first 70
    b = np.r_[np.ones(10), np.zeros(50), np.ones(40)].astype(int)  # right on images 10-59
    result = metrics.mcnemar(labels, a, b)
    assert (result["only_a"], result["only_b"]) == (20, 0)  # images 0-9 and 60-69 are A's alone; none are B's
    assert result["p_value"] == pytest.approx(2 * 0.5**20)  # all 20 discordant images on one side
    assert metrics.mcnemar(labels, a, a) == {"only_a": 0, "only_b": 0, "p_value": 1.0}


def test_paired_tests_see_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 2000)
    good = np.where(rng.random(2000) < 0.9, labels, (labels + 1) % 5)
    worse = np.where(rng.random(2000) < 0.8, labels, (labels + 1) % 5)
    twin = np.where(rng.random(2000) < 0.9, labels, (labels + 1) % 5)
    assert metrics.mcnemar(labels, good, worse)["p_value"] < 1e-6
    assert metrics.paired_permutation_p(labels, good, worse, resamples=999) < 0.01
    assert metrics.mcnemar(labels, good, twin)["p_value"] > 0.01


def test_one_vs_rest_curves_agree_with_the_summary_auc(predictions):
    labels, probs = predictions
    curves = metrics.one_vs_rest_curves(labels, probs)
    assert len(curves) == 4 and all(0.5 < c["auc"] <= 1 and 0 < c["average_precision"] <= 1 for c in curves)
    macro = np.mean([c["auc"] for c in curves])
    assert macro == pytest.approx(metrics.classification_summary(labels, probs, list("abcd"))["roc_auc_ovr"])


def test_equivalent_labels_interpolates_in_log_labels_on_a_monotone_curve():
    counts, accuracies = [10, 100, 1000], np.array([0.5, 0.7, 0.9])
    assert metrics.equivalent_labels(counts, accuracies, 0.6) == pytest.approx(np.sqrt(10 * 100))  # halfway in log
    assert metrics.equivalent_labels(counts, accuracies, 0.9) == pytest.approx(1000)
    assert metrics.equivalent_labels(counts, accuracies, 0.4) == 10  # reached with the fewest labels tried
    assert metrics.equivalent_labels(counts, accuracies, 0.95) == float("inf")  # not reached
    # a dip (0.65 < 0.7) is read as its running maximum: 0.7 is first reached at 100 labels
    assert metrics.equivalent_labels(counts, np.array([0.5, 0.7, 0.65]), 0.7) == pytest.approx(100)
    with pytest.raises(ValueError, match="increasing"):
        metrics.equivalent_labels([100, 10], accuracies[:2], 0.6)
    with pytest.raises(ValueError, match="one accuracy per label count"):
        metrics.equivalent_labels(counts, accuracies[:2], 0.6)


def test_labels_to_match_brackets_its_estimate_and_widens_when_the_curve_is_flat():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 2000)
    noisy = lambda accuracy: np.where(rng.random(2000) < accuracy, labels, (labels + 1) % 5)  # noqa: E731
    steep = {10: noisy(0.5), 100: noisy(0.8), 1000: noisy(0.95)}
    transfer = noisy(0.7)
    estimate, low, high = metrics.labels_to_match(labels, steep, transfer, resamples=500)
    assert low <= estimate <= high and 10 < low and high < 100
    flat = {10: noisy(0.68), 100: noisy(0.70), 1000: noisy(0.72)}
    _, flat_low, flat_high = metrics.labels_to_match(labels, flat, transfer, resamples=500)
    assert np.log(flat_high / flat_low) > np.log(high / low)  # a flat curve pins the label count down less
    _, _, beyond = metrics.labels_to_match(labels, {10: noisy(0.3), 100: noisy(0.4)}, transfer, resamples=200)
    assert beyond == float("inf")


def test_seed_interval_is_a_t_interval_across_seeds():
    from scipy import stats

    mean, low, high = metrics.seed_interval([0.01, 0.02, 0.03])
    assert mean == pytest.approx(0.02)
    assert high - mean == pytest.approx(stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3))
    assert low == pytest.approx(2 * mean - high)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        metrics.seed_interval([0.01])


def _predictions(labels, accuracy, rng):
    """Predictions right on about `accuracy` of the images."""
    wrong = rng.random(len(labels)) > accuracy
    return np.where(wrong, (labels + 1) % 5, labels)


def test_labels_to_match_over_seeds_reads_the_seed_mean_and_widens_with_seed_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 4000)
    curves = {s: {10: _predictions(labels, 0.6, rng), 100: _predictions(labels, 0.8, rng)} for s in range(3)}
    steady = {s: _predictions(labels, 0.7, rng) for s in range(3)}
    estimate, low, high = metrics.labels_to_match_over_seeds(labels, curves, steady, resamples=400)
    assert 25 < estimate < 40 and low < estimate < high  # 0.7 sits halfway in log labels: about 31.6
    noisy = {0: _predictions(labels, 0.62, rng), 1: _predictions(labels, 0.7, rng), 2: _predictions(labels, 0.78, rng)}
    _, noisy_low, noisy_high = metrics.labels_to_match_over_seeds(labels, curves, noisy, resamples=400)
    assert noisy_high - noisy_low > 2 * (high - low)  # the seed level is resampled, not only the test images
    assert metrics.labels_to_match_over_seeds(labels, curves, {s: labels for s in range(3)}, resamples=50)[0] == np.inf
