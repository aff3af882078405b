"""Benchmark: distillation and self-training (notebook 08) on the target task, under the honest few-label protocol.

Runs notebook 08 through papermill (offline, on a local CIFAR-10 copy): self-training (`METHOD="self_training"`,
every unlabelled training image in the pool; each run also trains the noise x filtering grid, three more rounds
beside round 1) at each label count (3 seeds at 50 per class, 1 elsewhere), and
distillation (`METHOD="distillation"`: labels only, distilled on the labelled images, distilled on labelled +
pool, with the sweeps and the Keras distiller) at 50 and 500 labels per class (3 seeds at 500, 1 at 50).
Teachers are LP-FT on the labelled images (cached per label set and seed). Targets: self-training >= 0.85 at 50
labels per class with each round <= 10 minutes; the distilled student (labelled + pool) within 3 points of its
teacher at 500 labels per class and >= 5 points ahead of the label-only student at 50. Writes
outputs/benchmarks/distillation.{json,md}. `--as-course` runs instead the notebook as `make course` does (its
profile's pool and steps, 50 labels per class) once per seed, for the noise x filtering grid over seeds and the
notebook's own time (target 10 minutes): outputs/benchmarks/distillation-as-course.{json,md}.

    python -m benchmarks.distillation [--as-course] [--seeds 3] [--other-seeds 1] [--labels 10 50 500] [--steps 2000]
                                      [--student-steps 2000] [--profile cpu] [--source PATH] [--fresh]
"""

from __future__ import annotations

import sys

from helpers.models import checkpoint_path
from helpers.reporting import write_benchmark
from helpers.sweep import read_metrics, run_sweep

from .common import (
    benchmark_parser,
    data_name,
    drop_stale_runs,
    finished_records,
    runs_root,
    spread,
    use_offline_jpeg_copy,
)

TARGETS = {"self_training_50": 0.85, "round_seconds": 600, "distilled_gap_500": 0.03, "distilled_gain_50": 0.05,
           "notebook_seconds": 600}


def summarise(records: list[dict], method: str) -> list[dict]:
    """One row per label count and model: mean and seed spread of test accuracy, and seconds."""
    rows = []
    for labels in sorted({r["config"]["labels_per_class"] for r in records}):
        group = [r["metrics"] for r in records if r["config"]["labels_per_class"] == labels]
        names = ["teacher", *[name for name in group[0]["results"] if name != "teacher"]]
        for name in names:
            values = spread([m["results"][name] for m in group if name in m["results"]])
            seconds = [m["seconds"].get(name) for m in group if m["seconds"].get(name) is not None]
            seconds += [r["seconds"] for m in group for r in m["rounds"] if name.endswith(f"round {r['round']}")]
            rows.append({"method": method, "labels": labels, "model": name, "seeds": values["n"],
                         "test_acc": round(values["mean"], 4), "seed_std": round(values["std"], 4),
                         "seconds": round(sum(seconds) / len(seconds)) if seconds else "-"})
    return rows


def summarise_grid(records: list[dict]) -> list[dict]:
    """One row per label count and cell of the noise x filtering grid: mean and seed spread over seeds."""
    rows = []
    for labels in sorted({r["config"]["labels_per_class"] for r in records}):
        cells = [cell for r in records if r["config"]["labels_per_class"] == labels
                 for cell in r["metrics"].get("noise_x_filter", [])]
        for noise, filtering in dict.fromkeys((cell["noise"], cell["filter"]) for cell in cells):
            group = [cell for cell in cells if (cell["noise"], cell["filter"]) == (noise, filtering)]
            values = spread([cell["test_acc"] for cell in group])
            right = [cell["pseudo_right"] for cell in group if cell["pseudo_right"] is not None]
            rows.append({"method": "self-training, noise x filtering", "labels": labels,
                         "model": f"noise {noise}, {filtering}", "seeds": values["n"],
                         "test_acc": round(values["mean"], 4), "seed_std": round(values["std"], 4),
                         "seconds": round(sum(cell["seconds"] for cell in group) / len(group)),
                         "kept": round(sum(cell["kept"] for cell in group) / len(group)),
                         "pseudo_right": round(sum(right) / len(right), 4) if right else "-"})
    return rows


def main_effects(rows: list[dict], labels: int) -> str:
    """'noise +x.x points, filtering +y.y points': each factor's mean over the other's two levels, in points."""
    acc = {r["model"]: r["test_acc"] for r in rows if r["labels"] == labels and "filtering" in r["method"]}
    if len(acc) != 4:
        return "not run"
    cell = lambda noise, filtering: acc[f"noise {noise}, {filtering}"]  # noqa: E731
    noise = sum(cell("strong", f) - cell("none", f) for f in ("filtered", "keep everything")) / 2
    filtering = sum(cell(n, "filtered") - cell(n, "keep everything") for n in ("strong", "none")) / 2
    return f"noise {noise * 100:+.1f} points, filtering {filtering * 100:+.1f} points"


def value(rows: list[dict], labels: int, model: str) -> float | None:
    """Mean test accuracy of one row, or None when it was not run."""
    return next((r["test_acc"] for r in rows if r["labels"] == labels and r["model"] == model), None)


COLUMNS = ["method", "labels", "model", "seeds", "test_acc", "seed_std", "seconds", "kept", "pseudo_right"]


