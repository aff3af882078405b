"""Distillation and self-training (notebook 08): the notebook's own loss and pseudo-labelling step, the student
loop, teachers that know their task, and the bad inputs the notebook refuses."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from notebook_code import notebook_definition
from torch import nn

from helpers import data, distill, models, parameters, splits, torch_data
from helpers import transfer_math as tm


def notebook_function(name: str, namespace: dict[str, Any]) -> Any:
    """Take a function exactly as notebook 08 writes it, defined in `namespace`."""
    return notebook_definition("08_distillation_self_training", name, namespace)


def base_namespace(**extra: Any) -> dict[str, Any]:
    """What the notebook's cells import, plus the globals a function reads."""
    return {"np": np, "torch": torch, "nn": nn, "copy": copy, "distill": distill, **extra}


# ------------------------------------------------------------------------------------------- the loss

def test_notebook_loss_matches_a_brute_force_computation():
    loss_fn = notebook_function("distillation_loss", base_namespace())
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, -1, -1, 2])  # two unlabelled rows
    got = loss_fn(student, teacher, labels, 3.0, 0.7)
    soft = 0.0
    for row in range(8):  # KL(p_teacher || p_student) at T = 3, one term at a time
        p = torch.softmax(teacher[row] / 3, 0)
        q = torch.softmax(student[row] / 3, 0)
        soft += sum(p[k] * torch.log(p[k] / q[k]) for k in range(5))
    hard = -sum(torch.log_softmax(student[row], 0)[labels[row]] for row in range(8) if labels[row] >= 0) / 6
    torch.testing.assert_close(got, 0.7 * 9 * soft / 8 + 0.3 * hard)
    fully_labelled = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    torch.testing.assert_close(loss_fn(student, teacher, fully_labelled, 3.0, 0.7),
                               tm.distillation_loss(student, teacher, fully_labelled, 3.0, 0.7))


def test_t_squared_keeps_the_soft_gradient_size_and_dropping_it_shrinks_it():
    loss_fn = notebook_function("distillation_loss", base_namespace())
    torch.manual_seed(1)
    teacher, labels = torch.randn(32, 5) * 3, torch.full((32,), -1)
    norms = {}
    for temperature in (4.0, 16.0):
        for t_squared in (True, False):
            student = torch.zeros(32, 5).normal_(generator=torch.Generator().manual_seed(2)).requires_grad_()
            loss_fn(student, teacher, labels, temperature, 1.0, t_squared).backward()
            norms[temperature, t_squared] = student.grad.norm().item()
    with_factor = norms[16.0, True] / norms[4.0, True]
    without = norms[16.0, False] / norms[4.0, False]
    assert 0.5 < with_factor < 2.0, with_factor  # about the same size at T = 4 and 16
    assert without < 0.1, without  # about 1/16 without the factor


def test_an_unlabelled_batch_gives_a_finite_loss():
    loss_fn = notebook_function("distillation_loss", base_namespace())
    loss = loss_fn(torch.randn(4, 3), torch.randn(4, 3), torch.full((4,), -1), 2.0, 0.5)
    assert torch.isfinite(loss)


# ------------------------------------------------------------------------------------------- pseudo-labels

def test_pseudo_labels_keep_confident_rows_and_balance_classes():
    pseudo_label = notebook_function("pseudo_label", base_namespace())
    probs = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.95, 0.05, 0], [0.1, 0.85, 0.05], [0.3, 0.3, 0.4],
                      [0, 0.1, 0.9]])
    rows, labels = pseudo_label(probs, 0.75, balance=False)
    assert rows.tolist() == [0, 1, 2, 3, 5] and labels.tolist() == [0, 0, 0, 1, 2]
    rows, labels = pseudo_label(probs, 0.75, balance=True)  # one per class: the most confident class-0 row is 2
    assert rows.tolist() == [2, 3, 5] and labels.tolist() == [0, 1, 2]


def _tiny_task() -> dict[str, Any]:
    """A small synthetic target task split like the notebook's: labelled images, an unlabelled pool, the truth."""
    cifar = data.load_dataset("synthetic", 60, 10, seed=0)
    target = splits.task_data(cifar, "target")
    labelled_idx, _ = splits.labelled_split(target, 5, "labelled", seed=0)
    pool_idx = np.setdiff1d(np.arange(len(target.y_train)), labelled_idx)[:120]
    return {"target": target, "labelled_idx": labelled_idx, "pool_idx": pool_idx}


