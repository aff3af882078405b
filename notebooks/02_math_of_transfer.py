# %% [markdown]
# # 02 · The math of feature and parameter transfer
#
# Every equation in this notebook is followed by code that checks it numerically: against autograd, brute
# force, or a reference library. The implementations live in `helpers/transfer_math.py` (each with unit
# tests in `tests/test_transfer_math.py`), short enough to read next to the formula.
#
# **Learning objectives**
# - Feature transfer: why a linear probe on frozen features is a convex problem with one optimum, and how it
#   relates to the closed-form ridge head.
# - Parameter transfer: why fine-tuning uses a low learning rate, and how far it moves each layer.
# - Regularising towards the source: L2-SP versus weight decay; discriminative learning rates and gradual
#   unfreezing.
# - Why LP-FT (probe first, then fine-tune) distorts features less than fine-tuning with a random head.
# - Measuring domain shift with the maximum mean discrepancy (MMD) and a permutation test.
# - What freezing does to BatchNorm in PyTorch and in Keras.
# - The knowledge-distillation loss and its T² factor.
#
# **Estimated time**: reading 45 minutes; running under 2 minutes on a CPU in the `cpu` profile, seconds in
# `smoke`. No GPU needed; no download (it uses CIFAR-10 if cached, synthetic data otherwise). `full` profile on
# one GPU: about 1 min (a target, not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
SEED: int = 0
IMAGES_PER_TASK: Optional[int] = None  # images per task used for features; None lets the profile decide
TEMPERATURE: float = 4.0  # distillation temperature
MMD_BANDWIDTH: Optional[float] = None  # None uses the median heuristic
OUTPUT_DIR: Optional[str] = None  # None means outputs/02_math_of_transfer

# %% [markdown]
# ## Setup

# %%
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
    plots,
    profiles,
    reporting,
    runtime,
    splits,
    torch_data,
    torch_train,
)
from helpers import transfer_math as tm

parameters.check_parameters(globals())  # unknown names, wrong types, out-of-range values: refused here

plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("02_math_of_transfer", PROFILE, images_per_task=IMAGES_PER_TASK)
config.update(dataset_requested=DATASET, seed=SEED, temperature=TEMPERATURE, mmd_bandwidth=MMD_BANDWIDTH)
checks: dict[str, float | str] = {}  # every numerical check's error, saved with the run

# %% [markdown]
# ## Features to work with
# We need a frozen extractor F and images from two tasks. The extractor is the course's source model
# (notebook 03, which `make course` runs before this notebook). Run alone before 03, this notebook uses a
# *randomly initialised* copy of the same network as a stand-in: still a fixed feature map, but one that learned
# nothing, so sections 1 and 6 then show no transfer. The output says loudly which one it used.

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source, target = splits.source_target_split(cifar)
try:
    extractor, meta = models.load_checkpoint(models.checkpoint_path(profiles.choose_profile(PROFILE)),
                                             {"dataset_sha256": models.source_data_key(cifar.identity)})
    extractor_name = f"course source model (source test accuracy {meta['source_test_acc']:.3f})"
except models.CheckpointError as reason:
    print(f"!! {reason}")
    torch.manual_seed(SEED)
    extractor, extractor_name = models.course_net(), "STAND-IN: a randomly initialised course network"
    print("!! No course source model yet: sections 1 and 6 use a random network as a stand-in and will show no\n"
          "!! transfer. Run notebook 03 (or `make course`, which runs it first), then this notebook again.")
extractor = torch_train.to_device(extractor, device)  # the toys below stay on the CPU: they are a few kilobytes
print("extractor:", extractor_name)
checks["extractor"] = extractor_name

rng = np.random.default_rng(SEED)
count = config["images_per_task"]


def features(images: np.ndarray) -> np.ndarray:
    """Frozen features of a batch of uint8 images."""
    loader = torch_data.make_loader(images, np.zeros(len(images), dtype=int), train=False, batch_size=256)
    return torch_train.extract_features(extractor.features, loader, device, progress=False)  # seconds


