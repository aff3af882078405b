# %% [markdown]
# # 01 · Transfer learning: the concepts
#
# A network trained on one task has learned features: edges, textures, parts, shapes. **Transfer learning**
# reuses what was learned on a *source* task to learn a *target* task with less data, less compute, or both.
# This notebook names the ideas the rest of the course uses, says when transfer helps and when it hurts, and
# ends with a live experiment you can run on a CPU in one or two minutes.
#
# **Learning objectives**
# - Tell apart feature transfer, model (parameter) transfer and fine-tuning.
# - Place multi-task learning, few-shot learning, domain adaptation and distillation relative to them.
# - Predict when transfer helps (related tasks, little target data) and when it can hurt (negative transfer).
# - Measure it: accuracy against the number of target labels, from scratch versus from a source model.
#
# **Estimated time**: reading 20 minutes; running the notebook in the `cpu` profile on 2 CPU cores, about 80
# seconds with notebook 03's source model and 2 minutes without it (it then trains a stand-in); seconds in
# `smoke`. `full` profile on one GPU: about 2 min (a target, not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
SEED: int = 0  # seeds the label sample, the initial weights and the augmentation
LABEL_COUNTS: Optional[list] = None  # target labels per class to try, e.g. [10, 50, 250]; None lets the profile decide
OUTPUT_DIR: Optional[str] = None  # None means outputs/01_concepts

# %% [markdown]
# ## Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch
from torch import nn

from helpers import (
    data,
    exercises,
    metrics,
    models,
    parameters,
    plots,
    profiles,
    reporting,
    runtime,
    splits,
    torch_data,
    torch_train,
)

parameters.check_parameters(globals())  # unknown names, wrong types, out-of-range values: refused here

plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("01_concepts", PROFILE, label_counts=LABEL_COUNTS)
config.update(dataset_requested=DATASET, seed=SEED)

# %% [markdown]
# ## The vocabulary
#
# Write a network as a feature extractor $F_\theta$ followed by a head $h_\phi$: $f(x) = h_\phi(F_\theta(x))$.
#
# | idea | what moves from source to target | what is trained on the target |
# |---|---|---|
# | **feature transfer** | the extractor $F_\theta$, frozen | a new head $h_\phi$ (a *linear probe* if linear) |
# | **model (parameter) transfer** | the network: structure *and* weights | everything, from $\theta_\text{source}$ |
# | **fine-tuning** | model transfer, then training all layers or only the top ones | the unfrozen layers and the head |
#
# Model transfer moves structure and parameters together: Pan and Yang (2010) call it *parameter transfer*,
# the source and target models sharing parameters (or priors over them). Reusing only the architecture, with
# freshly initialized weights, transfers nothing learned: that is the *scratch* baseline of the experiment
# below.
#
# Related ideas sit around these:
# - **instance transfer**: reuse source *examples*, re-weighted to look like the target data;
# - **multi-task learning**: learn source and target *together*, sharing the extractor;
# - **few-shot learning**: the extreme of little target data (a handful of labels per class);
# - **domain adaptation**: same classes, different input distribution (photos to sketches), often with
#   unlabelled target data;
# - **knowledge distillation**: transfer from a large *teacher* to a small *student* through its outputs.

# %%
fig, ax = plt.subplots(figsize=(10, 5))
ax.set_xlim(0, 10)
ax.set_ylim(0, 6)
ax.axis("off")
boxes = {
    "source task\n(pretraining)": (0.3, 2.5, "#cfe2f3"), "what is transferred": (3.6, 2.5, "#fff2cc"),
    "target task": (7.2, 2.5, "#d9ead3"),
    "features\n(frozen extractor)": (3.0, 4.6, "#fce5cd"), "model: structure\n+ parameters": (5.0, 4.6, "#fce5cd"),
    "instances\n(re-weighted)": (3.0, 0.4, "#fce5cd"), "outputs\n(distillation)": (5.0, 0.4, "#fce5cd"),
    "multi-task\n(train jointly)": (0.3, 4.6, "#ead1dc"),
    "domain adaptation\n(same classes, new inputs)": (7.2, 4.6, "#ead1dc"),
    "few-shot\n(very few labels)": (7.2, 0.4, "#ead1dc"),
}
for text, (x, y, colour) in boxes.items():
    ax.add_patch(FancyBboxPatch((x, y), 2.4 if x > 6 else 1.9, 1.0, boxstyle="round,pad=0.08", fc=colour, ec="grey"))
    ax.text(x + (1.2 if x > 6 else 0.95), y + 0.5, text, ha="center", va="center", fontsize=9)
