"""PyTorch transfer plumbing: models, checkpoints, weights choice, freezing, the loop, probes, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import data, models, splits, torch_data, torch_train, weights

CPU = torch.device("cpu")


def test_course_net_shapes_and_parts():
    net = models.course_net(num_classes=5)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 256) and net.feature_dim == 256
    assert 600_000 < sum(p.numel() for p in net.parameters()) < 1_000_000
    assert list(models.top_block(net)) == [net.features.stage3, net.features.norm]
    assert models.blocks_in_order(net)[-1] is net.head


def test_torchvision_backbone_keeps_its_head_and_names_blocks():
    net = models.torchvision_net("resnet18", pretrained=False)
    assert net.head.out_features == 1000 and net.feature_dim == 512
    assert models.top_block(net) is net.features.layer4
    assert net.eval().features(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_checkpoint_round_trip_and_its_failures(tmp_path, monkeypatch):
    net = models.course_net()
    path = models.save_checkpoint(net, {"classes": list("abcde"), "widths": list(models.COURSE_NET_WIDTHS), "tag": 1},
                                  tmp_path / "model.pt")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    loaded, meta = models.load_checkpoint(path, {"tag": 1})
    assert calls[0]["weights_only"] is True
    assert models.state_fingerprint(loaded) == models.state_fingerprint(net)
    with pytest.raises(models.CheckpointMismatch, match="tag=1, not 2"):
        models.load_checkpoint(path, {"tag": 2})
    other = models.save_checkpoint(models.course_net(widths=(8, 16, 32, 64)), {
        "classes": list("abcde"), "widths": list(models.COURSE_NET_WIDTHS)}, tmp_path / "other.pt")
    with pytest.raises(models.CheckpointMismatch, match="different network"):
        models.load_checkpoint(other)
    with open(path, "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(models.CheckpointCorrupt, match="corrupt"):
        models.load_checkpoint(path)
    with pytest.raises(models.CheckpointMissing, match="notebook 03"):
        models.load_checkpoint(tmp_path / "none.pt")


def test_weights_and_model_names_are_checked():
    with pytest.raises(ValueError, match="imagenet, course, none, auto"):
        models.source_model("places365", "resnet18", "smoke")
    with pytest.raises(ValueError, match="course_net, resnet18"):
        models.source_model("none", "vgg99", "smoke")


def test_imagenet_offline_without_cache_names_prefetch(data_root, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(data_root / "torch"))
    with pytest.raises(FileNotFoundError, match="make prefetch"):
        models.source_model("imagenet", "resnet18", "smoke")


def test_auto_falls_back_loudly_to_the_course_model(data_root, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(data_root / "torch"))
    monkeypatch.setattr(weights, "_NOTICE_SHOWN", [])
    models.save_checkpoint(models.course_net(), {"classes": list("abcde"), "widths": list(models.COURSE_NET_WIDTHS),
                                                 "source_test_acc": 0.9, "data": {}},
                           models.checkpoint_path("smoke"))
    net, info = models.source_model("auto", "resnet18", "smoke")
    assert info["weights"] == "course" and net.name == "course_net" and len(info["sha256"]) == 64
    assert "resnet18 falls back to the course's own source model" in capsys.readouterr().out


@pytest.mark.parametrize("model, size", [("course_net", 4), ("resnet18", 16), ("resnet18", 1024)])
def test_impossible_input_sizes_name_the_range(model, size):
    with pytest.raises(ValueError, match="use a size from"):
        models.check_image_size(model, size)


def _train_head_only(frozen_features: bool) -> tuple[models.TransferNet, dict, torch.Tensor]:
    """Train only the head for one epoch; return the net, the features' state before, the head before."""
    torch.manual_seed(0)
    synthetic = splits.task_data(data.make_synthetic(20, 4), "source")
    loader = torch_data.make_loader(synthetic.x_train, synthetic.y_train, train=True, batch_size=25)
    net = models.course_net()
    for parameter in net.features.parameters():
        parameter.requires_grad = False
    before = {k: v.clone() for k, v in net.features.state_dict().items()}
    head_before = net.head.weight.detach().clone()
    optimizer = torch.optim.SGD(net.head.parameters(), lr=0.1)
    frozen = [net.features] if frozen_features else []
    torch_train.fit(net, loader, None, optimizer, 1, nn.CrossEntropyLoss(), CPU, frozen=frozen)
    return net, before, head_before


