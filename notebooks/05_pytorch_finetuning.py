# %% [markdown]
# # 05 · Fine-tuning in PyTorch: every strategy, one notebook
#
# Take a pretrained network, give it a new head, and adapt it to a new task. *How much* of the network you
# let change, and *how fast*, is the whole craft. This notebook runs one strategy per execution (the
# `STRATEGY` parameter), so a sweep (`make bench`, or papermill yourself) can compare them all on equal terms.
#
# Two target tasks:
# - **(a) full CIFAR-10 from an ImageNet-pretrained torchvision backbone** (`WEIGHTS="imagenet"`, ResNet-18
#   by default, `MODEL` for another), inputs upscaled for the backbone;
# - **(b) the target split** (classes 5-9: dog, frog, horse, ship, truck) from the **course's own source model**
#   trained in notebook 03 on classes 0-4 (`WEIGHTS="course"`), fully offline.
#
# `WEIGHTS="auto"` (the default) uses ImageNet weights when they are cached or downloadable, and otherwise
# falls back to the course model, saying so loudly. Every run records which weights it used.
#
# **Learning objectives**
# - Replace a head; freeze a backbone correctly (no gradients *and* BatchNorm in eval mode).
# - Run and compare: training from scratch, a linear probe on cached features, fine-tuning the top block,
#   full fine-tuning, LP-FT, discriminative learning rates and L2-SP.
# - Know why fine-tuning uses a low learning rate, and why LP-FT initialises the head before unfreezing.
#
# **Estimated time** (course model, target task, 500 labels per class, `cpu` profile on 2 CPU cores):
# linear probe under 30 s including feature extraction (seconds once features are cached); each
# training strategy about 1.5 to 2.5 minutes (25 epochs), 20 to 45 s with 10 or 50 labels per class, except
# scratch (its own recipe: at least 600 steps, strong augmentation), about 1.5 minutes with 10 or 50 and 2.5 with
# 500; `CROSS_FIT = K` adds K trainings of the chosen strategy. `full`
# profile on one GPU (ImageNet ResNet-18 at 224x224 on every target image, bfloat16): about 5 min (a target,
# not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
WEIGHTS: str = "auto"  # imagenet, course, none or auto
MODEL: str = "resnet18"  # resnet18, resnet34, resnet50, mobilenet_v3_small, efficientnet_b0 or course_net
TASK: str = "auto"  # auto, all or target
STRATEGY: str = "lp_ft"  # scratch, linear_probe, finetune_top, finetune_full, lp_ft, discriminative or l2sp
VALIDATION: str = "labelled"  # labelled or oracle
LABELS_PER_CLASS: Optional[int] = None  # None lets the profile decide; 0 means every training image
IMAGE_SIZE: Optional[int] = None  # None means 32 for the course model, the profile's size for ImageNet backbones
NUM_EPOCHS: Optional[int] = None  # None lets the profile decide
LR: Optional[float] = None  # learning rate for pretrained layers; None lets the profile decide
BATCH_SIZE: Optional[int] = None  # None lets the profile decide
SEED: int = 0
CROSS_FIT: int = 0  # 0, or K folds of cross-fitted held-out predictions for calibration (finetune_full, lp_ft)
RECIPE: str = "own"  # own (the strategy's recipe) or scratch (scratch's augmentation, weight decay and steps for k)
IMAGE_PATH: Optional[str] = None  # a photo of yours to classify at the end; None uses a test image
OUTPUT_DIR: Optional[str] = None  # None means outputs/05_pytorch_finetuning

