"""Notebook 04's coding exercise, solved."""

import math


def warmup_cosine(step: int, total: int, peak: float) -> float:
    """Exercise 04.1: compile_and_fit's learning rate at a step (Keras CosineDecay with warm-up).

    Keras counts `decay_steps` after the warm-up, so `compile_and_fit` passes total - warm-up and the cosine ends at
    zero on the last step, as notebook 05's one-cycle schedule does. With `decay_steps=total` the decay would be only
    80% done when training stops: the rate would end at peak * (1 + cos(0.8 pi)) / 2, about a tenth of the peak.
    """
    warmup = int(0.2 * total)
    start = peak / 25
    if step < warmup:
        return start + (peak - start) * step / warmup
    progress = min(step - warmup, total - warmup) / (total - warmup)  # 0 after the warm-up, 1 at the last step
    return peak * 0.5 * (1 + math.cos(math.pi * progress))