def test_frozen_parts_keep_weights_and_batchnorm_statistics():
    net, before, head_before = _train_head_only(frozen_features=True)
    for name, tensor in net.features.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not torch.equal(net.head.weight, head_before)


def test_requires_grad_alone_lets_batchnorm_statistics_drift():
    net, before, _ = _train_head_only(frozen_features=False)
    assert not torch.equal(net.features.state_dict()["stem.1.running_mean"], before["stem.1.running_mean"])


def test_training_the_course_net_beats_chance_clearly():
    torch.manual_seed(0)
    source = splits.task_data(data.make_synthetic(120, 30, seed=0), "source")
    train = torch_data.make_loader(source.x_train, source.y_train, train=True, batch_size=50)
    test = torch_data.make_loader(source.x_test, source.y_test, train=False, batch_size=150)
    net = torch_train.to_device(models.course_net(), CPU)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    history = torch_train.fit(net, train, test, optimizer, 5, nn.CrossEntropyLoss(), CPU)
    assert len(history) == 5 and history[-1]["val_acc"] > 0.5  # chance is 0.2


def test_probe_copied_into_a_head_predicts_like_the_probe():
    rng = np.random.default_rng(0)
    features = rng.normal(2.0, 3.0, (300, 16)).astype(np.float32)
    labels = (features @ rng.normal(0, 1, (16, 3))).argmax(1)  # linearly separable classes
    scaler, probe = torch_train.fit_linear_probe(features, labels)
    head = nn.Linear(16, 3)
    torch_train.probe_to_head(scaler, probe, head)
    with torch.no_grad():
        head_probs = head(torch.from_numpy(features)).softmax(1).numpy()
    np.testing.assert_allclose(head_probs, probe.predict_proba(scaler.transform(features)), atol=1e-4)
    assert probe.score(scaler.transform(features), labels) > 0.9


def test_features_are_computed_once_per_key(data_root):
    calls = []
    compute = lambda: calls.append(1) or np.ones((3, 2))
    first, path, hit = torch_train.cached_features({"model": "m", "split": "train"}, compute)
    second, same_path, second_hit = torch_train.cached_features({"model": "m", "split": "train"}, compute)
    assert (hit, second_hit, len(calls), path) == (False, True, 1, same_path)
    np.testing.assert_array_equal(first, second)
    torch_train.cached_features({"model": "m", "split": "test"}, compute)
    assert len(calls) == 2


def test_random_crop_flip_takes_each_image_from_its_padded_self():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = torch_data.random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    padded = nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(2):
        windows = [padded[n, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(2)) for w in windows)


def test_cross_validated_probe_scores_each_strength_on_held_out_folds():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 10)
    features = rng.normal(size=(50, 8)) + 3 * np.eye(5, 8)[labels]  # separable classes
    scores, out_of_fold = torch_train.cross_validated_probe(features, labels, (0.001, 1.0), seed=0)
    assert set(scores) == {0.001, 1.0} and scores[1.0] > 0.8  # chance is 0.2
    assert out_of_fold[1.0].shape == (50, 5) and np.allclose(out_of_fold[1.0].sum(1), 1)
    with pytest.raises(ValueError, match="at least 2 labelled images per class"):
        torch_train.cross_validated_probe(features[::10], labels[::10], (1.0,))


def test_feature_cache_key_tells_synthetic_seeds_apart_and_real_data_by_content():
    seed0, seed1 = (data.make_synthetic(20, 5, seed=seed).identity for seed in (0, 1))
    assert torch_train.data_key(seed0) != torch_train.data_key(seed1)
    assert torch_train.data_key(seed0) == torch_train.data_key(data.make_synthetic(20, 5, seed=0).identity)
    real = {"dataset": "imagefolder", "sha256": "abc", "source": "copy-a.tar.gz"}
    assert torch_train.data_key(real) == torch_train.data_key({**real, "source": "renamed.tar.gz"})
