"""Benchmark: choose the fine-tuning strategies' recipe on a proxy transfer task, with scratch's budget of choices.

Scratch chooses its recipe among 8 candidates on a proxy that reads no target label (`make bench-scratch`). For the
comparison to be fair both ways, full fine-tuning and LP-FT choose among the same 8 candidates (crop and flip, or
RandAugment and cutout after them; weight decay 5e-4 or 5e-3; at least 200 or 600 steps, and at least 25 epochs) by
the same kind of rule. Their proxy must be a *transfer* task that reads no target label, so it is made from the
source classes alone: a proxy source model trained on three of them (airplane, automobile, bird; its own few epochs,
cached), transferred to the other two (cat, deer) with the same k labels per class, scored on 2,000 other images of
those two. Each candidate is notebook 05's recipe for the strategy (course_net, SGD with Nesterov momentum, one-cycle
at rate 0.01, label smoothing 0.1, batches of 64; LP-FT's head a probe with C chosen by cross-validation on the k
labels; flip TTA at test time) with one of the 8 settings. The best recipe per strategy and label count (mean proxy
accuracy over seeds) is what profiles.TRANSFER_RECIPES gives notebook 05; the benchmark says whether it still is.
Finished cells are reused (`--fresh` starts over); `--strategies` splits the work between processes.
Writes outputs/benchmarks/transfer_recipe.{json,md}.

    python -m benchmarks.transfer_recipe [--seeds 2] [--labels 10 50 500] [--strategies lp_ft finetune_full]
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from helpers import data, models, profiles, runtime, splits, torch_data, torch_train
from helpers.paths import atomic_write_text
from helpers.reporting import write_benchmark

from .common import data_name, runs_root, use_offline_jpeg_copy
from .scratch_recipe import (
    AUGMENTS,
    BATCH_SIZE,
    EPOCHS,
    PROXY_IMAGES,
    WEIGHT_DECAYS,
    distinct_step_floors,
    recipe_parser,
    summarize,
)
from .scratch_recipe import best_recipes as scratch_best_recipes

PROXY_SOURCE, PROXY_TARGET = (0, 1, 2), (3, 4)  # source-task labels: airplane, automobile, bird; cat, deer
STRATEGIES = ("lp_ft", "finetune_full")
SOURCE_EPOCHS = 8  # the proxy source model's schedule (03 trains the real one for 13 epochs on five classes)
FINE_TUNE_LR = profiles.PROFILES["05_pytorch_finetuning"]["cpu"]["lr"]
COLUMNS = ["strategy", "labels_per_class", "augment", "weight_decay", "steps", "steps_run", "proxy_acc_mean",
           "proxy_acc_min", "seeds", "train_s_mean"]


def proxy_split(cifar: data.ImageData) -> tuple[data.ImageData, data.ImageData]:
    """Return the proxy's source (three source classes) and target (the other two, relabelled 0, 1) training images."""
    source = splits.task_data(cifar, "source")

    def keep(classes: tuple[int, ...]) -> data.ImageData:
        rows = np.isin(source.y_train, classes)
        relabel = np.searchsorted(np.asarray(classes), source.y_train[rows])
        return data.ImageData(source.x_train[rows], relabel, source.x_test[:0], source.y_test[:0],
                              [source.class_names[c] for c in classes], {**source.identity, "task": str(classes)})

    return keep(PROXY_SOURCE), keep(PROXY_TARGET)


def proxy_source_model(cifar: data.ImageData, folder: Path) -> models.TransferNet:
    """Train (or load, hash-checked) the proxy source model on the three proxy source classes."""
    import torch
    from torch import nn

    path = folder / "proxy_source.pt"
    expect = {"data": cifar.identity.get("sha256"), "classes": [cifar.class_names[c] for c in PROXY_SOURCE],
              "epochs": SOURCE_EPOCHS}
    if path.exists():
        try:
            return models.load_checkpoint(path, expect=expect)[0]
        except models.CheckpointError as error:
            print(f"{path.name} cannot be used ({type(error).__name__}): training it again.")
    source, _ = proxy_split(cifar)
    runtime.seed_everything(0)
    device = runtime.torch_device(verbose=False)
    model = torch_train.to_device(models.course_net(len(PROXY_SOURCE)), device)
    loader = torch_data.make_loader(source.x_train, source.y_train, train=True, batch_size=128, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, pct_start=0.2, epochs=SOURCE_EPOCHS,
                                                    steps_per_epoch=len(loader))
    torch_train.fit(model, loader, None, optimizer, SOURCE_EPOCHS, nn.CrossEntropyLoss(label_smoothing=0.1), device,
                    scheduler, desc="proxy source model")
    models.save_checkpoint(model.cpu(), {**expect, "widths": list(models.COURSE_NET_WIDTHS)}, path)
    return models.load_checkpoint(path, expect=expect)[0]


