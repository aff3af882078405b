"""Distillation and self-training plumbing: the small student, teachers that know their task, the student loop.

The lesson's own code (the distillation loss, the pseudo-labelling step) lives in notebook 08; here is what it
stands on: a student network, a teacher fine-tuned with notebook 05's LP-FT recipe and cached with a record of
its task, classes, data and labelled images, and one training loop that takes any per-batch loss.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models, runtime, torch_data, torch_train
from .paths import cache_dir, cached_files
from .progress import progress_bar

STUDENT_WIDTHS = (8, 16, 32, 96)  # the course network's shape at a fraction of its width: over 5x fewer parameters
METHODS = ("all", "distillation", "self_training")


class TeacherMismatch(models.CheckpointMismatch):
    """A teacher checkpoint was fine-tuned for another task or class set than the run asks for."""


def student_net(num_classes: int, widths: tuple[int, int, int, int] = STUDENT_WIDTHS) -> models.TransferNet:
    """Build the small student: the course network at reduced width, trained from random weights."""
    net = models.course_net(num_classes, widths)
    net.name = "student_net"
    return net


def parameter_count(model: nn.Module) -> int:
    """Count a model's parameters (BatchNorm statistics are buffers, not parameters)."""
    return sum(p.numel() for p in model.parameters())


def check_student_size(student: nn.Module, teacher: nn.Module) -> float:
    """Return the teacher/student parameter ratio; warn when the student is not smaller (nothing is compressed)."""
    ratio = parameter_count(teacher) / parameter_count(student)
    if ratio <= 1:
        warnings.warn(f"The student has {parameter_count(student):,} parameters, the teacher "
                      f"{parameter_count(teacher):,}: a student at least as large as its teacher is self-training, "
                      "not compression. Use narrower "
                      f"widths (the course's student uses {STUDENT_WIDTHS}).", stacklevel=2)
    return ratio


def seconds_per_image(model: nn.Module, images: np.ndarray, batch_size: int = 256, repeats: int = 3) -> float:
    """Time inference per image on the CPU, where a compressed student is deployed (best of `repeats`, after a warm-up).

    A copy is timed, so the model itself stays on its training device.
    """
    import time

    loader = torch_data.make_loader(images, np.zeros(len(images), dtype=int), train=False, batch_size=batch_size)
    batches = [x.contiguous(memory_format=torch.channels_last) for x, _ in loader]
    cpu = torch.device("cpu")  # device-pin: deployment speed is measured on the CPU on purpose, GPU or not
    model = torch_train.to_device(copy.deepcopy(model), cpu).eval()  # both models in the same memory layout
    best = math.inf
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            for x in batches:
                model(x)
            best = min(best, time.perf_counter() - start)
    return best / len(images)


# ------------------------------------------------------------------------------------------- the student loop

def train(model: nn.Module, images: np.ndarray, batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          steps: int, lr: float, batch_size: int = 128, seed: int = 0, strong: bool = False,
          desc: str = "training", weight_decay: float = 5e-4) -> nn.Module:
    """Train `model` for `steps` SGD steps (Nesterov, one-cycle) on augmented `images`; return it in eval mode.

    `batch_loss(logits, index)` receives the batch's row numbers in `images`, so the caller looks up whatever
    targets it has for them (labels, teacher logits, pseudo-labels); the loop itself never sees a label. The
    model trains on `runtime.torch_device()` in its precision; the logits reach `batch_loss` as float32 on the CPU,
    where the caller's targets are (a batch of logits is a few kilobytes).
    `strong` adds RandAugment (two operations per image) and cutout to the crop and flip: Noisy Student's input
    noise (`torch_data.rand_augment_cutout`).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = runtime.torch_device(verbose=False)
    model = torch_train.to_device(model, device)  # channels-last: about a quarter faster on a CPU
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.2)
    scaler = runtime.grad_scaler(device)
    batches = torch_data.endless_batches(images, np.arange(len(images)), batch_size, seed, strong)  # labels: rows
    model.train()
    for _ in progress_bar(range(steps), desc=desc, unit="step"):
        x, index = next(batches)
        with runtime.autocast(device):
            logits = model(x.to(device, memory_format=torch.channels_last, non_blocking=True))
        runtime.optimizer_step(optimizer, batch_loss(logits.float().cpu(), index), scaler)
        scheduler.step()
    return model.eval()


def predict_logits(model: nn.Module, images: np.ndarray, flip_tta: bool = True) -> np.ndarray:
    """Return a model's logits for uint8 images (eval mode, on the model's device; flip-averaged unless told)."""
    loader = torch_data.make_loader(images, np.zeros(len(images), dtype=int), train=False, batch_size=256)
    model.eval()
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad(), runtime.autocast(device):
        for x, _ in loader:
            x = x.to(device, memory_format=torch.channels_last)
            logits = model(x).float()
            rows.append(((logits + model(x.flip(3)).float()) / 2 if flip_tta else logits).cpu())
    return torch.cat(rows).numpy()


# ------------------------------------------------------------------------------------------- teachers

def teacher_record(source_sha256: str, task: str, class_names: list[str], data_identity: dict[str, Any],
                   labelled_idx: np.ndarray, recipe: dict[str, Any]) -> dict[str, Any]:
    """Describe a teacher fully: what it started from, its task and classes, its data and exactly which labels."""
    return {"kind": "teacher", "source_sha256": source_sha256, "task": task, "classes": list(class_names),
            "data": torch_train.data_key(data_identity),
            "labelled": hashlib.sha256(np.sort(labelled_idx).astype(np.int64).tobytes()).hexdigest()[:20],
            "num_labelled": len(labelled_idx), "recipe": recipe, "widths": list(models.COURSE_NET_WIDTHS)}


def teacher_path(record: dict[str, Any]) -> Path:
    """Name a teacher's cache file by everything that defines it (so a changed recipe or label set is a new file)."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20]
    name = f"teacher-{record['task']}-{record['num_labelled']}-{digest}.pt"
    return next(iter(cached_files("teachers", name)), cache_dir("teachers") / name)


