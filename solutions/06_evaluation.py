"""Notebook 06's coding exercise, solved."""

import numpy as np


def ece_by_hand(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """Exercise 06.1: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return total / len(labels)