def features_of(task: data.ImageData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features and labels of `count` random images of one task's train or test split."""
    images, labels = (task.x_train, task.y_train) if split == "train" else (task.x_test, task.y_test)
    pick = rng.choice(len(labels), size=min(count, len(labels)), replace=False)
    return features(images[pick]), labels[pick]


target_train_x, target_train_y = features_of(target, "train")
target_test_x, target_test_y = features_of(target, "test")
source_x, _ = features_of(source, "test")
print("feature matrices:", target_train_x.shape, target_test_x.shape, source_x.shape)

# %% [markdown]
# ## 1 · Feature transfer and the linear probe
#
# Feature transfer keeps the source extractor as it is, $F_\text{target}(x) = F_\text{source}(x)$, and
# learns only a new head $h(z) = W^\top z$ on the features $z = F(x)$. With a softmax head and an L2 penalty,
# the training objective
#
# $$ L(W) = -\frac{1}{n}\sum_{i=1}^{n} \log \mathrm{softmax}(W^\top z_i)_{y_i} + \frac{\lambda}{2}\lVert W\rVert^2 $$
#
# is a sum of a convex function of $W$ (log-sum-exp minus a linear term) and a strictly convex one, so it
# has **exactly one minimiser**. Numerically: L-BFGS from three very different random starts lands in the
# same place.

# %%
z = torch.tensor((target_train_x - target_train_x.mean(0)) / (target_train_x.std(0) + 1e-8), dtype=torch.float32)
y = torch.tensor(target_train_y)
solutions = [tm.fit_probe_by_gradient_descent(z, y, target.num_classes, lam=0.01, seed=s) for s in range(3)]
gap = max((s - solutions[0]).abs().max().item() for s in solutions[1:])
checks["probe_unique_optimum_max_gap"] = gap
print(f"largest difference between three solutions: {gap:.2e} (weights of size ~{solutions[0].abs().mean():.2f})")
assert gap < 1e-2

# %% [markdown]
# Squared loss instead of cross-entropy gives the **ridge** head in closed form,
#
# $$ W^\star = (\tilde Z^\top \tilde Z + \lambda I)^{-1} \tilde Z^\top \tilde Y,
#    \qquad b^\star = \bar y - W^{\star\top} \bar z, $$
#
# with $Y$ the one-hot labels, $\tilde Z$ and $\tilde Y$ the centred features and labels, and the bias $b$
# left unpenalised (centring is what keeps it out of the penalty). It needs no iterations at all. Squared loss
# also punishes predictions that are *too* confident in the right direction, which can cost accuracy against
# logistic regression, or not: we compare the two with each one's strength chosen by 5-fold cross-validation on
# the training features (never on the test set), and check the closed form against scikit-learn's `Ridge`.

# %%
from sklearn.linear_model import Ridge, RidgeClassifier  # noqa: E402 - the references, used only here
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

one_hot = np.eye(target.num_classes)[target_train_y]
ridge = tm.ridge_head(target_train_x, one_hot, lam=1.0)
reference = Ridge(alpha=1.0).fit(target_train_x, one_hot)
checks["ridge_vs_sklearn_max_gap"] = float(np.abs(ridge[:-1] - reference.coef_.T).max())
print(f"closed form vs scikit-learn: max difference {checks['ridge_vs_sklearn_max_gap']:.2e}")
strengths = (0.001, 0.01, 0.1, 1.0)  # inverse strength C for the probe; lambda = 1 / C for ridge
probe_cv, _ = torch_train.cross_validated_probe(target_train_x, target_train_y, strengths, seed=SEED)
ridge_cv = {c: cross_val_score(make_pipeline(StandardScaler(), RidgeClassifier(alpha=1 / c)), target_train_x,
                               target_train_y, cv=5).mean() for c in strengths}
probe_c, ridge_c = max(probe_cv, key=probe_cv.get), max(ridge_cv, key=ridge_cv.get)
scaler, probe = torch_train.fit_linear_probe(target_train_x, target_train_y, c=probe_c, seed=SEED)
probe_acc = probe.score(scaler.transform(target_test_x), target_test_y)
ridge_model = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1 / ridge_c)).fit(target_train_x, target_train_y)
ridge_acc = ridge_model.score(target_test_x, target_test_y)
interval = metrics.bootstrap_difference(target_test_y, ridge_model.predict(target_test_x),
                                        probe.predict(scaler.transform(target_test_x)), seed=SEED)
