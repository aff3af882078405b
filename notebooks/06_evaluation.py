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
# - Read a confusion matrix, per-class precision/recall/F1, and one-vs-rest ROC and precision-recall curves.
# - Compare two runs on the same test images with paired tests: McNemar's exact test and a permutation test.
# - Measure calibration (expected calibration error, reliability diagram) and fix it with temperature
#   scaling fitted on held-out predictions.
# - Draw the data-efficiency curve and read off what transfer saves: how many labels scratch needs to equal it.
# - Test Keras against PyTorch on the same test images: one strategy, two frameworks.
# - See how much an "oracle" validation split, which a few-label user does not have, inflates the results.
#
# **Estimated time**: about a minute on a CPU for the analysis. `make course` runs a small comparison before this
# notebook (PyTorch scratch, linear probe, full fine-tuning and LP-FT at two label counts, honest and oracle
# validation, scratch at a third, larger count, the Keras pair, and in the `cpu` profile the honest PyTorch runs on
# two more seeds; about 13 minutes on 2 CPU cores). If no runs exist at all, a quick `smoke` run of notebook 05 is
# made first (about a minute), and the notebook says so.

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
RUNS_DIR: Optional[str] = None  # folder searched for runs; None searches the whole outputs folder
BOOTSTRAP_RESAMPLES: int = 2000
SEED: int = 0
OUTPUT_DIR: Optional[str] = None  # None means outputs/06_evaluation

# %% [markdown]
# ## Setup

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from helpers import data, exercises, metrics, parameters, paths, plots, profiles, reporting, runner, runtime, splits
from helpers.reporting import markdown_table
from helpers.runs import evaluation_runs, run_one, source_model_hash

parameters.check_parameters(globals())  # unknown names, wrong types, out-of-range values: refused here

plots.setup_plots()
environment = runtime.environment_report()
runtime.seed_everything(SEED)
config = profiles.resolve_config("06_evaluation", PROFILE, bootstrap_resamples=BOOTSTRAP_RESAMPLES)
config.update(seed=SEED, runs_dir=RUNS_DIR)

# %% [markdown]
# ## Find the runs
# A run is a folder with a `metrics.json` written by notebook 04, 05, 08 or 09 and a `predictions.npz` beside it
# (08: the distilled or self-trained student; 09: the multi-task network's target head). Each
# record says how its choices were made: `labelled` (only the labelled images, the honest protocol) or `oracle`
# (a 2,500-image validation split). Records written before the protocol existed used the big split: they count
# as `oracle`. Each run is checked once, here, for what the cells below read: a damaged one (a cut-off
# `predictions.npz`, a missing field, probabilities that do not fit its labels) is named and skipped.
#
# Results of different source models or recipes must not be averaged or paired as if they were one experiment, so
# the evaluation keeps the runs of **one source checkpoint** (the course model on disk now), one profile and the
# current recipe table, and says what it leaves out and why: a benchmark's runs of an older checkpoint, a scratch
# run of an earlier recipe, a comparison run an earlier plan made. Two runs left for one setting are refused.

# %%
search_root = Path(RUNS_DIR) if RUNS_DIR else paths.outputs_root()
run_folder = reporting.run_dir("06_evaluation", OUTPUT_DIR)


