# %% [markdown]
# # 03 · Pretrain the source model (PyTorch)
#
# Transfer needs something to transfer *from*. ImageNet backbones are the usual source, but their weights
# are 45 MB or more, need a download, and were trained on a million images we cannot reproduce here. So the
# course trains its own **source model**: a compact ResNet-style CNN trained on the **source task**,
# CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer). Notebooks 04 and 05 then transfer it to the
# **target task**, classes 5-9 (dog, frog, horse, ship, truck), fully offline.
#
# **Learning objectives**
# - Train a small CNN well with modern practice: augmentation, a one-cycle learning-rate schedule, label
#   smoothing, weight decay, and flip test-time augmentation.
# - Read learning curves: training versus validation loss and accuracy.
# - Save a checkpoint that carries its own metadata (classes, normalization, accuracy, configuration,
#   versions, hash) and load it safely (`weights_only=True`, hash checked).
# - Look at what the first layer learned, and run a learning-rate range test for fine-tuning and for
#   training from scratch.
#
# **Estimated time**: `cpu` profile about 6 minutes on 2 CPU cores (13 epochs over 22,500 images: 349 to 392 s
# in our runs); `full` profile on one GPU: about 3 min (a target, not yet measured); `smoke` under a minute. A
# valid checkpoint from an earlier run with the same settings is reused; the notebook then takes under a minute,
# mostly the range test.

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
SEED: int = 0
NUM_EPOCHS: Optional[int] = None  # None lets the profile decide
BATCH_SIZE: Optional[int] = None  # None lets the profile decide
LR: Optional[float] = None  # peak learning rate of the one-cycle schedule; None lets the profile decide
LABEL_SMOOTHING: float = 0.2
WEIGHT_DECAY: float = 0.0005
FORCE_RETRAIN: bool = False  # True trains again even when a valid checkpoint exists
OUTPUT_DIR: Optional[str] = None  # None means outputs/03_pretrain_source_model

# %% [markdown]
# ## Setup

