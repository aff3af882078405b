# %% [markdown]
# # 04 · Fine-tuning in Keras (TensorFlow backend), side by side with PyTorch
#
# The classic Keras recipe in two phases: **feature extraction** (freeze the pretrained base, train a new
# head), then **fine-tuning** (unfreeze the top of the base, recompile, continue with a low learning rate).
# It reads the same arrays and splits as the PyTorch notebook (05), takes the same parameters where they mean
# the same thing, and writes the same metrics file, so the two frameworks can be compared row by row.
#
# Backbones: `keras.applications` with ImageNet weights (MobileNetV2 by default) when they are cached or
# downloadable. Offline, or with `WEIGHTS="course"`, the base is the **course source model**: the PyTorch
# network from notebook 03 with its trained weights copied into an identical Keras network, so both
# frameworks start from exactly the same source.
#
# **Learning objectives**
# - Build a transfer model in Keras: a frozen base, a new head, and BatchNorm kept in inference mode in the
#   way that survives `fit` in Keras 3.
# - Run the two phases, recompiling after changing `trainable`.
# - See the BatchNorm pitfall in numbers: fine-tuning with the base in inference mode versus not.
# - Measure what LP-FT's starting head is worth: 04's SGD head against 05's cross-validated probe, paired.
# - Use the callbacks people expect: early stopping, best-checkpoint saving, a CSV history.
#
# **Estimated time** (course model, target task, `cpu` profile on 2 CPU cores): feature extraction 1 to
# 2.5 minutes; LP-FT about 2 to 3 minutes with 50 labels per class and 5 to 7 with 500; add one fine-tuning run for
# the BatchNorm comparison and one for the head comparison. `full` profile on one GPU (an ImageNet backbone at
# 224x224 on every target image, mixed precision): about 6 min (a target, not yet measured).

# %% tags=["parameters"]
from typing import Optional  # papermill reads Optional[int], not int | None

PROFILE: str = "auto"  # smoke, cpu, full or auto
KERAS_BACKEND: str = "tensorflow"  # tensorflow or torch
DATASET: str = "auto"  # auto, cifar10 or synthetic
WEIGHTS: str = "auto"  # imagenet, course, none or auto
MODEL: str = "mobilenet_v2"  # mobilenet_v2, efficientnetb0, vgg16 or course_net
TASK: str = "auto"  # auto, all or target
STRATEGY: str = "finetune_top"  # scratch, linear_probe, finetune_top, finetune_full or lp_ft
VALIDATION: str = "labelled"  # labelled or oracle
LABELS_PER_CLASS: Optional[int] = None  # None lets the profile decide; 0 means every training image
IMAGE_SIZE: Optional[int] = None  # None means 32 for the course model, the profile's size for ImageNet backbones
NUM_EPOCHS: Optional[int] = None  # None lets the profile decide
LR: Optional[float] = None  # learning rate for pretrained layers; None lets the profile decide
BATCH_SIZE: Optional[int] = None  # None lets the profile decide
SEED: int = 0
SHOW_BN_PITFALL: bool = True  # also fine-tune with the base in training mode, and compare
PROBE_HEAD_VARIANT: bool = False  # lp_ft: also fine-tune from notebook 05's head (a cross-validated probe), compare
CONTROL_ARMS: bool = False  # lp_ft: also retrain on a fresh data stream (the noise floor) and with both changes at once
VGG16_BASELINE: bool = True  # the frozen VGG16 baseline row, run when its ImageNet weights are available
OUTPUT_DIR: Optional[str] = None  # None means outputs/04_keras_finetuning

# %% [markdown]
# ## Setup
# The Keras backend must be chosen before Keras is imported, so `import_keras` sets `KERAS_BACKEND` first.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np

from helpers import (
    data,
    exercises,
    keras_models,
    metrics,
    models,
    parameters,
    paths,
    plots,
    profiles,
    progress,
    reporting,
    runtime,
    splits,
    tf_data,
    torch_train,  # the logistic-regression probe of notebook 05 (scikit-learn), for the head comparison
    weights,
)

parameters.check_parameters(globals(), choices={  # unknown names, wrong types, out-of-range values: refused here
    "STRATEGY": ("scratch", "linear_probe", "finetune_top", "finetune_full", "lp_ft"),
    "TASK": ("auto", "all", "target"), "MODEL": keras_models.VALID_KERAS_MODELS,
    "WEIGHTS": keras_models.VALID_WEIGHTS, "KERAS_BACKEND": keras_models.VALID_BACKENDS})
keras = keras_models.import_keras(KERAS_BACKEND)
from tqdm.keras import TqdmCallback  # imports Keras, so only once its backend is chosen

