"""The GPU path on a CUDA machine (`make test-gpu`): one step of each training loop on the GPU, every notebook in smoke.

Skipped without CUDA. On the CPU, tests/test_runtime.py checks the device and precision rules with CUDA and MPS
simulated; only this file shows that the loops really put their tensors on a GPU.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from notebook_code import notebook_definition
from torch import nn

from helpers import adaptation as ad
from helpers import distill, models, runtime, torch_data, torch_train
from helpers import transferability as tr
from helpers.course import course_notebooks
from helpers.paths import OUTPUTS_ENV
from helpers.progress import progress_bar
from helpers.runner import execute

GPU = "cuda"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=(
    "no CUDA GPU here: `make test-gpu` needs one (on the CPU, tests/test_runtime.py simulates CUDA and MPS)"))]
WIDTHS = (8, 8, 16, 16)  # a small course network: one step in milliseconds


def images(count: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 CIFAR-shaped images."""
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def watched(model: nn.Module) -> list[torch.device]:
    """Record the device of the input of every forward pass of `model`."""
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda _module, args: seen.append(args[0].device))
    return seen


def assert_on_gpu(model: nn.Module, seen: list[torch.device]) -> None:
    """The model's weights and every input it was given are on the GPU."""
    assert seen, "the model was never called"
    assert {device.type for device in seen} == {GPU}, seen
    assert {p.device.type for p in model.parameters()} == {GPU}


@pytest.fixture
def device() -> torch.device:
    """The device the course picks here (CUDA on a machine that runs this file)."""
    return runtime.torch_device(verbose=False)


def test_the_rules_pick_the_gpu_and_a_lower_precision(device):
    assert device.type == GPU and runtime.precision(device) in {"bf16", "fp16"}
    with runtime.autocast(device):
        product = torch.ones(8, 8, device=device) @ torch.ones(8, 8, device=device)
    assert product.dtype in {torch.bfloat16, torch.float16}
    assert runtime.grad_scaler(device).is_enabled() == (runtime.precision(device) == "fp16")


def test_the_run_record_names_the_gpu_precision_and_cudnn_settings():
    recorded = runtime.environment_report(verbose=False)["device"]
    assert recorded["torch_device"] == GPU and recorded["cuda"]["name"]
    assert recorded["precision"] in {"bf16", "fp16"} and recorded["channels_last"] is True
    assert {"deterministic", "benchmark", "deterministic_algorithms", "note"} <= set(recorded["cudnn"])
    assert recorded["cudnn"]["version"]


