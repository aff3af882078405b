"""PyTorch side of the shared data API: a Dataset over uint8 arrays and a DataLoader with augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .data import normalization


def make_transform(train: bool, image_size: int, native_size: int = 32, normalize: str = "cifar10") -> v2.Compose:
    """Build the standard pipeline: (random crop with 4-pixel padding, flip,) scale, resize, normalize."""
    mean, std = normalization(normalize)
    steps: list[v2.Transform] = []
    if train:
        steps += [v2.RandomCrop(native_size, padding=4), v2.RandomHorizontalFlip()]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if image_size != native_size:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)


class ArrayDataset(Dataset):
    """Images held in memory as uint8 NHWC arrays, served as CHW tensors through a transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: v2.Compose | None = None) -> None:
        """Keep one CHW uint8 tensor of all images; labels become int64."""
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        """Return the number of images."""
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return one transformed image and its label."""
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


def make_loader(images: np.ndarray, labels: np.ndarray, train: bool, image_size: int = 32, batch_size: int = 128,
                normalize: str = "cifar10", seed: int = 0, num_workers: int = 0) -> DataLoader:
    """Wrap arrays in a DataLoader: shuffled and augmented for training, in order for evaluation."""
    transform = make_transform(train, image_size, native_size=images.shape[1], normalize=normalize)
    return DataLoader(ArrayDataset(images, labels, transform), batch_size=batch_size, shuffle=train,
                      generator=torch.Generator().manual_seed(seed), num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)
