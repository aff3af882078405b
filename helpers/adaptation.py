"""Domain shift and unsupervised domain adaptation: CIFAR-10-C corruptions, AdaBN, TENT, DANN, self-training.

The corruptions follow the reference definitions of CIFAR-10-C (Hendrycks & Dietterich, 2019, the authors'
`make_cifar_c.py`): the same formulas and severity constants for 32x32 images, written with numpy, scipy and
Pillow (the reference needs OpenCV, scikit-image and ImageMagick), deterministic for a given seed.

Every adaptation method here sees target *images* only. Target labels exist in this course only to evaluate,
and a method given them refuses (`TargetLabelsError`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from . import runtime
from .torch_data import make_loader

SEVERITIES = (1, 2, 3, 4, 5)
CONSTANTS = {  # make_cifar_c.py, severity 1 to 5
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # standard deviation, on [0, 1]
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity (Poisson)
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of values set to 0 or 1
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, anti-alias sigma
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor towards each image's per-channel mean
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # down-scale factor, box filter both ways
    "jpeg": (80, 65, 58, 50, 40),  # JPEG quality
}
CORRUPTIONS = tuple(CONSTANTS)
METHODS = ("none", "norm", "adabn", "tent", "dann", "dann_lambda0", "self_training")


class TargetLabelsError(TypeError):
    """An unsupervised adaptation method was handed target labels."""


# --------------------------------------------------------------------------------------------- corruptions

def _check(name: str, severity: int) -> None:
    """Refuse an unknown corruption or a severity outside 1-5, listing the valid values."""
    if name not in CONSTANTS:
        raise ValueError(f"Unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"Severity must be one of 1, 2, 3, 4, 5 (CIFAR-10-C's levels), got {severity!r}")


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Return the reference defocus kernel: a normalised disk on a 17x17 grid, smoothed by a 3x3 Gaussian."""
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur**2))  # OpenCV's 3x3 Gaussian with this sigma
    taps /= taps.sum()
    return ndimage.correlate(ndimage.correlate(disk, taps[None, :], mode="mirror"), taps[:, None], mode="mirror")


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """Convert RGB in [0, 1] to HSV in [0, 1] (the formulas scikit-image uses), for any leading shape."""
    value = x.max(-1)
    delta = value - x.min(-1)
    safe = np.where(delta == 0, 1, delta)
    r, g, b = np.moveaxis(x, -1, 0)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = np.where(delta == 0, 0, (hue / 6) % 1)
    saturation = np.where(value == 0, 0, delta / np.where(value == 0, 1, value))
    return np.stack([hue, saturation, value], -1)


def _hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    """Convert HSV in [0, 1] back to RGB in [0, 1]."""
    hue, saturation, value = np.moveaxis(x, -1, 0)
    sector = np.floor(hue * 6)
    fraction = hue * 6 - sector
    p, q, t = value * (1 - saturation), value * (1 - fraction * saturation), value * (1 - (1 - fraction) * saturation)
    sector = sector.astype(int) % 6
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    return np.stack([np.choose(sector, [c[channel] for c in choices]) for channel in range(3)], -1)