# %% [markdown]
# ## Setup

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from helpers import (
    data,
    exercises,
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
from helpers import transfer_math as tm
from helpers.progress import progress_bar  # tqdm that a saved notebook shows finished

parameters.check_parameters(globals(), choices={  # unknown names, wrong types, out-of-range values: refused here
    "STRATEGY": ("scratch", "linear_probe", "finetune_top", "finetune_full", "lp_ft", "discriminative", "l2sp"),
    "TASK": ("auto", "all", "target"), "MODEL": models.VALID_MODELS, "WEIGHTS": models.VALID_WEIGHTS,
    "CROSS_FIT": (0, 2, 3, 4, 5), "RECIPE": profiles.RECIPES})
if CROSS_FIT and (STRATEGY not in ("finetune_full", "lp_ft") or VALIDATION != "labelled"):
    raise ValueError(f"CROSS_FIT={CROSS_FIT} makes held-out predictions for an honest fine-tuning run: use it with "
                     f"STRATEGY 'finetune_full' or 'lp_ft' and VALIDATION='labelled' (got {STRATEGY!r}, "
                     f"{VALIDATION!r}), or set CROSS_FIT=0.")
PROBE_STRENGTHS = torch_train.PROBE_STRENGTHS  # values of C the linear probe tries, 0.003 to 1.0

plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("05_pytorch_finetuning", PROFILE, num_epochs=NUM_EPOCHS, batch_size=BATCH_SIZE,
                                 lr=LR, labels_per_class=LABELS_PER_CLASS)
config.update(dataset_requested=DATASET, weights_requested=WEIGHTS, model_requested=MODEL, strategy=STRATEGY,
              seed=SEED, cross_fit=CROSS_FIT)
if problem := torch_train.labels_problem(STRATEGY, config["labels_per_class"], VALIDATION, CROSS_FIT):
    raise parameters.ParameterError(problem)  # refused now, not after the main model has trained
run_start = time.perf_counter()

# %% [markdown]
# ## The pretrained network, and which weights it carries
# `source_model` returns the network *with its original head* (1000 ImageNet classes, or the five source
# classes) and a record of the exact weights: the file name for ImageNet weights, the checkpoint's SHA-256 for
# the course model. If the course model has not been trained yet for this profile, notebook 03 runs first.

# %%
source_start = time.perf_counter()
model, weights_info = models.source_model(WEIGHTS, MODEL, config["profile"], DATASET)
run_start += time.perf_counter() - source_start  # loading it (or training it first, notebook 03) is not this run
task = TASK if TASK != "auto" else ("target" if model.name == "course_net" else "all")
image_size = IMAGE_SIZE or (32 if model.name == "course_net" else config["imagenet_image_size"])
models.check_image_size(model.name, image_size)
normalize = "cifar10" if model.name == "course_net" else "imagenet"
config.update(weights=weights_info["weights"], model=model.name, task=task, image_size=image_size,
              normalize=normalize)
print(reporting.weights_line(weights_info))
print(f"task: {task}, input {image_size}x{image_size}, normalization: {normalize}")

# %% [markdown]
# ## Target data, and an honest few-label protocol
# In few-label runs we keep `LABELS_PER_CLASS` images of each class from the task's training set. The test set
# is used once, at the end.
#
# Every *choice* made on labelled data (here: the linear probe's regularisation strength) must use only those
# labelled images, because a user with 50 labels per class does not have 2,500 more to validate on (Oliver et
# al., 2018). With `VALIDATION = "labelled"` (the default) choices are made by k-fold cross-validation over the
# labelled images, and the fine-tuning recipe itself is fixed in advance (no early stopping, no best epoch), so
# it needs no validation set. `VALIDATION = "oracle"` instead chooses on a stratified 10% validation split of the
# training set (2,500 images on the target task): notebook 06 measures how much that inflates the results.
#
# **Scratch gets a recipe of its own.** A network that starts from random weights and sees 50 or 250 images needs
# many more steps, stronger augmentation (RandAugment and cutout after the crop and flip) and stronger weight decay
# than one that starts from good features; run with the fine-tuning recipe it would understate itself, and so
# overstate what transfer buys. Its recipe (`profiles.scratch_recipe`) was chosen among 8 candidates (2
# augmentations x 2 weight decays x 2 step counts), more than the probe's 6 values of C, on a **proxy** of the same
# shape: the five *source* classes with the same k labels per class (`make bench-scratch`, at 10, 50 and 500; other
# k take the nearest one's), so no target label beyond the k is read.
#
# **So do full fine-tuning and LP-FT, by the same rule.** Their recipes (`profiles.TRANSFER_RECIPES`) are chosen
# among the same 8 candidates on a proxy *transfer* task that also reads no target label: a network trained on three
# source classes, fine-tuned to the other two with the same k labels (`make bench-transfer-recipe`). Scratch and the
# two fine-tuning strategies then carry equal budgets of choices, made the same way (measured at 10 and 50 labels per
# class; with more labels the table still holds the fixed recipe, not yet measured there). The other strategies keep the
# fixed recipe (crop and flip, weight decay 5e-4, the profile's floor on steps), which `RECIPE = "fixed"` also gives
# full fine-tuning and LP-FT; `RECIPE = "scratch"` trains any strategy with scratch's recipe for the same k, an arm
# the course's comparison runs beside LP-FT.

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
models.check_source_data(weights_info, cifar.identity)  # a source model trained on other data is refused
target = splits.task_data(cifar, task)
per_class = config["labels_per_class"] or None
train_idx, val_idx = splits.labelled_split(target, per_class, VALIDATION, seed=SEED)
x_train, y_train = target.x_train[train_idx], target.y_train[train_idx]
num_labelled = len(train_idx) + (0 if val_idx is None else len(val_idx))
config.update(validation=VALIDATION, num_labelled=num_labelled)
print(f"{target.class_names}: train {len(y_train)} ({per_class or 'all'} per class), "
      + ("no validation split (choices by cross-validation)" if val_idx is None else f"validation {len(val_idx)}")
      + f", test {len(target.y_test)}; labelled images used: {num_labelled}")

loader_args = {"image_size": image_size, "normalize": normalize}
recipe = profiles.training_recipe(STRATEGY, RECIPE, config["profile"], per_class)  # scratch's table, or fine-tuning's
config.update(recipe=recipe, recipe_name="scratch" if STRATEGY == "scratch" else RECIPE)
train_loader = torch_data.make_loader(x_train, y_train, train=True, batch_size=config["batch_size"], seed=SEED,
                                      strong=recipe["augment"] == "strong", **loader_args)
val_loader = (None if val_idx is None else
              torch_data.make_loader(target.x_train[val_idx], target.y_train[val_idx], train=False, batch_size=256,
                                     **loader_args))
test_loader = torch_data.make_loader(target.x_test, target.y_test, train=False, batch_size=256, **loader_args)
num_epochs = max(config["num_epochs"], math.ceil(recipe["min_steps"] / len(train_loader)))
config.update(augment=recipe["augment"], steps=num_epochs * len(train_loader))
print(f"{num_epochs} epochs of {len(train_loader)} step{'s' * (len(train_loader) > 1)} (at least {recipe['min_steps']} "
      f"steps in all), {recipe['augment']} augmentation")

# %% [markdown]
# ## A new head
# Whatever the strategy, the source head answers the wrong question (ImageNet's 1000 classes, or the five
# source classes), so it is replaced by a freshly initialised linear layer with one output per target class.
# `scratch` goes further and re-initialises everything: same architecture, no transfer.

# %%
if STRATEGY == "scratch":
    model = models.untrained_like(model)
    weights_info = {"weights": "none", "model": model.name, "note": "scratch: architecture only, random init"}
    config["weights"] = "none"
model.head = nn.Linear(model.feature_dim, target.num_classes)
model = torch_train.to_device(model, device)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
lr = config["lr"]
frozen: list[nn.Module] = []
history: list[dict] = []

# %% [markdown]
# ## Linear probe on cached features (`linear_probe`, and the first half of `lp_ft`)
# **Feature transfer**: keep the extractor frozen and fit only a linear classifier on its features. With the
# extractor frozen, features never change, so we compute them **once** per model, resolution and data (no
# augmentation) and store them on disk; the probe is multinomial logistic regression, a convex problem that
# scikit-learn solves in seconds.
#
# Its one knob is the L2 strength (scikit-learn's `C`, the *inverse* strength). With a few hundred images the
# features separate the classes almost perfectly, so an unregularised probe grows large weights that fit the
# training images and generalise worse; we score each `C` (by cross-validation over the labelled images, or on
# the oracle split), keep the best and refit it on all labelled images. For LP-FT it matters twice: a
# small-weight head is also a gentle start for fine-tuning.

# %%
if STRATEGY in ("linear_probe", "lp_ft"):
    key = {"model": model.name, "weights": weights_info.get("sha256") or weights_info.get("file", "none"),
           "image_size": image_size, "normalize": normalize, "data": torch_train.data_key(target.identity),
           "task": task, "num_train": len(target.y_train)}
    extract = lambda x: torch_train.extract_features(
        model.features, torch_data.make_loader(x, np.zeros(len(x), dtype=int), train=False, batch_size=256,
                                                **loader_args), device)
    all_train_features, feature_file, cache_hit = torch_train.cached_features({**key, "split": "train"},
                                                                               lambda: extract(target.x_train))
    test_features, _, _ = torch_train.cached_features({**key, "split": "test"}, lambda: extract(target.x_test))
    print(f"features {all_train_features.shape} {'loaded from' if cache_hit else 'computed and saved to'} "
          f"{paths.shown(feature_file.parent)}")
    probe_start = time.perf_counter()
    if val_idx is None:  # honest: k-fold cross-validation over the labelled images only
        probe_val_scores, out_of_fold = torch_train.cross_validated_probe(all_train_features[train_idx], y_train,
                                                                          PROBE_STRENGTHS, seed=SEED)
    else:  # oracle: score each C on the large validation split
        probe_val_scores = {}
        for c in PROBE_STRENGTHS:
            scaler, probe = torch_train.fit_linear_probe(all_train_features[train_idx], y_train, c=c, seed=SEED)
            probe_val_scores[c] = probe.score(scaler.transform(all_train_features[val_idx]), target.y_train[val_idx])
    probe_c = max(probe_val_scores, key=probe_val_scores.get)  # inverse L2 strength: smaller C, smaller weights
    scaler, probe = torch_train.fit_linear_probe(all_train_features[train_idx], y_train, c=probe_c, seed=SEED)
    probe_seconds = time.perf_counter() - probe_start
    probe_val_acc = probe_val_scores[probe_c]
    how = "cross-validation on the labelled images" if val_idx is None else "the oracle validation split"
    print(reporting.markdown_table([{"C": c, "accuracy": score} for c, score in probe_val_scores.items()],
                                   ["C", "accuracy"]))
    print(f"linear probe: C = {probe_c} chosen by {how} ({probe_val_acc:.4f}); {probe_seconds:.1f} s")

# %% [markdown]
# ## Fine-tuning the top block (`finetune_top`)
# Freeze the extractor except its last block. Freezing takes two steps: `requires_grad = False` stops the
# weights, and keeping the frozen modules in **eval mode** stops their BatchNorm running statistics from
# drifting towards the target data (`fit` re-applies eval mode to `frozen` at every epoch).

# %%
if STRATEGY == "finetune_top":
    top = models.top_block(model)
    for parameter in model.features.parameters():
        parameter.requires_grad = False
    for parameter in top.parameters():
        parameter.requires_grad = True
    frozen = models.blocks_in_order(model)[:-2]  # every block below the top one
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"training {sum(p.numel() for p in trainable):,} of {sum(p.numel() for p in model.parameters()):,} "
          "parameters")
    param_groups = [{"params": list(top.parameters()), "lr": lr * 5}, {"params": model.head.parameters(),
                                                                        "lr": lr * 10}]

