# %% [markdown]
# # 11 · Learning to learn, and recognising classes with no labels at all
#
# Every notebook so far transfers a network trained for *one* task. Two other ideas change what is transferred:
# - **meta-learning** trains for *adaptability*: over many small tasks, learn a starting point from which a few
#   gradient steps on a few examples solve a new task (MAML, Finn et al., 2017; its first-order variants FOMAML
#   and Reptile, Nichol et al., 2018), or an embedding in which a class is its mean (Prototypical Networks,
#   Snell et al., 2017);
# - **zero-shot learning** transfers *descriptions*: attributes learned on the source classes ("has four legs",
#   "man-made") recognise target classes from their attribute rows alone, with **zero** target images labelled
#   (direct attribute prediction, Lampert et al., 2009/2014; ESZSL, Romera-Paredes and Torr, 2015).
#
# Three parts, each run live:
# 1. Finn et al.'s sinusoid regression (their Figure 2): MAML against a network pretrained on all tasks at once,
#    after 1 and 10 gradient steps on K = 5 and 10 points; FOMAML and Reptile beside them.
# 2. N-way K-shot image episodes: meta-trained on the course's source classes (0-4), tested on the target
#    classes (5-9): MAML, ANIL (Raghu et al., 2020), Prototypical Networks and a probe on frozen supervised
#    features (Tian et al., 2020), `EPISODES` shared test episodes (600 in the `cpu` profile), paired intervals.
# 3. Zero-shot recognition of the five target classes from an attribute table, against chance; what limits it;
#    the generalised setting (all ten classes) and its bias towards seen classes; ESZSL in PyTorch and Keras.
#
# **Learning objectives**
# - Read MAML's inner loop with `torch.func` and its meta-gradient, second-order and first-order, and Reptile's
#   update as the notebook writes them, and write FOMAML's meta-gradient yourself (exercise 11.1); say why a
#   meta-learned start adapts where a pretrained one does not.
# - Meta-train on episodes with labels shuffled per episode, test on unseen classes with paired intervals, and read
#   Raghu et al.'s "feature reuse" finding and Tian et al.'s baseline against the run.
# - Recognise classes never labelled from attribute classifiers (you write DAP's class scores, exercise 11.2),
#   measure it against chance, and name what limits it: attributes the source classes never vary, and the bias
#   towards seen classes.
#
# **Estimated time** (`cpu` profile, 2 CPU cores, CIFAR-10 JPEG copy): about 7 minutes (the README's benchmark):
# the image episodes about 5 of them, the sinusoids under 2, the zero-shot part well under one. The run prints its
# own time at the end, part by part. `smoke` takes about a minute. It needs
# notebook 03's source model (trained first if missing, as in 07-09). `full` profile on one GPU: about 4 min (a
# target, not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
DATASET: str = "auto"  # auto, cifar10 or synthetic
PART: str = "all"  # all, sinusoid, episodes or zero_shot
SINE_STEPS: Optional[int] = None  # meta-training steps of the sinusoid part; None lets the profile decide
SINE_TASKS: int = 25  # tasks per meta-training step (Finn et al.: 25)
SINE_SHOTS: list = [5, 10]  # K: points a test task shows before it is predicted
INNER_LR: float = 0.01  # inner-loop step size on the sinusoids (Finn et al.: 0.01)
FINE_TUNE_STEPS: int = 10  # gradient steps at test time on a sinusoid task
EPISODE_DATA: str = "course"  # course (CIFAR-10's split) or cifar_fs (CIFAR-100's CIFAR-FS split: downloads it)
N_WAY: int = 5  # classes per image episode
K_SHOT: int = 5  # labelled images per class in an image episode
QUERY: int = 15  # query images per class in an episode
META_STEPS: Optional[int] = None  # meta-training steps of each image method; None lets the profile decide
TASKS_PER_STEP: int = 2  # episodes averaged in one meta-training step of each image method
IMAGE_INNER_LR: float = 0.1  # inner-loop step size of MAML and ANIL on images
INNER_STEPS: int = 1  # inner steps while meta-training on images
TEST_INNER_STEPS: int = 3  # inner steps when a test episode is adapted to
EPISODES: Optional[int] = None  # test episodes; None lets the profile decide
SEED: int = 0  # seeds tasks, episodes and training
OUTPUT_DIR: Optional[str] = None  # None means outputs/11_meta_learning_zero_shot

# %% [markdown]
# ## Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.func import functional_call, grad, vmap

