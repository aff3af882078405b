# %% [markdown]
# # 10 · Pretraining without labels: self-supervised source models
#
# Notebook 03 pretrained the course's source model with **labels**: 25,000 images of airplanes, cars, birds, cats
# and deer, each named. Pretraining as the field now does it starts without them: learn general features from
# many **unlabelled** images with a task the images set themselves (**self-supervised** learning), then transfer
# those features exactly as the earlier notebooks transferred 03's. SimCLR, MoCo, BYOL, DINO and MAE pretrain
# this way; CLIP replaces labels with captions.
#
# Here the same network as 03 learns from **the same 25,000 source images with their labels thrown away**, so
# "labels or not" is the only difference. Two families:
# - a **pretext task**: predict by how much an image was rotated (0, 90, 180 or 270 degrees; Gidaris et al., 2018).
#   To tell which way is up, the network has to recognise what is in the picture;
# - **contrastive learning**, SimCLR (Chen et al., 2020): two random views of each image (crops, flips, colour
#   distortion) must find each other among all the views of a batch (the NT-Xent loss).
#
# Then both are measured on the target task (dog, frog, horse, ship, truck) with 10, 50 and 500 labels per class,
# against random weights and against 03's supervised model, under the honest protocol: every choice made on the
# labelled images only, the test set touched once.
#
# **Learning objectives**
# - Read the NT-Xent loss, SimCLR's training step and the rotation batch as the notebook writes them; say what each
#   asks of the network and why that yields features. Write the kNN classifier the monitor uses and the supervised
#   contrastive loss yourself (the coding exercises at the end).
# - Monitor a self-supervised run without training a head (kNN accuracy on the target task), and read its loss.
# - Measure self-supervised transfer fairly: linear probe and LP-FT at 10, 50 and 500 labels per class, from
#   random, self-supervised and supervised weights, with intervals; measure which augmentation SimCLR needs.
# - Train SimCLR in Keras with a custom `train_step`, on the same views, and compare it with PyTorch at equal steps.
#
# **Estimated time** (`cpu` profile, 2 CPU cores, CIFAR-10 JPEG copy): about 10 minutes, pretraining included
# (the README's benchmark, which times each part; a second run reuses the hash-checked checkpoints and skips the
# pretraining part). `smoke` takes about a minute. It needs notebook 03's source model for the supervised rows
# (trained first if missing, as in 07-09).
# `full` profile on one GPU: about 5 min (a target, not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
METHOD: str = "all"  # all, simclr or rotation: which self-supervised models to pretrain and evaluate
AUGMENT: str = "full"  # SimCLR's views: full (crop, flip, colour), no_color or no_crop
UNLABELLED: str = "source"  # source (03's 25,000 images) or source+target (adds the target's training images)
PRETRAIN_STEPS: Optional[int] = None  # SimCLR's optimizer steps; None lets the profile decide
ROTATION_STEPS: Optional[int] = None  # the rotation model's steps; None lets the profile decide
SHORT_STEPS: Optional[int] = None  # steps of the augmentation ablation and of the Keras run; None: the profile
BATCH_SIZE: Optional[int] = None  # unlabelled images per step; None lets the profile decide
TEMPERATURE: float = 0.5  # NT-Xent's temperature (Chen et al.: 0.5 for CIFAR-10)
LR: float = 0.5  # SimCLR's peak learning rate (SGD with momentum, one-cycle schedule)
ROTATION_LR: float = 0.1  # the rotation model's peak learning rate (Gidaris et al.: 0.1)
ABLATION: bool = True  # pretrain SimCLR without colour and without crops (short schedule) and compare
KERAS: bool = True  # SimCLR in Keras with a custom train_step, beside PyTorch
LABEL_COUNTS: Optional[list] = None  # labels per target class to evaluate with; None lets the profile decide
SEED: int = 0  # seeds pretraining, the labelled samples and every probe
OUTPUT_DIR: Optional[str] = None  # None means outputs/10_self_supervised_pretraining

# %% [markdown]
# ## Setup

# %%
import copy
import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn import manifold
from torch import nn

from helpers import (
    adaptation,
    data,
    exercises,
    metrics,
    models,
    parameters,
    plots,
    profiles,
    reporting,
    runtime,
    selfsup,
    splits,
    torch_data,
    torch_train,
)
from helpers.progress import progress_bar  # tqdm that a saved notebook shows finished

parameters.check_parameters(globals(), choices={"METHOD": ("all", *selfsup.METHODS), "AUGMENT": selfsup.AUGMENTATIONS,
                                                "UNLABELLED": selfsup.UNLABELLED})
plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("10_self_supervised_pretraining", PROFILE, pretrain_steps=PRETRAIN_STEPS,
                                 rotation_steps=ROTATION_STEPS, short_steps=SHORT_STEPS, batch_size=BATCH_SIZE,
                                 label_counts=LABEL_COUNTS)
selfsup.check_settings(METHOD, AUGMENT, config["batch_size"], TEMPERATURE, config["label_counts"])  # refused now
config.update(dataset_requested=DATASET, method=METHOD, augment=AUGMENT, unlabelled=UNLABELLED,
              temperature=TEMPERATURE, lr=LR, rotation_lr=ROTATION_LR, ablation=ABLATION, keras=KERAS, seed=SEED,
              strategy=f"{'simclr' if METHOD != 'rotation' else 'rotation'}_linear_probe", validation="labelled",
              weights="self-supervised")  # the run's main model (its probe), read by notebook 06
