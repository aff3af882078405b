"""One run of a notebook with parameters into its own folder: resumable, never reused for other inputs, never raising.

A finished run is reused only when its metrics.json is complete, the request beside it (parameters, concrete profile,
data source, teacher file) is the one asked now, and it started from the course source model on disk now. Sweeps
(`helpers.sweep`), their Dask workers (`helpers.cluster`) and the course's comparison (`helpers.course`) all run
through `run_one`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .data import data_source, sha256_of
from .profiles import choose_profile
from .reporting import read_record, save_json
from .runner import execute


def run_name(params: dict[str, Any]) -> str:
    """Name a run folder after its parameters, e.g. STRATEGY-lp_ft_SEED-0."""
    return "_".join(f"{name}-{re.sub(r'[^A-Za-z0-9._]+', '', str(value))}" for name, value in params.items())


def file_hash(path: Path) -> str | None:
    """Return the SHA-256 of a file a run reads (a teacher checkpoint), or None when there is no such file."""
    return sha256_of(path) if path.is_file() else None


def source_model_hash(profile: str | None) -> str | None:
    """Return the SHA-256 of the course's source model for a profile, from its record, or None when none is saved."""
    if profile is None:
        return None
    from .models import checkpoint_path  # torch is imported only when a run is checked

    path = checkpoint_path(profile)
    record = read_record(path.with_suffix(".json")) if path.exists() and path.with_suffix(".json").exists() else None
    return (record or {}).get("sha256")


def started_from(record: dict[str, Any]) -> str | None:
    """Return the hash of the course source model a run started from (the PyTorch original for a Keras port)."""
    weights = record.get("weights") or {}
    return (weights.get("torch_sha256") or weights.get("sha256")) if weights.get("weights") == "course" else None


def run_request(notebook: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Say what a run depends on besides its code: parameters, concrete profile, data source, any teacher by hash.

    The source model it starts from is checked against its metrics.json instead (`finished`), since a first run may
    train that model itself.
    """
    try:
        profile = choose_profile(str(params.get("PROFILE", "auto")))
    except ValueError:  # the notebook itself refuses it, with the valid profiles
        profile = None
    request = {"notebook": notebook.stem, "params": params, "profile": profile, "data_source": data_source()}
    if params.get("TEACHER"):
        request["teacher"] = file_hash(Path(str(params["TEACHER"])).expanduser())
    return json.loads(json.dumps(request, default=str))  # as it reads back from request.json


def complete_record(path: Path) -> dict[str, Any] | None:
    """Read a run's metrics.json, or None when it is missing, damaged, or holds no metrics (`{}` is no result)."""
    record = read_record(path) if path.exists() else None
    return record if record and isinstance(record.get("metrics"), dict) and record["metrics"] else None


def stale_source_model(record: dict[str, Any], request: dict[str, Any]) -> bool:
    """Tell whether a run started from a course source model other than the one on disk now (retrained since)."""
    used = started_from(record)
    return used is not None and used != source_model_hash(request.get("profile"))


def finished(folder: Path, request: dict[str, Any]) -> bool:
    """Tell whether a run folder holds an intact metrics.json made for exactly this request and source model."""
    if not (folder / "request.json").exists() or read_record(folder / "request.json") != request:
        return False
    record = complete_record(folder / "metrics.json")
    return record is not None and not stale_source_model(record, request)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # a kernel's CPU threads
REQUEST_WORDS = {"notebook": "notebook", "params": "parameters", "profile": "profile", "data_source": "data",
                 "teacher": "teacher checkpoint"}


def run_one(notebook: Path, params: dict[str, Any], folder: Path, rerun: bool = False) -> dict[str, Any]:
    """Execute one combination unless it finished earlier with the same request (or `rerun`); never raise.

    A finished run is reused only when its metrics.json is intact, the request beside it (parameters, concrete
    profile, data source, teacher) is the one asked now, and it started from the source model on disk now: a smoke
    result is never reported as a cpu one, nor a result of a since-retrained model as this one's.
    """
    metrics_file, request_file = folder / "metrics.json", folder / "request.json"
    executed = folder / f"{notebook.stem}.ipynb"
    request = run_request(notebook, params)
    if metrics_file.exists() and not rerun:
        if finished(folder, request):
            return {"params": params, "status": "done earlier", "folder": str(folder), "seconds": 0.0}
        earlier = read_record(request_file) if request_file.exists() else None
        record = complete_record(metrics_file)
        changed = [REQUEST_WORDS[key] for key in request if earlier is not None and earlier.get(key) != request[key]]
        if record is not None and stale_source_model(record, request):
            changed.append("source model (notebook 03's checkpoint was retrained since)")
        if changed:
            print(f"{folder.name}: ran earlier with another {' and '.join(changed)}; running it again.")
    metrics_file.unlink(missing_ok=True)  # a failed run must not pass for an earlier success
    save_json(request_file, request)
    start = time.perf_counter()
    try:
        execute(notebook, executed, {**params, "OUTPUT_DIR": str(folder.resolve())})
        status = "ok" if complete_record(metrics_file) else "failed: the notebook wrote no complete metrics.json"
    except Exception as error:  # papermill's execution errors, a dead kernel: record and carry on
        status = f"failed: {type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
    return {"params": params, "status": status, "folder": str(folder), "executed_notebook": str(executed),
            "seconds": round(time.perf_counter() - start, 1)}