from helpers import (
    data,
    exercises,
    meta,
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
from helpers import transferability as tr
from helpers.progress import progress_bar  # tqdm that a saved notebook shows finished

parameters.check_parameters(globals(), choices={"PART": meta.PARTS, "EPISODE_DATA": meta.EPISODE_DATA})  # ranges too

plots.setup_plots()
environment = runtime.environment_report()
device = runtime.torch_device()
runtime.seed_everything(SEED)
config = profiles.resolve_config("11_meta_learning_zero_shot", PROFILE, sine_steps=SINE_STEPS, meta_steps=META_STEPS,
                                 episodes=EPISODES)
config.update(dataset_requested=DATASET, part=PART, sine_tasks=SINE_TASKS, sine_shots=SINE_SHOTS, inner_lr=INNER_LR,
              fine_tune_steps=FINE_TUNE_STEPS, episode_data=EPISODE_DATA, n_way=N_WAY, k_shot=K_SHOT, query=QUERY,
              tasks_per_step=TASKS_PER_STEP, image_inner_lr=IMAGE_INNER_LR, inner_steps=INNER_STEPS,
              test_inner_steps=TEST_INNER_STEPS, seed=SEED, strategy="zero_shot_dap",
              labels_per_class=0, validation="labelled", weights="course")  # read by notebook 06 like a run
run_start = time.perf_counter()
results: dict = {}
part_seconds: dict = {}  # wall time of each part, printed at the end and recorded

cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
source, target = splits.source_target_split(cifar)
if PART in ("all", "episodes"):  # the episodes' data is loaded, and N, K and query checked against it, before any work
    if EPISODE_DATA == "cifar_fs":  # 64 meta-training classes, 20 new test classes, 600 images each
        (meta_x, meta_labels), (test_x, test_labels) = meta.cifar_fs_split(data.load_cifar100())
    else:  # the course's split: the source classes' training images, the target classes' test images
        meta_x, meta_labels, test_x, test_labels = source.x_train, source.y_train, target.x_test, target.y_test
    for episode_labels in (meta_labels, test_labels):
        _ = tr.sample_episode(episode_labels, N_WAY, K_SHOT, QUERY, np.random.default_rng(SEED))
model_03, weights_info = models.source_model("course", "course_net", config["profile"], DATASET)
models.check_source_data(weights_info, cifar.identity)  # a source model trained on other data is refused
model_03 = torch_train.to_device(model_03, device).eval()
print(reporting.weights_line(weights_info))

# %% [markdown]
# ## 1 · MAML on sinusoids (Finn et al., 2017, Figure 2)
# A **task** is a sine wave y = A·sin(x + φ), amplitude A in [0.1, 5], phase φ in [0, π], inputs x in [-5, 5].
# A learner sees K points of a new task and must predict the whole curve. The network is small (1 → 40 → 40 → 1).
#
# **MAML** looks for parameters θ from which *one gradient step* on a task's K points gives a good fit to that
# task. For a task i with support points (the K shown) and query points (more from the same task):
#
# - inner step: θ'ᵢ = θ − α ∇θ L_support,i(θ)
# - meta-objective: minimise Σᵢ L_query,i(θ'ᵢ) over θ.
#
# The meta-gradient differentiates *through* the inner step, so it contains second derivatives (the Hessian of
# the support loss times a vector). `torch.func` makes this literal: `grad(loss)` is a function that returns the
# gradient, `functional_call` runs the network with any parameters we hand it, and `vmap` runs one task's code
# over a batch of tasks. **FOMAML** treats the inner gradient as a constant (`.detach()`), dropping the
# second-order term; **Reptile** skips the query loss altogether: run k plain SGD steps on a task, each on a new
# minibatch of its points, then move θ a fraction ε of the way towards where they ended, θ ← θ + ε·mean(θ'ᵢ − θ).
# (Reptile here sees five minibatches of 10 points of each task per step, MAML 20 points: points cost nothing in
# this toy; the budget that is equal is the number of steps and tasks.)
#
# The control is Finn et al.'s: a **pretrained** network, the same architecture trained on the same stream of
# tasks to predict y from x directly (all tasks pooled), then fine-tuned on the K points exactly like MAML. It
# gets the same steps, tasks per step and optimizer, and its fine-tuning step size is chosen for each K on held-out
# training tasks from a grid, by the error after `FINE_TUNE_STEPS` steps, as Finn et al. tuned theirs (MAML's is
# the α it was trained with), so the baseline gets a tuning budget MAML does not. Reptile's test step size is
# chosen the same way: its training fixed the step for minibatches of 10 points, not for K points at test.

# %%
sine_net = meta.sine_net()  # the architecture; each method trains its own parameters through functional_call


def mse(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the sine network with `params` on one task's points."""
    return ((functional_call(sine_net, params, (x,)) - y) ** 2).mean()


def adapt(loss_fn, params: dict, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
          first_order: bool = False) -> dict:
    """MAML's inner loop: `steps` gradient steps from `params` on (x, y); differentiable unless `first_order`."""
    for _ in range(steps):
        grads = grad(loss_fn)(params, x, y)  # a dict like params: d loss / d each tensor
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}  # FOMAML: the step is a constant
        params = {name: p - lr * grads[name] for name, p in params.items()}
    return params


def maml_task_loss(params: dict, x_support: torch.Tensor, y_support: torch.Tensor, x_query: torch.Tensor,
                   y_query: torch.Tensor, first_order: bool = False) -> torch.Tensor:
    """Query loss after one inner step on the support points: MAML's objective for one task."""
    return mse(adapt(mse, params, x_support, y_support, INNER_LR, 1, first_order), x_query, y_query)


def sine_points(rng: np.random.Generator, tasks: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of `points` points from each of `tasks` fresh sinusoid tasks, shape (tasks, points, 1)."""
    _, _, x, y = meta.sample_sine_tasks(tasks, points, rng)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)


def sine_batch(rng: np.random.Generator, tasks: int, shots: int) -> list[torch.Tensor]:
    """Support and query points of `tasks` fresh sinusoid tasks: [x_support, y_support, x_query, y_query]."""
    x, y = sine_points(rng, tasks, 2 * shots)
    return [x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]]


def reptile_update(params: dict, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> dict:
    """Reptile: k SGD steps per task, each on its own minibatch, then theta + epsilon * mean(theta'_i - theta)."""
    def one_task(x_task: torch.Tensor, y_task: torch.Tensor) -> dict:
        """The weights after k steps on one task's k minibatches."""
        current = params
        for x_batch, y_batch in zip(x_task.chunk(REPTILE_INNER_STEPS), y_task.chunk(REPTILE_INNER_STEPS), strict=True):
            current = adapt(mse, current, x_batch, y_batch, REPTILE_INNER_LR, 1)
        return current

    with torch.no_grad():
        adapted = vmap(one_task)(x, y)  # x, y: (tasks, k * batch, 1)
        return {name: p + epsilon * (adapted[name].mean(0) - p) for name, p in params.items()}


def train_sine(method: str, steps: int, seed: int) -> dict:
    """Meta-train (or pretrain) the sine network with one method; return its parameters (detached)."""
    torch.manual_seed(seed)
    params = {name: p.detach().clone().requires_grad_() for name, p in meta.sine_net().named_parameters()}
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    for step in range(steps):
        if method == "Reptile":  # no query loss: k minibatches of 10 points per task, one step on each
            x_k, y_k = sine_points(rng, SINE_TASKS, 10 * REPTILE_INNER_STEPS)
            epsilon = REPTILE_EPSILON * (1 - step / steps)  # annealed linearly to 0, as Nichol et al.
            params = reptile_update(params, x_k, y_k, epsilon)
            continue
        x_s, y_s, x_q, y_q = sine_batch(rng, SINE_TASKS, 10)  # K = 10 while training, as Finn et al.
        if method == "pretrained":  # one regression over all tasks' points, no inner step
            loss = mse(params, torch.cat([x_s, x_q], 1).reshape(-1, 1), torch.cat([y_s, y_q], 1).reshape(-1, 1))
        else:
            task_losses = vmap(maml_task_loss, in_dims=(None, 0, 0, 0, 0, None))(params, x_s, y_s, x_q, y_q,
                                                                                  method == "FOMAML")
            loss = task_losses.mean()
        runtime.check_finite_loss(loss)  # a diverged run stops here and names INNER_LR
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: p.detach() for name, p in params.items()}


REPTILE_INNER_STEPS, REPTILE_INNER_LR, REPTILE_EPSILON = 5, 0.02, 0.1  # k SGD steps of 0.02; epsilon, annealed
SINE_METHODS = ("MAML", "FOMAML", "Reptile", "pretrained")
if PART in ("all", "sinusoid"):
    part_start = time.perf_counter()
    sine_params, train_seconds = {}, {}
    for method in progress_bar(SINE_METHODS, desc="sinusoid methods"):
        train_sine(method, 2, SEED)  # warm-up, untimed: the first call of each method pays one-off set-up costs
        start = time.perf_counter()
        sine_params[method] = train_sine(method, config["sine_steps"], SEED)
        train_seconds[method] = time.perf_counter() - start
    print(", ".join(f"{m}: {config['sine_steps']} steps in {s:.0f} s" for m, s in train_seconds.items()))
    extra = train_seconds["MAML"] / train_seconds["FOMAML"]
    print(f"MAML took {extra:.1f} times FOMAML's time: " + (
        "the second-order term (a backward pass through the inner step) is what MAML pays extra" if extra > 1.2 else
        "no clear cost of the second-order term here: on a network this small, per-step overhead dominates"))

# %% [markdown]
# **Testing.** The same test tasks for every method (paired): each shows K points, gets `FINE_TUNE_STEPS`
# plain gradient steps on them, and is scored by the mean squared error on 100 evenly spaced x in [-5, 5]. The
# step sizes of Reptile and of the pretrained network are chosen first, on separate tasks drawn from the training
# distribution.

# %%
def fine_tune_curve(params: dict, x: torch.Tensor, y: torch.Tensor, x_grid: torch.Tensor, y_grid: torch.Tensor,
                    lr: float) -> torch.Tensor:
    """Test MSE of every task after 0, 1, ..., FINE_TUNE_STEPS steps on its K points: shape (tasks, steps + 1)."""
    def one_task(x_k: torch.Tensor, y_k: torch.Tensor, x_all: torch.Tensor, y_all: torch.Tensor) -> torch.Tensor:
        """The error curve of one task."""
        errors, current = [mse(params, x_all, y_all)], params
        for _ in range(FINE_TUNE_STEPS):
            current = adapt(mse, current, x_k, y_k, lr, 1)
            errors.append(mse(current, x_all, y_all))
        return torch.stack(errors)
    return vmap(one_task)(x, y, x_grid, y_grid)


def sine_test_tasks(count: int, shots: int, seed: int) -> tuple[torch.Tensor, ...]:
    """`count` tasks with K shown points each and the 100-point grid they are scored on."""
    rng = np.random.default_rng(seed)
    amplitude, phase, x, y = meta.sample_sine_tasks(count, shots, rng)
    grid = np.broadcast_to(np.linspace(*meta.SINE_X, 100).reshape(1, 100, 1), (count, 100, 1))
    as_tensor = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32)  # noqa: E731
    return as_tensor(x), as_tensor(y), as_tensor(grid), as_tensor(amplitude * np.sin(grid + phase))


if PART in ("all", "sinusoid"):
    with torch.no_grad():
        curves, test_tasks, test_lr = {}, {}, {}
        for shots in SINE_SHOTS:  # step sizes not fixed by training, chosen per K as Finn et al. chose theirs
            validation = sine_test_tasks(100, shots, SEED + 1000 + shots)  # training-distribution tasks, not test
            test_lr[shots] = {"MAML": INNER_LR, "FOMAML": INNER_LR}  # the alpha they were meta-trained with
            for method in ("Reptile", "pretrained"):
                final_error = {lr: float(fine_tune_curve(sine_params[method], *validation, lr)[:, -1].mean())
                               for lr in (0.002, 0.005, 0.01, 0.02, 0.05)}
                final_error = {lr: e if np.isfinite(e) else np.inf for lr, e in final_error.items()}  # inf: diverged
                test_lr[shots][method] = min(final_error, key=final_error.get)
                print(f"K = {shots}: {method} fine-tunes with step size {test_lr[shots][method]} (validation MSE "
                      f"after {FINE_TUNE_STEPS} steps: " + ", ".join(f"{lr}: {e:.2f}" if e < 1e3 else f"{lr}: diverged"
                                                                     for lr, e in final_error.items()) + ")")
            test_tasks[shots] = sine_test_tasks(config["test_tasks"], shots, SEED + 2000 + shots)
            for method in SINE_METHODS:
                curves[method, shots] = fine_tune_curve(sine_params[method], *test_tasks[shots],
                                                        test_lr[shots][method]).numpy()
    sine_rows = []
    for (method, shots), curve in curves.items():
        row = {"K": shots, "method": method}
        for steps in (0, 1, FINE_TUNE_STEPS):
            row[f"MSE, {steps} steps"], row[f"ci95 ({steps})"] = tr.mean_interval(curve[:, steps])
        sine_rows.append(row)
    results["sinusoid"] = sine_rows
    print(reporting.markdown_table(sine_rows, list(sine_rows[0])))

# %% [markdown]
# Finn et al.'s Figure 2, from this run: one test task, the K points it shows, and each network before and after
# 1 and 10 gradient steps. Their finding: after one step on K points MAML fits the task far better than the
# pretrained network, which adapts slowly and, with K = 5, can overfit the few points it sees. The pretrained
# network starts near the *average* of all tasks (phases spread over [0, π] average to (2/π)·Ā·cos x ≈ 1.6·cos x,
# where Ā = 2.55 is the mean amplitude).
# Beside it, their Figure 3: the error over the test tasks against the number of gradient steps.

# %%
if PART in ("all", "sinusoid"):
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex="col")
    for row, shots in enumerate(SINE_SHOTS[:2]):
        x_k, y_k, x_grid, y_grid = (v[0] for v in test_tasks[shots])
        for column, method in enumerate(("MAML", "pretrained")):
            ax, params = axes[row, column], sine_params[method]
            ax.plot(x_grid, y_grid, color="black", lw=2, label="true task")
            ax.scatter(x_k, y_k, color="black", marker="^", zorder=5, label=f"the {shots} points shown")
            with torch.no_grad():
                for steps, style in ((0, ":"), (1, "--"), (FINE_TUNE_STEPS, "-")):
                    adapted = adapt(mse, params, x_k, y_k, test_lr[shots][method], steps) if steps else params
                    ax.plot(x_grid, functional_call(sine_net, adapted, (x_grid,)), style,
                            label={0: "before", 1: "after 1 step"}.get(steps, f"after {steps} steps"))
            ax.set(title=f"{method}, K = {shots}", ylim=(-6, 6), xlabel="x", ylabel="y")
        ax = axes[row, 2]
        for method in SINE_METHODS:  # means only: the intervals are in the table above
            ax.plot(np.arange(FINE_TUNE_STEPS + 1), curves[method, shots].mean(0), "o-", markersize=3, label=method)
        ax.set(title=f"mean test MSE, K = {shots}", xlabel="gradient steps", ylabel="MSE (log scale)", yscale="log")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    axes[0, 2].legend(fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# The reading below compares MAML with each other method on the same test tasks (mean of the per-task difference
# in MSE, 95% interval): negative means MAML's error is lower.

# %%
if PART in ("all", "sinusoid"):
    paired_sine = []
    for shots in SINE_SHOTS:
        for other in SINE_METHODS[1:]:
            for steps in (1, FINE_TUNE_STEPS):
                gap, half = tr.mean_interval(curves["MAML", shots][:, steps] - curves[other, shots][:, steps])
                paired_sine.append({"K": shots, "MAML minus": other, "steps": steps, "MSE difference": gap,
                                    "ci95": half, "verdict": metrics.noise_verdict(gap - half, gap + half)})
    results["sinusoid_paired"] = paired_sine
    print(reporting.markdown_table(paired_sine, list(paired_sine[0])))
    for shots in SINE_SHOTS:
        m, p = curves["MAML", shots], curves["pretrained", shots]
        ratio = p[:, 1].mean() / m[:, 1].mean()
        print(f"K = {shots}: MAML's error went from {m[:, 0].mean():.2f} to {m[:, 1].mean():.2f} after one step "
              f"({m[:, -1].mean():.2f} after {FINE_TUNE_STEPS}); the pretrained network's from {p[:, 0].mean():.2f} "
              f"to {p[:, 1].mean():.2f} ({p[:, -1].mean():.2f} after {FINE_TUNE_STEPS}): after one step "
              + (f"MAML's is {ratio:.1f} times lower." if ratio > 1 else "MAML's is not lower."))
        for other in ("FOMAML", "Reptile"):
            gains = [(p[:, s].mean() - curves[other, shots][:, s].mean(), p[:, s].mean() - m[:, s].mean())
                     for s in (1, FINE_TUNE_STEPS)]
            kept = [f"{kept / gain:.0%}" if gain > 0 else "nothing to keep (MAML not ahead)" for kept, gain in gains]
            print(f"  Of MAML's gain over the pretrained network, {other} kept {kept[0]} after one step and "
                  f"{kept[1]} after {FINE_TUNE_STEPS}.")
    part_seconds["sinusoid"] = time.perf_counter() - part_start

# %% [markdown]
# Why the pretrained network adapts slowly: trained on all tasks pooled, the best single answer for a given x is
# the average over tasks, the wave (2/π)·Ā·cos x above: its parameters encode the average, not how to move. MAML's
# parameters are trained on what *one step* does, so they sit where a step on any task's points moves the output
# a long way in a useful direction. That is the sense in which meta-learning is not pretraining: the same data,
# the same network, another objective. Finn et al. found first-order MAML nearly as good as MAML on MiniImageNet,
# and Nichol et al. show why Reptile works at all: over several inner steps on different minibatches, its update
# contains a term that favours parameters where the gradients of different minibatches of a task agree. The lines
# above say how much of MAML's gain each kept in this run.

# %% [markdown]
# ## 2 · Image episodes: MAML, ANIL, Prototypical Networks, and a probe on frozen features
# Meta-training draws **episodes** from the source classes' training images: N classes, K support and `QUERY`
# query images each, the classes given the labels 0..N−1 in a **new random order every episode**. With only five
# source classes in CIFAR-10, every 5-way source episode holds the same five classes, and the shuffled labels are
# what makes the tasks differ: no output unit can mean "cat", so the network must learn to adapt. (This is the
# limit of the split: few-shot benchmarks meta-train on 64 classes or more, e.g. CIFAR-FS from CIFAR-100's 100
# classes, so that test classes are new *and* training tasks vary in content, not just in labelling.) Testing
# uses the target classes' test images, never seen in training, `EPISODES` episodes shared by every method.
# With CIFAR-100 at hand, `EPISODE_DATA = "cifar_fs"` runs the same cells on that benchmark's split (64 classes to
# meta-train on, 20 to test on; the download is hash-checked and cached like CIFAR-10's, and `make prefetch
# ITEMS=cifar100` stages it for an offline lab); the probe's network is still 03's, trained on CIFAR-10.
#
# Four meta-learners, all with the same 4-block CNN (32 filters, Finn et al.'s), the same meta-training steps, and
# the same number of episodes per step, and one baseline that is not meta-trained:
# - **MAML**: the inner loop of part 1 with cross-entropy, on every parameter; **FOMAML** the same without the
#   second-order term;
# - **ANIL** ("almost no inner loop", Raghu et al., 2020): the inner loop adapts only the head; the body is
#   meta-trained but never adapted per task. If ANIL matches MAML, MAML's inner loop was not changing the
#   features: its success is *feature reuse*, not rapid learning;
# - **Prototypical Networks** (Snell et al., 2017): no inner loop at all: a class is the mean of its support
#   embeddings and the loss is a softmax over negative squared distances to the means, trained episode by episode;
# - **probe on frozen supervised features** (Tian et al., 2020): notebook 03's network, trained on the source
#   classes' labels in the ordinary way (far more compute than the others get, and a wider network), with a
#   logistic regression fitted on each episode's support features. Tian et al. found that this simple baseline
#   matches or beats meta-learning; it is the control every meta-learning number needs.
#
# Batch norm in the 4-block CNN uses the statistics of the batch it sees (support or query), as in Finn et al.'s
# code: transductive, and the same for the four meta-learners (the probe's network, 03's, runs in eval mode).

# %%
def image_loss(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the 4-block CNN run with `params` on (x, y)."""
    return nn.functional.cross_entropy(functional_call(image_net, params, (x,)), y)


def maml_episode_loss(params: dict, episode: tuple, first_order: bool = False) -> torch.Tensor:
    """Query loss of the whole network after INNER_STEPS inner steps on the support set."""
    x_s, y_s, x_q, y_q = episode
    return image_loss(adapt(image_loss, params, x_s, y_s, IMAGE_INNER_LR, INNER_STEPS, first_order), x_q, y_q)


def embed(params: dict, x: torch.Tensor) -> torch.Tensor:
    """The body's features (images, 128) with the body's entries of `params`."""
    body = {name.removeprefix("body."): p for name, p in params.items() if name.startswith("body.")}
    return functional_call(image_net.body, body, (x,))


def head_loss(head: dict, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the linear head alone, on features computed once."""
    return nn.functional.cross_entropy(features @ head["head.weight"].T + head["head.bias"], y)


def anil_episode_loss(params: dict, episode: tuple) -> torch.Tensor:
    """Query loss after INNER_STEPS inner steps on the head only: the body's features are computed once, reused."""
    x_s, y_s, x_q, y_q = episode
    f_s, f_q = embed(params, x_s), embed(params, x_q)
    head = {name: p for name, p in params.items() if name.startswith("head.")}
    return head_loss(adapt(head_loss, head, f_s, y_s, IMAGE_INNER_LR, INNER_STEPS), f_q, y_q)


def prototype_episode_loss(params: dict, episode: tuple) -> torch.Tensor:
    """Prototypical loss: softmax over negative squared distances from query embeddings to class means (no steps)."""
    x_s, y_s, x_q, y_q = episode
    support, queries = embed(params, x_s), embed(params, x_q)
    prototypes = torch.stack([support[y_s == c].mean(0) for c in range(N_WAY)])
    return nn.functional.cross_entropy(-torch.cdist(queries, prototypes) ** 2, y_q)


def episode_tensors(images: torch.Tensor, labels: np.ndarray, rng: np.random.Generator) -> tuple:
    """One episode on the device, (x_support, y_support, x_query, y_query) with labels 0..N-1 reshuffled, and the
    support and query indices it drew."""
    support, y_support, query, y_query, _ = meta.relabelled_episode(labels, N_WAY, K_SHOT, QUERY, rng)
    as_labels = lambda y: torch.as_tensor(y, device=device)  # noqa: E731
    episode = images[support].to(device), as_labels(y_support), images[query].to(device), as_labels(y_query)
    return episode, support, query


def meta_train(episode_loss, steps: int, seed: int) -> dict:
    """Meta-train a fresh 4-block CNN: each step averages `episode_loss` over TASKS_PER_STEP source episodes."""
    torch.manual_seed(seed)
    params = {name: p.detach().to(device).requires_grad_() for name, p in meta.conv4(N_WAY).named_parameters()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        loss = sum(episode_loss(params, episode_tensors(meta_images, meta_labels, rng)[0])
                   for _ in range(TASKS_PER_STEP)) / TASKS_PER_STEP
        runtime.check_finite_loss(loss)  # a diverged run stops here and names IMAGE_INNER_LR
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: p.detach() for name, p in params.items()}


IMAGE_METHODS = {"MAML": maml_episode_loss, "FOMAML": lambda p, e: maml_episode_loss(p, e, first_order=True),
                 "ANIL": anil_episode_loss, "ProtoNet": prototype_episode_loss}
if PART in ("all", "episodes"):
    part_start = time.perf_counter()
    image_net = meta.conv4(N_WAY).to(device)  # the architecture; parameters live in each method's dict
    meta_images, test_images = meta.normalized(meta_x), meta.normalized(test_x)
    print(f"episodes from {EPISODE_DATA}: meta-training on {len(np.unique(meta_labels))} classes "
          f"({len(meta_labels):,} images), testing on {len(np.unique(test_labels))} others ({len(test_labels):,})")
    image_params, meta_seconds = {}, {}
    for name, episode_loss in progress_bar(IMAGE_METHODS.items(), desc="meta-training"):
        start = time.perf_counter()
        image_params[name] = meta_train(episode_loss, config["meta_steps"], SEED)
        meta_seconds[name] = time.perf_counter() - start
    print(", ".join(f"{name}: {config['meta_steps']} steps x {TASKS_PER_STEP} episodes in {s:.0f} s"
                    for name, s in meta_seconds.items()))

# %% [markdown]
# **Testing**: each test episode is drawn once and given to every method. MAML, FOMAML and ANIL take
# `TEST_INNER_STEPS` inner steps on the support set (Finn et al. also take more steps at test than in training);
# the MAML-trained network is also tested with only its head adapted (Raghu et al.'s test of feature reuse); the
# prototype network classifies queries by the nearest support mean; the probe fits a logistic regression (C = 1,
# fixed in advance) on 03's frozen features of the support images.

# %%
def predict_episode(name: str, params: dict, episode: tuple, head_only: bool = False) -> np.ndarray:
    """Query predictions of one meta-trained method on one episode (`head_only`: adapt the head alone)."""
    x_s, y_s, x_q, _ = episode
    if name == "ProtoNet":
        with torch.no_grad():
            support, queries = embed(params, x_s), embed(params, x_q)
            prototypes = torch.stack([support[y_s == c].mean(0) for c in range(N_WAY)])
            return torch.cdist(queries, prototypes).argmin(1).cpu().numpy()
    if name == "ANIL" or head_only:
        features_s, features_q = (embed(params, x).detach() for x in (x_s, x_q))
        head = {n: p for n, p in params.items() if n.startswith("head.")}
        head = adapt(head_loss, head, features_s, y_s, IMAGE_INNER_LR, TEST_INNER_STEPS, first_order=True)
        return (features_q @ head["head.weight"].T + head["head.bias"]).argmax(1).cpu().numpy()
    adapted = adapt(image_loss, params, x_s, y_s, IMAGE_INNER_LR, TEST_INNER_STEPS, first_order=True)
    with torch.no_grad():
        return functional_call(image_net, adapted, (x_q,)).argmax(1).cpu().numpy()


if PART in ("all", "episodes"):
    loader = torch_data.make_loader(test_x, test_labels, train=False, batch_size=256)
    frozen_features = torch_train.extract_features(model_03.features, loader, device, progress=False)
    rng = np.random.default_rng(SEED + 1)
    HEAD_ONLY, PROBE = "MAML, head only at test", "probe (03, frozen)"
    episode_acc: dict = {name: [] for name in [*IMAGE_METHODS, HEAD_ONLY, PROBE]}
    for _ in progress_bar(range(config["episodes"]), desc=f"{N_WAY}-way {K_SHOT}-shot test episodes"):
        episode, support, query = episode_tensors(test_images, test_labels, rng)
        y_s, y_q = episode[1].cpu().numpy(), episode[3].cpu().numpy()
        for name in IMAGE_METHODS:
            episode_acc[name].append(float((predict_episode(name, image_params[name], episode) == y_q).mean()))
        head_only = predict_episode("MAML", image_params["MAML"], episode, head_only=True)
        episode_acc[HEAD_ONLY].append(float((head_only == y_q).mean()))
        probe = LogisticRegression(C=1.0, max_iter=1000).fit(frozen_features[support], y_s)
        episode_acc[PROBE].append(float((probe.predict(frozen_features[query]) == y_q).mean()))
    episode_rows = [{"method": name, "accuracy": tr.mean_interval(v)[0], "ci95": tr.mean_interval(v)[1]}
                    for name, v in episode_acc.items()]
    results["episodes"] = episode_rows
    print(reporting.markdown_table(episode_rows, ["method", "accuracy", "ci95"]))
    print(f"chance: {1 / N_WAY:.2f} ({N_WAY}-way); {config['episodes']} test episodes, the same for every method")

# %% [markdown]
# Paired differences on the same episodes, and what they say about three papers' findings:
# - Raghu et al. (2020) found ANIL's accuracy comparable to MAML's on Omniglot and MiniImageNet (a couple of points
#   either way), and, the sharper test, that a MAML-trained network loses little when only
#   its head is adapted at test time: MAML's inner loop barely changes the body, the features are *reused*. The
#   run's version of that test is the row "MAML, head only at test" against MAML, on the same network.
# - Finn et al. (2017) found first-order MAML nearly as good as MAML on MiniImageNet.
# - Tian et al. (2020) found a probe on features learned by ordinary supervised training as good as or better
#   than meta-learning.
#
# Read the verdicts with the budget in mind: the meta-learners train a few hundred steps (Finn et al. trained
# 60,000 on MiniImageNet), from one training seed, so the intervals cover the sampling of test episodes, not the
# spread between training runs (the README's benchmark has three seeds). On the course split every test episode is
# the same five classes, relabelled, so the episodes vary in images and labelling only.

# %%
if PART in ("all", "episodes"):
    def paired(a: str, b: str) -> tuple[float, float]:
        """Mean per-episode accuracy of a minus b, and its paired 95% half-width."""
        return tr.mean_interval(np.subtract(episode_acc[a], episode_acc[b]))

    pairs = [("FOMAML", "MAML"), ("ANIL", "MAML"), (HEAD_ONLY, "MAML"), ("ProtoNet", "MAML"),
             *((PROBE, name) for name in IMAGE_METHODS)]
    paired_rows = []
    for a, b in pairs:
        gap, half = paired(a, b)
        paired_rows.append({"pair": f"{a} minus {b}", "difference": gap, "ci95": half,
                            "verdict": metrics.noise_verdict(gap - half, gap + half)})
    results["episodes_paired"] = paired_rows
    print(reporting.markdown_table(paired_rows, ["pair", "difference", "ci95", "verdict"]))

    def versus(a: str, b: str, agree: str, ahead: str, behind: str) -> str:
        """The paired difference a - b with a verdict: within the noise, a ahead, or a behind."""
        gap, half = paired(a, b)
        return f"{gap:+.3f} ± {half:.3f}: " + (agree if abs(gap) <= half else ahead if gap > 0 else behind)

    print("Raghu et al., at this budget and seed: adapting only the head of the MAML-trained network at test minus "
          "adapting all of it is " + versus(HEAD_ONLY, "MAML", "no loss from freezing the body (feature reuse, as "
                                            "they found)", "the head alone did better, so adapting the body did not "
                                            "help (feature reuse, as they found)", "adapting the body helped here, "
                                            "unlike in their runs") + "; ANIL minus MAML is "
          + versus("ANIL", "MAML", "within the noise, as they found", "ANIL ahead", "MAML ahead") + ".")
    print("Finn et al.: FOMAML minus MAML is " + versus("FOMAML", "MAML", "within the noise, as they found",
                                                          "first-order ahead", "the second-order term helped") + ".")
    best_meta = max(IMAGE_METHODS, key=lambda name: np.mean(episode_acc[name]))
    print(f"Tian et al.: the probe on 03's frozen features minus the best meta-learner here ({best_meta}) is "
          + versus(PROBE, best_meta, "within the noise of each other", "the plain baseline wins, as they found",
                   "meta-learning wins here, unlike in their runs")
          + f". Compute is not equal: 03 trained a wider network on all {len(source.y_train):,} source labels "
          f"for many epochs, the meta-learners {config['meta_steps']} steps of {TASKS_PER_STEP} episodes.")
    part_seconds["episodes"] = time.perf_counter() - part_start

# %% [markdown]
# ## 3 · Zero-shot: recognising the target classes from attributes alone
# Each class gets a row of binary **attributes** (the table below, written from what a person knows about the
# classes, as Lampert et al.'s were). **Direct attribute prediction (DAP)** trains one classifier per attribute on
# the *source* classes' images, where each image inherits its class's row, then scores a target class z for an
# image x by how well the predicted attributes match z's row:
#
# score(z | x) = Σₘ log p(aₘ = aₘᶻ | x) − Σₘ log p(aₘ = aₘᶻ),
#
# the second sum dividing out each attribute value's prior (its frequency over the source classes), as in
# Lampert et al. (2014, eq. 3). The predicted class is the argmax over the five target classes. No target image's
# label is used anywhere (asserted below); the features are 03's network's, trained on source labels only.

# %%
if PART in ("all", "zero_shot"):
    part_start = time.perf_counter()
    table = meta.attribute_table(cifar.class_names)
    print(reporting.markdown_table([{"class": name, "role": "source" if i in splits.SOURCE_CLASSES else "target",
                                     **{a: v for a, v in zip(table["attributes"], table["rows"][name], strict=True)}}
                                    for i, name in enumerate(cifar.class_names)],
                                   ["class", "role", *table["attributes"]]))
    source_signatures = meta.attribute_matrix(source.class_names, table["rows"])
    target_signatures = meta.attribute_matrix(target.class_names, table["rows"])
    unlearnable = meta.constant_attributes(source_signatures)
    learnable = np.setdiff1d(np.arange(len(table["attributes"])), unlearnable)
    print("attributes no source class varies (nothing to learn them from, left out): "
          + (", ".join(table["attributes"][i] for i in unlearnable) or "none"))

# %%
if PART in ("all", "zero_shot"):
    pool = np.flatnonzero(np.isin(cifar.y_train, splits.SOURCE_CLASSES))  # source-class images, CIFAR-10 labels
    smallest = int(np.bincount(source.y_train).min())
    per_class = min(config["zero_shot_per_class"] or smallest, smallest)  # None (full profile): every image
    source_index = pool[splits.sample_per_class(cifar.y_train[pool], per_class, SEED)]
    zsl_labels = meta.source_only(cifar.y_train[source_index], splits.SOURCE_CLASSES)  # refuses any target label
    zsl_classes = np.searchsorted(splits.SOURCE_CLASSES, zsl_labels)  # 0..4, the rows of source_signatures
    as_features = lambda images: torch_train.extract_features(  # noqa: E731
        model_03.features, torch_data.make_loader(images, np.zeros(len(images), dtype=np.int64), train=False,
                                                  batch_size=256), device, progress=False)
    train_features, target_features = as_features(cifar.x_train[source_index]), as_features(target.x_test)
    image_attributes = source_signatures[zsl_classes]  # each image inherits its class's row
    attribute_models = {m: LogisticRegression(C=1.0, max_iter=2000).fit(train_features, image_attributes[:, m])
                        for m in learnable}
    prior = source_signatures[:, learnable].mean(0)  # p(a_m = 1) over the source classes
    attribute_probs = np.stack([attribute_models[m].predict_proba(target_features)[:, 1] for m in learnable], 1)


if PART in ("all", "zero_shot"):
    scores = meta.dap_scores(attribute_probs, target_signatures[:, learnable], prior)  # the formula above
    tie_breaker = np.random.default_rng(SEED)
    scores = meta.break_ties(scores, tie_breaker)  # exact ties (see below) become a fair coin flip
    dap_predicted = scores.argmax(1)
    accuracy, low, high = metrics.bootstrap_accuracy(target.y_test, dap_predicted, seed=SEED)
    chance = 1 / len(target.class_names)
    zero_shot = {"accuracy": accuracy, "ci_low": low, "ci_high": high, "chance": chance,
                 "images": len(target.y_test), "source_images_used": len(source_index)}
    per_class_acc = {name: float((dap_predicted[target.y_test == c] == c).mean())
                     for c, name in enumerate(target.class_names)}
    results["zero_shot"] = {**zero_shot, "per_class": per_class_acc,
                            "unlearnable": [table["attributes"][i] for i in unlearnable]}
    print(f"DAP on the {len(target.y_test):,} target test images, zero target labels: accuracy {accuracy:.3f} "
          f"(95% interval {low:.3f} to {high:.3f}) against chance {chance:.2f}: "
          + ("above chance beyond the interval" if low > chance else "not distinguishable from chance"))
    print("per class: " + ", ".join(f"{name} {acc:.2f}" for name, acc in per_class_acc.items()))

# %% [markdown]
# **What limits it.** An attribute classifier can only learn what the source classes vary, and then only as far
# as the source images teach it. Below: for each learnable attribute, how well its classifier separates the
# *target* images that have it from those that do not (ROC AUC; 0.5 is no better than guessing), next to how
# many source classes have it. An attribute learned from one or two source classes ("flies": airplane and bird)
# can end up meaning "looks like those classes", and transfers only as far as the target classes resemble them.
# Attributes that the source classes only ever vary *together* are learned as one: their classifiers are trained
# on identical labels, so they give identical probabilities. DAP then scores two target classes identically on
# every image when they have the same number of attributes in each such group; such a tie is broken at random
# (a coin flip, not a decision), and the line below names the groups and the tied classes.

# %%
if PART in ("all", "zero_shot"):
    from sklearn.metrics import roc_auc_score

    truth = target_signatures[target.y_test][:, learnable]
    attribute_rows = []
    for column, m in enumerate(learnable):
        varies = truth[:, column].min() != truth[:, column].max()
        attribute_rows.append({"attribute": table["attributes"][m],
                               "source classes with it": int(source_signatures[:, m].sum()),
                               "target classes with it": int(target_signatures[:, m].sum()),
                               "AUC on target images": roc_auc_score(truth[:, column], attribute_probs[:, column])
                               if varies else "-"})
    results["attribute_auc"] = attribute_rows
    print(reporting.markdown_table(attribute_rows, list(attribute_rows[0])))
    weakest = min((r for r in attribute_rows if r["AUC on target images"] != "-"),
                  key=lambda r: r["AUC on target images"])
    worst_class = min(per_class_acc, key=per_class_acc.get)
    print(f"Weakest transfer: '{weakest['attribute']}' (AUC {weakest['AUC on target images']:.2f}). The class "
          f"recognised worst is {worst_class} ({per_class_acc[worst_class]:.2f}); its row: "
          + ", ".join(table["attributes"][i] for i in np.flatnonzero(table["rows"][worst_class])) + ".")
    together = [", ".join(table["attributes"][i] for i in group)
                for group in meta.attribute_groups(source_signatures) if len(group) > 1]
    dap_ties = meta.dap_tied_pairs(source_signatures, target_signatures, target.class_names)
    print("Learned as one (the source classes vary them only together): "
          + ("; ".join(f"{{{names}}}" for names in together) or "none")
          + ". Target classes DAP therefore cannot tell apart: "
          + ("; ".join(" and ".join(pair) for pair in dap_ties) or "none")
          + (" (each image of them is a coin flip between the two)." if dap_ties else "."))

# %% [markdown]
# **The generalised setting.** Above, a test image could only be one of the five target classes. In practice it
# may be any of the ten: then DAP scores all ten rows, and a model whose attribute classifiers were trained on
# the source classes' images fits their rows best, so it favours them (Chao et al., 2016). Their fix,
# **calibrated stacking**, subtracts a constant γ from every seen class's score. Sweeping γ traces the curve of
# seen-class accuracy against unseen-class accuracy; its area (AUSUC) summarises the trade-off for every γ at
# once. The γ reported below is chosen transductively, without reading any image's label: the one that sends
# half the test predictions to unseen classes, the share they are known to have in this test set (Chao et al.
# choose γ by cross-validation on the seen classes instead; the AUSUC needs no choice at all).

# %%
def calibrated_stacking(scores: np.ndarray, labels: np.ndarray, seen: list, gammas: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seen-class accuracy, unseen-class accuracy and the share of unseen predictions, for each offset gamma."""
    is_seen_class = np.isin(np.arange(scores.shape[1]), seen)
    seen_image = is_seen_class[labels]
    rows = []
    for gamma in gammas:
        predicted = (scores - gamma * is_seen_class).argmax(1)  # every seen class's score lowered by gamma
        correct = predicted == labels
        rows.append((correct[seen_image].mean(), correct[~seen_image].mean(), (~is_seen_class[predicted]).mean()))
    return tuple(np.array(column) for column in zip(*rows, strict=True))


if PART in ("all", "zero_shot"):
    all_signatures = meta.attribute_matrix(cifar.class_names, table["rows"])
    all_test_features = as_features(cifar.x_test)
    all_probs = np.stack([attribute_models[m].predict_proba(all_test_features)[:, 1] for m in learnable], 1)
    all_scores = meta.dap_scores(all_probs, all_signatures[:, learnable], prior)
    seen = list(splits.SOURCE_CLASSES)
    all_scores = meta.break_ties(all_scores, tie_breaker)
    gammas = meta.stacking_offsets(all_scores, seen)
    acc_seen, acc_unseen, unseen_share = calibrated_stacking(all_scores, cifar.y_test, seen, gammas)
    half_unseen = int(np.argmin(np.abs(unseen_share - 0.5)))
    at_zero = int(np.argmin(np.abs(gammas)))
    generalised = {"seen_at_0": acc_seen[at_zero], "unseen_at_0": acc_unseen[at_zero],
                   "H_at_0": meta.harmonic_mean(acc_seen[at_zero], acc_unseen[at_zero]),
                   "gamma": float(gammas[half_unseen]), "seen_at_gamma": acc_seen[half_unseen],
                   "unseen_at_gamma": acc_unseen[half_unseen],
                   "H_at_gamma": meta.harmonic_mean(acc_seen[half_unseen], acc_unseen[half_unseen]),
                   "AUSUC": meta.area_under_curve(acc_seen, acc_unseen)}
    results["generalised"] = generalised
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.plot(acc_unseen, acc_seen, label=f"calibrated stacking, AUSUC {generalised['AUSUC']:.3f}")
    ax.scatter([acc_unseen[at_zero]], [acc_seen[at_zero]], color="black", zorder=5, label="γ = 0 (plain DAP)")
    ax.scatter([acc_unseen[half_unseen]], [acc_seen[half_unseen]], marker="s", color="C3", zorder=5,
               label=f"γ = {gammas[half_unseen]:.1f} (half the predictions unseen)")
    ax.set(xlabel="unseen-class accuracy", ylabel="seen-class accuracy", title="Generalised zero-shot: 10 classes",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    plt.show()
    print(f"Plain DAP over all ten classes: seen {acc_seen[at_zero]:.3f}, unseen {acc_unseen[at_zero]:.3f} "
          f"(harmonic mean {generalised['H_at_0']:.3f}; the unseen accuracy was {accuracy:.3f} when only the five "
          f"target classes were candidates). With γ = {gammas[half_unseen]:.1f}: seen {acc_seen[half_unseen]:.3f}, "
          f"unseen {acc_unseen[half_unseen]:.3f}, harmonic mean {generalised['H_at_gamma']:.3f}.")

# %% [markdown]
# ## ESZSL, in PyTorch and in Keras
# **ESZSL** (Romera-Paredes and Torr, 2015) replaces the attribute classifiers with one bilinear map V from
# features to attributes, fitted in closed form on the source images:
#
# V = (XᵀX + γI)⁻¹ XᵀY S (SᵀS + λI)⁻¹,
#
# where X holds the (standardised) features of the source images, Y their one-hot classes in ±1 form, S the source
# classes' attribute rows. A target class's score is x V sᶻ. The same two lines in both frameworks, on the same
# features. ESZSL's own γ and λ (regularisers, unrelated to the stacking offset above) are usually tuned on source
# classes held out as pseudo-targets; with only five source classes they are fixed in advance at 1. For γ that is close
# to no regularisation (XᵀX sums 10,000 standardised images); λ is not optional: SᵀS is 11 x 11 but has rank 5 (five
# source rows), so without λ it has no inverse, and λ = 1 is what makes the formula defined. One property to watch: the
# rows of V lie in the span of the source classes' attribute rows, so a target class is seen only through the part of
# its row that source rows can express.

# %%
def eszsl_torch(features: np.ndarray, labels: np.ndarray, signatures: np.ndarray, gamma: float = 1.0,
                lam: float = 1.0) -> torch.Tensor:
    """ESZSL's closed-form V (features x attributes), in PyTorch (float64)."""
    x = torch.as_tensor(features, dtype=torch.float64)
    s = torch.as_tensor(signatures, dtype=torch.float64)
    y = 2 * nn.functional.one_hot(torch.as_tensor(labels), len(s)).double() - 1
    left = torch.linalg.solve(x.T @ x + gamma * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y @ s)
    return torch.linalg.solve(s.T @ s + lam * torch.eye(s.shape[1], dtype=torch.float64), left.T).T


if PART in ("all", "zero_shot"):
    from sklearn.preprocessing import StandardScaler

    from helpers import keras_models

    keras = keras_models.import_keras("tensorflow")  # after torch, through the helper that orders the imports
    ops = keras.ops

    def eszsl_keras(features: np.ndarray, labels: np.ndarray, signatures: np.ndarray, gamma: float = 1.0,
                    lam: float = 1.0):
        """ESZSL's closed-form V with keras.ops (float64), the same formula as eszsl_torch."""
        x, s = ops.convert_to_tensor(features, "float64"), ops.convert_to_tensor(signatures, "float64")
        y = 2 * ops.one_hot(ops.convert_to_tensor(labels), len(signatures), dtype="float64") - 1
        left = ops.solve(ops.matmul(ops.transpose(x), x) + gamma * ops.eye(features.shape[1], dtype="float64"),
                         ops.matmul(ops.matmul(ops.transpose(x), y), s))
        right = ops.matmul(ops.transpose(s), s) + lam * ops.eye(signatures.shape[1], dtype="float64")
        return ops.transpose(ops.solve(right, ops.transpose(left)))

    scaler = StandardScaler().fit(train_features)
    v_torch = eszsl_torch(scaler.transform(train_features), zsl_classes, source_signatures).numpy()
    v_keras = ops.convert_to_numpy(eszsl_keras(scaler.transform(train_features), zsl_classes, source_signatures))
    standardized_target = scaler.transform(target_features)
    eszsl_scores = {"PyTorch": standardized_target @ v_torch @ target_signatures.T,
                    "Keras": standardized_target @ v_keras @ target_signatures.T}
    largest_gap = float(np.abs(eszsl_scores["PyTorch"] - eszsl_scores["Keras"]).max())
    offsets = meta.break_ties(np.zeros_like(eszsl_scores["PyTorch"]), np.random.default_rng(SEED))  # the same for both
    eszsl_predicted = (eszsl_scores["PyTorch"] + offsets).argmax(1)
    eszsl_acc = metrics.bootstrap_accuracy(target.y_test, eszsl_predicted, seed=SEED)
    agree = float(((eszsl_scores["Keras"] + offsets).argmax(1) == eszsl_predicted).mean())
    tied = meta.tied_in_source_span(source_signatures, target_signatures, target.class_names)
    gap = metrics.bootstrap_difference(target.y_test, eszsl_predicted, dap_predicted, seed=SEED)
    results["eszsl"] = {"accuracy": eszsl_acc[0], "ci_low": eszsl_acc[1], "ci_high": eszsl_acc[2],
                        "keras_torch_max_score_gap": largest_gap, "keras_torch_agreement": agree,
                        "minus_dap": gap[0], "minus_dap_low": gap[1], "minus_dap_high": gap[2],
                        "tied_pairs": [list(pair) for pair in tied]}
    print(f"ESZSL: accuracy {eszsl_acc[0]:.3f} (95% interval {eszsl_acc[1]:.3f} to {eszsl_acc[2]:.3f}); Keras and "
          f"PyTorch scores differ by at most {largest_gap:.1e} and agree on {agree:.1%} of the images. ESZSL minus "
          f"DAP on the same images: {gap[0]:+.3f} (paired 95% interval {gap[1]:+.3f} to {gap[2]:+.3f}, "
          f"{metrics.noise_verdict(gap[1], gap[2])}).")
    print("Target classes ESZSL scores identically on every image (rows that differ only where no combination "
          "of source rows reaches; ties broken at random): " + ("; ".join(" and ".join(pair) for pair in tied)
                                                                 or "none")
          + ". DAP's blind spots, from its groups of attributes learned as one: "
          + ("; ".join(" and ".join(pair) for pair in dap_ties) or "none") + ".")
    part_seconds["zero-shot"] = time.perf_counter() - part_start

# %% [markdown]
# ## What changes at scale: CLIP (on paper)
# Attribute tables do not scale to thousands of classes; **language** does. CLIP (Radford et al., 2021) trains an
# image encoder and a text encoder together, on 400 million image-caption pairs, so that an image and its caption
# land close together (a contrastive loss over the batch). A classifier for *any* set of classes is then built
# from their names: embed "a photo of a {class name}" for each class, and predict the class whose text embedding
# is nearest the image's. The text embedding of a class name plays the role of this notebook's attribute row, and
# the image encoder the role of the attribute classifiers (it maps an image into the space where rows live);
# nothing is trained on the target classes. Radford et al. report
# zero-shot ImageNet accuracy matching the original supervised ResNet-50 (76.2%) without any of its 1.28 million
# labelled images, and Xian et al. (2018) show how much attribute-based zero-shot numbers depend on whether test
# classes overlap the pretraining data: a caution for any zero-shot claim.

# %% [markdown]
# ## Record the run
# `metrics.json` holds every table above with the configuration, data, weights and versions. When the zero-shot
# part ran, DAP is the run's main model: `test_acc` is its accuracy on the target test images with **zero** labels
# per class, and `predictions.npz` its class probabilities (the DAP scores through a softmax), so notebook 06
# reads this run beside the fine-tuning runs (strategy `zero_shot_dap`, 0 labels per class).

# %%
run_folder = reporting.run_dir("11_meta_learning_zero_shot", OUTPUT_DIR)
run_metrics = {**results, "wall_seconds": round(time.perf_counter() - run_start, 1),
               "part_seconds": {part: round(t, 1) for part, t in part_seconds.items()}}
main_model = {}
if PART in ("all", "zero_shot"):
    shifted = scores - scores.max(1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    reporting.save_predictions(run_folder, y_true=target.y_test, probs=probs.astype(np.float32))
    run_metrics.update(test_acc=accuracy, main_model="DAP, zero target labels", num_labelled=0)
    main_model = {"class_names": target.class_names, "test_predictions": dap_predicted}
else:
    (run_folder / "predictions.npz").unlink(missing_ok=True)  # an earlier run's predictions are not this run's
metrics_path = reporting.save_run(run_folder, config, target.identity, run_metrics, weights=weights_info,
                                  framework="pytorch", **main_model)
print(f"This run took {run_metrics['wall_seconds']:.0f} s ({config['profile']} profile, PART = {PART!r}; "
      + ", ".join(f"{part} {t:.0f} s" for part, t in part_seconds.items()) + ").")

# %% [markdown]
# ## Exercises
# 1. Read the FOMAML rows of the image episodes: how far is FOMAML from MAML, against the paired interval, and
#    what did the second-order term cost in meta-training time (the times printed after meta-training)?
# 2. No source class lives in water, so "lives in or on water" is left out, and frog and ship lose the one
#    attribute that only they have among the target classes. Make it learnable: after
#    `table = meta.attribute_table(...)`, add
#    `table["rows"]["bird"][table["attributes"].index("lives in or on water")] = 1` (water birds exist), and run
#    the zero-shot part again. What happens to frog's and ship's accuracy, and why might it not help?
# 3. Reptile's update θ ← θ + ε(θ' − θ) uses no query loss. With one inner step (k = 1), what is the update, and
#    why does Reptile need k > 1 to differ from training on all tasks pooled?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. The paired row "FOMAML minus MAML" answers the first part for this run (Finn et al. found first-order MAML
#    close to MAML on MiniImageNet). MAML's extra time is the backward pass through the inner step; the printed
#    times show how much it was on this machine (on a small network and a CPU, overheads blur it).
# 2. Read the per-class line of both runs. The attribute is now learned, but from one source class: the
#    classifier learns "looks like a bird" more than "is near water", so it may fire for frogs (small, green or
#    brown surroundings) and miss ships. An attribute transfers only as far as the source images that carry it
#    show the property itself; the AUC table says how far it did.
# 3. With k = 1 the update is θ − εα∇L(θ) on the task's points, an SGD step on the pooled loss: the same as
#    joint training. With k > 1 steps on different minibatches, the update contains later steps' gradients taken
#    at moved parameters; Nichol et al. show these add a term that increases the inner product between the
#    gradients of different minibatches of a task, which is also what MAML's second-order term favours.
#
# </details>

# %% [markdown]
# ### Coding exercises
# 4. First-order MAML's meta-gradient, by hand. Write `fomaml_gradient(params, loss_fn, support, query, lr)`:
#    `params` is a dict of parameter tensors, `loss_fn(params, x, y)` returns a scalar loss, `support` and `query`
#    are (x, y) pairs of one task. Take one inner step on the support set, θ' = θ − lr·∇L_support(θ), then return
#    the gradient FOMAML uses for θ: the gradient of the query loss at θ', with the inner step treated as a
#    constant. Return a dict with the same names as `params`. Reference solution:
#    `solutions/11_meta_learning_zero_shot.py`.

# %%
def fomaml_gradient(params: dict, loss_fn, support: tuple, query: tuple, lr: float) -> dict:
    """FOMAML's meta-gradient of one task: d L_query / d theta' at theta' = theta - lr * grad L_support(theta)."""
    raise NotImplementedError  # your code here


# %%
exercises.check("11.1", fomaml_gradient)


# %% [markdown]
# 5. DAP's class scores. Write `dap_class_scores(attribute_probs, signatures, prior)`: `attribute_probs` is
#    (images, attributes), the predicted p(aₘ = 1 | x); `signatures` is (classes, attributes) of 0/1; `prior` is
#    (attributes,), p(aₘ = 1). Return (images, classes): for each class z, the sum over attributes of
#    log p(aₘ = aₘᶻ | x) minus log p(aₘ = aₘᶻ) (an attribute the class lacks contributes log(1 − p)). The
#    notebook's DAP cells used `meta.dap_scores` for this; yours replaces it. Reference solution:
#    `solutions/11_meta_learning_zero_shot.py`.

# %%
def dap_class_scores(attribute_probs: np.ndarray, signatures: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """DAP's log score of every class for every image: shape (images, classes)."""
    raise NotImplementedError  # your code here


# %%
exercises.check("11.2", dap_class_scores)

# %% [markdown]
# ## Summary
# - MAML trains parameters for what a few gradient steps do on a new task; its meta-gradient goes through the
#   inner step (second order), FOMAML drops that term, Reptile replaces it with a move towards adapted weights.
#   On sinusoids, a network pretrained on all tasks pooled learns their average and adapts slowly; the
#   meta-learned one adapts in a step, from the same data.
# - On images, episodes with shuffled labels teach adaptation; compare meta-learners with each other and with a
#   probe on ordinary supervised features on the same episodes, with paired intervals, and say what compute each
#   had. Whether a MAML-trained network loses anything when only its head adapts tells whether the inner loop
#   learned features or reused them.
# - Zero-shot transfer moves descriptions, not weights: attribute classifiers from the source classes recognise
#   unseen classes from their rows. It is limited by attributes the source never varies and by how far learned
#   attributes transfer; with seen classes among the candidates it favours them, and calibrated stacking trades
#   the two back.
#
# ## References
# - Finn, Abbeel, Levine (2017). *Model-agnostic meta-learning for fast adaptation of deep networks*. ICML.
# - Nichol, Achiam, Schulman (2018). *On first-order meta-learning algorithms*. arXiv:1803.02999.
# - Raghu, Raghu, Bengio, Vinyals (2020). *Rapid learning or feature reuse? Towards understanding the effectiveness
#   of MAML*. ICLR.
# - Snell, Swersky, Zemel (2017). *Prototypical networks for few-shot learning*. NeurIPS.
# - Tian, Wang, Krishnan, Tenenbaum, Isola (2020). *Rethinking few-shot image classification: a good embedding is
#   all you need?* ECCV.
# - Lampert, Nickisch, Harmeling (2009; 2014). *Learning to detect unseen object classes by between-class attribute
#   transfer*, CVPR; *Attribute-based classification for zero-shot visual object categorization*, TPAMI 36(3).
# - Romera-Paredes, Torr (2015). *An embarrassingly simple approach to zero-shot learning*. ICML.
# - Chao, Changpinyo, Gong, Sha (2016). *An empirical study and analysis of generalized zero-shot learning for
#   object recognition in the wild*. ECCV.
# - Xian, Lampert, Schiele, Akata (2018). *Zero-shot learning: a comprehensive evaluation of the good, the bad and
#   the ugly*. TPAMI.
# - Radford et al. (2021). *Learning transferable visual models from natural language supervision*. ICML.
# - Bertinetto, Henriques, Torr, Vedaldi (2019). *Meta-learning with differentiable closed-form solvers* (CIFAR-FS).
#   ICLR.
