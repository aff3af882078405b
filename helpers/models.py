"""Models for transfer in PyTorch: the course's compact source CNN, torchvision backbones, checkpoints.

Every model here has the same two parts, `features` (the transferable extractor) and `head` (the
task-specific classifier), so each fine-tuning strategy can name what it freezes and what it replaces.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .paths import (
    OFFLINE_ENV,
    PREFETCH_COMMAND,
    atomic_write,
    atomic_write_text,
    cache_dir,
    data_root,
    file_lock,
    is_offline,
    is_writable,
)
from .weights import unavailable_notice

VALID_WEIGHTS = ("imagenet", "course", "none", "auto")
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0")
VALID_MODELS = ("course_net", *TORCHVISION_MODELS)
COURSE_NET_WIDTHS = (16, 32, 64, 256)  # stem, then the three stages; the last is the feature width


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU: the unit every block is made of."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ResidualStage(nn.Module):
    """Widen, halve the resolution, then one residual unit: x <- x + f(x)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        """Build the widening unit, the pooling and the residual unit."""
        super().__init__()
        self.widen, self.pool, self.residual = conv_bn(c_in, c_out), nn.MaxPool2d(2), conv_bn(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the stage."""
        x = self.pool(self.widen(x))
        return x + self.residual(x)


class TransferNet(nn.Module):
    """A feature extractor followed by a linear head: the shape every strategy works on."""

    def __init__(self, features: nn.Module, head: nn.Linear, name: str) -> None:
        """Keep the two parts and a name for records."""
        super().__init__()
        self.features, self.head, self.name = features, head, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class scores (logits)."""
        return self.head(self.features(x))

    @property
    def feature_dim(self) -> int:
        """Return the width of the features the head reads."""
        return self.head.in_features


def course_net(num_classes: int = 5, widths: tuple[int, int, int, int] = COURSE_NET_WIDTHS) -> TransferNet:
    """Build the course's compact ResNet-style CNN for 32x32 images (about 0.8 M parameters)."""
    stem, w1, w2, w3 = widths
    features = nn.Sequential(OrderedDict(
        stem=conv_bn(3, stem), stage1=ResidualStage(stem, w1), stage2=ResidualStage(w1, w2),
        stage3=ResidualStage(w2, w3), pool=nn.AdaptiveMaxPool2d(1), flatten=nn.Flatten(),
        norm=nn.BatchNorm1d(w3)))  # normalized features keep high learning rates stable
    return TransferNet(features, nn.Linear(w3, num_classes), "course_net")


def torchvision_net(model: str, pretrained: bool) -> TransferNet:
    """Build a torchvision backbone, ImageNet weights when `pretrained`, keeping its 1000-class head."""
    import torchvision

    if model not in TORCHVISION_MODELS:
        raise ValueError(f"Unknown model {model!r}; valid models: {', '.join(VALID_MODELS)}")
    weights = torchvision.models.get_model_weights(model).DEFAULT if pretrained else None
    if pretrained:
        _require_imagenet_weights(model, weights.url)
    try:
        net = torchvision.models.get_model(model, weights=weights)
    except (OSError, RuntimeError) as error:  # URLError without a network, or a hash mismatch: no file is kept
        raise OSError(f"Downloading ImageNet weights for {model} failed ({error}). Retry with a network "
                      f"(`{PREFETCH_COMMAND}`), or work offline: {OFFLINE_ENV}=1 with WEIGHTS='course' or 'auto'."
                      ) from error
    if hasattr(net, "fc"):  # ResNets
        head, net.fc = net.fc, nn.Identity()
    else:  # MobileNet, EfficientNet: the last Linear of the classifier
        head, net.classifier[-1] = net.classifier[-1], nn.Identity()
    return TransferNet(net, head, model)


def check_image_size(model: str, image_size: int) -> None:
    """Refuse input sizes a backbone cannot take, naming the smallest it can."""
    smallest = 8 if model == "course_net" else 32  # three halvings, or the /32 of ImageNet backbones
    if not smallest <= image_size <= 512:
        raise ValueError(f"{model} cannot take {image_size}x{image_size} inputs: use a size from {smallest} to 512 "
                         f"(its feature maps shrink {'8' if model == 'course_net' else '32'}-fold).")


def untrained_like(model: TransferNet) -> TransferNet:
    """Build the same architecture with fresh random weights (the `scratch` baseline)."""
    if model.name == "course_net":
        return course_net(model.head.out_features)
    return torchvision_net(model.name, pretrained=False)


def ensure_course_checkpoint(profile: str, dataset: str = "auto") -> Path:
    """Return the course model's checkpoint, running notebook 03 first when there is none yet.

    Creation is serialised by an inter-process lock beside the checkpoint, and the check is repeated once the lock is
    held, so two runs starting on a fresh data root (a 2-worker sweep) train notebook 03 once, not twice.
    """
    path = checkpoint_path(profile)
    if _pair_exists(path):
        return path
    with file_lock(path.with_name(f"{path.name}.train.lock")):  # not the pair's lock: notebook 03 takes that one
        path = checkpoint_path(profile)
        if not _pair_exists(path):
            _train_course_checkpoint(profile, dataset)
            path = checkpoint_path(profile)
    return path


def _pair_exists(path: Path) -> bool:
    """Tell whether both halves of a checkpoint, the weights and their JSON sidecar, are on disk."""
    return path.exists() and path.with_suffix(".json").exists()


def _train_course_checkpoint(profile: str, dataset: str) -> None:
    """Run notebook 03, which trains the course's source model and saves its checkpoint."""
    from .paths import outputs_root
    from .runner import NOTEBOOKS_DIR, execute

    print(f"No course source model for profile {profile!r} yet: running notebook 03 to train it "
          "(minutes on a CPU in the cpu profile) ...", flush=True)
    executed = outputs_root() / "notebooks" / "03_pretrain_source_model.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    execute(NOTEBOOKS_DIR / "03_pretrain_source_model.ipynb", executed, {"PROFILE": profile, "DATASET": dataset},
            quiet=True)
    print(f"... done; executed notebook at {executed}")


