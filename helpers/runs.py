"""One run of a notebook with parameters into its own folder: resumable, never reused for other inputs, never raising.

A finished run is reused only when its metrics.json is complete, the request beside it (parameters, concrete profile,
data source, teacher file) is the one asked now, and it started from the course source model on disk now. Sweeps
(`helpers.sweep`), their Dask workers (`helpers.cluster`) and the course's comparison (`helpers.course`) all run
through `run_one`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from .data import data_source, sha256_of
from .profiles import choose_profile, resolved_settings
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


def code_hash(notebook: Path) -> str | None:
    """Hash a notebook's code cells (not its prose), so that a run made by other code is made again."""
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None  # the runner names a missing or damaged notebook
    code = ["".join(cell.get("source", "")) for cell in cells
            if isinstance(cell, dict) and cell.get("cell_type") == "code"]
    return hashlib.sha256("\n\0".join(code).encode()).hexdigest()[:16]


def run_request(notebook: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Say what a run depends on: parameters, what the profile resolves them to, code, data source, any teacher.

    The source model it starts from is checked against its metrics.json instead (`finished`), since a first run may
    train that model itself.
    """
    try:
        profile = choose_profile(str(params.get("PROFILE", "auto")))
    except ValueError:  # the notebook itself refuses it, with the valid profiles
        profile = None
    request = {"notebook": notebook.stem, "params": params, "profile": profile, "data_source": data_source(),
               "code": code_hash(notebook),
               "resolved": resolved_settings(notebook.stem, profile, params) if profile else None}
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
                 "teacher": "teacher checkpoint", "code": "notebook code",
                 "resolved": "resolved setting (a profile value or a training recipe)"}


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




PLAN_FILE = "plan.json"  # beside a comparison's runs: the folders its current plan holds


def write_plan(root: Path, folders: list[Path]) -> Path:
    """Record which run folders under `root` the current plan holds, so that older ones are not evaluated with it."""
    return save_json(root / PLAN_FILE, {"runs": sorted(str(folder.relative_to(root)) for folder in folders)})


def run_key(record: dict[str, Any]) -> tuple:
    """Return what makes two runs one setting for the evaluation: framework, strategy, recipe, labels, seed and more."""
    config = record.get("config", {})
    return (record.get("framework"), config.get("notebook"), config.get("strategy"), config.get("recipe_name", "own"),
            config.get("weights"), config.get("model"), config.get("task"), config.get("labels_per_class"),
            config.get("validation", "oracle"), config.get("seed"))


def _left_out_because(run: dict[str, Any], checkpoint: str | None, profile: str) -> str | None:
    """Say why a run does not belong with the course's current runs (other profile, model or recipe), or None."""
    from .profiles import training_recipe

    config = run.get("config", {})
    if config.get("profile", profile) != profile:
        return f"profile {config.get('profile')!r}, not {profile!r}"
    if config.get("weights") not in ("course", "none", "self-supervised"):  # 10 pretrains its own, on the same data
        return f"weights {config.get('weights')!r}, not the course's source model"
    used = started_from(run)
    if config.get("weights") == "course" and used != checkpoint:
        return (f"source model {str(used)[:12]}, not the course's current one ({str(checkpoint)[:12]})"
                if checkpoint else "no course source model is saved for this profile to compare it with")
    if config.get("notebook") == "05_pytorch_finetuning":
        labels = config.get("labels_per_class")
        current = training_recipe(config.get("strategy", ""), config.get("recipe_name", "own"), profile, labels or None)
        if config.get("recipe") != current:
            return (f"trained with recipe {config.get('recipe')}, not the current table's {current}"
                    if config.get("recipe") else "made before runs recorded their training recipe")
    return None


def evaluation_runs(runs: list[dict[str, Any]], checkpoint: str | None, profile: str
                    ) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Keep the runs of one source checkpoint, profile and recipe table; name each other run and why it was left out.

    A run in a folder that holds a comparison plan (`write_plan`) but is not in it was superseded by a newer plan.
    Two kept runs of one setting (`run_key`) are refused: which one the evaluation read would be an accident.
    """
    kept, left_out = [], []
    for run in runs:
        folder = Path(run["folder"])
        plan = read_record(folder.parent.parent / PLAN_FILE) if (folder.parent.parent / PLAN_FILE).exists() else None
        planned = plan.get("runs") if isinstance(plan, dict) and isinstance(plan.get("runs"), list) else None
        reason = _left_out_because(run, checkpoint, profile)
        if reason is None and planned is not None and str(folder.relative_to(folder.parent.parent)) not in planned:
            reason = "not in the course comparison's current plan (made by an earlier plan)"
        if reason:
            left_out.append((folder, reason))
        else:
            kept.append(run)
    by_key: dict[tuple, list[Path]] = {}
    for run in kept:
        by_key.setdefault(run_key(run), []).append(Path(run["folder"]))
    twins = [folders for folders in by_key.values() if len(folders) > 1]
    if twins:
        raise ValueError("Two runs for one setting, so which one the evaluation reads would be an accident: "
                         + "; ".join(" and ".join(map(str, folders)) for folders in twins)
                         + ". Delete all but one of each, or point RUNS_DIR at one set of runs (for example "
                           "outputs/runs/comparison).")
    return kept, left_out
