"""The math of feature and parameter transfer, as small functions that notebook 02 checks numerically.

Each function is the formula in the notebook, written plainly; the tests compare it with autograd, brute
force or scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def _check_positive(name: str, value: float) -> None:
    """Raise a clear error for a parameter that must be positive."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


# ---------------------------------------------------------------------------------------- feature transfer

def ridge_head(features: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Closed-form ridge head W = (XᵀX + λI)⁻¹ XᵀY on features with a bias column appended."""
    _check_positive("lam", lam)
    if len(features) != len(targets):
        raise ValueError(f"features and targets differ in rows: {len(features)} vs {len(targets)}")
    x = np.hstack([features, np.ones((len(features), 1))])
    penalty = lam * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not penalized
    return np.linalg.solve(x.T @ x + penalty, x.T @ targets)


def logistic_loss(weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """Mean multinomial cross-entropy of a linear head plus λ/2 ‖W‖²: strictly convex in W when λ > 0."""
    return nn.functional.cross_entropy(features @ weights, labels) + lam / 2 * (weights ** 2).sum()


def fit_probe_by_gradient_descent(features: torch.Tensor, labels: torch.Tensor, num_classes: int, lam: float,
                                  seed: int, steps: int = 500) -> torch.Tensor:
    """Minimize `logistic_loss` with L-BFGS from a random start; convexity means every start ends alike."""
    _check_positive("lam", lam)
    generator = torch.Generator().manual_seed(seed)
    weights = (torch.randn(features.shape[1], num_classes, generator=generator) * 3).requires_grad_()
    optimizer = torch.optim.LBFGS([weights], max_iter=steps, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        """Recompute the loss and its gradient for L-BFGS."""
        optimizer.zero_grad()
        loss = logistic_loss(weights, features, labels, lam)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


# -------------------------------------------------------------------------------------- parameter transfer

def relative_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    """‖w − w0‖ / ‖w0‖ for every weight tensor present in both (how far fine-tuning moved each layer)."""
    changes = {}
    for name, start in before.items():
        if name in after and start.dtype.is_floating_point and start.norm() > 0:
            changes[name] = ((after[name] - start).norm() / start.norm()).item()
    return changes


def l2sp_penalty(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], head: Sequence[torch.Tensor],
                 alpha: float, beta: float) -> torch.Tensor:
    """L2-SP (Li et al. 2018): α/2 Σ‖w − w0‖² over transferred weights + β/2 Σ‖v‖² over the new head."""
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
    if len(params) != len(anchors):
        raise ValueError(f"{len(params)} transferred tensors but {len(anchors)} anchors")
    for p, p0 in zip(params, anchors, strict=True):
        if p.shape != p0.shape:
            raise ValueError(f"a weight of shape {tuple(p.shape)} has an anchor of shape {tuple(p0.shape)}")
    drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, anchors, strict=True))
    return alpha / 2 * drift + beta / 2 * sum((v ** 2).sum() for v in head)


def l2sp_gradient(param: torch.Tensor, anchor: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return the L2-SP gradient on a transferred weight, α (w − w0): a spring back to the start, not to zero."""
    return alpha * (param - anchor)


def layerwise_lr_groups(blocks: Sequence[nn.Module], base_lr: float, decay: float) -> list[dict]:
    """Discriminative learning rates: the last block gets base_lr, each block below it `decay` times less."""
    _check_positive("base_lr", base_lr)
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    depth = len(blocks)
    return [{"params": list(block.parameters()), "lr": base_lr * decay ** (depth - 1 - i), "block": i}
            for i, block in enumerate(blocks)]


def unfreeze_schedule(num_blocks: int, epochs_per_stage: int) -> list[int]:
    """Gradual unfreezing (ULMFiT): for each epoch, how many top blocks are trainable (head first, then down)."""
    if num_blocks < 1 or epochs_per_stage < 1:
        raise ValueError(f"num_blocks and epochs_per_stage must be >= 1, got {num_blocks}, {epochs_per_stage}")
    return [stage for stage in range(1, num_blocks + 1) for _ in range(epochs_per_stage)]


def set_trainable_top(blocks: Sequence[nn.Module], count: int) -> None:
    """Make the top `count` blocks trainable and freeze the rest."""
    for i, block in enumerate(blocks):
        for parameter in block.parameters():
            parameter.requires_grad = i >= len(blocks) - count


# ------------------------------------------------------------------------------------------- domain shift

def gaussian_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """k(x, y) = exp(−‖x − y‖² / (2σ²)) for every pair of rows."""
    _check_positive("bandwidth", bandwidth)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be 2-D with the same number of columns, got {x.shape} and {y.shape}")
    squared = (x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-np.maximum(squared, 0) / (2 * bandwidth ** 2))


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float, unbiased: bool = True) -> float:
    """Squared maximum mean discrepancy between samples x and y (Gretton et al. 2012)."""
    kxx, kyy, kxy = gaussian_kernel(x, x, bandwidth), gaussian_kernel(y, y, bandwidth), gaussian_kernel(x, y, bandwidth)
    m, n = len(x), len(y)
    if unbiased:
        if m < 2 or n < 2:
            raise ValueError("the unbiased estimator needs at least 2 samples on each side")
        return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                     - 2 * kxy.mean())
    return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())


def mmd_permutation_test(x: np.ndarray, y: np.ndarray, bandwidth: float, permutations: int = 200,
                         seed: int = 0) -> tuple[float, float]:
    """Return (MMD², p-value): how often shuffling the pooled samples gives an MMD² at least as large."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    observed = mmd2(x, y, bandwidth)
    pooled, rng = np.vstack([x, y]), np.random.default_rng(seed)
    exceed = 0
    for _ in range(permutations):
        order = rng.permutation(len(pooled))
        exceed += mmd2(pooled[order[:len(x)]], pooled[order[len(x):]], bandwidth) >= observed
    return observed, (exceed + 1) / (permutations + 1)


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Return the median heuristic bandwidth: the median pairwise distance of the pooled samples."""
    pooled = np.vstack([x, y])
    distances = np.sqrt(np.maximum(((pooled[:, None] - pooled[None]) ** 2).sum(-1), 0))
    return float(np.median(distances[np.triu_indices(len(pooled), 1)]))


# ------------------------------------------------------------------------------------------- distillation

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. 2015: α T² KL(p_T^teacher ‖ p_T^student) + (1 − α) CE(student, labels).

    The T² keeps the soft term's gradients the same size as T changes (they shrink as 1/T² otherwise).
    """
    _check_positive("temperature", temperature)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    soft = nn.functional.kl_div(nn.functional.log_softmax(student_logits / temperature, dim=1),
                                nn.functional.log_softmax(teacher_logits / temperature, dim=1),
                                reduction="batchmean", log_target=True)
    return alpha * temperature ** 2 * soft + (1 - alpha) * nn.functional.cross_entropy(student_logits, labels)