plots.setup_plots()
environment = runtime.environment_report()
runtime.tf_gpus()
keras_policy = keras_models.set_mixed_precision(keras, KERAS_BACKEND)  # mixed bfloat16 or float16 on a GPU only
print(f"Keras dtype policy: {keras_policy}")
runtime.seed_everything(SEED)
config = profiles.resolve_config("04_keras_finetuning", PROFILE, num_epochs=NUM_EPOCHS, batch_size=BATCH_SIZE,
                                 lr=LR, labels_per_class=LABELS_PER_CLASS)
config.update(dataset_requested=DATASET, weights_requested=WEIGHTS, model_requested=MODEL, strategy=STRATEGY,
              seed=SEED, keras_backend=KERAS_BACKEND, keras_policy=keras_policy)
if PROBE_HEAD_VARIANT and STRATEGY == "lp_ft" and (
        problem := torch_train.labels_problem("lp_ft", config["labels_per_class"], "labelled")):
    raise parameters.ParameterError(problem)  # the probe-head arm cross-validates on the labels: refused now
run_start = time.perf_counter()

# %% [markdown]
# ## The pretrained base, and which weights it carries

# %%
model_name = "course_net" if WEIGHTS == "course" else MODEL
image_size = IMAGE_SIZE or (32 if model_name == "course_net" else config["imagenet_image_size"])
base, source_head, weights_info = keras_models.source_base(WEIGHTS, model_name, config["profile"], image_size,
                                                           DATASET)
model_name = weights_info["model"]
image_size = IMAGE_SIZE or (32 if model_name == "course_net" else config["imagenet_image_size"])
task = TASK if TASK != "auto" else ("target" if model_name == "course_net" else "all")
normalize = "cifar10" if model_name == "course_net" else "unit"
config.update(weights=weights_info["weights"], model=model_name, task=task, image_size=image_size,
              normalize=normalize)
print(f"{reporting.weights_line(weights_info)}\ntask: {task}, input {image_size}x{image_size}, base {base.name} "
      f"({base.count_params():,} parameters)")
if "torch_sha256" in weights_info:  # the course model: a Keras copy of notebook 03's PyTorch checkpoint
    print(f"source model: notebook 03's PyTorch checkpoint sha256 {weights_info['torch_sha256'][:12]} (the hash the "
          f"other notebooks print); {weights_info['sha256'][:12]} above is its Keras copy")
moving = sum(int(np.prod(w.shape)) for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
             for w in (layer.moving_mean, layer.moving_variance))
head_count = source_head.count_params() if source_head is not None and source_head.built else 0
print(f"Keras counts BatchNorm moving means and variances as weights: {base.count_params():,} = "
      f"{base.count_params() - moving:,} learnable + {moving:,} moving statistics"
      + (f"; PyTorch keeps those as buffers and counts its source head, so notebook 03's model has "
         f"{base.count_params() - moving:,} + {head_count:,} (head) = {base.count_params() - moving + head_count:,} "
         "parameters" if head_count else ""))

# %% [markdown]
# ## Target data through `tf.data`
# The same splits as PyTorch (same seed, same indices, the same honest protocol: with `VALIDATION="labelled"`
# no validation split, so no early stopping either), served by `tf.data`: in memory, shuffled, augmented on the
# fly (random crop after 4-pixel padding, horizontal flip), resized and prefetched. Labels are one-hot so the
# loss can use label smoothing, as in the PyTorch notebook.

# %%
cifar = data.load_dataset(DATASET, config["synthetic_train_per_class"], config["synthetic_test_per_class"], SEED)
models.check_source_data(weights_info, cifar.identity)  # a source model trained on other data is refused
target = splits.task_data(cifar, task)
per_class = config["labels_per_class"] or None
train_idx, val_idx = splits.labelled_split(target, per_class, VALIDATION, seed=SEED)
num_labelled = len(train_idx) + (0 if val_idx is None else len(val_idx))
config.update(validation=VALIDATION, num_labelled=num_labelled)
pipeline = {"image_size": image_size, "normalize": normalize, "num_classes": target.num_classes}


def train_stream(seed: int):
    """The labelled images as an endless shuffled, augmented stream; one seed gives the same batches in the same order.

    Each training phase opens its own stream, so every arm below that changes one thing fine-tunes on exactly the
    batches the main run's phase 2 saw (seed SEED + 1), and only the control arm draws a fresh stream.
    """
    return tf_data.make_tf_dataset(target.x_train[train_idx], target.y_train[train_idx], train=True,
                                   batch_size=config["batch_size"], seed=seed, **pipeline).repeat()


FEATURE_SEED, FINE_TUNE_SEED, FRESH_SEED = SEED, SEED + 1, SEED + 2  # the streams of phase 1, phase 2, the control
val_ds = None if val_idx is None else tf_data.make_tf_dataset(target.x_train[val_idx], target.y_train[val_idx],
                                                              False, **pipeline)