def load_teacher(path: Path, record: dict[str, Any]) -> tuple[models.TransferNet, dict[str, Any]]:
    """Load a teacher checkpoint for the run described by `record`, refusing one made for another run.

    Another task or class set would make its head lie; other labelled images, data or source model would let
    it carry labels of images this run treats as unlabelled (its pseudo-labels would leak them).
    """
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    wanted = {"kind": "teacher", "task": record["task"], "classes": list(record["classes"])}
    if meta and any(meta.get(key) != value for key, value in wanted.items()):
        raise TeacherMismatch(
            f"{path} is a {meta.get('kind', 'model')} for task {meta.get('task')!r} with classes "
            f"{meta.get('classes')}, but this run needs a teacher for task {record['task']!r} with classes "
            f"{list(record['classes'])}. Pass TEACHER=None to fine-tune a teacher for this task (cached for later "
            "runs), or the path of one made for it.")
    differs = [key for key in ("data", "labelled", "num_labelled", "source_sha256") if meta.get(key) != record[key]]
    if meta and differs:
        raise TeacherMismatch(
            f"{path} was fine-tuned with other {', '.join(differs)} than this run ({meta.get('num_labelled')} "
            f"labelled images against {record['num_labelled']}): it may have seen the labels of images this run "
            "keeps unlabelled, so its pseudo-labels would leak them. Pass TEACHER=None to fine-tune one on this "
            "run's labelled images (same LABELS_PER_CLASS and SEED), or the path of one made for them.")
    return models.load_checkpoint(path)


def fine_tune_teacher(model: models.TransferNet, images: np.ndarray, labels: np.ndarray, num_classes: int,
                      recipe: dict[str, Any], seed: int = 0) -> tuple[models.TransferNet, dict[str, Any]]:
    """Fine-tune with notebook 05's LP-FT on the labelled images only (the honest few-label protocol).

    The probe's C is chosen by cross-validation, the probe is copied into the head, then every layer is fine-tuned
    with a fixed recipe: no validation set.
    """
    device = runtime.torch_device(verbose=False)
    loader = torch_data.make_loader(images, labels, train=False, batch_size=256)
    features = torch_train.extract_features(torch_train.to_device(model, device).features, loader, device,
                                            progress=False)
    scores, _ = torch_train.cross_validated_probe(features, labels, torch_train.PROBE_STRENGTHS, seed=seed)
    probe_c = max(scores, key=scores.get)
    scaler, probe = torch_train.fit_linear_probe(features, labels, c=probe_c, seed=seed)
    model.head = nn.Linear(model.feature_dim, num_classes)
    torch_train.probe_to_head(scaler, probe, model.head)
    steps = max(recipe["min_steps"], recipe["num_epochs"] * math.ceil(len(labels) / recipe["batch_size"]))
    smoothed = nn.CrossEntropyLoss(label_smoothing=0.1)
    targets = torch.as_tensor(labels)
    train(model, images, lambda logits, index: smoothed(logits, targets[index]), steps, recipe["lr"],
          recipe["batch_size"], seed, desc="teacher (LP-FT)")
    return model, {"probe_c": probe_c, "probe_cv_acc": scores[probe_c], "steps": steps}


def teacher(source: models.TransferNet, source_meta: dict[str, Any], images: np.ndarray, labels: np.ndarray,
            record: dict[str, Any], path: Path | None = None, seed: int = 0) -> tuple[models.TransferNet, dict]:
    """Return the cached teacher for `record` (or the checkpoint at `path`) on the run's device; fine-tune it if new."""
    chosen = path or teacher_path(record)
    if chosen.exists() or path is not None:
        net, meta = load_teacher(chosen, record)
        net = torch_train.to_device(net, runtime.torch_device(verbose=False))
        return net.eval(), {**meta, "checkpoint": str(chosen), "cached": True}
    net, details = fine_tune_teacher(copy.deepcopy(source), images, labels, len(record["classes"]), record["recipe"],
                                     seed)
    meta = {**record, **details, "source_test_acc": source_meta.get("source_test_acc")}
    saved = models.save_checkpoint(net, meta, chosen)
    return net, {**meta, "sha256": json.loads(saved.with_suffix(".json").read_text())["sha256"],
                 "checkpoint": str(saved), "cached": False}
