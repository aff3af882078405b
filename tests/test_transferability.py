"""Few-shot episodes, multi-task losses and block freezing (notebook 09): the helpers and the notebook's own code."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from notebook_code import notebook_definition as definition_in
from torch import nn

from helpers import models, parameters, runtime, torch_train
from helpers import transferability as tr


def notebook_definition(name: str, namespace: dict[str, Any]) -> Any:
    """Define a function or class exactly as notebook 09 writes it, in `namespace`."""
    return definition_in("09_few_shot_multi_task", name, namespace)


def namespace() -> dict[str, Any]:
    """What the notebook's cells import."""
    from helpers.progress import progress_bar

    return {"np": np, "torch": torch, "nn": nn, "copy": copy, "models": models, "torch_train": torch_train,
            "progress_bar": progress_bar, "runtime": runtime,
            "device": torch.device("cpu")}  # tests/test_gpu.py: on CUDA


# ------------------------------------------------------------------------------------------- few-shot

def test_episodes_are_disjoint_balanced_and_drawn_from_the_chosen_classes():
    labels = np.repeat(np.arange(5), 30)
    rng = np.random.default_rng(0)
    for k in (1, 5, 10):
        support, query, classes = tr.sample_episode(labels, 3, k, 15, rng)
        assert not set(support) & set(query)
        assert sorted(np.unique(labels[support])) == sorted(classes) == sorted(np.unique(labels[query]))
        assert all((labels[support] == c).sum() == k and (labels[query] == c).sum() == 15 for c in classes)


@pytest.mark.parametrize("n_way, k, query, message", [
    (6, 1, 15, "N_WAY=6 is out of range: an episode needs 2 to 5 classes"),
    (1, 1, 15, "N_WAY=1 is out of range"),
    (5, 20, 15, "K=20 support plus 15 query images per class need 35 images of each class; the smallest class "
                "has 30"),
])
def test_impossible_episodes_are_refused_with_the_valid_range(n_way, k, query, message):
    with pytest.raises(ValueError, match=message):
        tr.sample_episode(np.repeat(np.arange(5), 30), n_way, k, query, np.random.default_rng(0))


def test_prototypes_are_the_class_means_of_the_support_features():
    prototype_predict = notebook_definition("prototype_predict", namespace())
    rng = np.random.default_rng(0)
    support_x, support_y = rng.normal(size=(10, 4)), np.repeat([3, 7], 5)
    means = np.stack([support_x[:5].mean(0), support_x[5:].mean(0)])
    queries = means + rng.normal(scale=1e-3, size=means.shape)  # a query at each mean goes to that class
    assert prototype_predict(support_x, support_y, queries).tolist() == [3, 7]
    midpoint = means.mean(0)  # points past the midpoint, towards each mean, go to that mean's class
    assert prototype_predict(support_x, support_y, np.stack([midpoint + 0.1 * (means[1] - midpoint)])).tolist() == [7]


def test_cosine_classifier_goes_by_angle_where_prototypes_go_by_distance():
    ns = namespace()
    cosine_predict, prototype_predict = (notebook_definition(name, ns) for name in ("cosine_predict",
                                                                                    "prototype_predict"))
    support_x = np.array([[1.0, 0.0], [1.0, 0.1], [10.0, 10.0], [10.0, 11.0]])
    support_y = np.array([0, 0, 1, 1])
    query = np.array([[1.0, 1.0]])  # close to class 0's mean, at class 1's angle
    assert cosine_predict(support_x, support_y, query).tolist() == [1]
    assert prototype_predict(support_x, support_y, query).tolist() == [0]
    assert cosine_predict(support_x, support_y, 100 * query).tolist() == [1]  # and scale does not matter


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _means(features, labels, classes):
    return np.stack([features[labels == c].mean(0) for c in classes])


PROTOTYPE_BUGS = {  # plausible wrong answers to exercise 09.2, each with what the check should name (or None)
    "no L2 normalisation": (lambda s, y, q, n: q @ _means(s, y, range(n)).T, "nothing is normalised"),
    "per-class sums, unnormalised": (lambda s, y, q, n: q @ np.stack([s[y == c].sum(0) for c in range(n)]).T,
                                     None),
    "per-class sums, only queries normalised": (
        lambda s, y, q, n: _unit(q) @ np.stack([s[y == c].sum(0) for c in range(n)]).T, "per-class sums"),
    "only queries normalised": (lambda s, y, q, n: _unit(q) @ _means(s, y, range(n)).T, "only the queries"),
    "unit features averaged, not renormalised": (lambda s, y, q, n: _unit(q) @ _means(_unit(s), y, range(n)).T,
                                                 "not normalised again"),
    "support assumed grouped by class": (
        lambda s, y, q, n: _unit(q) @ _unit(np.stack([part.mean(0) for part in np.array_split(s, n)])).T, None),
    "labels out of step with the support rows": (
        lambda s, y, q, n: _unit(q) @ _unit(_means(s, y[::-1], range(n))).T, None),
    "classes in order of first appearance": (
        lambda s, y, q, n: _unit(q) @ _unit(_means(s, y, dict.fromkeys(y.tolist()))).T, "first appear"),
    "transposed": (lambda s, y, q, n: _unit(_means(s, y, range(n))) @ _unit(q).T, "expected shape (7, 4)"),
    "predicted classes, not similarities": (
        lambda s, y, q, n: (_unit(q) @ _unit(_means(s, y, range(n))).T).argmax(1), "expected shape (7, 4)"),
}


