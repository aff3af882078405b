"""PyTorch side of the shared data API: a Dataset over uint8 arrays and a DataLoader that augments per batch.

Augmentation runs on whole batches (one gather for every image's own random crop), which is several
times faster than per-image transforms on a CPU and works the same on a GPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .data import normalization


def random_crop_flip(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Give each image of an NCHW batch its own random crop after zero padding, and flip half of them."""
    n, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
    cropped = padded[torch.arange(n)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


RAND_AUGMENT = {"num_ops": 2, "magnitude": 9}  # operations per image, and their strength on torchvision's 0-30 scale


def cutout(images: torch.Tensor, hole: int = 12, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut a grey square out of each image of a float NCHW batch in [0, 1] (cutout, DeVries & Taylor, 2017).

    The square has 2 * (`hole` // 2) + 1 pixels a side (13 by default), around a random centre, clipped at the edges.
    """
    n, _, height, width = images.shape
    cy = torch.randint(0, height, (n, 1, 1), generator=generator)
    cx = torch.randint(0, width, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(height)[None, :, None], torch.arange(width)[None, None, :]
    inside = ((rows - cy).abs() <= hole // 2) & ((cols - cx).abs() <= hole // 2)
    return images.masked_fill(inside[:, None], 0.5)


def rand_augment_cutout(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Strong noise, every image its own: RandAugment on a uint8 NCHW batch, then cutout; floats in [0, 1] out.

    RandAugment (Cubuk et al., 2020; torchvision's `v2.RandAugment`, `RAND_AUGMENT`) applies `num_ops` operations
    drawn from its list of fourteen (rotation, shear, translation, colour, contrast, posterize, solarize, ...) to
    each image separately, as Noisy Student did. torchvision draws from torch's global random stream: it runs on a
    forked stream seeded from `generator`, so the noise is reproducible and the caller's stream is left alone. It
    runs on one thread: on a 32 x 32 image the thread pool's hand-offs cost more than the work, and on a busy
    machine they made the per-image loop 20 to 50 times slower than one thread.
    """
    from torchvision.transforms import v2

    augment = v2.RandAugment(**RAND_AUGMENT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            noised = torch.stack([augment(image) for image in images])
    finally:
        torch.set_num_threads(threads)
    return cutout(noised.float() / 255.0, generator=generator)


class BatchTransform:
    """Turn a uint8 NCHW batch into normalized floats: (augment,) scale to [0, 1], resize, normalize."""

    def __init__(self, train: bool, image_size: int, normalize: str = "cifar10", seed: int = 0,
                 strong: bool = False) -> None:
        """Fix the augmentation switches, output size, normalization and the augmentation's own random stream."""
        mean, std = normalization(normalize)
        self.train, self.image_size = train, image_size
        self.strong = strong and train
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the pipeline to one batch."""
        if self.train:
            images = random_crop_flip(images, generator=self.generator)
        images = rand_augment_cutout(images, self.generator) if self.strong else images.float() / 255.0
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=self.image_size < images.shape[-1])
        return (images - self.mean) / self.std


class ArrayDataset(Dataset):
    """Images held in memory as uint8 NHWC arrays, served as uint8 CHW tensors with int64 labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Keep one CHW uint8 tensor of all images; labels become int64."""
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        """Return the number of images."""
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return one uint8 image and its label."""
        return self.images[index], self.labels[index]


def make_loader(images: np.ndarray, labels: np.ndarray, train: bool, image_size: int = 32, batch_size: int = 128,
                normalize: str = "cifar10", seed: int = 0, strong: bool = False) -> DataLoader:
    """Wrap arrays in a DataLoader: shuffled, augmented for training (`strong`: RandAugment, cutout), else ordered."""
    transform = BatchTransform(train, image_size, normalize, seed, strong)

    def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack a batch and transform it in one go."""
        images_, labels_ = zip(*batch, strict=True)
        return transform(torch.stack(images_)), torch.stack(labels_)

    return DataLoader(ArrayDataset(images, labels), batch_size=batch_size, shuffle=train, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available())


def endless_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, strong: bool = False):
    """Cycle forever over augmented, shuffled full batches (channels-last, as the CPU prefers), reshuffled each pass.

    Only full batches: BatchNorm on a batch of 1 or 2 is noise. `strong` adds RandAugment and cutout.
    """
    batch_size = min(batch_size, len(images))
    while True:
        for x, y in make_loader(images, labels, train=True, batch_size=batch_size, seed=seed, strong=strong):
            if len(y) == batch_size:
                yield x.contiguous(memory_format=torch.channels_last), y
        seed += 1