num_epochs = config["num_epochs"]  # with few labels an epoch repeats the data, for the same step budget as PyTorch
steps_per_epoch = max(math.ceil(len(train_idx) / config["batch_size"]), math.ceil(config["min_steps"] / num_epochs))
print(f"{target.class_names}: train {len(train_idx)}, "
      + ("no validation split" if val_idx is None else f"validation {len(val_idx)} ({VALIDATION})")
      + f", test {len(target.y_test)}; labelled images used: {num_labelled}; "
      f"{num_epochs} epochs of {steps_per_epoch} steps per phase")

# %% [markdown]
# ## The transfer model
# The base is called with `training=False`, as the Keras guide writes it, and the new head is one `Dense`
# layer with one output per target class. `scratch` rebuilds the base with random weights.
#
# A warning the guide does not give: in Keras 3 (measured with the pinned 3.15.1) `training=False` on the
# nested call does **not** survive `fit`. `fit` calls the whole model with `training=True`, the nested base
# follows it, and the BatchNorm layers of an unfrozen base then normalise with each batch's statistics and
# overwrite their moving averages (notebook 02 shows it on one layer; keras-team/keras#20285 reports it). What
# does keep a BatchNorm layer in inference mode is `trainable = False` on the layer itself, so `unfreeze`
# below leaves the BatchNorm layers frozen.

# %%
if STRATEGY == "scratch":
    base = keras_models.source_base("none", model_name, config["profile"], image_size)[0]
    weights_info = {"weights": "none", "model": model_name, "note": "scratch: architecture only, random init"}
    config["weights"] = "none"


