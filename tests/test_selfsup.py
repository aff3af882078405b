"""Self-supervised pretraining (notebook 10): the notebook's own loss and batches, and the helpers behind them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from notebook_code import notebook_definition
from torch import nn

from helpers import models, runtime, selfsup, torch_train

NOTEBOOK = "10_self_supervised_pretraining"


def lesson(*names: str, **extra: Any) -> dict[str, Any]:
    """Define the named functions exactly as notebook 10 writes them, in a namespace with the cells' imports."""
    space = {"np": np, "torch": torch, "nn": nn, "models": models, "selfsup": selfsup, **extra}
    for name in names:
        notebook_definition(NOTEBOOK, name, space)
    return space


def brute_nt_xent(z_1: torch.Tensor, z_2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent by its definition, one anchor at a time (Chen et al., 2020, Algorithm 1)."""
    z = nn.functional.normalize(torch.cat([z_1, z_2]), dim=1)
    n, losses = len(z_1), []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = torch.stack([z[i] @ z[k] / temperature for k in range(2 * n) if k != i])
        losses.append(torch.logsumexp(others, 0) - z[i] @ z[partner] / temperature)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_equals_its_definition(temperature):
    nt_xent = lesson("nt_xent")["nt_xent"]
    generator = torch.Generator().manual_seed(0)
    z_1, z_2 = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(nt_xent(z_1, z_2, temperature), brute_nt_xent(z_1, z_2, temperature))


def test_nt_xent_equals_lightly_reference():
    lightly_loss = pytest.importorskip("lightly.loss")  # a test dependency (requirements-teach.txt)
    nt_xent = lesson("nt_xent")["nt_xent"]
    generator = torch.Generator().manual_seed(1)
    z_1, z_2 = torch.randn(16, 8, generator=generator), torch.randn(16, 8, generator=generator)
    for temperature in (0.2, 0.5):
        reference = lightly_loss.NTXentLoss(temperature=temperature)(z_1, z_2)
        torch.testing.assert_close(nt_xent(z_1, z_2, temperature), reference, rtol=1e-5, atol=1e-6)


def test_nt_xent_rewards_matching_views_and_its_gradient_pulls_partners_together():
    nt_xent = lesson("nt_xent")["nt_xent"]
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    assert nt_xent(z, z + 0.01, 0.5) < nt_xent(z, torch.randn(8, 16), 0.5)
    moved = z.clone().requires_grad_()
    partner = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    loss = nt_xent(moved, partner, 0.5)
    loss.backward()
    stepped = nt_xent(moved.detach() - 0.1 * moved.grad, partner, 0.5)
    assert stepped < loss


def test_rotation_batch_turns_each_image_and_labels_the_turn():
    rotation_batch = lesson("rotation_batch")["rotation_batch"]
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    rotated, labels = rotation_batch(images)
    assert rotated.shape == (8, 3, 4, 4)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for index, label in enumerate(labels.tolist()):
        torch.testing.assert_close(rotated[index], torch.rot90(images[index % 2], label, dims=(1, 2)))
    torch.testing.assert_close(torch.rot90(rotated[6], 1, dims=(1, 2)), images[0])  # 270 degrees, then 90 more


def test_the_two_views_differ_and_each_stays_with_its_image():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    first = selfsup.augment_view(images, "full", torch.Generator().manual_seed(0))
    second = selfsup.augment_view(images, "full", torch.Generator().manual_seed(1))
    assert first.shape == second.shape == (8, 3, 32, 32)
    assert not torch.allclose(first, second)
    # constant images are unchanged by crops and flips: without colour, view i is image i, normalized
    colours = torch.from_numpy(rng.integers(0, 256, (5, 3), dtype=np.uint8))
    flat = colours[:, :, None, None].expand(5, 3, 32, 32).contiguous()
    view = selfsup.augment_view(flat, "no_color", torch.Generator().manual_seed(2))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in selfsup.normalization("cifar10"))
    torch.testing.assert_close(view, (flat.float() / 255 - mean) / std, atol=1e-5, rtol=0)


def test_no_color_keeps_the_colours_and_no_crop_keeps_the_pixels_in_place():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in selfsup.normalization("cifar10"))
    plain = images.float() / 255
    no_color = selfsup.augment_view(images, "no_color", torch.Generator().manual_seed(0)) * std + mean
    assert no_color.min() >= -1e-5 and no_color.max() <= 1 + 1e-5
    assert abs(float(no_color.mean() - plain.mean())) < 0.02  # crops resample the same colours
    grey = images.float().mean(1, keepdim=True).expand(6, 3, 32, 32).round().to(torch.uint8)  # colour cannot move
    no_crop = selfsup.augment_view(grey, "no_crop", torch.Generator().manual_seed(0)) * std + mean
    for view, image in zip(no_crop[:, 0], grey[:, 0].float() / 255, strict=True):  # a flip, a brightness, a contrast
        corr = max(np.corrcoef(view.flatten(), candidate.flatten())[0, 1] for candidate in (image, image.flip(1)))
        assert corr > 0.99


def test_colour_distortion_stays_in_range_and_grey_images_are_grey():
    images = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    distorted = selfsup.color_distort(images, torch.Generator().manual_seed(1))
    assert distorted.min() >= 0 and distorted.max() <= 1
    same = lambda a, b: (distorted[:, a] == distorted[:, b]).flatten(1).all(1)  # noqa: E731
    grey = same(0, 1) & same(1, 2)
    assert 3 <= int(grey.sum()) <= 30  # about 20% turned grey


def test_hue_rotation_by_a_full_turn_is_the_identity():
    images = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(selfsup.rotate_hue(images, torch.ones(4)), images, atol=1e-5, rtol=0)
    assert not torch.allclose(selfsup.rotate_hue(images, torch.full((4,), 0.3)), images, atol=1e-2)


def test_knn_predict_matches_a_brute_force_vote():
    rng = np.random.default_rng(3)
    memory, queries, labels = rng.normal(size=(30, 5)), rng.normal(size=(12, 5)), rng.integers(0, 3, 30)
    unit = lambda rows: rows / np.linalg.norm(rows, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(queries) @ unit(memory).T
    for k in (1, 7, 30, 100):
        want = []
        for row in similarity:
            nearest = np.argsort(-row)[:k]
            want.append(np.bincount(labels[nearest], np.exp(row[nearest] / 0.07), 3).argmax())
        assert selfsup.knn_predict(memory, labels, queries, k, 0.07).tolist() == want
    with pytest.raises(ValueError, match="k >= 1"):
        selfsup.knn_predict(memory, labels, queries, 0)


def test_settings_a_method_cannot_run_with_are_refused_with_their_fix():
    with pytest.raises(ValueError, match="at least 2 images per batch"):
        selfsup.check_settings("simclr", "full", 1, 0.5)
    with pytest.raises(ValueError, match="above 0"):
        selfsup.check_settings("all", "full", 64, 0.0)
    with pytest.raises(ValueError, match="unknown METHOD 'byol'; valid: all, simclr, rotation"):
        selfsup.check_settings("byol", "full", 64, 0.5)
    with pytest.raises(ValueError, match="unknown AUGMENT 'blur'; valid: full, no_color, no_crop"):
        selfsup.check_settings("simclr", "blur", 64, 0.5)
    with pytest.raises(ValueError, match="at least 2 per class"):
        selfsup.check_settings("simclr", "full", 64, 0.5, [1, 50])
    selfsup.check_settings("rotation", "full", 1, 0.5)  # a batch of one is four rotated images: allowed
    with pytest.raises(ValueError, match="larger than the 10 unlabelled images"):
        next(selfsup.unlabelled_batches(np.zeros((10, 4, 4, 3), np.uint8), 32, 0))


def test_the_notebook_refuses_bad_parameters_before_any_work(tmp_path):
    from helpers import parameters

    space = {"__annotations__": {"METHOD": str, "AUGMENT": str, "TEMPERATURE": float, "OUTPUT_DIR": "Optional[str]"},
             "METHOD": "moco", "AUGMENT": "full", "TEMPERATURE": -1.0, "OUTPUT_DIR": str(tmp_path)}
    with pytest.raises(parameters.ParameterError) as error:
        parameters.check_parameters(space, choices={"METHOD": ("all", *selfsup.METHODS)})
    assert "METHOD='moco' is not one of: all, simclr, rotation" in str(error.value)
    assert "TEMPERATURE=-1.0 is out of range" in str(error.value)


def test_pretraining_lowers_the_loss_on_a_fixed_seed():
    rng = np.random.default_rng(0)
    space = lesson("nt_xent", "projection_head", "rotation_batch", "pretrain",
                   device=torch.device("cpu"), unlabelled=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
                   config={"batch_size": 16, "monitor_points": 2}, TEMPERATURE=0.5, LR=0.1, ROTATION_LR=0.05,
                   target=type("T", (), {"class_names": ["a", "b"]}), knn_monitor=lambda encoder: 0.5,
                   progress_bar=lambda iterable, **_: iterable, torch_train=torch_train, runtime=runtime)
    for method in selfsup.METHODS:
        _, history = space["pretrain"](method, "full", 30, 0)
        losses = [row["loss"] for row in history if row["loss"] is not None]
        assert losses[-1] < losses[0], (method, losses)
        assert [row["step"] for row in history] == [0, 15, 30]


def test_checkpoints_are_reused_by_their_settings_and_rebuilt_when_damaged(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path))
    calls = []

    def pretrain() -> tuple[models.TransferNet, list[dict]]:
        calls.append(1)
        torch.manual_seed(len(calls))
        return models.course_net(5), [{"step": 0, "loss": None, "knn_acc": 0.2}]

    settings = {"method": "simclr", "steps": 3, "data": "abc"}
    first, history, info = selfsup.pretrained_encoder(settings, pretrain)
    again, _, reused = selfsup.pretrained_encoder(settings, pretrain)
    assert calls == [1] and reused["cached"] and not info["cached"] and history[0]["knn_acc"] == 0.2
    assert models.state_fingerprint(first) == models.state_fingerprint(again)
    _, _, other = selfsup.pretrained_encoder({**settings, "data": "other"}, pretrain)  # other data: other checkpoint
    assert calls == [1, 1] and not other["cached"]
    path = tmp_path / "checkpoints" / selfsup.checkpoint_name(settings)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # damaged: the hash no longer matches
    _, _, rebuilt = selfsup.pretrained_encoder(settings, pretrain)
    assert calls == [1, 1, 1] and not rebuilt["cached"]
    assert "cannot be used (CheckpointCorrupt); pretraining again" in capsys.readouterr().out
    assert selfsup.pretrained_encoder(settings, pretrain)[2]["cached"]