for start, end in [((2.3, 3.0), (3.5, 3.0)), ((5.6, 3.0), (7.1, 3.0)), ((4.5, 3.6), (4.0, 4.5)),
                   ((4.7, 3.6), (5.8, 4.5)), ((4.5, 2.4), (4.0, 1.5)), ((4.7, 2.4), (5.8, 1.5))]:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "grey"})
ax.set_title("Transfer learning and its neighbours")
plt.show()

# %% [markdown]
# ## When transfer helps, and when it hurts
#
# - **Relatedness.** Features transfer when the tasks share structure: ImageNet edges and textures help
#   almost any natural-image task; they help far less on spectrograms or medical scans.
# - **Target data size.** The fewer target labels, the larger the gain: with millions of target images a
#   network trained from scratch catches up (but transfer usually still converges faster).
# - **Domain shift.** Same classes in a different input distribution reduce the gain; notebook 02 measures
#   the shift with the maximum mean discrepancy.
# - **Negative transfer.** A source that is unrelated, or fine-tuning with too high a learning rate, can end
#   *worse* than training from scratch. Always compare against the scratch baseline.
#
# ## A live experiment
#
# Source task: CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer). Target task: classes 5-9 (dog,
# frog, horse, ship, truck), a related but different set of objects. The source model is notebook 03's when
# its checkpoint exists (`make course` runs notebook 03 first); run alone, this notebook trains a quick
# stand-in and says so: the same network, about 400 steps on 2,000 images per source class, about 45 seconds
# on 2 CPU cores. Expect it to be a weaker source than notebook 03's, which the README's `make bench-torch`
# record puts at about 0.90 source test accuracy (0.897 and 0.901 in two trainings); the next cell prints
# which model this run used and its source accuracy. Then, for several numbers of target labels per class, we
# train the same network twice with the same budget in optimizer steps: **from scratch** (random weights,
# learning rate 0.2, and the strong augmentation and weight decay that notebook 05 chose for scratch) and **from
# the source model** (its weights, a new head, and a tenth of that learning rate, 0.02, so that fine-tuning adjusts
# the source features instead of overwriting them).

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source, target = splits.source_target_split(cifar)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)


def train(model: models.TransferNet, images: np.ndarray, labels: np.ndarray, steps: int, lr: float, desc: str,
          batch_size: int = 64, weight_decay: float = 5e-4, strong: bool = False) -> int:
    """Train a model in place for about `steps` optimizer steps with one-cycle SGD; return the steps taken."""
    loader = torch_data.make_loader(images, labels, train=True, batch_size=batch_size, seed=SEED, strong=strong)
    epochs = max(1, round(steps / len(loader)))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=len(loader))
    torch_train.fit(model, loader, None, optimizer, epochs, loss_fn, device, scheduler=scheduler, desc=desc)
    return epochs * len(loader)


start = time.perf_counter()
checkpoint = models.checkpoint_path(profiles.choose_profile(PROFILE))
try:
    source_model, meta = models.load_checkpoint(checkpoint, {"dataset_sha256": models.source_data_key(cifar.identity)})
    source_record = f"notebook 03 checkpoint {meta['sha256'][:12]}"
    source_test_acc = meta["source_test_acc"]
    print(f"Source model: notebook 03's checkpoint (sha256 {meta['sha256'][:12]}, source test accuracy "
          f"{source_test_acc:.3f}).")