checks.update(probe_test_acc=probe_acc, ridge_test_acc=ridge_acc, probe_c=probe_c, ridge_lambda=1 / ridge_c)
print(f"chosen by cross-validation: probe C = {probe_c}, ridge lambda = {1 / ridge_c:g}")
print(f"target test accuracy: ridge head {ridge_acc:.3f}, logistic probe {probe_acc:.3f} (chance 0.20); "
      f"ridge - probe {interval[0]:+.3f}, 95% interval [{interval[1]:+.3f}, {interval[2]:+.3f}]: "
      + metrics.noise_verdict(interval[1], interval[2]))

# %% [markdown]
# ## 2 · Parameter transfer, and why the learning rate is low
#
# Parameter transfer copies the weights, $\theta_\text{target} \leftarrow \theta_\text{source}$, and then
# minimises the target loss from there: $\theta^\star = \arg\min_\theta L(\theta; D_\text{target})$. Gradient
# descent only finds a *nearby* minimum, so where it starts matters, and how far it travels decides how much
# of the source knowledge survives. A toy makes this visible: a three-layer network trained on one task, then
# fine-tuned on a related one with a low and a high learning rate. We measure how far each layer moved,
# $\lVert w - w_0\rVert / \lVert w_0\rVert$.

# %%
def toy_task(shift: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian clusters in 8-D whose labels depend on a rotated direction (related tasks share it)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    direction = torch.tensor([np.cos(shift), np.sin(shift), 0.5, 0, 0, 0, 0, 0], dtype=torch.float32)
    score = x @ direction + 0.3 * x[:, 3] * x[:, 4]
    return x, torch.bucketize(score, torch.tensor([-0.8, 0.0, 0.8]))


def train_toy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, weight_decay: float = 0.0,
              penalty=None) -> nn.Module:
    """Full-batch SGD on the toy network, with an optional extra penalty."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y) + (penalty() if penalty else 0)
        loss.backward()
        optimizer.step()
    return net


toy_accuracy = lambda net, x, y: (net(x).argmax(1) == y).float().mean().item()
torch.manual_seed(SEED)
pretrained = train_toy(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)),
                       *toy_task(0.0, 4000, 1), lr=0.1, steps=300)
target_x, target_y = toy_task(0.4, 60, 2)  # a related task with only 60 labels
test_x, test_y = toy_task(0.4, 4000, 3)
start_state = {k: v.clone() for k, v in pretrained.state_dict().items()}
moves = {}
for lr in (0.01, 0.5):
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    net.load_state_dict(start_state)
    train_toy(net, target_x, target_y, lr=lr, steps=200)
    moves[lr] = tm.relative_change(start_state, net.state_dict())
    print(f"lr {lr}: target test accuracy {toy_accuracy(net, test_x, test_y):.3f}")
print(f"pretrained, not fine-tuned: {toy_accuracy(pretrained, test_x, test_y):.3f}")

layers = [name for name in moves[0.01] if name.endswith("weight")]
positions = np.arange(len(layers))
fig, ax = plt.subplots(figsize=(6, 3))
for offset, lr in ((-0.2, 0.01), (0.2, 0.5)):
    ax.bar(positions + offset, [moves[lr][name] for name in layers], width=0.4, label=f"lr {lr}")
ax.set_xticks(positions, layers)
ax.set(ylabel="‖w − w0‖ / ‖w0‖", title="How far fine-tuning moved each layer")
ax.legend()
plt.show()
for lr in moves:
    print(f"lr {lr}: relative change " + ", ".join(f"{name} {moves[lr][name]:.3f}" for name in layers))
checks.update({f"toy_move_lr{lr}_{name}": moves[lr][name] for lr in moves for name in layers})

# %% [markdown]
# Read the bars and the printed numbers. The high rate moves the layers much further than the low one, and
# ends below the pretrained network it started from: with 60 labels it spends the source knowledge to fit the
# few target labels. *Which* layer the low rate moves most depends on where the two tasks differ. Here the
# target task rotates the input direction that decides the label, so the **first** layer is the one that must
# change, and even the low rate moves it most in relative terms. The rule of thumb "fine-tuning mostly adjusts
# the last layers" holds when the tasks share their inputs' low-level structure and differ in what is built on
# top of it, as with images of different objects; it is a statement about the tasks, not about fine-tuning.
#
# ## 3 · L2-SP: regularise towards the start, not towards zero
#
# Weight decay pulls every weight towards **zero**, which for a transferred weight means *away from what was
# learned*. L2-SP (Li et al., 2018) pulls transferred weights $w$ towards their starting point $w_0$ and
# only the new head $v$ towards zero:
#
# $$ \Omega(w, v) = \frac{\alpha}{2}\lVert w - w_0\rVert^2 + \frac{\beta}{2}\lVert v\rVert^2,
#    \qquad \nabla_w \Omega = \alpha\,(w - w_0). $$
#
# First the gradient, against autograd:

# %%
weights = [p.detach().clone().requires_grad_() for p in list(pretrained.parameters())[:4]]
anchors = [p.detach().clone() + 0.1 * torch.randn_like(p) for p in weights]
head = [torch.randn(4, 32, requires_grad=True)]
tm.l2sp_penalty(weights, anchors, head, alpha=0.5, beta=0.1).backward()
checks["l2sp_grad_vs_autograd"] = max((w.grad - tm.l2sp_gradient(w.detach(), a, 0.5)).abs().max().item()
                                      for w, a in zip(weights, anchors, strict=True))
print(f"L2-SP gradient: formula vs autograd, max difference {checks['l2sp_grad_vs_autograd']:.1e}")

# %% [markdown]
# Then its effect, on the same 60 target labels and a fairly high learning rate (0.2). Both penalties have the
# same strength α = 0.1 on the body (the first two layers) and the same β = 0.001 on the head (the last layer);
# the only difference is the anchor of the body: zero for weight decay, w0 for L2-SP. (Weight decay *is*
# L2-SP with w0 = 0, so one function computes both.)

# %%
for name in ("weight decay", "L2-SP"):
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    net.load_state_dict(start_state)
    body, anchors_ = list(net[:3].parameters()), [p.detach().clone() for p in net[:3].parameters()]
    anchor = anchors_ if name == "L2-SP" else [torch.zeros_like(p) for p in body]
    penalty = lambda body=body, anchor=anchor, net=net: tm.l2sp_penalty(body, anchor, [net[4].weight], alpha=0.1,
                                                                        beta=0.001)
    train_toy(net, target_x, target_y, lr=0.2, steps=200, penalty=penalty)
    drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(body, anchors_, strict=True)).sqrt().item()
    print(f"{name:12s}: distance of the body from w0 {drift:.2f}, target test accuracy "
          f"{toy_accuracy(net, test_x, test_y):.3f}")

# %% [markdown]
# ## 4 · Discriminative learning rates and gradual unfreezing
#
# Early layers hold general features (edges, textures) and later layers task-specific ones, so they deserve
# different rates. ULMFiT (Howard & Ruder, 2018) gives block $i$ of $K$ the rate
# $\eta_i = \eta\, d^{\,K-1-i}$ (in the paper $d = 1/2.6$), and **unfreezes gradually**: first the head
# alone, then one more block each stage. In PyTorch each block becomes one *parameter group* of the
# optimizer:

# %%
blocks = models.blocks_in_order(models.course_net())
groups = tm.layerwise_lr_groups(blocks, base_lr=0.01, decay=0.5)
optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
for group, block in zip(optimizer.param_groups, blocks, strict=True):
    print(f"block {group['block']}: {type(block).__name__:14s} lr {group['lr']:.5f}, "
          f"{sum(p.numel() for p in group['params']):7,} parameters")
schedule = tm.unfreeze_schedule(len(blocks), epochs_per_stage=1)
print("trainable top blocks per epoch under gradual unfreezing:", schedule)
tm.set_trainable_top(blocks, schedule[0])
print("after the first stage, trainable:", [any(p.requires_grad for p in b.parameters()) for b in blocks])

# %% [markdown]
# ## 5 · LP-FT: why a random head distorts features
#
# Kumar et al. (2022) showed that fine-tuning with a **randomly initialised head** changes the pretrained
# features mostly along the directions the target training data occupies, and leaves the others alone, so
# features of inputs *unlike* the training data stop matching the new head: good in-distribution accuracy,
# worse out-of-distribution. Fitting the head first (linear probing, LP) and only then fine-tuning (FT)
# starts where the gradient into the features is small. A linear toy where the distortion can be measured:
# features $B x$ with $B \in \mathbb{R}^{k\times d}$ pretrained to the "true" $B^\star$, labels from
# $v^{\star\top} B^\star x$, target training inputs confined to a 6-dimensional subspace of the 10 input
# dimensions, and out-of-distribution (OOD) test inputs in all 10.

# %%
generator = torch.Generator().manual_seed(SEED)
d, k = 10, 5
true_b = torch.randn(k, d, generator=generator)
true_v = torch.randn(k, generator=generator)
subspace = torch.linalg.qr(torch.randn(d, 6, generator=generator))[0]
train_inputs = torch.randn(200, 6, generator=generator) @ subspace.T
ood_inputs = torch.randn(500, d, generator=generator)
label = lambda x: x @ true_b.T @ true_v
pretrained_b = true_b + 0.05 * torch.randn(k, d, generator=generator)  # a good, not perfect, source model


def finetune_linear(head_start: torch.Tensor, steps: int = 300, lr: float = 0.01) -> tuple[float, float]:
    """Fine-tune B and v jointly with squared loss; return (feature distortion, OOD error)."""
    b, v = pretrained_b.clone().requires_grad_(), head_start.clone().requires_grad_()
    optimizer = torch.optim.SGD([b, v], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        ((train_inputs @ b.T @ v - label(train_inputs)) ** 2).mean().backward()
        optimizer.step()
    with torch.no_grad():
        distortion = (b - pretrained_b).norm().item()
        ood_error = ((ood_inputs @ b.T @ v - label(ood_inputs)) ** 2).mean().item()
    return distortion, ood_error


probed_head = torch.linalg.lstsq(train_inputs @ pretrained_b.T, label(train_inputs)[:, None]).solution[:, 0]
random_head = 0.1 * torch.randn(k, generator=generator)
lp_error = ((ood_inputs @ pretrained_b.T @ probed_head - label(ood_inputs)) ** 2).mean().item()
ft_distortion, ft_error = finetune_linear(random_head)
lpft_distortion, lpft_error = finetune_linear(probed_head)
print(f"{'method':8s} {'‖B − B0‖':>10s} {'OOD error':>10s}")
print(f"{'LP':8s} {0.0:10.3f} {lp_error:10.3f}")
print(f"{'FT':8s} {ft_distortion:10.3f} {ft_error:10.3f}")
print(f"{'LP-FT':8s} {lpft_distortion:10.3f} {lpft_error:10.3f}")
checks["lpft_distortion_ratio"] = lpft_distortion / ft_distortion

# %% [markdown]
# ## 6 · Measuring domain shift: the maximum mean discrepancy
#
# How different are the source and target tasks *in feature space*? The squared MMD with a kernel $k$ is
# the distance between the mean embeddings of the two distributions,
#
# $$ \mathrm{MMD}^2(P, Q) = \mathbb{E}[k(x, x')] + \mathbb{E}[k(y, y')] - 2\,\mathbb{E}[k(x, y)],
#    \qquad k(x, y) = \exp\!\left(-\frac{\lVert x - y\rVert^2}{2\sigma^2}\right). $$
#
# The **biased** estimator averages all pairs including $x_i$ with itself; the **unbiased** one leaves those
# out (and can be slightly negative). A **permutation test** asks how often randomly re-splitting the pooled
# features gives an MMD² at least as large as the observed one: that fraction is the p-value, (count + 1) /
# (B + 1) with B permutations, so it can never go below 1/(B + 1); when no permutation reaches the observed value
# we print "p ≤ 1/(B + 1)", the smallest value B permutations can show.
#
# Three comparisons, each of two samples of the same size:
# - **task shift**: source-class images against target-class images. The classes differ, so this is a shift in
#   *what* is shown (label or concept shift), not domain shift;
# - **domain shift** as notebook 01 defines it, same classes with new inputs: target test images against
#   *other* target test images with Gaussian pixel noise added (σ = 20 on the 0-255 scale);
# - **control**: two random halves of the clean target test images, where nothing differs.

# %%
half = len(target_test_x) // 2
bandwidth = MMD_BANDWIDTH or tm.median_bandwidth(source_x[:200], target_test_x[:200])
permutations = 50 if config["profile"] == "smoke" else 200
picked = rng.choice(len(target.y_test), size=min(count, len(target.y_test)), replace=False)
clean_images = target.x_test[picked]
noise = np.random.default_rng(SEED).normal(0, 20, clean_images.shape)
noisy_x = features(np.clip(clean_images + noise, 0, 255).astype(np.uint8))
clean_x = features(clean_images)
tests = {"task shift (source vs target classes)": (source_x[:half], target_test_x[half:]),
         "domain shift (clean vs noisy, same classes)": (clean_x[:half], noisy_x[half:]),
         "control (two halves of clean target)": (clean_x[:half], clean_x[half:])}
print(f"bandwidth σ = {bandwidth:.2f} ({'median heuristic' if MMD_BANDWIDTH is None else 'parameter'}), "
      f"{permutations} permutations, {half} images per sample")
mmd_results = {}
for name, (first, second) in tests.items():
    value, p = tm.mmd_permutation_test(first, second, bandwidth, permutations, seed=SEED)
    mmd_results[name] = {"mmd2_unbiased": value, "mmd2_biased": tm.mmd2(first, second, bandwidth, unbiased=False),
                         "p": p}
    p_text = f"p ≤ {1 / (permutations + 1):.3f}" if p <= 1 / (permutations + 1) + 1e-12 else f"p = {p:.3f}"
    print(f"{name:44s} MMD² unbiased {value:+.4f}, biased {mmd_results[name]['mmd2_biased']:.4f}, {p_text}")

# %% [markdown]
# ## 7 · BatchNorm under transfer, in both frameworks
#
# A BatchNorm layer has two kinds of state: learned weights (γ, β) and **running statistics** (mean,
# variance) that it updates whenever it runs in training mode. Freezing must stop both.
#
# **PyTorch**: `requires_grad = False` stops the weights but *not* the statistics; only `.eval()` does.

# %%
layer = nn.BatchNorm2d(3)
batch = torch.randn(8, 3, 4, 4) * 2 + 5
for parameter in layer.parameters():
    parameter.requires_grad = False
layer.train()
layer(batch)
print("requires_grad=False, train mode: running mean", layer.running_mean.numpy().round(3))
layer.reset_running_stats()
layer.eval()
layer(batch)
print("eval mode:                        running mean", layer.running_mean.numpy().round(3))

# %% [markdown]
# **Keras**: since TensorFlow 2.0, setting `trainable = False` on a `BatchNormalization` layer *also* makes it
# run in inference mode: its moving statistics stop. Calling a layer directly with `training=False` runs it in
# inference mode too. The Keras guide builds on that: call a frozen base inside the new model as
# `base(inputs, training=False)`, and unfreezing it later will not switch its statistics back on. The last
# line below tests that claim in Keras 3 by calling such a model the way `fit` does, with `training=True`.

# %%
runtime.import_tensorflow()
import keras  # noqa: E402 - imported after torch, through the helper above

keras_batch = batch.permute(0, 2, 3, 1).numpy()
for setting in ("trainable=True, training=True", "trainable=False, training=True", "trainable=True, training=False"):
    bn = keras.layers.BatchNormalization()
    bn.build(keras_batch.shape)
    bn.trainable = setting.startswith("trainable=True")
    bn(keras_batch, training=setting.endswith("training=True"))
    print(f"Keras {setting:31s}: moving mean {np.asarray(bn.moving_mean).round(3)}")
inner_input = keras.Input(keras_batch.shape[1:])
base = keras.Model(inner_input, keras.layers.BatchNormalization()(inner_input))  # a "base" holding one BatchNorm
outer_input = keras.Input(keras_batch.shape[1:])
wrapper = keras.Model(outer_input, base(outer_input, training=False))  # the guide's pattern
wrapper(keras_batch, training=True)  # what fit does at every step
print(f"Keras base(x, training=False) inside a model called with training=True: moving mean "
      f"{np.asarray(base.layers[-1].moving_mean).round(3)}")

# %% [markdown]
# Read the last line against the first: with the pinned Keras 3.15.1 the nested `training=False` did not hold
# (if the moving mean is not all zeros, the statistics moved): `fit`'s `training=True` reaches the layers of
# a base that is trainable. So in Keras 3, keep BatchNorm in inference mode during fine-tuning by setting
# `trainable = False` on the BatchNorm layers themselves, which is what notebook 04 does.

# %% [markdown]
# ## 8 · Knowledge distillation and the T² factor
#
# A student learns from a teacher's *softened* probabilities, $p_T = \operatorname{softmax}(z / T)$ (Hinton
# et al., 2015):
#
# $$ L = \alpha\, T^2\, \mathrm{KL}\!\left(p_T^\text{teacher} \,\Vert\, p_T^\text{student}\right)
#        + (1 - \alpha)\, \mathrm{CE}(z^\text{student}, y). $$
#
# The gradient of the soft term with respect to the student's logits scales like $1/T^2$ for large $T$, so
# without the $T^2$ factor, raising the temperature would quietly switch the soft targets off. We check the
# loss against its formula and plot the gradient size with and without the factor.

# %%
torch.manual_seed(SEED)
teacher_logits, labels = torch.randn(64, 5) * 3, torch.randint(0, 5, (64,))
student_logits = torch.randn(64, 5, requires_grad=True)
loss = tm.distillation_loss(student_logits, teacher_logits, labels, TEMPERATURE, alpha=0.5)
p_teacher = (teacher_logits / TEMPERATURE).softmax(1)
manual = 0.5 * TEMPERATURE ** 2 * (p_teacher * (p_teacher.log() - (student_logits / TEMPERATURE).log_softmax(1))
                                   ).sum(1).mean() + 0.5 * nn.functional.cross_entropy(student_logits, labels)
checks["distillation_vs_formula"] = abs(loss.item() - manual.item())
print(f"distillation loss at T={TEMPERATURE}: {loss.item():.4f} (formula: {manual.item():.4f})")

temperatures = [1, 2, 4, 8, 16]
norms = []
for temperature in temperatures:
    student_logits.grad = None
    tm.distillation_loss(student_logits, teacher_logits, labels, temperature, alpha=1.0).backward()
    norms.append(student_logits.grad.norm().item())
fig, ax = plt.subplots(figsize=(5, 3))
ax.loglog(temperatures, norms, "o-", label="with T²")
ax.loglog(temperatures, [n / t ** 2 for n, t in zip(norms, temperatures, strict=True)], "o--", label="without T²")
ax.set(xlabel="temperature T", ylabel="gradient norm", title="Soft-target gradient size")
ax.legend()
plt.show()

# %% [markdown]
# ## Record the checks

# %%
run_folder = reporting.run_dir("02_math_of_transfer", OUTPUT_DIR)
metrics_path = reporting.save_run(run_folder, config, cifar.identity,
                                  {**checks, "mmd": mmd_results, "mmd_permutations": permutations})

# %% [markdown]
# ## Exercises
#
# 1. Set the probe's λ to 0 in `fit_probe_by_gradient_descent` on linearly separable features. Is the optimum
#    still unique? What happens to ‖W‖?
# 2. In the L2-SP cell, set α = 0. Which method is it now equivalent to?
# 3. Change `MMD_BANDWIDTH` to 100 times the median heuristic. Why does the test lose its power?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. No: on separable data the unregularised loss keeps decreasing as ‖W‖ grows, so there is no minimiser
#    at all, and gradient descent drifts off towards infinity in the max-margin direction.
# 2. Plain fine-tuning with weight decay β on the head only, and no regularisation of the body.
# 3. Not because MMD² gets small: every permuted MMD² shrinks by the same factor, so rescaling alone would not
#    change the p-value. With a huge σ the kernel is nearly quadratic, k(x, y) ≈ 1 − ‖x − y‖²/(2σ²), and MMD²
#    becomes (up to that factor) the squared distance between the two *means*: the test then only sees
#    differences in the mean, and loses its power against every other difference between the distributions.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. A linear probe is fitted on standardised features, (x − μ)/σ. To use it as the network's new head,
#    fold the standardisation into the layer: find W′ and b′ with W′x + b′ = W (x − μ)/σ + b for every x.
#    Replace the `raise` line with your code, then run the check cell (notebook 05 turns its probe into a head
#    this way). Reference solution: `solutions/02_math_of_transfer.py`.

# %%
def fold_standardisation(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Return (W', b') such that W' x + b' = W (x - mean) / scale + b."""
    raise NotImplementedError  # your code here