def find_runs(root: Path) -> list[dict]:
    """Load every fine-tuning run under a folder, each checked once here: a damaged run is named and skipped."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        record = reporting.read_record(path)  # None for a damaged record, which is named
        has_predictions = (path.parent / "predictions.npz").exists()
        if not (record and record.get("framework") in ("pytorch", "keras") and has_predictions):
            continue  # another notebook's record, or a run without test predictions
        predictions, problem = reporting.read_predictions(path.parent, record)
        if problem:
            print(f"skipped {path.parent.relative_to(root)}: {problem}; run it again")
        else:
            runs.append({**record, "folder": path.parent, "predictions": predictions})
    return runs


checkpoint = source_model_hash(config["profile"])
runs, left_out = evaluation_runs(find_runs(search_root), checkpoint, config["profile"])
reasons: dict[str, list[Path]] = {}
for folder, reason in left_out:
    reasons.setdefault(reason, []).append(folder)
for reason, folders in reasons.items():
    examples = ", ".join(paths.shown(folder) for folder in folders[:2]) + (", ..." if len(folders) > 2 else "")
    print(f"left out {len(folders)} run{'s' * (len(folders) > 1)} ({reason}): {examples}")
if not runs:
    print("No fine-tuning runs found: running a quick smoke-sized linear probe (notebook 05) so this notebook has "
          "something to evaluate. Run notebooks 04 and 05, or a sweep, for real results.")
    outcome = run_one(runner.NOTEBOOKS_DIR / "05_pytorch_finetuning.ipynb",
                      {"PROFILE": "smoke", "STRATEGY": "linear_probe"}, run_folder / "fallback_run")
    print(outcome["status"])
    runs = find_runs(run_folder / "fallback_run")
for run in runs:  # a strategy trained with scratch's recipe (RECIPE='scratch') is an arm of its own in every table
    if run["config"].get("recipe_name") == "scratch" and run["config"]["strategy"] != "scratch":
        run["config"]["strategy"] += "_scratch_recipe"
print(f"{len(runs)} runs evaluated from {paths.shown(search_root)}, source model "
      f"{checkpoint[:12] if checkpoint else 'none saved'}")

# %% [markdown]
# ## One table: every strategy and framework, with confidence intervals
# The interval is a percentile bootstrap over test images: resample the test set with replacement, recompute
# accuracy, take the middle 95%. Two runs whose intervals overlap heavily are not clearly different.
# `confidence` is the mean top probability and `ece` the calibration error (both read in the calibration
# section); `seconds` is each run's wall time.

# %%
ECE_BINS = 15  # equal-width confidence bins, for every ECE below and the reliability diagram alike
rows = []
for run in runs:
    cfg, pred = run["config"], run["predictions"]
    summary = metrics.classification_summary(pred["y_true"], pred["probs"], run["class_names"])
    accuracy, low, high = metrics.bootstrap_accuracy(pred["y_true"], pred["probs"].argmax(1),
                                                     resamples=config["bootstrap_resamples"], seed=SEED)
    labels = cfg.get("labels_per_class")  # None: every label; 0: zero-shot (notebook 11)
    rows.append({"framework": run["framework"], "strategy": cfg["strategy"], "weights": cfg["weights"],
                 "labels": "all" if labels is None else labels, "validation": cfg.get("validation", "oracle"),
                 "labelled": run["metrics"].get("num_labelled", "-"), "seed": cfg["seed"], "test_acc": accuracy,
                 "ci_low": low, "ci_high": high, "macro_f1": summary["macro_f1"], "roc_auc": summary["roc_auc_ovr"],
                 "confidence": float(pred["probs"].max(1).mean()),
                 "ece": metrics.expected_calibration_error(pred["y_true"], pred["probs"], ECE_BINS),
                 "seconds": round(run["metrics"]["wall_seconds"]), "data": run["data"]["dataset"]})
rows.sort(key=lambda r: (r["labels"] if r["labels"] != "all" else 10**9, r["framework"], r["strategy"],
                         r["validation"], r["seed"]))
columns = ["framework", "strategy", "weights", "labels", "validation", "labelled", "seed", "test_acc", "ci_low",
           "ci_high", "macro_f1", "roc_auc", "confidence", "ece", "seconds", "data"]
print(markdown_table(rows, columns))

# %% [markdown]
# ### The same run with another seed
# The interval above is the noise of the *test set*: which 5,000 images we happened to test on. A second kind of
# noise is the *seed*: which labelled images were drawn, the initial head, the order of batches. It is measured only
# by running again. Where a setting ran on several seeds, the table below gives their mean, standard deviation and
# range beside the mean test-set half-width; a difference between two strategies smaller than their seed spread is
# not a finding about the strategies.

# %%
by_seed: dict[tuple, list[dict]] = {}
for row in rows:
    by_seed.setdefault((row["framework"], row["strategy"], row["labels"], row["validation"]), []).append(row)
seed_rows = [{"framework": framework, "strategy": strategy, "labels": labels, "validation": validation,
              "seeds": len(group), "mean": np.mean([r["test_acc"] for r in group]),
              "std": np.std([r["test_acc"] for r in group], ddof=1),
              "min": min(r["test_acc"] for r in group), "max": max(r["test_acc"] for r in group),
              "test_half_width": np.mean([(r["ci_high"] - r["ci_low"]) / 2 for r in group])}
             for (framework, strategy, labels, validation), group in by_seed.items()
             if len({r["seed"] for r in group}) >= 2]
if seed_rows:
    print(markdown_table(seed_rows, ["framework", "strategy", "labels", "validation", "seeds", "mean", "std", "min",
                                     "max", "test_half_width"]))
    ranges = [row["max"] - row["min"] for row in seed_rows]
    widths = [row["test_half_width"] for row in seed_rows]
    print(f"Across seeds the key rows moved by {min(ranges) * 100:.1f} to {max(ranges) * 100:.1f} points (max - min), "
          f"against test-set half-widths of {min(widths) * 100:.1f} to {max(widths) * 100:.1f} points: "
          + ("a rerun can move a number by more than the test set's interval suggests."
             if max(ranges) > max(widths) else "here the seed noise stays within the test-set noise."))
else:
    print("Every setting ran on one seed: the seed noise is unmeasured here (the `cpu` profile's `make course` "
          "repeats the key rows on three seeds).")

# %% [markdown]
# ## Learning curves
# Validation accuracy per epoch, for the runs that have a validation split (oracle runs, or runs with every
# label), at the largest label budget among them (one seed each). Honest few-label runs have no validation
# split, so they draw no curve: their recipe is fixed in advance.

# %%
curve_runs = [run for run in runs if any("val_acc" in h for h in run["metrics"].get("history", []))]  # 08, 09: none
if curve_runs:
    budget = max(run["config"].get("labels_per_class") or 10**9 for run in curve_runs)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for run in curve_runs:
        if (run["config"].get("labels_per_class") or 10**9) == budget and run["config"]["seed"] == SEED:
            history = [h for h in run["metrics"]["history"] if "val_acc" in h]
            ax.plot([h["epoch"] for h in history], [h["val_acc"] for h in history],
                    label=f"{run['framework']} {run['config']['strategy']}")
    ax.set(xlabel="epoch", ylabel="validation accuracy",
           title=f"Learning curves, {budget if budget < 10**9 else 'all'} labels per class")
    if ax.lines:
        ax.legend(fontsize=8)
    plt.show()
else:
    print("No run with a validation split: no learning curves to draw.")

# %% [markdown]
# ## Where the errors are: one run up close
# We look closely at one run, picked by a rule that does not look at the test set: a PyTorch LP-FT run with held-out
# predictions of its own, so that the calibration section can calibrate this very model (the comparison's
# cross-fitted run), honest before oracle, then the one that trained on the most labelled images. Picking the run
# with the best test accuracy would use the test set to choose. The confusion matrix counts (true, predicted)
# pairs; the largest off-diagonal cells are the class pairs the model mixes up. Per-class precision (how often a
# prediction of the class is right), recall (how often the class is found) and F1 say which classes suffer.

# %%
featured = max(runs, key=lambda r: (r["framework"] == "pytorch" and r["config"]["strategy"] == "lp_ft",
                                    "val_probs" in r["predictions"], r["config"].get("validation") == "labelled",
                                    r["metrics"].get("num_train", 0)))
pred, names = featured["predictions"], featured["class_names"]
matrix = metrics.confusion(pred["y_true"], pred["probs"].argmax(1), len(names))
featured_labels = featured["config"].get("labels_per_class") or "all"
print(f"run: {featured['framework']} {featured['config']['strategy']}, {featured_labels} labels per class, "
      f"test accuracy {featured['metrics']['test_acc']:.4f}")
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
# ### ROC and precision-recall curves
# Both curves sweep the decision threshold instead of taking the arg-max. For one class against the rest:
# - the **ROC curve** plots the true-positive rate (recall) against the false-positive rate; its area, the
#   **AUC**, is the probability that a random image of the class scores higher than a random image of another
#   class (0.5 is chance, 1 is a perfect ranking);
# - the **precision-recall curve** plots precision against recall; its summary, the **average precision**, is
#   the mean precision over the recall steps. With one class against four others, negatives outnumber
#   positives 4 to 1, and precision shows the false alarms that the ROC's false-positive rate dilutes.

# %%
curves = metrics.one_vs_rest_curves(pred["y_true"], pred["probs"])
fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4))
for name, curve in zip(names, curves, strict=True):
    roc_ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {curve['auc']:.3f})")
    pr_ax.plot(curve["recall"], curve["precision"], label=f"{name} (AP {curve['average_precision']:.3f})")
roc_ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC, one class vs rest")
pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, one class vs rest")
roc_ax.legend(fontsize=8)
pr_ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Two runs on the same test images: a paired test
# Two intervals that overlap do not mean two runs are equal, and separate intervals ignore that both runs
# answered the *same* images. A **paired** comparison looks only at the images on which the runs disagree.
# **McNemar's test** counts the images only run A got right (b) and only run B got right (c); if the runs are
# equally accurate, each such image is a fair coin, so the exact p-value is a two-sided binomial test of b
# heads in b + c tosses. A **permutation test** asks the same question by swapping the two runs' answers on
# randomly chosen images and seeing how often the accuracy gap is as large as the one observed. We compare LP-FT
# with full fine-tuning, two honest PyTorch runs that differ only in strategy (same labels, seed and test
# images), at the largest label count where both exist.

# %%
def paired_test(run_a: dict, run_b: dict) -> dict:
    """Compare two runs on the same test images: the gap with its paired bootstrap interval, McNemar, permutation."""
    truth = run_a["predictions"]["y_true"]
    preds_a, preds_b = run_a["predictions"]["probs"].argmax(1), run_b["predictions"]["probs"].argmax(1)
    gap, low, high = metrics.bootstrap_difference(truth, preds_a, preds_b, resamples=config["bootstrap_resamples"],
                                                  seed=SEED)
    return {"accuracy_a": float((preds_a == truth).mean()), "accuracy_b": float((preds_b == truth).mean()),
            "gap": gap, "interval": [low, high], **metrics.mcnemar(truth, preds_a, preds_b),
            "permutation_p": metrics.paired_permutation_p(truth, preds_a, preds_b, seed=SEED)}


def honest_pytorch(strategy: str) -> dict:
    """The honest PyTorch runs of one strategy, keyed by (labels per class, seed)."""
    return {(run["config"].get("labels_per_class"), run["config"].get("seed")): run for run in runs
            if run["framework"] == "pytorch" and run["config"]["strategy"] == strategy
            and run["config"].get("validation") == "labelled"}


lp_ft_runs, full_runs = honest_pytorch("lp_ft"), honest_pytorch("finetune_full")
common = [key for key in lp_ft_runs if key in full_runs
          and np.array_equal(lp_ft_runs[key]["predictions"]["y_true"], full_runs[key]["predictions"]["y_true"])]
pair_key = max(common, default=None, key=lambda key: (key[0] or 10**9, -(key[1] or 0)))  # the most labels
paired = None
if pair_key is None:
    print("No LP-FT and full fine-tuning runs with the same labels, seed and test images: no paired test.")
else:
    paired = {"a": "lp_ft", "b": "finetune_full", "labels_per_class": pair_key[0], "seed": pair_key[1],
              **paired_test(lp_ft_runs[pair_key], full_runs[pair_key])}
    gap, (low, high) = paired["gap"], paired["interval"]
    print(f"A = LP-FT, B = full fine-tuning (PyTorch, {pair_key[0] or 'all'} labels per class, seed {pair_key[1]}, "
          f"{len(lp_ft_runs[pair_key]['predictions']['y_true'])} test images)\n"
          f"accuracy A - B = {gap:+.4f}, paired 95% bootstrap interval [{low:+.4f}, {high:+.4f}]\n"
          f"McNemar: right by A only {paired['only_a']}, by B only {paired['only_b']}, exact p = "
          f"{paired['p_value']:.3g}; permutation test p = {paired['permutation_p']:.3g}")

# %% [markdown]
# Read the p-values against the gap: a small p says the gap is unlikely to be test-set noise, not that it is
# large. The three numbers answer one question (is A's accuracy different from B's on these images?) from
# different angles, so they usually agree; they say nothing about the *seed* noise, which only more runs
# measure (the seed table above, the data-efficiency curve's bars, and the per-seed gaps below when the comparison
# ran several seeds).

# %%
if paired is not None:  # the reading, worded by the numbers above
    gap, (low, high) = paired["gap"], paired["interval"]
    lead = f"beat full fine-tuning by {gap * 100:.1f} points" if gap > 0 else (
        f"trailed full fine-tuning by {-gap * 100:.1f} points" if gap < 0 else "tied with full fine-tuning")
    noise = metrics.noise_verdict(low, high)
    print(f"LP-FT {lead} ({paired['labels_per_class'] or 'all'} labels per class, seed {paired['seed']}): it alone "
          f"was right on {paired['only_a']} images, full fine-tuning alone on {paired['only_b']}; McNemar's exact "
          f"p = {paired['p_value']:.2g}, permutation p = {paired['permutation_p']:.2g}; the paired interval "
          f"({low * 100:+.1f} to {high * 100:+.1f} points) {noise}, for this seed.")
    accuracy = lambda run: (run["predictions"]["probs"].argmax(1) == run["predictions"]["y_true"]).mean()  # noqa: E731
    seed_gaps = [accuracy(lp_ft_runs[key]) - accuracy(full_runs[key]) for key in sorted(common, key=str)
                 if key[0] == paired["labels_per_class"]]  # the gaps only: no test per seed is needed to list them
    if len(seed_gaps) >= 2:  # the seed noise, which the test above cannot see
        print(f"Over {len(seed_gaps)} seeds at this label count, LP-FT minus full fine-tuning: "
              f"{', '.join(f'{gap * 100:+.1f}' for gap in seed_gaps)} points (mean {np.mean(seed_gaps) * 100:+.1f}); "
              f"LP-FT ahead on {sum(gap > 0 for gap in seed_gaps)} of {len(seed_gaps)}.")

# %% [markdown]
# ### Does scratch's recipe help transfer too?
# Scratch chose its recipe (augmentation, weight decay, steps) among 8 candidates on a proxy task; LP-FT keeps one
# recipe fixed in advance. So the gap between them mixes what the source model knows with what the better recipe
# buys. The arm *LP-FT with scratch's recipe* (notebook 05 with `RECIPE = "scratch"`) separates the two: the same
# labelled images, seed and test images as LP-FT, only the recipe changed. Per seed it is a paired difference; across
# seeds the interval is a t-interval over the seeds' differences, which covers the seed noise (labelled images drawn,
# initialisation, batch order) on this test set.

# %%
run_accuracy = lambda run: float((run["predictions"]["probs"].argmax(1) == run["predictions"]["y_true"]).mean())  # noqa: E731
recipe_arm = honest_pytorch("lp_ft_scratch_recipe")
recipe_gaps: dict[int, list[float]] = {}
for (labels, seed), arm_run in sorted(recipe_arm.items(), key=str):
    if (labels, seed) in lp_ft_runs and np.array_equal(arm_run["predictions"]["y_true"],
                                                        lp_ft_runs[(labels, seed)]["predictions"]["y_true"]):
        recipe_gaps.setdefault(labels, []).append(run_accuracy(arm_run) - run_accuracy(lp_ft_runs[(labels, seed)]))
for labels, gaps in sorted(recipe_gaps.items(), key=str):
    line = (f"{labels} labels per class: LP-FT with scratch's recipe minus LP-FT, per seed "
            f"{', '.join(f'{gap * 100:+.1f}' for gap in gaps)} points")
    if len(gaps) >= 2:
        mean, low, high = metrics.seed_interval(gaps)
        line += (f"; mean {mean * 100:+.1f}, 95% interval across seeds {low * 100:+.1f} to {high * 100:+.1f}: "
                 + ("scratch's recipe helped LP-FT beyond the seed noise." if low > 0 else
                    "scratch's recipe hurt LP-FT beyond the seed noise." if high < 0 else
                    "no difference beyond the seed noise."))
    print(line)
if not recipe_gaps:
    print("No LP-FT run with scratch's recipe beside an LP-FT run of the same labels and seed: `make course` runs it.")

# %% [markdown]
# The misclassified test images with the highest loss, −log of the probability given to the true class, across
# all classes: the confident mistakes. Errors often make sense once seen.

# %%
cifar = data.load_dataset("auto" if featured["data"]["dataset"] != "synthetic" else "synthetic",
                          featured["data"].get("num_train", 5000) // 10,
                          featured["data"].get("num_test", 1000) // 10, featured["config"]["seed"])
task = featured["config"].get("task") or featured["data"].get("task", "target")  # 08 and 09 record no config task
images = splits.task_data(cifar, task).x_test
wrong = np.flatnonzero(pred["probs"].argmax(1) != pred["y_true"])
losses = -np.log(np.clip(pred["probs"][np.arange(len(pred["y_true"])), pred["y_true"]], 1e-12, 1.0))
wrong = wrong[np.argsort(-losses[wrong], kind="stable")][:16]  # the 16 largest losses, largest first
if len(images) == len(pred["y_true"]) and len(wrong):
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
    for ax, index in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(images[index], interpolation="nearest")
        ax.set_title(f"{names[pred['y_true'][index]]}\n→ {names[pred['probs'][index].argmax()]} "
                     f"(loss {losses[index]:.1f})", fontsize=8)
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
# number T fitted on *held-out* predictions; it changes confidence, never the predicted class. T > 1 means the
# model was over-confident (its logits get softened), T < 1 under-confident. Networks trained with plain
# cross-entropy are often over-confident (Guo et al.). The course's fine-tuned networks train with label
# smoothing (Müller et al., 2019) and average each prediction over a horizontal flip at test time, and both
# lower the confidence; a linear probe is a logistic regression on frozen features and has neither, and a
# strong L2 penalty shrinks its logits, which flattens its probabilities. Which way a run leans is read from its
# numbers: mean confidence above accuracy is over-confidence, below it under-confidence.
#
# Held-out predictions must not be the test set. Honest few-label runs have no validation split, but they can
# make held-out predictions of their own labelled images: the linear probe's out-of-fold cross-validation
# predictions, or a fine-tuned run's **cross-fitted** ones (notebook 05's `CROSS_FIT`: the same recipe retrained
# once per fold, each fold predicted by the model that did not train on it; the course's comparison turns it on
# for the run above). We calibrate the run above on them when it has them, else the run with the most held-out
# predictions.

# %%
log_probs = lambda p: np.log(np.clip(p, 1e-12, 1.0))
calibrated = featured if "val_probs" in featured["predictions"] else max(
    (run for run in runs if "val_probs" in run["predictions"]), default=None,
    key=lambda run: len(run["predictions"]["val_y_true"]))
temperature = ece_before = ece_after = None
if calibrated is None:
    print("No run has held-out predictions (oracle validation or a linear probe): calibration skipped.")
else:
    cal = calibrated["predictions"]
    temperature = metrics.fit_temperature(cal["val_y_true"], log_probs(cal["val_probs"]))
    scaled = metrics.softmax(log_probs(cal["probs"]), temperature)
    ece_before = metrics.expected_calibration_error(cal["y_true"], cal["probs"], ECE_BINS)
    ece_after = metrics.expected_calibration_error(cal["y_true"], scaled, ECE_BINS)
    verdict = ("close to calibrated already (T near 1)" if abs(temperature - 1) < 0.05 else
               "over-confident (T > 1 softens it)" if temperature > 1 else "under-confident (T < 1 sharpens it)")
    print(f"{calibrated['framework']} {calibrated['config']['strategy']}, "
          f"{calibrated['config'].get('labels_per_class') or 'all'} labels per class "
          f"({calibrated['config'].get('validation', 'oracle')} validation): T fitted on "
          f"{len(cal['val_y_true'])} held-out predictions"
          + (f" (cross-fitted, {calibrated['config']['cross_fit']} folds)" if calibrated["config"].get("cross_fit")
             else "") + f" = {temperature:.2f}, so the model was {verdict}; "
          f"test ECE {ece_before:.4f} before, {ece_after:.4f} after ({ECE_BINS} bins); mean confidence "
          f"{cal['probs'].max(1).mean():.3f} before, {scaled.max(1).mean():.3f} after, against test accuracy "
          f"{(cal['probs'].argmax(1) == cal['y_true']).mean():.3f}; predictions unchanged: "
          f"{(scaled.argmax(1) == cal['probs'].argmax(1)).all()}")
    if calibrated["config"].get("cross_fit"):
        folds = calibrated["config"]["cross_fit"]
        print(f"T comes from {folds} fold models, each trained on {folds - 1}/{folds} of the labelled images, and is "
              f"applied to the final model, trained on all of them: the folds' held-out accuracy "
              f"{(cal['val_probs'].argmax(1) == cal['val_y_true']).mean():.3f} against the final model's test "
              f"accuracy {(cal['probs'].argmax(1) == cal['y_true']).mean():.3f}. A final model that is more accurate "
              "is usually also more confident, so T fitted on weaker folds is an approximation for it.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, probs, title in ((axes[0], cal["probs"], f"before (ECE {ece_before:.3f})"),
                             (axes[1], scaled, f"after T={temperature:.2f} (ECE {ece_after:.3f})")):
        table = metrics.reliability(cal["y_true"], probs, bins=ECE_BINS)  # the bins the ECE in the title uses
        centers = (table["edges"][:-1] + table["edges"][1:]) / 2
        ax.bar(centers, np.where(table["count"] > 0, table["accuracy"], 0), width=0.9 / ECE_BINS, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax.set(xlabel="confidence", title=title)
    axes[0].set_ylabel("accuracy")
    axes[0].legend()
    plt.show()

# %% [markdown]
# Every run in the first table, read the same way: its mean confidence against its test accuracy, per framework
# and strategy. The honest linear probe with the fewest labels is printed on its own, with its ECE: there the
# cross-validated L2 penalty has the least data to go on.

# %%
leaning: dict[str, list[int]] = {}
for row in rows:  # [over-confident, under-confident] counts per framework and strategy
    counts = leaning.setdefault(f"{row['framework']} {row['strategy']}", [0, 0])
    counts[0 if row["confidence"] > row["test_acc"] else 1] += 1
print("mean confidence above accuracy (over-confident) / below it (under-confident), runs per strategy:\n  "
      + "; ".join(f"{name} {over} / {under}" for name, (over, under) in sorted(leaning.items())))
probes = [row for row in rows if row["framework"] == "pytorch" and row["strategy"] == "linear_probe"
          and row["validation"] == "labelled" and row["labels"] != "all"]
probe = min(probes, key=lambda row: row["labels"], default=None)
if probe is not None:
    lean = "over-confident" if probe["confidence"] > probe["test_acc"] else "under-confident"
    print(f"honest linear probe, {probe['labels']} labels per class (seed {probe['seed']}): ECE {probe['ece']:.3f}, "
          f"mean confidence {probe['confidence']:.3f} against accuracy {probe['test_acc']:.3f}: {lean}")

# %% [markdown]
# ## The data-efficiency curve
# Test accuracy against the number of labels per class, one line per framework and strategy, honest runs only
# (`labelled`), averaged over seeds (bars: one standard deviation across seeds, ddof = 1 as in the seed table; a
# hollow marker is a point from a single seed, with no bar). It comes from the comparison `make course` runs, and
# from any sweep (`make bench-torch`, `python -m helpers.sweep`).

# %%
curves: dict[tuple[str, str], dict[int, list[float]]] = {}
for row in rows:
    if row["labels"] != "all" and row["validation"] == "labelled":
        curves.setdefault((row["framework"], row["strategy"]), {}).setdefault(row["labels"], []).append(row["test_acc"])
plotted = {key: points for key, points in curves.items() if len(points) >= 2}
if plotted:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (framework, strategy), points in sorted(plotted.items()):
        counts = sorted(points)
        line = ax.errorbar(counts, [np.mean(points[n]) for n in counts], capsize=3, label=f"{framework} {strategy}",
                           yerr=[np.std(points[n], ddof=1) if len(points[n]) > 1 else 0 for n in counts])
        single = [n for n in counts if len(points[n]) == 1]
        ax.plot(single, [points[n][0] for n in single], "o", mfc="white", color=line[0].get_color())
        ax.plot([n for n in counts if n not in single], [np.mean(points[n]) for n in counts if n not in single], "o",
                color=line[0].get_color())
    ax.set(xscale="log", xlabel="labels per class", ylabel="test accuracy", title="Data efficiency")
    ax.legend(fontsize=8)
    plt.show()
    single = [f"{framework} {strategy} (at {next(iter(points))})" for (framework, strategy), points in
              sorted(curves.items()) if len(points) < 2]
    if single:
        print(f"Not drawn, one label count each: {', '.join(single)}.")
else:
    print("No honest runs at two or more label counts: run `make course` or a sweep to draw this curve.")

# %% [markdown]
# ### What transfer saves, in labels
# The curve answers the practical question: how many labelled images per class would training from scratch need to
# do as well as transfer does with few? Scratch's measured points are joined linearly in log(labels), the scale of
# the plot, after taking their running maximum (more labels are never allowed to hurt), and the transfer run's
# accuracy is read off that line. Per seed (the table), the interval comes from the same paired bootstrap as above:
# each resample draws test images once and recomputes every run's accuracy on them, so it carries the test-set noise
# of both the scratch curve and the transfer run, but not the seed's. The headline reading, for the strategy this
# notebook features (LP-FT, fixed before any run), averages the seeds and resamples at two levels, seeds and then test
# images, so its interval covers both. Only scratch runs with the transfer run's seed and test images take part, a
# transfer run is read only where scratch tried more labels than it had, and a label count beyond the largest one
# scratch tried is reported as "more than" it, never extrapolated.

# %%
def reached(count: float) -> float | None:
    """A label count for the record: None when the scratch curve never reached it (JSON has no infinity)."""
    return None if np.isinf(count) else count


def labels_beyond(count: float | None, row: dict) -> str:
    """A label count for print: rounded, or beyond the scratch counts tried (the curve is not extrapolated)."""
    if count is None:
        return f"more than {row['scratch_tried']}"
    return f"{row['scratch_fewest']} or fewer" if count <= row["scratch_fewest"] else f"{count:.0f}"


scratch_runs = honest_pytorch("scratch")
savings = []
for strategy in sorted({run["config"]["strategy"] for run in runs if run["framework"] == "pytorch"} - {"scratch"}):
    by_labels = sorted(honest_pytorch(strategy).items(), key=lambda item: (item[0][0] or 0, item[0][1] or 0))
    for (labels, seed), run in by_labels:
        curve = {n: r for (n, s), r in scratch_runs.items() if s == seed and n
                 and np.array_equal(r["predictions"]["y_true"], run["predictions"]["y_true"])}
        if len(curve) < 2 or not labels or max(curve) <= labels:  # scratch must have tried more labels than this run
            continue
        truth = run["predictions"]["y_true"]
        needed, low, high = metrics.labels_to_match(truth, {n: r["predictions"]["probs"].argmax(1)
                                                            for n, r in curve.items()},
                                                    run["predictions"]["probs"].argmax(1),
                                                    resamples=config["bootstrap_resamples"], seed=SEED)
        savings.append({"strategy": strategy, "labels": labels, "seed": seed,
                        "test_acc": run["metrics"]["test_acc"], "scratch_labels": reached(needed),
                        "ci_low": reached(low), "ci_high": reached(high), "scratch_fewest": min(curve),
                        "scratch_tried": max(curve),
                        "saving": reached(needed / labels)})
if savings:
    shown = [{**row, **{name: labels_beyond(row[name], row) for name in
                        ("scratch_labels", "ci_low", "ci_high")},
              "saving": "" if row["saving"] is None else ("at most " if row["scratch_labels"] <= row["scratch_fewest"]
                                                            else "") + f"{row['saving']:.1f}x"} for row in savings]
    print(markdown_table(shown, ["strategy", "labels", "seed", "test_acc", "scratch_labels", "ci_low", "ci_high",
                                 "saving"]))
    headline = [row for row in savings if row["strategy"] == "lp_ft" and row["labels"] < row["scratch_tried"]]
    if headline:  # the featured strategy at its largest label count below scratch's, never the best-scoring one
        featured_labels = max(row["labels"] for row in headline)
        seed_rows_read = [row for row in headline if row["labels"] == featured_labels]
        lp_ft_by_seed = honest_pytorch("lp_ft")
        truth = lp_ft_by_seed[(featured_labels, seed_rows_read[0]["seed"])]["predictions"]["y_true"]
        scratch_by_seed = {row["seed"]: {n: r["predictions"]["probs"].argmax(1) for (n, s), r in scratch_runs.items()
                                         if s == row["seed"] and n} for row in seed_rows_read}
        needed, low, high = metrics.labels_to_match_over_seeds(
            truth, scratch_by_seed, {row["seed"]: lp_ft_by_seed[(featured_labels, row["seed"])]["predictions"][
                "probs"].argmax(1) for row in seed_rows_read}, resamples=config["bootstrap_resamples"], seed=SEED)
        tried = sorted(set.intersection(*(set(curve) for curve in scratch_by_seed.values())))
        bounds = {"scratch_fewest": tried[0], "scratch_tried": tried[-1]}
        each = ", ".join(f"seed {row['seed']}: {labels_beyond(row['scratch_labels'], row)}" for row in seed_rows_read)
        print(f"LP-FT with {featured_labels} labels per class (the featured strategy, fixed before the runs) equals "
              f"scratch with {labels_beyond(reached(needed), bounds)} labels per class, averaged over "
              f"{len(seed_rows_read)} seed(s) ({each}); 95% interval over seeds and test images "
              f"{labels_beyond(reached(low), bounds)} to {labels_beyond(reached(high), bounds)}"
              + (f": transfer saves about {needed / featured_labels:.1f}x the labels." if np.isfinite(needed) else
                 ".") + (" With one seed the interval covers the test images only." if len(seed_rows_read) < 2
                         else ""))
else:
    print("No honest scratch runs at two or more label counts beside a transfer run: `make course` runs them.")

# %% [markdown]
# ## How much does an oracle validation split inflate few-label results?
# The same strategy, labels and seed, once with choices made on the labelled images only and once on the
# 2,500-image validation split. The difference is what the extra labelled data, which the few-label user does
# not have, was worth; a positive number is an inflation of the oracle result.

# %%
by_setting = {(r["framework"], r["strategy"], r["labels"], r["seed"], r["validation"]): r["test_acc"] for r in rows}
inflation = []
for (framework, strategy, labels, seed, validation), accuracy in sorted(by_setting.items(), key=str):
    oracle = by_setting.get((framework, strategy, labels, seed, "oracle"))
    if validation == "labelled" and oracle is not None:
        inflation.append({"framework": framework, "strategy": strategy, "labels": labels, "seed": seed,
                          "labelled": accuracy, "oracle": oracle, "oracle - labelled": oracle - accuracy})
if inflation:
    print(markdown_table(inflation, ["framework", "strategy", "labels", "seed", "labelled", "oracle",
                                     "oracle - labelled"]))
    gaps = [row["oracle - labelled"] for row in inflation]
    print(f"mean oracle - labelled: {np.mean(gaps):+.3f} over {len(gaps)} pairs (largest {max(gaps):+.3f}); "
          "compare with the test-set intervals in the first table before calling a difference real.")
else:
    print("No pair of honest and oracle runs with the same settings: `make course` runs some.")

# %% [markdown]
# ### Keras against PyTorch: one strategy, two frameworks, the same test images
# The course teaches both frameworks side by side, so it owes a paired comparison of them. Notebook 04's Keras runs
# and 05's PyTorch runs start from the same source weights (04 converts 03's checkpoint), use the same split and,
# for a given seed, the same labelled images. Each pair below shares strategy, labels, seed and validation, so what
# differs is each framework's recipe (head, BatchNorm mode while fine-tuning, schedule, augmentation) and its
# numerics. The same paired test as above; an interval that covers zero means this test set cannot tell the two
# frameworks apart for that seed.

# %%
def runs_by_setting(framework: str) -> dict:
    """One framework's runs keyed by (strategy, labels per class, seed, validation)."""
    return {(run["config"]["strategy"], run["config"].get("labels_per_class"), run["config"].get("seed"),
             run["config"].get("validation", "oracle")): run for run in runs if run["framework"] == framework}


