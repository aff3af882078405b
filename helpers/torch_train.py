"""PyTorch plumbing: the training loop, evaluation, feature extraction with a disk cache, the linear probe."""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader

from . import runtime
from .paths import atomic_write, cache_dir, cached_files
from .progress import progress_bar

PROBE_STRENGTHS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # notebook 05's grid for the probe's C (the inverse L2 strength)


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to the device, channels-last (faster convolutions on CPU and GPU)."""
    return model.to(device, memory_format=torch.channels_last)


def set_train_mode(model: nn.Module, frozen: Iterable[nn.Module] = ()) -> None:
    """Put the model in training mode but keep frozen parts in eval mode, so their BatchNorm statistics stay."""
    model.train()
    for module in frozen:
        module.eval()


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, flip_tta: bool = False) -> dict[str, Any]:
    """Return loss, accuracy, predicted labels and class probabilities over a loader (optionally flip-averaged)."""
    model.eval()
    logits_all, labels_all = [], []
    with torch.no_grad(), runtime.autocast(device):
        for images, labels in loader:
            images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
            logits = model(images).float()
            if flip_tta:
                logits = (logits + model(images.flip(3)).float()) / 2
            logits_all.append(logits.cpu())
            labels_all.append(labels)
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    probs = logits.softmax(1)
    return {"loss": nn.functional.cross_entropy(logits, labels).item(),
            "acc": (probs.argmax(1) == labels).float().mean().item(),
            "preds": probs.argmax(1).numpy(), "probs": probs.numpy(), "labels": labels.numpy()}


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None, optimizer: torch.optim.Optimizer,
        num_epochs: int, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, frozen: Iterable[nn.Module] = (),
        desc: str = "training", validations: int = 15) -> list[dict[str, float]]:
    """Train for `num_epochs` (scheduler stepped per batch) in the device's precision; return per-epoch history.

    Validation runs about `validations` times, evenly spaced and always after the last epoch, so runs of many
    tiny epochs (few labels) do not spend their time validating.
    """
    frozen = list(frozen)
    validate_every = max(1, num_epochs // validations)
    history, scaler = [], runtime.grad_scaler(device)
    bar = progress_bar(range(1, num_epochs + 1), desc=desc, unit="epoch")
    for epoch in bar:
        start = time.perf_counter()
        set_train_mode(model, frozen)
        total_loss, correct, seen = 0.0, 0, 0
        for images, labels in train_loader:
            images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with runtime.autocast(device):
                logits = model(images)
                loss = loss_fn(logits, labels)
            runtime.optimizer_step(optimizer, loss, scaler)
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        row = {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen,
               "seconds": time.perf_counter() - start}
        if val_loader is not None and (epoch % validate_every == 0 or epoch == num_epochs):
            result = evaluate(model, val_loader, device)
            row.update(val_loss=result["loss"], val_acc=result["acc"])
        history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k not in ("epoch", "seconds")})
    return history


def extract_features(features: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True
                     ) -> np.ndarray:
    """Run a frozen extractor over a loader (eval mode) and return one feature row per image (a bar unless told)."""
    features.eval()
    rows = []
    with torch.no_grad(), runtime.autocast(device):
        for images, _ in progress_bar(loader, desc="extracting features", unit="batch", leave=False,
                                      disable=not progress):
            rows.append(features(images.to(device, memory_format=torch.channels_last)).float().cpu())
    return torch.cat(rows).flatten(1).numpy()


def data_key(identity: dict[str, Any]) -> str:
    """Identify data for a cache key: its content hash, or for generated (synthetic) data its full recipe and seed."""
    if identity.get("sha256"):
        return identity["sha256"]
    return repr(sorted((name, value) for name, value in identity.items() if name not in ("task", "classes")))


def _array_digest(values: np.ndarray) -> str:
    """Hash an array's dtype, shape and bytes, so a cache entry zeroed or cut at its right size is caught."""
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _read_features(path: Path) -> np.ndarray:
    """Read one feature cache entry and check it against the hash stored with it; raise ValueError when it differs."""
    with np.load(path, allow_pickle=False) as stored:
        values, stored_digest = stored["values"], str(stored["sha256"])
    if _array_digest(values) != stored_digest:
        raise ValueError("its values do not match the checksum stored with them")
    return values


