"""Few-shot episodes, multi-task batches, and block-wise copying and freezing (notebook 09's plumbing).

The lesson's code (prototypes, the cosine classifier, the multi-task loss, the AnB/BnB loop) is in notebook 09;
here are the parts that must be exactly right and are tested: episodes with disjoint, class-balanced support and
query sets, confidence intervals over episodes, and copying or freezing the first n blocks of the course network,
BatchNorm statistics included.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models
from .torch_data import endless_batches

PARTS = ("all", "few_shot", "multi_task", "transferability")
VARIANTS = ("AnB", "AnB+", "BnB", "BnB+")  # Yosinski et al. (2014): copied from A or B, frozen or fine-tuned (+)


def sample_episode(labels: np.ndarray, n_way: int, k_shot: int, query: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw an N-way K-shot episode: (support indices, query indices, the N classes), disjoint and balanced.

    Support and query hold exactly `k_shot` and `query` images of each chosen class, never the same image twice.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if not 2 <= n_way <= len(classes):
        raise ValueError(f"N_WAY={n_way} is out of range: an episode needs 2 to {len(classes)} classes "
                         f"(the task has {len(classes)})")
    if k_shot < 1 or query < 1 or k_shot + query > counts.min():
        raise ValueError(f"K={k_shot} support plus {query} query images per class need {k_shot + query} images "
                         f"of each class; the smallest class has {counts.min()}: use K + query <= {counts.min()}")
    chosen = rng.choice(classes, n_way, replace=False)
    support, queries = [], []
    for label in chosen:
        picked = rng.choice(np.flatnonzero(labels == label), k_shot + query, replace=False)
        support.append(picked[:k_shot])
        queries.append(picked[k_shot:])
    return np.concatenate(support), np.concatenate(queries), chosen


def mean_interval(values: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean over episodes and the half-width of its normal-approximation confidence interval."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2)
    return float(values.mean()), float(z * values.std(ddof=1) / np.sqrt(len(values)))


def accuracy_noise(accuracy: float, n: int) -> float:
    """95% half-width of one accuracy measured on n test images (binomial: test sampling only, not seeds)."""
    return float(1.96 * np.sqrt(accuracy * (1 - accuracy) / n))


def gap_noise(acc_a: float, acc_b: float, n: int) -> float:
    """95% half-width of the gap between two accuracies, each on n test images (binomial, test sampling only)."""
    return float(np.hypot(accuracy_noise(acc_a, n), accuracy_noise(acc_b, n)))


def widened(low: float, high: float, width: float = 0.15) -> tuple[float, float]:
    """Axis limits at least `width` wide around (low, high), so a one-point gap does not fill the plot."""
    if high - low >= width:
        return low, high
    middle = (low + high) / 2
    return middle - width / 2, middle + width / 2


def course_blocks(model: models.TransferNet) -> list[nn.Module]:
    """List the course network's L = 4 transferable blocks, input side first (the head excluded)."""
    return models.blocks_in_order(model)[:-1]


def check_blocks(n: int, model: models.TransferNet) -> int:
    """Refuse a block count outside 0..L, naming L."""
    total = len(course_blocks(model))
    if not 0 <= n <= total:
        raise ValueError(f"n={n} blocks is out of range: the course network has L={total} blocks, so n must be "
                         f"0 to {total}")
    return total


def copy_first_blocks(base: models.TransferNet, n: int, num_classes: int, seed: int) -> models.TransferNet:
    """Build a network whose first n blocks are `base`'s (weights and BatchNorm statistics), the rest random."""
    check_blocks(n, base)
    torch.manual_seed(seed)
    fresh = models.course_net(num_classes, _widths(base))
    for target, source in zip(course_blocks(fresh)[:n], course_blocks(base)[:n], strict=True):
        target.load_state_dict(copy.deepcopy(source.state_dict()))
    return fresh


def freeze_first_blocks(model: models.TransferNet, n: int) -> list[nn.Module]:
    """Freeze the first n blocks (no gradients) and return them, for the loop to keep in eval mode (BatchNorm)."""
    check_blocks(n, model)
    frozen = course_blocks(model)[:n]
    for block in frozen:
        for parameter in block.parameters():
            parameter.requires_grad = False
    return frozen


def _widths(model: models.TransferNet) -> tuple[int, int, int, int]:
    """Read the widths (stem, stages) back from a course network."""
    f = model.features
    return (f.stem[0].out_channels, f.stage1.widen[0].out_channels, f.stage2.widen[0].out_channels,
            f.stage3.widen[0].out_channels)


def block_state(model: models.TransferNet, n: int) -> dict[str, torch.Tensor]:
    """Copy the first n blocks' parameters and buffers (running statistics too), to check what training changed."""
    return {f"{i}.{name}": tensor.detach().clone() for i, block in enumerate(course_blocks(model)[:n])
            for name, tensor in block.state_dict().items()}


def mixed_batches(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], batch_size: int,
                  seed: int) -> Any:
    """Yield forever (images, labels, task) batches, half from each task's (images, labels), shuffled each pass.

    `task` is 0 for rows of the first task and 1 for the second, so a two-headed model scores each row with its
    own head.
    """
    half = batch_size // 2
    streams = [endless_batches(images, labels, half, seed + 1000 * task) for task, (images, labels) in
               enumerate((first, second))]
    while True:
        (xa, ya), (xb, yb) = next(streams[0]), next(streams[1])
        yield torch.cat([xa, xb]), torch.cat([ya, yb]), torch.cat([torch.zeros(len(ya)), torch.ones(len(yb))]).long()