def proxy_task(target: data.ImageData, labels_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices of the k labelled proxy-target images and of the 2,000 others that score a recipe."""
    labelled = splits.split_indices(target, "train", seed=seed, labels_per_class=labels_per_class)
    rest = np.setdiff1d(np.arange(len(target.y_train)), labelled)
    return labelled, np.sort(np.random.default_rng(seed).choice(rest, PROXY_IMAGES, replace=False))


def train_transfer(source_model: models.TransferNet, target: data.ImageData, strategy: str, labels_per_class: int,
                   seed: int, augment: str, weight_decay: float, steps: int) -> dict[str, float]:
    """Fine-tune the proxy source model with notebook 05's `strategy` and one recipe; score it on the proxy."""
    import torch
    from torch import nn

    labelled, scored = proxy_task(target, labels_per_class, seed)
    runtime.seed_everything(seed)
    device = runtime.torch_device(verbose=False)
    model = copy.deepcopy(source_model)
    model.head = nn.Linear(model.feature_dim, len(PROXY_TARGET))
    model = torch_train.to_device(model, device)
    start = time.perf_counter()
    if strategy == "lp_ft":  # the probe on frozen features, C by cross-validation on the k labels, becomes the head
        features = torch_train.extract_features(model.features, torch_data.make_loader(
            target.x_train[labelled], target.y_train[labelled], train=False, batch_size=256), device, progress=False)
        scores, _ = torch_train.cross_validated_probe(features, target.y_train[labelled],
                                                      torch_train.PROBE_STRENGTHS, seed=seed)
        torch_train.probe_to_head(*torch_train.fit_linear_probe(features, target.y_train[labelled],
                                                                c=max(scores, key=scores.get), seed=seed), model.head)
    loader = torch_data.make_loader(target.x_train[labelled], target.y_train[labelled], train=True,
                                    batch_size=BATCH_SIZE, seed=seed, strong=augment == "strong")
    epochs = max(EPOCHS, math.ceil(steps / len(loader)))
    optimizer = torch.optim.SGD(model.parameters(), lr=FINE_TUNE_LR, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=FINE_TUNE_LR, pct_start=0.2, epochs=epochs,
                                                    steps_per_epoch=len(loader))
    torch_train.fit(model, loader, None, optimizer, epochs, nn.CrossEntropyLoss(label_smoothing=0.1), device,
                    scheduler, desc=f"{strategy} {augment} wd={weight_decay} {steps} steps")
    seconds = time.perf_counter() - start
    test_loader = torch_data.make_loader(target.x_train[scored], target.y_train[scored], train=False, batch_size=256)
    return {"proxy_acc": float(torch_train.evaluate(model, test_loader, device, flip_tta=True)["acc"]),
            "train_s": round(seconds, 1)}


def best_recipes(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Return, per strategy, scratch's rule applied to its rows: the best recipe at each label count."""
    return {strategy: scratch_best_recipes([row for row in rows if row["strategy"] == strategy])
            for strategy in sorted({row["strategy"] for row in rows})}


def main(argv: list[str] | None = None) -> int:
    """Train every recipe of each strategy on the proxy for each label count and seed; write the table and choices."""
    parser = recipe_parser(__doc__)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args(argv)
    use_offline_jpeg_copy(args.source)
    folder = runs_root("transfer_recipe", args.fresh)
    folder.mkdir(parents=True, exist_ok=True)
    cifar = data.load_dataset("auto", 0, 0, 0)
    source_model = proxy_source_model(cifar, folder)
    _, target = proxy_split(cifar)
    classes = len(PROXY_TARGET)
    rows = []
    for strategy in args.strategies:
        cells_file = folder / f"cells_{strategy}.jsonl"  # one file per strategy: two processes never share one
        done = [json.loads(line) for line in cells_file.read_text().splitlines()] if cells_file.exists() else []
        key = lambda cell: (cell["labels_per_class"], cell["seed"], cell["augment"], cell["weight_decay"],
                            cell["steps"])
        finished = {key(cell): cell for cell in done if cell.get("data_sha256") == cifar.identity.get("sha256")}
        cells = []
        for labels in args.labels:
            for seed, (augment, weight_decay), steps in itertools.product(
                    range(args.seeds if labels < 500 else 1), itertools.product(AUGMENTS, WEIGHT_DECAYS),
                    distinct_step_floors(labels, args.steps, classes)):
                cell = {"labels_per_class": labels, "seed": seed, "augment": augment, "weight_decay": weight_decay,
                        "steps": steps, "data_sha256": cifar.identity.get("sha256")}
                if key(cell) not in finished:
                    cell.update(train_transfer(source_model, target, strategy, labels, seed, augment, weight_decay,
                                               steps))
                    done.append(cell)
                    atomic_write_text(cells_file, "".join(json.dumps(c) + "\n" for c in done))
                cells.append(finished.get(key(cell), cell))
        rows += [{"strategy": strategy, **row} for row in summarize(cells, classes)]
    chosen = best_recipes(rows)
    used = {strategy: {labels: profiles.training_recipe(strategy, "own", "cpu", labels) for labels in by_labels}
            for strategy, by_labels in chosen.items()}
    notes = (f"Proxy transfer task: a course_net trained {SOURCE_EPOCHS} epochs on source classes {PROXY_SOURCE} "
             f"(airplane, automobile, bird), fine-tuned to {PROXY_TARGET} (cat, deer) with k labels per class, scored "
             f"on {PROXY_IMAGES} other images of those two; no target image or label read. 8 candidates per strategy "
             f"and label count (2 augmentations x 2 weight decays x 2 step floors; floors that run the same steps "
             f"count once), as scratch's; seeds: {args.seeds} below 500 labels, 1 at 500 (as bench-scratch ran). "
             f"Best recipe per strategy and label count: {chosen}. Notebook 05 uses {used}: "
             f"{'the same' if used == chosen else 'NOT the chosen ones: update profiles.TRANSFER_RECIPES'}.")
    write_benchmark("transfer_recipe", rows, COLUMNS, {**cifar.identity, "name": data_name(cifar.identity)}, notes)
    return 0 if used == chosen else 1


if __name__ == "__main__":
    sys.exit(main())
