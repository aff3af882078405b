# %% [markdown]
# # 00 · Setup and data
#
# The first notebook of the transfer-learning workbook. It checks that your machine has what the course
# needs, fetches CIFAR-10 once (or finds it in the cache), and shows the data and the splits that every later
# notebook uses, in PyTorch and in Keras alike.
#
# **Learning objectives**
# - Read the environment report: Python, package versions, the device each framework will use.
# - Know where the course keeps data, and how to run it offline.
# - Know CIFAR-10: ten classes, 32x32 colour images, 50,000 for training and 10,000 for testing.
# - Know the course's splits: train/validation, *N labels per class*, and the **source/target** split
#   on which we transfer from one half of the classes to the other.
# - See that the PyTorch and `tf.data` pipelines give the same tensors from the same images.
#
# **Estimated time** (measured on 2 CPU cores): about 30 s the first time with a local copy of CIFAR-10
# (decoding 60,000 images), under 15 s afterwards; add the download of 170 MB the first time you fetch the
# official archive. A GPU does not change this notebook's time: `full` profile on one GPU: about 1 min
# (a target, not yet measured).
#
# **What the course needs**
#
# | notebook | what it does | needs |
# |---|---|---|
# | 00 setup and data | this notebook | CIFAR-10 (or synthetic data) |
# | 01 concepts, 02 math | why transfer works; every equation checked in code | CPU |
# | 03 pretrain the source model | a compact CNN on classes 0-4, saved as the course model | CPU minutes (`cpu`) |
# | 04 Keras, 05 PyTorch fine-tuning | every strategy, ImageNet or course backbones | GPU for `full` |
# | 06 evaluation | compare strategies and frameworks | CPU |
#
# Each notebook has a `PROFILE` parameter: `smoke` (seconds, for tests), `cpu` (minutes on a laptop),
# `full` (the real experiment, for a GPU: the README states each notebook's time on one GPU as a target, not yet
# measured) and `auto` (full with a CUDA GPU, cpu without). The environment
# variable `WORKBOOK_PROFILE` overrides it in every notebook; any other parameter you set wins over the
# profile's value for the same knob.

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
SEED: int = 0
EXAMPLES_PER_CLASS: Optional[int] = None  # images per class in the grid; None lets the profile decide
OUTPUT_DIR: Optional[str] = None  # where the run record goes; None means outputs/00_setup_and_data

# %% [markdown]
# ## Setup
# One cell that every notebook starts with: the helpers package, plot defaults, the environment report,
# the device, one seed for every library, and the effective configuration (profile values merged with the
# parameters above).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from helpers import data, exercises, parameters, paths, plots, profiles, reporting, runtime, splits, tf_data, torch_data

parameters.check_parameters(globals())  # unknown names, wrong types, out-of-range values: refused here

plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("00_setup_and_data", PROFILE, examples_per_class=EXAMPLES_PER_CLASS)
config.update(dataset_requested=DATASET, seed=SEED)

# %% [markdown]
# ## Where the data lives, and going offline
#
# Everything the course downloads or computes lands under one **data root**, `data/` in the project unless
# you move it. Four environment variables control this:
#
# | variable | effect |
# |---|---|
# | `WORKBOOK_DATA` | moves the data root (datasets, cached features, checkpoints, pretrained weights) |
# | `WORKBOOK_OFFLINE=1` | no download at all; missing data gives an error that names the command that provides it |
# | `WORKBOOK_CIFAR10_SOURCE` | a local ImageFolder copy of CIFAR-10 (folder or `.tar.gz`) to use instead |
# | `WORKBOOK_PROFILE` | forces a profile in every notebook |
#
# For an offline classroom, run `make prefetch` once on a machine with a network: it stages CIFAR-10 and
# every pretrained weight file the course uses, and says what it could not get. Then copy the data root.

# %%
local_copy = paths.env_path(paths.CIFAR10_SOURCE_ENV)
print("data root:     ", paths.shown(paths.data_root()))
print("outputs:       ", paths.shown(paths.outputs_root()))
print("offline:       ", paths.is_offline())
print("CIFAR-10 copy: ", paths.shown(local_copy) if local_copy else "(none: the official archive is used)")