def build(base_training: bool | None) -> keras.Model:
    """Stack preprocessing, the base (called in inference mode unless told otherwise) and a new head."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs if model_name == "course_net" else keras_models.preprocessing(model_name)(inputs)
    x = base(x, training=base_training) if base_training is not None else base(x)
    outputs = keras.layers.Dense(target.num_classes, dtype="float32", name="new_head")(x)
    return keras.Model(inputs, outputs)


model = build(base_training=False)
loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
run_folder = reporting.run_dir("04_keras_finetuning", OUTPUT_DIR)


MOMENTUM, TORCH_WEIGHT_DECAY = 0.9, 5e-4  # notebook 05's SGD settings
# The two frameworks mean different things by `weight_decay`. PyTorch's SGD (notebook 05) adds wd·w to the
# gradient, and Nesterov momentum then carries that term along: in steady state each step shrinks w by
# lr·wd / (1 − momentum), ten times lr·wd. Keras 3's SGD decays *decoupled* from the gradient, w ← w − lr·wd·w
# once per step, outside the momentum. The decoupled value that shrinks the weights as 05 does is therefore:
KERAS_WEIGHT_DECAY = TORCH_WEIGHT_DECAY / (1 - MOMENTUM)  # 5e-3


def compile_and_fit(model: keras.Model, lr: float, epochs: int, phase: str, seed: int) -> keras.callbacks.History:
    """Compile with SGD (Nesterov, cosine decay to zero after warm-up); fit with one progress bar and the callbacks.

    It trains on `train_stream(seed)`. With a validation split, early stopping and best-checkpoint saving choose the
    epoch on it; without one (the honest few-label protocol) the schedule runs to the end and the last weights are kept.
    """
    total = epochs * steps_per_epoch
    warmup = int(0.2 * total)  # Keras counts decay_steps after the warm-up: total - warmup ends the cosine at zero
    schedule = keras.optimizers.schedules.CosineDecay(lr / 25, decay_steps=total - warmup, alpha=0.0,
                                                      warmup_target=lr, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=MOMENTUM, nesterov=True,
                                                 weight_decay=KERAS_WEIGHT_DECAY),
                  loss=loss, metrics=["categorical_accuracy"])
    callbacks = [TqdmCallback(epochs=epochs, verbose=0, desc=phase, tqdm_class=progress.bar_class()),
                 keras.callbacks.CSVLogger(str(run_folder / f"history_{phase}.csv")),
                 keras_models.stop_on_non_finite_loss(keras)]  # a diverged run stops, naming LR
    if val_ds is not None:
        callbacks += [keras.callbacks.EarlyStopping("val_categorical_accuracy", patience=max(5, epochs // 3),
                                                    restore_best_weights=True),
                      keras.callbacks.ModelCheckpoint(str(run_folder / f"best_{phase}.weights.h5"),
                                                      "val_categorical_accuracy", save_best_only=True,
                                                      save_weights_only=True)]
    return model.fit(train_stream(seed), validation_data=val_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                     callbacks=callbacks, verbose=0, shuffle=False)  # tf.data shuffles already


lr = config["lr"]
history: list[dict] = []

# %% [markdown]
# ## What `fit` does at each step
# `fit` hides the training step. Written out with TensorFlow's `GradientTape` it is four lines: run the model
# forward with `training=True` while the tape records, compute the loss, ask the tape for the gradients of the
# trainable weights, and let the optimizer apply them. To check that this *is* what `fit` does, we take two
# copies of the model with the same weights, train one by hand and one with `fit` on the same three batches
# with the same optimizer settings, and compare.

# %%
def train_step(net: keras.Model, optimizer: keras.optimizers.Optimizer, images, labels) -> float:
    """One training step by hand: the forward pass under a tape, the loss, its gradients, the update."""
    with tf.GradientTape() as tape:
        logits = net(images, training=True)
        step_loss = loss(labels, logits)
    gradients = tape.gradient(step_loss, net.trainable_weights)
    optimizer.apply(gradients, net.trainable_weights)
    return float(step_loss)


def sgd() -> keras.optimizers.Optimizer:
    """A fresh optimizer with the settings both copies use."""
    return keras.optimizers.SGD(0.01, momentum=MOMENTUM, nesterov=True, weight_decay=KERAS_WEIGHT_DECAY)


if KERAS_BACKEND == "tensorflow":
    tf = runtime.import_tensorflow()
    batches = list(train_stream(FEATURE_SEED).take(3))  # three augmented batches, used by both copies
    by_hand, by_fit = (keras.models.clone_model(model) for _ in range(2))
    for copy_ in (by_hand, by_fit):
        copy_.set_weights(model.get_weights())
    hand_optimizer = sgd()
    hand_losses = [train_step(by_hand, hand_optimizer, x, y) for x, y in batches]
    by_fit.compile(optimizer=sgd(), loss=loss)
    fit_loss = by_fit.fit((batch for batch in batches), epochs=1, steps_per_epoch=len(batches), verbose=0,
                          shuffle=False).history["loss"][0]
    gap = max(float(np.abs(a - b).max()) for a, b in zip(by_hand.get_weights(), by_fit.get_weights(), strict=True))
    hand_mean = np.average(hand_losses, weights=[len(x) for x, _ in batches])  # fit averages over images
    print(f"loss per step by hand: {np.round(hand_losses, 4)}; mean over the images {hand_mean:.6f}, fit's "
          f"{fit_loss:.6f}; largest difference between the two copies' weights afterwards: {gap:.1e}")
else:
    print(f"GradientTape is TensorFlow's; with the {KERAS_BACKEND} backend, write the step with its own autograd.")

# %% [markdown]
# The two losses agree to the printed digits, and the weights differ by float rounding only (the hand step
# runs eagerly, `fit` as a compiled graph, so the sums come out in another order): `fit` adds the loop, the
# metrics, the callbacks and the compiled graph around this step. Writing the step yourself is how you train
# anything `fit` does not cover (two losses, an adversary, a teacher); notebook 07's TENT and notebook 08's
# distiller do.

# %% [markdown]
# ## Phase 1: feature extraction (`linear_probe`, and the first phase of `finetune_top` and `lp_ft`)
# `base.trainable = False` freezes every base weight; only the new head trains, at a higher learning rate.
# Changing `trainable` only takes effect at the next `compile`.

# %%
if STRATEGY in ("linear_probe", "finetune_top", "lp_ft"):
    base.trainable = False
    print(f"phase 1: training {sum(np.prod(w.shape) for w in model.trainable_weights):,} parameters (the head)")
    history += keras_models.history_rows(compile_and_fit(model, lr * 10, num_epochs, "feature_extraction",
                                                         FEATURE_SEED))
    phase1_weights = model.get_weights()

# %% [markdown]
# ## Phase 2: fine-tuning (`finetune_top`, `lp_ft`, `finetune_full`, `scratch`)
# Unfreeze the top block (`finetune_top`) or the whole base (`lp_ft`, `finetune_full`), **recompile**, and
# train with a learning rate ten times lower than the head's, so the pretrained features adapt rather than get
# overwritten. `scratch` trains everything from random weights at a high rate.

# %%
def unfreeze(model_base: keras.Model, freeze_batchnorm: bool = True) -> None:
    """Unfreeze the whole base, or only its top block for `finetune_top`, keeping BatchNorm frozen if asked."""
    model_base.trainable = True
    if STRATEGY == "finetune_top":
        top = {id(layer) for layer in keras_models.top_block_layers(model_base, model_name)}
        for layer in model_base.layers:
            layer.trainable = id(layer) in top
    for layer in model_base.layers:
        if freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # a frozen BatchNorm runs in inference mode even when fit says training=True


if STRATEGY != "linear_probe":
    unfreeze(base)
    phase2_lr = lr * 20 if STRATEGY == "scratch" else lr
    print(f"phase 2: training {sum(np.prod(w.shape) for w in model.trainable_weights):,} parameters, lr {phase2_lr}")
    history += keras_models.history_rows(compile_and_fit(model, phase2_lr, num_epochs, "fine_tuning",
                                                         FINE_TUNE_SEED), offset=len(history))

# %% [markdown]
# ## Results
# Evaluated as notebook 05 evaluates: a fine-tuned network's logits are averaged over each test image and its
# mirror image before the softmax (flip test-time augmentation, which the training's random flips make a fair
# guess); the linear probe's are not. The accuracy without the flip is printed beside it, so its share is visible.

# %%
def probabilities(net: keras.Model, images: np.ndarray, labels: np.ndarray, flip_tta: bool) -> np.ndarray:
    """Class probabilities; with `flip_tta` from logits averaged with the mirror images', as notebook 05 evaluates."""
    logits = lambda x: net.predict(tf_data.make_tf_dataset(x, labels, False, **pipeline), verbose=0)
    averaged = (logits(images) + logits(np.ascontiguousarray(images[:, :, ::-1]))) / 2 if flip_tta else logits(images)
    return keras.ops.convert_to_numpy(keras.ops.softmax(averaged))


