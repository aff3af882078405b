"""Run records and benchmark reports: JSON next to a markdown table, with configuration and versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .paths import atomic_write, atomic_write_text, outputs_root, shown
from .runtime import environment_report


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
    """Write predictions.npz beside a run's metrics.json, atomically, for the evaluation notebook."""
    return atomic_write(folder / "predictions.npz", lambda stream: np.savez(stream, **arrays))


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
