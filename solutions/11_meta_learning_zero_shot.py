"""Notebook 11's coding exercises, solved."""

import numpy as np
import torch


def fomaml_gradient(params: dict, loss_fn, support: tuple, query: tuple, lr: float) -> dict:
    """Exercise 11.1: FOMAML's meta-gradient of one task, the query gradient at the adapted parameters."""
    grads = torch.autograd.grad(loss_fn(params, *support), list(params.values()))
    adapted = {name: (p - lr * g).detach().requires_grad_() for (name, p), g in zip(params.items(), grads, strict=True)}
    query_grads = torch.autograd.grad(loss_fn(adapted, *query), list(adapted.values()))
    return dict(zip(params, query_grads, strict=True))


def dap_class_scores(attribute_probs: np.ndarray, signatures: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Exercise 11.2: DAP's log score of every class for every image: shape (images, classes)."""
    match = np.log(attribute_probs) @ signatures.T + np.log(1 - attribute_probs) @ (1 - signatures).T
    return match - (signatures @ np.log(prior) + (1 - signatures) @ np.log(1 - prior))