flip_tta = STRATEGY != "linear_probe"  # 05's rule: fine-tuned networks average over a flip, the probe does not
test_probs = probabilities(model, target.x_test, target.y_test, flip_tta)
no_tta_probs = probabilities(model, target.x_test, target.y_test, False) if flip_tta else test_probs
val_probs = None if val_ds is None else probabilities(model, target.x_train[val_idx], target.y_train[val_idx],
                                                      flip_tta)
val_acc = None if val_probs is None else float((val_probs.argmax(1) == target.y_train[val_idx]).mean())
test_acc = float((test_probs.argmax(1) == target.y_test).mean())
wall_seconds = time.perf_counter() - run_start
held_out = "-" if val_acc is None else f"{val_acc:.4f}"
print(f"{STRATEGY} with {config['weights']} weights, {per_class or 'all'} labels per class ({VALIDATION}): "
      f"validation {held_out}, test {test_acc:.4f} (chance {1 / target.num_classes:.2f}), {wall_seconds:.0f} s")


def against_main_run(probs: np.ndarray) -> dict:
    """A variant's test accuracy, and the run above minus it, with a paired bootstrap interval over test images."""
    gap, low, high = metrics.bootstrap_difference(target.y_test, test_probs.argmax(1), probs.argmax(1), seed=SEED)
    return {"test_acc": float((probs.argmax(1) == target.y_test).mean()), "gap": gap, "gap_ci": [low, high]}


no_tta = against_main_run(no_tta_probs)  # one change: the same model without the flip at test time
no_tta_acc = no_tta["test_acc"]
if flip_tta:
    print(f"without the flip at test time: {no_tta_acc:.4f}; the flip adds {no_tta['gap'] * 100:+.1f} points (95% "
          f"interval {no_tta['gap_ci'][0] * 100:+.1f} to {no_tta['gap_ci'][1] * 100:+.1f}, paired over test images)")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([r["epoch"] for r in history], [r["train_acc"] for r in history], label="train (augmented)")
if any("val_acc" in r for r in history):
    ax.plot([r["epoch"] for r in history], [r["val_acc"] for r in history], label="validation")
ax.set(xlabel="epoch (both phases)", ylabel="accuracy", title=f"Keras {STRATEGY}")
ax.legend()
plt.show()

# %% [markdown]
# ## The BatchNorm pitfall, in numbers
# Fine-tune again from the same phase-1 weights, but with the base's BatchNorm layers left trainable, as
# `base.trainable = True` alone leaves them: they then normalise with each small target batch's statistics and
# overwrite the moving averages learned on the source data (their scale and shift train too). On large
# ImageNet backbones with small batches this is known to cost accuracy; on a small network whose features are
# normalised it may make no measurable difference. One seed is one
# draw, so the cell prints the gap with a paired bootstrap interval over the test images.

# %%
pitfall = None
if SHOW_BN_PITFALL and STRATEGY in ("finetune_top", "lp_ft"):
    model.set_weights(phase1_weights)
    unfreeze(base, freeze_batchnorm=False)
    careless = build(base_training=False)  # the same call as above: in Keras 3 it does not keep BatchNorm frozen
    careless.get_layer("new_head").set_weights(model.get_layer("new_head").get_weights())
    compile_and_fit(careless, lr, num_epochs, "bn_pitfall", FINE_TUNE_SEED)  # the main run's phase-2 batches
    careless_probs = probabilities(careless, target.x_test, target.y_test, flip_tta)
    # the careless model shares its layers with `model`, so the main results above were recorded first
    arm = against_main_run(careless_probs)
    pitfall = {"base_inference_mode": test_acc, "base_training_mode": arm["test_acc"], "gap": arm["gap"],
               "gap_ci": arm["gap_ci"]}
    print(f"test accuracy, base in inference mode: {test_acc:.4f}; base in training mode: {arm['test_acc']:.4f}; "
          f"gap {arm['gap']:+.4f}, 95% interval [{arm['gap_ci'][0]:+.4f}, {arm['gap_ci'][1]:+.4f}] (one seed)")
else:
    print("BatchNorm comparison skipped (SHOW_BN_PITFALL is off, or the strategy fine-tunes no pretrained base).")

