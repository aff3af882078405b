"""Nothing silently wrong: short archives, doubled trees, foreign checkpoints, stale runs, mistyped parameters,
damaged caches and records, concurrent writers, a read-only classroom data root, and messages that name the fix."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder
from PIL import Image

from helpers import data, models, parameters, paths, profiles, reporting, runs, sweep, torch_train
from helpers.runner import NOTEBOOKS_DIR

PROJECT = Path(__file__).resolve().parent.parent
CIFAR_NAMES = data.CIFAR10_CLASSES


def _tar(folder: Path, archive: Path, arcname: str = "copy", mode: str = "w") -> Path:
    """Pack an ImageFolder tree into a tar archive under one top folder."""
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=arcname)
    return archive


# ------------------------------------------------------------------------------------- short or doubled archives

@pytest.mark.parametrize("cut", ["inside the last member", "at a member boundary", "inside a header"])
def test_a_truncated_uncompressed_tar_is_refused_not_loaded_short(tmp_path, data_root, cut):
    archive = _tar(write_image_folder(tmp_path / "images", per_class=4), tmp_path / "images.tar")
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1]
    end_of_data = last.offset_data + last.size
    size = {"inside the last member": last.offset_data + 10, "at a member boundary": last.offset,
            "inside a header": last.offset + 100}[cut]
    assert size < end_of_data
    with open(archive, "r+b") as stream:
        stream.truncate(size)
    with pytest.raises(data.DataFormatError, match="corrupt or truncated.*nothing was deleted"):
        data.load_image_folder(archive)
    assert archive.exists() and not list((data_root / "imagefolder").glob("*.npz"))  # nothing cached, nothing lost


def test_a_complete_uncompressed_tar_loads(tmp_path, data_root):
    archive = _tar(write_image_folder(tmp_path / "images"), tmp_path / "images.tar")
    assert data.load_image_folder(archive).x_train.shape == (9, 32, 32, 3)


def test_a_cifar10_copy_with_unequal_classes_is_refused(tmp_path, data_root, monkeypatch):
    folder = write_image_folder(tmp_path / "c", classes=CIFAR_NAMES, per_class=3)
    (folder / "train" / "truck" / "0002.png").unlink()
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", str(folder))
    with pytest.raises(data.DataFormatError, match="unequal images per class.*truck 2.*incomplete"):
        data.load_cifar10()


def test_two_copies_of_the_tree_are_refused_in_a_tar_as_in_a_folder(tmp_path):
    both = tmp_path / "both"
    for copy in ("copy1", "copy2"):
        write_image_folder(both / copy)
    archive = tmp_path / "both.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for copy in ("copy1", "copy2"):
            tar.add(both / copy, arcname=copy)
    for source in (both, archive):
        with pytest.raises(data.DataFormatError, match="not one ImageFolder copy.*2 trees.*copy1, copy2"):
            data.read_image_folder(source)


def test_macos_resource_forks_are_skipped(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    (folder / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    archive = tmp_path / "mac.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="images")
        info = tarfile.TarInfo("__MACOSX/images/train/cat/._0001.png")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"fork"))
    for source in (folder, archive):
        assert data.read_image_folder(source).x_train.shape == (9, 32, 32, 3)


# ------------------------------------------------------------------------------------------- foreign checkpoints

def test_a_source_model_trained_on_other_data_is_refused(tmp_path):
    path = models.save_checkpoint(models.course_net(), {
        "classes": list("abcde"), "widths": list(models.COURSE_NET_WIDTHS), "source_test_acc": 0.5,
        "dataset_sha256": "synthetic", "data": {"dataset": "synthetic", "seed": 0}}, tmp_path / "model.pt")
    cifar = {"dataset": "cifar10", "sha256": "ab" * 32, "source": "local ImageFolder copy"}
    with pytest.raises(models.CheckpointMismatch, match="dataset_sha256='synthetic'"):
        models.load_checkpoint(path, {"dataset_sha256": models.source_data_key(cifar)})
    weights = {"weights": "course", "checkpoint": str(path), "source_data": {"dataset": "synthetic", "seed": 0}}
    with pytest.raises(models.CheckpointMismatch, match="trained on synthetic.*uses cifar10.*Rerun notebook 03"):
        models.check_source_data(weights, cifar)
    models.check_source_data(weights, {"dataset": "synthetic", "seed": 3})  # same generator: fine
    models.check_source_data({"weights": "imagenet"}, cifar)  # not the course model: nothing to check


# ----------------------------------------------------------------------------------------------- stale sweeps

def test_sweeps_reuse_a_run_only_for_the_same_profile_and_data(tmp_path, monkeypatch):
    calls = []

    def fake_execute(notebook, executed, params):
        calls.append(params)
        reporting.save_json(Path(params["OUTPUT_DIR"]) / "metrics.json", {"config": {"profile": "smoke"},
                                                                          "metrics": {"test_acc": 0.5}})

    monkeypatch.setattr(runs, "execute", fake_execute)
    folder, params = tmp_path / "run", {"PROFILE": "auto", "SEED": 0}
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    assert sweep.run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", params, folder)["status"] == "ok"
    assert sweep.run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", params, folder)["status"] == "done earlier"
    monkeypatch.setenv("WORKBOOK_PROFILE", "cpu")  # the same parameters now mean another profile
    assert sweep.run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", params, folder)["status"] == "ok"
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", str(write_image_folder(tmp_path / "images")))  # other data
    assert sweep.run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", params, folder)["status"] == "ok"
    (folder / "metrics.json").write_text('{"config": {"prof')  # a run cut off while writing
    assert sweep.run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", params, folder)["status"] == "ok"
    assert len(calls) == 4


def test_a_damaged_metrics_file_is_named_not_counted(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text('{"metrics": {"test_acc": 0.9')
    assert sweep.read_metrics({"folder": str(tmp_path)}) is None
    assert f"skipped {tmp_path / 'metrics.json'}: damaged" in capsys.readouterr().out
    rows = sweep.summary_rows([{"params": {"SEED": 0}, "status": "done earlier", "folder": str(tmp_path)}])
    assert rows[0]["test_acc"] is None and "profile" in rows[0]


# ------------------------------------------------------------------------------------------------- parameters

def _namespace(**values):
    declared = {"PROFILE": str, "STRATEGY": str, "LABELS_PER_CLASS": "Optional[int]", "LR": "Optional[float]",
                "LABEL_COUNTS": "Optional[list]", "FLAG": bool}
    defaults = {"PROFILE": "auto", "STRATEGY": "lp_ft", "LABELS_PER_CLASS": None, "LR": None, "LABEL_COUNTS": None,
                "FLAG": False}
    return {"__annotations__": declared, **defaults, **values}


@pytest.mark.parametrize("values, message", [
    ({"STRATEGYY": "linear_probe"}, "unknown parameter STRATEGYY \\(did you mean STRATEGY\\?\\)"),
    ({"LABELS_PER_CLASS": "fifty"}, "LABELS_PER_CLASS='fifty' must be an int or None"),
    ({"LR": -1}, "LR=-1 is out of range: it must be > 0"),
    ({"PROFILE": "turbo"}, "PROFILE='turbo' is not one of: smoke, cpu, full, auto"),
    ({"STRATEGY": "fastest"}, "STRATEGY='fastest' is not one of: scratch, lp_ft"),
    ({"FLAG": "yes"}, "FLAG='yes' must be a bool"),
    ({"LABEL_COUNTS": [10, 0]}, "LABEL_COUNTS=\\[10, 0\\] is out of range"),
])
def test_bad_parameters_are_refused_with_the_fix(values, message):
    with pytest.raises(parameters.ParameterError, match=message):
        parameters.check_parameters(_namespace(**values), choices={"STRATEGY": ("scratch", "lp_ft")})


def test_good_parameters_pass():
    parameters.check_parameters(_namespace(LR=1, LABELS_PER_CLASS=50, LABEL_COUNTS=[10, 50]))


def test_a_bad_profile_is_refused_even_when_the_environment_forces_one(monkeypatch):
    monkeypatch.setenv("WORKBOOK_PROFILE", "smoke")
    with pytest.raises(ValueError, match="Unknown profile 'turbo' \\(from PROFILE\\)"):
        profiles.choose_profile("turbo")


@pytest.mark.notebook
def test_papermill_refuses_a_misspelled_parameter(tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter STRATEGYY"):
        papermill.execute_notebook(str(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"STRATEGYY": "linear_probe"}, cwd=str(NOTEBOOKS_DIR),
                                   progress_bar=False, log_output=False)


@pytest.mark.parametrize("text, message", [
    ("notebook: 05_pytorch_finetuning\nparameters: {STRATEGY: [lp_ft}\n", "cannot read it as YAML"),
    ("- a list\n", "expected a mapping with 'notebook'"),
    ("notebook: 05_pytorch_finetuning\nparameters: {STRATEGY: []}\n", "STRATEGY has no values"),
])
def test_malformed_sweep_files_get_one_line_errors(tmp_path, text, message):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    with pytest.raises(ValueError, match=message):
        sweep.load_grid(grid)


def test_a_single_seed_is_a_list_of_one(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("notebook: 05_pytorch_finetuning\nparameters: {STRATEGY: lp_ft}\nseeds: 0\n")
    assert sweep.load_grid(grid)[1] == {"STRATEGY": ["lp_ft"], "SEED": [0]}


@pytest.mark.parametrize("grid, message", [
    ({"LABELS_PER_CLASS": ["fifty"]}, "LABELS_PER_CLASS='fifty' must be an int or None"),
    ({"MODEL": ["resnet19"]}, "MODEL='resnet19' is not one of: resnet18"),
    ({"LR": [-0.1]}, "LR=-0.1 is out of range"),
])
def test_grid_values_for_parameters_without_defaults_are_checked_up_front(grid, message):
    with pytest.raises(ValueError, match=message):
        sweep.validate_grid(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", grid)


# ------------------------------------------------------------------------------------- damaged caches and records

def test_a_damaged_image_cache_is_rebuilt(tmp_path, data_root, capsys):
    folder = write_image_folder(tmp_path / "images")
    first = data.load_image_folder(folder)
    [cache] = (data_root / "imagefolder").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:200])  # a zip cut short: BadZipFile
    np.testing.assert_array_equal(data.load_image_folder(folder).x_train, first.x_train)
    assert "is damaged" in capsys.readouterr().out
    assert data.load_cache(cache) is not None  # rebuilt in place


def test_a_truncated_feature_file_is_recomputed(data_root, capsys):
    key = {"model": "m", "split": "train", "data": "x"}
    torch_train.cached_features(key, lambda: np.ones((4, 3), dtype=np.float32))
    [stored] = (data_root / "features").glob("*.npz")
    stored.write_bytes(stored.read_bytes()[:100])
    values, _, hit = torch_train.cached_features(key, lambda: np.full((4, 3), 2, dtype=np.float32))
    assert not hit and values[0, 0] == 2 and "damaged" in capsys.readouterr().out
    assert torch_train.cached_features(key, lambda: pytest.fail("computed again"))[2]


def test_a_truncated_checkpoint_record_is_named(tmp_path):
    path = models.save_checkpoint(models.course_net(), {"classes": list("abcde"),
                                                        "widths": list(models.COURSE_NET_WIDTHS)}, tmp_path / "m.pt")
    sidecar = path.with_suffix(".json")
    sidecar.write_text(sidecar.read_text()[:30])
    with pytest.raises(models.CheckpointCorrupt, match=f"{sidecar.name} is damaged.*rerun notebook 03"):
        models.load_checkpoint(path)


# ------------------------------------------------------------------------------------------- concurrent writers

RACE = """
import sys, time
import numpy as np
from helpers import reporting, torch_train
role = sys.argv[1]
if role == "features":
    for round in range(6):
        key = {"model": "race", "round": round}
        values, _, _ = torch_train.cached_features(key, lambda: (time.sleep(0.05), np.full((300, 64), round, 'f4'))[1])
        assert values[0, 0] == round