def test_self_training_never_reads_the_pool_labels():
    """The notebook's round trained twice, the pool's true labels shuffled in between: identical students."""
    task = _tiny_task()
    target = task["target"]
    torch.manual_seed(0)
    source = models.course_net(5, (4, 8, 8, 16))
    teacher = copy.deepcopy(source)
    namespace = base_namespace(
        x_pool=target.x_train[task["pool_idx"]], x_labelled=target.x_train[task["labelled_idx"]],
        y_labelled=target.y_train[task["labelled_idx"]], source_model=source, num_classes=5, SEED=0,
        config={"self_training_steps": 3})
    notebook_function("pseudo_label", namespace)
    notebook_function("softmax", namespace)
    round_fn = notebook_function("self_training_round", namespace)
    students, reports = [], []
    for truth in (target.y_train[task["pool_idx"]], np.random.default_rng(1).permutation(5)[
            target.y_train[task["pool_idx"]]]):
        namespace["pool_truth"] = truth
        student, info = round_fn(teacher, 0.2, balance=False, strong=True, desc="test")
        students.append(student.state_dict())
        reports.append(info["pseudo_right"])
    for name, tensor in students[0].items():
        torch.testing.assert_close(tensor, students[1][name], msg=name)
    assert reports[0] != reports[1]  # the truth changed what is *reported*, and nothing else


# ------------------------------------------------------------------------------------------- the student loop

@pytest.mark.slow
def test_distillation_beats_the_label_only_student_on_synthetic_data():
    """A teacher trained on every label; students with 5 labels per class, alone or with the teacher's pool."""
    task = _tiny_task()
    target, labelled, pool = task["target"], task["labelled_idx"], task["pool_idx"]
    loss_fn = notebook_function("distillation_loss", base_namespace())
    torch.manual_seed(0)
    everything = torch.as_tensor(target.y_train)
    teacher = distill.train(distill.student_net(5), target.x_train,
                            lambda logits, i: nn.functional.cross_entropy(logits, everything[i]), 120, lr=0.05,
                            batch_size=64, seed=0, desc="teacher")
    images = np.concatenate([target.x_train[labelled], target.x_train[pool]])
    labels = torch.as_tensor(np.concatenate([target.y_train[labelled], np.full(len(pool), -1)]))
    soft = torch.as_tensor(distill.predict_logits(teacher, images))

    def student_accuracy(rows: np.ndarray, alpha: float) -> float:
        torch.manual_seed(0)
        student = distill.train(distill.student_net(5), images[rows],
                                lambda logits, i: loss_fn(logits, soft[rows][i], labels[rows][i], 4.0, alpha),
                                80, lr=0.05, batch_size=min(64, len(rows)), seed=0, desc="student")
        return float((distill.predict_logits(student, target.x_test).argmax(1) == target.y_test).mean())

    label_only = student_accuracy(np.arange(len(labelled)), 0.0)
    distilled = student_accuracy(np.arange(len(images)), 0.9)
    assert distilled > label_only + 0.1, (label_only, distilled)
    assert distilled > 0.5  # chance is 0.2


