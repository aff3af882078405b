"""Nothing silently wrong in runs and sweeps: relative path variables, runs tied to their source model, cached features
checked on read, bad places found before training, and sweep grids that cannot run the wrong thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import models, parameters, paths, reporting, runs, sweep, torch_train
from helpers.runner import NOTEBOOKS_DIR

PROJECT = Path(__file__).resolve().parent.parent
NOTEBOOK = NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb"


# ----------------------------------------------------------------------------------------------- relative paths

def test_a_relative_data_root_means_the_folder_the_user_typed_it_in(tmp_path, monkeypatch):
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("WORKBOOK_DATA", "my-data")
    monkeypatch.setenv("WORKBOOK_OUTPUTS", "~/../" + str(tmp_path.relative_to("/")) + "/out")
    assert paths.data_root() == tmp_path / "my-data"
    assert paths.outputs_root().resolve() == tmp_path / "out"


def test_a_kernel_started_in_notebooks_reads_relative_variables_from_the_launch_folder(tmp_path):
    env = {**os.environ, "PWD": str(tmp_path), "WORKBOOK_DATA": "d", "WORKBOOK_CIFAR10_SOURCE": "c.tar.gz"}
    code = "from helpers import paths; print(paths.data_root()); print(paths.env_path(paths.CIFAR10_SOURCE_ENV))"
    shown = subprocess.run([sys.executable, "-c", code], cwd=NOTEBOOKS_DIR, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert shown == [str(tmp_path / "d"), str(tmp_path / "c.tar.gz")]  # not notebooks/d, one data root


def test_launchers_hand_kernels_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PWD", str(tmp_path))
    for variable, value in (("WORKBOOK_DATA", "d"), ("WORKBOOK_OUTPUTS", "o"), ("WORKBOOK_CIFAR10_SOURCE", "c.tgz"),
                            ("WORKBOOK_CACHE", "k")):
        monkeypatch.setenv(variable, value)
    paths.absolute_path_variables()
    assert [os.environ[v] for v in paths.PATH_VARIABLES] == [str(tmp_path / n) for n in ("d", "o", "c.tgz", "k")]


# ------------------------------------------------------------------------------------- runs tied to their source

def _fake_runs(monkeypatch: pytest.MonkeyPatch, weights: dict) -> list:
    """Replace notebook execution by one that writes a complete record started from the given weights."""
    calls = []

    def fake_execute(notebook, executed, params):
        calls.append(params)
        reporting.save_json(Path(params["OUTPUT_DIR"]) / "metrics.json",
                            {"config": {"profile": "smoke"}, "metrics": {"test_acc": 0.5}, "weights": weights()})

    monkeypatch.setattr(runs, "execute", fake_execute)
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    return calls


def _save_source_model(data_root: Path, sha: str) -> None:
    """Write a stand-in course checkpoint pair for the smoke profile whose record names `sha`."""
    path = models.checkpoint_path("smoke")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    path.with_suffix(".json").write_text(json.dumps({"sha256": sha}))


@pytest.mark.parametrize("port", [False, True], ids=["pytorch", "keras port"])
def test_a_run_of_a_since_retrained_source_model_is_run_again(tmp_path, data_root, monkeypatch, capsys, port):
    current = {"sha": "a" * 64}
    weights = (lambda: {"weights": "course", "sha256": "f" * 64, "torch_sha256": current["sha"]}) if port else (
        lambda: {"weights": "course", "sha256": current["sha"]})
    calls = _fake_runs(monkeypatch, weights)
    folder, params = tmp_path / "run", {"PROFILE": "smoke", "SEED": 0}
    _save_source_model(data_root, current["sha"])
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "ok"
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "done earlier"
    current["sha"] = "b" * 64  # notebook 03 retrained (FORCE_RETRAIN, LABEL_SMOOTHING 0)
    _save_source_model(data_root, current["sha"])
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "ok"
    assert "another source model" in capsys.readouterr().out
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "done earlier"
    assert len(calls) == 2


def test_a_run_that_trained_the_source_model_itself_is_reused(tmp_path, data_root, monkeypatch):
    calls = _fake_runs(monkeypatch, lambda: {"weights": "course", "sha256": "c" * 64})
    folder, params = tmp_path / "run", {"PROFILE": "smoke", "SEED": 0}
    monkeypatch.setattr(runs, "execute", lambda *args, _run=runs.execute: (_save_source_model(data_root, "c" * 64),
                                                                              _run(*args)))
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "ok"  # no checkpoint before: the run made it
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "done earlier"
    assert len(calls) == 1


def test_runs_that_do_not_start_from_the_course_model_are_not_tied_to_it(tmp_path, data_root, monkeypatch):
    calls = _fake_runs(monkeypatch, lambda: {"weights": "none", "model": "course_net"})
    folder, params = tmp_path / "run", {"PROFILE": "smoke", "SEED": 0}
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "ok"
    _save_source_model(data_root, "d" * 64)
    assert sweep.run_one(NOTEBOOK, params, folder)["status"] == "done earlier"
    assert len(calls) == 1


def test_a_run_with_another_teacher_file_is_run_again(tmp_path, data_root, monkeypatch):
    calls = _fake_runs(monkeypatch, lambda: {"weights": "none"})
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"one")
    folder = tmp_path / "run"
    params = {"PROFILE": "smoke", "SEED": 0, "TEACHER": str(teacher)}
    notebook = NOTEBOOKS_DIR / "08_distillation_self_training.ipynb"
    assert sweep.run_one(notebook, params, folder)["status"] == "ok"
    assert sweep.run_one(notebook, params, folder)["status"] == "done earlier"
    teacher.write_bytes(b"two")
    assert sweep.run_one(notebook, params, folder)["status"] == "ok"
    assert len(calls) == 2


def test_an_empty_metrics_record_is_not_a_finished_run(tmp_path, monkeypatch):
    calls = []

    def writes_nothing_useful(notebook, executed, params):
        calls.append(params)
        (Path(params["OUTPUT_DIR"]) / "metrics.json").write_text("{}")

    monkeypatch.setattr(runs, "execute", writes_nothing_useful)
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    folder, params = tmp_path / "run", {"PROFILE": "smoke", "SEED": 0}
    assert sweep.run_one(NOTEBOOK, params, folder)["status"].startswith("failed")
    assert sweep.run_one(NOTEBOOK, params, folder)["status"].startswith("failed")  # not "done earlier"
    assert len(calls) == 2


# ------------------------------------------------------------------------------------------------- feature cache

def test_a_feature_cache_entry_zeroed_at_its_right_size_is_recomputed(data_root, capsys):
    key = {"model": "m", "split": "train", "data": "x"}
    torch_train.cached_features(key, lambda: np.arange(12, dtype=np.float32).reshape(4, 3))
    [stored] = (data_root / "features").glob("*.npz")
    size = stored.stat().st_size
    stored.write_bytes(bytes(size))
    values, _, hit = torch_train.cached_features(key, lambda: np.full((4, 3), 2, dtype=np.float32))
    assert not hit and values[0, 0] == 2 and "damaged" in capsys.readouterr().out


def test_a_feature_cache_entry_whose_values_were_zeroed_is_caught_by_its_checksum(data_root, capsys):
    key = {"model": "m", "split": "test", "data": "x"}
    torch_train.cached_features(key, lambda: np.arange(12, dtype=np.float32).reshape(4, 3))
    [stored] = (data_root / "features").glob("*.npz")
    with np.load(stored) as entry:
        checksum = entry["sha256"]
    with open(stored, "wb") as stream:  # a well-formed file with the old checksum and zeroed values, same size
        np.savez(stream, values=np.zeros((4, 3), dtype=np.float32), sha256=checksum)
    values, _, hit = torch_train.cached_features(key, lambda: np.full((4, 3), 7, dtype=np.float32))
    assert not hit and values[0, 0] == 7 and "do not match the checksum" in capsys.readouterr().out
    assert torch_train.cached_features(key, lambda: pytest.fail("computed again"))[2]


# ---------------------------------------------------------------------------------- places checked before work

def _declared(**values):
    return {"__annotations__": {"IMAGE_PATH": "Optional[str]", "OUTPUT_DIR": "Optional[str]"},
            "IMAGE_PATH": None, "OUTPUT_DIR": None, **values}


def test_a_missing_or_unreadable_image_path_is_refused_with_the_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path / "outputs"))
    with pytest.raises(parameters.ParameterError, match="IMAGE_PATH='.*nope.jpg': no such file"):
        parameters.check_parameters(_declared(IMAGE_PATH=str(tmp_path / "nope.jpg")))
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(parameters.ParameterError, match="is not an image Pillow can read"):
        parameters.check_parameters(_declared(IMAGE_PATH=str(tmp_path / "notes.jpg")))
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.jpg")
    parameters.check_parameters(_declared(IMAGE_PATH=str(tmp_path / "photo.jpg")))


@pytest.mark.parametrize("where", ["outputs variable is a file", "outputs under a file", "output dir unwritable"])
def test_a_record_folder_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    namespace = _declared()
    if where == "outputs variable is a file":
        monkeypatch.setenv("WORKBOOK_OUTPUTS", str(blocker))
        message = "WORKBOOK_OUTPUTS=.*is a file"
    elif where == "outputs under a file":
        monkeypatch.setenv("WORKBOOK_OUTPUTS", str(blocker / "outputs"))
        message = "Cannot create .*from WORKBOOK_OUTPUTS"
    else:
        monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path / "outputs"))
        monkeypatch.setattr(parameters, "is_writable", lambda folder: folder != tmp_path / "ro")
        namespace = _declared(OUTPUT_DIR=str(tmp_path / "ro"))
        message = "OUTPUT_DIR='.*ro' cannot be written"
    with pytest.raises(parameters.ParameterError, match=message):
        parameters.check_parameters(namespace)


# ------------------------------------------------------------------------------------------------------ grids

def _grid_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_a_huge_grid_needs_confirmation_and_is_counted_without_listing_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("ran without confirmation"))
    values = ", ".join(str(v) for v in range(100))
    grid = _grid_file(tmp_path, f"notebook: 05_pytorch_finetuning\nparameters: {{SEED: [{values}], "
                                f"LABELS_PER_CLASS: [{values}], BATCH_SIZE: [{values}]}}\nseeds: [{values}]\n")
    with pytest.raises(SystemExit, match="asks for 1,000,000 runs .*pass --yes"):
        sweep.main([str(grid)])


@pytest.mark.parametrize("name", ["../notebooks/05_pytorch_finetuning", "/tmp/x", "05_pytorch_finetuning.ipynb"])
def test_a_grid_runs_only_course_notebooks_by_name(tmp_path, name):
    with pytest.raises(SystemExit, match="No course notebook .*give a name, not a path"):
        sweep.main([str(_grid_file(tmp_path, f"notebook: {name}\nparameters: {{SEED: [0]}}\n"))])


def test_combinations_that_would_share_a_run_folder_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("ran two runs into one folder"))
    grid = _grid_file(tmp_path, "notebook: 05_pytorch_finetuning\nparameters: {IMAGE_PATH: [a/b.jpg, ab.jpg]}\n")
    with pytest.raises(SystemExit, match="would share the run folder 'IMAGE_PATH-ab.jpg_SEED-0'"):
        sweep.main([str(grid)])


def test_a_binary_grid_file_is_named(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match=f"{grid}: cannot read it as YAML"):
        sweep.load_grid(grid)


# ------------------------------------------------------------------------------------------------ shown paths

def test_paths_printed_in_notebooks_are_relative_to_the_project_or_home(tmp_path, monkeypatch, capsys):
    assert paths.shown(PROJECT / "outputs" / "05" / "metrics.json") == "outputs/05/metrics.json"
    assert paths.shown(PROJECT) == "."
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.shown(tmp_path / "runs" / "a") == "~/runs/a"
    reporting.save_run(tmp_path / "run", {}, {}, {"test_acc": 0.5})
    assert capsys.readouterr().out.strip() == "Run record written to ~/run/metrics.json"
