import json
from pathlib import Path

import pytest

from benchmarks.common import SeedTable, drop_stale_runs
from benchmarks.pytorch_transfer import check_targets, summarize


def write_run(runs: Path, name: str, weights: dict) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"weights": weights, "metrics": {}}))
    return folder


def test_drop_stale_runs_reruns_only_runs_from_another_checkpoint(tmp_path):
    current = write_run(tmp_path, "lp_ft-current", {"weights": "course", "sha256": "new"})
    old = write_run(tmp_path, "lp_ft-old", {"weights": "course", "sha256": "old"})
    keras_old = write_run(tmp_path, "keras-old", {"weights": "course", "sha256": "h5", "torch_sha256": "old"})
    keras_current = write_run(tmp_path, "keras-current", {"weights": "course", "sha256": "h5", "torch_sha256": "new"})
    scratch = write_run(tmp_path, "scratch", {"weights": "none"})
    nested_old = write_run(tmp_path / "bn_pitfall", "lp_ft-old", {"weights": "course", "sha256": "old"})
    stale = drop_stale_runs(tmp_path, "new")
    assert sorted(stale) == sorted([old, keras_old, nested_old])
    assert current.exists() and keras_current.exists() and scratch.exists()
    assert not old.exists() and not keras_old.exists()


def test_drop_stale_runs_without_a_checkpoint_drops_every_course_run(tmp_path):
    write_run(tmp_path, "lp_ft", {"weights": "course", "sha256": "old"})
    assert len(drop_stale_runs(tmp_path, None)) == 1
    assert drop_stale_runs(tmp_path / "missing", "new") == []


def record(labels: int, strategy: str, seed: int, acc: float, validation: str = "labelled") -> dict:
    return {"config": {"labels_per_class": labels, "strategy": strategy, "seed": seed, "validation": validation},
            "metrics": {"test_acc": acc, "wall_seconds": 1.0}}


def test_check_targets_needs_every_seed_to_beat_scratch():
    records = [record(10, "scratch", s, 0.5) for s in (0, 1)] + [record(10, "lp_ft", 0, 0.7),
                                                                  record(10, "lp_ft", 1, 0.45)]
    records += [record(500, "lp_ft", s, 0.91) for s in (0, 1)] + [record(50, "lp_ft", s, 0.84) for s in (0, 1)]
    source = {"metrics": {"source_test_acc": 0.905}, "train_seconds": 610}
    checks = check_targets(source, summarize(records))
    assert checks["transfer beats scratch at 10/class, every seed"] is False  # seed 1 loses although the mean wins
    assert checks["best at 500/class >= 0.90"] and not checks["best at 50/class >= 0.85"]
    assert checks["source_test_acc >= 0.90"] and not checks["pretraining <= 600 s"]


def test_oracle_rows_are_reported_apart_and_never_meet_a_target():
    records = [record(50, "lp_ft", s, 0.80) for s in (0, 1)] + [record(50, "lp_ft", s, 0.86, "oracle") for s in (0, 1)]
    rows = summarize(records)
    assert [(r["validation"], round(r["test_acc_mean"], 2)) for r in rows] == [("labelled", 0.8), ("oracle", 0.86)]
    checks = check_targets({"metrics": {"source_test_acc": 0.9}, "train_seconds": 1}, rows)
    assert not checks["best at 50/class >= 0.85"]  # only the oracle run reaches it


def test_distillation_summary_averages_seeds_and_times_rounds():
    from benchmarks.distillation import summarise, value

    def record(labels, seed, teacher, student):
        return {"config": {"labels_per_class": labels, "seed": seed},
                "metrics": {"results": {"teacher": teacher, "self-training, round 1": student},
                            "seconds": {}, "rounds": [{"round": 1, "seconds": 100.0 + 2 * seed}]}}

    rows = summarise([record(50, 0, 0.80, 0.84), record(50, 1, 0.82, 0.86), record(10, 0, 0.7, 0.75)],
                     "self-training")
    assert value(rows, 50, "self-training, round 1") == 0.85 and value(rows, 50, "teacher") == 0.81
    row = next(r for r in rows if r["labels"] == 50 and r["model"] == "self-training, round 1")
    assert row["seeds"] == 2 and row["seconds"] == 101
    assert value(rows, 500, "teacher") is None


