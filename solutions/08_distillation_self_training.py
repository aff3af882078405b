"""Notebook 08's coding exercise, solved."""

import numpy as np


def kept_precision(probs: np.ndarray, true_labels: np.ndarray, threshold: float) -> tuple[int, float | None]:
    """Exercise 08.1: how many predictions reach the threshold, and the fraction of those that are right."""
    keep = probs.max(1) >= threshold
    if not keep.any():
        return 0, None
    return int(keep.sum()), float((probs.argmax(1)[keep] == true_labels[keep]).mean())