# %% [markdown]
# ## Full fine-tuning, LP-FT, discriminative rates and L2-SP
# **Parameter transfer**: start from the source weights and train everything, with a learning rate low
# enough that the useful features survive.
# - `finetune_full`: one low learning rate for all layers, the new head included.
# - `lp_ft` (Kumar et al., 2022): first the linear probe above, copied into the head, *then* full
#   fine-tuning. The gradient that reaches the features is the head's weights times the head's errors
#   (notebook 02). With a random head the errors are large and point in directions set by a head that does
#   not fit the task yet, so while the head learns, the features are reshaped to suit it: Kumar et al. call
#   this *feature distortion*. A head that already fits the task makes small errors, so the features move
#   less, and only where the task needs them to.
# - `discriminative` (Howard & Ruder, 2018): layer-wise rates, the head fastest and each block below it half
#   as fast as the one above, since early layers hold the most general features.
# - `l2sp` (Li et al., 2018): instead of weight decay towards zero, pull the transferred weights towards
#   their *starting point* w0: loss + α/2 ‖w − w0‖² + β/2 ‖w_head‖².

# %%
if STRATEGY == "lp_ft":  # the probe becomes the head: fold its standardisation (x - mean) / scale into W and b
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    folded_weight = probe.coef_ / scale  # W (x - mean) / scale + b = (W / scale) x + (b - (W / scale) mean)
    folded_bias = probe.intercept_ - folded_weight @ scaler.mean_
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(folded_weight, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(folded_bias, dtype=model.head.bias.dtype))
if STRATEGY in ("finetune_full", "lp_ft"):
    param_groups = [{"params": model.parameters(), "lr": lr}]