@pytest.mark.parametrize("bug", PROTOTYPE_BUGS)
def test_the_prototype_exercise_check_rejects_plausible_bugs(bug):
    from helpers import exercises

    answer, named = PROTOTYPE_BUGS[bug]
    verdict = exercises.problem("09.2", answer)
    assert verdict is not None, f"09.2 passed a wrong answer: {bug}"
    assert named is None or named in verdict, verdict
    assert "raised" not in verdict or bug == "support assumed grouped by class"


def test_the_prototype_exercise_accepts_both_cosine_centroids_and_tensors():
    from helpers import exercises

    def unit_features_first(s, y, q, n):  # the notebook's cosine_predict: unit features, their mean, normalised
        return _unit(q) @ _unit(_means(_unit(s), y, range(n))).T

    def in_torch(s, y, q, n):
        s, q = torch.as_tensor(s, dtype=torch.float32), torch.as_tensor(q, dtype=torch.float32)
        prototypes = torch.stack([s[torch.as_tensor(y) == c].mean(0) for c in range(n)])
        return nn.functional.normalize(q, dim=1) @ nn.functional.normalize(prototypes, dim=1).T

    assert exercises.problem("09.2", unit_features_first) is None
    assert exercises.problem("09.2", in_torch) is None


def test_the_noise_helpers_and_the_minimum_axis_range():
    assert tr.accuracy_noise(0.5, 10_000) == pytest.approx(0.0098)
    assert tr.gap_noise(0.8, 0.85, 5000) == pytest.approx(1.96 * np.sqrt((0.16 + 0.1275) / 5000))
    assert tr.widened(0.85, 0.87) == pytest.approx((0.785, 0.935))
    assert tr.widened(0.5, 0.9) == (0.5, 0.9)  # already wide enough: unchanged


def test_mean_interval_matches_the_normal_formula():
    values = [0.2, 0.4, 0.6, 0.8]
    mean, half = tr.mean_interval(values)
    assert mean == pytest.approx(0.5) and half == pytest.approx(1.959964 * np.std(values, ddof=1) / 2, rel=1e-5)


# ------------------------------------------------------------------------------------------- multi-task

def test_the_two_head_losses_combine_as_weighted():
    loss_fn = notebook_definition("multi_task_loss", namespace())
    torch.manual_seed(0)
    source_logits, target_logits = torch.randn(6, 5), torch.randn(6, 5)
    labels, task = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([0, 0, 0, 1, 1, 1])
    source_ce = nn.functional.cross_entropy(source_logits[:3], labels[:3])
    target_ce = nn.functional.cross_entropy(target_logits[3:], labels[3:])
    for weight in (0.0, 0.3, 1.0):
        torch.testing.assert_close(loss_fn(source_logits, target_logits, labels, task, weight),
                                   (1 - weight) * source_ce + weight * target_ce)
    only_target = loss_fn(source_logits, target_logits, labels, torch.ones(6, dtype=torch.long), 1.0)
    assert torch.isfinite(only_target)  # a batch of one task (sequential transfer) is fine


def test_mixed_batches_hold_both_tasks_half_and_half():
    x = np.zeros((40, 32, 32, 3), dtype=np.uint8)
    batches = tr.mixed_batches((x, np.zeros(40, dtype=int)), (x[:10], np.ones(10, dtype=int)), 16, seed=0)
    for _ in range(3):
        images, labels, task = next(batches)
        assert images.shape[0] == 16 and task.tolist() == [0] * 8 + [1] * 8
        assert (labels[task == 1] == 1).all()


# ------------------------------------------------------------------------------------------- blocks

def test_copying_n_blocks_copies_exactly_those_statistics_included():
    torch.manual_seed(0)
    base = models.course_net(5)
    for module in base.modules():  # give every BatchNorm non-default statistics
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            module.running_mean.uniform_()
    copied = tr.copy_first_blocks(base, 2, 5, seed=1)
    for name, tensor in tr.block_state(base, 2).items():
        torch.testing.assert_close(tensor, tr.block_state(copied, 2)[name])
    third = tr.course_blocks(copied)[2]
    assert not torch.equal(third.widen[0].weight, tr.course_blocks(base)[2].widen[0].weight)