def as_course(profile: str, seeds: int, fresh: bool) -> int:
    """Run notebook 08 as `make course` does (its profile's pool and steps), once per seed; report grid and time."""
    root = runs_root("distillation-as-course", fresh)
    results = run_sweep("08_distillation_self_training", {"PROFILE": [profile], "SEED": list(range(seeds))},
                        root / "runs")
    records = finished_records(results, root / "runs")
    if not records:
        return 1
    grid = summarise_grid(records)
    wall = spread([r["metrics"]["wall_seconds"] for r in records])
    within = wall["max"] <= TARGETS["notebook_seconds"]
    identity = records[0]["data"]
    write_benchmark("distillation-as-course", summarise(records, "notebook 08") + grid, COLUMNS,
                    {**identity, "name": data_name(identity)},
                    notes=f"profile {profile}, the notebook's defaults ({records[0]['config']['labels_per_class']} "
                          f"labels per class), {len(records)} seeds. Noise x filtering, main effects (means over "
                          f"seeds): {main_effects(grid, records[0]['config']['labels_per_class'])}. Notebook wall "
                          f"time {wall['mean']:.0f} s (min {wall['min']:.0f}, max {wall['max']:.0f}); target <= "
                          f"{TARGETS['notebook_seconds']} s: {'met' if within else 'NOT met'}")
    return 0 if len(records) == len(results) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the two grids, summarise over seeds, check the targets, write the report; exit 1 if a run failed."""
    parser = benchmark_parser(__doc__)  # --seeds: self-training at 50 and distillation at 500 labels per class
    parser.add_argument("--other-seeds", type=int, default=1, help="seeds of the other runs")
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per self-training round")
    parser.add_argument("--student-steps", type=int, default=2000, help="optimizer steps per distilled student")
    parser.add_argument("--as-course", action="store_true",
                        help="instead: the notebook as make course runs it, --seeds seeds (grid and notebook time)")
    args = parser.parse_args(argv)
    use_offline_jpeg_copy(args.source)
    if args.as_course:
        return as_course(args.profile, args.seeds, args.fresh)
    root = runs_root("distillation", args.fresh)
    if checkpoint_path(args.profile).exists():
        from helpers.models import load_checkpoint

        drop_stale_runs(root, load_checkpoint(checkpoint_path(args.profile))[1]["sha256"])
    common = {"PROFILE": [args.profile], "POOL_IMAGES": [0]}

    def runs(method: str, steps: dict, label_counts: list[int], target_labels: int) -> list[dict]:
        """One sweep per label count: every seed at the count whose target is checked, fewer elsewhere."""
        results = []
        for labels in label_counts:
            seeds = list(range(args.seeds if labels == target_labels else args.other_seeds))
            results += run_sweep("08_distillation_self_training", {**common, "METHOD": [method], **steps,
                                                                    "LABELS_PER_CLASS": [labels], "SEED": seeds},
                                 root / method)
        return results

    self_training = runs("self_training", {"SELF_TRAINING_STEPS": [args.steps]}, args.labels, 50)
    distillation = runs("distillation", {"STUDENT_STEPS": [args.student_steps]},
                        [n for n in args.labels if n in (50, 500)] or args.labels[:1], 500)
    records = {name: [r for r in map(read_metrics, results) if r]
               for name, results in (("self_training", self_training), ("distillation", distillation))}
    if not any(records.values()):
        print("No run finished; see the executed notebooks under", root, file=sys.stderr)
        return 1
    grid = summarise_grid(records["self_training"])
    rows = (summarise(records["self_training"], "self-training") + grid
            + summarise(records["distillation"], "distillation"))
    st50, distilled500 = value(rows, 50, "self-training, round 1"), value(rows, 500, "distilled, labelled + pool")
    teacher500 = value(rows, 500, "teacher")
    distilled50, label_only50 = value(rows, 50, "distilled, labelled + pool"), value(rows, 50, "labels only")
    round_seconds = [r["seconds"] for rec in records["self_training"] for r in rec["metrics"]["rounds"]]
    checks = {
        "self-training >= 0.85 at 50 labels/class": None if st50 is None else st50 >= TARGETS["self_training_50"],
        "each round <= 600 s": bool(round_seconds) and max(round_seconds) <= TARGETS["round_seconds"],
        "distilled within 0.03 of teacher at 500": None if None in (distilled500, teacher500)
        else teacher500 - distilled500 <= TARGETS["distilled_gap_500"],
        "distilled >= label-only + 0.05 at 50": None if None in (distilled50, label_only50)
        else distilled50 - label_only50 >= TARGETS["distilled_gain_50"],
    }
    identity = next(rec for group in records.values() for rec in group)["data"]
    keras_steps = next((rec["config"]["sweep_steps"] for rec in records["distillation"]), "-")
    effects = "; ".join(f"{labels} labels/class: {main_effects(grid, labels)}" for labels in sorted(
        {r["labels"] for r in grid}))
    write_benchmark("distillation", rows, COLUMNS,
                    {**identity, "name": data_name(identity)},
                    notes=f"profile {args.profile}, every unlabelled training image in the pool; self-training "
                          f"{args.steps} steps per round, distilled students {args.student_steps} steps (the Keras "
                          f"row is the notebook's side-by-side check at its sweeps' {keras_steps} steps); teachers "
                          "LP-FT on the labelled images. Noise x filtering, main effects (means over seeds; each "
                          f"cell {args.steps} steps, the (strong, filtered) cell is round 1): {effects}. "
                          "Targets: " + "; ".join(
                              f"{name}: {'not run' if ok is None else 'met' if ok else 'NOT met'}"
                              for name, ok in checks.items()))
    return 0 if all(len(group) for group in records.values()) and len(records["self_training"]) == len(
        self_training) and len(records["distillation"]) == len(distillation) else 1


if __name__ == "__main__":
    sys.exit(main())
