"""Run records and benchmark reports: JSON next to a markdown table, with configuration and versions."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .paths import atomic_write, atomic_write_text, outputs_root, shown
from .runtime import divergence_error, environment_report


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars and arrays and paths into plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot store {type(value).__name__} in JSON")


def save_json(path: Path, record: dict[str, Any]) -> Path:
    """Write a record as indented JSON, atomically (a reader never sees half a record), creating folders."""
    return atomic_write_text(path, json.dumps(record, indent=2, default=_jsonable) + "\n")


def read_record(path: Path) -> dict[str, Any] | None:
    """Read a JSON record; a damaged one is named and skipped (None), never taken for a finished run."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"skipped {path}: damaged ({type(error).__name__}); a run that was cut off. Run it again.")
        return None
    return record if isinstance(record, dict) else None


def save_predictions(folder: Path, **arrays: np.ndarray) -> Path:
    """Write predictions.npz beside a run's metrics.json, atomically; refuse non-finite values (a diverged run)."""
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise divergence_error(f"The predictions ({name}) are not all finite")
    return atomic_write(folder / "predictions.npz", lambda stream: np.savez(stream, **arrays))


NUMBER = (int, float)
# What the evaluation notebook reads from a run record, and the type each must have; "?" marks what a run may lack.
RUN_FIELDS = {"config.strategy": str, "config.weights": str, "config.seed": int, "config.task?": str,
              "config.labels_per_class?": (int, type(None)), "config.validation?": str, "metrics.test_acc": NUMBER,
              "metrics.wall_seconds": NUMBER, "metrics.num_train?": int, "metrics.history?": list,
              "metrics.block_change?": dict, "data.dataset": str, "data.task?": str, "data.num_train?": int,
              "data.num_test?": int}


def record_problem(record: dict[str, Any]) -> str | None:
    """Say which field of a run record the evaluation cannot use (missing, or of the wrong type), or None."""
    for field, kind in RUN_FIELDS.items():
        section, key = field.rstrip("?").split(".")
        value = record[section].get(key, ...) if isinstance(record.get(section), dict) else None
        if (value is not ... or not field.endswith("?")) and not isinstance(value, kind):
            return f"{section}['{key}'] is {'missing' if value in (None, ...) else type(value).__name__}"
    names = record.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        return "class_names is missing or not a list of names"
    return None


def predictions_problem(arrays: dict[str, np.ndarray], classes: int) -> str | None:
    """Say why saved predictions cannot be scored (missing, wrong type or shape, not finite, bad labels), or None."""
    for labels_key, probs_key in [("y_true", "probs")] + [("val_y_true", "val_probs")] * ("val_probs" in arrays):
        labels, probs = arrays.get(labels_key), arrays.get(probs_key)
        if labels is None or probs is None or labels.dtype.kind not in "iu" or probs.dtype.kind != "f":
            return f"predictions.npz lacks integer {labels_key} or floating-point {probs_key}"
        if labels.ndim != 1 or not len(labels) or probs.shape != (len(labels), classes):
            return f"{probs_key} has shape {probs.shape}, not ({len(labels)} labels, {classes} classes)"
        if not np.isfinite(probs).all() or labels.min() < 0 or labels.max() >= classes:
            return f"{probs_key} is not all finite, or {labels_key} is not all class numbers below {classes}"
    return None


def read_predictions(folder: Path, record: dict[str, Any]) -> tuple[dict[str, np.ndarray], str | None]:
    """Load a run's predictions.npz (never unpickling) and check it and its record; return them and any problem."""
    try:
        with np.load(folder / "predictions.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        return {}, f"predictions.npz is unreadable ({type(error).__name__}: {error})"
    return arrays, record_problem(record) or predictions_problem(arrays, len(record["class_names"]))


def run_dir(notebook: str, output_dir: str | None = None) -> Path:
    """Return the folder a notebook run writes to: OUTPUT_DIR when given, else outputs/<notebook>/."""
    folder = Path(output_dir) if output_dir else outputs_root() / notebook
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_run(folder: Path, config: dict[str, Any], data_identity: dict[str, Any], metrics: dict[str, Any],
             **extra: Any) -> Path:
    """Write metrics.json: full configuration, data identity, versions, device, then the metrics."""
    record = {"config": config, "data": data_identity, "environment": environment_report(verbose=False),
              "metrics": metrics, **extra}
    path = save_json(folder / "metrics.json", record)
    print(f"Run record written to {shown(path)}")
    return path


def weights_line(weights: dict[str, Any]) -> str:
    """Say in one line which weights a run uses: kind, model, and the file or checkpoint hash that pins them."""
    pin = weights.get("file") or (f"checkpoint sha256 {weights['sha256'][:12]}" if weights.get("sha256") else "")
    source = f", source-test accuracy {weights['source_test_acc']:.3f}" if weights.get("source_test_acc") else ""
    return f"weights: {weights['weights']} ({weights.get('model', '?')}{', ' + pin if pin else ''}{source})"


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format rows as a GitHub markdown table, numbers to three decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_benchmark(name: str, rows: list[dict[str, Any]], columns: list[str], data_identity: dict[str, Any],
                    notes: str = "") -> tuple[Path, Path]:
    """Write outputs/benchmarks/<name>.json and .md with the rows, data identity, device and versions."""
    folder = outputs_root() / "benchmarks"
    env = environment_report(verbose=False)
    json_path = save_json(folder / f"{name}.json", {"benchmark": name, "rows": rows, "data": data_identity,
                                                     "environment": env, "notes": notes})
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    device = env["device"]
    text = (f"# Benchmark: {name}\n\n{markdown_table(rows, columns)}\n\n"
            f"- Data: {data_identity}\n- Device: {device['torch_device'] if 'torch_device' in device else 'cpu'}, "
            f"{device['cpu_count']} CPU cores, CUDA {device['cuda'] or 'none'}\n"
            f"- Python {env['python']} on {env['platform']}\n- Packages: {packages}\n- Time: {env['time_utc']}\n"
            + (f"\n{notes}\n" if notes else ""))
    md_path = atomic_write_text(folder / f"{name}.md", text)
    print(text)
    return json_path, md_path
