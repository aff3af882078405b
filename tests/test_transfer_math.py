"""The math of notebook 02, each formula checked against autograd, brute force or scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from torch import nn

from helpers import transfer_math as tm


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    return rng.normal(0, 1, (120, 5)) + np.eye(3, 5)[labels] * 2, labels


def test_ridge_head_matches_scikit_learn(blobs):
    features, labels = blobs
    targets = np.eye(3)[labels]
    ours = tm.ridge_head(features, targets, lam=0.7)
    reference = Ridge(alpha=0.7).fit(features, targets)
    np.testing.assert_allclose(ours[:-1], reference.coef_.T, atol=1e-8)
    np.testing.assert_allclose(ours[-1], reference.intercept_, atol=1e-8)


def test_regularized_probe_has_one_optimum_from_any_start(blobs):
    features, labels = (torch.tensor(a) for a in blobs)
    solutions = [tm.fit_probe_by_gradient_descent(features.float(), labels, 3, lam=0.01, seed=s) for s in range(3)]
    for other in solutions[1:]:
        torch.testing.assert_close(other, solutions[0], atol=1e-3, rtol=0)


def test_l2sp_gradient_matches_autograd():
    torch.manual_seed(0)
    weight, anchor, head = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3), torch.randn(2, 4,
                                                                                                 requires_grad=True)
    tm.l2sp_penalty([weight], [anchor], [head], alpha=0.3, beta=0.2).backward()
    torch.testing.assert_close(weight.grad, tm.l2sp_gradient(weight.detach(), anchor, 0.3))
    torch.testing.assert_close(head.grad, 0.2 * head.detach())


def test_l2sp_is_zero_at_the_start_and_rejects_bad_input():
    weight = torch.randn(3)
    assert tm.l2sp_penalty([weight], [weight.clone()], [], alpha=1.0, beta=1.0).item() == 0
    with pytest.raises(ValueError, match="shape"):
        tm.l2sp_penalty([weight], [torch.zeros(4)], [], 1.0, 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        tm.l2sp_penalty([weight], [weight], [], -1.0, 1.0)


def test_relative_change_is_zero_for_untouched_layers():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[1].weight.mul_(1.5)
    change = tm.relative_change(before, net.state_dict())
    assert change["0.weight"] == 0 and change["1.weight"] == pytest.approx(0.5)


def test_layerwise_rates_and_gradual_unfreezing():
    blocks = [nn.Linear(2, 2) for _ in range(3)]
    assert [g["lr"] for g in tm.layerwise_lr_groups(blocks, 0.1, 0.5)] == pytest.approx([0.025, 0.05, 0.1])
    assert tm.unfreeze_schedule(3, 2) == [1, 1, 2, 2, 3, 3]
    tm.set_trainable_top(blocks, 1)
    assert [b.weight.requires_grad for b in blocks] == [False, False, True]
    with pytest.raises(ValueError, match="decay"):
        tm.layerwise_lr_groups(blocks, 0.1, 0.0)


def test_mmd_estimators_match_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, (7, 2)), rng.normal(0.5, 1, (9, 2))
    k = lambda a, b: np.exp(-((a - b) ** 2).sum() / (2 * 0.8 ** 2))
    xx = [k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j]
    yy = [k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j]
    xy = [k(a, b) for a in x for b in y]
    assert tm.mmd2(x, y, 0.8) == pytest.approx(np.mean(xx) + np.mean(yy) - 2 * np.mean(xy))
    biased = np.mean([k(a, b) for a in x for b in x]) + np.mean([k(a, b) for a in y for b in y]) - 2 * np.mean(xy)
    assert tm.mmd2(x, y, 0.8, unbiased=False) == pytest.approx(biased)


def test_permutation_test_separates_shifted_from_identical_distributions():
    rng = np.random.default_rng(2)
    same = tm.mmd_permutation_test(rng.normal(0, 1, (40, 3)), rng.normal(0, 1, (40, 3)), 1.5, 100)
    shifted = tm.mmd_permutation_test(rng.normal(0, 1, (40, 3)), rng.normal(1, 1, (40, 3)), 1.5, 100)
    assert shifted[1] < 0.05 < same[1]


def test_mmd_rejects_bad_bandwidth_and_shapes():
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        tm.mmd2(np.zeros((3, 2)), np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="same number of columns"):
        tm.mmd2(np.zeros((3, 2)), np.zeros((3, 4)), 1.0)


def test_distillation_loss_matches_its_formula_and_keeps_gradient_scale():
    torch.manual_seed(0)
    teacher, labels = torch.randn(16, 5), torch.randint(0, 5, (16,))
    student = torch.randn(16, 5, requires_grad=True)
    loss = tm.distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.7)
    p_t, log_p_s = (teacher / 3).softmax(1), (student / 3).log_softmax(1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    expected = 0.7 * 9 * kl + 0.3 * nn.functional.cross_entropy(student, labels)
    torch.testing.assert_close(loss, expected)
    norms = {}
    for temperature in (2.0, 8.0):
        student.grad = None
        tm.distillation_loss(student, teacher, labels, temperature, alpha=1.0).backward()
        norms[temperature] = student.grad.norm().item()
    with_t2 = norms[8.0] / norms[2.0]
    without_t2 = with_t2 * 2.0 ** 2 / 8.0 ** 2
    assert 0.3 < with_t2 < 3 and without_t2 < 0.2  # T² keeps the soft gradients on the same scale


def test_distillation_rejects_bad_parameters():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        tm.distillation_loss(logits, logits, torch.zeros(2, dtype=torch.long), -1.0, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        tm.distillation_loss(logits, torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), 2.0, 0.5)