if STRATEGY == "discriminative":
    blocks = models.blocks_in_order(model)  # input side first, head last
    param_groups = tm.layerwise_lr_groups(blocks, base_lr=lr * 10, decay=0.5)  # head 10x lr, each block below half
    print("learning rate per block:", [f"{group['lr']:.5f}" for group in param_groups])
if STRATEGY == "l2sp":
    alpha, beta = 0.01, 0.01
    anchors = [p.detach().clone() for p in model.features.parameters()]
    cross_entropy = loss_fn

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy plus L2-SP: pull transferred weights to their start, the new head to zero."""
        penalty = tm.l2sp_penalty(list(model.features.parameters()), anchors, [model.head.weight], alpha, beta)
        return cross_entropy(logits, labels) + penalty  # alpha/2 ||w - w0||^2 + beta/2 ||head||^2, notebook 02

    param_groups = [{"params": model.parameters(), "lr": lr}]
if STRATEGY == "scratch":
    param_groups = [{"params": model.parameters(), "lr": 0.2 if model.name == "course_net" else 0.1}]

# %% [markdown]
# ## Train
# The same loop for every strategy, written out here (later notebooks call the same loop as
# `torch_train.fit`; a test checks that both give the same history on a fixed seed). Per epoch: switch to
# train mode but keep the frozen parts in eval mode (their BatchNorm statistics must not drift), then per batch
# the forward pass, the loss, the backward pass, an optimizer step and a scheduler step (the one-cycle rate
# changes every batch). Only in the oracle setting is there a validation split, evaluated about 15 times per
# run to draw the learning curve; it chooses nothing, so the loop keeps the last weights, not the "best" ones
# (with k labels per class there is no honest split to pick them on). On a GPU it runs in bfloat16 autocast
# (float16 with a gradient scaler on a GPU without bfloat16: `runtime.autocast` and `runtime.optimizer_step` hold
# that rule for every loop in the course), channels-last.

# %%
def train(model: nn.Module, train_loader, val_loader, optimizer: torch.optim.Optimizer, scheduler,
          num_epochs: int, loss_fn, frozen: list[nn.Module], desc: str = "training") -> list[dict]:
    """Train for num_epochs, stepping the scheduler per batch; return one history row per epoch."""
    validate_every, history = max(1, num_epochs // 15), []
    scaler = runtime.grad_scaler(device)  # active only in float16, on a GPU without bfloat16
    for epoch in progress_bar(range(1, num_epochs + 1), desc=desc, unit="epoch"):
        start = time.perf_counter()
        torch_train.set_train_mode(model, frozen)  # model.train(), then frozen modules back to eval()
        total_loss, correct, seen = 0.0, 0, 0
        for images, labels in train_loader:
            images = images.to(device, memory_format=torch.channels_last)
            labels = labels.to(device)
            with runtime.autocast(device):  # bfloat16 (or float16) on a GPU, float32 elsewhere
                logits = model(images)
                loss = loss_fn(logits, labels)
            runtime.optimizer_step(optimizer, loss, scaler)  # zero the gradients, backward, step
            scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        row = {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen,
               "seconds": time.perf_counter() - start}
        if val_loader is not None and (epoch % validate_every == 0 or epoch == num_epochs):
            result = torch_train.evaluate(model, val_loader, device)  # eval mode, no gradients
            row.update(val_loss=result["loss"], val_acc=result["acc"])
        history.append(row)
    return history


# %% [markdown]
# SGD with Nesterov momentum, the one-cycle schedule, weight decay (none for L2-SP, which has its own
# penalty; scratch's own, ten times the usual), a fixed number of epochs:

# %%
def sgd_one_cycle(param_groups: list[dict], epochs: int, steps_per_epoch: int, weight_decay: float):
    """SGD with Nesterov momentum and weight decay, and the one-cycle schedule peaking at each group's rate."""
    optimizer = torch.optim.SGD(param_groups, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], pct_start=0.2, epochs=epochs,
        steps_per_epoch=steps_per_epoch)


