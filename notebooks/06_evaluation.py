# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Evaluation: compare strategies and frameworks, honestly
#
# A single accuracy hides a lot. This notebook reads every run the fine-tuning notebooks (04 Keras, 05 PyTorch)
# and the sweeps wrote, and asks the questions a practitioner asks: which strategy wins, by how much *given
# the noise*, where the errors are, whether the confidence can be trusted, and how much labelled data transfer
# saves.
#
# **Learning objectives**
# - Report accuracy with a bootstrap confidence interval, and compare runs only beyond their noise.
# - Read a confusion matrix, per-class precision/recall/F1 and one-vs-rest ROC-AUC.
# - Measure calibration (expected calibration error, reliability diagram) and fix it with temperature
#   scaling fitted on the validation split.
# - Draw the data-efficiency curve from a sweep and read off what transfer saves.
#
# **Estimated time**: under a minute on a CPU for the analysis. If no runs exist yet, a quick `smoke` run of
# notebook 05 is made first (about a minute), and the notebook says so.

# %% tags=["parameters"]
PROFILE = "auto"  # smoke, cpu, full or auto
RUNS_DIR = None  # folder searched for runs; None searches the whole outputs folder
BOOTSTRAP_RESAMPLES = 2000
SEED = 0
OUTPUT_DIR = None  # None means outputs/06_evaluation

# %% [markdown]
# ## Setup

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from helpers import data, metrics, paths, plots, profiles, reporting, runtime, splits
from helpers.course import NOTEBOOKS_DIR
from helpers.reporting import markdown_table
from helpers.sweep import run_one

plots.setup_plots()
environment = runtime.environment_report()
runtime.seed_everything(SEED)
config = profiles.resolve_config("06_evaluation", PROFILE, bootstrap_resamples=BOOTSTRAP_RESAMPLES)
config.update(seed=SEED, runs_dir=RUNS_DIR)
if config["bootstrap_resamples"] < 100:
    raise ValueError(f"BOOTSTRAP_RESAMPLES must be at least 100, got {config['bootstrap_resamples']}")

# %% [markdown]
# ## Find the runs
# A run is a folder with a `metrics.json` written by notebook 04 or 05 and a `predictions.npz` beside it.

# %%
search_root = Path(RUNS_DIR) if RUNS_DIR else paths.outputs_root()
run_folder = reporting.run_dir("06_evaluation", OUTPUT_DIR)