keras_runs, torch_runs = runs_by_setting("keras"), runs_by_setting("pytorch")
framework_tests = []
for key in sorted(set(keras_runs) & set(torch_runs), key=str):
    run_k, run_t = keras_runs[key], torch_runs[key]
    if not np.array_equal(run_k["predictions"]["y_true"], run_t["predictions"]["y_true"]):
        continue  # other test images (another dataset or split): not a paired comparison
    test = paired_test(run_k, run_t)
    strategy, labels, seed, validation = key
    framework_tests.append({"strategy": strategy, "labels": labels or "all", "seed": seed, "validation": validation,
                            "keras": test["accuracy_a"], "pytorch": test["accuracy_b"], "keras - pytorch": test["gap"],
                            "ci_low": test["interval"][0], "ci_high": test["interval"][1],
                            "mcnemar_p": test["p_value"], "verdict": metrics.noise_verdict(*test["interval"])})
if framework_tests:
    print(markdown_table(framework_tests, ["strategy", "labels", "seed", "validation", "keras", "pytorch",
                                           "keras - pytorch", "ci_low", "ci_high", "mcnemar_p", "verdict"]))
    apart = [f"{row['strategy']} at {row['labels']} labels per class ({row['keras - pytorch'] * 100:+.1f} points)"
             for row in framework_tests if not row["ci_low"] <= 0 <= row["ci_high"]]
    print(f"{len(framework_tests) - len(apart)} of {len(framework_tests)} pairs within the test-set noise"
          + (f"; beyond it: {', '.join(apart)}: the recipes differ in effect, not only in numerics." if apart
             else ": on these images the frameworks agree."))
