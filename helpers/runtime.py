"""Device choice, seeding and the environment report shared by every notebook and metrics file."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np

REPORTED_PACKAGES = (
    "numpy", "torch", "torchvision", "tensorflow", "tensorflow-cpu", "keras",
    "scikit-learn", "matplotlib", "pillow", "pooch", "papermill",
)


def torch_device(verbose: bool = True) -> Any:
    """Pick CUDA, then Apple MPS, then CPU for torch, and say which."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device, name = torch.device("mps"), "Apple MPS"
    else:
        device, name = torch.device("cpu"), f"CPU ({torch.get_num_threads()} threads)"
    if verbose:
        print(f"torch device: {device} - {name}")
    return device


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send the process's C-level stderr to /dev/null for a moment (Python exceptions still propagate).

    TensorFlow's native libraries log on import (oneDNN and CPU-feature notices, absl's "before InitializeLog"
    line) straight to file descriptor 2, which TF_CPP_MIN_LOG_LEVEL no longer silences; in a notebook those
    become red stderr boxes.
    """
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow() -> Any:
    """Import TensorFlow quietly, after triton: with CUDA builds of torch, TensorFlow first makes triton segfault."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up log out of the notebooks
    try:
        import triton  # noqa: F401 - loaded for its side effect on symbol resolution
    except ImportError:
        pass
    first_import = "tensorflow" not in sys.modules
    with native_stderr_silenced() if first_import else contextlib.nullcontext():
        import tensorflow as tf
    if first_import:
        tf.get_logger().setLevel("ERROR")  # Python-side warnings (retracing, AutoGraph) stay out of the notebooks
        tf.autograph.set_verbosity(0)
    return tf


def tf_gpus(verbose: bool = True) -> list[str]:
    """List the GPUs TensorFlow sees (empty on CPU), and say what it will use."""
    tf = import_tensorflow()

    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    if verbose:
        print(f"TensorFlow devices: {', '.join(gpus) if gpus else 'CPU only (no GPU found)'}")
    return gpus


def has_gpu() -> bool:
    """Tell whether a CUDA GPU is usable, without importing a framework that is not installed."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def seed_everything(seed: int) -> list[str]:
    """Seed random, numpy and every deep-learning framework already imported; return their names."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    seeded = ["random", "numpy"]
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)  # also seeds every CUDA device
        seeded.append("torch")
    if "keras" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)  # seeds the backend (TensorFlow or torch) too
        seeded.append("keras")
    elif "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.random.set_seed(seed)
        seeded.append("tensorflow")
    print(f"Seeded {', '.join(seeded)} with {seed}")
    return seeded


def package_versions(names: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str]:
    """Return the installed version of each package that is present."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_summary() -> dict[str, Any]:
    """Describe the accelerators and CPU threads this run can use, from frameworks already imported."""
    summary: dict[str, Any] = {"cpu_count": os.cpu_count(), "cuda": None, "tf_gpus": None}
    if "torch" in sys.modules:
        import torch

        summary["torch_threads"] = torch.get_num_threads()
        summary["torch_device"] = str(torch_device(verbose=False))
        if torch.cuda.is_available():
            summary["cuda"] = {"name": torch.cuda.get_device_name(0), "version": torch.version.cuda}
    if "tensorflow" in sys.modules:
        summary["tf_gpus"] = tf_gpus(verbose=False)
    return summary


def environment_report(verbose: bool = True) -> dict[str, Any]:
    """Collect Python, package versions, device and threads for notebooks and metrics files."""
    report = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_summary(),
    }
    if verbose:
        print(f"Python {report['python']} on {report['platform']}")
        print("Packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))
        device = report["device"]
        print(f"CPU cores: {device['cpu_count']}, torch threads: {device.get('torch_threads', '-')}, "
              f"CUDA: {device['cuda'] or 'none'}")
    return report