transferred_blocks = models.blocks_in_order(model)[:-1]  # input side first; the head is new, so not counted
start_weights = [[p.detach().clone() for p in block.parameters()] for block in transferred_blocks]
if STRATEGY != "linear_probe":
    weight_decay = 0.0 if STRATEGY == "l2sp" else recipe["weight_decay"]
    config["weight_decay"] = weight_decay
    optimizer, scheduler = sgd_one_cycle(param_groups, num_epochs, len(train_loader), weight_decay)
    history = train(model, train_loader, val_loader, optimizer, scheduler, num_epochs, loss_fn, frozen, STRATEGY)

# %% [markdown]
# ## Held-out predictions without a validation split: cross-fitting (`CROSS_FIT`)
# Calibration (notebook 06) needs predictions on labelled images the model did not train on, and the honest
# protocol has no validation split. **Cross-fitting** makes them from the labelled images alone: split them into
# `CROSS_FIT` folds; for each fold, run the same recipe again from the source weights on the other folds (for
# LP-FT the probe's C is chosen again, by cross-validation on those folds only) and predict the held-out fold.
# Every labelled image then gets one prediction from a model like the final one that never saw it, trained for
# the same number of steps on (K-1)/K of the labels. It costs K more trainings, so it is off by default; the
# course's comparison turns it on for the run notebook 06 looks at closely.

