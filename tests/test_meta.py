"""Meta-learning and zero-shot (notebook 11): the helpers and the notebook's own code against their definitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from notebook_code import NOTEBOOKS, notebook_definition
from torch import nn
from torch.func import functional_call, grad, vmap

from helpers import meta, runtime

NOTEBOOK = "11_meta_learning_zero_shot"


def lesson(*names: str, **extra: Any) -> dict[str, Any]:
    """Define the named functions exactly as notebook 11 writes them, in a namespace with the cells' imports."""
    space = {"np": np, "torch": torch, "nn": nn, "functional_call": functional_call, "grad": grad, "vmap": vmap,
             "meta": meta, "runtime": runtime, "sine_net": meta.sine_net().double(), "INNER_LR": 0.1,
             "REPTILE_INNER_LR": 0.05, "REPTILE_INNER_STEPS": 3, **extra}
    for name in names:
        notebook_definition(NOTEBOOK, name, space)
    return space


def toy_params(net: nn.Module) -> dict[str, torch.Tensor]:
    """The network's parameters as leaf tensors that require grad."""
    return {name: p.detach().clone().requires_grad_() for name, p in net.named_parameters()}


def toy_tasks(tasks: int, points: int, seed: int = 0) -> list[torch.Tensor]:
    """Sinusoid points as float64 tensors: x and y of shape (tasks, points, 1)."""
    _, _, x, y = meta.sample_sine_tasks(tasks, points, np.random.default_rng(seed))
    return [torch.as_tensor(x), torch.as_tensor(y)]


# --------------------------------------------------------------------------------- MAML, FOMAML, Reptile

def test_the_inner_step_is_a_manual_gradient_step():
    space = lesson("mse", "adapt")
    params, (x, y) = toy_params(space["sine_net"]), toy_tasks(1, 10)
    adapted = space["adapt"](space["mse"], params, x[0], y[0], 0.1, 1)
    grads = torch.autograd.grad(space["mse"](params, x[0], y[0]), list(params.values()))
    for (name, p), g in zip(params.items(), grads, strict=True):
        torch.testing.assert_close(adapted[name], p - 0.1 * g)
    twice = space["adapt"](space["mse"], params, x[0], y[0], 0.1, 2)
    once_more = space["adapt"](space["mse"], adapted, x[0], y[0], 0.1, 1)
    for name in params:
        torch.testing.assert_close(twice[name], once_more[name])


def test_the_second_order_meta_gradient_matches_finite_differences():
    space = lesson("mse", "adapt", "maml_task_loss")
    params, (x, y) = toy_params(space["sine_net"]), toy_tasks(1, 20, seed=1)
    parts = (x[0, :10], y[0, :10], x[0, 10:], y[0, 10:])
    space["maml_task_loss"](params, *parts).backward()
    rng = np.random.default_rng(0)
    for name in ("0.weight", "2.bias", "4.weight"):
        index = tuple(int(rng.integers(0, n)) for n in params[name].shape)

        def loss_at(shift: float, name: str = name, index: tuple = index) -> float:
            """The meta-loss with one parameter entry moved by `shift`."""
            moved = {k: v.detach().clone() for k, v in params.items()}
            moved[name][index] += shift
            return float(space["maml_task_loss"](moved, *parts))

        numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
        assert params[name].grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_fomaml_differentiates_the_query_loss_at_the_adapted_parameters_only():
    space = lesson("mse", "adapt", "maml_task_loss")
    params, (x, y) = toy_params(space["sine_net"]), toy_tasks(1, 20, seed=2)
    parts = (x[0, :10], y[0, :10], x[0, 10:], y[0, 10:])
    space["maml_task_loss"](params, *parts, True).backward()
    grads = torch.autograd.grad(space["mse"](params, parts[0], parts[1]), list(params.values()))
    adapted = {k: (p - 0.1 * g).detach().requires_grad_() for (k, p), g in zip(params.items(), grads, strict=True)}
    query_grads = torch.autograd.grad(space["mse"](adapted, parts[2], parts[3]), list(adapted.values()))
    for p, g in zip(params.values(), query_grads, strict=True):
        torch.testing.assert_close(p.grad, g)  # the formula: grad of L_query at theta', taken as grad at theta
    second_order = toy_params(space["sine_net"])
    space["maml_task_loss"](second_order, *parts).backward()
    assert any(not torch.allclose(second_order[n].grad, params[n].grad) for n in params)  # the dropped term is real