# %%
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from helpers import (
    data,
    exercises,
    metrics,
    models,
    parameters,
    paths,
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
config = profiles.resolve_config("03_pretrain_source_model", PROFILE, num_epochs=NUM_EPOCHS,
                                 batch_size=BATCH_SIZE, lr=LR)
config.update(dataset_requested=DATASET, seed=SEED, label_smoothing=LABEL_SMOOTHING, weight_decay=WEIGHT_DECAY)

# %% [markdown]
# ## The source task
# Classes 0-4 of CIFAR-10. We hold out a stratified 10% of its training images for validation, so the
# test images are looked at once, at the end. The `smoke` profile trains on a few hundred images per class.

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source = splits.task_data(cifar, "source")
x_train, y_train = splits.get_split(source, "train", seed=SEED, labels_per_class=config["train_per_class"])
x_val, y_val = splits.get_split(source, "val", seed=SEED)
x_test, y_test = splits.get_split(source, "test")
print(f"source classes {source.class_names}: train {len(y_train)}, validation {len(y_val)}, test {len(y_test)}")

train_loader = torch_data.make_loader(x_train, y_train, train=True, batch_size=config["batch_size"], seed=SEED)
val_loader = torch_data.make_loader(x_val, y_val, train=False, batch_size=512)
test_loader = torch_data.make_loader(x_test, y_test, train=False, batch_size=512)

# %% [markdown]
# ## The model
# Four stages: a 3x3 convolution, then three *residual stages* that each widen the channels, halve the
# resolution (32 → 16 → 8 → 4) and add one residual unit `x + f(x)`. A global max-pool gives a 256-wide
# feature vector, batch-normalized (which keeps training stable at a high learning rate), and a linear
# **head** maps it to the five classes. The split into `features` and `head` is
# what transfer works with: notebooks 04 and 05 keep `features` and replace `head`.
#
# The last stage is the widest (256 channels) for two reasons. It runs at 8x8 and 4x4, where a convolution
# costs a sixteenth or less of what it would at 32x32, so that is where width is cheapest in time per image.
# And its output is the feature vector that notebooks 04 and 05 transfer: a frozen linear probe can only use
# what that vector holds, and a wider one keeps more of what the source labels did not need but a new task
# may. A network built only for the five source classes could stay narrower; what a source model is *for*
# decides its shape. This notebook does not run the comparison with a narrower last stage: judging it would
# take both widths trained over a few seeds, compared on time per epoch, source accuracy and a linear probe on
# the target task, each difference set against the seed-to-seed spread.

# %%
model = torch_train.to_device(models.course_net(num_classes=source.num_classes), device)
print(reporting.markdown_table(
    [{"block": name, "output channels": getattr(module, "num_features", "-") if name == "norm" else
      next((p.shape[0] for p in module.parameters()), "-"), "parameters": sum(p.numel() for p in module.parameters())}
     for name, module in [*model.features.named_children(), ("head", model.head)]],
    ["block", "output channels", "parameters"]))
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, feature width {model.feature_dim}")

# %% [markdown]
# ## The recipe, and whether we need to train at all
#
# - **Loss**: cross-entropy with label smoothing ε: the target is `1 - ε` on the true class and `ε/K` spread
#   over all K classes, which keeps logits from growing without bound (Müller, Kornblith and Hinton, 2019).
#   For a *source* model it is a trade-off: it can make frozen features transfer worse (Kornblith et al.,
#   2021). The course keeps ε = 0.2; exercise 1 asks how to test that choice, and its solution says why.
# - **Optimizer**: SGD with Nesterov momentum 0.9 and weight decay, the classic choice for CNNs.
# - **Schedule**: one cycle: the learning rate rises for the first quarter of the steps, then anneals to
#   nearly zero; fast and forgiving of the peak value.
#
# The checkpoint stores the configuration it was trained with. If one exists with exactly this
# configuration and data, we reuse it; a checkpoint whose bytes do not match its recorded hash stops the
# notebook instead of being used.

# %%
path = models.checkpoint_path(config["profile"])
train_config = {k: config[k] for k in ("num_epochs", "train_per_class", "batch_size", "lr", "seed",
                                      "label_smoothing", "weight_decay")}
train_config["widths"] = list(models.COURSE_NET_WIDTHS)
expect = {"dataset_sha256": models.source_data_key(cifar.identity), "train_config": train_config}
reused = False
if not FORCE_RETRAIN:
    try:
        loaded, meta = models.load_checkpoint(path, expect)
        model.load_state_dict(loaded.state_dict())
        reused = True
        print(f"Reusing the checkpoint at {paths.shown(path)} (source test accuracy {meta['source_test_acc']:.3f}).")
    except models.CheckpointMissing:  # the first run: nothing to reuse yet
        print("No saved source model for this profile yet: training one now.")
    except models.CheckpointError as reason:  # made for other data or settings, or damaged
        print(f"Training a new source model: {reason}")

# %%
history = []
start = time.perf_counter()
if not reused:
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], pct_start=0.25,
                                                    epochs=config["num_epochs"], steps_per_epoch=len(train_loader))
    history = torch_train.fit(model, train_loader, val_loader, optimizer, config["num_epochs"], loss_fn, device,
                              scheduler=scheduler, desc="source pretraining")
train_seconds = time.perf_counter() - start

# %% [markdown]
# ## Learning curves
# Training accuracy is measured on augmented images while the weights change, so it lags the validation
# accuracy early on; a validation loss that climbs while training loss falls would mean overfitting.
#
# The two losses are not on one scale. The training loss is cross-entropy against the *smoothed* target, which
# no prediction can match exactly: its floor is the entropy of that target, printed under the curves. The
# validation loss is plain cross-entropy against the true class, whose floor is zero. So validation loss sitting
# well below training loss is the smoothing, not a bug and not a sign of underfitting; compare each curve with
# its own past.

