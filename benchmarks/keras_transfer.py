"""Benchmark: Keras feature extraction and fine-tuning on the source-to-target split, beside the PyTorch rows.

Runs notebook 04 through papermill (TensorFlow backend, the course model ported from PyTorch, offline on a
local CIFAR-10 copy) for `linear_probe` (feature extraction) and `lp_ft` (feature extraction, then fine-tuning
of the whole base) at 50 and 500 labels per class under the honest few-label protocol (`VALIDATION="labelled"`:
no validation split, no early stopping); every LP-FT run also measures the BatchNorm pitfall. Runs
notebook 03 first like the PyTorch benchmark (seconds with a valid checkpoint) and reruns earlier runs made from
another checkpoint. Reads outputs/benchmarks/pytorch_transfer.json (`make bench-torch`, same checkpoint) and writes
outputs/benchmarks/keras_transfer.{json,md} with both frameworks side by side.

Every LP-FT run also records notebook 04's one-change variants (no flip at test time; BatchNorm trained while
fine-tuning; 05's head, a cross-validated probe), and each variant is paired with `make bench-torch`'s LP-FT run of
the same checkpoint, labels and seed on the same test images: Keras minus PyTorch per variant, mean over seeds, with
each seed's paired bootstrap half-width. That table says which difference between the recipes makes the gap.

    python -m benchmarks.keras_transfer [--seeds 3] [--labels 50 500] [--source PATH] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from helpers.metrics import bootstrap_difference
from helpers.paths import outputs_root
from helpers.reporting import markdown_table, read_record, write_benchmark
from helpers.sweep import read_metrics, run_sweep

from .common import SeedTable, data_name, drop_stale_runs, runs_root, use_offline_jpeg_copy
from .pytorch_transfer import pretrain, summarize


def main(argv: list[str] | None = None) -> int:
    """Run the Keras rows, put the PyTorch rows beside them, write the report; exit 1 if a run failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    parser.add_argument("--source", type=Path, help="local CIFAR-10 copy (default: the shared JPEG copy)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier runs first (after a new source model)")
    args = parser.parse_args(argv)
    use_offline_jpeg_copy(args.source)
    root = runs_root("keras_transfer", args.fresh)
    checkpoint_sha256 = pretrain(root, args.profile)["checkpoint_meta"]["sha256"]
    drop_stale_runs(root, checkpoint_sha256)
    common = {"PROFILE": [args.profile], "WEIGHTS": ["course"], "TASK": ["target"]}
    honest = {**common, "LABELS_PER_CLASS": args.labels, "VALIDATION": ["labelled"], "SEED": list(range(args.seeds))}
    results = run_sweep("04_keras_finetuning", {**honest, "STRATEGY": ["linear_probe"], "SHOW_BN_PITFALL": [False]},
                        root / "runs")
    results += run_sweep("04_keras_finetuning", {**honest, "STRATEGY": ["lp_ft"], "SHOW_BN_PITFALL": [True],
                                                 "PROBE_HEAD_VARIANT": [True], "CONTROL_ARMS": [True]}, root / "runs")
    records = [record for record in map(read_metrics, results) if record]
    keras_rows = [{**row, "framework": "keras"} for row in summarize(records)]
    torch_report = outputs_root() / "benchmarks" / "pytorch_transfer.json"
    torch_rows = []
    if torch_report.exists():
        torch_table = json.loads(torch_report.read_text())["rows"]
        torch_source = next((row for row in torch_table if row["labels_per_class"] == "source"), {})
        if torch_source.get("checkpoint_sha256") == checkpoint_sha256:
            torch_rows = [{**row, "framework": "pytorch"} for row in torch_table
                          if row["labels_per_class"] in args.labels and row["strategy"] in ("linear_probe", "lp_ft")
                          and row.get("validation") == "labelled"]
    gaps = []
    for row in keras_rows:
        match = next((t for t in torch_rows if (t["labels_per_class"], t["strategy"]) ==
                      (row["labels_per_class"], row["strategy"])), None)
        if match:
            row["pytorch_acc_mean"] = match["test_acc_mean"]
            row["gap_points"] = 100 * (row["test_acc_mean"] - match["test_acc_mean"])
            gaps.append(f"- {row['strategy']} at {row['labels_per_class']}/class: Keras {row['test_acc_mean']:.3f} vs "
                        f"PyTorch {match['test_acc_mean']:.3f} ({row['gap_points']:+.1f} points; target within 2)")
    pitfall_record = next((r for r in records if r["config"]["strategy"] == "lp_ft" and r["config"]["seed"] == 0
                           and r["config"]["labels_per_class"] == min(args.labels)), None)
    bn = (pitfall_record or {}).get("metrics", {}).get("bn_pitfall")
    comparison = "\n".join(gaps) or "- no PyTorch rows from this source checkpoint: run `make bench-torch` first"
    pitfall_text = (f"\n\nBatchNorm pitfall (lp_ft, {min(args.labels)}/class, seed 0): base in inference mode "
                    f"{bn['base_inference_mode']:.3f}, base in training mode {bn['base_training_mode']:.3f} (gap "
                    f"{bn['gap']:+.3f}, 95% paired bootstrap interval {bn['gap_ci'][0]:+.3f} to "
                    f"{bn['gap_ci'][1]:+.3f})."
                    if bn else "")
    notes = ("Keras 3 on TensorFlow, the course model ported from PyTorch (identical source weights), target task "
             "CIFAR-10 classes 5-9. Keras linear_probe = feature extraction (frozen base, Dense head trained by SGD); "
             "PyTorch linear_probe = logistic regression on cached features. lp_ft in both: head first, then the "
             f"whole base at a low learning rate.\n\nComparison with PyTorch:\n{comparison}{pitfall_text}")
    ablation = variant_gaps(results, torch_lp_ft_runs(checkpoint_sha256))
    if ablation:
        notes += ("\n\nKeras minus PyTorch LP-FT, one change at a time (paired on the same test images, per seed):\n\n"
                  + markdown_table(ablation, SeedTable.COLUMNS))
    failed = [r for r in results if r["status"].startswith("failed")]
    identity = {**records[0]["data"], "name": data_name(records[0]["data"])} if records else {}
    write_benchmark("keras_transfer", keras_rows + torch_rows,
                    ["framework", "labels_per_class", "strategy", "validation", "test_acc_mean", "test_acc_std",
                     "seeds",
                     "wall_s_mean", "pytorch_acc_mean", "gap_points"], identity, notes=notes)
    return 1 if failed else 0


