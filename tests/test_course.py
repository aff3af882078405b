"""`make course` as a learner runs it (smoke profile): every notebook runs top to bottom, outputs are short and leak
nothing.

This is where `make test` executes the notebooks, once each: one item per notebook, and a failed one shows the cell
that raised and its traceback (what nbval reported, without running every notebook a second time).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTINEL
from notebook_code import notebook_definition

from helpers import course, reporting

LINE_BUDGET = 40  # lines of output one cell may show
LESSONS = [notebook.name for notebook in course.course_notebooks()]

pytestmark = pytest.mark.notebook


def output_text(output: dict) -> str:
    """The text a reader sees of one output (figures and widgets as their plain-text fallback)."""
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return "\n".join(output["traceback"])
    return "".join(output.get("data", {}).get("text/plain", ""))


def failed_cell(executed: Path) -> str:
    """Describe the cell that raised in an executed notebook: its number, its first lines and the traceback's end."""
    if not executed.exists():
        return f"{executed.name} was not written: the kernel did not start or died"
    for number, cell in enumerate(json.loads(executed.read_text())["cells"]):
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                source = "\n".join(("".join(cell["source"])).splitlines()[:6])
                traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output["traceback"]))
                return (f"cell {number} raised {output['ename']}: {output['evalue']}\n--- cell source (start)\n{source}"
                        f"\n--- traceback (end)\n" + "\n".join(traceback.splitlines()[-15:]))
    return "no cell holds an error output; see the course summary"


@pytest.mark.parametrize("lesson", LESSONS)
def test_notebook_runs_top_to_bottom(course_run: Path, lesson: str):
    summary = json.loads((course_run / "notebooks" / "course_summary.json").read_text())
    [result] = [result for result in summary["results"] if result["notebook"] == lesson]
    if result["status"] != "ok":
        pytest.fail(f"{lesson}: {result['status']}\n{failed_cell(Path(result['output']))}", pytrace=False)


def executed_notebooks(outputs: Path) -> list[Path]:
    """Every notebook the course executed: the lessons and the comparison's runs."""
    return sorted(outputs.rglob("*.ipynb"))


def test_every_lesson_and_comparison_run_succeeded(course_run: Path):
    summary = json.loads((course_run / "notebooks" / "course_summary.json").read_text())
    steps = [result["notebook"] for result in summary["results"]]
    assert steps[:3] == ["00_setup_and_data.ipynb", "03_pretrain_source_model.ipynb", "01_concepts.ipynb"]
    assert steps.index("comparison") == steps.index("06_evaluation.ipynb") - 1
    assert all(result["status"] == "ok" for result in summary["results"]), summary["results"]
    assert len(summary["comparison"]) == len(course.comparison_runs("smoke"))
    assert (course_run / "benchmarks" / "course.md").exists() and (course_run / "benchmarks" / "course.json").exists()


def test_outputs_are_short_and_never_show_the_environment(course_run: Path):
    notebooks = executed_notebooks(course_run)
    assert len(notebooks) >= 7 + len(course.comparison_runs("smoke"))
    problems = []
    for path in notebooks:
        for number, cell in enumerate(json.loads(path.read_text())["cells"]):
            outputs = cell.get("outputs", [])
            text = "\n".join(output_text(output) for output in outputs)
            if text.count("\n") + 1 > LINE_BUDGET:
                problems.append(f"{path.name} cell {number}: {text.count(chr(10)) + 1} lines")
            if SENTINEL in json.dumps(outputs):
                problems.append(f"{path.name} cell {number}: shows an environment variable's value")
            if any(output.get("name") == "stderr" for output in outputs):
                problems.append(f"{path.name} cell {number}: stderr: {text[:200]!r}")
    assert not problems, "\n".join(problems)


