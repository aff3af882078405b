"""Benchmark: choose the scratch baseline's recipe on a proxy task, so that no target label beyond the k is read.

Transfer makes choices (the probe's L2 strength, by cross-validation over the k labels); a fair scratch baseline gets
a budget of choices too. Cross-validating a network trained from random weights on k images per class would cost
folds x recipes trainings in every run, so the choice is made once, here, on a **proxy** of the same shape: the five
*source* classes with the same k labels per class, scored on 2,000 other source training images. Nothing of the target
task is read. Each recipe is notebook 05's scratch run (course_net, SGD with Nesterov momentum, one-cycle at rate 0.2,
label smoothing 0.1, batches of 64, flip TTA at test time) with one of: augmentation (`standard`: random crop and
flip; `strong`: RandAugment and cutout after them), weight decay, and the number of steps (at least 25 epochs, as in
05, so with many labels the epochs decide). The best recipe at each label count (mean proxy accuracy over seeds) is
what profiles.SCRATCH_RECIPES gives notebook 05's `scratch` at that count; the benchmark says whether it still is.
Finished cells are reused (`--fresh` starts over). Writes outputs/benchmarks/scratch_recipe.{json,md}.

    python -m benchmarks.scratch_recipe [--seeds 2] [--labels 10 50 500] [--steps 200 600] [--source PATH] [--fresh]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from typing import Any

import numpy as np

from helpers import data, models, profiles, runtime, splits, torch_data, torch_train
from helpers.paths import atomic_write_text
from helpers.reporting import write_benchmark

from .common import data_name, runs_root, spread, use_offline_jpeg_copy

AUGMENTS = ("standard", "strong")
WEIGHT_DECAYS = (5e-4, 5e-3)
PROXY_IMAGES = 2000  # source training images outside the k, scored once per recipe
EPOCHS = profiles.PROFILES["05_pytorch_finetuning"]["cpu"]["num_epochs"]  # with many labels, epochs set the steps
BATCH_SIZE = 64  # notebook 05's cpu batches
COLUMNS = ["labels_per_class", "augment", "weight_decay", "steps", "steps_run", "proxy_acc_mean", "proxy_acc_min",
           "seeds", "train_s_mean"]


def steps_run(labels_per_class: int, min_steps: int, classes: int = 5) -> int:
    """Count the steps a recipe really trains: at least EPOCHS epochs of the k images per class, at least min_steps."""
    batches = math.ceil(classes * labels_per_class / BATCH_SIZE)
    return max(EPOCHS, math.ceil(min_steps / batches)) * batches


def distinct_step_floors(labels_per_class: int, floors: list[int], classes: int = 5) -> list[int]:
    """Keep one floor per number of steps really run (with many labels the epochs decide, and floors coincide).

    Of floors that train alike, the largest is kept: it names the recipe truthfully ("at least 600 steps" of 1,000).
    """
    by_steps: dict[int, int] = {}
    for floor in sorted(floors):
        by_steps[steps_run(labels_per_class, floor, classes)] = floor
    return sorted(by_steps.values())


def proxy_task(cifar: data.ImageData, labels_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices of the k labelled source images (sampled as 05 samples the target's) and the scoring set."""
    source = splits.task_data(cifar, "source")
    labelled = splits.split_indices(source, "train", seed=seed, labels_per_class=labels_per_class)
    rest = np.setdiff1d(np.arange(len(source.y_train)), labelled)
    return labelled, np.sort(np.random.default_rng(seed).choice(rest, PROXY_IMAGES, replace=False))


def train_scratch(cifar: data.ImageData, labels_per_class: int, seed: int, augment: str, weight_decay: float,
                  steps: int) -> dict[str, float]:
    """Train notebook 05's scratch recipe with one choice of augmentation, weight decay and steps; score it."""
    import torch
    from torch import nn

    source = splits.task_data(cifar, "source")
    labelled, scored = proxy_task(cifar, labels_per_class, seed)
    runtime.seed_everything(seed)
    device = runtime.torch_device(verbose=False)
    model = torch_train.to_device(models.course_net(source.num_classes), device)
    loader = torch_data.make_loader(source.x_train[labelled], source.y_train[labelled], train=True,
                                    batch_size=BATCH_SIZE, seed=seed, strong=augment == "strong")
    epochs = max(EPOCHS, math.ceil(steps / len(loader)))  # notebook 05's floor: at least 25 epochs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, pct_start=0.2, epochs=epochs,
                                                    steps_per_epoch=len(loader))
    start = time.perf_counter()
    torch_train.fit(model, loader, None, optimizer, epochs, nn.CrossEntropyLoss(label_smoothing=0.1), device,
                    scheduler, desc=f"{augment} wd={weight_decay} {steps} steps")
    seconds = time.perf_counter() - start
    test_loader = torch_data.make_loader(source.x_train[scored], source.y_train[scored], train=False, batch_size=256)
    accuracy = torch_train.evaluate(model, test_loader, device, flip_tta=True)["acc"]
    return {"proxy_acc": float(accuracy), "train_s": round(seconds, 1)}