VARIANTS = {"probs": "04's recipe", "probs_no_tta": "no flip at test time", "probs_bn_training": "BatchNorm trained",
            "probs_probe_head": "05's head (cross-validated probe)", "probs_control": "control: fresh data stream",
            "probs_combined": "BatchNorm trained and 05's head"}


def torch_lp_ft_runs(checkpoint_sha256: str) -> dict[tuple[int, int], Path]:
    """Find `make bench-torch`'s honest LP-FT run folders from this checkpoint, keyed by (labels per class, seed)."""
    found = {}
    for metrics_file in sorted((outputs_root() / "benchmarks" / "pytorch_transfer").rglob("metrics.json")):
        record = read_record(metrics_file) or {}  # a damaged record is named and skipped
        config = record.get("config", {})
        if (config.get("strategy"), config.get("validation")) == ("lp_ft", "labelled") \
                and record.get("weights", {}).get("sha256") == checkpoint_sha256:
            found[(config["labels_per_class"], config["seed"])] = metrics_file.parent
    return found


def variant_gaps(results: list[dict], torch_runs: dict[tuple[int, int], Path]) -> list[dict]:
    """Keras minus PyTorch accuracy for each one-change variant of Keras LP-FT, over seeds, per label count."""
    table = SeedTable()
    for result in results:
        record = read_metrics(result)
        config = (record or {}).get("config", {})
        torch_folder = torch_runs.get((config.get("labels_per_class"), config.get("seed")))
        if config.get("strategy") != "lp_ft" or torch_folder is None:
            continue
        keras_predictions = np.load(Path(result["folder"]) / "predictions.npz")
        torch_predictions = np.load(torch_folder / "predictions.npz")
        truth = torch_predictions["y_true"]
        if not np.array_equal(truth, keras_predictions["y_true"]):
            continue
        for name, label in VARIANTS.items():
            if name in keras_predictions:
                gap, low, high = bootstrap_difference(truth, keras_predictions[name].argmax(1),
                                                      torch_predictions["probs"].argmax(1), seed=config["seed"])
                table.add(f"{config['labels_per_class']} labels/class", label, gap, (high - low) / 2)
    return table.rows()


if __name__ == "__main__":
    sys.exit(main())