def test_strong_noise_changes_each_image_its_own_way_stays_in_range_and_repeats_from_its_seed():
    images = (torch.rand(64, 3, 32, 32) * 128 + 64).to(torch.uint8)
    global_state = torch.random.get_rng_state()
    noisy = torch_data.rand_augment_cutout(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), global_state)  # torch's global stream is left alone
    assert noisy.shape == images.shape and noisy.dtype == torch.float32 and noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy == 0.5).flatten(1).any(1).all()  # every image has its cut-out square
    change = (noisy - images.float() / 255).abs().flatten(1).mean(1)
    assert change.std() > 0.01  # not the same change for all
    again = torch_data.rand_augment_cutout(images, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, again)
    other = torch_data.rand_augment_cutout(images, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(noisy, other)


# ------------------------------------------------------------------------------------------- teachers and bad input

def _record(**changes: Any) -> dict[str, Any]:
    task = _tiny_task()
    recipe = {"num_epochs": 1, "min_steps": 4, "batch_size": 16, "lr": 0.01, "seed": 0}
    record = distill.teacher_record("abc", "target", task["target"].class_names, task["target"].identity,
                                    task["labelled_idx"], recipe)
    return {**record, **changes}, task


def test_a_teacher_is_fine_tuned_once_then_reused(data_root):
    record, task = _record()
    target, labelled = task["target"], task["labelled_idx"]
    torch.manual_seed(0)
    source = models.course_net(5)
    first, info = distill.teacher(source, {}, target.x_train[labelled], target.y_train[labelled], record)
    assert not info["cached"] and Path(info["checkpoint"]).exists()
    again, info_again = distill.teacher(source, {}, target.x_train[labelled], target.y_train[labelled], record)
    assert info_again["cached"] and info_again["sha256"] == info["sha256"]
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(tensor, again.state_dict()[name])
    other = distill.teacher_path({**record, "labelled": "another label set"})
    assert other != distill.teacher_path(record)


def test_a_teacher_for_another_class_set_is_refused(data_root):
    record, task = _record()
    target, labelled = task["target"], task["labelled_idx"]
    _, info = distill.teacher(models.course_net(5), {}, target.x_train[labelled], target.y_train[labelled], record)
    with pytest.raises(distill.TeacherMismatch, match="classes .* but this run needs a teacher for task 'target'"):
        distill.load_teacher(Path(info["checkpoint"]), {**record, "classes": ["cat", "dog", "frog", "horse", "ship"]})
    other_labels = {**record, "labelled": "another label set", "num_labelled": 500}
    with pytest.raises(distill.TeacherMismatch, match="fine-tuned with other labelled, num_labelled than this run"):
        distill.load_teacher(Path(info["checkpoint"]), other_labels)  # it may know the pool's labels
    distill.load_teacher(Path(info["checkpoint"]), record)  # its own run's record is accepted
    source_path = data_root / "source.pt"  # a source model is no teacher, whatever its classes
    models.save_checkpoint(models.course_net(5), {"classes": target.class_names, "widths": [16, 32, 64, 256],
                                                  "task": "source"}, source_path)
    with pytest.raises(distill.TeacherMismatch, match="is a model for task 'source'"):
        distill.load_teacher(source_path, record)


def test_a_student_larger_than_its_teacher_is_warned_about():
    with pytest.warns(UserWarning, match="at least as large as its teacher"):
        distill.check_student_size(models.course_net(5), distill.student_net(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distill.check_student_size(distill.student_net(5), models.course_net(5)) >= 5


def _parameters(**values: Any) -> dict[str, Any]:
    declared = {"TEMPERATURE": float, "ALPHA": float, "THRESHOLD": float, "ROUNDS": int, "METHOD": str}
    defaults = {"TEMPERATURE": 4.0, "ALPHA": 0.9, "THRESHOLD": 0.7, "ROUNDS": 1, "METHOD": "all"}
    return {"__annotations__": declared, **defaults, **values}


@pytest.mark.parametrize("values, message", [
    ({"TEMPERATURE": 0.0}, "TEMPERATURE=0.0 is out of range: it must be >= 0.01 and <= 100"),
    ({"ALPHA": 1.5}, "ALPHA=1.5 is out of range: it must be >= 0 and <= 1"),
    ({"ALPHA": -0.1}, "ALPHA=-0.1 is out of range: it must be >= 0"),
    ({"THRESHOLD": 1.0}, "THRESHOLD=1.0 is out of range: it must be > 0 and < 1"),
    ({"THRESHOLD": 0.0}, "THRESHOLD=0.0 is out of range: it must be > 0"),
    ({"ROUNDS": 0}, "ROUNDS=0 is out of range: it must be >= 1"),
    ({"METHOD": "distill"}, "METHOD='distill' is not one of: all, distillation, self_training"),
])
def test_bad_notebook_parameters_are_refused(values, message):
    with pytest.raises(parameters.ParameterError, match=message):
        parameters.check_parameters(_parameters(**values), choices={"METHOD": distill.METHODS})


def test_teacher_records_are_plain_json():
    record, _ = _record()
    assert json.loads(json.dumps(record)) == record