except (models.CheckpointMissing, models.CheckpointMismatch) as reason:
    print(f"!! {reason}")
    picked = splits.sample_per_class(source.y_train, config["source_per_class"], seed=SEED)
    source_model = torch_train.to_device(models.course_net(), device)
    steps = train(source_model, source.x_train[picked], source.y_train[picked], config["source_steps"], lr=0.2,
                  desc="stand-in source model", batch_size=128)
    source_loader = torch_data.make_loader(source.x_test, source.y_test, train=False, batch_size=512)
    source_test_acc = torch_train.evaluate(source_model, source_loader, device)["acc"]
    source_record = f"stand-in, {steps} steps"
    print(f"!! Source model: a QUICK STAND-IN ({steps} steps, source test accuracy {source_test_acc:.3f}), as "
          f"notebook 03's checkpoint is missing; run notebook 03 or `make course` for the real one.")
test_loader = torch_data.make_loader(target.x_test, target.y_test, train=False, batch_size=512)
source_state = {k: v.clone() for k, v in source_model.state_dict().items()}

rows = []
for per_class in config["label_counts"]:
    picked = splits.sample_per_class(target.y_train, per_class, seed=SEED)
    accuracy = {}
    preds = {}
    for name in ("scratch", "from source"):
        model = models.course_net()
        if name == "from source":
            model.load_state_dict(source_state)  # model transfer: structure and weights ...
            model.head = nn.Linear(model.feature_dim, target.num_classes)  # ... with a new head for the target
        model = torch_train.to_device(model, device)
        recipe = profiles.scratch_recipe(config["profile"], per_class)  # notebook 05's, for this many labels
        own = {"lr": 0.2, "weight_decay": recipe["weight_decay"],
               "strong": recipe["augment"] == "strong"} if name == "scratch" else {"lr": 0.02}
        train(model, target.x_train[picked], target.y_train[picked], config["target_steps"],
              desc=f"{name}, {per_class}/class", **own)
        evaluated = torch_train.evaluate(model, test_loader, device)
        accuracy[name], preds[name] = evaluated["acc"], evaluated["preds"]
    interval = metrics.bootstrap_difference(evaluated["labels"], preds["from source"], preds["scratch"], seed=SEED)
    rows.append({"labels per class": per_class, "scratch": accuracy["scratch"],
                 "from source": accuracy["from source"], "gap": accuracy["from source"] - accuracy["scratch"],
                 "interval": interval[1:]})
experiment_seconds = time.perf_counter() - start

# %% [markdown]
# ## Results
# Target test accuracy (5,000 test images of the target classes), then the gap between the two, then the
# same as a plot.

# %%
print(f"Source model: {source_record}; target test accuracy:")
print(reporting.markdown_table([{**row, "transfer - scratch": f"{row['gap']:+.3f}"} for row in rows],
                               ["labels per class", "scratch", "from source", "transfer - scratch"]))
gaps = [row["gap"] for row in rows]
widest = rows[int(np.argmax(gaps))]["labels per class"]
print("transfer minus scratch: " + ", ".join(f"{row['gap']:+.3f} at {row['labels per class']}/class" for row in rows)
      + f"; largest at {widest}/class; transfer "
      + ("ahead at every label count." if min(gaps) > 0 else "NOT ahead at every label count."))

fig, ax = plt.subplots(figsize=(6, 3.8))
for name in ("scratch", "from source"):
    ax.plot(config["label_counts"], [row[name] for row in rows], "o-", label=name)
ax.axhline(1 / target.num_classes, color="grey", ls=":", label="chance")
ax.set_xscale("log")
ax.set(xlabel="target labels per class", ylabel="target test accuracy",
       title=f"Transfer vs scratch ({cifar.identity['dataset']}, {experiment_seconds:.0f} s)")
ax.legend()
plt.show()

# %% [markdown]
# Read the plot with the line printed above it: the gap between the curves is what transfer buys, at the
# same budget in optimizer steps, so it is not "more training": the transferred network started from
# features that already describe objects. The other side of the same coin: at this budget scratch is not at its
# best; notebook 05 trains it for longer, on the schedule `make bench-scratch` chose, and that is the fair
# baseline notebook 06 measures transfer against. What to look for: a positive gap at every label count, where it
# is largest (the line above says), and a stronger source model buying more than the stand-in. The cell below
# reads this run's gaps with a 95% paired bootstrap interval over the test images; that interval covers which test
# images were drawn, not a retrained network, so a gap of a point or two at one seed can still be noise: compare
# seeds before you trust it. The README's record of the course's comparison (notebook 05's recipes, each chosen on a
# proxy with the same budget of choices, notebook 03's model, 3 seeds) shows the expected shape: full fine-tuning 0.753
# against scratch 0.616 at 10 labels per class, LP-FT 0.837 against 0.785 at 50. With far more target data than here,
# a network trained from scratch usually catches up.