# %%
cross_fit_probs, cross_fit_start = None, time.perf_counter()
if CROSS_FIT:
    folds = StratifiedKFold(CROSS_FIT, shuffle=True, random_state=SEED)
    cross_fit_probs = np.zeros((len(y_train), target.num_classes), dtype=np.float32)
    for fold, (fit_part, held_part) in enumerate(folds.split(x_train, y_train), 1):
        fold_model = models.source_model(WEIGHTS, MODEL, config["profile"], DATASET)[0]
        fold_model.head = nn.Linear(fold_model.feature_dim, target.num_classes)
        if STRATEGY == "lp_ft":
            fold_features = all_train_features[train_idx][fit_part]
            fold_scores, _ = torch_train.cross_validated_probe(fold_features, y_train[fit_part], PROBE_STRENGTHS,
                                                               seed=SEED)
            torch_train.probe_to_head(*torch_train.fit_linear_probe(
                fold_features, y_train[fit_part], c=max(fold_scores, key=fold_scores.get), seed=SEED), fold_model.head)
        fold_model = torch_train.to_device(fold_model, device)
        fold_loader = torch_data.make_loader(x_train[fit_part], y_train[fit_part], train=True,
                                             batch_size=config["batch_size"], seed=SEED + fold,
                                             strong=recipe["augment"] == "strong", **loader_args)
        fold_epochs = math.ceil(num_epochs * len(train_loader) / len(fold_loader))  # the same number of steps
        fold_optimizer, fold_scheduler = sgd_one_cycle([{"params": fold_model.parameters(), "lr": lr}], fold_epochs,
                                                       len(fold_loader), weight_decay)
        train(fold_model, fold_loader, None, fold_optimizer, fold_scheduler, fold_epochs, loss_fn, [],
              f"fold {fold}/{CROSS_FIT}")
        held_loader = torch_data.make_loader(x_train[held_part], y_train[held_part], train=False, batch_size=256,
                                             **loader_args)
        cross_fit_probs[held_part] = torch_train.evaluate(fold_model, held_loader, device, flip_tta=True)["probs"]
    print(f"cross-fitted: {CROSS_FIT} folds, held-out accuracy on the {len(y_train)} labelled images "
          f"{(cross_fit_probs.argmax(1) == y_train).mean():.4f}, {time.perf_counter() - cross_fit_start:.0f} s")
cross_fit_seconds = time.perf_counter() - cross_fit_start
run_start += cross_fit_seconds  # the run's own time stays comparable with runs that do not cross-fit

# %% [markdown]
# ## Results

# %%
if STRATEGY == "linear_probe":
    test_probs = probe.predict_proba(scaler.transform(test_features))
else:
    test_probs = torch_train.evaluate(model, test_loader, device, flip_tta=True)["probs"]
if val_loader is not None:  # held-out predictions, for calibration in notebook 06
    val_y = target.y_train[val_idx]
    val_probs = (probe.predict_proba(scaler.transform(all_train_features[val_idx])) if STRATEGY == "linear_probe"
                 else torch_train.evaluate(model, val_loader, device, flip_tta=True)["probs"])
elif STRATEGY == "linear_probe":  # out-of-fold predictions of the chosen C: held out, and labelled images only
    val_y, val_probs = y_train, out_of_fold[probe_c]
elif cross_fit_probs is not None:  # cross-fitted: held out too, and labelled images only
    val_y, val_probs = y_train, cross_fit_probs
else:
    val_y, val_probs = None, None