def find_runs(root: Path) -> list[dict]:
    """Load every fine-tuning run under a folder, newest metrics first."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        record = json.loads(path.read_text())
        if record.get("framework") in ("pytorch", "keras") and (path.parent / "predictions.npz").exists():
            predictions = dict(np.load(path.parent / "predictions.npz"))
            runs.append({**record, "folder": path.parent, "predictions": predictions})
    return runs


runs = find_runs(search_root)
if not runs:
    print("No fine-tuning runs found: running a quick smoke-sized linear probe (notebook 05) so this notebook has "
          "something to evaluate. Run notebooks 04 and 05, or a sweep, for real results.")
    outcome = run_one(NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb", {"PROFILE": "smoke", "STRATEGY": "linear_probe"},
                      run_folder / "fallback_run")
    print(outcome["status"])
    runs = find_runs(run_folder / "fallback_run")
print(f"{len(runs)} runs found under {search_root}")

# %% [markdown]
# ## One table: every strategy and framework, with confidence intervals
# The interval is a percentile bootstrap over test images: resample the test set with replacement, recompute
# accuracy, take the middle 95%. Two runs whose intervals overlap heavily are not clearly different.

# %%
rows = []
for run in runs:
    cfg, pred = run["config"], run["predictions"]
    summary = metrics.classification_summary(pred["y_true"], pred["probs"], run["class_names"])
    accuracy, low, high = metrics.bootstrap_accuracy(pred["y_true"], pred["probs"].argmax(1),
                                                     resamples=config["bootstrap_resamples"], seed=SEED)
    rows.append({"framework": run["framework"], "strategy": cfg["strategy"], "weights": cfg["weights"],
                 "labels": cfg.get("labels_per_class") or "all", "seed": cfg["seed"], "test_acc": accuracy,
                 "ci_low": low, "ci_high": high, "macro_f1": summary["macro_f1"], "roc_auc": summary["roc_auc_ovr"],
                 "ece": metrics.expected_calibration_error(pred["y_true"], pred["probs"]),
                 "seconds": run["metrics"]["wall_seconds"], "data": run["data"]["dataset"]})
rows.sort(key=lambda r: (str(r["labels"]), r["framework"], r["strategy"], r["seed"]))
columns = ["framework", "strategy", "weights", "labels", "seed", "test_acc", "ci_low", "ci_high", "macro_f1",
           "roc_auc", "ece", "seconds", "data"]
print(markdown_table(rows, columns))

# %% [markdown]
# ## Learning curves
# Validation accuracy per epoch for each strategy at the largest label budget (one seed each).

# %%
budget = max(r["config"].get("labels_per_class") or 10**9 for r in runs)
fig, ax = plt.subplots(figsize=(7, 3.8))
for run in runs:
    first_seed = run["config"]["seed"] == runs[0]["config"]["seed"]
    if (run["config"].get("labels_per_class") or 10**9) == budget and first_seed:
        history = [h for h in run["metrics"]["history"] if "val_acc" in h]
        if history:
            ax.plot([h["epoch"] for h in history], [h["val_acc"] for h in history],
                    label=f"{run['framework']} {run['config']['strategy']}")
ax.set(xlabel="epoch", ylabel="validation accuracy", title="Learning curves")
if ax.lines:
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Where the errors are: the best run
# The confusion matrix counts (true, predicted) pairs; the largest off-diagonal cells are the class pairs the
# model mixes up. Per-class precision (how often a prediction of the class is right), recall (how often the
# class is found) and F1 say which classes suffer.

# %%
best = max(runs, key=lambda r: r["metrics"]["test_acc"])
pred, names = best["predictions"], best["class_names"]
matrix = metrics.confusion(pred["y_true"], pred["probs"].argmax(1), len(names))
print(f"best run: {best['framework']} {best['config']['strategy']} ({best['folder']}), "
      f"test accuracy {best['metrics']['test_acc']:.4f}")
fig, ax = plt.subplots(figsize=(5.5, 4.5))
image = ax.imshow(matrix, cmap="Blues")
ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
ax.set_yticks(range(len(names)), names)
for (i, j), count in np.ndenumerate(matrix):
    ax.text(j, i, count, ha="center", va="center", fontsize=8, color="white" if count > matrix.max() / 2 else "black")
ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
ax.grid(False)
fig.colorbar(image)
plt.show()
summary = metrics.classification_summary(pred["y_true"], pred["probs"], names)
print("most confused (true -> predicted, count):", metrics.most_confused(matrix, names, top=5))
for name, scores in summary["per_class"].items():
    print(f"  {name:12s} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}  f1 {scores['f1']:.3f}")
print(f"macro F1 {summary['macro_f1']:.3f}, weighted F1 {summary['weighted_f1']:.3f}, "
      f"one-vs-rest ROC-AUC {summary['roc_auc_ovr']:.3f}, top-2 accuracy {summary['top2_accuracy']:.3f}")

# %% [markdown]
# A grid of misclassified test images, with true and predicted labels: errors often make sense once seen.

# %%
cifar = data.load_dataset("auto" if best["data"]["dataset"] != "synthetic" else "synthetic",
                          best["data"].get("num_train", 5000) // 10, best["data"].get("num_test", 1000) // 10,
                          best["config"]["seed"])
images = splits.task_data(cifar, best["config"]["task"]).x_test
wrong = np.flatnonzero(pred["probs"].argmax(1) != pred["y_true"])[:16]
if len(images) == len(pred["y_true"]) and len(wrong):
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
    for ax, index in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(images[index], interpolation="nearest")
        ax.set_title(f"{names[pred['y_true'][index]]}\n→ {names[pred['probs'][index].argmax()]}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    plt.show()
else:
    print("The test images of this run are not available here (other data than the run used).")

# %% [markdown]
# ## Can the confidence be trusted? Calibration
# A model is calibrated when, of the predictions made with 80% confidence, 80% are right. The **expected
# calibration error** (ECE) is the average gap between confidence and accuracy over confidence bins, weighted
# by how many predictions fall in each. **Temperature scaling** (Guo et al., 2017) divides the logits by one
# number T fitted on the *validation* split; it changes confidence, never the predicted class.

# %%
log_probs = lambda p: np.log(np.clip(p, 1e-12, 1.0))
temperature = metrics.fit_temperature(pred["val_y_true"], log_probs(pred["val_probs"]))
scaled = metrics.softmax(log_probs(pred["probs"]), temperature)
ece_before = metrics.expected_calibration_error(pred["y_true"], pred["probs"])
ece_after = metrics.expected_calibration_error(pred["y_true"], scaled)
print(f"fitted temperature T = {temperature:.2f}; ECE {ece_before:.4f} before, {ece_after:.4f} after; "
      f"accuracy unchanged: {(scaled.argmax(1) == pred['probs'].argmax(1)).all()}")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
for ax, probs, title in ((axes[0], pred["probs"], f"before (ECE {ece_before:.3f})"),
                         (axes[1], scaled, f"after T={temperature:.2f} (ECE {ece_after:.3f})")):
    table = metrics.reliability(pred["y_true"], probs, bins=10)
    centers = (table["edges"][:-1] + table["edges"][1:]) / 2
    ax.bar(centers, np.where(table["count"] > 0, table["accuracy"], 0), width=0.09, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlabel="confidence", title=title)
axes[0].set_ylabel("accuracy")
axes[0].legend()
plt.show()

# %% [markdown]
# ## The data-efficiency curve
# Test accuracy against the number of labels per class, one line per framework and strategy, averaged over
# seeds (bars: one standard deviation). It comes from a sweep (`make bench-torch`, or `python -m helpers.sweep`).

# %%
curves: dict[tuple[str, str], dict[int, list[float]]] = {}
for row in rows:
    if row["labels"] != "all":
        curves.setdefault((row["framework"], row["strategy"]), {}).setdefault(row["labels"], []).append(row["test_acc"])
plotted = {key: points for key, points in curves.items() if len(points) >= 2}
if plotted:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (framework, strategy), points in sorted(plotted.items()):
        counts = sorted(points)
        ax.errorbar(counts, [np.mean(points[n]) for n in counts], yerr=[np.std(points[n]) for n in counts],
                    marker="o", capsize=3, label=f"{framework} {strategy}")
    ax.set(xscale="log", xlabel="labels per class", ylabel="test accuracy", title="Data efficiency")
    ax.legend(fontsize=8)
    plt.show()
else:
    print("No sweep over labels per class found; run `make bench-torch` or a sweep to draw this curve.")

# %% [markdown]
# ## Answers, from the numbers
# The questions a student asks, answered from the runs above (the text is computed, not written in advance).

# %%
def mean_accuracy(framework: str, strategy: str, labels: int) -> float | None:
    """Mean test accuracy over seeds for one cell of the sweep, or None."""
    values = curves.get((framework, strategy), {}).get(labels)
    return float(np.mean(values)) if values else None


answers = []
for labels in sorted({n for points in curves.values() for n in points}):
    cells = {key: np.mean(points[labels]) for key, points in curves.items() if labels in points}
    (framework, strategy), accuracy = max(cells.items(), key=lambda item: item[1])
    line = f"With {labels} labels per class the best is {framework} {strategy} at {accuracy:.3f}"
    scratch = mean_accuracy(framework, "scratch", labels)
    if scratch is not None:
        line += f", against {scratch:.3f} from scratch (+{accuracy - scratch:.3f})"
    answers.append(line + ".")
for (framework, strategy), points in curves.items():
    scratch_points = curves.get((framework, "scratch"), {})
    if strategy == "scratch" or not scratch_points:
        continue
    smallest = min(points)
    matched = [n for n in sorted(scratch_points) if np.mean(scratch_points[n]) >= np.mean(points[smallest])]
    if matched:
        answers.append(f"{framework} {strategy} with {smallest} labels per class matches scratch with {matched[0]}: "
                       f"a {matched[0] / smallest:.0f}x saving in labels.")
    else:
        answers.append(f"{framework} {strategy} with {smallest} labels per class beats scratch at every budget tried "
                       f"(up to {max(scratch_points)}).")
timing = {}
for row in rows:
    timing.setdefault((row["framework"], row["strategy"]), []).append(row["seconds"])
answers += [f"{framework} {strategy} takes {np.mean(seconds):.0f} s per run on average."
            for (framework, strategy), seconds in sorted(timing.items())]
print("\n".join(answers) if answers else "Not enough runs to answer; run a sweep.")

# %%
metrics_path = reporting.save_run(run_folder, config, {"runs_searched": str(search_root), "runs": len(runs)},
                                  {"table": rows, "best_run": str(best["folder"]), "temperature": temperature,
                                   "ece_before": ece_before, "ece_after": ece_after, "answers": answers})

# %% [markdown]
# ## Exercises
#
# 1. Two strategies differ by 0.4 points and their 95% intervals overlap by most of their width. What can
#    you conclude, and what would you run to decide?
# 2. Why is the temperature fitted on the validation split and not on the test split?
# 3. In the confusion matrix of the target task, which pair is most confused? Is that what you expected from
#    the images?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Nothing yet: the difference is within the noise of the test set. Run more seeds (the seed spread is a
#    second source of noise) or a paired test on the same test images.
# 2. Fitting on the test split would tune to the very data used to report the result, making the reported
#    calibration optimistic.
# 3. Usually dog and horse (four-legged animals on grass), then ship and truck much less; frog is rarely
#    confused. Check the printed pairs.
#
# </details>
#
# ## Summary
# - Report accuracy with an interval; compare strategies only beyond their noise (seeds and test set).
# - Confusion matrices and per-class scores show *which* classes fail; ROC-AUC ranks without a threshold.
# - Fine-tuned networks are often over-confident; temperature scaling on the validation split fixes much of it
#   without changing a single prediction.
# - The data-efficiency curve is the headline of transfer learning: how many labels it saves.
#
# ## References
# - Guo, Pleiss, Sun, Weinberger (2017). *On calibration of modern neural networks*. ICML.
# - Efron, Tibshirani (1993). *An introduction to the bootstrap*. Chapman & Hall.