# %%
kind = "notebook 03's model" if source_record.startswith("notebook 03") else "the quick stand-in"
print(f"Source: {kind}, source test accuracy {source_test_acc:.3f} ("
      f"{'below' if source_test_acc < 0.90 else 'at or above'} the README's 0.90 for notebook 03's `cpu` model).")
for row in rows:
    low, high = row["interval"]
    print(f"{row['labels per class']}/class: transfer {'beat' if row['gap'] > 0 else 'trailed'} scratch by "
          f"{abs(row['gap']):.3f} (95% interval {low:+.3f} to {high:+.3f} {metrics.noise_verdict(low, high)}).")
if len(rows) > 1:
    first, last = rows[0], rows[-1]
    print(f"From {first['labels per class']} to {last['labels per class']} labels per class the gap went from "
          f"{first['gap']:+.3f} to {last['gap']:+.3f}: " + ("it shrank as target labels grew, the usual pattern."
                                                           if last["gap"] < first["gap"] else
                                                           "it did not shrink as target labels grew, against the "
                                                           "usual pattern; compare seeds before reading much into it."))

# %%
run_folder = reporting.run_dir("01_concepts", OUTPUT_DIR)
metrics_path = reporting.save_run(run_folder, config, cifar.identity,
                                  {"source_model": source_record, "source_test_acc": source_test_acc,
                                   "label_counts": config["label_counts"],
                                   "scratch_acc": [row["scratch"] for row in rows],
                                   "transfer_acc": [row["from source"] for row in rows],
                                   "gap_interval_95": [list(row["interval"]) for row in rows],
                                   "seconds": round(experiment_seconds, 1)})

# %% [markdown]
# ## Exercises
#
# 1. Which kind of transfer is the "from source" curve above? Which would a linear probe be?
# 2. Swap the roles: make the target task the *source* classes. Would you expect the same gap? Why might it
#    differ?
# 3. Give an example of negative transfer you could produce with this notebook's code.
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Model (parameter) transfer with full fine-tuning: structure and weights come from the source, and all
#    layers train. A linear probe would be feature transfer: freeze `model.features`, train only `model.head`.
# 2. Roughly, but not exactly: transfer is not symmetric. Features learned on vehicles and animals in one
#    direction need not cover what the other classes need equally well; measure it.
# 3. Fine-tune from the source with a very high learning rate (for instance 1.0) and few steps: the source
#    features are destroyed before the head has learned anything, and the result can fall below scratch.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. The course's target task is CIFAR-10's classes 5-9, renumbered 0-4. Write `target_subset(images, labels)`
#    that returns the images of those classes and their new labels, in the original order. Replace the
#    `raise` line, then run the check. Reference solution: `solutions/01_concepts.py`.

# %%
def target_subset(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images of classes 5-9 and their labels renumbered 0-4."""
    raise NotImplementedError  # your code here


# %%
exercises.check("01.1", target_subset)


# %% [markdown]
# ## Summary
# - Transfer reuses a source model's features (frozen) or the model itself, structure and parameters
#   together, as the starting point for fine-tuning. The architecture alone, retrained from random weights,
#   is the scratch baseline, not transfer.
# - It helps most with related tasks and little target data; compare against training from scratch to see
#   negative transfer.
# - At the same budget, a source model trained on other CIFAR-10 classes is expected to beat scratch, by most
#   with the fewest target labels, and a better source model to buy more than a quick stand-in; the cell after
#   the plot printed whether this run agreed, with an interval on each gap. The README's `make bench-torch`
#   record (3 seeds) shows the same shape for notebook 03's model with notebook 05's recipes.
#
# ## References
# - Pan, Yang (2010). *A survey on transfer learning*. IEEE TKDE.
# - Yosinski, Clune, Bengio, Lipson (2014). *How transferable are features in deep neural networks?* NIPS.
# - Kornblith, Shlens, Le (2019). *Do better ImageNet models transfer better?* CVPR.