val_acc = None if val_probs is None else float((val_probs.argmax(1) == val_y).mean())
test_acc = float((test_probs.argmax(1) == target.y_test).mean())
wall_seconds = time.perf_counter() - run_start
held_out = "-" if val_acc is None else f"{val_acc:.4f}"
print(f"{STRATEGY} with {config['weights']} weights, {per_class or 'all'} labels per class ({VALIDATION}): "
      f"held-out {held_out}, test {test_acc:.4f} (chance {1 / target.num_classes:.2f}), {wall_seconds:.0f} s")

if history:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    validated = [r for r in history if "val_acc" in r]
    ax.plot([r["epoch"] for r in history], [r["train_acc"] for r in history], label="train (augmented)")
    if validated:
        ax.plot([r["epoch"] for r in validated], [r["val_acc"] for r in validated], "o-", label="validation (oracle)")
    ax.set(xlabel="epoch", ylabel="accuracy", title=f"{STRATEGY}: learning curve")
    ax.legend()
    plt.show()

# %% [markdown]
# ## Your own image
# Set `IMAGE_PATH` (in the parameters cell) to a photo of yours: it is cropped to a square, shrunk to 32x32 like
# CIFAR-10 and classified into the five target classes. Without one, the first test image stands in. A photo
# of something that is none of the five still gets an answer: the probabilities always sum to one.

# %%
if IMAGE_PATH:
    picture, picture_label = data.read_own_image(IMAGE_PATH), "your image"
else:
    picture, picture_label = target.x_test[0], f"test image 0 (a {target.class_names[target.y_test[0]]})"
picture_loader = torch_data.make_loader(picture[None], np.zeros(1, dtype=int), train=False, **loader_args)
if STRATEGY == "linear_probe":
    picture_features = torch_train.extract_features(model.features, picture_loader, device, progress=False)
    picture_probs = probe.predict_proba(scaler.transform(picture_features))[0]
else:
    picture_probs = torch_train.evaluate(model, picture_loader, device, flip_tta=True)["probs"][0]
top3 = np.argsort(picture_probs)[::-1][:3]
fig, ax = plt.subplots(figsize=(2, 2))
ax.imshow(picture)
ax.axis("off")
ax.set_title(picture_label, fontsize=8)
plt.show()
print("top 3: " + ", ".join(f"{target.class_names[k]} {picture_probs[k]:.2f}" for k in top3))

# %% [markdown]
# ## How far did each block move?
# Fine-tuning starts from the source weights; how far it carries each block is one way to see what it
# changed. For each transferred block, the **relative weight change** ‖w − w₀‖ / ‖w₀‖ over all its weights
# (w₀: the weights before training). Notebook 06 sets full fine-tuning and LP-FT side by side, from the runs
# of the comparison; Kumar et al.'s argument (notebook 02) predicts that LP-FT moves the features less.

# %%
def relative_change(block: nn.Module, start: list[torch.Tensor]) -> float:
    """||w - w0|| / ||w0|| over all of a block's weights: how far training moved it from where it began."""
    moved = sum(((p.detach() - p0) ** 2).sum() for p, p0 in zip(block.parameters(), start, strict=True))
    return float((moved / sum((p0 ** 2).sum() for p0 in start)).sqrt())


block_change = {f"block {i}": relative_change(block, start)
                for i, (block, start) in enumerate(zip(transferred_blocks, start_weights, strict=True), 1)}
if STRATEGY in ("scratch", "linear_probe"):
    print(f"{STRATEGY}: no transferred weights were fine-tuned, so there is no change to measure.")
    block_change = {}
else:
    print(reporting.markdown_table([{"block": name, "relative change": round(change, 4)}
                                    for name, change in block_change.items()], ["block", "relative change"]))

# %% [markdown]
# ## Record the run
# One `metrics.json` per run: the full effective configuration, the data and weights identities, versions,
# device, per-epoch curves, accuracies, wall time and the test predictions; class probabilities (test, and
# held-out predictions when the run has them: out-of-fold for the probe, cross-fitted, or a validation split under
# oracle) go to `predictions.npz` beside it for the evaluation notebook.

# %%
run_folder = reporting.run_dir("05_pytorch_finetuning", OUTPUT_DIR)
held_out_predictions = {} if val_probs is None else {"val_y_true": val_y, "val_probs": val_probs.astype(np.float32)}
reporting.save_predictions(run_folder, y_true=target.y_test, probs=test_probs.astype(np.float32),
                           **held_out_predictions)