def test_evaluation_compares_strategies_labels_and_protocols(course_run: Path):
    record = json.loads((course_run / "06_evaluation" / "metrics.json").read_text())["metrics"]
    honest = {(row["strategy"], row["labels"]) for row in record["table"] if row["validation"] == "labelled"}
    plan = course.COMPARISON["smoke"]
    assert {(s, n) for s in plan["torch"] for n in plan["labels"]} <= honest
    assert record["oracle_inflation"], "no pair of honest and oracle runs was compared"
    assert any(row["framework"] == "keras" for row in record["table"])
    pairs = {(row["strategy"], row["labels"], row["validation"]) for row in record["framework_tests"]}
    assert {(s, n, "labelled") for s in plan["keras"] for n in plan["keras_labels"]} <= pairs, \
        "Keras and PyTorch runs of one strategy were not compared paired"
    for row in record["framework_tests"]:
        assert row["ci_low"] <= row["keras - pytorch"] <= row["ci_high"] and 0 <= row["mcnemar_p"] <= 1
    variants = {row["keras"] for row in record["framework_ablation"] if row["strategy"] == "lp_ft"}
    assert variants == {"04's recipe", "one change: no flip at test time", "one change: BatchNorm trained, as in 05",
                        "one change: 05's head, a cross-validated probe", "control: 04's recipe on a fresh data stream",
                        "both training changes: BatchNorm trained and 05's head"}
    assert {row["strategy"] for row in record["table"]} >= {"lp_ft_scratch_recipe"}  # the arm is kept apart
    saved = {(row["strategy"], row["labels"]) for row in record["savings"]}
    assert {(s, n) for s in plan["torch"] if s != "scratch" for n in plan["labels"]} <= saved, \
        "no 'labels scratch needs' reading for a transfer run"
    for row in record["savings"]:
        assert row["scratch_tried"] == max(plan["labels"] + plan["scratch_labels"])
        inf = float("inf")  # None in the record: more labels than scratch was given
        low, estimate, high = (inf if row[name] is None else row[name]
                               for name in ("ci_low", "scratch_labels", "ci_high"))
        assert min(plan["labels"]) <= low <= estimate <= high


def test_the_featured_run_is_calibrated_on_its_own_cross_fitted_predictions(course_run: Path):
    record = json.loads((course_run / "06_evaluation" / "metrics.json").read_text())["metrics"]
    assert record["calibrated_run"] == record["featured_run"]
    folder = Path(record["featured_run"])
    featured = json.loads((folder / "metrics.json").read_text())
    assert featured["config"]["strategy"] == "lp_ft" and featured["config"]["validation"] == "labelled"
    assert featured["config"]["cross_fit"] == course.COMPARISON["smoke"]["cross_fit"]
    held_out = np.load(folder / "predictions.npz")
    assert len(held_out["val_y_true"]) == featured["metrics"]["num_train"]  # each labelled image, predicted once
    assert np.allclose(held_out["val_probs"].sum(1), 1, atol=1e-4) and record["temperature"] > 0


def test_the_evaluation_notebook_reads_the_runs_of_notebooks_08_to_11(course_run: Path, monkeypatch):
    find_runs = notebook_definition("06_evaluation", "find_runs", {"np": np, "reporting": reporting, "Path": Path})
    runs = {run["config"]["strategy"]: run for run in find_runs(course_run)}
    for strategy in ("self_training", "multi_task", "simclr_linear_probe", "zero_shot_dap"):  # 08, 09, 10 and 11
        predictions = runs[strategy]["predictions"]
        accuracy = float((predictions["probs"].argmax(1) == predictions["y_true"]).mean())
        assert accuracy == pytest.approx(runs[strategy]["metrics"]["test_acc"], abs=1e-4), strategy
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(course_run))  # a second course: 06 finds 08's to 11's runs
    assert course.main(["--profile", "smoke", "--only", "06"]) == 0
    table = json.loads((course_run / "06_evaluation" / "metrics.json").read_text())["metrics"]["table"]
    assert {"self_training", "multi_task", "simclr_linear_probe", "zero_shot_dap"} <= {row["strategy"] for row in table}
    assert next(row for row in table if row["strategy"] == "zero_shot_dap")["labels"] == 0  # not "all"


def test_a_failed_comparison_run_is_reported_and_the_evaluation_still_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_OUTPUTS", str(tmp_path))
    too_few = ("05_pytorch_finetuning", {"STRATEGY": "linear_probe", "LABELS_PER_CLASS": 1, "VALIDATION": "labelled",
                                         "SEED": 0})
    monkeypatch.setattr(course, "comparison_runs", lambda profile: [too_few])
    assert course.main(["--profile", "smoke", "--only", "06"]) == 1
    summary = json.loads((tmp_path / "notebooks" / "course_summary.json").read_text())
    assert [r["status"][:6] for r in summary["results"]] == ["FAILED", "ok"]  # comparison failed, 06 ran
    failed = summary["comparison"][0]
    assert failed["status"].startswith("failed") and "VALIDATION='oracle'" in failed["status"]
    assert "comparison run" in capsys.readouterr().out