# %%
if history:
    epochs, validated = [row["epoch"] for row in history], [row for row in history if "val_acc" in row]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot([r["epoch"] for r in validated], [r["val_loss"] for r in validated], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], label="train")
    ax_acc.plot([r["epoch"] for r in validated], [r["val_acc"] for r in validated], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    plt.show()
else:
    print("Reused checkpoint: no new learning curves (see the first run's outputs).")
classes = source.num_classes
smoothed_target = np.full(classes, LABEL_SMOOTHING / classes)
smoothed_target[0] += 1 - LABEL_SMOOTHING
loss_floor = float(-(smoothed_target * np.log(np.clip(smoothed_target, 1e-12, 1))).sum())
print(f"Training-loss floor with label smoothing {LABEL_SMOOTHING} over {classes} classes: {loss_floor:.3f} nats "
      "(the validation loss's floor is 0)." + (f" Last epoch: training {history[-1]['train_loss']:.3f}, validation "
                                             f"{validated[-1]['val_loss']:.3f}." if history and validated else ""))

# %% [markdown]
# ## Test accuracy on the source task
# We average the predictions for each image and its mirror image (flip test-time augmentation), which costs
# one extra forward pass and usually adds a little; the cell prints both numbers, so you can see how much.
# The per-class lines below show which source classes the model finds hardest.

# %%
plain = torch_train.evaluate(model, test_loader, device)
result = torch_train.evaluate(model, test_loader, device, flip_tta=True)
print(f"source test accuracy: {plain['acc']:.4f} plain, {result['acc']:.4f} with flip TTA (chance 0.2)")
per_class = [(result["preds"][y_test == k] == k).mean() for k in range(source.num_classes)]
for name, accuracy in zip(source.class_names, per_class, strict=True):
    print(f"  {name:12s} {accuracy:.3f}")
hardest, runner_up = (int(k) for k in np.argsort(per_class)[:2])
low_1, high_1 = metrics.bootstrap_accuracy(y_test[y_test == hardest], result["preds"][y_test == hardest], seed=SEED)[1:]
low_2, high_2 = metrics.bootstrap_accuracy(y_test[y_test == runner_up], result["preds"][y_test == runner_up],
                                           seed=SEED)[1:]
print(f"Hardest: {source.class_names[hardest]} ({per_class[hardest]:.3f}, 95% interval {low_1:.3f} to {high_1:.3f}), "
      f"then {source.class_names[runner_up]} ({per_class[runner_up]:.3f}, {low_2:.3f} to {high_2:.3f}), "
      f"{(per_class[runner_up] - per_class[hardest]) * 100:.1f} points apart: "
      + ("the intervals overlap, so which of the two is last may change with the seed." if high_1 >= low_2 else
         "the intervals do not overlap, so the order should hold on other test images (a retrained seed can "
         "still move it)."))

# %% [markdown]
# ## Save the checkpoint
# The weights go into one file, loaded later with `torch.load(..., weights_only=True)` so a checkpoint can
# never run code. A JSON sidecar records everything needed to trust and use it.

# %%
if not reused:
    meta = {"classes": source.class_names, "widths": list(models.COURSE_NET_WIDTHS), "normalization": "cifar10",
            "source_test_acc": result["acc"], "source_test_acc_plain": plain["acc"],
            "dataset_sha256": expect["dataset_sha256"], "data": source.identity, "train_config": train_config,
            "train_seconds": round(train_seconds, 1), "profile": config["profile"],
            "versions": environment["packages"], "device": str(device)}
    path = models.save_checkpoint(model, meta, path)
print(f"checkpoint: {paths.shown(path)}\nsha256: {models.load_checkpoint(path)[1]['sha256']}")

# %% [markdown]
# ## What the first layer learned
# The stem's filters see the image directly, so they can be drawn as images: each is 3x3 pixels with three
# colour channels, rescaled here to the full colour range one by one. Networks trained on natural images tend
# to learn oriented edges and colour-opponent blobs in their first layer (Krizhevsky et al., 2012; Yosinski et
# al., 2014); at 3x3 the patterns are small, but look for light-dark and colour contrasts.

# %%
filters = model.features.stem[0].weight.detach().cpu().permute(0, 2, 3, 1)  # out, height, width, colour
low, high = filters.amin(dim=(1, 2, 3), keepdim=True), filters.amax(dim=(1, 2, 3), keepdim=True)
filters = ((filters - low) / (high - low)).numpy()
columns = 8
rows = -(-len(filters) // columns)  # ceiling division
fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8 + 0.4), squeeze=False)
for index, ax in enumerate(axes.ravel()):
    if index < len(filters):
        ax.imshow(filters[index], interpolation="nearest")
    ax.axis("off")
fig.suptitle(f"the {len(filters)} first-layer filters of the source model", fontsize=9)
plt.show()

# %% [markdown]
# ## A learning-rate range test: fine-tuning against training from scratch
# Smith's range test (fast.ai's `lr_find`): train for a hundred steps while the learning rate grows
# exponentially from 10⁻⁴ to 10, and record the loss. The loss falls while the rate is useful and blows up
# once it is too high; a common choice is a rate somewhat below the one where the (smoothed) loss is lowest.
# We run it twice on the *target* task (classes 5-9, 1,000 labelled images): from this source model's
# features with a new head, and from random weights. Notebooks 04 and 05 fine-tune at rate 0.01 and train
# from scratch at rate 0.2 (the peak of a one-cycle schedule); the cell after the plot sets both against this
# run's curves.