metrics = {"val_acc": val_acc, "test_acc": test_acc, "wall_seconds": round(wall_seconds, 1), "history": history,
           "num_train": len(y_train), "num_labelled": num_labelled,
           "num_epochs": 0 if STRATEGY == "linear_probe" else num_epochs, "block_change": block_change,
           "cross_fit_seconds": round(cross_fit_seconds, 1)}
if STRATEGY in ("linear_probe", "lp_ft"):
    metrics.update(probe_seconds=round(probe_seconds, 2), probe_val_acc=probe_val_acc, features_cached=cache_hit,
                   probe_c=probe_c, probe_val_scores={str(c): score for c, score in probe_val_scores.items()})
metrics_path = reporting.save_run(run_folder, config, target.identity, metrics, weights=weights_info,
                                  framework="pytorch", class_names=target.class_names,
                                  test_predictions=test_probs.argmax(1))

# %% [markdown]
# ## Exercises
#
# 1. Run `finetune_full` with `LR = 0.1` and with `LR = 0.01` on 50 labels per class, with
#    `VALIDATION = "oracle"` so that there is a learning curve. What happens to the validation accuracy in the
#    first epochs, and why?
# 2. For `finetune_top`, check that the frozen blocks' BatchNorm running means are the same before and after
#    training. What would change if the training loop did not keep them in eval mode?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. With 0.1 the first steps wreck the pretrained features (validation accuracy drops, sometimes below the
#    linear probe) and the run ends near what training from scratch reaches; a low rate keeps the features
#    and adapts them.
# 2. `frozen[0][1].running_mean` (the stem's BatchNorm) is unchanged, because `set_train_mode` puts every
#    frozen module back in eval mode each epoch. In train mode, BatchNorm would update its running statistics
#    from target batches even though no weight gets a gradient, silently changing the frozen features.
#
# </details>

# %% [markdown]
# ### Coding exercises
# 3. Write `freeze_all_but_last_stage(model)`: leave only the last residual stage (`features.stage3`), the
#    feature BatchNorm (`features.norm`) and the head trainable, and return the number of trainable parameters.
# 4. Write the L2-SP penalty, α/2 Σ‖w − w⁰‖² over the transferred weights plus β/2 Σ‖v‖² over the new head's
#    weights, as a tensor that gradients flow through.
#
# Replace each `raise` line with your code and run the check cell below it. Reference solutions:
# `solutions/05_pytorch_finetuning.py`.

# %%
def freeze_all_but_last_stage(model: nn.Module) -> int:
    """Freeze everything except features.stage3, features.norm and head; return the trainable count."""
    raise NotImplementedError  # your code here


# %%
exercises.check("05.1", freeze_all_but_last_stage)


# %%
def l2sp(params: list[torch.Tensor], anchors: list[torch.Tensor], head: list[torch.Tensor], alpha: float,
         beta: float) -> torch.Tensor:
    """alpha/2 sum ||w - w0||^2 over the transferred weights + beta/2 sum ||v||^2 over the head."""
    raise NotImplementedError  # your code here


# %%
exercises.check("05.2", l2sp)


# %% [markdown]
# ## Summary
# - Transfer = keep the extractor, replace the head; strategies differ in what they let change, and how fast.
# - Freezing means no gradients *and* BatchNorm in eval mode.
# - Linear probes are cheap and strong with few labels, especially on cached features; fine-tuning gains as the
#   labels grow. LP-FT fits the head before unfreezing, so fine-tuning starts from a head that fits the task;
#   which strategy is ahead depends on the label count (notebook 06 shows it with intervals). LP-FT's main
#   claimed advantage, robustness out of distribution (Kumar et al., 2022), is not tested in this notebook.
# - Every choice made on labelled data uses only the labelled images (cross-validation), or the run says it is
#   an "oracle" run.
# - Every run records its configuration, data, weights, versions and device next to its metrics.
#
# ## References
# - Kumar, Raghunathan, Jones, Ma, Liang (2022). *Fine-tuning can distort pretrained features and underperform
#   out-of-distribution*. ICLR.
# - Howard, Ruder (2018). *Universal language model fine-tuning for text classification*. ACL.
# - Li, Grandvalet, Davoine (2018). *Explicit inductive bias for transfer learning with convolutional networks*
#   (L2-SP). ICML.
# - Oliver, Odena, Raffel, Cubuk, Goodfellow (2018). *Realistic evaluation of deep semi-supervised learning
#   algorithms*. NeurIPS.
# - Kornblith, Shlens, Le (2019). *Do better ImageNet models transfer better?* CVPR.