def cached_features(key: dict[str, Any], compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, Path, bool]:
    """Return features from data/features/ when this exact key was computed before, else compute and store.

    Each entry stores its values with their checksum, verified on every read: a damaged entry (cut short, zeroed,
    rewritten) is named and recomputed. The store is atomic, so two runs computing the same entry both succeed. A
    read-only data root is read, and new entries go to the user cache.
    """
    name = f"{key.get('model', 'model')}-{hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:20]}.npz"
    for path in cached_files("features", name):
        try:
            return _read_features(path), path, True
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            print(f"Feature cache {path} is damaged ({error}); computing the features again.")
    values = compute()
    path = atomic_write(cache_dir("features") / name,
                        lambda stream: np.savez(stream, values=values, sha256=np.array(_array_digest(values))))
    return values, path, False


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, c: float = 1.0, seed: int = 0
                     ) -> tuple[StandardScaler, LogisticRegression]:
    """Fit multinomial logistic regression on standardized frozen features (a convex problem)."""
    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(scaler.transform(train_x), train_y)
    return scaler, probe


def folded_probe(scaler: StandardScaler, probe: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """Fold a probe's standardization into its weights: (W, b) with W x + b on raw features, W of shape (classes, d)."""
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    weight = probe.coef_ / scale
    return weight, probe.intercept_ - weight @ scaler.mean_


def probe_to_head(scaler: StandardScaler, probe: LogisticRegression, head: nn.Linear) -> None:
    """Copy a fitted probe into a linear head, folding the standardization into its weights and bias."""
    weight, bias = folded_probe(scaler, probe)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))


def labels_problem(strategy: str, labels_per_class: int | None, validation: str, cross_fit: int = 0) -> str | None:
    """Say why these labels cannot carry the run's cross-validation (checked before any training), or None.

    The honest probe (linear_probe, lp_ft) needs 2 labelled images per class; cross-fitting needs CROSS_FIT images
    per class, and each fold's LP-FT chooses its probe again on the other folds, which need 2 per class too.
    """
    if not labels_per_class:  # every training image is labelled
        return None
    probe = strategy in ("linear_probe", "lp_ft")
    if probe and validation == "labelled" and labels_per_class < 2:
        return (f"LABELS_PER_CLASS={labels_per_class}: STRATEGY={strategy!r} chooses the probe's C by cross-validation "
                "on the labelled images, which needs at least 2 per class; use 2 or more, or VALIDATION='oracle'")
    if cross_fit and labels_per_class < cross_fit:
        return (f"CROSS_FIT={cross_fit} splits each class's {labels_per_class} labelled images into {cross_fit} folds, "
                f"which needs at least {cross_fit} per class: use LABELS_PER_CLASS >= {cross_fit} or fewer folds")
    smallest_fit = labels_per_class - -(-labels_per_class // cross_fit) if cross_fit else labels_per_class
    if cross_fit and probe and smallest_fit < 2:
        return (f"CROSS_FIT={cross_fit} with LABELS_PER_CLASS={labels_per_class}: each fold's LP-FT chooses its probe "
                f"by cross-validation on the other folds' {smallest_fit} image(s) per class, which needs at least 2; "
                "use more labels or fewer folds")
    return None


def cross_validated_probe(train_x: np.ndarray, train_y: np.ndarray, strengths: Iterable[float], seed: int = 0
                          ) -> tuple[dict[float, float], dict[float, np.ndarray]]:
    """Score each L2 strength C by stratified k-fold CV on the labelled images only (k = min(5, labels per class)).

    Returns the CV accuracy per C and the out-of-fold class probabilities per C (held-out predictions for every
    labelled image, usable for calibration). The scaler is fitted inside each fold, so nothing leaks.
    """
    folds = min(5, int(np.bincount(train_y).min()))
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 labelled images per class; use more labels, or an "
                         "explicit validation split (VALIDATION='oracle')")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores, out_of_fold = {}, {}
    for c in strengths:
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        out_of_fold[c] = cross_val_predict(pipeline, train_x, train_y, cv=splitter, method="predict_proba")
        scores[c] = float((out_of_fold[c].argmax(1) == train_y).mean())
    return scores, out_of_fold
