"""Deterministic splits shared by both frameworks: train/validation, N labels per class, source/target."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.model_selection import train_test_split

from .data import ImageData

VALID_SPLITS = ("train", "val", "test")
VALID_TASKS = ("all", "source", "target")
VALIDATION_MODES = ("labelled", "oracle")  # choices on the labelled images only, or on a large extra split
SOURCE_CLASSES = (0, 1, 2, 3, 4)  # airplane, automobile, bird, cat, deer
TARGET_CLASSES = (5, 6, 7, 8, 9)  # dog, frog, horse, ship, truck


def stratified_split(labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation with the same class balance in both."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    indices = np.arange(len(labels))
    train, val = train_test_split(indices, test_size=val_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


def sample_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Pick `per_class` indices of every class (the few-label regimes), the same ones for a given seed."""
    classes, counts = np.unique(labels, return_counts=True)
    if per_class < 1 or per_class > counts.min():
        raise ValueError(f"labels per class must be between 1 and {counts.min()} (the smallest class has "
                         f"{counts.min()} examples), got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(chosen))


def select_classes(data: ImageData, classes: tuple[int, ...], task: str) -> ImageData:
    """Keep only some classes, relabelled 0..k-1 in the given order, names kept."""
    lookup = np.full(data.num_classes, -1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    keep_train, keep_test = np.isin(data.y_train, classes), np.isin(data.y_test, classes)
    identity = {**data.identity, "task": task, "classes": [data.class_names[c] for c in classes]}
    return ImageData(data.x_train[keep_train], lookup[data.y_train[keep_train]], data.x_test[keep_test],
                     lookup[data.y_test[keep_test]], [data.class_names[c] for c in classes], identity)


def task_data(data: ImageData, task: str) -> ImageData:
    """Return the course's task: `all` ten classes, `source` (classes 0-4) or `target` (5-9, relabelled 0-4)."""
    if task not in VALID_TASKS:
        raise ValueError(f"Unknown task {task!r}; valid tasks: {', '.join(VALID_TASKS)}")
    if task == "all":
        return replace(data, identity={**data.identity, "task": "all"})
    if data.num_classes != 10:
        raise ValueError(f"The source/target split needs 10 classes, this data has {data.num_classes}")
    return select_classes(data, SOURCE_CLASSES if task == "source" else TARGET_CLASSES, task)


def source_target_split(data: ImageData) -> tuple[ImageData, ImageData]:
    """Split ten classes into the course's source task (0-4) and target task (5-9, labels 0-4)."""
    return task_data(data, "source"), task_data(data, "target")


def split_indices(data: ImageData, split: str, val_fraction: float = 0.1, seed: int = 0,
                  labels_per_class: int | None = None) -> np.ndarray:
    """Return the indices of `train` or `val` within data.x_train (`test` is the whole test set)."""
    if split not in VALID_SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits: {', '.join(VALID_SPLITS)}")
    if split == "test":
        return np.arange(len(data.y_test))
    train, val = stratified_split(data.y_train, val_fraction, seed)
    if split == "val":
        return val
    if labels_per_class is not None:
        train = train[sample_per_class(data.y_train[train], labels_per_class, seed)]
    return train


def get_split(data: ImageData, split: str, val_fraction: float = 0.1, seed: int = 0,
              labels_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images, labels) of `train`, `val` or `test`; train and val come from the training set."""
    indices = split_indices(data, split, val_fraction, seed, labels_per_class)
    if split == "test":
        return data.x_test, data.y_test
    return data.x_train[indices], data.y_train[indices]


def labelled_split(data: ImageData, labels_per_class: int | None, validation: str = "labelled",
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (train, validation) indices for a few-label run under an honest or an oracle protocol.

    `labelled`: with k labels per class every choice must use only those k images (k-fold cross-validation),
    so there is no validation split (None); with every label, the usual 10% held-out part is labelled data too.
    `oracle`: the 10% validation split (2,500 images on the target task), which a user with k labels per class
    would not have; kept to measure how much it inflates few-label results.
    """
    if validation not in VALIDATION_MODES:
        raise ValueError(f"Unknown VALIDATION {validation!r}; valid: {', '.join(VALIDATION_MODES)}")
    train = split_indices(data, "train", seed=seed, labels_per_class=labels_per_class)
    if validation == "oracle" or labels_per_class is None:
        return train, split_indices(data, "val", seed=seed)
    if labels_per_class < 2:
        raise ValueError(f"VALIDATION='labelled' chooses by cross-validation over the labelled images, which needs at "
                         f"least 2 per class (got LABELS_PER_CLASS={labels_per_class}). Use LABELS_PER_CLASS >= 2, or "
                         "VALIDATION='oracle' to choose on the large validation split (not what a few-label user has).")
    return train, None