# %%
if pitfall is not None:  # the reading: which arm came out ahead, and whether the interval leaves out zero
    gap, (low, high) = pitfall["gap"], pitfall["gap_ci"]
    ahead = "ahead of" if gap > 0 else "behind" if gap < 0 else "level with"
    print(f"Frozen BatchNorm came out {abs(gap) * 100:.1f} points {ahead} trainable BatchNorm "
          f"({pitfall['base_inference_mode']:.3f} against {pitfall['base_training_mode']:.3f}); the 95% interval "
          f"({low:+.4f} to {high:+.4f}) {metrics.noise_verdict(low, high)}."
          " One seed: another seed's training noise is not in this interval.")

# %% [markdown]
# Read the interval, not the gap alone: it spans the test images' noise for this one seed, not the variation from
# seed to seed. Both arms fine-tune on the same batches, so their gap is the BatchNorm setting and the float noise of
# retraining; the control arm below (`CONTROL_ARMS`) measures how large a gap retraining alone makes.

# %% [markdown]
# ## The head LP-FT starts from, in numbers (`PROBE_HEAD_VARIANT`)
# Phase 1 here trains the `Dense` head by SGD on augmented images. Notebook 05's LP-FT starts from another head: a
# logistic-regression probe on the frozen features, its L2 strength chosen by cross-validation on the labelled
# images, folded into the linear layer. Kumar et al.'s argument (notebook 02) says the head that fine-tuning starts
# from decides how far the features get pulled. With `PROBE_HEAD_VARIANT` on, LP-FT runs again from the same source
# weights with 05's head and nothing else changed, paired with the run above on the test images.

# %%
probe_head = None
if PROBE_HEAD_VARIANT and STRATEGY == "lp_ft":
    model.set_weights(phase1_weights)  # the source base and the phase-1 head (the pitfall arm trained the shared base)
    extractor = keras.Model(model.inputs, model.get_layer("new_head").input)  # everything below the head
    labelled_x, labelled_y = target.x_train[train_idx], target.y_train[train_idx]
    features = keras.ops.convert_to_numpy(extractor.predict(
        tf_data.make_tf_dataset(labelled_x, labelled_y, False, **pipeline), verbose=0))
    probe_scores, _ = torch_train.cross_validated_probe(features, labelled_y, torch_train.PROBE_STRENGTHS, seed=SEED)
    probe_c = max(probe_scores, key=probe_scores.get)
    head_weight, head_bias = torch_train.folded_probe(*torch_train.fit_linear_probe(features, labelled_y, c=probe_c,
                                                                                    seed=SEED))
    model.get_layer("new_head").set_weights([head_weight.T.astype("float32"), head_bias.astype("float32")])
    unfreeze(base)  # BatchNorm frozen, as in the run above
    compile_and_fit(model, lr, num_epochs, "probe_head", FINE_TUNE_SEED)  # the main run's phase-2 batches
    probe_head_probs = probabilities(model, target.x_test, target.y_test, flip_tta)
    probe_head = {"probe_c": probe_c, **against_main_run(probe_head_probs)}
    low, high = probe_head["gap_ci"]
    print(f"LP-FT from 05's head (probe C = {probe_c} by cross-validation): test {probe_head['test_acc']:.4f}; "
          f"from phase 1's SGD head {test_acc:.4f}; SGD head minus 05's head {probe_head['gap'] * 100:+.1f} points, "
          f"95% interval [{low * 100:+.1f}, {high * 100:+.1f}] ({metrics.noise_verdict(low, high)}; one seed).")
else:
    print("Head comparison skipped (PROBE_HEAD_VARIANT is off, or the strategy is not lp_ft).")

# %% [markdown]
# ### How big is a change that changes nothing? The control arm, and both changes at once (`CONTROL_ARMS`)
# The arms above fine-tune on the very batches the main run saw, so their gaps are not reshuffling noise. Retraining
# is still noisy in other ways (float sums in another order, a new optimizer state), and another seed draws another
# stream. The **control** retrains 04's recipe unchanged from the same phase-1 weights on a fresh stream: its gap to
# the main run is the size of a change that changes nothing, the floor a one-change gap must clear. The **combined**
# arm makes both training changes at once (BatchNorm trained and 05's head), which is 05's recipe in Keras.