elif role == "writer":
    for number in range(200):
        reporting.save_json(__import__("pathlib").Path(sys.argv[2]), {"number": number, "pad": "x" * 20000})
else:
    import json, pathlib
    path, bad = pathlib.Path(sys.argv[2]), 0
    for _ in range(400):
        try:
            json.loads(path.read_text())
        except FileNotFoundError:
            pass
        except ValueError:
            bad += 1
    assert bad == 0, f"{bad} torn reads"
print("ok")
"""


def _spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """Start a Python process running the race script with the project importable."""
    return subprocess.Popen([sys.executable, "-c", RACE, *args], cwd=PROJECT, env={**env, "PYTHONPATH": str(PROJECT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_computing_one_cache_entry_both_succeed(data_root):
    processes = [_spawn("features", env=dict(os.environ)) for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert not [p for p in (data_root / "features").iterdir() if not p.name.endswith(".npz")]  # no temporaries left


def test_readers_never_see_a_half_written_metrics_file(tmp_path):
    target = tmp_path / "metrics.json"
    processes = [_spawn(role, str(target), env=dict(os.environ)) for role in ("writer", "writer", "reader")]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs


# -------------------------------------------------------------------------------------- read-only classroom root

READ_ONLY_RUN = """
import numpy as np
from helpers import data, paths, torch_train
loaded = data.load_image_folder(__import__("sys").argv[1])
assert loaded.x_train.shape == (9, 32, 32, 3)
values, where, hit = torch_train.cached_features({"model": "ro"}, lambda: np.ones((2, 2), "f4"))
assert not hit and str(where).startswith(str(paths._user_cache_path())), where
assert torch_train.cached_features({"model": "ro"}, lambda: 1 / 0)[2]
print("ok")
"""


def test_a_read_only_data_root_works_with_caches_in_the_user_folder(tmp_path):
    share = Path(tempfile.mkdtemp(prefix="workbook-share-"))
    try:
        os.chmod(share, 0o755)
        source = write_image_folder(share / "images")
        env = {**os.environ, "WORKBOOK_DATA": str(share / "data"), "WORKBOOK_OFFLINE": "1"}
        prepared = subprocess.run([sys.executable, "-c", "import sys; from helpers import data; "
                                   "data.load_image_folder(sys.argv[1])", str(source)], cwd=PROJECT,
                                  env={**env, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True)
        assert prepared.returncode == 0, prepared.stderr
        renamed = share / "renamed-copy"
        shutil.copytree(source, renamed, copy_function=shutil.copy2)  # same content, another name: still cached
        user_cache = share / "user-cache"
        user_cache.mkdir(mode=0o777)
        os.chmod(user_cache, 0o777)
        for path in [share, *share.rglob("*")]:
            if path != user_cache and user_cache not in path.parents:
                os.chmod(path, 0o555 if path.is_dir() else 0o444)
        command = [sys.executable, "-c", READ_ONLY_RUN, str(renamed)]
        if os.geteuid() == 0:  # root writes anywhere: run as an ordinary user, as a student would
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        run = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, env={
            **env, "PYTHONPATH": str(PROJECT), "WORKBOOK_CACHE": str(user_cache), "HOME": str(user_cache),
            "MPLCONFIGDIR": str(user_cache)})
        assert run.returncode == 0 and "ok" in run.stdout, run.stdout + run.stderr
        assert "decoding images" not in run.stderr  # found by content in the read-only root, not decoded again
        assert not (user_cache / "imagefolder").exists()
    finally:
        for path in [share, *share.rglob("*")]:
            os.chmod(path, 0o755)
        shutil.rmtree(share)


# ------------------------------------------------------------------------------------------ messages with the fix

def test_a_users_own_zip_is_not_called_corrupt_or_deleted(tmp_path, data_root, monkeypatch):
    archive = shutil.make_archive(str(tmp_path / "cifar"), "zip", write_image_folder(tmp_path / "images"))
    monkeypatch.setenv("WORKBOOK_CIFAR10_SOURCE", archive)
    with pytest.raises(data.DataFormatError) as caught:
        data.load_cifar10()
    assert "is not a tar archive" in str(caught.value) and "unzip" in str(caught.value)
    assert "nothing was deleted" in str(caught.value) and "Delete it" not in str(caught.value)
    assert Path(archive).exists()


def test_imagenet_weights_without_a_network_say_what_to_do(monkeypatch):
    import torchvision

    monkeypatch.delenv("WORKBOOK_OFFLINE", raising=False)
    monkeypatch.setattr(torchvision.models, "get_model", lambda *a, **k: (_ for _ in ()).throw(
        urllib.error.URLError("[Errno -3] Temporary failure in name resolution")))
    with pytest.raises(OSError, match="Downloading ImageNet weights for resnet18 failed.*WORKBOOK_OFFLINE=1"):
        models.source_model("imagenet", "resnet18", "smoke")


def test_a_data_root_that_is_a_file_is_named_not_a_crash_at_import(tmp_path):
    blocker = tmp_path / "data-file"
    blocker.write_text("not a folder")
    run = subprocess.run([sys.executable, "-c", "import helpers; from helpers import paths; paths.data_root()"],
                         cwd=PROJECT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT), "WORKBOOK_DATA": str(blocker)})
    assert f"WORKBOOK_DATA={blocker} is a file, not a folder" in run.stderr
    assert "import helpers" not in run.stderr.splitlines()[-1]


def test_a_decompression_bomb_names_its_file(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "images")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32 x 32 > 2 x 100: treated as a bomb
    with pytest.raises(data.DataFormatError, match="0000.png is too large to decode safely"):
        data.read_image_folder(folder)


def test_atomic_writes_leave_no_temporary_behind_and_keep_the_old_file_on_failure(tmp_path):
    target = paths.atomic_write_text(tmp_path / "record.json", json.dumps({"a": 1}))
    with pytest.raises(ZeroDivisionError):
        paths.atomic_write(target, lambda stream: (stream.write(b"{half"), 1 / 0))
    assert json.loads(target.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["record.json"]