def test_torch_train_fit_steps_on_the_gpu(device):
    model = torch_train.to_device(models.course_net(3, widths=WIDTHS), device)
    seen = watched(model)
    loader = torch_data.make_loader(images(), np.arange(32) % 3, train=True, batch_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    history = torch_train.fit(model, loader, None, optimizer, 1, nn.CrossEntropyLoss(), device)
    assert np.isfinite(history[0]["train_loss"])
    assert_on_gpu(model, seen)


def test_distill_trains_the_student_and_the_teacher_on_the_gpu():
    student = distill.student_net(3)
    seen = watched(student)
    labels = torch.as_tensor(np.arange(32) % 3)
    distill.train(student, images(), lambda logits, index: nn.functional.cross_entropy(logits, labels[index]), 1,
                  lr=0.01, batch_size=16)
    assert_on_gpu(student, seen)
    assert distill.predict_logits(student, images(8)).shape == (8, 3)
    assert distill.seconds_per_image(student, images(8)) > 0
    assert {p.device.type for p in student.parameters()} == {GPU}  # timed on the CPU as a copy


def test_adabn_and_tent_adapt_on_the_gpu(device):
    model = torch_train.to_device(models.course_net(3, widths=WIDTHS), device).eval()
    adapted = ad.adabn(model, images(), batch_size=16)
    assert {b.device.type for b in adapted.buffers()} == {GPU}
    tented, probs = ad.tent(model, images(), batch_size=16)
    assert probs.shape == (32, 3) and np.isfinite(probs).all()
    assert {p.device.type for p in tented.parameters()} == {GPU}


def test_notebook_05_loop_steps_on_the_gpu(device):
    namespace = {"nn": nn, "torch": torch, "time": time, "progress_bar": progress_bar, "torch_train": torch_train,
                 "runtime": runtime, "device": device}
    train = notebook_definition("05_pytorch_finetuning", "train", namespace)
    model = torch_train.to_device(models.course_net(3, widths=WIDTHS), device)
    seen = watched(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=1)
    loader = torch_data.make_loader(images(), np.arange(32) % 3, train=True, batch_size=32)
    train(model, loader, None, optimizer, scheduler, 1, nn.CrossEntropyLoss(), [])
    assert_on_gpu(model, seen)


def notebook_07(device: torch.device) -> dict[str, Any]:
    """Notebook 07's globals that its DANN and self-training loops read, on a small source and target pool."""
    def batches(pool: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> Iterator:
        """Cycle forever over augmented, shuffled batches (the notebook's own helper)."""
        while True:
            yield from torch_data.make_loader(pool, labels, train=True, batch_size=batch_size, seed=seed)
            seed += 1

    return {"np": np, "torch": torch, "nn": nn, "copy": copy, "progress_bar": progress_bar, "ad": ad,
            "runtime": runtime, "torch_data": torch_data, "torch_train": torch_train, "device": device, "SEED": 0,
            "batches": batches,
            "x_source": images(), "y_source": np.arange(32) % 3, "x_pool_target": images(seed=1)}


def test_notebook_07_loops_step_on_the_gpu(device):
    namespace = notebook_07(device)
    train_dann = notebook_definition("07_domain_adaptation", "train_dann", namespace)
    train_self_training = notebook_definition("07_domain_adaptation", "train_self_training", namespace)
    model = torch_train.to_device(models.course_net(3, widths=WIDTHS), device)
    dann = train_dann(model, 1, batch_size=16)
    student, kept = train_self_training(model, model, 1, batch_size=16)
    for trained in (dann, student):
        assert {p.device.type for p in trained.parameters()} == {GPU}
        assert not all(torch.equal(a, b) for a, b in zip(trained.parameters(), model.parameters(), strict=True))
    assert kept["kept"] > 0


def test_notebook_09_loops_step_on_the_gpu(device):
    namespace = {"np": np, "torch": torch, "nn": nn, "copy": copy, "models": models, "torch_train": torch_train,
                 "progress_bar": progress_bar, "runtime": runtime, "device": device}
    for name in ("TwoHeads", "multi_task_loss", "train_two_heads", "train_on_b"):
        notebook_definition("09_few_shot_multi_task", name, namespace)
    base = torch_train.to_device(models.course_net(3, widths=WIDTHS), device)
    two_heads = namespace["TwoHeads"](base, 3).to(device)
    seen = watched(two_heads)
    pair = (images(), np.arange(32) % 3)
    namespace["train_two_heads"](two_heads, tr.mixed_batches(pair, pair, 16, 0), 1, 0.5, "multi-task")
    assert_on_gpu(two_heads, seen)
    net = torch_train.to_device(tr.copy_first_blocks(base, 2, 3, seed=0), device)
    seen = watched(net)
    namespace["train_on_b"](net, tr.freeze_first_blocks(net, 2), tr.endless_batches(*pair, 16, seed=0), 1)
    assert_on_gpu(net, seen)


@pytest.fixture(scope="module")
def course_outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One outputs folder for the whole course run, so 06 finds the runs the notebooks before it wrote."""
    folder, before = tmp_path_factory.mktemp("outputs"), os.environ.get(OUTPUTS_ENV)
    os.environ[OUTPUTS_ENV] = str(folder)
    yield folder
    if before is None:
        del os.environ[OUTPUTS_ENV]
    else:
        os.environ[OUTPUTS_ENV] = before


@pytest.mark.parametrize("notebook", course_notebooks(), ids=lambda path: path.stem)
def test_every_notebook_runs_in_smoke_on_the_gpu(notebook: Path, course_outputs: Path):
    assert os.environ.get("WORKBOOK_PROFILE") == "smoke"  # set by conftest.py
    execute(notebook, course_outputs / notebook.name, {}, quiet=True)
    recorded = json.loads((course_outputs / notebook.stem / "metrics.json").read_text())["environment"]["device"]
    if "torch_device" in recorded:  # torch imported: the run says it used the GPU, in which precision
        assert recorded["torch_device"] == GPU and recorded["precision"] in {"bf16", "fp16"}
        assert "deterministic" in recorded["cudnn"]