def source_model(weights: str, model: str, profile: str, dataset: str = "auto") -> tuple[TransferNet, dict[str, Any]]:
    """Return a pretrained network with its source head, and a record of exactly which weights it carries.

    `auto` takes ImageNet weights when they are cached or can be downloaded, else the course's source model,
    and says so loudly. The course model is trained first (notebook 03) if it does not exist yet.
    """
    if weights not in VALID_WEIGHTS:
        raise ValueError(f"Unknown weights {weights!r}; valid weights: {', '.join(VALID_WEIGHTS)}")
    if model not in VALID_MODELS:
        raise ValueError(f"Unknown model {model!r}; valid models: {', '.join(VALID_MODELS)}")
    if weights == "none":
        net = course_net() if model == "course_net" else torchvision_net(model, pretrained=False)
        return net, {"weights": "none", "model": model}
    if weights in ("imagenet", "auto") and model != "course_net":
        try:
            net = torchvision_net(model, pretrained=True)
            return net, {"weights": "imagenet", "model": model, "file": _weights_url(model).rsplit("/", 1)[-1]}
        except (FileNotFoundError, OSError, RuntimeError):
            if weights == "imagenet":
                raise
            unavailable_notice(f"{model} falls back to the course's own source model (WEIGHTS='course')")
    path = ensure_course_checkpoint(profile, dataset)
    net, meta = load_checkpoint(path)
    return net, {"weights": "course", "model": "course_net", "checkpoint": str(path),
                 "sha256": meta["sha256"], "source_test_acc": meta["source_test_acc"], "source_data": meta["data"]}


def source_data_key(identity: dict[str, Any]) -> str:
    """Name the data a source model was trained on: its content hash, or the kind of generated data."""
    return identity.get("sha256") or identity["dataset"]


def check_source_data(weights: dict[str, Any], identity: dict[str, Any]) -> None:
    """Refuse the course's source model when it was trained on other data than the run uses (e.g. synthetic)."""
    trained_on = weights.get("source_data")
    if weights.get("weights") != "course" or not trained_on:
        return
    if source_data_key(trained_on) != source_data_key(identity):
        describe = lambda d: f"{d.get('dataset')} ({d.get('source', '')}, {source_data_key(d)[:12]})"  # noqa: E731
        raise CheckpointMismatch(
            f"The course source model at {weights.get('checkpoint')} was trained on {describe(trained_on)}, but this "
            f"run uses {describe(identity)}. Rerun notebook 03 on this data first (`make course` does; it retrains "
            "when the data changed), or run with the data the model was trained on.")