else:
    print("No Keras and PyTorch runs with the same strategy, labels, seed and test images: `make course` runs them.")

# %% [markdown]
# Where does a gap come from? A Keras run of the comparison records its test probabilities under variants that each
# make **one change** to notebook 04's recipe: without the flip at test time (05 averages over it, and so does 04
# now); with the base's BatchNorm layers trainable while fine-tuning (04's BatchNorm pitfall arm: batch
# statistics in training mode, scale and shift trained, which is what `model.train()` does to every BatchNorm layer
# in 05; 04 freezes them); and fine-tuning from 05's head, a logistic-regression probe with its L2 strength chosen
# by cross-validation, instead of 04's phase-1 head trained by SGD. The training changes fine-tune on the same
# batches as 04's own run; a **control** retrains 04's recipe unchanged on a fresh stream (how far a change that
# changes nothing moves the gap), and a **combined** arm makes both training changes at once. Each variant is paired
# with the same PyTorch run: a change that explains the gap moves Keras's accuracy towards PyTorch's by more than the
# control moves it.

# %%
variant_names = {"probs": "04's recipe", "probs_no_tta": "one change: no flip at test time",
                 "probs_bn_training": "one change: BatchNorm trained, as in 05",
                 "probs_probe_head": "one change: 05's head, a cross-validated probe",
                 "probs_control": "control: 04's recipe on a fresh data stream",
                 "probs_combined": "both training changes: BatchNorm trained and 05's head"}
