"""Nothing silently wrong: non-finite settings, diverged runs, edited checkpoint records and late failures are refused.

Each case here once ran to the end (or failed late, or showed an edited file as a result) on the course's code.
"""

from __future__ import annotations

import ast
import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from helpers import meta, models, parameters, reporting, runtime, selfsup, torch_train
from helpers.runner import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
NUMERIC = {"int", "float", "list"}


def declared_parameters(source: str) -> dict[str, str]:
    """The parameters cell's names and declared types (`Optional[...]` unwrapped), read from a py:percent twin."""
    cell = source.split('tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    found = {}
    for node in ast.parse(cell).body:
        if isinstance(node, ast.AnnAssign):
            spelled = ast.unparse(node.annotation)
            found[node.target.id] = spelled.removeprefix("Optional[").removesuffix("]")
    return found


def notebook_choices(source: str) -> set[str]:
    """The names a notebook's check_parameters call gives a list of choices."""
    call = source.split("parameters.check_parameters(globals()", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r'"([A-Z_]+)":', call))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem[:2])
def test_every_numeric_parameter_has_finite_bounds_on_both_sides(notebook):
    source = notebook.read_text()
    choices = notebook_choices(source) | set(parameters.CHOICES)
    for name, kind in declared_parameters(source).items():
        if kind not in NUMERIC or name in choices:
            continue
        if kind == "list" and name not in parameters.LIMITS:  # a list of words would be a choice
            pytest.fail(f"{notebook.name}: list parameter {name} has no bounds in helpers.parameters.LIMITS")
        bounds = parameters.LIMITS.get(name)
        assert bounds, f"{notebook.name}: {name} has no bounds in helpers.parameters.LIMITS"
        assert {op[0] for op, _ in bounds} == {">", "<"}, f"{name} needs a lower and an upper bound: {bounds}"
        assert all(math.isfinite(bound) for _, bound in bounds), name


def _space(**values):
    declared = {"LR": "Optional[float]", "TEMPERATURE": float, "INNER_LR": float, "IMAGE_INNER_LR": float,
                "ROTATION_LR": float, "SEED": int, "LABEL_COUNTS": "Optional[list]"}
    defaults = {"LR": None, "TEMPERATURE": 4.0, "INNER_LR": 0.01, "IMAGE_INNER_LR": 0.1, "ROTATION_LR": 0.1, "SEED": 0,
                "LABEL_COUNTS": None}
    return {"__annotations__": declared, **defaults, **values}


@pytest.mark.parametrize("values, message", [
    ({"LR": math.inf}, r"LR=inf is not a finite number: give one > 0 and <= 10"),
    ({"LR": math.nan}, r"LR=nan is not a finite number"),
    ({"TEMPERATURE": math.inf}, r"TEMPERATURE=inf is not a finite number"),
    ({"INNER_LR": math.inf}, r"INNER_LR=inf is not a finite number"),
    ({"IMAGE_INNER_LR": -math.inf}, r"IMAGE_INNER_LR=-inf is not a finite number"),
    ({"ROTATION_LR": math.nan}, r"ROTATION_LR=nan is not a finite number"),
    ({"ROTATION_LR": -1}, r"ROTATION_LR=-1 is out of range: it must be > 0 and <= 10"),
    ({"LR": 1e6}, r"LR=1000000.0 is out of range"),
    ({"SEED": 2**32}, r"SEED=4294967296 is out of range: it must be >= 0 and <= 4294967295"),
    ({"LABEL_COUNTS": []}, r"LABEL_COUNTS=\[\] is empty: give at least one value, or None for the profile's"),
    ({"LABEL_COUNTS": [10, math.inf]}, r"LABEL_COUNTS=\[10, inf\] is not a finite number"),
])
def test_non_finite_unbounded_and_empty_values_are_refused(values, message):
    with pytest.raises(parameters.ParameterError, match=message):
        parameters.check_parameters(_space(**values))


def test_a_diverged_loss_stops_training_and_names_the_step_size():
    parameters.check_parameters(_space(LR=10.0))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    x, y = torch.randn(64, 3, 4, 4) * 1e3, torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    squared_logits = lambda logits, labels: (logits ** 2).mean()  # a step of 10 makes it grow without bound
    with pytest.raises(runtime.DivergedError, match=r"loss became (nan|inf).*Look at LR=10.0, .*TEMPERATURE=4.0"):
        torch_train.fit(model, loader, None, optimizer, 20, squared_logits, torch.device("cpu"))


def test_the_divergence_message_says_when_the_profile_chose_the_rate():
    parameters.check_parameters(_space())
    with pytest.raises(runtime.DivergedError, match=r"LR=None \(the profile's value\)"):
        runtime.check_finite_loss(torch.tensor(float("nan")))
    runtime.check_finite_loss(torch.tensor(2.5))  # a finite loss passes


def test_non_finite_predictions_are_never_written(tmp_path):
    probs = np.full((4, 5), 0.2, np.float32)
    probs[1, 2] = np.nan
    with pytest.raises(runtime.DivergedError, match=r"predictions \(probs\) are not all finite"):
        reporting.save_predictions(tmp_path, y_true=np.arange(4), probs=probs)
    assert not (tmp_path / "predictions.npz").exists()


@pytest.mark.parametrize("strategy, labels, validation, folds, message", [
    ("lp_ft", 3, "labelled", 2, r"each fold's LP-FT chooses its probe by cross-validation on the other folds' 1 image"),
    ("finetune_full", 3, "labelled", 5, r"CROSS_FIT=5 splits each class's 3 labelled images into 5 folds"),
    ("linear_probe", 1, "labelled", 0, r"LABELS_PER_CLASS=1: STRATEGY='linear_probe' chooses the probe's C"),
])
def test_labels_too_few_for_cross_validation_are_refused_before_training(strategy, labels, validation, folds, message):
    assert re.search(message, torch_train.labels_problem(strategy, labels, validation, folds))


