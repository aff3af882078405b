"""Pretrained ImageNet weight files the course uses: where they are cached and how to fetch them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import OFFLINE_ENV, PREFETCH_COMMAND, is_offline
from .runtime import import_tensorflow

_NOTICE_SHOWN: list[bool] = []  # one kernel runs one notebook: the full notice once, a short line after


def unavailable_notice(what: str) -> None:
    """Say that ImageNet weights are unavailable and what runs instead: in full once per notebook, then in a line.

    `what` finishes the sentence, e.g. "resnet18 falls back to the course's own source model (WEIGHTS='course')".
    Offline, nothing was downloaded; online, the framework's own download attempt failed.
    """
    if _NOTICE_SHOWN:
        print(f"ImageNet weights unavailable (see above): {what}.")
        return
    _NOTICE_SHOWN.append(True)
    why = (f"{OFFLINE_ENV}=1 and they are not pre-fetched" if is_offline()
           else "not pre-fetched, and the download did not succeed")
    print(f"Note: ImageNet weights are unavailable here ({why}): {what}.\n"
          f"To use them, run `{PREFETCH_COMMAND}` once on a machine with a network (an offline lab copies its data/).")


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file: which framework and model, and the file name its cache uses."""

    framework: str
    model: str
    filename: str
    used_in: str

    @property
    def key(self) -> str:
        """Short name such as torch/resnet18."""
        return f"{self.framework}/{self.model}"

    @property
    def path(self) -> Path:
        """Where the framework's own cache keeps this file (under the data root by default)."""
        if self.framework == "torch":
            return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / self.filename
        return Path(os.environ["KERAS_HOME"]) / "models" / self.filename

    def is_cached(self) -> bool:
        """Tell whether the file is already on disk, so no download is needed."""
        return self.path.is_file() and self.path.stat().st_size > 0


WEIGHT_FILES = (
    WeightFile("torch", "resnet18", "resnet18-f37072fd.pth", "05 PyTorch fine-tuning"),
    WeightFile("keras", "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
               "04 Keras fine-tuning"),
    WeightFile("keras", "efficientnetb0", "efficientnetb0_notop.h5", "04 Keras fine-tuning"),
    WeightFile("keras", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "04 Keras baseline row"),
)


def weight_file(framework: str, model: str) -> WeightFile:
    """Find a registered weight file, listing the known ones when the name is wrong."""
    for entry in WEIGHT_FILES:
        if (entry.framework, entry.model) == (framework, model):
            return entry
    known = ", ".join(entry.key for entry in WEIGHT_FILES)
    raise ValueError(f"No ImageNet weights registered for {framework}/{model}; known: {known}")


def fetch_weights(entry: WeightFile) -> Path:
    """Download one weight file into its framework's cache (hash-checked where the framework checks)."""
    if entry.is_cached():
        return entry.path
    if is_offline():
        raise RuntimeError(f"ImageNet weights {entry.key} are not cached at {entry.path} and {OFFLINE_ENV}=1. "
                           f"Run `{PREFETCH_COMMAND}` on a machine with a network and copy its data/ folder here.")
    try:
        _download(entry)
    except Exception as error:  # Keras raises a bare Exception on a failed URL fetch
        raise RuntimeError(f"Downloading ImageNet weights {entry.key} failed ({error}). The framework removes a "
                           f"partial file; retry with `{PREFETCH_COMMAND}`, or work offline with WEIGHTS='course'."
                           ) from error
    if not entry.is_cached():
        raise RuntimeError(f"{entry.key} downloaded, but not to {entry.path}; the framework's cache moved.")
    return entry.path


def _download(entry: WeightFile) -> None:
    """Let the framework itself download the file into its cache, as the notebooks will load it."""
    if entry.framework == "torch":
        import torchvision

        torchvision.models.get_model_weights(entry.model).DEFAULT.get_state_dict(progress=True, check_hash=True)
        return
    keras_application(entry.model)(weights="imagenet", include_top=False, input_shape=(224, 224, 3))


def keras_application(model: str) -> Callable[..., Any]:
    """Return the keras.applications constructor of a backbone the course uses."""
    if "keras" not in sys.modules:
        import_tensorflow()  # TensorFlow after triton, see runtime.import_tensorflow
    import keras

    constructors = {"mobilenet_v2": keras.applications.MobileNetV2, "efficientnetb0": keras.applications.EfficientNetB0,
                    "vgg16": keras.applications.VGG16}
    return constructors[model]