# %%
exercises.check("02.1", fold_standardisation)


# %% [markdown]
# ## Summary
# - A linear probe on frozen features is a convex problem with one optimum; ridge gives a closed form.
# - Fine-tuning finds a nearby minimum; a low learning rate keeps it near the source weights.
# - L2-SP regularises towards the source weights; discriminative rates and gradual unfreezing protect the
#   general early layers.
# - LP-FT fits the head first so fine-tuning distorts the features less.
# - MMD with a permutation test measures a shift between two samples in feature space: between tasks, or between
#   domains (same classes, new inputs), against a control where nothing differs.
# - Freezing BatchNorm: `.eval()` in PyTorch; `trainable=False` on the BatchNorm layers in Keras 3 (a nested
#   `training=False` does not survive `fit`).
# - Distillation's T² keeps soft-target gradients on the same scale at any temperature.
#
# ## References
# - Li, Grandvalet, Davoine (2018). *Explicit inductive bias for transfer learning with convolutional
#   networks* (L2-SP). ICML.
# - Howard, Ruder (2018). *Universal language model fine-tuning for text classification* (ULMFiT). ACL.
# - Kumar, Raghunathan, Jones, Ma, Liang (2022). *Fine-tuning can distort pretrained features and
#   underperform out-of-distribution* (LP-FT). ICLR.
# - Gretton, Borgwardt, Rasch, Schölkopf, Smola (2012). *A kernel two-sample test*. JMLR.
# - Hinton, Vinyals, Dean (2015). *Distilling the knowledge in a neural network*. NIPS workshop.
# - Ioffe, Szegedy (2015). *Batch normalization*. ICML.