# %%
control = combined = None
if CONTROL_ARMS and STRATEGY == "lp_ft":
    model.set_weights(phase1_weights)
    unfreeze(base)
    compile_and_fit(model, lr, num_epochs, "control", FRESH_SEED)
    control_probs = probabilities(model, target.x_test, target.y_test, flip_tta)
    control = against_main_run(control_probs)
    if probe_head is not None:
        model.set_weights(phase1_weights)
        unfreeze(base, freeze_batchnorm=False)
        both = build(base_training=False)
        both.get_layer("new_head").set_weights([head_weight.T.astype("float32"), head_bias.astype("float32")])
        compile_and_fit(both, lr, num_epochs, "combined", FINE_TUNE_SEED)
        combined_probs = probabilities(both, target.x_test, target.y_test, flip_tta)
        combined = against_main_run(combined_probs)
    for name, arm in (("control (fresh stream)", control), ("both changes", combined)):
        if arm is not None:
            low, high = arm["gap_ci"]
            print(f"{name}: test {arm['test_acc']:.4f}; the main run minus it {arm['gap'] * 100:+.1f} points, 95% "
                  f"interval [{low * 100:+.1f}, {high * 100:+.1f}] ({metrics.noise_verdict(low, high)}; one seed)")
else:
    print("Control and combined arms skipped (CONTROL_ARMS is off, or the strategy is not lp_ft).")

# %% [markdown]
# ## A baseline often quoted: frozen VGG16 at 32x32
# Many tutorials start from VGG16 with ImageNet weights, frozen, fed 32x32 CIFAR-10 images, with a
# `Flatten` → `Dense(256)` → `Dense(10)` head trained for 10 epochs. A blog post that popularised it reports
# **77.1%** test accuracy on full CIFAR-10; that number is *claimed, not reproduced here*, and its code has two
# bugs worth learning from:
# 1. its last layer applies a softmax, and the loss is built with `from_logits=True`, so the loss applies a
#    second softmax to probabilities (the loss then saturates and its gradients shrink);
# 2. it passes the **test set** as `validation_data` and reports the best epoch on it: the test set then
#    chooses the model, and the reported number is optimistic.
#
# `vgg16_baseline` below rebuilds that head with both fixed (logits out, a held-out 10% of the training images
# for validation, the test set read once). The base is frozen and there is no augmentation, so its features are
# computed once and the head trains on them: the same model as stacking the layers, at a fraction of the cost
# on a CPU. It needs the ImageNet weights (`make prefetch`); without them the cell says so and skips.

# %%
def vgg16_baseline(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   num_classes: int, epochs: int = 10, weights: str | None = "imagenet", seed: int = 0
                   ) -> dict[str, float]:
    """Train the often-quoted baseline (frozen VGG16 at 32x32, Flatten, Dense 256, Dense) with its bugs fixed."""
    keras.utils.set_random_seed(seed)
    vgg = keras_models.build_application("vgg16", weights=weights, input_shape=(32, 32, 3))
    preprocess = keras_models.preprocessing("vgg16")
    features = [keras.ops.convert_to_numpy(vgg.predict(preprocess(x.astype("float32") / 255.0), batch_size=256,
                                                       verbose=0)) for x in (x_train, x_test)]
    fit_idx, val_idx = splits.stratified_split(y_train, 0.1, seed)  # held out from training, not the test set
    head = keras.Sequential([keras.Input(features[0].shape[1:]), keras.layers.Flatten(),
                             keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(num_classes)])  # fix 1: logits, no softmax under from_logits
    head.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    head.fit(features[0][fit_idx], y_train[fit_idx], epochs=epochs, batch_size=128, verbose=0)
    return {"val_acc": float(head.evaluate(features[0][val_idx], y_train[val_idx], verbose=0)[1]),
            "test_acc": float(head.evaluate(features[1], y_test, verbose=0)[1])}  # fix 2: the test set, once


vgg16 = None
vgg16_available = weights.weight_file("keras", "vgg16").is_cached() or not paths.is_offline()
if VGG16_BASELINE and vgg16_available:
    try:
        vgg16 = vgg16_baseline(cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test, cifar.num_classes,
                               epochs=10, seed=SEED)
        print(f"VGG16 frozen baseline, bugs fixed, full data, 10 epochs: held-out {vgg16['val_acc']:.4f}, test "
              f"{vgg16['test_acc']:.4f} (the blog's claim: 0.771); this run ({STRATEGY}): {test_acc:.4f} on "
              f"task '{task}'")
    except (OSError, RuntimeError):  # the weights could not be downloaded
        weights.unavailable_notice("the VGG16 baseline row is skipped")
elif VGG16_BASELINE:
    weights.unavailable_notice("the VGG16 baseline row is skipped")  # offline and not pre-fetched: no download tried
else:
    print("VGG16 baseline skipped: VGG16_BASELINE is off.")

# %% [markdown]
# ## Record the run
# The same `metrics.json` schema as the PyTorch notebook, plus the Keras-specific pieces (backend, mixed
# precision, the BatchNorm comparison, the VGG16 baseline when it ran).

# %%
held_out_predictions = ({} if val_probs is None else
                        {"val_y_true": target.y_train[val_idx], "val_probs": val_probs.astype(np.float32)})
variants = {"probs_no_tta": no_tta_probs} if flip_tta else {}  # one change each, for 06's Keras-PyTorch reading
if pitfall is not None:
    variants["probs_bn_training"] = careless_probs