# %%
def lr_range_test(net: nn.Module, images, labels, steps: int = 100, low: float = 1e-4, high: float = 10.0
                  ) -> tuple[list[float], list[float]]:
    """Train a copy of net while the learning rate grows from low to high; return the rates and the losses."""
    net = copy.deepcopy(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=low, momentum=0.9, nesterov=True)
    factor = (high / low) ** (1 / (steps - 1))
    batches = torch_data.endless_batches(images, labels, batch_size=64, seed=SEED)
    rates, losses = [], []
    net.train()
    for _ in range(steps):
        x, y = (tensor.to(device) for tensor in next(batches))
        loss = nn.functional.cross_entropy(net(x), y)
        if not torch.isfinite(loss) or (losses and loss.item() > 4 * min(losses)):
            break  # diverged: the rest of the range is too high
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rates.append(optimizer.param_groups[0]["lr"])
        losses.append(loss.item())
        for group in optimizer.param_groups:
            group["lr"] *= factor
    return rates, losses


def smoothed(losses: list[float], beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction, as fast.ai smooths its range test."""
    average, out = 0.0, []
    for step, loss in enumerate(losses, 1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**step))
    return np.array(out)


target = splits.task_data(cifar, "target")
x_lr, y_lr = splits.get_split(target, "train", seed=SEED, labels_per_class=200)
transferred = copy.deepcopy(model)
transferred.head = nn.Linear(transferred.feature_dim, target.num_classes).to(device)
range_tests = {"fine-tuning (source features)": transferred,
               "from scratch (random weights)": torch_train.to_device(models.course_net(target.num_classes), device)}
fig, ax = plt.subplots(figsize=(6, 3.5))
best_rates = {}
for name, net in range_tests.items():
    rates, losses = lr_range_test(net, x_lr, y_lr, steps=config["range_test_steps"])
    curve = smoothed(losses)
    best_rates[name] = rates[int(curve.argmin())]
    ax.plot(rates, curve, label=f"{name}: lowest at {best_rates[name]:.2g}")
ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title="learning-rate range test")
ax.legend(fontsize=8)
plt.show()
print("smoothed loss lowest at: " + "; ".join(f"{name} {rate:.3g}" for name, rate in best_rates.items()))

# %% [markdown]
# Read the two curves against each other. The test watches the training loss for a hundred steps, and most of
# the early drop in the fine-tuning curve comes from the new head, which a high rate suits; what a high rate
# costs in fine-tuning, source features overwritten, shows only in accuracy on unseen images after a full
# schedule (notebook 05's exercise 1 runs `LR = 0.1`). So read a range test as the place where training falls
# apart, and keep fine-tuning well below it. The cell below says what this run's curves mean for the course's
# two rates. One seed and a hundred steps make it a quick heuristic, not an optimum.

# %%
FINE_TUNING_RATE, SCRATCH_PEAK_RATE = 0.01, 0.2  # notebooks 04/05: fine-tuning, and one-cycle scratch's peak
fine_tuning_low, scratch_low = best_rates["fine-tuning (source features)"], best_rates["from scratch (random weights)"]
print(f"Smoothed loss lowest at {fine_tuning_low:.2g} for fine-tuning and {scratch_low:.2g} from scratch: the "
      f"pretrained network took the {'higher' if fine_tuning_low > scratch_low else 'lower'} rate"
      + (", the opposite of the usual advice to fine-tune gently." if fine_tuning_low > scratch_low else "."))
margin = fine_tuning_low / FINE_TUNING_RATE
print(f"Fine-tuning at {FINE_TUNING_RATE} is " + (f"{margin:.1f} times below its minimum: short of where training "
                                                  "falls apart." if margin > 1 else
                                                  f"above its minimum ({fine_tuning_low:.2g}): this run's test says "
                                                  "fine-tune lower."))
print(f"Scratch peaks at {SCRATCH_PEAK_RATE}, {SCRATCH_PEAK_RATE / scratch_low:.1f} times its minimum: one-cycle "
      "holds that peak only briefly, after a warm-up from a rate far lower, and a range test of constant-rate steps "
      "from random weights says little about a peak that a warmed-up network passes through.")

# %%
run_folder = reporting.run_dir("03_pretrain_source_model", OUTPUT_DIR)
metrics_path = reporting.save_run(
    run_folder, config, source.identity,
    {"source_test_acc": result["acc"], "source_test_acc_plain": plain["acc"], "per_class_acc": per_class,
     "train_seconds": round(train_seconds, 1), "reused_checkpoint": reused, "history": history,
     "lr_range_test_lowest": best_rates},
    checkpoint=str(path))

# %% [markdown]
# ## Exercises
#
# 1. Set `LABEL_SMOOTHING = 0.0` and `FORCE_RETRAIN = True`. Does the test accuracy change by more than the
#    spread you see between two seeds?
# 2. Which source class is hardest (lowest per-class accuracy in the table printed above), and which CIFAR-10
#    class outside the source task would you expect it to be confused with if it were present?
# 3. Corrupt the checkpoint (append a byte to the `.pt` file) and rerun the reuse cell. What happens, and why
#    is that better than retraining silently?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Measure it: retrain with at least two seeds (`SEED`) for each ε, and compare the difference between the
#    two ε means with the spread between seeds of the same ε; a difference inside that spread is no
#    difference. On the source task expect little: smoothing mostly changes how confident the logits are. The
#    place to look is transfer: label smoothing pulls each class's features together and discards what the
#    source labels do not need (Kornblith et al., 2021), which a frozen probe on a *new* task may need. So run
#    notebook 05 from each checkpoint (50 labels per class, the same seeds) with the linear probe and with LP-FT,
#    which adapts the features: the paper's trade-off shows as the ε = 0 model's probe leading by more than the
#    seed spread while its source accuracy and LP-FT do not. The course keeps ε = 0.2 because its main
#    strategies (full fine-tuning, LP-FT) adapt the features; if your comparison shows a gap beyond the seed
#    spread for the strategy you use, the other ε is the better choice for you. (Retraining overwrites the
#    profile's checkpoint; the next run with the default settings retrains with ε = 0.2.)
# 2. Read it off the per-class table: the lowest accuracy is the hardest class, and the line under the table
#    says how far the runner-up is and whether their intervals overlap; if they do, which one is last may change
#    with the seed. Animal classes tend to come last in CIFAR-10: they vary more in pose, shape and background
#    than the vehicles do. Likely confusions outside the source task (all of them target classes): *cat*
#    with *dog*, *deer* with *horse*, *bird* with *frog* (and with *airplane*, inside it); for the vehicles,
#    *automobile* with *truck* and *airplane* with *ship*.
# 3. `load_checkpoint` raises `CheckpointCorrupt`, naming the file and telling you to delete it: a damaged
#    source model would otherwise poison every transfer result downstream without anyone noticing.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. fast.ai offers a second reading of the range test: the rate where the smoothed loss falls *fastest*.
#    Write `steepest_rate(rates, curve)`: the rate at which the slope of the smoothed loss against log(rate) is
#    most negative (`np.gradient` gives the slope). Replace the `raise` line, run the check, then compare
#    `steepest_rate` for the two curves above. Reference solution: `solutions/03_pretrain_source_model.py`.

# %%
def steepest_rate(rates: list[float], curve: np.ndarray) -> float:
    """The learning rate at which the smoothed loss falls fastest against log(rate)."""
    raise NotImplementedError  # your code here


# %%
exercises.check("03.1", steepest_rate)


# %% [markdown]
# ## Summary
# - The course's source model is a compact residual CNN trained on CIFAR-10 classes 0-4.
# - Augmentation, one-cycle SGD, label smoothing and flip TTA make a small network train well on a CPU.
# - The checkpoint carries its classes, normalization, accuracy, configuration, versions and hash; it is
#   reused only when all of these match, and loaded with `weights_only=True`.
#
# ## References
# - Krizhevsky (2009). *Learning multiple layers of features from tiny images*. Technical report, University
#   of Toronto (CIFAR-10).
# - He, Zhang, Ren, Sun (2016). *Deep residual learning for image recognition*. CVPR.
# - Müller, Kornblith, Hinton (2019). *When does label smoothing help?* NeurIPS.
# - Smith, Topin (2019). *Super-convergence: very fast training of neural networks using large learning
#   rates*. SPIE Artificial Intelligence and Machine Learning for Multi-Domain Operations Applications (the
#   one-cycle schedule).
# - Kornblith, Chen, Lee, Norouzi (2021). *Why do better loss functions lead to less transferable features?*
#   NeurIPS.
