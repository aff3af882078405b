"""Verdicts and checkpoints that cannot be fooled: exercise checks refuse NaN, infinities, wrong shapes and types and
stop endless loops; a checkpoint pair saved by one process while another loads it is never called corrupt, notebook 03
is trained once however many runs ask for it, and a pickle payload is refused without the unsafe advice."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_exercises import exercise_cells, solution

from helpers import exercises, metrics, models, runner

PROJECT = Path(__file__).resolve().parent.parent
CORRUPTIONS = ("nan", "inf", "shape", "string", "none", "list")


# ---------------------------------------------------------------------------------------------- exercise checks

def _corrupt(value, how: str):
    """Spoil one numeric part of a right answer in one way: NaN, inf, a wrong shape or a wrong type."""
    if how in ("nan", "inf"):
        bad = float(how)
        if torch.is_tensor(value):
            mask = torch.zeros_like(value, dtype=torch.float32)
            mask.view(-1)[0] = bad
            return value + mask  # keeps the graph, so only the NaN or inf is wrong
        if isinstance(value, np.ndarray):
            spoilt = value.astype(np.result_type(value.dtype, np.float32))
            spoilt.flat[0] = bad
            return spoilt
        return bad
    if how == "shape":
        return torch.stack([value, value]) if torch.is_tensor(value) else np.stack([value, value])
    if how == "string":
        return str(value.tolist() if hasattr(value, "tolist") else value)
    return None if how == "none" else [value]


def _spoilt_answers(right, how: str):
    """Yield (which part, function) for every numeric part of the right answer's result, spoilt one at a time."""
    def spoil(part):
        def answer(*args):
            result = right(*args)
            if part is None:
                return _corrupt(result, how)
            return tuple(_corrupt(v, how) if i == part else v for i, v in enumerate(result))
        return answer

    yield from ((None, spoil(None)), (0, spoil(0)), (1, spoil(1)))


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize(("key", "notebook", "function"), exercise_cells())
def test_every_check_refuses_nan_inf_wrong_shapes_and_types(key, notebook, function, how):
    right = solution(notebook, function)
    tuple_result = key in ("02.1", "01.1", "08.1", "09.1")
    for part, answer in _spoilt_answers(right, how):
        if (part is None) == tuple_result:
            continue  # spoil each part of a pair, or the single result
        verdict = exercises.problem(key, answer)
        assert verdict is not None, f"{key} passed an answer spoilt by {how} in part {part}"
        assert "raised" not in verdict, f"{key} crashed on {how} instead of naming it: {verdict}"


def test_nan_answers_print_a_failure(capsys):
    exercises.check("06.1", lambda *a: float("nan"))
    exercises.check("04.1", lambda *a: float("nan"))
    exercises.check("09.1", lambda *a: (float("nan"), float("nan")))
    out = capsys.readouterr().out
    assert "✅" not in out and out.count("❌") == 3 and "not a finite number" in out


def _bin_gaps(labels, probs, bins):
    """|accuracy - confidence| of each non-empty bin, from the reliability table the course's ECE is built on."""
    table = metrics.reliability(labels, probs, bins)
    return np.abs(table["accuracy"] - table["confidence"])[table["count"] > 0]


def _ece_equal_bin_weights(labels, probs, bins):
    """The bug: every non-empty bin counts the same, whatever its number of images."""
    return float(_bin_gaps(labels, probs, bins).mean())


def _ece_divided_by_bins(labels, probs, bins):
    """The bug: sum each bin's gap (empty bins as 0) and divide by the number of bins."""
    return float(_bin_gaps(labels, probs, bins).sum() / bins)


@pytest.mark.parametrize("buggy", [_ece_equal_bin_weights, _ece_divided_by_bins])
def test_the_ece_check_tells_averaging_over_bins_from_weighting_by_images(buggy):
    verdict = exercises.problem("06.1", buggy)
    assert verdict is not None and "expected" in verdict and "share of the images" in verdict


def _endless(*args):
    """A learner's loop that never ends."""
    while True:
        pass


def _stubborn(*args):
    """A loop that swallows every Exception, as a learner's retry loop might."""
    while True:
        try:
            time.sleep(0.01)
        except Exception:  # noqa: BLE001
            pass


@pytest.mark.parametrize("answer", [_endless, _stubborn])
def test_an_endless_loop_is_stopped_with_a_message(answer):
    handler_before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    verdict = exercises.problem("06.1", answer, time_limit=1)
    assert time.monotonic() - start < 5
    assert verdict.startswith("your function ran longer than 1 s:")
    assert signal.getsignal(signal.SIGALRM) is handler_before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_default_time_limit_applies_to_check(monkeypatch, capsys):
    monkeypatch.setattr(exercises, "TIME_LIMIT_S", 0.5)
    exercises.check("09.1", _endless)
    assert "❌" in (out := capsys.readouterr().out) and "ran longer than 0.5 s" in out


