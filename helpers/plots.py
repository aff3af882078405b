"""Plots a student would rather look at than read: example grids, class balance, task splits."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .data import ImageData


def setup_plots() -> None:
    """Set readable matplotlib defaults for every notebook."""
    plt.rcParams.update({"figure.dpi": 100, "figure.figsize": (8, 4), "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False, "font.size": 10})


def show_examples(data: ImageData, per_class: int = 8, seed: int = 0, title: str | None = None) -> plt.Figure:
    """Draw a grid with one row per class and `per_class` random training images in each."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(data.num_classes, per_class, figsize=(1.5 + per_class * 0.8, 0.5 + data.num_classes * 0.8),
                             squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05})
    for label, row in enumerate(axes):
        candidates = np.flatnonzero(data.y_train == label)
        picks = rng.choice(candidates, size=min(per_class, len(candidates)), replace=False)
        for ax, index in zip(row, picks, strict=False):
            ax.imshow(data.x_train[index], interpolation="nearest")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            ax.grid(False)
        row[0].set_ylabel(data.class_names[label], rotation=0, ha="right", va="center")
    fig.suptitle(title or f"{data.identity.get('dataset')}: {per_class} training images per class")
    return fig


def plot_class_balance(data: ImageData) -> plt.Figure:
    """Bar chart of how many training and test images each class has."""
    positions = np.arange(data.num_classes)
    train = np.bincount(data.y_train, minlength=data.num_classes)
    test = np.bincount(data.y_test, minlength=data.num_classes)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(positions - 0.2, train, width=0.4, label="train")
    ax.bar(positions + 0.2, test, width=0.4, label="test")
    ax.set_xticks(positions, data.class_names, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_title("Class balance")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_task_split(data: ImageData, source_classes: tuple[int, ...], target_classes: tuple[int, ...]) -> plt.Figure:
    """Show which classes form the source task and which the target task, with their sizes."""
    counts = np.bincount(data.y_train, minlength=data.num_classes)
    colors = ["tab:blue" if c in source_classes else "tab:orange" for c in range(data.num_classes)]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(np.arange(data.num_classes), counts, color=colors)
    ax.set_xticks(np.arange(data.num_classes), data.class_names, rotation=30, ha="right")
    ax.set_ylabel("training images")
    ax.set_title("Source task (blue, labels 0-4) and target task (orange, relabelled 0-4)")
    fig.tight_layout()
    return fig