def test_distillation_grid_averages_each_cell_over_seeds_and_reads_main_effects():
    from benchmarks.distillation import main_effects, summarise_grid

    def record(seed, accuracies):
        cells = [{"noise": noise, "filter": filtering, "kept": 100 * (i + 1), "pseudo_right": 0.9 - 0.1 * i,
                  "test_acc": acc + 0.01 * seed, "seconds": 10.0}
                 for i, ((noise, filtering), acc) in enumerate(accuracies.items())]
        return {"config": {"labels_per_class": 50, "seed": seed}, "metrics": {"noise_x_filter": cells}}

    accuracies = {("strong", "filtered"): 0.86, ("strong", "keep everything"): 0.84, ("none", "filtered"): 0.82,
                  ("none", "keep everything"): 0.78}
    rows = summarise_grid([record(0, accuracies), record(2, accuracies)])
    assert len(rows) == 4 and all(r["seeds"] == 2 for r in rows)
    first = rows[0]
    assert first["model"] == "noise strong, filtered" and first["test_acc"] == 0.87 and first["kept"] == 100
    assert abs(first["seed_std"] - 0.0141) < 1e-4 and first["pseudo_right"] == 0.9
    assert main_effects(rows, 50) == "noise +5.0 points, filtering +3.0 points"
    assert main_effects(rows, 10) == "not run"


def test_layer_grid_averages_each_variant_and_block_count_over_seeds(tmp_path):
    from benchmarks.layers import layer_rows, plot

    metrics = [{"layers": [{"variant": "base B", "n": 0, "test_acc": 0.70 + s / 100},
                           {"variant": "AnB", "n": 1, "test_acc": 0.72 + s / 100},
                           {"variant": "AnB+", "n": 1, "test_acc": 0.74}, {"variant": "BnB", "n": 1, "test_acc": 0.7},
                           {"variant": "BnB+", "n": 1, "test_acc": 0.71}]} for s in (0, 2)]
    rows = layer_rows(metrics)
    anb = next(r for r in rows if r["variant"] == "AnB")
    assert anb["test_acc"] == 0.73 and anb["seeds"] == 2 and anb["seed_std"] > 0
    assert plot(rows, tmp_path / "layers.png").stat().st_size > 0


def test_seed_table_summarises_each_cell_over_seeds_and_skips_missing_values():
    table = SeedTable()
    for value, half in ((0.60, 0.02), (0.64, 0.04), (None, None)):
        table.add("probe, 50 labels/class", "simclr", value, half)
    table.add("kNN monitor", "simclr, end", 0.5)
    probe, monitor = table.rows()
    assert probe["seeds"] == 2 and probe["value"] == 0.62 and probe["min"] == 0.6 and probe["max"] == 0.64
    assert abs(probe["seed_std"] - 0.0283) < 1e-4 and probe["note"] == "within-seed 95% +-0.030"
    assert monitor["seeds"] == 1 and monitor["seed_std"] == 0.0 and "note" not in monitor
    assert set(probe) <= set(SeedTable.COLUMNS)


def test_scratch_floor_is_checked_on_the_mean_over_seeds():
    records = [record(10, "scratch", 0, 0.50), record(10, "scratch", 1, 0.56), record(50, "scratch", 0, 0.69)]
    checks = check_targets({"metrics": {"source_test_acc": 0.9}, "train_seconds": 1}, summarize(records))
    assert checks["scratch at 10/class >= 0.52"] and not checks["scratch at 50/class >= 0.70"]


def test_scratch_recipe_picks_the_best_recipe_at_each_label_count():
    from benchmarks.scratch_recipe import best_recipes
    from benchmarks.scratch_recipe import summarize as summarize_cells

    def cell(labels, seed, augment, acc, steps=600):
        return {"labels_per_class": labels, "seed": seed, "augment": augment, "weight_decay": 5e-3, "steps": steps,
                "proxy_acc": acc, "train_s": 1.0}

    cells = [cell(10, 0, "standard", 0.40), cell(10, 1, "standard", 0.44), cell(50, 0, "standard", 0.70),
             cell(10, 0, "strong", 0.50), cell(10, 1, "strong", 0.48), cell(50, 0, "strong", 0.66),
             cell(50, 0, "strong", 0.70, steps=200)]
    rows = summarize_cells(cells)
    assert [r["proxy_acc_mean"] for r in rows if r["augment"] == "standard"] == [0.42, 0.7]
    assert best_recipes(rows) == {10: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 600},
                                  50: {"augment": "strong", "weight_decay": 5e-3, "min_steps": 200}}  # tie: fewer


def test_scratch_takes_the_recipe_of_the_nearest_measured_label_count():
    from helpers import profiles

    measured = sorted(profiles.SCRATCH_RECIPES)
    assert profiles.scratch_recipe("cpu", measured[0]) == profiles.SCRATCH_RECIPES[measured[0]]
    assert profiles.scratch_recipe("cpu", None) == profiles.SCRATCH_RECIPES[measured[-1]]  # every label
    assert profiles.scratch_recipe("cpu", 10**6) == profiles.SCRATCH_RECIPES[measured[-1]]
    assert profiles.scratch_recipe("smoke", measured[0])["min_steps"] == 3