counts = config["label_counts"]
main_labels = config["labels_per_class"] = 50 if 50 in counts else counts[len(counts) // 2]  # the main model's
run_start = time.perf_counter()
results: dict = {}
part_seconds: dict = {}  # wall time of each part, printed at the end and recorded

cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source, target = splits.source_target_split(cifar)
unlabelled = source.x_train  # images only: the source labels are never read below
if UNLABELLED == "source+target":
    unlabelled = np.concatenate([unlabelled, target.x_train[splits.split_indices(target, "train", seed=SEED)]])
print(f"{len(unlabelled):,} unlabelled images to pretrain on ({UNLABELLED}); batch {config['batch_size']}, so one "
      f"pass over them is {len(unlabelled) // config['batch_size']} steps")
model_03, weights_info = models.source_model("course", "course_net", config["profile"], DATASET)
models.check_source_data(weights_info, cifar.identity)  # a source model trained on other data is refused
print(reporting.weights_line(weights_info))

# %% [markdown]
# ## 1 · The views: what SimCLR asks the network to ignore
# SimCLR's premise: two views of one image show the same thing, so a good representation maps them close together,
# and far from the views of every other image. What "the same thing" means is set by the augmentations, the
# changes the features are asked to ignore. Chen et al. (2020) found two of them decisive: a **random resized
# crop** (a random part of the image, 20-100% of its area here, scaled back up) and **colour distortion** (random
# brightness, contrast, saturation and hue, 80% of the time; grey 20%). Without colour distortion, two crops of one
# image are matched by their colour histogram alone, and the network learns colour, not content. The views below
# are made by `selfsup.augment_view`, one call per view, on whole batches.

# %%
generator = torch.Generator().manual_seed(SEED)
examples = torch.from_numpy(unlabelled[:6]).permute(0, 3, 1, 2)
mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in data.normalization("cifar10"))
fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
for row, title in enumerate(["image", "view 1", "view 2"]):
    shown = examples.float() / 255 if row == 0 else selfsup.augment_view(examples, AUGMENT, generator) * std + mean
    for ax, image in zip(axes[row], shown.clamp(0, 1).permute(0, 2, 3, 1).numpy(), strict=True):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(title)
fig.suptitle(f"Two random views of six unlabelled source images (AUGMENT = {AUGMENT!r})")
plt.show()

# %% [markdown]
# ## 2 · The NT-Xent loss
# A batch of N images gives 2N views. Each view passes through the network and a small **projection head**
# g (a two-layer MLP) to a vector z, scaled to unit length. For view i, its partner j(i) (the other view of the
# same image) is the one right answer among the 2N − 1 other views:
#
# ℓᵢ = − log [ exp(sim(zᵢ, z_j(i)) / τ) / Σ_{k ≠ i} exp(sim(zᵢ, z_k) / τ) ],  sim(u, v) = uᵀv (cosine, unit vectors)
#
# averaged over all 2N views. It is a (2N − 1)-way classification: cross-entropy over similarities, with the
# partner as the label. The temperature τ sharpens it: a small τ weighs the hardest negatives (the most similar
# other images) heavily. The features used for transfer are the encoder's, *before* g: Chen et al. found the
# layer before the projection head transfers better than its output, which learns to discard what the
# augmentations change (colour, for one) even when a later task needs it.

# %%
def nt_xent(z_1: torch.Tensor, z_2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): each of the 2N views must pick out its partner among the 2N - 1 other views of the batch."""
    z = nn.functional.normalize(torch.cat([z_1, z_2]), dim=1)  # 2N unit vectors: views of image i at rows i and i + N
    similarity = z @ z.T / temperature  # cosine similarities, sharpened by the temperature
    not_itself = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(not_itself, float("-inf"))  # a view is not a candidate for itself
    n = len(z_1)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # row i's positive is i + N, and back
    return nn.functional.cross_entropy(similarity, partner)


def projection_head(width: int, out: int = 128) -> nn.Sequential:
    """SimCLR's g: features -> ReLU MLP -> the space where the loss compares views (discarded after pretraining)."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, out))


z_demo = torch.randn(8, 16)
print(f"NT-Xent of 8 random pairs: {nt_xent(z_demo, torch.randn(8, 16), TEMPERATURE):.3f} (chance: log(15) = "
      f"{np.log(15):.3f}); of 8 views paired with themselves plus a little noise: "
      f"{nt_xent(z_demo, z_demo + 0.01 * torch.randn(8, 16), TEMPERATURE):.3f}")

# %% [markdown]
# ## 3 · The rotation pretext task
# Gidaris et al. (2018) turn every image four ways and ask the network which way it was turned: a 4-class problem
# whose labels cost nothing. An upright horse and a horse on its back look different only to a network that knows
# what a horse's legs and head look like, so solving the task needs the features a classifier needs. Each batch
# holds every image in all four orientations (the paper found that better than one random rotation per image).

# %%
def rotation_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each NCHW image four times, turned 0, 90, 180 and 270 degrees, and the number of quarter turns as its label."""
    rotated = torch.cat([torch.rot90(images, turns, dims=(2, 3)) for turns in range(4)])
    labels = torch.arange(4).repeat_interleave(len(images))
    return rotated, labels


# %% [markdown]
# ## 4 · Pretraining, with a kNN monitor
# One loop for both methods; only the batch and the loss differ. SGD with momentum and a one-cycle schedule
# (warm-up, then cosine decay), weight decay 5·10⁻⁴, BatchNorm in training mode. Every few steps a **kNN monitor**
# reads the features without training anything (Wu et al., 2018): the 50 labelled images per target class are the
# memory, each image of the target's *validation* split (never the test set) takes the vote of its 20 most similar
# memory images, weighted by exp(similarity / 0.07). Nothing is chosen from it: pretraining runs its fixed number
# of steps, and the last weights are the model. The trained encoder is saved as a hash-checked checkpoint named by
# everything that made it (method, views, steps, batch, τ, rate, seed and the data's hash), so a second run with
# the same settings reuses it.

# %%
monitor_memory = splits.split_indices(target, "train", seed=SEED, labels_per_class=50)
monitor_queries = splits.split_indices(target, "val", seed=SEED)[:config["monitor_images"]]


def features_of(encoder: models.TransferNet, images: np.ndarray) -> np.ndarray:
    """The encoder's features (before any head) of uint8 images, in eval mode, no augmentation."""
    loader = torch_data.make_loader(images, np.zeros(len(images), dtype=np.int64), train=False, batch_size=512)
    return torch_train.extract_features(encoder.features, loader, device, progress=False)


