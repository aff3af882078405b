"""Keras side of transfer: keras.applications backbones and a Keras copy of the course source model.

The Keras course model has the PyTorch course model's architecture and *its trained weights*, copied layer
by layer (and checked to give the same outputs), so both frameworks transfer from the same source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import runtime
from .data import sha256_of
from .models import COURSE_NET_WIDTHS, checkpoint_path, ensure_course_checkpoint, load_checkpoint
from .paths import OFFLINE_ENV, PREFETCH_COMMAND, atomic_save, atomic_write_text, cache_dir, cached_files, is_offline
from .weights import keras_application, unavailable_notice, weight_file

VALID_BACKENDS = ("tensorflow", "torch")
KERAS_MODELS = ("mobilenet_v2", "efficientnetb0", "vgg16")
VALID_KERAS_MODELS = ("course_net", *KERAS_MODELS)
VALID_WEIGHTS = ("imagenet", "course", "none", "auto")
KERAS_POLICIES = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16", "fp32": "float32"}  # runtime.precision's names
TOP_BLOCK_PREFIX = {"course_net": "stage3", "mobilenet_v2": "block_16", "efficientnetb0": "block7", "vgg16": "block5"}


def import_keras(backend: str = "tensorflow") -> Any:
    """Select the Keras backend (before Keras is first imported) and import Keras."""
    if backend not in VALID_BACKENDS:
        raise ValueError(f"Unknown Keras backend {backend!r}; valid backends: {', '.join(VALID_BACKENDS)}")
    import sys

    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") != backend:
        raise RuntimeError(f"Keras is already imported with backend {os.environ.get('KERAS_BACKEND', 'tensorflow')!r};"
                           " restart the kernel to switch backends.")
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        from .runtime import import_tensorflow

        import_tensorflow()
    import keras

    return keras


def keras_precision_policy(backend: str = "tensorflow") -> str:
    """Pick Keras's dtype policy by the GPU its backend sees: mixed bfloat16 where native, mixed float16, else float32.

    The rule of `runtime.precision` for Keras: TensorFlow sees a GPU only with `make ... GPU=1`'s
    tensorflow[and-cuda], so the TensorFlow backend asks TensorFlow, the torch backend asks torch.
    """
    if backend == "torch":
        from .runtime import precision, torch_device

        return KERAS_POLICIES[precision(torch_device(verbose=False))]
    from .runtime import import_tensorflow

    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return KERAS_POLICIES["fp32"]
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return KERAS_POLICIES["bf16" if capability >= (8, 0) else "fp16"]  # bfloat16 is native from Ampere (8.0) on


def set_mixed_precision(keras: Any, backend: str = "tensorflow") -> str:
    """Set Keras's global dtype policy by `keras_precision_policy` (before building models) and return its name."""
    policy = keras_precision_policy(backend)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def check_keras_image_size(model: str, image_size: int) -> None:
    """Refuse input sizes below a backbone's minimum, saying the minimum."""
    smallest = 8 if model == "course_net" else 32
    if image_size < smallest:
        raise ValueError(f"{model} needs inputs of at least {smallest}x{smallest}, got {image_size}x{image_size}.")


def course_net_keras(num_classes: int = 5, widths: tuple[int, ...] = COURSE_NET_WIDTHS,
                     image_size: int = 32) -> tuple[Any, Any]:
    """Build the course network in Keras (feature extractor, head), named like PyTorch's layers with _ for the dots."""
    import keras
    from keras import layers

    def conv_bn(x: Any, channels: int, name: str) -> Any:
        """Convolution, batch norm (PyTorch's epsilon and momentum), ReLU."""
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_0")(x)
        x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_1")(x)
        return layers.ReLU(name=f"{name}_2")(x)

    inputs = keras.Input((image_size, image_size, 3))
    x = conv_bn(inputs, widths[0], "stem")
    for stage, channels in enumerate(widths[1:], 1):
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(conv_bn(x, channels, f"stage{stage}_widen"))
        x = layers.Add(name=f"stage{stage}_add")([x, conv_bn(x, channels, f"stage{stage}_residual")])
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    features = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm")(x)
    return keras.Model(inputs, features, name="course_net"), layers.Dense(num_classes, name="head")