def summarize(cells: list[dict[str, Any]], classes: int = 5) -> list[dict[str, Any]]:
    """One row per (labels, augment, weight decay, steps): mean proxy accuracy over seeds (decay written as text)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["labels_per_class"], cell["augment"], cell["weight_decay"], cell["steps"]),
                          []).append(cell)
    rows = []
    for (labels, augment, weight_decay, steps), group in sorted(groups.items()):
        accuracy = spread([c["proxy_acc"] for c in group])
        rows.append({"labels_per_class": labels, "augment": augment, "weight_decay": f"{weight_decay:g}",
                     "steps": steps, "steps_run": steps_run(labels, steps, classes),
                     "proxy_acc_mean": round(accuracy["mean"], 4), "proxy_acc_min": round(accuracy["min"], 4),
                     "seeds": accuracy["n"], "train_s_mean": round(spread([c["train_s"] for c in group])["mean"], 1)})
    return rows


def best_recipes(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Return, per label count, the recipe with the best proxy accuracy (mean over seeds; fewer steps run on a tie)."""
    chosen = {}
    for labels in sorted({row["labels_per_class"] for row in rows}):
        best = max((row for row in rows if row["labels_per_class"] == labels),
                   key=lambda row: (row["proxy_acc_mean"], -row["steps_run"]))
        chosen[labels] = {"augment": best["augment"], "weight_decay": float(best["weight_decay"]),
                          "min_steps": best["steps"]}
    return chosen


def recipe_parser(doc: str) -> argparse.ArgumentParser:
    """Build the options both recipe benchmarks take: seeds, label counts, step floors, a local copy, a fresh start."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 600])
    parser.add_argument("--source", help="local CIFAR-10 copy (default: the shared JPEG copy)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier cells first")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train every recipe on the proxy for each label count and seed; write the table and the chosen recipe."""
    args = recipe_parser(__doc__).parse_args(argv)
    use_offline_jpeg_copy(args.source)
    cells_file = runs_root("scratch_recipe", args.fresh) / "cells.jsonl"
    cells_file.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in cells_file.read_text().splitlines()] if cells_file.exists() else []
    cifar = data.load_dataset("auto", 0, 0, 0)
    key = lambda cell: (cell["labels_per_class"], cell["seed"], cell["augment"], cell["weight_decay"], cell["steps"])
    finished = {key(cell): cell for cell in done if cell.get("data_sha256") == cifar.identity.get("sha256")}
    cells = []
    candidates = [(labels, seed, augment, weight_decay, steps) for labels in args.labels for seed in range(args.seeds)
                  for augment, weight_decay in itertools.product(AUGMENTS, WEIGHT_DECAYS)
                  for steps in distinct_step_floors(labels, args.steps)]
    for labels, seed, augment, weight_decay, steps in candidates:
        cell = {"labels_per_class": labels, "seed": seed, "augment": augment, "weight_decay": weight_decay,
                "steps": steps, "data_sha256": cifar.identity.get("sha256")}
        if key(cell) not in finished:
            cell.update(train_scratch(cifar, labels, seed, augment, weight_decay, steps))
            done.append(cell)
            atomic_write_text(cells_file, "".join(json.dumps(c) + "\n" for c in done))
        cells.append(finished.get(key(cell), cell))
    rows = summarize(cells)
    chosen = best_recipes(rows)
    used = {labels: profiles.scratch_recipe("cpu", labels) for labels in chosen}
    counted = {labels: len(AUGMENTS) * len(WEIGHT_DECAYS) * len(distinct_step_floors(labels, args.steps))
               for labels in args.labels}
    notes = (f"Proxy: the five source classes with k labels per class, scored on {PROXY_IMAGES} other source training "
             f"images (no target label read); at least {EPOCHS} epochs of batches of {BATCH_SIZE}, as notebook 05 "
             f"trains in the cpu profile. Distinct recipes per label count (step floors that run the same steps count "
             f"once): {counted}. Best recipe per label count: {chosen}. The full profile (batches of 128, every "
             f"label) uses the largest count's recipe, not measured at that size. Notebook 05 uses {used}: "
             f"{'the same' if used == chosen else 'NOT the chosen ones: update profiles.SCRATCH_RECIPES'}.")
    write_benchmark("scratch_recipe", rows, COLUMNS, {**cifar.identity, "name": data_name(cifar.identity)}, notes)
    return 0 if used == chosen else 1


if __name__ == "__main__":
    sys.exit(main())