if probe_head is not None:
    variants["probs_probe_head"] = probe_head_probs
if control is not None:
    variants["probs_control"] = control_probs
if combined is not None:
    variants["probs_combined"] = combined_probs
reporting.save_predictions(run_folder, y_true=target.y_test, probs=test_probs.astype(np.float32),
                           **held_out_predictions, **{name: p.astype(np.float32) for name, p in variants.items()})
metrics = {"val_acc": val_acc, "test_acc": test_acc, "wall_seconds": round(wall_seconds, 1), "history": history,
           "num_train": len(train_idx), "num_labelled": num_labelled, "num_epochs": num_epochs, "bn_pitfall": pitfall,
           "no_tta_acc": no_tta_acc, "probe_head": probe_head, "control_arm": control, "combined_arm": combined,
           "vgg16_baseline": vgg16}
metrics_path = reporting.save_run(run_folder, config, target.identity, metrics, weights=weights_info,
                                  framework="keras", class_names=target.class_names,
                                  test_predictions=test_probs.argmax(1))

# %% [markdown]
# ## Exercises
#
# 1. Skip the `compile` after setting `base.trainable = True`. What does `fit` train?
# 2. Phase 1 trains the head alone at ten times the rate that phase 2 then uses for the whole model. Why the
#    high rate for the head alone, and why one low rate for everything once the base is unfrozen?
# 3. Run with `KERAS_BACKEND = "torch"` (restart the kernel first). Which numbers change, and which should not?
#
# <details><summary>Solutions (click to open)</summary>
#
# 1. Only what was trainable at the last `compile`: the head. Keras fixes the list of trainable weights
#    when it compiles the training step.
# 2. In phase 1 the head starts from random weights and has everything to learn, and nothing else moves. In
#    phase 2 the head already fits the task, so one low rate for all weights lets the base adapt without
#    overwriting its features. (A head-specific rate in phase 2 would need per-layer rates, which
#    `keras.optimizers` does not take directly; PyTorch's parameter groups do, see notebook 05's
#    `discriminative`.)
# 3. Timings and the last digits of the accuracy (different kernels, different random streams); the data,
#    splits, architecture and source weights are identical, so accuracies should agree within seed noise.
#
# </details>

# %% [markdown]
# ### Coding exercise
# 4. Write the learning-rate schedule `compile_and_fit` gives Keras: `warmup_cosine(step, total, peak)` rises
#    linearly from `peak / 25` to `peak` over the first `warm-up = int(0.2 · total)` steps, then decays along a
#    cosine, `peak · ½ (1 + cos(π · (step − warm-up) / (total − warm-up)))`, to zero at the last step (and stays
#    there). The check compares it with Keras's own `CosineDecay` at several steps. Then say why
#    `compile_and_fit` passes `decay_steps=total - warmup` and not `total`: where would the rate end otherwise?
#    Reference solution: `solutions/04_keras_finetuning.py`.

# %%
def warmup_cosine(step: int, total: int, peak: float) -> float:
    """The learning rate at `step` of `total`: linear warm-up over 20%, then cosine decay to zero."""
    raise NotImplementedError  # your code here


# %%
exercises.check("04.1", warmup_cosine)


# %% [markdown]
# ## Summary
# - Keras transfer: `base.trainable = False`, a new `Dense` head; recompile after every change of `trainable`.
# - In Keras 3, `base(x, training=False)` does not keep BatchNorm in inference mode through `fit`; setting
#   `trainable = False` on the BatchNorm layers does.
# - Phase 1 trains the head on frozen features; phase 2 unfreezes the top (or all) of the base at a low rate.
# - Frozen BatchNorm layers keep their source statistics from being overwritten by small target batches;
#   whether that matters is measured, not assumed.
# - With few labels, no validation split: the recipe is fixed in advance (`VALIDATION="labelled"`), and
#   early stopping only runs in the explicitly named oracle setting.
# - LP-FT depends on the head it starts from: the head comparison pairs 04's SGD head with 05's cross-validated
#   probe on the same test images.
# - The metrics file has the same schema as PyTorch's, so notebook 06 compares the frameworks row by row, and
#   one change at a time where they differ.
#
# ## References
# - Chollet, F. *Transfer learning & fine-tuning*, Keras developer guide (keras.io).
# - keras-team/keras issue #20285 (2024): in Keras 3, `fit`'s `training=True` overrides a nested
#   `training=False`; BatchNorm stays in inference mode only while the layer is not trainable.
# - Ioffe, Szegedy (2015). *Batch normalization*. ICML.
# - Simonyan, Zisserman (2015). *Very deep convolutional networks for large-scale image recognition* (VGG). ICLR.
# - Sandler et al. (2018). *MobileNetV2: inverted residuals and linear bottlenecks*. CVPR.
# - Kumar et al. (2022). *Fine-tuning can distort pretrained features and underperform out-of-distribution*. ICLR.
