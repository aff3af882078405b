"""Device choice, precision, seeding and the environment report shared by every notebook and metrics file.

The device rule lives here and nowhere else: CUDA when present, then Apple MPS, else the CPU (`torch_device`).
So does the precision rule for training on it: bfloat16 autocast on a CUDA GPU that has bfloat16, float16 with
a gradient scaler on an older one, float32 elsewhere (`precision`, `autocast`, `grad_scaler`, `optimizer_step`).
"""

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

CHANNELS_LAST = True  # torch_train.to_device and every loader batch use channels-last: faster convolutions, CPU and GPU
DETERMINISM_NOTE = ("With cuDNN's defaults (deterministic=False, benchmark=False, recorded with each run) a rerun on "
                    "the same GPU agrees to float rounding, not bit for bit.")

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


def precision(device: Any) -> str:
    """Name the training precision on a device: bf16 on a CUDA GPU with native bfloat16, fp16 on an older one, fp32."""
    import torch

    if device.type != "cuda":
        return "fp32"  # CPU and MPS: autocast there gains little and changes the numbers the course quotes
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def autocast(device: Any) -> contextlib.AbstractContextManager:
    """Run the enclosed forward pass in the device's mixed precision (`precision`); a no-op in fp32."""
    import torch

    chosen = precision(device)
    dtype = torch.float16 if chosen == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=chosen != "fp32")


def grad_scaler(device: Any) -> Any:
    """Return a gradient scaler that is active only in fp16, whose small gradients would underflow to zero."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=precision(device) == "fp16")


class DivergedError(FloatingPointError):
    """A training loss became NaN or infinite: the run stops, and no record of it is written."""


_divergence_suspects: dict[str, Any] = {}


def name_divergence_suspects(values: dict[str, Any]) -> None:
    """Remember the notebook's step sizes and temperature, for a diverged loss to name (check_parameters sets them)."""
    _divergence_suspects.clear()
    _divergence_suspects.update(values)


def divergence_error(what: str) -> DivergedError:
    """Say that training diverged, and which of the notebook's parameters to lower (or raise) to keep it finite."""
    suspects = ", ".join(f"{name}={setting!r}" + (" (the profile's value)" if setting is None else "")
                         for name, setting in _divergence_suspects.items())
    return DivergedError(f"{what}: training diverged, and the run stopped without a record. "
                         + (f"Look at {suspects}: a smaller step size (or a larger temperature) keeps the loss finite."
                            if suspects else "Lower the learning rate and run again."))


def check_finite_loss(loss: Any, where: str = "training") -> None:
    """Stop a run whose loss is NaN or infinite, naming the parameters to look at, before it steps on garbage."""
    value = float(loss.detach().float().cpu()) if hasattr(loss, "detach") else float(loss)
    if not np.isfinite(value):
        raise divergence_error(f"The {where} loss became {value}")


def optimizer_step(optimizer: Any, loss: Any, scaler: Any) -> None:
    """Refuse a non-finite loss, then zero the gradients, backpropagate (scaled when active) and step the optimizer."""
    check_finite_loss(loss)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
    scaler.update()


def cudnn_settings() -> dict[str, Any]:
    """Record what decides whether a GPU rerun repeats: cuDNN's flags and PyTorch's deterministic-algorithms switch."""
    import torch

    cudnn = torch.backends.cudnn
    return {"deterministic": cudnn.deterministic, "benchmark": cudnn.benchmark,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "version": cudnn.version() if torch.cuda.is_available() else None, "note": DETERMINISM_NOTE}


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
        if torch.cuda.is_available():
            print(DETERMINISM_NOTE)
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

        device = torch_device(verbose=False)
        summary.update(torch_threads=torch.get_num_threads(), torch_device=str(device), precision=precision(device),
                       channels_last=CHANNELS_LAST, cudnn=cudnn_settings())
        if torch.cuda.is_available():
            summary["cuda"] = {"name": torch.cuda.get_device_name(0), "version": torch.version.cuda}
    if "tensorflow" in sys.modules:
        summary["tf_gpus"] = tf_gpus(verbose=False)
    if "keras" in sys.modules:
        import keras

        summary["keras_policy"] = keras.mixed_precision.global_policy().name
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
              f"CUDA: {device['cuda'] or 'none'}, precision: {device.get('precision', '-')}")
    return report
