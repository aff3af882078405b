"""Pre-fetch and weight registry: what is staged, what is missing, and the messages offline."""

from __future__ import annotations

import pytest

from helpers import prefetch, weights


def test_offline_prefetch_reports_every_missing_item_and_fails(data_root, capsys):
    assert prefetch.main([]) == 1
    out = capsys.readouterr().out
    for name in ["cifar10", "torch/resnet18", "keras/mobilenet_v2", "keras/vgg16"]:
        assert name in out
    assert "FAILED" in out and "make prefetch" in out


def test_cached_weight_files_are_reported_as_staged(data_root, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(data_root / "torch"))
    entry = weights.weight_file("torch", "resnet18")
    entry.path.parent.mkdir(parents=True)
    entry.path.write_bytes(b"weights")
    assert prefetch.prefetch(["torch/resnet18"]) == {"torch/resnet18": f"ok: {entry.path}"}


def test_missing_weights_offline_name_the_prefetch_command(data_root, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(data_root / "keras"))
    with pytest.raises(RuntimeError, match="make prefetch"):
        weights.fetch_weights(weights.weight_file("keras", "vgg16"))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="torch/resnet18"):
        weights.weight_file("torch", "alexnet")
    with pytest.raises(SystemExit, match="valid items: cifar10"):
        prefetch.prefetch(["imagenet"])
