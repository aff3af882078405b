"""TensorFlow side of the shared data API: a tf.data pipeline with the same augmentation as torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .data import normalization
from .runtime import import_tensorflow

if TYPE_CHECKING:
    import tensorflow as tf  # imported when a pipeline is built, so Keras's backend can be chosen first


def _augment(image: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """Random crop after 4-pixel zero padding, then random horizontal flip (stateless, so reproducible)."""
    tf = import_tensorflow()
    height, width = image.shape[0], image.shape[1]
    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, (height, width, 3), seed=seeds[:2])
    return tf.image.stateless_random_flip_left_right(cropped, seed=seeds[2:])


def make_tf_dataset(images: np.ndarray, labels: np.ndarray, train: bool, image_size: int = 32,
                    batch_size: int = 128, normalize: str = "cifar10", seed: int = 0,
                    num_classes: int | None = None) -> tf.data.Dataset:
    """Serve arrays as NHWC float batches: shuffled and augmented on the fly for training, then prefetched.

    With `num_classes`, labels come one-hot (what a loss with label smoothing needs), made by TensorFlow so the
    pipeline works under any Keras backend.
    """
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    tf = import_tensorflow()
    mean, std = (tf.constant(v, tf.float32) for v in normalization(normalize))
    native_size = images.shape[1]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    if train:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda pair, s: (_augment(pair[0], s), pair[1]), num_parallel_calls=tf.data.AUTOTUNE)

    def prepare(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Scale to [0, 1], resize when asked, normalize per channel."""
        image = tf.cast(image, tf.float32) / 255.0
        if image_size != native_size:
            image = tf.image.resize(image, (image_size, image_size), method="bilinear")
        return (image - mean) / std, label if num_classes is None else tf.one_hot(label, num_classes)

    return dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
