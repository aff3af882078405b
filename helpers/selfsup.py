"""Self-supervised pretraining's plumbing (notebook 10): SimCLR's augmentations on whole batches, a kNN monitor.

The lesson's key code (the NT-Xent loss, the projection head, the rotation batch, the training loop) is written in
notebook 10; here live the parts a learner uses but need not write: batch-wise random resized crops and colour
distortion (Chen et al., 2020, Appendix A), the weighted kNN classifier that monitors features without training a
head (Wu et al., 2018), and the checks that refuse settings a method cannot run with.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data import normalization
from .models import COURSE_NET_WIDTHS, CheckpointError, TransferNet, load_checkpoint, save_checkpoint, state_fingerprint
from .paths import cache_dir, cached_files, shown

METHODS = ("simclr", "rotation")  # contrastive learning, and a pretext task (Gidaris et al., 2018)
AUGMENTATIONS = ("full", "no_color", "no_crop")  # SimCLR's views, and the two ablations Chen et al. found decisive
UNLABELLED = ("source", "source+target")  # the images pretraining sees: 03's, or those and the target's training images
COLOR_STRENGTH = 0.5  # Chen et al.'s s for CIFAR-10: brightness, contrast, saturation 0.8 s, hue 0.2 s
GRAY_PROBABILITY = 0.2
JITTER_PROBABILITY = 0.8
CROP_SCALE = (0.2, 1.0)  # area kept by a random resized crop (0.08 on ImageNet; 0.2 suits 32x32 images)
CROP_RATIO = (3 / 4, 4 / 3)


def check_settings(method: str, augmentation: str, batch_size: int, temperature: float,
                   label_counts: list[int] = (50,)) -> None:
    """Refuse what a run cannot do, each problem with its fix: unknown names, a batch of one, T <= 0, one label."""
    problems = []
    if method not in ("all", *METHODS):
        problems.append(f"unknown METHOD {method!r}; valid: all, {', '.join(METHODS)}")
    if augmentation not in AUGMENTATIONS:
        problems.append(f"unknown AUGMENT {augmentation!r}; valid: {', '.join(AUGMENTATIONS)}")
    if method != "rotation" and batch_size < 2:
        problems.append(f"BATCH_SIZE={batch_size}: contrastive learning needs at least 2 images per batch (each "
                        "image's negatives are the other images); use 2 or more (SimCLR used 256 to 8192)")
    if not label_counts or min(label_counts) < 2:
        problems.append(f"LABEL_COUNTS={list(label_counts)}: the honest probe chooses its strength by cross-validation "
                        "on the labelled images, which needs at least 2 per class; use counts of 2 or more")
    if not temperature > 0:
        problems.append(f"TEMPERATURE={temperature}: the NT-Xent temperature divides the similarities; give a "
                        "value above 0 (SimCLR: 0.1 to 0.5)")
    if problems:
        raise ValueError("Invalid self-supervised settings:\n  " + "\n  ".join(problems))


def random_resized_crop(images: torch.Tensor, generator: torch.Generator | None = None,
                        scale: tuple[float, float] = CROP_SCALE,
                        ratio: tuple[float, float] = CROP_RATIO) -> torch.Tensor:
    """Crop each image of a float NCHW batch to its own random area and aspect ratio, resized back to full size."""
    n = images.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the image's side
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)  # keeps the crop inside the image
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, centre_x, height, centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of a float NCHW RGB batch (ITU-R 601 weights), kept as one channel."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its fraction of a turn, as a rotation of the chroma plane in YIQ space."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = turns * 2 * math.pi
    rotation = torch.zeros(len(turns), 3, 3)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rotation[:, 2, 1], rotation[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (n, 3, 3), one per image
    return torch.einsum("nij,njhw->nihw", matrix, images)


def color_distort(images: torch.Tensor, generator: torch.Generator | None = None,
                  strength: float = COLOR_STRENGTH) -> torch.Tensor:
    """SimCLR's colour distortion on a float NCHW batch in [0, 1]: jitter with p = 0.8, then grayscale with p = 0.2.

    Jitter scales brightness, contrast and saturation by factors in [1 - 0.8 s, 1 + 0.8 s] and turns the hue by up
    to 0.2 s of a turn, each image its own factors (one fixed order of the four, where torchvision shuffles it).
    """
    n = images.shape[0]
    factor = lambda: 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.8 * strength  # noqa: E731
    jittered = images * factor()  # brightness
    mean = grayscale(jittered).mean(dim=(2, 3), keepdim=True)
    jittered = (mean + factor() * (jittered - mean)).clamp(0, 1)  # contrast
    gray = grayscale(jittered)
    jittered = (gray + factor() * (jittered - gray)).clamp(0, 1)  # saturation
    turns = (torch.rand(n, generator=generator) * 2 - 1) * 0.2 * strength
    jittered = rotate_hue(jittered, turns).clamp(0, 1)
    apply = (torch.rand(n, 1, 1, 1, generator=generator) < JITTER_PROBABILITY)
    images = torch.where(apply, jittered, images)
    to_gray = (torch.rand(n, 1, 1, 1, generator=generator) < GRAY_PROBABILITY)
    return torch.where(to_gray, grayscale(images).expand_as(images), images)


def augment_view(images: torch.Tensor, augmentation: str = "full", generator: torch.Generator | None = None,
                 normalize: str = "cifar10") -> torch.Tensor:
    """One random view of a uint8 NCHW batch for SimCLR: crop, flip and colour as `augmentation` says, normalized.

    `full`: random resized crop, horizontal flip, colour distortion; `no_color`: without the colour distortion;
    `no_crop`: without the random resized crop (flip and colour kept).
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augmentation!r}; valid: {', '.join(AUGMENTATIONS)}")
    views = images.float() / 255.0
    if augmentation != "no_crop":
        views = random_resized_crop(views, generator)
    flip = torch.rand(len(views), generator=generator) < 0.5
    views = torch.where(flip[:, None, None, None], views.flip(3), views)
    if augmentation != "no_color":
        views = color_distort(views, generator)
    mean, std = normalization(normalize)
    return (views - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def unlabelled_batches(images: np.ndarray, batch_size: int, seed: int):
    """Cycle forever over shuffled uint8 NCHW batches of images alone (no labels exist here), full batches only."""
    if batch_size > len(images):
        raise ValueError(f"BATCH_SIZE={batch_size} is larger than the {len(images)} unlabelled images; use fewer")
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield tensor[order[start:start + batch_size]]


def knn_predict(train_features: np.ndarray, train_labels: np.ndarray, query_features: np.ndarray, k: int = 20,
                temperature: float = 0.07) -> np.ndarray:
    """Weighted kNN on cosine similarity (Wu et al., 2018): each of the k neighbours votes exp(similarity / T)."""
    if k < 1 or len(train_features) < 1:
        raise ValueError(f"kNN needs k >= 1 and at least one labelled image (k = {k}, {len(train_features)} images)")
    k = min(k, len(train_features))
    bank = torch.nn.functional.normalize(torch.as_tensor(train_features, dtype=torch.float32), dim=1)
    query = torch.nn.functional.normalize(torch.as_tensor(query_features, dtype=torch.float32), dim=1)
    similarity, neighbour = (query @ bank.T).topk(k, dim=1)
    labels = torch.as_tensor(train_labels, dtype=torch.int64)[neighbour]
    classes = int(train_labels.max()) + 1
    votes = torch.zeros(len(query), classes).scatter_add_(1, labels, torch.exp(similarity / temperature))
    return votes.argmax(1).numpy()


def _code_text(code: Any) -> str:
    """Spell compiled code without memory addresses (nested functions' code spelled the same way)."""
    constants = [_code_text(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code, code.co_names, constants))


def code_digest(*functions: Callable[..., Any]) -> str:
    """Hash the source of the pretraining code (the notebook's functions given, and this module's augmentations).

    Put into a checkpoint's settings, it makes a change to the loop, the loss or the views invalidate the
    checkpoints the old code made, instead of reusing them under the same name.
    """
    sources = [inspect.getsource(sys.modules[__name__])]
    for function in functions:
        try:
            sources.append(inspect.getsource(function))
        except (OSError, TypeError):  # no source file (an exec'd function): its compiled code stands in
            sources.append(_code_text(function.__code__))
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


def checkpoint_name(settings: dict[str, Any]) -> str:
    """Name a self-supervised checkpoint by its method and a hash of everything that made it (data included)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"selfsup_{settings['method']}_{digest}.pt"


def pretrained_encoder(settings: dict[str, Any], pretrain: Callable[[], tuple[TransferNet, list[dict[str, Any]]]]
                       ) -> tuple[TransferNet, list[dict[str, Any]], dict[str, Any]]:
    """Return an encoder pretrained with `settings`, from the hash-checked cache when this exact run was made before.

    `pretrain()` runs only when no usable checkpoint exists; it returns the encoder and its history (losses, kNN
    monitor), which are saved beside the weights. A damaged or foreign checkpoint is named and made again. Returns
    (encoder, history, info): info names the checkpoint, its SHA-256 and whether it came from the cache.
    """
    name = checkpoint_name(settings)
    for path in cached_files("checkpoints", name):
        try:
            encoder, meta = load_checkpoint(path, expect={"settings": settings})
            return encoder, meta["history"], {"checkpoint": shown(path), "sha256": meta["sha256"], "cached": True}
        except (CheckpointError, KeyError) as error:
            print(f"Self-supervised checkpoint {shown(path)} cannot be used ({type(error).__name__}); pretraining "
                  "again and replacing it.")
    encoder, history = pretrain()
    unused = [f"unused {i}" for i in range(encoder.head.out_features)]  # the head a probe or LP-FT replaces
    meta = {"settings": settings, "history": history, "classes": unused,
            "widths": list(COURSE_NET_WIDTHS), "fingerprint": state_fingerprint(encoder)}
    path = save_checkpoint(encoder, meta, cache_dir("checkpoints") / name)
    _, saved = load_checkpoint(path, expect={"settings": settings})  # read back: what was written is what is used
    return encoder, history, {"checkpoint": shown(path), "sha256": saved["sha256"], "cached": False}
