"""A sentence that quotes a run is printed by the run: the notebooks' prose states no single run's result.

Retraining the source model changes every number downstream, and a number typed into a markdown cell stays behind,
wrong. So a markdown sentence that speaks of a run ("in our run", "we measured", "reached ...") may hold a decimal
result only when it is a figure of a cited paper (the sentence names its authors: "et al." or a year in brackets)
or appears in the README's benchmark records (3 seeds, data named). Settings (learning rates, ε, α, thresholds) are
not results and are written next to their name (`LR = 0.1`, "ε = 0.2", "rate 0.01").
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

PROJECT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((PROJECT / "notebooks").glob("[0-9][0-9]_*.py"))
RUN_WORDS = re.compile(r"\b(our runs?|this run|in (?:the|a) run|we (?:measured|found|got)|measured|came out|"
                       r"reached|scored|ended (?:at|up)|beat|gained|lost)\b", re.I)
CITED = re.compile(r"\bet al\.|\(\d{4}\)|\b(?:19|20)\d{2}\b.*\b(?:report|found|show)", re.I)
NUMBER = re.compile(r"(?<![\w.=`$])[-+−]?\d*\.\d+%?(?![\w.])|(?<![\w.])\d+(?:\.\d+)?%")
SETTING = re.compile(r"(?:[=≈]|\b(?:rate|rates|LR|lr|α|β|ε|T|C|threshold|weight|momentum|decay|version|Keras|"
                     r"TensorFlow|skada|chance is|chance|arXiv:))\s*[`(,:]?\s*$")
DURATION = re.compile(r"^\s*(?:s|min|minutes?|seconds?|hours?)\b")  # time estimates depend on the machine: not results


def benchmark_numbers() -> set[str]:
    """Collect every decimal in the README, which holds the course's 3-seed benchmark records."""
    return {match.lstrip("+-−") for match in NUMBER.findall((PROJECT / "README.md").read_text())}


def sentences(text: str) -> list[str]:
    """Split prose into sentences (keeping decimals whole)."""
    flat = " ".join(text.split())
    return [s for s in re.split(r"(?<=[.!?:;])\s+(?=[A-Z0-9(*`])", flat) if s]


def quoted_results(text: str, records: set[str]) -> list[str]:
    """Return the run results a markdown cell states that no record or paper backs, as 'number in sentence'.

    A cell that speaks of a run anywhere is read whole: a list of results often follows the sentence that says
    "in our run".
    """
    found = []
    if not RUN_WORDS.search(text):  # a cell that speaks of no run states settings, facts and papers' figures
        return found
    for sentence in sentences(text):
        if CITED.search(sentence):
            continue
        for match in NUMBER.finditer(sentence):
            number = match.group(0).lstrip("+-−")
            if SETTING.search(sentence[:match.start()]) or DURATION.match(sentence[match.end():]) or number in records:
                continue
            found.append(f"{match.group(0)} in: {sentence[:160]}")
    return found


def test_the_rule_catches_a_quoted_run_and_passes_settings_papers_and_records():
    records = {"0.795"}
    assert quoted_results("In our run LP-FT reached 0.832 at 50 labels.", records) == [
        "0.832 in: In our run LP-FT reached 0.832 at 50 labels."]
    assert quoted_results("We measured it with `LR = 0.1` and ε = 0.2 over 3 seeds.", records) == []
    assert quoted_results("Kumar et al. (2022) measured +10 points, 0.95 against 0.85.", records) == []
    assert quoted_results("Over 3 seeds the probe reached 0.795 (README).", records) == []
    assert quoted_results("Chance is 0.2 for five classes.", records) == []
    assert quoted_results("In our run:\n1. BnB stayed below (0.838, 0.849).", records)[0].startswith("0.838 in: BnB")
    assert quoted_results("In our run it took 1 to 2.5 minutes at a learning rate, 0.02.", records) == []
    assert quoted_results("BnB stayed below (0.838, 0.849).", records) == []  # no run spoken of: not a result


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_quotes_no_single_run(path: Path):
    records = benchmark_numbers()
    stale = [line for cell in jupytext.read(path).cells if cell.cell_type == "markdown"
             for line in quoted_results(cell.source, records)]
    assert not stale, (f"{path.name}: prose states run results that the next run will contradict; print them from "
                       "the run's variables in a code cell instead:\n  " + "\n  ".join(stale))