def test_reptile_moves_epsilon_of_the_way_to_the_mean_of_the_adapted_weights():
    space = lesson("mse", "adapt", "reptile_update")
    params, (x, y) = toy_params(space["sine_net"]), toy_tasks(3, 12, seed=3)
    updated = space["reptile_update"](params, x, y, 0.25)
    ends = []
    for task in range(3):  # k plain SGD steps on each task, each on the next minibatch of 4 points, by hand
        current = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        for step in range(3):
            batch = slice(4 * step, 4 * step + 4)
            grads = torch.autograd.grad(space["mse"](current, x[task, batch], y[task, batch]), list(current.values()))
            current = {k: (v - 0.05 * g).detach().requires_grad_()
                       for (k, v), g in zip(current.items(), grads, strict=True)}
        ends.append(current)
    for name, p in params.items():
        want = p + 0.25 * (torch.stack([end[name] for end in ends]).mean(0) - p)
        torch.testing.assert_close(updated[name], want.detach())


def test_meta_training_lowers_the_error_after_one_step_on_a_fixed_seed():
    space = lesson("mse", "adapt", "maml_task_loss", "sine_points", "sine_batch", "reptile_update", "train_sine",
                   sine_net=meta.sine_net(), INNER_LR=0.01, SINE_TASKS=10, REPTILE_EPSILON=0.1)
    rng = np.random.default_rng(7)
    x_s, y_s, x_q, y_q = space["sine_batch"](rng, 50, 10)
    torch.manual_seed(0)
    start = {name: p.detach() for name, p in meta.sine_net().named_parameters()}
    trained = space["train_sine"]("MAML", 300, seed=0)
    loss = lambda p: vmap(space["maml_task_loss"], in_dims=(None, 0, 0, 0, 0))(p, x_s, y_s, x_q, y_q).mean()  # noqa: E731
    assert float(loss(trained)) < 0.8 * float(loss(start))


# --------------------------------------------------------------------------------------------- episodes

def test_relabelled_episodes_are_disjoint_balanced_and_shuffled():
    labels = np.repeat(np.arange(5), 40)
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(30):
        support, y_s, query, y_q, classes = meta.relabelled_episode(labels, 5, 3, 7, rng)
        assert not set(support) & set(query)
        assert np.bincount(y_s).tolist() == [3] * 5 and np.bincount(y_q).tolist() == [7] * 5
        assert (classes[y_s] == labels[support]).all() and (classes[y_q] == labels[query]).all()
        orders.add(tuple(classes))
    assert len(orders) > 10  # a new labelling in (almost) every episode


@pytest.mark.parametrize(("n_way", "k_shot", "query", "message"), [
    (6, 1, 5, "N_WAY=6 is out of range"), (5, 30, 15, "K=30 support plus 15 query"), (1, 1, 1, "out of range")])
def test_impossible_episodes_are_refused_with_the_fix(n_way, k_shot, query, message):
    with pytest.raises(ValueError, match=message):
        meta.relabelled_episode(np.repeat(np.arange(5), 40), n_way, k_shot, query, np.random.default_rng(0))


@pytest.mark.parametrize("steps", [0, -1, 1.5])
@pytest.mark.parametrize("name", ["INNER_STEPS", "TEST_INNER_STEPS", "FINE_TUNE_STEPS"])
def test_fewer_than_one_inner_step_is_refused(name, steps):
    from helpers import parameters

    with pytest.raises(ValueError, match=f"{name}={steps} (is out of range: it must be >= 1|must be an int)"):
        parameters.check_parameters({"__annotations__": {name: int}, name: steps})


def test_the_image_network_is_a_pure_function_of_its_parameters():
    net = meta.conv4(5)
    assert not list(net.buffers())  # no running statistics: functional_call sees everything it uses
    params = toy_params(net)
    out = functional_call(net, params, (torch.randn(10, 3, 32, 32),))
    assert out.shape == (10, 5)


# --------------------------------------------------------------------------------------------- zero-shot

def test_dap_scores_equal_the_product_formula_computed_by_brute_force():
    dap_scores = meta.dap_scores
    rng = np.random.default_rng(4)
    probs, signatures, prior = rng.uniform(0.05, 0.95, (6, 4)), rng.integers(0, 2, (3, 4)).astype(float), \
        rng.uniform(0.2, 0.8, 4)
    got = dap_scores(probs, signatures, prior)
    for i in range(6):
        for z in range(3):
            ratio = 1.0
            for m in range(4):
                a = signatures[z, m]
                ratio *= (probs[i, m] if a else 1 - probs[i, m]) / (prior[m] if a else 1 - prior[m])
            assert got[i, z] == pytest.approx(np.log(ratio))
    posterior = np.exp(got - got.max(1, keepdims=True))
    assert np.allclose((posterior / posterior.sum(1, keepdims=True)).sum(1), 1)


