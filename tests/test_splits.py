"""Splits: stratified validation, N labels per class, and the course's source/target tasks."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import data, splits


@pytest.fixture(scope="module")
def synthetic() -> data.ImageData:
    return data.make_synthetic(40, 10, seed=1)


def test_stratified_split_is_balanced_disjoint_and_deterministic(synthetic):
    train, val = splits.stratified_split(synthetic.y_train, 0.25, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(synthetic.y_train)
    assert np.bincount(synthetic.y_train[val]).tolist() == [10] * 10
    again, _ = splits.stratified_split(synthetic.y_train, 0.25, seed=3)
    other, _ = splits.stratified_split(synthetic.y_train, 0.25, seed=4)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_validation_fraction_must_be_a_proper_fraction(synthetic, fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        splits.stratified_split(synthetic.y_train, fraction)


def test_labels_per_class_picks_exactly_n_of_each(synthetic):
    chosen = splits.sample_per_class(synthetic.y_train, 7, seed=0)
    assert np.bincount(synthetic.y_train[chosen]).tolist() == [7] * 10
    np.testing.assert_array_equal(chosen, splits.sample_per_class(synthetic.y_train, 7, seed=0))


def test_labels_per_class_larger_than_the_class_says_the_maximum(synthetic):
    with pytest.raises(ValueError, match="between 1 and 40"):
        splits.sample_per_class(synthetic.y_train, 41)


def test_source_target_split_remaps_labels_and_keeps_names(synthetic):
    source, target = splits.source_target_split(synthetic)
    assert source.class_names == synthetic.class_names[:5] and target.class_names == synthetic.class_names[5:]
    assert sorted(np.unique(target.y_train)) == [0, 1, 2, 3, 4]
    assert len(source.y_train) == len(target.y_train) == 200
    original = synthetic.x_train[synthetic.y_train == 7]
    np.testing.assert_array_equal(target.x_train[target.y_train == 2], original)
    assert target.identity["task"] == "target" and target.identity["dataset"] == "synthetic"


def test_get_split_train_val_test_and_few_labels(synthetic):
    x_train, y_train = splits.get_split(synthetic, "train", val_fraction=0.1)
    x_val, y_val = splits.get_split(synthetic, "val", val_fraction=0.1)
    x_test, _ = splits.get_split(synthetic, "test")
    assert len(y_train) + len(y_val) == 400 and len(x_test) == 100
    _, y_few = splits.get_split(synthetic, "train", labels_per_class=5)
    assert np.bincount(y_few).tolist() == [5] * 10


def test_unknown_split_and_task_list_valid_names(synthetic):
    with pytest.raises(ValueError, match="train, val, test"):
        splits.get_split(synthetic, "holdout")
    with pytest.raises(ValueError, match="all, source, target"):
        splits.task_data(synthetic, "other")


def test_source_target_needs_ten_classes(synthetic):
    five = splits.task_data(synthetic, "source")
    with pytest.raises(ValueError, match="10 classes"):
        splits.source_target_split(five)


def test_labelled_protocol_has_no_validation_split_and_oracle_has_the_big_one(synthetic):
    target = splits.task_data(synthetic, "target")
    train, val = splits.labelled_split(target, 10, "labelled", seed=0)
    oracle_train, oracle_val = splits.labelled_split(target, 10, "oracle", seed=0)
    assert val is None and len(train) == 50
    np.testing.assert_array_equal(train, oracle_train)  # the same labelled images under both protocols
    assert len(oracle_val) == len(splits.split_indices(target, "val", seed=0)) and not set(oracle_val) & set(train)
    every_label, held_out = splits.labelled_split(target, None, "labelled", seed=0)
    assert held_out is not None and not set(every_label) & set(held_out)  # with every label, a held-out part


def test_one_label_per_class_cannot_be_cross_validated_and_names_the_alternatives(synthetic):
    target = splits.task_data(synthetic, "target")
    with pytest.raises(ValueError, match=r"LABELS_PER_CLASS >= 2.*VALIDATION='oracle'"):
        splits.labelled_split(target, 1, "labelled")
    with pytest.raises(ValueError, match="valid: labelled, oracle"):
        splits.labelled_split(target, 10, "test-set")