ablation = []
for key in sorted(set(keras_runs) & set(torch_runs), key=str):
    run_k, run_t = keras_runs[key], torch_runs[key]
    present = [name for name in variant_names if name in run_k["predictions"]]
    if len(present) < 2 or not np.array_equal(run_k["predictions"]["y_true"], run_t["predictions"]["y_true"]):
        continue
    for name in present:
        test = paired_test({**run_k, "predictions": {**run_k["predictions"], "probs": run_k["predictions"][name]}},
                           run_t)
        ablation.append({"strategy": key[0], "labels": key[1] or "all", "seed": key[2], "keras": variant_names[name],
                         "keras acc": test["accuracy_a"], "pytorch acc": test["accuracy_b"],
                         "keras - pytorch": test["gap"], "ci_low": test["interval"][0], "ci_high": test["interval"][1],
                         "verdict": metrics.noise_verdict(*test["interval"])})
if ablation:
    print(markdown_table(ablation, ["strategy", "labels", "seed", "keras", "keras acc", "pytorch acc",
                                    "keras - pytorch", "ci_low", "ci_high", "verdict"]))
    for setting in sorted({(row["strategy"], row["labels"], row["seed"]) for row in ablation}, key=str):
        rows_here = [row for row in ablation if (row["strategy"], row["labels"], row["seed"]) == setting]
        base = next(row for row in rows_here if row["keras"] == variant_names["probs"])
        changes = [row for row in rows_here if row is not base and not row["keras"].startswith("control")]
        control_row = next((row for row in rows_here if row["keras"].startswith("control")), None)
        closest = min(changes, key=lambda row: abs(row["keras - pytorch"]))
        floor = (None if control_row is None else
                 abs(control_row["keras - pytorch"] - base["keras - pytorch"]))  # what retraining alone moved
        moved = abs(base["keras - pytorch"]) - abs(closest["keras - pytorch"])
        verdict = ("no change brings the frameworks closer than 04's recipe itself" if moved <= 0 else
                   f"the change that brings them closest is {closest['keras']} ({moved * 100:.1f} points closer"
                   + ("" if floor is None else
                      f", {'more' if moved > floor else 'no more'} than the control moved the gap: "
                      f"{floor * 100:.1f}") + ")")
        print(f"{setting[0]} at {setting[1]} labels per class (seed {setting[2]}): Keras minus PyTorch "
              f"{base['keras - pytorch'] * 100:+.1f} points as 04 runs it; "
              + "; ".join(f"{row['keras - pytorch'] * 100:+.1f} with {row['keras']}" for row in rows_here
                          if row is not base)
              + f". One seed: {verdict}.")