def _per_image(images: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a Pillow operation to each image, returning floats in [0, 1]."""
    return np.stack([np.asarray(change(Image.fromarray(image))) for image in images]).astype(np.float64) / 255


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Encode and decode one image as JPEG at a quality."""
    stream = io.BytesIO()
    image.save(stream, "JPEG", quality=quality)
    return Image.open(io.BytesIO(stream.getvalue())).convert("RGB")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt uint8 NHWC images as CIFAR-10-C does; the same seed gives the same images."""
    _check(name, severity)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"corrupt expects uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    c = CONSTANTS[name][severity - 1]
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    x = images.astype(np.float64) / 255
    if name == "gaussian_noise":
        x = x + rng.normal(scale=c, size=x.shape)
    elif name == "shot_noise":
        x = rng.poisson(x * c) / c
    elif name == "impulse_noise":  # scikit-image's "s&p": flip each value with probability c, half to 1, half to 0
        flipped, salted = rng.random(x.shape) < c, rng.random(x.shape) < 0.5
        x = np.where(flipped, salted.astype(np.float64), x)
    elif name == "defocus_blur":
        kernel = disk_kernel(*c)
        rows, cols = np.nonzero(kernel.sum(1))[0], np.nonzero(kernel.sum(0))[0]
        kernel = kernel[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # drop all-zero borders: same result, faster
        x = ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")  # OpenCV filter2D's border: reflect-101
    elif name == "contrast":
        means = x.mean(axis=(1, 2), keepdims=True)
        x = (x - means) * c + means
    elif name == "brightness":
        hsv = _rgb_to_hsv(x)
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        x = _hsv_to_rgb(hsv)
    elif name == "pixelate":
        side = images.shape[1]
        small = (int(side * c), int(side * c))
        x = _per_image(images, lambda im: im.resize(small, Image.Resampling.BOX).resize((side, side),
                                                                                         Image.Resampling.BOX))
    else:  # jpeg
        x = _per_image(images, lambda im: _jpeg(im, c))
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)  # truncation, as the reference's np.uint8


# ------------------------------------------------------------------------------------------ target images only

def target_images(target: object) -> np.ndarray:
    """Return unlabelled target images, refusing anything that carries labels."""
    if isinstance(target, np.ndarray) and target.ndim == 4 and target.dtype == np.uint8:
        return target
    raise TargetLabelsError(
        f"Unsupervised adaptation takes target images only (a uint8 array N x H x W x 3), got {type(target).__name__}"
        + (f" of shape {getattr(target, 'shape', None)}" if hasattr(target, "shape") else "")
        + ". Target labels are for evaluation; pass the images alone.")


def image_batches(images: np.ndarray, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Yield normalised image batches in order (no labels, no augmentation) from uint8 images, on `device`."""
    dummy = np.zeros(len(images), dtype=np.int64)  # the loader's label slot; never used
    for batch, _ in make_loader(images, dummy, train=False, batch_size=batch_size):
        yield batch.to(device)


def model_device(model: nn.Module) -> torch.device:
    """Return the device a model's weights are on, where its adaptation runs."""
    return next(model.parameters()).device


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """List a model's BatchNorm layers."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def adabn(model: nn.Module, target: np.ndarray, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """AdaBN (Li et al., 2016): a copy of the model whose BatchNorm statistics are re-estimated on target images.

    Only the running means and variances change (a cumulative average over the target batches); no weight moves.
    """
    images = target_images(target)
    if batch_size < 2:
        warnings.warn("AdaBN with batch_size 1 would estimate each batch's statistics from a single image, which "
                      "BatchNorm1d cannot do; using batches of 2 (still very noisy)", stacklevel=2)
        batch_size = 2
    adapted = copy.deepcopy(model).eval()
    for layer in batchnorm_layers(adapted):
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over all batches
        layer.train()
    with torch.no_grad():  # float32: the statistics are averaged over every batch, so rounding would accumulate
        order = np.random.default_rng(seed).permutation(len(images))
        for batch in image_batches(images[order], batch_size, model_device(adapted)):
            adapted(batch)
    for layer in batchnorm_layers(adapted):
        layer.momentum = 0.1
    return adapted.eval()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Return the Shannon entropy of each row's softmax, in nats."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def test_stream(count: int, seed: int = 0) -> np.ndarray:
    """Order in which the online methods (norm, TENT) meet the target images: a shuffled stream of mixed classes."""
    return np.random.default_rng(seed).permutation(count)


def tent(model: nn.Module, target: np.ndarray, batch_size: int = 128, steps: int = 1, lr: float = 1e-3,
         seed: int = 0, layers: tuple[type[nn.Module], ...] = (nn.BatchNorm2d,)) -> tuple[nn.Module, np.ndarray]:
    """TENT (Wang et al., 2021): predict each target batch with batch statistics while minimising its entropy.

    Configured as the authors' reference code does: the BatchNorm layers of the given types (`BatchNorm2d`, the
    reference's choice) normalise with each batch's own statistics and only their scale and shift (gamma, beta)
    are trained, by Adam; every other layer stays as the source model left it. Each batch gets `steps` updates
    and, like the reference, the predictions of the last forward pass before the last update are returned.
    `steps=0` is the paper's "norm" baseline: test-batch statistics, no gradient step. Returns the adapted copy
    and the online predictions (class probabilities, in the order of `target`; batches in `test_stream` order).
    """
    images = target_images(target)
    adapted = copy.deepcopy(model)
    adapted.requires_grad_(False)
    adapted.eval()
    affine = []
    for layer in batchnorm_layers(adapted):
        if not isinstance(layer, layers):
            continue
        layer.train()  # normalise with the batch's own statistics
        layer.track_running_stats, layer.running_mean, layer.running_var = False, None, None
        for parameter in (layer.weight, layer.bias):
            parameter.requires_grad_(True)
            affine.append(parameter)
    if not affine:
        raise ValueError(f"The model has no BatchNorm layer of the types {[t.__name__ for t in layers]}: TENT has "
                         "nothing to adapt")
    optimizer = torch.optim.Adam(affine, lr=lr, betas=(0.9, 0.999))
    device = model_device(adapted)
    scaler = runtime.grad_scaler(device)
    order = test_stream(len(images), seed)
    probs = []
    for batch in image_batches(images[order], batch_size, device):
        with torch.no_grad() if steps == 0 else contextlib.nullcontext():
            with runtime.autocast(device):
                logits = adapted(batch).float()
            for _ in range(steps - 1):  # the reference predicts with the forward pass before the last update
                runtime.optimizer_step(optimizer, entropy(logits).mean(), scaler)
                with runtime.autocast(device):
                    logits = adapted(batch).float()
            probs.append(logits.detach().softmax(1).cpu())
            if steps:
                runtime.optimizer_step(optimizer, entropy(logits).mean(), scaler)
    in_order = np.empty((len(images), probs[0].shape[1]), dtype=np.float32)
    in_order[order] = torch.cat(probs).numpy()
    return adapted, in_order


def norm(model: nn.Module, target: np.ndarray, batch_size: int = 128, seed: int = 0) -> np.ndarray:
    """TENT's own baseline, "norm": each target batch normalised with its own statistics, no weight updated."""
    return tent(model, target, batch_size, steps=0, seed=seed)[1]


class GradientReversal(torch.autograd.Function):
    """Identity going forward; multiplies the gradient by -lambda going back (Ganin et al., 2016)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        """Pass x through unchanged, remembering lambda."""
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Send back the negated, scaled gradient (and none for lambda)."""
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Apply the gradient-reversal layer."""
    return GradientReversal.apply(x, lambd)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule for the reversal strength: 2 / (1 + exp(-gamma p)) - 1, from 0 to nearly 1."""
    return float(2 / (1 + np.exp(-gamma * progress)) - 1)


def proxy_a_distance(source_features: np.ndarray, target_features: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance 2 (1 - 2 err), from a linear domain classifier's 2-fold cross-validated error.

    Ben-David et al. (2007): 0 when the two domains cannot be told apart, 2 when they always can.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_features, target_features])
    domain = np.r_[np.zeros(len(source_features)), np.ones(len(target_features))]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = cross_val_score(classifier, x, domain, cv=StratifiedKFold(2, shuffle=True, random_state=seed)).mean()
    return float(2 * (1 - 2 * min(1 - accuracy, 0.5)))
