"""One bad run folder, or a wrong scheduler address, is named and passed by: never a raw error, never a hang."""

from __future__ import annotations

import copy
import http.server
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from notebook_code import notebook_definition

from helpers import cluster, reporting

NAMES = ["cat", "dog", "frog"]
RECORD = {"framework": "pytorch", "class_names": NAMES,
          "config": {"strategy": "lp_ft", "weights": "course", "seed": 0, "labels_per_class": 10,
                     "validation": "labelled", "task": "target"},
          "metrics": {"test_acc": 0.5, "wall_seconds": 3.0, "num_train": 30, "history": []},
          "data": {"dataset": "synthetic", "task": "target", "num_train": 30, "num_test": 6}}


def _arrays(count: int = 6) -> dict[str, np.ndarray]:
    """Test predictions a run could have written: integer labels and float32 probabilities."""
    probs = np.random.default_rng(0).dirichlet(np.ones(len(NAMES)), count).astype(np.float32)
    return {"y_true": np.arange(count) % len(NAMES), "probs": probs}


def _write_run(folder: Path, record: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write one run folder as notebooks 04, 05, 08 and 09 do."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(record))
    np.savez(folder / "predictions.npz", **arrays)


def _without(section: str | None, key: str) -> dict:
    """The good record less one field."""
    record = copy.deepcopy(RECORD)
    del (record[section] if section else record)[key]
    return record


def _with(section: str, key: str, value: object) -> dict:
    """The good record with one field changed."""
    record = copy.deepcopy(RECORD)
    record[section][key] = value
    return record


def _nan_probs() -> dict[str, np.ndarray]:
    """Predictions whose probabilities hold a NaN."""
    arrays = _arrays()
    arrays["probs"][2, 1] = np.nan
    return arrays


DAMAGED: dict[str, tuple[dict, Callable[[], dict[str, np.ndarray]], str]] = {
    "truncated": (RECORD, _arrays, "predictions.npz is unreadable"),
    "object_array": (RECORD, lambda: {**_arrays(), "probs": np.array([[0.5, 0.5, None]] * 6, dtype=object)},
                     "predictions.npz is unreadable"),
    "nan_probs": (RECORD, _nan_probs, "probs is not all finite"),
    "short_probs": (RECORD, lambda: {**_arrays(), "probs": _arrays(5)["probs"]}, "probs has shape (5, 3)"),
    "too_many_classes": (RECORD, lambda: {**_arrays(), "probs": np.full((6, 4), 0.25, np.float32)},
                         "probs has shape (6, 4)"),
    "label_out_of_range": (RECORD, lambda: {**_arrays(), "y_true": np.full(6, 7)}, "y_true is not all class"),
    "string_labels": (RECORD, lambda: {**_arrays(), "y_true": np.array(list("abcdef"))}, "lacks integer y_true"),
    "no_probs": (RECORD, lambda: {"y_true": _arrays()["y_true"]}, "lacks integer y_true or floating-point probs"),
    "held_out_mismatch": (RECORD, lambda: {**_arrays(), "val_probs": _arrays(4)["probs"], "val_y_true": np.zeros(3,
                          int)}, "val_probs has shape (4, 3), not (3 labels"),
    "no_config": (_without(None, "config"), _arrays, "config['strategy'] is missing"),
    "no_wall_seconds": (_without("metrics", "wall_seconds"), _arrays, "metrics['wall_seconds'] is missing"),
    "no_class_names": (_without(None, "class_names"), _arrays, "class_names is missing"),
    "string_seed": (_with("config", "seed", "0"), _arrays, "config['seed'] is str"),
    "string_labels_per_class": (_with("config", "labels_per_class", "10"), _arrays,
                                "config['labels_per_class'] is str"),
    "no_dataset": (_without("data", "dataset"), _arrays, "data['dataset'] is missing"),
}


def test_find_runs_keeps_the_good_run_and_names_each_damaged_one(tmp_path, capsys):
    find_runs = notebook_definition("06_evaluation", "find_runs", {"reporting": reporting, "Path": Path})
    _write_run(tmp_path / "good", RECORD, {**_arrays(), "val_y_true": np.zeros(4, np.int64),
                                           "val_probs": _arrays(4)["probs"]})
    _write_run(tmp_path / "other_notebook", {**RECORD, "framework": "pytorch+keras"}, _arrays())  # not a run: quiet
    for name, (record, arrays, _) in DAMAGED.items():
        _write_run(tmp_path / "sweep" / name, record, arrays())
    archive = tmp_path / "sweep" / "truncated" / "predictions.npz"
    archive.write_bytes(archive.read_bytes()[:-40])
    runs = find_runs(tmp_path)
    assert [run["folder"].name for run in runs] == ["good"]
    assert set(runs[0]["predictions"]) == {"y_true", "probs", "val_y_true", "val_probs"}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DAMAGED), lines
    for name, (_, _, why) in DAMAGED.items():
        line = next(line for line in lines if line.startswith(f"skipped {Path('sweep', name)}: "))
        assert why in line and line.endswith("; run it again"), line


# ------------------------------------------------------------------------------------- a wrong scheduler address

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serve files, logging nothing (a Dask handshake is logged as a bad request)."""

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain HTTP server on loopback (what a typo'd dashboard port reaches), serving from a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _GarbageHandler(socketserver.BaseRequestHandler):
    """Send eight 0xff bytes, read as a message length of 2**64 - 1, then hold the connection open."""

    def handle(self) -> None:
        """Answer any connection with the garbage, then wait for the client to give up."""
        self.request.sendall(b"\xff" * 8)
        self.request.settimeout(30)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


@pytest.fixture
def garbage_port() -> Iterator[int]:
    """A raw TCP server on loopback that speaks no Dask."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _GarbageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("server", ["http_port", "garbage_port"])
def test_a_server_that_is_not_a_scheduler_is_named_within_seconds(request, server):
    pytest.importorskip("dask.distributed")
    address = f"tcp://127.0.0.1:{request.getfixturevalue(server)}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"Cannot reach the Dask scheduler at {address} .*8787 is its dashboard"):
        with cluster.dask_client(scheduler=address):
            pass
    assert time.monotonic() - start < 15


def test_the_local_cluster_listens_on_loopback_only():
    pytest.importorskip("dask.distributed")
    from distributed.comm.utils import get_tcp_server_addresses

    with cluster.dask_client(workers=1) as client:
        scheduler = client.cluster.scheduler
        assert scheduler.address.startswith("tcp://127.0.0.1:")
        assert {host for host, *_ in get_tcp_server_addresses(scheduler.http_server)} == {"127.0.0.1"}
        assert all(address.startswith("tcp://127.0.0.1:") for address in client.scheduler_info(n_workers=-1)["workers"])
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert cluster.scheduler_problem(scheduler.address) is None  # a real scheduler passes the probe
        with cluster.dask_client(scheduler=scheduler.address) as remote:
            assert len(remote.scheduler_info(n_workers=-1)["workers"]) == 1
