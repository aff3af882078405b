"""Shared fixtures: tests never touch the network, and each unit test gets its own data root."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Set before any notebook kernel starts, so the course run in tests/test_course.py is the smoke profile, offline.
os.environ["WORKBOOK_OFFLINE"] = "1"
os.environ.setdefault("WORKBOOK_PROFILE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")

SENTINEL = "sentinel-8c1f4e2a9b7d"  # an environment value no executed notebook's output may contain
MINI_CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give the test a fresh, empty data root."""
    root = tmp_path / "data"
    monkeypatch.setenv("WORKBOOK_DATA", str(root))
    monkeypatch.delenv("WORKBOOK_CIFAR10_SOURCE", raising=False)
    return root


def _batch(rng: np.random.Generator, count: int, name: bytes) -> dict[bytes, object]:
    """Make one batch shaped like the official ones: a (count, 3072) uint8 array and a list of labels."""
    return {b"batch_label": name, b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, count)],
            b"filenames": [f"img_{i}.png".encode() for i in range(count)]}


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """Write a gzip tar archive holding the given members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def mini_cifar(tmp_path: Path) -> tuple[Path, dict[str, dict[bytes, object]]]:
    """Write a miniature CIFAR-10 python archive in the canonical format (pickled dicts with bytes keys)."""
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, 8, f"training batch {i} of 5".encode()) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, 6, b"testing batch 1 of 1")
    members = {f"cifar-10-batches-py/{name}": pickle.dumps(batch, protocol=2) for name, batch in batches.items()}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": MINI_CLASSES, b"num_cases_per_batch": 8, b"num_vis": 3072}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return write_tar(tmp_path / "cifar-10-python.tar.gz", members), batches


def sha256_file(path: Path) -> str:
    """Return a file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def serve() -> Iterator[callable]:
    """Serve bytes on a loopback HTTP server; `truncate=True` promises more bytes than it sends."""
    servers = []

    def start(payload: bytes, truncate: bool = False) -> tuple[str, list[str]]:
        """Start a server for one payload; return its URL and the list of requests it gets."""
        requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload) * (2 if truncate else 1)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                if truncate:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "frog"), per_class: int = 3,
                       size: int = 32, suffix: str = ".png") -> Path:
    """Write a small ImageFolder tree with solid-colour images whose colour encodes the class."""
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (size, size), (label * 60, i * 10, 200)).save(folder / f"{i:04d}{suffix}")
    return root


def execute_course(outputs: Path, *options: str) -> int:
    """Run the course (smoke profile) into `outputs` as a learner's shell would, with a sentinel secret set.

    This process plots with Agg (MPLBACKEND above); the kernels draw inline, as under `make course`.
    """
    from helpers import course

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBOOK_OUTPUTS", str(outputs))
        patch.setenv("WORKBOOK_TEST_SECRET", SENTINEL)
        patch.delenv("MPLBACKEND", raising=False)
        return course.main(["--profile", "smoke", *options])


@pytest.fixture(scope="session")
def course_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the whole course once per session: tests/test_course.py checks it, tests/test_book.py renders it."""
    outputs = tmp_path_factory.mktemp("course_outputs")
    execute_course(outputs)  # each notebook's outcome is its own test in tests/test_course.py
    return outputs