# %% [markdown]
# ## Load the data
#
# `DATASET = "auto"` loads CIFAR-10 when it can be had (cache, local copy or download) and otherwise falls
# back to **synthetic** data: ten procedural pattern classes of the same shape, announced by a loud banner
# and recorded as `dataset: synthetic` in every metrics file. The official archive is checked against its
# published SHA-256, parsed once, and kept as a compact `.npz` so later loads take well under a second.

# %%
start = time.perf_counter()
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
load_seconds = time.perf_counter() - start
print(f"loaded in {load_seconds:.1f} s")
print(reporting.markdown_table([{"data identity": name, "value": value} for name, value in cifar.identity.items()],
                               ["data identity", "value"]))
print("images:", cifar.x_train.dtype, cifar.x_train.shape, " labels:", cifar.y_train.dtype, cifar.y_train.shape)

# %% [markdown]
# The arrays are plain numpy: images are `uint8` in NHWC order (number, height, width, channel), labels are
# integers 0-9 in the official class order. Both frameworks start from exactly these arrays.

# %%
fig = plots.show_examples(cifar, per_class=config["examples_per_class"], seed=SEED)
plt.show()

# %% [markdown]
# CIFAR-10 is balanced: every class has 5,000 training and 1,000 test images. Balance matters when we read
# accuracy later: with ten balanced classes, chance is 10%, and with the five-class target task it is 20%.

# %%
fig = plots.plot_class_balance(cifar)
plt.show()
print("train per class:", np.bincount(cifar.y_train).tolist())
print("test per class: ", np.bincount(cifar.y_test).tolist())

# %% [markdown]
# ## The course's splits
#
# All splits are deterministic for a given seed and identical in both frameworks.
#
# - **Validation**: a stratified 10% of the training set, so model choices never look at the test set.
# - **N labels per class**: the few-label regimes (10, 50, 500 per class) where transfer matters most.
# - **Source/target**: the *source task* is classes 0-4 (airplane, automobile, bird, cat, deer); the
#   *target task* is classes 5-9 (dog, frog, horse, ship, truck) with labels remapped to 0-4. Notebook 03
#   trains the course's own source model on the source task; notebooks 04 and 05 transfer it to the target.

# %%
x_train, y_train = splits.get_split(cifar, "train", seed=SEED)
x_val, y_val = splits.get_split(cifar, "val", seed=SEED)
x_few, y_few = splits.get_split(cifar, "train", seed=SEED, labels_per_class=10)
print(f"train {len(y_train)}, validation {len(y_val)}, test {len(cifar.y_test)}, 10 labels per class: {len(y_few)}")

source, target = splits.source_target_split(cifar)
print("source task:", source.class_names, "train", len(source.y_train), "test", len(source.y_test))
print("target task:", target.class_names, "train", len(target.y_train), "test", len(target.y_test))
print("target labels now run", target.y_train.min(), "to", target.y_train.max())
fig = plots.plot_task_split(cifar, splits.SOURCE_CLASSES, splits.TARGET_CLASSES)
plt.show()

# %% [markdown]
# ## One data API, two frameworks
#
# The same arrays feed a PyTorch `DataLoader` and a `tf.data` pipeline, with the same normalization and the
# same standard augmentation for training: a random 32x32 crop after padding by 4 pixels, and a random
# horizontal flip. Images can be upscaled (for ImageNet backbones, which expect larger inputs). Without
# augmentation the two pipelines must give the same numbers; we check that here.

# %%
check_x, check_y = cifar.x_test[:64], cifar.y_test[:64]
torch_batch, _ = next(iter(torch_data.make_loader(check_x, check_y, train=False, image_size=64, batch_size=64)))
tf_batch, _ = next(iter(tf_data.make_tf_dataset(check_x, check_y, train=False, image_size=64, batch_size=64)))
largest_gap = np.abs(torch_batch.permute(0, 2, 3, 1).numpy() - tf_batch.numpy()).max()
print("torch batch", tuple(torch_batch.shape), torch_batch.dtype, "| tf batch", tuple(tf_batch.shape), tf_batch.dtype)
print(f"largest difference between the two pipelines at 64x64: {largest_gap:.2e}")
assert largest_gap < 1e-4, "the PyTorch and tf.data pipelines disagree"

