"""Notebook 08's coding exercises, solved."""

import numpy as np
import torch
from torch import nn


def kept_precision(probs: np.ndarray, true_labels: np.ndarray, threshold: float) -> tuple[int, float | None]:
    """Exercise 08.1: how many predictions reach the threshold, and the fraction of those that are right."""
    keep = probs.max(1) >= threshold
    if not keep.any():
        return 0, None
    return int(keep.sum()), float((probs.argmax(1)[keep] == true_labels[keep]).mean())


def distillation_loss_by_hand(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                              temperature: float, alpha: float) -> torch.Tensor:
    """Exercise 08.2: alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE."""
    log_student = (student_logits / temperature).log_softmax(1)
    log_teacher = (teacher_logits / temperature).log_softmax(1)
    soft = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean()  # 'batchmean': sum classes, mean rows
    hard = nn.functional.cross_entropy(student_logits, labels)
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard
