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
# # 01 · Transfer learning: the concepts
#
# A network trained on one task has learned features: edges, textures, parts, shapes. **Transfer learning**
# reuses what was learned on a *source* task to learn a *target* task with less data, less compute, or both.
# This notebook names the ideas the rest of the course uses, says when transfer helps and when it hurts, and
# ends with a live experiment you can run on a CPU in a couple of minutes.
#
# **Learning objectives**
# - Tell apart feature transfer, parameter transfer, model (structure) transfer and fine-tuning.
# - Place multi-task learning, few-shot learning, domain adaptation and distillation relative to them.
# - Predict when transfer helps (related tasks, little target data) and when it can hurt (negative transfer).
# - Measure it: accuracy against the number of target labels, from scratch versus from a source model.
#
# **Estimated time**: reading 20 minutes; the experiment about 4 minutes on 2 CPU cores in the `cpu` profile
# (seconds on a GPU, seconds in `smoke`).

# %% tags=["parameters"]
PROFILE = "auto"  # smoke, cpu, full or auto
DATASET = "auto"  # auto, cifar10 or synthetic
SEED = 0
LABEL_COUNTS = None  # target labels per class to try, a list; None lets the profile decide
OUTPUT_DIR = None  # None means outputs/01_concepts

# %% [markdown]
# ## Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch
from torch import nn

from helpers import data, models, plots, profiles, reporting, runtime, splits, torch_data, torch_train

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
# | **parameter transfer** | the weights $\theta$, as a starting point | everything, from $\theta_\text{source}$ |
# | **fine-tuning** | parameter transfer for all or only the top layers | the unfrozen layers and the head |
# | **model / structure transfer** | the architecture, not the weights | all weights, from scratch |
#
# Related ideas sit around these:
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
    "features\n(frozen extractor)": (3.0, 4.6, "#fce5cd"), "parameters\n(initialisation)": (5.0, 4.6, "#fce5cd"),
    "structure\n(architecture)": (3.0, 0.4, "#fce5cd"), "outputs\n(distillation)": (5.0, 0.4, "#fce5cd"),
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
# frog, horse, ship, truck), a related but different set of objects. We train a small source model (or reuse
# notebook 03's if it exists), then for several numbers of target labels per class train the same network
# twice with the same budget: **from scratch** and **from the source weights**.

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source, target = splits.source_target_split(cifar)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)


def train(model: models.TransferNet, images: np.ndarray, labels: np.ndarray, steps: int, lr: float,
          desc: str) -> models.TransferNet:
    """Train a model for about `steps` optimizer steps with one-cycle SGD."""
    loader = torch_data.make_loader(images, labels, train=True, batch_size=64, seed=SEED)
    epochs = max(1, round(steps / len(loader)))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=len(loader))
    torch_train.fit(model, loader, None, optimizer, epochs, loss_fn, device, scheduler=scheduler, desc=desc)
    return model


start = time.perf_counter()
try:
    source_model, meta = models.load_checkpoint(models.checkpoint_path(profiles.choose_profile(PROFILE)))
    print(f"Reusing notebook 03's source model (source test accuracy {meta['source_test_acc']:.3f}).")
except models.CheckpointError:
    picked = splits.sample_per_class(source.y_train, config["source_per_class"], seed=SEED)
    source_model = train(torch_train.to_device(models.course_net(), device), source.x_train[picked],
                         source.y_train[picked], config["source_steps"], lr=0.2, desc="source model")
test_loader = torch_data.make_loader(target.x_test, target.y_test, train=False, batch_size=512)
source_state = {k: v.clone() for k, v in source_model.state_dict().items()}

results = {"scratch": [], "from source": []}
for per_class in config["label_counts"]:
    picked = splits.sample_per_class(target.y_train, per_class, seed=SEED)
    for name in results:
        model = models.course_net()
        if name == "from source":
            model.load_state_dict(source_state)  # parameter transfer ...
            model.head = nn.Linear(model.feature_dim, target.num_classes)  # ... with a new head
        model = train(torch_train.to_device(model, device), target.x_train[picked], target.y_train[picked],
                      config["target_steps"], lr=0.2 if name == "scratch" else 0.02, desc=f"{name}, {per_class}/class")
        results[name].append(torch_train.evaluate(model, test_loader, device)["acc"])
        print(f"{per_class:4d} labels per class, {name:11s}: target test accuracy {results[name][-1]:.3f}")
experiment_seconds = time.perf_counter() - start

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for name, accuracies in results.items():
    ax.plot(config["label_counts"], accuracies, "o-", label=name)
ax.axhline(1 / target.num_classes, color="grey", ls=":", label="chance")
ax.set_xscale("log")
ax.set(xlabel="target labels per class", ylabel="target test accuracy",
       title=f"Transfer vs scratch ({cifar.identity['dataset']}, {experiment_seconds:.0f} s)")
ax.legend()
plt.show()

# %% [markdown]
# Read the plot: the gap between the curves is what transfer buys. It is largest with the fewest labels, and
# shrinks as target data grows. The budget (optimizer steps) is the same for both, so the gap is not "more
# training": the source model started with useful features.

# %%
run_folder = reporting.run_dir("01_concepts", OUTPUT_DIR)
metrics_path = reporting.save_run(run_folder, config, cifar.identity,
                                  {"label_counts": config["label_counts"], "scratch_acc": results["scratch"],
                                   "transfer_acc": results["from source"], "seconds": round(experiment_seconds, 1)})

# %% [markdown]
# ## Exercises
#
# 1. Which of the four kinds of transfer is the "from source" curve above? Which would a linear probe be?
# 2. Swap the roles: make the target task the *source* classes. Would you expect the same gap? Why might it
#    differ?
# 3. Give an example of negative transfer you could produce with this notebook's code.
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Parameter transfer with full fine-tuning (all weights start from the source and all train). A linear
#    probe would be feature transfer: freeze `model.features`, train only `model.head`.
# 2. Roughly, but not exactly: transfer is not symmetric. Features learned on vehicles and animals in one
#    direction need not cover what the other classes need equally well; measure it.
# 3. Fine-tune from the source with a very high learning rate (for instance 1.0) and few steps: the source
#    features are destroyed before the head has learned anything, and the result can fall below scratch.
#
# </details>
#
# ## Summary
# - Transfer reuses a source model's features (frozen), parameters (as a start) or structure.
# - It helps most with related tasks and little target data; compare against training from scratch to see
#   negative transfer.
# - With a few dozen labels per class, a source model trained on other CIFAR-10 classes beats scratch by a
#   wide margin at the same budget.
#
# ## References
# - Pan, Yang (2010). *A survey on transfer learning*. IEEE TKDE.
# - Yosinski, Clune, Bengio, Lipson (2014). *How transferable are features in deep neural networks?* NIPS.
# - Kornblith, Shlens, Le (2019). *Do better ImageNet models transfer better?* CVPR.