else:
    print("No Keras run with one-change variants beside a PyTorch run: `make course` records them for Keras LP-FT.")

# %% [markdown]
# ## How far fine-tuning moved each block: full fine-tuning against LP-FT
# Notebook 05 records, for every fine-tuned run, each transferred block's relative weight change
# ‖w − w₀‖ / ‖w₀‖ from the source weights. LP-FT fits the head first, so its fine-tuning starts with small
# errors; Kumar et al. (2022) argue that the features then move less. Here are the two strategies side by side,
# on the same labels and seed (honest runs; 50 labels per class when the comparison has them).

# %%
with_change = [key for key in common if lp_ft_runs[key]["metrics"].get("block_change")
               and full_runs[key]["metrics"].get("block_change")]
block_key = min(with_change, default=None, key=lambda key: (key[0] != 50, key[0] or 10**9, key[1] or 0))
block_movement = None
if block_key is None:
    print("No full fine-tuning and LP-FT pair with recorded block changes: run the comparison (make course).")
else:
    labels, seed = block_key
    block_movement = {"labels_per_class": labels, "seed": seed,
                      "finetune_full": full_runs[block_key]["metrics"]["block_change"],
                      "lp_ft": lp_ft_runs[block_key]["metrics"]["block_change"]}
    blocks = list(block_movement["finetune_full"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for offset, strategy in ((-0.2, "finetune_full"), (0.2, "lp_ft")):
        ax.bar(np.arange(len(blocks)) + offset, [block_movement[strategy][b] for b in blocks], width=0.4,
               label=strategy)
    ax.set_xticks(range(len(blocks)), blocks)
    ax.set(ylabel="relative weight change", title=f"{labels} labels per class, seed {seed}")
    ax.legend()
    plt.show()
    for b in blocks:
        full, lpft = block_movement["finetune_full"][b], block_movement["lp_ft"][b]
        print(f"{b}: full fine-tuning {full:.4f}, LP-FT {lpft:.4f} ({lpft / full:.2f} times as far)")

# %% [markdown]
# Read the ratios above: below 1, LP-FT moved that block less than full fine-tuning did; Kumar et al.'s argument
# predicts ratios below 1. The measure is crude (a weight can move far along directions that do not change the
# features much), and one seed is one draw; what it shows is where each strategy spent its updates.

# %%
if block_movement is not None:  # the reading, worded by the ratios above
    ratios = {b: block_movement["lp_ft"][b] / block_movement["finetune_full"][b] for b in blocks}
    less = [b for b, ratio in ratios.items() if ratio < 1]
    span = f"{min(ratios.values()):.2f} to {max(ratios.values()):.2f} times as far"
    if len(less) == len(ratios):
        print(f"LP-FT moved every block less than full fine-tuning, {span}, as Kumar et al.'s argument predicts.")
    elif not less:
        print(f"LP-FT moved no block less than full fine-tuning ({span}): not what Kumar et al.'s argument predicts.")
    else:
        print(f"LP-FT moved {', '.join(less)} less than full fine-tuning but not the other blocks ({span}): "
              "only partly what Kumar et al.'s argument predicts.")

# %% [markdown]
# ## Answers, from the numbers
# The questions a student asks, answered from the honest runs above (the text is computed, not written in
# advance). "Highest" is a point estimate: check the intervals in the first table before calling it a win.

# %%
def mean_accuracy(framework: str, strategy: str, labels: int) -> float | None:
    """Mean test accuracy over seeds for one cell of the sweep, or None."""
    values = curves.get((framework, strategy), {}).get(labels)
    return float(np.mean(values)) if values else None


answers = []
for labels in sorted({n for points in curves.values() for n in points}):
    cells = {key: np.mean(points[labels]) for key, points in curves.items() if labels in points}
    if all(strategy == "scratch" for _, strategy in cells):
        continue  # only scratch ran with this many labels: nothing to compare with
    (framework, strategy), accuracy = max(cells.items(), key=lambda item: item[1])
    line = f"With {labels} labels per class the highest mean is {framework} {strategy} at {accuracy:.3f}"
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
    interpolated = [row for row in savings if framework == "pytorch" and row["strategy"] == strategy
                    and row["labels"] == smallest]
    if interpolated:  # the paired, interpolated reading above, every seed
        each = ", ".join(f"{labels_beyond(row['scratch_labels'], row)} (seed {row['seed']}, 95% interval "
                         f"{labels_beyond(row['ci_low'], row)} to {labels_beyond(row['ci_high'], row)})"
                         for row in interpolated)
        answers.append(f"{framework} {strategy} with {smallest} labels per class matches scratch with {each}; each "
                       "interval covers the test images of its seed only.")
    elif matched and smallest == 0:  # zero-shot (notebook 11): no labels at all
        answers.append(f"{framework} {strategy} with no labels matches scratch with {matched[0]} per class.")
    elif matched:
        answers.append(f"{framework} {strategy} with {smallest} labels per class matches scratch with {matched[0]}: "
                       f"a {matched[0] / smallest:.0f}x saving in labels.")
    else:
        answers.append(f"{framework} {strategy} with {smallest} labels per class beats scratch at every budget tried "
                       f"(up to {max(scratch_points)}).")
timing = {}
for row in rows:
    timing.setdefault((row["framework"], f"{row['strategy']} at {row['labels']} labels"), []).append(row["seconds"])
answers += [f"{framework} {strategy} takes {np.mean(seconds):.0f} s per run on average."
            for (framework, strategy), seconds in sorted(timing.items())]
print("\n".join(answers) if answers else "Not enough runs to answer; run a sweep.")

# %%
metrics_path = reporting.save_run(run_folder, config, {"runs_searched": str(search_root), "runs": len(runs)},
                                  {"table": rows, "featured_run": str(featured["folder"]),
                                   "calibrated_run": None if calibrated is None else str(calibrated["folder"]),
                                   "temperature": temperature, "paired_test": paired,
                                   "framework_tests": framework_tests, "framework_ablation": ablation,
                                   "savings": savings, "seed_spread": seed_rows,
                                   "block_movement": block_movement,
                                   "ece_before": ece_before, "ece_after": ece_after, "answers": answers,
                                   "oracle_inflation": inflation})

# %% [markdown]
# ## Exercises
#
# 1. Two strategies differ by 0.4 points and their 95% intervals overlap by most of their width. What can
#    you conclude, and what would you run to decide?
# 2. Why is the temperature fitted on held-out predictions and not on the test split?
# 3. In the confusion matrix above, which pair is most confused? Is that what you expected from the images?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Nothing yet: the difference is within the noise of the test set. Run more seeds (the seed spread is a
#    second source of noise) or a paired test on the same test images.
# 2. Fitting on the test split would tune to the very data used to report the result, making the reported
#    calibration optimistic.
# 3. Read it off the printed "most confused" list: on the target classes, animals with similar shapes and
#    backgrounds (dog, horse, frog) tend to be mixed up more than the vehicles (ship, truck), but the counts
#    above are the answer for your run.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. Compute the expected calibration error by hand: put each prediction in one of `bins` equal-width bins on
#    [0, 1] by its confidence (the top probability; a bin holds the confidences in (low, high]), and add up
#    |accuracy − mean confidence| per bin, weighted by the fraction of images in the bin. Replace the `raise`
#    line with your code and run the check. Reference solution: `solutions/06_evaluation.py`.

# %%
def ece_by_hand(labels: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """Expected calibration error over `bins` equal-width confidence bins."""
    raise NotImplementedError  # your code here


# %%
exercises.check("06.1", ece_by_hand)


# %% [markdown]
# ## Summary
# - Report accuracy with an interval; compare strategies only beyond their noise (seeds and test set).
# - Confusion matrices and per-class scores show *which* classes fail; ROC and precision-recall curves judge the
#   ranking at every threshold.
# - Two runs on the same images: compare them paired (McNemar, permutation test, paired bootstrap), on the
#   images where they disagree.
# - Temperature scaling on held-out predictions corrects over- or under-confidence (read T) without changing a
#   single prediction; with few labels, cross-fitting makes those predictions from the labelled images alone.
#   Mean confidence against accuracy says which way each run leans. Label smoothing and
#   test-time flips lower a network's confidence; a linear probe has neither, and its L2 penalty sets its own.
# - With few labels, choose only on the labelled images; an oracle validation split flatters the result by
#   the amount measured above.
# - The data-efficiency curve is the headline of transfer learning: how many labels it saves, against a scratch
#   baseline that got its own recipe, chosen without the target's labels.
# - When two frameworks disagree, change one thing at a time and pair each variant on the same images.
#
# ## References
# - Guo, Pleiss, Sun, Weinberger (2017). *On calibration of modern neural networks*. ICML.
# - Efron, Tibshirani (1993). *An introduction to the bootstrap*. Chapman & Hall.
# - McNemar (1947). *Note on the sampling error of the difference between correlated proportions or
#   percentages*. Psychometrika.
# - Dietterich (1998). *Approximate statistical tests for comparing supervised classification learning
#   algorithms*. Neural Computation.
# - Davis, Goadrich (2006). *The relationship between precision-recall and ROC curves*. ICML.
# - Kumar, Raghunathan, Jones, Ma, Liang (2022). *Fine-tuning can distort pretrained features and underperform
#   out-of-distribution* (LP-FT). ICLR.
# - Oliver, Odena, Raffel, Cubuk, Goodfellow (2018). *Realistic evaluation of deep semi-supervised learning
#   algorithms*. NeurIPS.
# - Müller, Kornblith, Hinton (2019). *When does label smoothing help?* NeurIPS.