# %% [markdown]
# And this is what training augmentation does to one image: each epoch the network sees a slightly shifted,
# sometimes mirrored copy, which is a cheap way to get more out of few labels.

# %%
copies = np.repeat(cifar.x_train[:1], 8, axis=0)
views, _ = next(iter(torch_data.make_loader(copies, np.zeros(8, dtype=int), train=True, batch_size=8, seed=SEED)))
mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in data.normalization("cifar10"))
fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))
for ax, view in zip(axes, (views * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy(), strict=True):
    ax.imshow(view, interpolation="nearest")
    ax.axis("off")
fig.suptitle(f"eight augmented views of one '{cifar.class_names[cifar.y_train[0]]}'")
plt.show()

# %% [markdown]
# ## Record the run
# Every notebook writes its full configuration, the data identity (what data, and its hash), the versions and
# the device next to its results, so a number can always be traced back to what produced it.

# %%
run_folder = reporting.run_dir("00_setup_and_data", OUTPUT_DIR)
metrics_path = reporting.save_run(run_folder, config, cifar.identity,
                   {"load_seconds": round(load_seconds, 2), "num_train": len(cifar.y_train),
                    "num_test": len(cifar.y_test), "pipeline_gap_64px": float(largest_gap)})

# %% [markdown]
# ## Exercises
#
# 1. Run `make prefetch` (or `python -m helpers.prefetch`) and read its summary. What does it stage, and
#    where?
# 2. Set `DATASET = "synthetic"` and rerun the notebook. What tells you, and every later reader of the
#    metrics, that the numbers are not CIFAR-10?
# 3. How many images does the target task have with 50 labels per class? Use `splits.get_split` on `target`.
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. CIFAR-10 (the official archive and its compact cache under `data/cifar10/`) and the ImageNet weight
#    files for ResNet-18 (`data/torch/`), MobileNetV2, EfficientNetB0 and VGG16 (`data/keras/models/`).
#    It carries on past failures and lists what it could not get.
# 2. The banner printed by `make_synthetic`, and `identity["dataset"] == "synthetic"` in `metrics.json`.
# 3. `splits.get_split(target, "train", labels_per_class=50)` returns 5 x 50 = 250 images.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. Write `to_model_input(images)`: turn uint8 images of shape (N, H, W, 3) into what the PyTorch network
#    takes, float32 of shape (N, 3, H, W), scaled to [0, 1] and standardised with the CIFAR-10 channel mean and
#    standard deviation (`data.normalization("cifar10")`). Replace the `raise` line, then run the check.
#    Reference solution: `solutions/00_setup_and_data.py`.

# %%
def to_model_input(images: np.ndarray) -> np.ndarray:
    """Normalised float32 N x 3 x H x W arrays from uint8 N x H x W x 3 images."""
    raise NotImplementedError  # your code here


# %%
exercises.check("00.1", to_model_input)


# %% [markdown]
# ## Summary
# - The course keeps everything under one data root; `WORKBOOK_OFFLINE=1` turns the network off and
#   `make prefetch` stages what an offline classroom needs.
# - CIFAR-10 arrives as uint8 NHWC arrays with its class names and a hash that identifies it.
# - The source task (classes 0-4) and target task (classes 5-9, relabelled 0-4) are the backbone of the
#   course's own transfer experiments.
# - PyTorch and Keras read the same arrays through pipelines that agree to within float rounding.
#
# ## References
# - Krizhevsky (2009). *Learning multiple layers of features from tiny images*. Technical report, University of
#   Toronto (CIFAR-10).
# - Pan, Yang (2010). *A survey on transfer learning*. IEEE Transactions on Knowledge and Data Engineering 22(10).
# - Murray, Simsa, Klimovic, Indyk (2021). *tf.data: a machine learning data processing framework*. VLDB.
# - Paszke et al. (2019). *PyTorch: an imperative style, high-performance deep learning library*. NeurIPS.
# - Uieda et al. (2020). *Pooch: a friend to fetch your data files*. Journal of Open Source Software 5(45).
