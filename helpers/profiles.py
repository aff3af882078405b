"""Profiles size every notebook's work: smoke (tests), cpu (a laptop), full (a GPU), auto (pick)."""

from __future__ import annotations

import math
import os
from typing import Any

from .paths import PROFILE_ENV
from .runtime import has_gpu

VALID_PROFILES = ("smoke", "cpu", "full", "auto")


def finetuning_profiles(imagenet_cpu_size: int) -> dict[str, dict[str, Any]]:
    """Knobs shared by the Keras and PyTorch fine-tuning notebooks, so the two compare row by row."""
    return {
        "smoke": {"num_epochs": 1, "min_steps": 3, "batch_size": 64, "lr": 0.01, "labels_per_class": 20,
                  "imagenet_image_size": 32, "synthetic_train_per_class": 100, "synthetic_test_per_class": 20},
        "cpu": {"num_epochs": 25, "min_steps": 200, "batch_size": 64, "lr": 0.01, "labels_per_class": 500,
                "imagenet_image_size": imagenet_cpu_size, "synthetic_train_per_class": 1000,
                "synthetic_test_per_class": 200},
        "full": {"num_epochs": 10, "min_steps": 500, "batch_size": 128, "lr": 0.01, "labels_per_class": None,
                 "imagenet_image_size": 224, "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    }


# The scratch baseline's own recipes (notebook 05), one per label count that `make bench-scratch`
# (benchmarks/scratch_recipe.py) measured on its proxy task: the five source classes with that many labels per class,
# so no target label is read. The benchmark fails when this table no longer holds its choices.
SCRATCH_RECIPES: dict[int, dict[str, Any]] = {
    10: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
    50: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
    500: {"augment": "standard", "weight_decay": 5e-3, "min_steps": 600},  # 25 epochs of 2,500 images: 1,000 steps
}


# Full fine-tuning's and LP-FT's recipes in notebook 05, chosen by `make bench-transfer-recipe`
# (benchmarks/transfer_recipe.py) among the same 8 candidates as scratch's, on a proxy transfer task made of source
# classes only (three to the other two, with the same k labels per class), so no target label is read either.
# Measured at 10 and 50 labels per class (2 seeds); the 500 entry is the fixed recipe, not yet measured on the proxy
# (`python -m benchmarks.transfer_recipe` with its default labels measures it and exits 1 until the table agrees).
TRANSFER_RECIPES: dict[str, dict[int, dict[str, Any]]] = {
    "lp_ft": {10: {"augment": "strong", "weight_decay": 5e-4, "min_steps": 600},
              50: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
              500: {"augment": "standard", "weight_decay": 5e-4, "min_steps": 200}},
    "finetune_full": {10: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
                      50: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
                      500: {"augment": "standard", "weight_decay": 5e-4, "min_steps": 200}},
}


def nearest_recipe(table: dict[int, dict[str, Any]], profile: str, labels_per_class: int | None) -> dict[str, Any]:
    """Return a recipe table's entry for k labels per class: the one measured at the nearest k, on a log scale.

    Every label (None or 0) takes the largest measured k's recipe; the smoke profile keeps its few steps.
    """
    measured = sorted(table)
    nearest = min(measured, key=lambda k: abs(math.log(k / (labels_per_class or measured[-1]))))
    return {**table[nearest], **({"min_steps": 3} if profile == "smoke" else {})}


def scratch_recipe(profile: str, labels_per_class: int | None) -> dict[str, Any]:
    """Return scratch's recipe for k labels per class (SCRATCH_RECIPES at the nearest measured k)."""
    return nearest_recipe(SCRATCH_RECIPES, profile, labels_per_class)


FINE_TUNING_RECIPE = {"augment": "standard", "weight_decay": 5e-4}  # the fixed recipe; steps: the profile's floor
# Notebook 05's RECIPE: the strategy's own (scratch's or the transfer table for the two strategies it holds, else the
# fixed recipe), scratch's table for k labels, or the fixed recipe every transfer strategy had before.
RECIPES = ("own", "scratch", "fixed")


def training_recipe(strategy: str, recipe: str, profile: str, labels_per_class: int | None) -> dict[str, Any]:
    """Return what notebook 05 trains with: augmentation, weight decay and its floor on steps.

    Scratch, and any strategy run with RECIPE='scratch', takes scratch's table for k labels; full fine-tuning and
    LP-FT take their own table (TRANSFER_RECIPES); the other strategies, and RECIPE='fixed', the fixed recipe with
    the profile's floor on steps.
    """
    if strategy == "scratch" or recipe == "scratch":
        return scratch_recipe(profile, labels_per_class)
    if recipe == "own" and strategy in TRANSFER_RECIPES:
        return nearest_recipe(TRANSFER_RECIPES[strategy], profile, labels_per_class)
    return {**FINE_TUNING_RECIPE, "min_steps": PROFILES["05_pytorch_finetuning"][profile]["min_steps"]}


def resolved_settings(notebook: str, profile: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every setting a run's profile resolves to (its profile row, and 05's training recipe), for its reuse check."""
    settings = dict(PROFILES.get(notebook, {}).get(profile, {}))
    if notebook == "05_pytorch_finetuning":
        labels = params.get("LABELS_PER_CLASS") or settings["labels_per_class"]
        settings["recipe"] = training_recipe(str(params.get("STRATEGY", "lp_ft")), str(params.get("RECIPE", "own")),
                                             profile, labels or None)
    return settings


# One table per notebook: the value of each knob in each concrete profile.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "00_setup_and_data": {
        "smoke": {"examples_per_class": 4, "synthetic_train_per_class": 100, "synthetic_test_per_class": 20},
        "cpu": {"examples_per_class": 8, "synthetic_train_per_class": 500, "synthetic_test_per_class": 100},
        "full": {"examples_per_class": 10, "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "01_concepts": {
        "smoke": {"label_counts": [5, 20], "source_per_class": 100, "source_steps": 8, "target_steps": 4,
                  "synthetic_train_per_class": 100, "synthetic_test_per_class": 20},
        "cpu": {"label_counts": [10, 50, 250], "source_per_class": 2000, "source_steps": 400, "target_steps": 150,
                "synthetic_train_per_class": 500, "synthetic_test_per_class": 100},
        "full": {"label_counts": [10, 25, 50, 100, 250, 1000], "source_per_class": 4500, "source_steps": 2000,
                 "target_steps": 400, "synthetic_train_per_class": 2000, "synthetic_test_per_class": 400},
    },
    "02_math_of_transfer": {
        "smoke": {"images_per_task": 200, "synthetic_train_per_class": 60, "synthetic_test_per_class": 60},
        "cpu": {"images_per_task": 1000, "synthetic_train_per_class": 300, "synthetic_test_per_class": 300},
        "full": {"images_per_task": 2000, "synthetic_train_per_class": 500, "synthetic_test_per_class": 500},
    },
    "03_pretrain_source_model": {
        "smoke": {"num_epochs": 2, "train_per_class": 300, "batch_size": 128, "lr": 0.1, "range_test_steps": 20,
                  "synthetic_train_per_class": 400, "synthetic_test_per_class": 50},  # 360 left after validation
        "cpu": {"num_epochs": 13, "train_per_class": None, "batch_size": 256, "lr": 0.2, "range_test_steps": 100,
                "synthetic_train_per_class": 1000, "synthetic_test_per_class": 200},
        "full": {"num_epochs": 40, "train_per_class": None, "batch_size": 128, "lr": 0.1, "range_test_steps": 100,
                 "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "04_keras_finetuning": finetuning_profiles(imagenet_cpu_size=96),
    "05_pytorch_finetuning": finetuning_profiles(imagenet_cpu_size=64),
    "07_domain_adaptation": {
        "smoke": {"test_images": 200, "pool_images": 300, "shift_images": 100, "adapt_steps": 5, "severities": [1, 5],
                  "synthetic_train_per_class": 400, "synthetic_test_per_class": 50},
        "cpu": {"test_images": 2000, "pool_images": 5000, "shift_images": 500, "adapt_steps": 200,
                "severities": [1, 2, 3, 4, 5], "synthetic_train_per_class": 1000, "synthetic_test_per_class": 400},
        "full": {"test_images": 5000, "pool_images": 22500, "shift_images": 1000, "adapt_steps": 1000,
                 "severities": [1, 2, 3, 4, 5], "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "08_distillation_self_training": {
        "smoke": {"pool_images": 300, "student_steps": 30, "sweep_steps": 10, "self_training_steps": 30,
                  "teacher": {"num_epochs": 2, "min_steps": 10, "batch_size": 32, "lr": 0.01},
                  "temperatures": [1, 4], "alphas": [0.5, 1.0], "synthetic_train_per_class": 100,
                  "synthetic_test_per_class": 20},
        "cpu": {"pool_images": 10000, "student_steps": 500, "sweep_steps": 120, "self_training_steps": 300,
                "teacher": {"num_epochs": 25, "min_steps": 200, "batch_size": 64, "lr": 0.01},
                "temperatures": [1, 2, 4, 8], "alphas": [0.0, 0.5, 1.0], "synthetic_train_per_class": 1000,
                "synthetic_test_per_class": 200},
        "full": {"pool_images": 0, "student_steps": 6000, "sweep_steps": 1500, "self_training_steps": 4000,
                 "teacher": {"num_epochs": 25, "min_steps": 500, "batch_size": 64, "lr": 0.01},
                 "temperatures": [1, 2, 4, 8, 16], "alphas": [0.0, 0.25, 0.5, 0.75, 0.9, 1.0],
                 "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "09_few_shot_multi_task": {
        # layer_steps: base B and every AnB/BnB run train the same number of steps (equal budgets);
        # task_weights: the TASK_WEIGHT sweep of the multi-task run (TASK_WEIGHT itself is always in it)
        # (cpu: 120 multi-task steps and three weights, so that the notebook fits its 10 minutes on 2 cores)
        "smoke": {"episodes": 20, "multi_task_steps": 10, "task_weights": [0.5, 1.0], "transfer_per_class": 40,
                  "layer_steps": 10, "blocks": [1, 3], "seeds": [0], "synthetic_train_per_class": 100,
                  "synthetic_test_per_class": 30},
        "cpu": {"episodes": 600, "multi_task_steps": 120, "task_weights": [0.25, 1.0],
                "transfer_per_class": 1000, "layer_steps": 150, "blocks": [1, 2, 3, 4], "seeds": [0],
                "synthetic_train_per_class": 1000, "synthetic_test_per_class": 200},
        "full": {"episodes": 2000, "multi_task_steps": 1000, "task_weights": [0.1, 0.25, 0.5, 0.75, 0.9, 1.0],
                 "transfer_per_class": 4500, "layer_steps": 1000, "blocks": [1, 2, 3, 4], "seeds": [0, 1, 2],
                 "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "10_self_supervised_pretraining": {
        # pretrain_steps: SimCLR's steps; rotation_steps: the rotation model's (4 images per image, so a step costs
        # about twice SimCLR's); short_steps: each run of the augmentation ablation and the Keras run; monitor_points:
        # kNN monitor readings per run, on monitor_images validation images; lpft_steps: fine-tuning steps of LP-FT
        "smoke": {"pretrain_steps": 6, "rotation_steps": 4, "short_steps": 3, "batch_size": 32, "label_counts": [5, 20],
                  "lpft_steps": 3, "monitor_images": 100, "monitor_points": 2, "tsne_points": 100,
                  "synthetic_train_per_class": 100, "synthetic_test_per_class": 30},
        "cpu": {"pretrain_steps": 500, "rotation_steps": 100, "short_steps": 120, "batch_size": 128,
                "label_counts": [10, 50, 500], "lpft_steps": 60, "monitor_images": 500, "monitor_points": 5,
                "tsne_points": 600, "synthetic_train_per_class": 1000, "synthetic_test_per_class": 200},
        "full": {"pretrain_steps": 20000, "rotation_steps": 5000, "short_steps": 5000, "batch_size": 512,
                 "label_counts": [10, 50, 500], "lpft_steps": 500, "monitor_images": 2500, "monitor_points": 20,
                 "tsne_points": 2000, "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "11_meta_learning_zero_shot": {
        # sine_steps: meta-training steps of each sinusoid method (Finn et al.: 70,000); test_tasks: sinusoid test
        # tasks per K; meta_steps: meta-training steps of each image method; episodes: image test episodes;
        # zero_shot_per_class: source images per class the attribute classifiers train on
        "smoke": {"sine_steps": 30, "test_tasks": 20, "meta_steps": 3, "episodes": 10, "zero_shot_per_class": 60,
                  "synthetic_train_per_class": 100, "synthetic_test_per_class": 30},
        "cpu": {"sine_steps": 8000, "test_tasks": 600, "meta_steps": 300, "episodes": 600, "zero_shot_per_class": 2000,
                "synthetic_train_per_class": 1000, "synthetic_test_per_class": 200},
        "full": {"sine_steps": 10000, "test_tasks": 600, "meta_steps": 2000, "episodes": 600,
                 "zero_shot_per_class": None, "synthetic_train_per_class": 5000, "synthetic_test_per_class": 1000},
    },
    "06_evaluation": {
        "smoke": {"bootstrap_resamples": 200},
        "cpu": {"bootstrap_resamples": 2000},
        "full": {"bootstrap_resamples": 5000},
    },
}

# Minutes the `full` profile should take per notebook on one modern GPU (an A100 or H100 class card), with the
# comparison `make course` runs before 06. TARGETS, not measurements: no notebook has run on a GPU yet. (When
# notebook 11 joined, 07, 08, 09 and the comparison each gave up a minute so that the course stays within the hour;
# for notebook 10, 04 and 05 gave up one and the comparison three.)
GPU_TARGET_MINUTES: dict[str, int] = {
    "00_setup_and_data": 1, "01_concepts": 2, "02_math_of_transfer": 1, "03_pretrain_source_model": 3,
    "04_keras_finetuning": 6, "05_pytorch_finetuning": 5, "comparison": 11, "06_evaluation": 1,
    "07_domain_adaptation": 5, "08_distillation_self_training": 8, "09_few_shot_multi_task": 8,
    "10_self_supervised_pretraining": 5, "11_meta_learning_zero_shot": 4,
}
GPU_TARGET_TOTAL_MINUTES = 60  # the whole course, `make course PROFILE=full` on one GPU


def choose_profile(requested: str = "auto") -> str:
    """Return the concrete profile: WORKBOOK_PROFILE beats the notebook's PROFILE; auto picks by GPU."""
    for source, value in (("PROFILE", requested), (f"environment variable {PROFILE_ENV}", os.environ.get(PROFILE_ENV))):
        if value and value not in VALID_PROFILES:  # checked even when the other one decides
            raise ValueError(f"Unknown profile {value!r} (from {source}); valid profiles: {', '.join(VALID_PROFILES)}")
    chosen = os.environ.get(PROFILE_ENV) or requested
    if chosen == "auto":
        return "full" if has_gpu() else "cpu"
    return chosen


def resolve_config(notebook: str, profile: str = "auto", **overrides: Any) -> dict[str, Any]:
    """Merge a notebook's profile values with explicit parameters; a parameter that is not None wins."""
    if notebook not in PROFILES:
        raise ValueError(f"No profile table for notebook {notebook!r}; known notebooks: {', '.join(PROFILES)}")
    concrete = choose_profile(profile)
    knobs = dict(PROFILES[notebook][concrete])
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown} for {notebook}; valid: {', '.join(sorted(knobs))}")
    explicit = {name: value for name, value in overrides.items() if value is not None}
    knobs.update(explicit)
    config = {"notebook": notebook, "profile": concrete, "profile_requested": profile, **knobs}
    config["set_by_parameter"] = sorted(explicit)
    forced = f", {PROFILE_ENV}={os.environ[PROFILE_ENV]}" if os.environ.get(PROFILE_ENV) else ""
    print(f"Profile {concrete!r} (asked: {profile!r}{forced})")
    for name in sorted(knobs):
        print(f"  {name} = {knobs[name]!r}" + ("   (parameter)" if name in explicit else ""))
    return config
