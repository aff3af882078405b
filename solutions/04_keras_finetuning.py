"""Notebook 04's coding exercise, solved."""

import math


def warmup_cosine(step: int, total: int, peak: float) -> float:
    """Exercise 04.1: compile_and_fit's learning rate at a step (Keras CosineDecay with warm-up).

    At step = total it gives peak * (1 + cos(0.8 pi)) / 2, about 0.095 * peak: Keras counts the decay steps after
    the warm-up, so a decay of `total` steps is only 80% done when training stops, a tenth of the peak, not zero.
    """
    warmup = int(0.2 * total)
    start = peak / 25
    if step < warmup:
        return start + (peak - start) * step / warmup
    progress = min(step - warmup, total) / total  # Keras counts the decay steps after the warm-up
    return peak * 0.5 * (1 + math.cos(math.pi * progress))
