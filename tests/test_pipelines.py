"""Both frameworks read the same arrays: shapes, dtypes, normalization and augmentation agree."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import data, tf_data, torch_data


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    synthetic = data.make_synthetic(4, 1, seed=2)
    return synthetic.x_train, synthetic.y_train


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("normalize", ["cifar10", "imagenet"])
def test_torch_and_tf_give_the_same_tensors_without_augmentation(images, size, normalize):
    x, y = images
    torch_x, torch_y = next(iter(torch_data.make_loader(x, y, False, size, batch_size=40, normalize=normalize)))
    tf_x, tf_y = next(iter(tf_data.make_tf_dataset(x, y, False, size, batch_size=40, normalize=normalize)))
    assert tuple(torch_x.shape) == (40, 3, size, size) and tuple(tf_x.shape) == (40, size, size, 3)
    assert str(torch_x.dtype) == "torch.float32" and tf_x.dtype.name == "float32"
    assert str(torch_y.dtype) == "torch.int64" and tf_y.dtype.name == "int64"
    np.testing.assert_allclose(torch_x.permute(0, 2, 3, 1).numpy(), tf_x.numpy(), atol=1e-5)
    np.testing.assert_array_equal(torch_y.numpy(), tf_y.numpy())


def test_normalization_uses_the_named_statistics(images):
    x, y = images
    batch, _ = next(iter(torch_data.make_loader(x, y, False, batch_size=40)))
    mean, std = data.normalization("cifar10")
    expected = (x[..., 0] / 255.0 - mean[0]) / std[0]
    np.testing.assert_allclose(batch[:, 0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("make", ["torch", "tf"])
def test_training_augmentation_shifts_or_flips_but_keeps_shape(images, make):
    x, y = images
    if make == "torch":
        batch = next(iter(torch_data.make_loader(x, y, True, batch_size=40, seed=0)))[0].permute(0, 2, 3, 1).numpy()
    else:
        batch = next(iter(tf_data.make_tf_dataset(x, y, True, batch_size=40, seed=0)))[0].numpy()
    assert batch.shape == (40, 32, 32, 3)
    plain = next(iter(torch_data.make_loader(x, y, False, batch_size=40)))[0].permute(0, 2, 3, 1).numpy()
    assert not np.allclose(np.sort(batch.ravel()), np.sort(plain.ravel()))  # padding adds zero pixels


def test_tf_augmentation_repeats_for_a_seed(images):
    x, y = images
    first = next(iter(tf_data.make_tf_dataset(x, y, True, batch_size=40, seed=7)))[0].numpy()
    again = next(iter(tf_data.make_tf_dataset(x, y, True, batch_size=40, seed=7)))[0].numpy()
    np.testing.assert_array_equal(first, again)


def test_tf_labels_one_hot_when_asked(images):
    x, y = images
    _, labels = next(iter(tf_data.make_tf_dataset(x, y, False, batch_size=40, num_classes=10)))
    assert labels.shape == (40, 10) and labels.dtype.name == "float32"
    np.testing.assert_array_equal(labels.numpy().argmax(1), y[:40])
    np.testing.assert_array_equal(labels.numpy().sum(1), np.ones(40))


def test_mismatched_lengths_are_refused(images):
    x, y = images
    with pytest.raises(ValueError, match="differ in length"):
        torch_data.ArrayDataset(x, y[:-1])
    with pytest.raises(ValueError, match="differ in length"):
        tf_data.make_tf_dataset(x, y[:-1], False)