def test_a_timer_set_before_a_check_is_put_back():
    rang = []
    previous = signal.signal(signal.SIGALRM, lambda *a: rang.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        assert exercises.problem("09.1", solution("09_few_shot_multi_task", "episodes_summary")) is None
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30 and not rang
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_off_the_main_thread_a_check_runs_without_a_limit():
    verdicts = []
    thread = threading.Thread(target=lambda: verdicts.append(
        exercises.problem("09.1", solution("09_few_shot_multi_task", "episodes_summary"), time_limit=1)))
    thread.start()
    thread.join(30)
    assert verdicts == [None]


# ---------------------------------------------------------------------------------------------- checkpoint pair

SMALL = (4, 8, 8, 16)
META = {"classes": list("abcde"), "widths": list(SMALL), "source_test_acc": 0.5, "data": {}}

RACE = """
import sys, time
from pathlib import Path
import torch
from helpers import models
role, path, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
meta = {"classes": list("abcde"), "widths": [4, 8, 8, 16], "source_test_acc": 0.5, "data": {}}
if role == "writer":
    nets = [models.course_net(widths=(4, 8, 8, 16)) for _ in range(2)]
    number, deadline = 0, time.monotonic() + 15
    while not stop.exists() and time.monotonic() < deadline:
        models.save_checkpoint(nets[number % 2], {**meta, "number": number}, path)
        number += 1
    print("saves", number)
else:
    false = 0
    for _ in range(300):
        try:
            models.load_checkpoint(path)
        except models.CheckpointError as error:
            false += 1
            print(type(error).__name__, error)
    stop.touch()
    print("false", false)
"""


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a Python process running `args` with the project importable."""
    return subprocess.Popen([sys.executable, "-c", *args], cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {}), "PYTHONPATH": str(PROJECT)})


def test_loads_racing_saves_never_see_a_false_corruption(tmp_path):
    path = tmp_path / "model.pt"
    models.save_checkpoint(models.course_net(widths=SMALL), META, path)
    processes = [_spawn(RACE, role, str(path), str(tmp_path / "stop")) for role in ("writer", "reader")]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert int(outputs[0].split("saves")[-1]) > 10, outputs  # the loads did race saves
    assert "false 0" in outputs[1], outputs[1][-2000:]


def test_a_checkpoint_is_hashed_and_loaded_from_the_same_bytes(tmp_path, monkeypatch):
    path = models.save_checkpoint(models.course_net(widths=SMALL), META, tmp_path / "model.pt")
    other = models.course_net(widths=SMALL)
    real_load = torch.load

    def swap_then_load(*args, **kwargs):
        """Another process replaces the weights between the hash check and the load."""
        with open(path, "wb") as stream:
            torch.save({"state_dict": other.state_dict(), "meta": META}, stream)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", swap_then_load)
    loaded, meta = models.load_checkpoint(path)
    assert models.state_fingerprint(loaded) != models.state_fingerprint(other)  # what was checked is what loaded
    assert hashlib.sha256(path.read_bytes()).hexdigest() != meta["sha256"]


TRAIN_ONCE = """
import sys, time
from pathlib import Path
from helpers import models, runner
log = Path(sys.argv[1])

def fake_notebook_03(notebook, executed, params, quiet=False):
    with open(log, "a") as stream:
        stream.write(f"trained {params['PROFILE']}\\n")
    time.sleep(1.0)
    models.save_checkpoint(models.course_net(widths=(4, 8, 8, 16)), {"classes": list("abcde"),
        "widths": [4, 8, 8, 16], "source_test_acc": 0.5, "data": {}}, models.checkpoint_path(params["PROFILE"]))

runner.execute = fake_notebook_03
path = models.ensure_course_checkpoint("smoke")
models.load_checkpoint(path)
print("ok")
"""


def test_two_processes_ensuring_the_course_checkpoint_train_it_once(data_root, tmp_path):
    log = tmp_path / "trainings.log"
    env = {"WORKBOOK_DATA": str(data_root), "WORKBOOK_OUTPUTS": str(tmp_path / "outputs")}
    processes = [_spawn(TRAIN_ONCE, str(log), env=env) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert log.read_text().splitlines() == ["trained smoke"], outputs


def test_two_threads_ensuring_the_course_checkpoint_train_it_once(data_root, tmp_path, monkeypatch):
    trainings = []

    def fake_notebook_03(notebook, executed, params, quiet=False):
        trainings.append(params["PROFILE"])
        time.sleep(0.5)
        models.save_checkpoint(models.course_net(widths=SMALL), META, models.checkpoint_path(params["PROFILE"]))

    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setattr(runner, "execute", fake_notebook_03)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(models.ensure_course_checkpoint("smoke")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert trainings == ["smoke"] and len(paths) == 2 and paths[0] == paths[1]
    models.load_checkpoint(paths[0])


# -------------------------------------------------------------------------------------------- foreign payloads

class Foreign:
    """Not a tensor: a checkpoint holding one is not one the course wrote."""


class Booby:
    """A payload that would run code when unpickled (here: leave a file behind)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write_pair(path: Path, payload: object) -> Path:
    """Write `payload` with torch.save, and a sidecar whose SHA-256 matches it, as a foreign file would come."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getvalue())
    path.with_suffix(".json").write_text(json.dumps({**META, "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}))
    return path


@pytest.mark.parametrize("payload", ["foreign class", "code", "no state_dict"])
def test_a_pickle_payload_is_refused_with_the_courses_message_not_the_unsafe_advice(tmp_path, payload):
    marker = tmp_path / "code-ran"
    content = {"foreign class": {"state_dict": {}, "meta": META, "extra": Foreign()},
               "code": {"state_dict": {}, "meta": META, "extra": Booby(marker)},
               "no state_dict": torch.zeros(3)}[payload]
    path = _write_pair(tmp_path / "model.pt", content)
    with pytest.raises(models.CheckpointError) as caught:
        models.load_checkpoint(path)
    message = str(caught.value)
    assert "is not a checkpoint this course wrote" in message and "not loaded" in message
    assert "notebook 03" in message and "FORCE_RETRAIN=True" in message
    assert "weights_only=False" not in message and "weights_only" not in message
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # no PyTorch advice
    assert not marker.exists()
