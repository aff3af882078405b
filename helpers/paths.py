"""Where the course keeps its data and outputs, and whether it may use the network."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_ENV = "WORKBOOK_DATA"  # moves the cache root (datasets, features, checkpoints, weights)
OUTPUTS_ENV = "WORKBOOK_OUTPUTS"  # moves executed notebooks, metrics and benchmark reports
OFFLINE_ENV = "WORKBOOK_OFFLINE"  # 1 turns every download off
CIFAR10_SOURCE_ENV = "WORKBOOK_CIFAR10_SOURCE"  # a local ImageFolder copy of CIFAR-10 (folder or .tar.gz)
PROFILE_ENV = "WORKBOOK_PROFILE"  # forces a profile in every notebook (smoke, cpu, full, auto)

PREFETCH_COMMAND = "make prefetch"


def data_root() -> Path:
    """Return the cache root, `data/` in the checkout unless WORKBOOK_DATA moves it."""
    root = Path(os.environ.get(DATA_ENV) or PROJECT_ROOT / "data").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def outputs_root() -> Path:
    """Return the folder for executed notebooks, metrics and benchmarks (`outputs/`)."""
    root = Path(os.environ.get(OUTPUTS_ENV) or PROJECT_ROOT / "outputs").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def is_offline() -> bool:
    """Tell whether WORKBOOK_OFFLINE forbids every download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def configure_framework_caches() -> None:
    """Point torch hub and Keras caches under the data root so pre-fetched weights are found."""
    root = data_root()
    os.environ.setdefault("TORCH_HOME", str(root / "torch"))
    os.environ.setdefault("KERAS_HOME", str(root / "keras"))