def copy_torch_weights(torch_model: Any, base: Any, head: Any) -> None:
    """Copy the PyTorch course model's weights into the Keras one (convolutions, batch norms, head)."""
    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    for layer in base.layers:
        key = "features." + layer.name.replace("_", ".")  # Keras names use _ where PyTorch has .
        if layer.__class__.__name__ == "Conv2D":
            layer.set_weights([state[f"{key}.weight"].transpose(2, 3, 1, 0)])
        elif layer.__class__.__name__ == "BatchNormalization":
            layer.set_weights([state[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")])
    if not head.built:
        head.build((None, base.output.shape[-1]))
    head.set_weights([state["head.weight"].T, state["head.bias"]])


def course_base(profile: str, dataset: str = "auto") -> tuple[Any, Any, dict[str, Any]]:
    """Return the Keras course model (base, source head) built from the PyTorch checkpoint, cached on disk."""
    import keras

    torch_path = ensure_course_checkpoint(profile, dataset)
    torch_model, meta = load_checkpoint(torch_path)
    torch_sha = meta["sha256"]
    base, head = course_net_keras(len(meta["classes"]), tuple(meta["widths"]))
    model = keras.Sequential([base, head])
    layer_names = [layer.name for layer in base.layers]
    name = f"course_source_model_{profile}.keras.weights.h5"
    for cached in cached_files("checkpoints", name):
        digest = sha256_of(cached)
        if _port_record(cached) == {"torch_sha256": torch_sha, "sha256": digest, "layers": layer_names}:
            model.load_weights(cached)
            break
    else:  # port the weights again, written atomically so concurrent runs never collide
        copy_torch_weights(torch_model, base, head)
        cached = atomic_save(cache_dir("checkpoints") / name, model.save_weights, suffix=".weights.h5")
        digest = sha256_of(cached)
        atomic_write_text(cached.with_suffix(".json"), json.dumps(
            {"torch_sha256": torch_sha, "sha256": digest, "layers": layer_names}))
    info = {"weights": "course", "model": "course_net", "checkpoint": str(cached), "sha256": digest,
            "ported_from": str(checkpoint_path(profile)), "torch_sha256": torch_sha,
            "source_test_acc_pytorch": meta["source_test_acc"], "source_data": meta["data"]}
    return base, head, info


def _port_record(cached: Path) -> dict[str, Any]:
    """Read the record of a ported Keras weight file; a missing or damaged one reads as empty (the port is redone)."""
    try:
        return json.loads(cached.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def application_base(model: str, image_size: int, pretrained: bool) -> Any:
    """Build a keras.applications backbone without its top, global-average-pooled to a feature vector."""
    entry = weight_file("keras", model)
    if pretrained and is_offline() and not entry.is_cached():
        raise FileNotFoundError(f"ImageNet weights for Keras {model} are not cached at {entry.path} and "
                                f"{OFFLINE_ENV}=1. Run `{PREFETCH_COMMAND}` with a network, or use "
                                "WEIGHTS='course' (offline) or WEIGHTS='auto'.")
    return build_application(model, weights="imagenet" if pretrained else None,
                             input_shape=(image_size, image_size, 3), pooling="avg")


def build_application(model: str, **kwargs: Any) -> Any:
    """Build a headless keras.applications model; a failed weight download becomes an OSError that says so."""
    try:
        return keras_application(model)(include_top=False, **kwargs)
    except Exception as error:  # Keras raises a bare Exception when the download fails
        if isinstance(error, ValueError):
            raise
        raise OSError(f"ImageNet weights for Keras {model} could not be downloaded ({error}); run "
                      f"`{PREFETCH_COMMAND}` with a network, or set {OFFLINE_ENV}=1 to skip them.") from error


def preprocessing(model: str) -> Any:
    """Map [0, 1] images to what a backbone expects (the pipeline gives [0, 1] with normalize='unit')."""
    from keras import layers

    if model == "mobilenet_v2":
        return layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")
    if model == "efficientnetb0":
        return layers.Rescaling(255.0, name="to_0_255")  # EfficientNet normalizes inside
    bgr_mean = np.array([103.939, 116.779, 123.68], dtype="float32")
    return layers.Lambda(lambda x: x[..., ::-1] * 255.0 - bgr_mean, name="caffe_bgr")  # VGG16


def source_base(weights: str, model: str, profile: str, image_size: int,
                dataset: str = "auto") -> tuple[Any, Any | None, dict[str, Any]]:
    """Return (base, source head or None, weights record); `auto` falls back loudly to the course model."""
    if weights not in VALID_WEIGHTS:
        raise ValueError(f"Unknown weights {weights!r}; valid weights: {', '.join(VALID_WEIGHTS)}")
    if model not in VALID_KERAS_MODELS:
        raise ValueError(f"Unknown backbone {model!r}; valid backbones: {', '.join(VALID_KERAS_MODELS)}")
    check_keras_image_size(model, image_size)
    if weights == "none":
        base = course_net_keras(image_size=image_size)[0] if model == "course_net" else \
            application_base(model, image_size, pretrained=False)
        return base, None, {"weights": "none", "model": model}
    if weights in ("imagenet", "auto") and model != "course_net":
        try:
            base = application_base(model, image_size, pretrained=True)
            return base, None, {"weights": "imagenet", "model": model, "file": weight_file("keras", model).filename}
        except (FileNotFoundError, OSError):
            if weights == "imagenet":
                raise
            unavailable_notice(f"Keras {model} falls back to the course's own source model (WEIGHTS='course')")
    base, head, info = course_base(profile, dataset)
    return base, head, info


def top_block_layers(base: Any, model: str) -> list[Any]:
    """Return the layers of a base from its last block to the end (what `finetune_top` unfreezes)."""
    names = [layer.name for layer in base.layers]
    first = next(i for i, name in enumerate(names) if name.startswith(TOP_BLOCK_PREFIX[model]))
    return base.layers[first:]


def stop_on_non_finite_loss(keras: Any) -> Any:
    """Make a `fit` callback that stops training on a NaN loss with the divergence message (naming the step size)."""

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if logs and "loss" in logs:
                runtime.check_finite_loss(logs["loss"])

    return StopOnNonFiniteLoss()


def history_rows(history: Any, offset: int = 0) -> list[dict[str, float]]:
    """Turn a Keras History into the per-epoch rows the PyTorch notebook writes."""
    logs = history.history
    names = {"loss": "train_loss", "categorical_accuracy": "train_acc", "val_loss": "val_loss",
             "val_categorical_accuracy": "val_acc"}
    return [{"epoch": offset + i + 1, **{new: float(logs[old][i]) for old, new in names.items() if old in logs}}
            for i in range(len(logs["loss"]))]