def test_the_attribute_tables_describe_their_classes_and_the_target_rows_are_distinct():
    from helpers.data import CIFAR10_CLASSES, SYNTHETIC_CLASSES

    for classes in (CIFAR10_CLASSES, SYNTHETIC_CLASSES):
        table = meta.attribute_table(classes)
        matrix = meta.attribute_matrix(classes, table["rows"])
        assert matrix.shape == (10, len(table["attributes"]))
        meta.check_distinct(matrix, classes)
    source = meta.attribute_matrix(CIFAR10_CLASSES[:5])
    assert [meta.ATTRIBUTE_NAMES[i] for i in meta.constant_attributes(source)] == ["lives in or on water"]


def test_bad_attribute_tables_are_refused_by_name():
    rows = {name: list(row) for name, row in meta.CIFAR10_ATTRIBUTES.items()}
    del rows["frog"]
    with pytest.raises(ValueError, match=r"no row for \['frog'\]"):
        meta.attribute_matrix(["dog", "frog"], rows)
    rows["frog"] = [0, 2] + [0] * 9
    with pytest.raises(ValueError, match="must be 0 or 1"):
        meta.attribute_matrix(["dog", "frog"], rows)
    rows["frog"] = [0]
    with pytest.raises(ValueError, match="differ in length"):
        meta.attribute_matrix(["dog", "frog"], rows)
    with pytest.raises(ValueError, match="'dog' and 'cat' have the same attributes"):
        meta.check_distinct(np.array([[1, 0], [0, 1], [1, 0]]), ["dog", "horse", "cat"])
    with pytest.raises(ValueError, match="No attribute table"):
        meta.attribute_table(["dog", "unicorn"])


def test_zero_shot_training_refuses_target_labels_and_the_notebook_guards_it():
    assert meta.source_only(np.array([0, 4, 2]), (0, 1, 2, 3, 4)).tolist() == [0, 4, 2]
    with pytest.raises(ValueError, match=r"classes \[7\] reached zero-shot training"):
        meta.source_only(np.array([0, 7]), (0, 1, 2, 3, 4))
    source = (NOTEBOOKS / f"{NOTEBOOK}.py").read_text()
    guarded = source.index("zsl_labels = meta.source_only(cifar.y_train[source_index], splits.SOURCE_CLASSES)")
    assert guarded < source.index("attribute_models = ") and guarded < source.index("eszsl_torch(scaler")
    assert "target.y_test" not in source[guarded:source.index("attribute_models = ")]


def test_eszsl_in_keras_equals_eszsl_in_torch_and_is_blind_outside_the_source_span():
    from helpers import keras_models

    keras = keras_models.import_keras("tensorflow")
    space = lesson("eszsl_torch", "eszsl_keras", ops=keras.ops)
    rng = np.random.default_rng(5)
    source = meta.attribute_matrix(["airplane", "automobile", "bird", "cat", "deer"])
    target = meta.attribute_matrix(["dog", "frog", "horse", "ship", "truck"])
    features, labels = rng.normal(size=(60, 8)), np.repeat(np.arange(5), 12)
    v_torch = space["eszsl_torch"](features, labels, source, 0.5, 2.0).numpy()
    v_keras = keras.ops.convert_to_numpy(space["eszsl_keras"](features, labels, source, 0.5, 2.0))
    np.testing.assert_allclose(v_keras, v_torch, atol=1e-9)
    x, s = features, source
    y = 2 * np.eye(5)[labels] - 1
    want = np.linalg.solve(x.T @ x + 0.5 * np.eye(8), x.T @ y @ s) @ np.linalg.inv(s.T @ s + 2.0 * np.eye(11))
    np.testing.assert_allclose(v_torch, want, atol=1e-9)
    assert meta.tied_in_source_span(source, target, ["dog", "frog", "horse", "ship", "truck"]) == [("ship", "truck")]
    scores = rng.normal(size=(20, 8)) @ v_torch @ target.T
    np.testing.assert_allclose(scores[:, 3], scores[:, 4], atol=1e-9)  # ship and truck: the same score, always


