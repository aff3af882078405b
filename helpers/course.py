"""Run the whole course (`make course`): every notebook with papermill into outputs/notebooks/, then the comparison.

Notebook 03 runs right after 00, because 01, 02, 04 and 05 build on its source model. Before 06, a small built-in
comparison (PyTorch strategies at several label counts, honest and oracle validation, and the Keras pair) runs into
outputs/runs/comparison/, reusing runs that exist, so notebook 06 always has strategies x labels to evaluate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from .paths import PROFILE_ENV, absolute_path_variables, outputs_root
from .profiles import VALID_PROFILES, choose_profile
from .reporting import save_json, write_benchmark
from .runner import NOTEBOOKS_DIR, execute
from .runs import THREAD_VARIABLES, run_name, run_one, write_plan

SOURCE_MODEL_NOTEBOOK = "03_pretrain_source_model"
EVALUATION_NOTEBOOK = "06_evaluation"
# What the comparison runs, per profile: notebook 05 over strategies x labels x validation, notebook 04's pair,
# scratch at more labels ("scratch_labels", on every seed), so that 06 can say how many labels scratch needs to equal
# transfer with an interval over seeds and test images, and
# the honest PyTorch runs again on more seeds ("repeat_seeds"), so that 06 can show the seed spread of the key rows;
# the honest LP-FT run with the most labels (first seed) makes cross-fitted held-out predictions ("cross_fit" folds),
# so that 06 calibrates the model it features on its own labelled images; LP-FT runs again with scratch's recipe
# ("scratch_recipe_labels", on every seed), the arm that shows what scratch's larger budget of choices buys transfer;
# "workers" runs go at once.
COMPARISON: dict[str, dict[str, Any]] = {
    "smoke": {"labels": [5, 10], "seeds": [0], "torch": ["scratch", "linear_probe", "lp_ft"],
              "oracle": ["linear_probe"], "keras": ["linear_probe", "lp_ft"], "keras_labels": [10],
              "scratch_labels": [20], "repeat_seeds": [], "cross_fit": 2, "scratch_recipe_labels": [10],
              "workers": 2},
    "cpu": {"labels": [10, 50], "seeds": [0], "torch": ["scratch", "linear_probe", "finetune_full", "lp_ft"],
            "oracle": ["linear_probe", "lp_ft"], "keras": ["linear_probe", "lp_ft"], "keras_labels": [50],
            "scratch_labels": [150, 500], "repeat_seeds": [1, 2], "cross_fit": 3, "scratch_recipe_labels": [10, 50],
            "workers": 2},
    "full": {"labels": [10, 50, 500], "seeds": [0, 1, 2],
             "torch": ["scratch", "linear_probe", "finetune_full", "lp_ft"], "oracle": ["linear_probe", "lp_ft"],
             "keras": ["linear_probe", "lp_ft"], "keras_labels": [50, 500], "scratch_labels": [2000],
             "repeat_seeds": [], "cross_fit": 3, "scratch_recipe_labels": [10, 50, 500], "workers": 1},
}


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """List the notebooks in course order (03, the source model, right after 00), or those matching `only`."""
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"), key=lambda nb: (nb.stem != "00_setup_and_data",
                                                                                  nb.stem != SOURCE_MODEL_NOTEBOOK,
                                                                                  nb.name))
    if only:
        chosen = [nb for nb in notebooks if nb.name.startswith(tuple(only))]
        if not chosen:
            raise SystemExit(f"No notebook matches {only}; notebooks: {', '.join(nb.stem for nb in notebooks)}")
        return chosen
    return notebooks


def course_data_identity() -> dict[str, Any]:
    """Name the data the course ran on, from the newest run record that says it (the course reads one dataset)."""
    records = sorted(outputs_root().rglob("metrics.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    for path in records:
        try:
            found = json.loads(path.read_text()).get("data", {})
        except (OSError, ValueError):
            continue
        if found.get("dataset"):
            return {name: found[name] for name in ("dataset", "source", "sha256") if name in found}
    return {"dataset": "unknown"}


def comparison_runs(profile: str) -> list[tuple[str, dict[str, Any]]]:
    """List the comparison's runs as (notebook, parameters), PyTorch first, all on the course model."""
    plan = COMPARISON[profile]
    runs = []
    for seed, labels in itertools.product(plan["seeds"], plan["labels"]):
        for strategy in plan["torch"]:
            for validation in ["labelled"] + (["oracle"] if strategy in plan["oracle"] else []):
                featured = (strategy, validation, seed, labels) == ("lp_ft", "labelled", plan["seeds"][0],
                                                                    max(plan["labels"]))
                runs.append(("05_pytorch_finetuning", {"STRATEGY": strategy, "LABELS_PER_CLASS": labels,
                                                       "VALIDATION": validation, "SEED": seed,
                                                       **({"CROSS_FIT": plan["cross_fit"]} if featured else {})}))
    for seed, labels in itertools.product(plan["seeds"] + plan["repeat_seeds"], plan["scratch_labels"]):
        runs.append(("05_pytorch_finetuning", {"STRATEGY": "scratch", "LABELS_PER_CLASS": labels,
                                               "VALIDATION": "labelled", "SEED": seed}))
    for seed, labels, strategy in itertools.product(plan["repeat_seeds"], plan["labels"], plan["torch"]):
        runs.append(("05_pytorch_finetuning", {"STRATEGY": strategy, "LABELS_PER_CLASS": labels,
                                               "VALIDATION": "labelled", "SEED": seed}))
    for seed, labels in itertools.product(plan["seeds"] + plan["repeat_seeds"], plan["scratch_recipe_labels"]):
        runs.append(("05_pytorch_finetuning", {"STRATEGY": "lp_ft", "LABELS_PER_CLASS": labels,
                                               "VALIDATION": "labelled", "SEED": seed, "RECIPE": "scratch"}))
    for seed, labels, strategy in itertools.product(plan["seeds"], plan["keras_labels"], plan["keras"]):
        runs.append(("04_keras_finetuning", {"STRATEGY": strategy, "LABELS_PER_CLASS": labels, "SEED": seed,
                                             "SHOW_BN_PITFALL": strategy == "lp_ft",  # 06's one-change variants
                                             "PROBE_HEAD_VARIANT": strategy == "lp_ft",
                                             "CONTROL_ARMS": strategy == "lp_ft", "VGG16_BASELINE": False}))
    return runs


@contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """Give the kernels started inside the block `threads` CPU threads each (torch and BLAS libraries read these)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_comparison(profile: str, workers: int = 1) -> list[dict[str, Any]]:
    """Run (or reuse) the comparison's runs into outputs/runs/comparison/, `workers` at a time; never raise.

    The runs are independent, and a small network on 2 cores keeps neither core busy alone: two kernels with one
    thread each finish the comparison sooner than one with two (on a CPU; each run's own seconds then count a shared
    machine). A failed run is reported, not raised.
    """
    root = outputs_root() / "runs" / "comparison"
    planned = [(notebook, {"PROFILE": profile, "WEIGHTS": "course", **params})
               for notebook, params in comparison_runs(profile)]
    write_plan(root, [root / notebook / run_name(params) for notebook, params in planned])  # 06 reads only these
    results: list[dict[str, Any] | None] = [None] * len(planned)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with kernel_threads(threads) if workers > 1 else nullcontext(), ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(run_one, NOTEBOOKS_DIR / f"{notebook}.ipynb", params,
                               root / notebook / run_name(params)): index
                   for index, (notebook, params) in enumerate(planned)}
        for done, future in enumerate(as_completed(futures), 1):
            index = futures[future]
            notebook, params = planned[index]
            results[index] = {**future.result(), "notebook": notebook}
            print(f"    [{done}/{len(planned)}] {notebook[:2]} {run_name(params)}: {results[index]['status']} "
                  f"({results[index]['seconds']} s)", flush=True)
    return [result for result in results if result is not None]


def main(argv: list[str] | None = None) -> int:
    """Execute the course's notebooks, carrying on past a failure; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default=os.environ.get(PROFILE_ENV, "auto"), choices=VALID_PROFILES,
                        help="how much work each notebook does (default: auto, or $WORKBOOK_PROFILE)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 03")
    parser.add_argument("--no-comparison", action="store_true", help="skip the built-in comparison before 06")
    parser.add_argument("--workers", type=int, choices=range(1, 9), metavar="1-8",
                        help="comparison runs at once (default: the profile's; 2 on a CPU, 1 on a GPU)")
    args = parser.parse_args(argv)
    absolute_path_variables()  # kernels run in notebooks/: a relative path must mean what it meant here
    folder = outputs_root() / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    profile = choose_profile(args.profile)
    results, comparison = [], []
    course_start = time.perf_counter()
    for notebook in course_notebooks(args.only):
        if notebook.stem == EVALUATION_NOTEBOOK and not args.no_comparison:
            print(f"=== comparison (profile {profile}) -> {outputs_root() / 'runs' / 'comparison'}", flush=True)
            start = time.perf_counter()
            comparison = run_comparison(profile, args.workers or COMPARISON[profile]["workers"])
            failed_runs = [run for run in comparison if run["status"].startswith("failed")]
            status = "ok" if not failed_runs else f"FAILED: {len(failed_runs)} of {len(comparison)} runs"
            results.append({"notebook": "comparison", "status": status,
                            "seconds": round(time.perf_counter() - start, 1), "output": str(folder)})
        output = folder / notebook.name
        print(f"=== {notebook.name} (profile {args.profile}) -> {output}", flush=True)
        start = time.perf_counter()
        try:
            execute(notebook, output, {"PROFILE": args.profile})
            status = "ok"
        except Exception as error:  # papermill raises PapermillExecutionError and kernel errors alike
            status = f"FAILED: {type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
        seconds = round(time.perf_counter() - start, 1)
        results.append({"notebook": notebook.name, "status": status, "seconds": seconds, "output": str(output)})
        print(f"    {status} in {seconds} s", flush=True)
    total = round(time.perf_counter() - course_start, 1)
    save_json(folder / "course_summary.json", {"profile": profile, "profile_requested": args.profile,
                                                "total_seconds": total, "results": results, "comparison": comparison})
    write_benchmark("course", [*results, {"notebook": "total", "status": "", "seconds": total}],
                    ["notebook", "status", "seconds"], course_data_identity(),
                    notes=f"`make course` wall time per notebook, profile {profile}.")
    failed = [r for r in results if r["status"] != "ok"]
    for result in failed:
        print(f"{result['notebook']}: {result['status']}\n    executed notebook: {result['output']}")
    for run in comparison:
        if run["status"].startswith("failed"):
            print(f"comparison run {run['folder']}: {run['status']}\n    executed notebook: {run['executed_notebook']}")
    print(f"{len(results) - len(failed)} of {len(results)} steps ran in {total:.0f} s; outputs in {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