@pytest.mark.parametrize("n", [1, 3])
def test_the_notebooks_loop_leaves_frozen_blocks_unchanged(n):
    """Train with the notebook's own loop: the first n blocks (BatchNorm statistics too) stay exactly as copied."""
    train_on_b = notebook_definition("train_on_b", namespace())
    torch.manual_seed(0)
    net = tr.copy_first_blocks(models.course_net(5), n, 5, seed=0)
    frozen = tr.freeze_first_blocks(net, n)
    before, everything_before = tr.block_state(net, n), tr.block_state(net, 4)
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    train_on_b(net, frozen, tr.endless_batches(images, np.arange(64) % 5, 16, seed=0), steps=12, desc="test")
    after = tr.block_state(net, n)
    for name, tensor in before.items():
        torch.testing.assert_close(tensor, after[name], msg=name)
    changed = [name for name, tensor in tr.block_state(net, 4).items()
               if name not in before and not torch.equal(tensor, everything_before[name])]
    assert changed  # the blocks above n did train


@pytest.mark.parametrize("n", [-1, 5])
def test_block_counts_outside_zero_to_l_are_refused(n):
    with pytest.raises(ValueError, match="L=4 blocks, so n must be 0 to 4"):
        tr.copy_first_blocks(models.course_net(5), n, 5, seed=0)
    with pytest.raises(ValueError, match="n must be 0 to 4"):
        tr.freeze_first_blocks(models.course_net(5), n)


def test_unknown_part_and_bad_ranges_are_refused():
    declared = {"PART": str, "N_WAY": int, "SHOTS": list, "TASK_WEIGHT": float}
    good = {"__annotations__": declared, "PART": "all", "N_WAY": 5, "SHOTS": [1, 5], "TASK_WEIGHT": 0.5}
    parameters.check_parameters(good, choices={"PART": tr.PARTS})
    for bad, message in (({"PART": "zero_shot"}, "PART='zero_shot' is not one of: all, few_shot"),
                         ({"SHOTS": [0, 5]}, "SHOTS=\\[0, 5\\] is out of range"),
                         ({"TASK_WEIGHT": 1.5}, "TASK_WEIGHT=1.5 is out of range")):
        with pytest.raises(parameters.ParameterError, match=message):
            parameters.check_parameters({**good, **bad}, choices={"PART": tr.PARTS})


# ------------------------------------------------------------------------------------------- benchmark

def test_the_layer_benchmark_averages_paired_differences_and_the_weight_sweep_over_seeds(tmp_path):
    from benchmarks.layers import few_shot_rows, layer_rows, multi_task_rows, plot

    def record(seed):
        return {"few_shot": [{"K": k, "method": m, "accuracy": 0.5 + seed / 100, "ci95": 0.01}
                             for k in (1, 10) for m in ("a", "b")],
                "few_shot_paired": [{"K": k, "difference": "a - b", "mean": 0.02 * seed, "low": -0.01, "high": 0.03}
                                    for k in (1, 10)],
                "multi_task": [{"training": t, "source_acc": 0.8, "target_acc": 0.7 + seed / 100}
                               for t in ("source model (03), before", "multi-task", "sequential")],
                "task_weight_sweep": [{"task_weight": w, "source_acc": 0.9 - w / 10, "target_acc": 0.6 + w / 10}
                                      for w in (0.25, 1.0)],
                "layers": [{"variant": v, "n": n, "test_acc": 0.8} for v in VARIANTS_AND_BASE for n in (0, 4)]}

    metrics = [record(0), record(2)]
    few = few_shot_rows(metrics)
    paired = [r for r in few if r["table"].startswith("few-shot paired")]
    assert [r["n"] for r in paired] == ["K=1", "K=10"] and paired[0]["test_acc"] == 0.02
    assert paired[0]["seeds"] == 2 and paired[0]["note"] == "paired episode CI +-0.020"
    assert [r["n"] for r in few if r["table"] == "few-shot (5-way)"] == ["K=1", "K=1", "K=10", "K=10"]
    sweep = [r for r in multi_task_rows(metrics) if r["table"] == "task weight"]
    assert [(r["variant"], r["n"], r["test_acc"]) for r in sweep] == [
        ("w=0.25", "source_acc", 0.875), ("w=0.25", "target_acc", 0.625), ("w=1.0", "source_acc", 0.8),
        ("w=1.0", "target_acc", 0.7)]
    assert few_shot_rows([{k: v for k, v in record(0).items() if k != "few_shot_paired"}])  # an older record
    assert plot(layer_rows(metrics), tmp_path / "layers.png", n_test=5000).stat().st_size > 0


VARIANTS_AND_BASE = ("base B", *tr.VARIANTS)