def test_calibrated_stacking_trades_seen_for_unseen_accuracy():
    calibrated_stacking = lesson("calibrated_stacking")["calibrated_stacking"]
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(4), 50)
    scores = rng.normal(size=(200, 4)) + 2 * np.eye(4)[labels] + np.array([1.5, 1.5, 0, 0])  # biased to seen
    gammas = meta.stacking_offsets(scores, [0, 1])
    acc_seen, acc_unseen, unseen_share = calibrated_stacking(scores, labels, [0, 1], gammas)
    seen_images = labels < 2
    among_seen = (scores[seen_images, :2].argmax(1) == labels[seen_images]).mean()
    assert acc_seen[0] == among_seen and acc_unseen[0] == 0  # gamma very negative: every prediction a seen class
    assert acc_seen[-1] == 0 and acc_unseen[-1] > 0.8  # gamma very large: all unseen
    assert np.all(np.diff(acc_seen) <= 1e-12) and np.all(np.diff(acc_unseen) >= -1e-12)
    assert unseen_share[0] == 0 and unseen_share[-1] == 1 and np.all(np.diff(unseen_share) >= 0)
    assert 0 < meta.area_under_curve(acc_seen, acc_unseen) <= 1
    assert meta.harmonic_mean(0.5, 0.5) == 0.5 and meta.harmonic_mean(0.9, 0.0) == 0


def test_cifar_fs_keeps_64_training_and_20_test_classes_disjoint_with_all_their_images():
    from helpers.data import ImageData

    names = sorted(set(meta.CIFAR_FS_TEST) | set(meta.CIFAR_FS_VALIDATION) | {f"other_{i}" for i in range(64)})
    labels = np.repeat(np.arange(100), 6)
    images = np.zeros((600, 32, 32, 3), dtype=np.uint8)
    cifar100 = ImageData(images[:400], labels[:400], images[400:], labels[400:], names)
    (train_x, train_y), (test_x, test_y) = meta.cifar_fs_split(cifar100)
    assert len(np.unique(train_y)) == 64 and len(np.unique(test_y)) == 20
    assert not set(train_y) & set(test_y) and len(train_x) == len(train_y) and len(test_x) == len(test_y)
    assert {names[i] for i in np.unique(test_y)} == set(meta.CIFAR_FS_TEST)
    assert not {names[i] for i in np.unique(train_y)} & set(meta.CIFAR_FS_VALIDATION)
    assert np.bincount(test_y)[np.unique(test_y)].tolist() == [6] * 20  # train and test images of each class
    with pytest.raises(ValueError, match="needs CIFAR-100's 100 fine classes"):
        meta.cifar_fs_split(ImageData(images[:10], labels[:10], images[:10], labels[:10], ["a", "b"]))


def test_attributes_the_source_varies_together_are_one_group_and_dap_ties_what_they_cannot_separate():
    source = meta.attribute_matrix(["airplane", "automobile", "bird", "cat", "deer"])
    names = ["dog", "frog", "horse", "ship", "truck"]
    groups = [[meta.ATTRIBUTE_NAMES[i] for i in group] for group in meta.attribute_groups(source)]
    assert ["man-made", "has wheels", "carries people"] in groups
    assert meta.dap_tied_pairs(source, meta.attribute_matrix(names), names) == [("ship", "truck")]
    rng = np.random.default_rng(0)  # the tie is real: identical classifiers give ship and truck equal DAP scores
    probs = rng.uniform(0.05, 0.95, (50, len(meta.ATTRIBUTE_NAMES)))
    for group in meta.attribute_groups(source):
        probs[:, group] = probs[:, group[:1]]
    learnable = np.setdiff1d(np.arange(source.shape[1]), meta.constant_attributes(source))  # as the notebook
    scores = meta.dap_scores(probs[:, learnable], meta.attribute_matrix(names)[:, learnable],
                             source.mean(0)[learnable])
    np.testing.assert_allclose(scores[:, 3], scores[:, 4], atol=1e-9)


def test_ties_are_broken_at_random_and_clear_winners_are_kept():
    scores = np.array([[1.0, 1.0, 0.0]] * 2000 + [[0.0, 2.0, 1.0]])
    picked = meta.break_ties(scores, np.random.default_rng(0)).argmax(1)
    assert set(picked[:-1]) == {0, 1} and abs((picked[:-1] == 0).mean() - 0.5) < 0.05 and picked[-1] == 1