@pytest.mark.parametrize("strategy, labels, validation, folds", [
    ("lp_ft", 4, "labelled", 2), ("finetune_full", 3, "labelled", 3), ("lp_ft", None, "labelled", 5),
    ("linear_probe", 1, "oracle", 0), ("finetune_full", 1, "labelled", 0)])
def test_labels_enough_for_cross_validation_pass(strategy, labels, validation, folds):
    assert torch_train.labels_problem(strategy, labels, validation, folds) is None


# ----------------------------------------------------------------------------------------- checkpoint records

SMALL = (4, 8, 8, 16)
META = {"classes": list("abcde"), "widths": list(SMALL), "history": [{"step": 1, "knn_acc": 0.3}], "data": {}}


def _edit_sidecar(path, **changes):
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, **changes}))


@pytest.mark.parametrize("changes, message", [
    ({"history": [{"step": 1, "knn_acc": 0.99}]}, "does not match the metadata stored inside the weights file"),
    ({"classes": "abcde"}, "does not match"),
    ({"widths": [4, 8]}, "does not match"),
])
def test_an_edited_sidecar_is_refused_not_shown(tmp_path, changes, message):
    path = models.save_checkpoint(models.course_net(widths=SMALL), META, tmp_path / "model.pt")
    _edit_sidecar(path, **changes)
    with pytest.raises(models.CheckpointCorrupt, match=message):
        models.load_checkpoint(path)


@pytest.mark.parametrize("bad, message", [
    ({"widths": ["4", 8, 8, 16]}, r"has no usable widths \(widths=\['4', 8, 8, 16\]"),
    ({"widths": [4, 8, 8]}, r"has no usable widths"),
    ({"classes": []}, r"has no usable class names"),
    ({"classes": [1, 2]}, r"has no usable class names"),
])
def test_a_checkpoint_with_bad_classes_or_widths_is_named_not_a_raw_error(tmp_path, bad, message):
    path = models.save_checkpoint(models.course_net(widths=SMALL), {**META, **bad}, tmp_path / "model.pt")
    with pytest.raises(models.CheckpointCorrupt, match=message):
        models.load_checkpoint(path)


def test_an_edited_ssl_history_is_made_again_not_shown(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path))
    calls = []

    def pretrain():
        calls.append(1)
        return models.course_net(5), [{"step": 0, "loss": None, "knn_acc": 0.2}]

    settings = {"method": "simclr", "steps": 3, "data": "abc"}
    selfsup.pretrained_encoder(settings, pretrain)
    _edit_sidecar(tmp_path / "checkpoints" / selfsup.checkpoint_name(settings),
                  history=[{"step": 0, "loss": None, "knn_acc": 0.99}])
    _, history, info = selfsup.pretrained_encoder(settings, pretrain)
    assert calls == [1, 1] and not info["cached"] and history[0]["knn_acc"] == 0.2
    assert "cannot be used (CheckpointCorrupt); pretraining again" in capsys.readouterr().out


def test_a_change_to_the_pretraining_code_names_another_checkpoint():
    namespace_a, namespace_b = {}, {}
    exec("def pretrain(steps):\n    return steps * 2\n", namespace_a)
    exec("def pretrain(steps):\n    return steps * 3\n", namespace_b)
    first = selfsup.code_digest(namespace_a["pretrain"])
    assert first == selfsup.code_digest(namespace_a["pretrain"])
    assert first != selfsup.code_digest(namespace_b["pretrain"])
    settings = {"method": "simclr", "steps": 3}
    assert (selfsup.checkpoint_name({**settings, "code": first})
            != selfsup.checkpoint_name({**settings, "code": selfsup.code_digest(namespace_b["pretrain"])}))


def test_notebook_10_names_its_checkpoints_by_its_pretraining_code():
    source = (NOTEBOOKS_DIR / "10_self_supervised_pretraining.py").read_text()
    assert '"code": selfsup.code_digest(pretrain, nt_xent, rotation_batch' in source


# ----------------------------------------------------------------------------------------- smaller cases

@pytest.mark.parametrize("table, message", [
    ({"a": [[0, 1], [1]], "b": [1, 0]}, r"rows of \['a'\] are not flat lists of 0/1 numbers"),
    ({"a": "01", "b": [1, 0]}, r"rows of \['a'\] are not flat lists"),
    ({"a": [], "b": []}, r"attribute rows are empty"),
])
def test_malformed_attribute_tables_say_what_is_wrong(table, message):
    with pytest.raises(ValueError, match=message):
        meta.attribute_matrix(["a", "b"], table)


def test_ssl_settings_refuse_no_label_counts():
    with pytest.raises(ValueError, match=r"LABEL_COUNTS=\[\]"):
        selfsup.check_settings("all", "full", 16, 0.5, [])


def test_the_offline_notice_spells_the_cache_path_from_home(data_root, monkeypatch):
    from helpers import data

    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setenv("WORKBOOK_CACHE", str(data_root.parent.parent / "home-cache"))
    monkeypatch.setattr(data, "cache_dir", lambda name: data.Path.home() / ".cache" / "workbook-test" / name)
    monkeypatch.setattr(data, "cached_files", lambda *args: [])
    with pytest.raises(data.DataUnavailableError) as error:
        data.fetch_official_archive("cifar100")
    assert "is not cached at ~/.cache/workbook-test/cifar100/" in str(error.value)
    assert str(data.Path.home()) not in str(error.value)