def test_scratch_proxy_reads_only_source_images_and_scores_on_other_ones():
    import numpy as np

    from benchmarks.scratch_recipe import PROXY_IMAGES, proxy_task
    from helpers import data, splits

    cifar = data.load_dataset("synthetic", 500, 10, 0)
    labelled, scored = proxy_task(cifar, 10, seed=1)
    source = splits.task_data(cifar, "source")
    assert len(labelled) == 50 and len(scored) == PROXY_IMAGES and not np.intersect1d(labelled, scored).size
    assert np.bincount(source.y_train[labelled]).tolist() == [10] * 5
    assert set(source.identity["classes"]).isdisjoint(splits.task_data(cifar, "target").identity["classes"])


def test_keras_variants_are_paired_with_the_pytorch_run_of_the_same_labels_and_seed(tmp_path):
    import numpy as np

    from benchmarks.keras_transfer import variant_gaps

    truth = np.repeat(np.arange(5), 40)
    one_hot = lambda preds: np.eye(5, dtype=np.float32)[preds]  # noqa: E731
    wrong = lambda share: np.where(np.arange(200) % 100 < share, (truth + 1) % 5, truth)  # noqa: E731
    results = []
    for seed in (0, 1):
        keras = tmp_path / f"keras{seed}"
        keras.mkdir()
        (keras / "metrics.json").write_text(json.dumps({"config": {"strategy": "lp_ft", "labels_per_class": 50,
                                                                   "seed": seed}}))
        np.savez(keras / "predictions.npz", y_true=truth, probs=one_hot(wrong(20)), probs_probe_head=one_hot(wrong(10)))
        results.append({"folder": str(keras), "status": "ok"})
        torch_run = tmp_path / f"torch{seed}"
        torch_run.mkdir()
        np.savez(torch_run / "predictions.npz", y_true=truth, probs=one_hot(wrong(10)))
    rows = variant_gaps(results, {(50, 0): tmp_path / "torch0", (50, 1): tmp_path / "torch1"})
    gaps = {row["item"]: row for row in rows}
    assert gaps["04's recipe"]["value"] == -0.1 and gaps["04's recipe"]["seeds"] == 2  # 20% wrong against 10%
    assert gaps["05's head (cross-validated probe)"]["value"] == 0.0
    assert variant_gaps(results, {(500, 0): tmp_path / "torch0"}) == []  # no PyTorch run of those labels: no row


def test_transfer_proxy_reads_only_source_classes_three_to_two():

    from benchmarks.transfer_recipe import proxy_split
    from helpers import data, splits

    cifar = data.load_dataset("synthetic", 200, 10, 0)
    source_images = splits.task_data(cifar, "source").x_train
    proxy_source, proxy_target = proxy_split(cifar)
    assert proxy_source.num_classes == 3 and proxy_target.num_classes == 2
    assert sorted(set(proxy_source.y_train.tolist())) == [0, 1, 2]
    assert sorted(set(proxy_target.y_train.tolist())) == [0, 1]
    assert len(proxy_source.y_train) + len(proxy_target.y_train) == len(source_images)  # source classes only
    assert not set(proxy_source.class_names) & set(proxy_target.class_names)


def test_transfer_recipes_are_chosen_per_strategy_and_used_by_notebook_05():
    from benchmarks.transfer_recipe import best_recipes
    from helpers import profiles

    rows = [{"strategy": strategy, "labels_per_class": 50, "augment": augment, "weight_decay": "0.005", "steps": 200,
             "steps_run": 200, "proxy_acc_mean": acc}
            for strategy, augment, acc in (("lp_ft", "standard", 0.8), ("lp_ft", "strong", 0.85),
                                           ("finetune_full", "standard", 0.8), ("finetune_full", "strong", 0.75))]
    chosen = best_recipes(rows)
    assert chosen["lp_ft"][50]["augment"] == "strong" and chosen["finetune_full"][50]["augment"] == "standard"
    for strategy, table in profiles.TRANSFER_RECIPES.items():
        for labels, recipe in table.items():
            assert profiles.training_recipe(strategy, "own", "cpu", labels) == recipe
    fixed = profiles.training_recipe("lp_ft", "fixed", "cpu", 50)
    assert fixed == {**profiles.FINE_TUNING_RECIPE, "min_steps": 200}
    assert profiles.training_recipe("finetune_top", "own", "cpu", 50) == fixed  # no table: the fixed recipe
    assert profiles.training_recipe("lp_ft", "scratch", "cpu", 50) == profiles.SCRATCH_RECIPES[50]


@pytest.mark.slow
def test_a_transfer_recipe_trains_and_scores_on_the_proxy(monkeypatch):
    from benchmarks import transfer_recipe
    from helpers import data, models

    monkeypatch.setattr(transfer_recipe, "PROXY_IMAGES", 20)
    cifar = data.load_dataset("synthetic", 60, 10, 0)
    _, target = transfer_recipe.proxy_split(cifar)
    for strategy in transfer_recipe.STRATEGIES:
        result = transfer_recipe.train_transfer(models.course_net(3), target, strategy, 5, 0, "strong", 5e-3, 3)
        assert 0 <= result["proxy_acc"] <= 1 and result["train_s"] >= 0