def _weights_url(model: str) -> str:
    """Return the URL of a torchvision model's default ImageNet weights."""
    import torchvision

    return torchvision.models.get_model_weights(model).DEFAULT.url


def _require_imagenet_weights(model: str, url: str) -> None:
    """Fail with the pre-fetch command when ImageNet weights are needed offline and not cached."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if is_offline() and not cached.exists():
        raise FileNotFoundError(f"ImageNet weights for {model} are not cached at {cached} and {OFFLINE_ENV}=1. "
                                f"Run `{PREFETCH_COMMAND}` with a network and copy data/ here, or use "
                                "WEIGHTS='course' (offline) or WEIGHTS='auto'.")


def _backbone_blocks(model: TransferNet) -> list[nn.Module]:
    """List a torchvision backbone's top-level stages in order."""
    net = model.features
    if hasattr(net, "layer4"):
        return [net.conv1, net.bn1, net.layer1, net.layer2, net.layer3, net.layer4]
    return list(net.features.children())


def blocks_in_order(model: TransferNet) -> list[nn.Module]:
    """Return the extractor's blocks from input to output, then the head (for layer-wise learning rates)."""
    if model.name == "course_net":
        f = model.features
        return [f.stem, f.stage1, f.stage2, nn.ModuleList([f.stage3, f.norm]), model.head]
    return [b for b in _backbone_blocks(model) if any(True for _ in b.parameters())] + [model.head]


def top_block(model: TransferNet) -> nn.Module:
    """Return the last block of the extractor (what `finetune_top` unfreezes besides the head)."""
    return blocks_in_order(model)[-2]


# ------------------------------------------------------------------------------------------- checkpoints

def checkpoint_path(profile: str) -> Path:
    """Return the course's source model for a profile (smoke never replaces cpu).

    It lives under the data root, or in the user cache when the data root is read-only and a model was trained there.
    """
    name = f"course_source_model_{profile}.pt"
    writable, shared = cache_dir("checkpoints") / name, data_root() / "checkpoints" / name
    return shared if shared.exists() and not writable.exists() else writable


def _pair_lock(path: Path) -> Path:
    """Name the lock file that makes a checkpoint's weights and sidecar one unit for writers and readers."""
    return path.with_name(f"{path.name}.lock")


def save_checkpoint(model: TransferNet, meta: dict[str, Any], path: Path) -> Path:
    """Save weights plus metadata, and a JSON sidecar with the weights' SHA-256 so corruption is caught.

    Both files are written under unique temporary names and renamed, the pair under an exclusive lock beside it, so
    a reader never takes one save's weights with another's sidecar; a read-only folder sends them to the user
    cache. Returns where the checkpoint went.
    """
    path = path if is_writable(path.parent) else cache_dir("checkpoints") / path.name
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta": meta}, buffer)
    blob = buffer.getvalue()
    record = json.dumps({**meta, "sha256": hashlib.sha256(blob).hexdigest()}, indent=2, default=str)
    with file_lock(_pair_lock(path)):
        atomic_write(path, lambda stream: stream.write(blob))
        atomic_write_text(path.with_suffix(".json"), record)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says what to do."""


class CheckpointMissing(CheckpointError):
    """No checkpoint has been saved yet."""


class CheckpointCorrupt(CheckpointError):
    """The checkpoint's bytes do not match the hash recorded when it was saved."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint was trained with other settings or data than asked for."""


class CheckpointForeign(CheckpointError):
    """The file is not a checkpoint this course wrote (it holds more than tensors), so it was not loaded."""