def knn_monitor(encoder: models.TransferNet) -> float:
    """kNN accuracy on the target's validation images with 50 labelled images per class as memory."""
    memory = features_of(encoder, target.x_train[monitor_memory])
    predicted = selfsup.knn_predict(memory, target.y_train[monitor_memory],
                                    features_of(encoder, target.x_train[monitor_queries]))
    return float((predicted == target.y_train[monitor_queries]).mean())


def pretrain(method: str, augmentation: str, steps: int, seed: int) -> tuple[models.TransferNet, list[dict]]:
    """Pretrain the course network on the unlabelled images with SimCLR or rotation; return it and its history."""
    torch.manual_seed(seed)
    encoder = torch_train.to_device(models.course_net(len(target.class_names)), device)  # its head stays unused
    head = projection_head(encoder.feature_dim) if method == "simclr" else nn.Linear(encoder.feature_dim, 4)
    head = head.to(device)
    trained = list(encoder.features.parameters()) + list(head.parameters())
    peak = LR if method == "simclr" else ROTATION_LR
    optimizer = torch.optim.SGD(trained, lr=peak, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps, pct_start=0.1)
    views = torch.Generator().manual_seed(seed)
    batches = selfsup.unlabelled_batches(unlabelled, config["batch_size"], seed)
    history = [{"step": 0, "loss": None, "knn_acc": knn_monitor(encoder)}]
    encoder.train()
    every = max(1, steps // config["monitor_points"])
    losses = []
    views_name = augmentation if method == "simclr" else "crop+flip"
    for step in progress_bar(range(1, steps + 1), desc=f"{method} ({views_name})", unit="step"):
        images = next(batches)
        if method == "simclr":
            both = torch.cat([selfsup.augment_view(images, augmentation, views),
                              selfsup.augment_view(images, augmentation, views)])
            z = head(encoder.features(both.to(device, memory_format=torch.channels_last)))
            loss = nt_xent(*z.chunk(2), TEMPERATURE)
        else:
            rotated, turns = rotation_batch(selfsup.augment_view(images, "no_color", views))  # crop and flip
            logits = head(encoder.features(rotated.to(device, memory_format=torch.channels_last)))
            loss = nn.functional.cross_entropy(logits, turns.to(device))
        runtime.check_finite_loss(loss)  # a diverged run stops here and names LR, ROTATION_LR and TEMPERATURE
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % every == 0 or step == steps:
            history.append({"step": step, "loss": float(np.mean(losses[-every:])), "knn_acc": knn_monitor(encoder)})
            encoder.train()  # the monitor switched it to eval mode
    return encoder.eval(), history


def pretrained(method: str, augmentation: str, steps: int) -> tuple[models.TransferNet, list[dict], dict]:
    """The encoder these settings make: from the checkpoint cache when made before, else pretrained now."""
    settings = {"method": method, "augmentation": augmentation if method == "simclr" else "crop+flip",
                "steps": steps, "batch_size": config["batch_size"], "temperature": TEMPERATURE,
                "lr": LR if method == "simclr" else ROTATION_LR,
                "seed": SEED, "unlabelled": UNLABELLED, "data": torch_train.data_key(cifar.identity),
                "monitor_images": config["monitor_images"], "monitor_points": config["monitor_points"],
                "code": selfsup.code_digest(pretrain, nt_xent, rotation_batch, projection_head, knn_monitor)}
    start = time.perf_counter()
    encoder, history, info = selfsup.pretrained_encoder(settings, lambda: pretrain(method, augmentation, steps, SEED))
    info["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{method} ({settings['augmentation']}, {steps} steps): {'reused' if info['cached'] else 'pretrained'} "
          f"in {info['seconds']:.0f} s, checkpoint sha256 {info['sha256'][:12]}; kNN monitor "
          f"{history[0]['knn_acc']:.3f} at step 0, {history[-1]['knn_acc']:.3f} at the end")
    return torch_train.to_device(encoder, device).eval(), history, info


part_start = time.perf_counter()
methods = selfsup.METHODS if METHOD == "all" else (METHOD,)
encoders, histories, checkpoints = {}, {}, {}
for method in methods:
    steps = config["pretrain_steps"] if method == "simclr" else config["rotation_steps"]
    encoders[method], histories[method], checkpoints[method] = pretrained(method, AUGMENT, steps)
part_seconds["pretraining"] = time.perf_counter() - part_start

# %% [markdown]
# Read the two panels differently. The loss says whether the network is solving its pretext task. The kNN monitor is a
# cheap and strict test of the features: are images of the same class already each other's nearest neighbours? When it
# climbs above its value at step 0 (the random initialisation, before any AdaBN), a network that never saw a label sorts
# target images by class. When it stays flat or falls, as it can in a short run or for rotation prediction, whose
# features are organised by orientation before class, the features are not thereby useless: a linear probe can still
# find class directions that nearest neighbours miss. Section 5's probes decide; the monitor costs a few forward passes,
# so a long run can be watched without training one. The lines under the plot say what happened in this run.

# %%
fig, (ax_loss, ax_knn) = plt.subplots(1, 2, figsize=(11, 3.8))
for method, history in histories.items():
    trained_rows = [row for row in history if row["loss"] is not None]
    ax_loss.plot([r["step"] for r in trained_rows], [r["loss"] for r in trained_rows], marker="o", label=method)
    ax_knn.plot([r["step"] for r in history], [r["knn_acc"] for r in history], marker="o", label=method)
ax_loss.set(xlabel="step", ylabel="training loss", title="Pretraining loss (NT-Xent; rotation: cross-entropy)")
ax_knn.set(xlabel="step", ylabel="kNN accuracy", title="kNN monitor on the target's validation images")
ax_knn.axhline(1 / len(target.class_names), color="grey", linestyle=":", label="chance")
for ax in (ax_loss, ax_knn):
    ax.legend()
plt.show()
for method, history in histories.items():
    rose = history[-1]["knn_acc"] - history[0]["knn_acc"]
    print(f"{method}: loss {history[1]['loss']:.3f} -> {history[-1]['loss']:.3f} over {history[-1]['step']} steps; "
          f"kNN monitor {history[0]['knn_acc']:.3f} -> {history[-1]['knn_acc']:.3f}, "
          + (f"{rose * 100:.1f} points above random weights" if rose > 0 else
             f"not above random weights ({rose * 100:+.1f} points): nearest neighbours do not yet group by "
             "class; section 5's probes say whether a linear head finds the classes"))

# %% [markdown]
# ## 5 · Transfer to the target task: probe and LP-FT at 10, 50 and 500 labels per class
# Four starting points, one network: **random** weights, the **rotation** model, the **SimCLR** model, and 03's
# **supervised** model (the same 25,000 images, with labels). The random network's BatchNorm statistics are measured
# on the unlabelled images (`adaptation.adabn`), so its features are on a sensible scale; without that, random
# features are a strawman. (The pretrained models' statistics were accumulated during training, on augmented views:
# crops and flips, and SimCLR's colour distortion too; the random start's come from the plain images.) From each:
# - a **linear probe** on frozen features: logistic regression whose L2 strength C is chosen by cross-validation on
#   the k labelled images per class alone (notebook 05's honest protocol);
# - **LP-FT** (Kumar et al., 2022): that probe as the head, then every layer fine-tuned for a fixed recipe decided in
#   advance (SGD, rate 0.01 with cosine decay, `lpft_steps` steps of up to 64 images with crops and flips). The
#   recipe is the same for every starting point and no choice is made on the test set.
#
# Every accuracy carries a 95% bootstrap interval over the 5,000 test images; differences between starting points
# are **paired** (the same test images), so their intervals are narrower than the two accuracies' side by side.

# %%
torch.manual_seed(SEED)
random_start = adaptation.adabn(models.course_net(len(target.class_names)), unlabelled[:5000], seed=SEED)
starts = {"random": torch_train.to_device(random_start, device).eval(),
          **encoders, "supervised (03)": torch_train.to_device(copy.deepcopy(model_03), device).eval()}
PROBE_STRENGTHS = (0.01, 0.1, 1.0)
test_features = {name: features_of(encoder, target.x_test) for name, encoder in starts.items()}


def honest_probe(name: str, labelled: np.ndarray) -> tuple[np.ndarray, float, tuple]:
    """A probe on `name`'s frozen features, C chosen by cross-validation on the labelled images; its test probs."""
    x_train, y_train = features_of(starts[name], target.x_train[labelled]), target.y_train[labelled]
    scores, _ = torch_train.cross_validated_probe(x_train, y_train, PROBE_STRENGTHS, SEED)
    best_c = max(scores, key=scores.get)
    scaler, probe = torch_train.fit_linear_probe(x_train, y_train, best_c, SEED)
    return probe.predict_proba(scaler.transform(test_features[name])), best_c, (scaler, probe)


def lp_ft(name: str, labelled: np.ndarray, fitted_probe: tuple) -> np.ndarray:
    """LP-FT from `name`: the probe folded into a fresh head, then every layer fine-tuned; its test probabilities."""
    model = copy.deepcopy(starts[name])
    model.head = nn.Linear(model.feature_dim, len(target.class_names))
    torch_train.probe_to_head(*fitted_probe, model.head)
    model = torch_train.to_device(model, device).train()
    steps = config["lpft_steps"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    batches = torch_data.endless_batches(target.x_train[labelled], target.y_train[labelled], 64, SEED)
    for _, (images, labels) in zip(range(steps), batches, strict=False):
        loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    test_loader = torch_data.make_loader(target.x_test, target.y_test, train=False, batch_size=512)
    return torch_train.evaluate(model.eval(), test_loader, device)["probs"]


part_start = time.perf_counter()
transfer_rows, test_probs = [], {}
grid = [(labels, name) for labels in config["label_counts"] for name in starts]
for labels, name in progress_bar(grid, desc="probe and LP-FT", unit="run"):
    labelled = splits.split_indices(target, "train", seed=SEED, labels_per_class=labels)
    probs, best_c, fitted = honest_probe(name, labelled)
    test_probs[(name, "probe", labels)] = probs
    test_probs[(name, "LP-FT", labels)] = lp_ft(name, labelled, fitted)
    for mode in ("probe", "LP-FT"):
        predicted = test_probs[(name, mode, labels)].argmax(1)
        accuracy, low, high = metrics.bootstrap_accuracy(target.y_test, predicted, seed=SEED)
        transfer_rows.append({"start": name, "mode": mode, "labels": labels, "test_acc": accuracy,
                              "ci_low": low, "ci_high": high, "probe_C": best_c})
part_seconds["transfer"] = time.perf_counter() - part_start
print(reporting.markdown_table(transfer_rows, ["labels", "start", "mode", "test_acc", "ci_low", "ci_high",
                                               "probe_C"]))
results["transfer"] = transfer_rows

# %% [markdown]
# Accuracy against labels per class, one line per starting point (probe solid, LP-FT dashed): the data-efficiency
# plot. Where the lines of two starting points meet, labels have replaced what pretraining gave.

# %%
fig, ax = plt.subplots(figsize=(7.5, 4.5))
for name, colour in zip(starts, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
    for mode, style in (("probe", "-"), ("LP-FT", "--")):
        rows = [r for r in transfer_rows if r["start"] == name and r["mode"] == mode]
        ax.errorbar([r["labels"] for r in rows], [r["test_acc"] for r in rows], fmt=style, marker="o",
                    yerr=[[r["test_acc"] - r["ci_low"] for r in rows], [r["ci_high"] - r["test_acc"] for r in rows]],
                    color=colour, capsize=3, label=f"{name}, {mode}")
ax.set(xscale="log", xlabel="labelled images per target class", ylabel="test accuracy",
       title="Target task: what each starting point is worth")
ax.legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# **Reading the table.** The cell below prints the comparisons the notebook is about, each as a paired difference
# with its 95% interval: the self-supervised probe against random weights (what pretraining without labels buys),
# and against 03's supervised model (what the labels of the source images add).

# %%
def paired(first: tuple, second: tuple) -> tuple[float, float, float]:
    """Accuracy of `first` minus `second` (keys of test_probs) on the same test images, with a 95% interval."""
    return metrics.bootstrap_difference(target.y_test, test_probs[first].argmax(1), test_probs[second].argmax(1),
                                        seed=SEED)


comparisons = []
for mode, method, other, labels in itertools.product(("probe", "LP-FT"), encoders, ("random", "supervised (03)"),
                                                     config["label_counts"]):
    difference, low, high = paired((method, mode, labels), (other, mode, labels))
    comparisons.append({"labels": labels, "comparison": f"{method} {mode} - {other} {mode}", "difference": difference,
                        "ci_low": low, "ci_high": high, "verdict": metrics.noise_verdict(low, high)})
print(reporting.markdown_table(comparisons, ["labels", "comparison", "difference", "ci_low", "ci_high", "verdict"]))
results["comparisons"] = comparisons
for row in comparisons:
    if row["labels"] == main_labels:
        first, second = row["comparison"].split(" - ")
        print(f"With {main_labels} labels per class, {first} is {abs(row['difference']) * 100:.1f} points "
              f"{'ahead of' if row['difference'] > 0 else 'behind'} {second} (95% interval "
              f"{row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f}; {row['verdict']}).")

# %% [markdown]
# **Why supervised pretraining may lead at this scale, and why it may not.** 03's labels told its network which
# differences between images matter (a cat against a deer); SimCLR had to discover that from the augmentations
# alone, in a few minutes of pretraining on a CPU, with batches far smaller than Chen et al.'s (their CIFAR-10
# runs: batches of 256 to 4,096 images, 100 to 1,000 epochs). Contrastive learning gains with batch size and
# training length much more than supervised learning does (their Figures 9 and B.7), so a short run measures the
# start of the curve. The other direction also holds: 03's labels are the *source* classes, and a supervised
# network learns to drop what does not separate them, while SimCLR keeps whatever tells images apart, which can
# transfer better to distant targets (Ericsson et al., 2021, on many downstream tasks). The printed gaps, not this
# paragraph, say which effect wins here.
#
# ## 6 · Which augmentations SimCLR needs (Chen et al.'s ablation)
# Three SimCLR runs at the same short schedule (`short_steps`), the same batch, τ and seed, differing only in the
# views: full, without colour distortion, without random crops. Each is judged by its linear probe at 50 labels per
# class (C chosen by cross-validation on those labels), with paired intervals against the full views. The short
# schedule keeps the three runs equal to each other; they are not comparable to the longer run above.

# %%
ablation_rows = []
if ABLATION and "simclr" in encoders:
    part_start = time.perf_counter()
    labelled_50 = splits.split_indices(target, "train", seed=SEED, labels_per_class=50)
    ablation_probs = {}
    for augmentation in selfsup.AUGMENTATIONS:
        encoder, history, info = pretrained("simclr", augmentation, config["short_steps"])
        starts[f"simclr, {augmentation}, short"] = encoder
        test_features[f"simclr, {augmentation}, short"] = features_of(encoder, target.x_test)
        ablation_probs[augmentation], best_c, _ = honest_probe(f"simclr, {augmentation}, short", labelled_50)
        accuracy, low, high = metrics.bootstrap_accuracy(target.y_test, ablation_probs[augmentation].argmax(1),
                                                         seed=SEED)
        ablation_rows.append({"views": augmentation, "steps": config["short_steps"], "final_loss": history[-1]["loss"],
                              "knn_monitor": history[-1]["knn_acc"], "probe_50": accuracy, "ci_low": low,
                              "ci_high": high})
    for row in ablation_rows[1:]:
        difference, low, high = metrics.bootstrap_difference(
            target.y_test, ablation_probs[row["views"]].argmax(1), ablation_probs["full"].argmax(1), seed=SEED)
        row.update(minus_full=difference, diff_low=low, diff_high=high)
    part_seconds["ablation"] = time.perf_counter() - part_start
    print(reporting.markdown_table(ablation_rows, ["views", "steps", "final_loss", "knn_monitor", "probe_50", "ci_low",
                                                   "ci_high", "minus_full", "diff_low", "diff_high"]))
    for row in ablation_rows[1:]:
        lost = -row["minus_full"]
        print(f"Without {'colour distortion' if row['views'] == 'no_color' else 'random crops'}: probe "
              f"{row['probe_50']:.3f}, {abs(lost) * 100:.1f} points {'below' if lost > 0 else 'above'} the full views "
              f"(paired 95% interval of the difference {row['diff_low'] * 100:+.1f} to {row['diff_high'] * 100:+.1f}); "
              f"its final NT-Xent {row['final_loss']:.2f} against {ablation_rows[0]['final_loss']:.2f} with full views")
    results["ablation"] = ablation_rows
else:
    print("Ablation skipped (ABLATION=False, or METHOD without SimCLR).")

# %% [markdown]
# A loss that ends lower without colour distortion while its probe is worse is the sign of the shortcut: the task
# got easier (two crops of one image share a colour histogram) and the features learned less about content; the
# lines above say whether that happened here. Chen et al. report the same on
# ImageNet: crop alone or colour alone is far behind their composition (their Figure 5).
#
# ## 7 · SimCLR in Keras, side by side
# The same method in Keras 3: a `keras.Model` subclass whose `train_step` computes both views' projections under a
# `GradientTape`, the NT-Xent loss in `keras.ops`, and applies the gradients (the pattern of the keras-io SimCLR
# example). It trains the Keras twin of the course network on **the same views** (`selfsup.augment_view`, handed
# over as arrays), batch, τ, steps (`short_steps`) and peak rate as the short PyTorch run with full views above,
# so the two frameworks can be compared at equal steps. What still differs: the Keras schedule is warm-up plus cosine
# decay where PyTorch's one-cycle also starts low and cycles the momentum (0.85 to 0.95; Keras keeps 0.9), and the
# initialisations. Weight decay is matched: PyTorch's SGD adds 5e-4·w to the gradient, which Nesterov momentum then
# carries (about 10x in steady state), while Keras 3 decays decoupled from the gradient, so Keras gets
# 5e-4 / (1 − 0.9) = 5e-3, as notebook 04 explains.

# %%
if KERAS and "simclr" in encoders:
    from helpers import keras_models

    keras = keras_models.import_keras("tensorflow")  # after torch, through the helper that orders the imports
    tf = runtime.import_tensorflow()
    ops = keras.ops

    def nt_xent_keras(z_1, z_2, temperature: float):
        """NT-Xent in keras.ops: the same loss as `nt_xent` above, for either backend."""
        z = ops.normalize(ops.concatenate([z_1, z_2], axis=0), axis=1)
        n = ops.shape(z_1)[0]
        similarity = ops.matmul(z, ops.transpose(z)) / temperature
        similarity = ops.where(ops.eye(2 * n, dtype="bool"), -1e9, similarity)
        partner = ops.concatenate([ops.arange(n, 2 * n), ops.arange(0, n)])
        return ops.mean(keras.losses.sparse_categorical_crossentropy(partner, similarity, from_logits=True))

    class SimCLR(keras.Model):
        """An encoder and a projection head trained with NT-Xent on pairs of views (Chen et al., 2020)."""

        def __init__(self, encoder, projector, temperature: float) -> None:
            """Keep the encoder (transferred later), the projection head (discarded) and the temperature."""
            super().__init__()
            self.encoder, self.projector, self.temperature = encoder, projector, temperature

        def call(self, images, training: bool = False):
            """The encoder's features: what transfer uses."""
            return self.encoder(images, training=training)

        def train_step(self, batch):
            """One step: both views through encoder and head, NT-Xent, gradients to both."""
            view_1, view_2, _ = keras.utils.unpack_x_y_sample_weight(batch)
            with tf.GradientTape() as tape:
                z = self.projector(self.encoder(ops.concatenate([view_1, view_2], axis=0), training=True))
                z_1, z_2 = ops.split(z, 2, axis=0)
                loss = nt_xent_keras(z_1, z_2, self.temperature)
            variables = self.encoder.trainable_variables + self.projector.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            return {"loss": loss}

    part_start = time.perf_counter()
    keras.utils.set_random_seed(SEED)
    keras_encoder, _ = keras_models.course_net_keras(len(target.class_names))
    width = keras_encoder.output.shape[-1]
    projector = keras.Sequential([keras.layers.Dense(width, activation="relu"), keras.layers.Dense(128)])
    keras_steps = config["short_steps"]
    warmup = max(1, keras_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(LR / 25, keras_steps - warmup, warmup_target=LR,
                                                      warmup_steps=warmup)
    simclr_keras = SimCLR(keras_encoder, projector, TEMPERATURE)
    simclr_keras.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                                        weight_decay=5e-4 / (1 - 0.9)))  # decoupled: matches PyTorch
    keras_views = torch.Generator().manual_seed(SEED)
    keras_batches = selfsup.unlabelled_batches(unlabelled, config["batch_size"], SEED)
    nhwc = lambda views: views.permute(0, 2, 3, 1).numpy()  # noqa: E731 - Keras takes channels last
    keras_losses = []
    for _ in progress_bar(range(keras_steps), desc="Keras SimCLR", unit="step"):
        images = next(keras_batches)
        logs = simclr_keras.train_on_batch(nhwc(selfsup.augment_view(images, AUGMENT, keras_views)),
                                           nhwc(selfsup.augment_view(images, AUGMENT, keras_views)), return_dict=True)
        runtime.check_finite_loss(logs["loss"])  # a diverged run stops here and names LR and TEMPERATURE
        keras_losses.append(float(logs["loss"]))

    def keras_features(images: np.ndarray) -> np.ndarray:
        """The Keras encoder's features of uint8 images (normalized as in PyTorch, channels last)."""
        mean_nhwc, std_nhwc = (np.array(v, dtype=np.float32) for v in data.normalization("cifar10"))
        return keras_encoder.predict((images.astype(np.float32) / 255 - mean_nhwc) / std_nhwc, batch_size=512,
                                     verbose=0)

    labelled_50 = splits.split_indices(target, "train", seed=SEED, labels_per_class=50)
    x_train = keras_features(target.x_train[labelled_50])
    scores, _ = torch_train.cross_validated_probe(x_train, target.y_train[labelled_50], PROBE_STRENGTHS, SEED)
    scaler, probe = torch_train.fit_linear_probe(x_train, target.y_train[labelled_50], max(scores, key=scores.get),
                                                 SEED)
    keras_predicted = probe.predict(scaler.transform(keras_features(target.x_test)))
    keras_accuracy, low, high = metrics.bootstrap_accuracy(target.y_test, keras_predicted, seed=SEED)
    part_seconds["keras"] = time.perf_counter() - part_start
    results["keras"] = {"steps": keras_steps, "final_loss": float(np.mean(keras_losses[-10:])),
                        "probe_50": keras_accuracy, "ci_low": low, "ci_high": high,
                        "seconds": round(part_seconds["keras"], 1)}
    print(f"Keras SimCLR, {keras_steps} steps in {part_seconds['keras']:.0f} s: final NT-Xent "
          f"{results['keras']['final_loss']:.2f}; probe at 50 labels per class {keras_accuracy:.3f} "
          f"(95% interval {low:.3f} to {high:.3f})")
    if ablation_rows:
        twin = next(row for row in ablation_rows if row["views"] == AUGMENT)
        difference, low, high = metrics.bootstrap_difference(target.y_test, keras_predicted,
                                                             ablation_probs[AUGMENT].argmax(1), seed=SEED)
        results["keras"].update(minus_pytorch=difference, diff_low=low, diff_high=high)
        print(f"PyTorch at the same steps and views: probe {twin['probe_50']:.3f}, final NT-Xent "
              f"{twin['final_loss']:.2f}. Keras minus PyTorch: {difference * 100:+.1f} points (paired 95% interval "
              f"{low * 100:+.1f} to {high * 100:+.1f}; {metrics.noise_verdict(low, high)}).")
else:
    print("Keras part skipped (KERAS=False, or METHOD without SimCLR).")

# %% [markdown]
# ## 8 · What the features look like
# t-SNE (van der Maaten and Hinton, 2008) places the test images' features in two dimensions, keeping each
# image's nearest neighbours near; colours are the target classes. Random features group images by colour and
# layout; features that transfer group them by class. t-SNE distorts distances between groups, so read only
# which images sit together, not how far apart the groups are.

# %%
part_start = time.perf_counter()
shown_starts = [name for name in ("random", "simclr", "rotation", "supervised (03)") if name in starts]
sample = np.random.default_rng(SEED).choice(len(target.y_test), config["tsne_points"], replace=False)
fig, axes = plt.subplots(1, len(shown_starts), figsize=(4 * len(shown_starts), 4))
for ax, name in zip(np.atleast_1d(axes), shown_starts, strict=True):
    embedded = manifold.TSNE(2, init="pca", perplexity=min(30, len(sample) // 4), random_state=SEED).fit_transform(
        test_features[name][sample])
    for label, class_name in enumerate(target.class_names):
        chosen = target.y_test[sample] == label
        ax.scatter(*embedded[chosen].T, s=6, label=class_name)
    ax.set(title=name, xticks=[], yticks=[])
np.atleast_1d(axes)[0].legend(markerscale=2, fontsize=8)
fig.suptitle(f"t-SNE of {len(sample)} target test images' features")
plt.show()
part_seconds["t-SNE"] = time.perf_counter() - part_start

# %% [markdown]
# ## 9 · At scale, on paper
# On ImageNet, the gap this notebook measures closed within two years. A linear probe on SimCLR's ResNet-50 reached
# 69.3% top-1, and 76.5% with a 4x wider network: as good as a standard ResNet-50 trained with labels (76.5%), not as a
# supervised network of its own width (Chen et al., 2020); BYOL (Grill et al., 2020) reached 74.3% without negative
# pairs; DINO (Caron et al., 2021) reached 80.1% with a vision transformer (ViT-B/8), and a smaller one's features
# (ViT-S/16) give 74.5% with a plain kNN classifier. Fine-tuned with 1% of ImageNet's labels (about 13 per class),
# SimCLR's ResNet-50 (4x) reached 85.8% top-5 against 48.4% for a supervised baseline trained on those labels alone
# (Chen et al., 2020). Masked autoencoders (He et al., 2022) pretrain by reconstructing hidden image patches and
# fine-tune better than supervised pretraining on ImageNet-1k. CLIP (Radford et al., 2021) swaps the second view for a
# caption: its loss is a symmetric cross-modal InfoNCE (cross-entropy from each image to the batch's texts and from each
# text to the images) with a learned temperature, rather than NT-Xent over two views of one image, and its text encoder
# turns class names into a classifier with no labels at all (zero-shot transfer, notebook 11). What the papers needed
# that this notebook lacks is scale: batches of 4,096 images, hundreds of epochs, many GPUs.

# %% [markdown]
# ## Record the run
# `metrics.json` holds every table above with the configuration, data, checkpoints and versions. The run's main
# model, the one notebook 06 reads beside the fine-tuning runs, is the linear probe on SimCLR's features (or on the
# rotation model's when METHOD = "rotation") at 50 labels per class: `test_acc` is its accuracy, and
# `predictions.npz` its test probabilities (strategy `simclr_linear_probe`, weights `self-supervised`).

# %%
run_folder = reporting.run_dir("10_self_supervised_pretraining", OUTPUT_DIR)
main_method = "simclr" if "simclr" in encoders else "rotation"
main_key = (main_method, "probe", main_labels)
run_metrics = {**results, "histories": histories, "wall_seconds": round(time.perf_counter() - run_start, 1),
               "part_seconds": {part: round(t, 1) for part, t in part_seconds.items()}}
main_probs = test_probs[main_key]
reporting.save_predictions(run_folder, y_true=target.y_test, probs=main_probs.astype(np.float32))
run_metrics.update(test_acc=float((main_probs.argmax(1) == target.y_test).mean()),
                   main_model=f"{main_method} linear probe, {main_labels} labels per class",
                   num_labelled=main_labels * len(target.class_names))
metrics_path = reporting.save_run(run_folder, config, target.identity, run_metrics, weights=weights_info,
                                  checkpoints=checkpoints, framework="pytorch", class_names=target.class_names,
                                  test_predictions=main_probs.argmax(1))
print(f"This run took {run_metrics['wall_seconds']:.0f} s ({config['profile']} profile; "
      + ", ".join(f"{part} {t:.0f} s" for part, t in part_seconds.items()) + ").")

# %% [markdown]
# ## Exercises
# 1. Set `AUGMENT = "no_color"` and rerun: what happens to the NT-Xent loss, the kNN monitor and the probe, and why
#    does an easier pretext task give worse features?
# 2. The temperature τ = 0.5 here; Chen et al. tried 0.05 to 1. What does a very small τ do to the loss's gradient
#    on the hardest negatives, and what might go wrong with a batch of 128 on a CPU?
# 3. Set `UNLABELLED = "source+target"`: the target's own training images join pretraining, still without labels.
#    Why might that help the probe more than doubling the source images would, and is it still honest with respect to
#    the test set?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Without colour distortion the two crops of an image share their colour statistics, so the network can match
#    views by colour alone: the loss falls lower and faster while the features learn little about shape, and the
#    probe drops (the ablation table above measures it at the short schedule). The pretext task must be hard in the
#    right way: solvable only by knowing what is in the image.
# 2. The loss's gradient weighs each negative by its softmax probability; a small τ concentrates that weight on the
#    few most similar negatives (hard-negative mining, Wang and Liu, 2021). With 128 images the hardest negatives
#    are often images of the same class (false negatives), so a very small τ pushes same-class images apart and
#    training is also less stable; Chen et al. found τ = 0.5 best at CIFAR-10's batch sizes.
# 3. The features adapt to the target's images (their classes, backgrounds, colours), the same domain the probe
#    sees; more source images teach more about the source classes. It is honest: the test images are not used and no
#    label is read: the usual semi-supervised setting, a few labels and an unlabelled pool from the same images.
#
# </details>

# %% [markdown]
# ### Coding exercises
# 4. The kNN monitor. Write `knn_classify(memory, memory_labels, queries, k, temperature)`: feature arrays `memory`
#    (M, d) with integer labels (M,), and `queries` (Q, d). Scale every row to unit length, find each query's k most
#    similar memory rows (cosine similarity), and let each vote for its label with weight exp(similarity / temperature).
#    Return the winning label per query, shape (Q,). The notebook used `selfsup.knn_predict`; yours replaces it.
#    Reference solution: `solutions/10_self_supervised_pretraining.py`.

# %%
def knn_classify(memory: np.ndarray, memory_labels: np.ndarray, queries: np.ndarray, k: int,
                 temperature: float) -> np.ndarray:
    """Weighted kNN on cosine similarity: each query's label from its k nearest memory rows' weighted votes."""
    raise NotImplementedError  # your code here


# %%
exercises.check("10.1", knn_classify)


# %% [markdown]
# 5. Supervised contrastive loss (Khosla et al., 2020). When labels exist, every other view of the same class is a
#    positive. Write `supervised_contrastive(z, labels, temperature)`: `z` is (2N, d) (both views of N images, as in
#    `nt_xent`), `labels` (2N,). Normalize the rows; for each anchor i, average −log of
#    exp(sim(i, p)/τ) / Σ_{k≠i} exp(sim(i, k)/τ) over its positives p (same label, p ≠ i); return the mean over
#    anchors. With every image its own class it equals NT-Xent. Reference solution:
#    `solutions/10_self_supervised_pretraining.py`.

# %%
def supervised_contrastive(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon's L_out: each anchor's mean -log-probability of its same-label views among all other views."""
    raise NotImplementedError  # your code here


# %%
exercises.check("10.2", supervised_contrastive)

# %% [markdown]
# ## Summary
# - Self-supervised pretraining sets a task the images answer themselves: which way an image was turned, or which
#   view belongs with which. Solving it well needs features of what is in the image, and those transfer.
# - SimCLR is a (2N − 1)-way classification of views by cross-entropy over cosine similarities (NT-Xent); its
#   augmentations decide what the features ignore, and colour distortion with crops is what makes it work.
# - Judge a self-supervised model the way any source model is judged: probe and LP-FT on the target task with a
#   few labels, every choice on those labels, paired intervals against random and supervised weights. A kNN
#   monitor watches pretraining without training a head, but it is stricter than a probe: when they disagree, the
#   probe decides.
# - On a CPU and 25,000 images, the printed comparisons above say how far labels-free pretraining got against
#   labelled pretraining; at ImageNet scale it matches or beats it.
#
# ## References
# - Chen, Kornblith, Norouzi, Hinton (2020). *A simple framework for contrastive learning of visual representations*
#   (SimCLR). ICML.
# - Gidaris, Singh, Komodakis (2018). *Unsupervised representation learning by predicting image rotations*. ICLR.
# - Noroozi, Favaro (2016). *Unsupervised learning of visual representations by solving jigsaw puzzles*. ECCV.
# - Wu, Xiong, Yu, Lin (2018). *Unsupervised feature learning via non-parametric instance discrimination*. CVPR.
# - Khosla et al. (2020). *Supervised contrastive learning*. NeurIPS.
# - Kumar, Raghunathan, Jones, Ma, Liang (2022). *Fine-tuning can distort pretrained features and underperform
#   out-of-distribution* (LP-FT). ICLR.
# - Grill et al. (2020). *Bootstrap your own latent* (BYOL). NeurIPS.
# - Caron et al. (2021). *Emerging properties in self-supervised vision transformers* (DINO). ICCV.
# - He, Chen, Xie, Li, Dollár, Girshick (2022). *Masked autoencoders are scalable vision learners*. CVPR.
# - Radford et al. (2021). *Learning transferable visual models from natural language supervision* (CLIP). ICML.
# - Ericsson, Gouk, Hospedales (2021). *How well do self-supervised models transfer?* CVPR.
# - Wang, Liu (2021). *Understanding the behaviour of contrastive loss*. CVPR.
# - van der Maaten, Hinton (2008). *Visualizing data using t-SNE*. JMLR.