def _read_pair(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read a checkpoint's sidecar and weights, checking the weights' SHA-256 against the sidecar's record."""
    sidecar = path.with_suffix(".json")
    try:
        text, blob = sidecar.read_text(), path.read_bytes()
    except FileNotFoundError as error:
        raise CheckpointMissing(f"No course source model at {path}. Run notebook 03 (03_pretrain_source_model) "
                                "with the same PROFILE first, or `make course`.") from error
    try:
        meta = json.loads(text)
    except ValueError as error:
        raise CheckpointCorrupt(f"Checkpoint record {sidecar} is damaged ({error}). Delete it and {path.name}, then "
                                "rerun notebook 03 (or `make course`).") from error
    if not isinstance(meta, dict) or hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointCorrupt(f"Checkpoint {path} does not match the SHA-256 in {sidecar.name}: it is corrupt or "
                                "was changed. Delete both files and rerun notebook 03.")
    return meta, blob


def _read_checked_pair(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read a matching weights-and-sidecar pair, reading again under the pair's lock if a save was under way.

    A mismatch or a missing half seen without the lock may be another process's save in progress; only what is
    seen with the lock held (or, with no lock to take, after a few short waits) is reported as missing or corrupt.
    """
    try:
        return _read_pair(path)
    except (CheckpointMissing, CheckpointCorrupt):
        if not path.exists() and not path.with_suffix(".json").exists():
            raise  # nothing there at all: plainly missing, no save to wait for
    with file_lock(_pair_lock(path), shared=True) as locked:
        for _ in range(0 if locked else 3):  # no lock to wait on: give a save in progress a moment instead
            try:
                return _read_pair(path)
            except (CheckpointMissing, CheckpointCorrupt):
                time.sleep(0.25)
        return _read_pair(path)


def _foreign(path: Path, error: BaseException | None) -> CheckpointForeign:
    """Describe a file that is not a course checkpoint, without PyTorch's advice to load it unsafely."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error or ""))
    holds = f" (it holds a Python object, {found.group(1)}, not only tensors)" if found else ""
    return CheckpointForeign(
        f"{path} is not a checkpoint this course wrote{holds}, so it was not loaded: loading it could run code it "
        "carries. Delete it and its .json sidecar and rerun notebook 03 (03_pretrain_source_model) with "
        "FORCE_RETRAIN=True (or `make course`) to train a new one.")


def _check_sidecar(path: Path, sidecar: dict[str, Any], stored: Any) -> None:
    """Trust the sidecar only where it repeats the metadata saved inside the hashed weights file, and is well formed.

    The SHA-256 covers the weights file, which stores the metadata too; an edited sidecar (a history, the classes)
    no longer matches it and is refused, so nothing shown from a checkpoint comes from an unchecked file.
    """
    def fix(problem: str) -> CheckpointCorrupt:
        return CheckpointCorrupt(f"Checkpoint record {path.with_suffix('.json').name} {problem}. Delete it and "
                                 f"{path.name}; the notebook that made them makes them again (notebook 03 for the "
                                 "course's source model).")

    as_saved = json.loads(json.dumps(stored, default=str)) if isinstance(stored, dict) else None
    if as_saved != {key: value for key, value in sidecar.items() if key != "sha256"}:
        raise fix("does not match the metadata stored inside the weights file: it was edited or belongs to other "
                  "weights")
    classes, widths = sidecar.get("classes"), sidecar.get("widths")
    if not isinstance(classes, list) or len(classes) < 1 or not all(isinstance(name, str) for name in classes):
        raise fix(f"has no usable class names (classes={classes!r})")
    if (not isinstance(widths, list) or len(widths) != len(COURSE_NET_WIDTHS)
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
        raise fix(f"has no usable widths (widths={widths!r}; the course network has {len(COURSE_NET_WIDTHS)} positive "
                  "integers)")


def load_checkpoint(path: Path, expect: dict[str, Any] | None = None) -> tuple[TransferNet, dict]:
    """Load the course model after checking its hash and metadata; never falls back silently.

    The weights are hashed and loaded from the same bytes, and a pair seen mid-save is read again under the save's
    lock (see `save_checkpoint`), so a concurrent save is never reported as corruption.
    """
    meta, blob = _read_checked_pair(path)
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise CheckpointMismatch(f"Checkpoint {path} was made for {key}={meta.get(key)!r}, not {value!r}. "
                                  "Rerun notebook 03 with matching settings (or FORCE_RETRAIN=True).")
    try:
        stored = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise _foreign(path, error) from None  # PyTorch's own message suggests the unsafe retry: not shown
    if not isinstance(stored, dict) or not isinstance(stored.get("state_dict"), dict):
        raise _foreign(path, None)
    _check_sidecar(path, meta, stored.get("meta"))
    model = course_net(len(meta["classes"]), tuple(meta["widths"]))
    try:
        model.load_state_dict(stored["state_dict"])
    except RuntimeError as error:
        raise CheckpointMismatch(f"Checkpoint {path} holds a different network than this version of the course "
                                 f"builds ({str(error).splitlines()[0]}). Rerun notebook 03 with FORCE_RETRAIN=True."
                                 ) from error
    return model, meta


def state_fingerprint(model: nn.Module) -> str:
    """Hash a model's weights, to record exactly which weights a run started from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
