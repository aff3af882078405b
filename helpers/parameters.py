"""Notebook parameters checked before anything runs: known names, types and ranges, each problem named with its fix.

Papermill only warns about a parameter the notebook does not declare, and injects any value it is given; a typo
would then run the default silently, and a wrong type fail deep inside a helper. Each notebook calls
`check_parameters(globals(), ...)` right after its parameters cell; sweeps check their grids with the same rules.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from . import runtime
from .data import VALID_DATASETS
from .paths import OUTPUTS_ENV, is_writable, outputs_root
from .profiles import VALID_PROFILES
from .splits import VALIDATION_MODES

CHOICES: dict[str, Sequence[str]] = {"PROFILE": VALID_PROFILES, "DATASET": VALID_DATASETS,
                                     "VALIDATION": VALIDATION_MODES}
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_STEPS = 10**7  # optimizer steps, epochs, episodes: far beyond any run the course makes, finite all the same
# Finite bounds on both sides for every numeric parameter (a value, or each item of a list): a value outside them,
# NaN or infinity included, is refused before any work. tests/test_refused_early.py checks every notebook's numeric
# parameters have an entry here or a list of choices.
LIMITS: dict[str, list[tuple[str, float]]] = {
    "SEED": [(">=", 0), ("<=", MAX_SEED)], "SEEDS": [(">=", 0), ("<=", MAX_SEED)],
    "LR": [(">", 0), ("<=", 10)], "ROTATION_LR": [(">", 0), ("<=", 10)], "INNER_LR": [(">", 0), ("<=", 10)],
    "IMAGE_INNER_LR": [(">", 0), ("<=", 10)], "NUM_EPOCHS": [(">=", 1), ("<=", 10_000)],
    "BATCH_SIZE": [(">=", 1), ("<=", 65_536)], "LABELS_PER_CLASS": [(">=", 0), ("<=", 6_000)],
    "LABEL_COUNTS": [(">=", 1), ("<=", 6_000)], "IMAGE_SIZE": [(">=", 8), ("<=", 512)],
    "EXAMPLES_PER_CLASS": [(">=", 1), ("<=", 1_000)], "IMAGES_PER_TASK": [(">=", 20), ("<=", 60_000)],
    "TEMPERATURE": [(">=", 0.01), ("<=", 100)], "MMD_BANDWIDTH": [(">", 0), ("<=", 1e6)],
    "LABEL_SMOOTHING": [(">=", 0), ("<", 1)], "WEIGHT_DECAY": [(">=", 0), ("<=", 1)],
    "BOOTSTRAP_RESAMPLES": [(">=", 100), ("<=", 1_000_000)], "TENT_STEPS": [(">=", 1), ("<=", 1_000)],
    "ADAPT_STEPS": [(">=", 1), ("<=", MAX_STEPS)], "ALPHA": [(">=", 0), ("<=", 1)], "THRESHOLD": [(">", 0), ("<", 1)],
    "ROUNDS": [(">=", 1), ("<=", 100)], "POOL_IMAGES": [(">=", 0), ("<=", 60_000)],
    "STUDENT_STEPS": [(">=", 1), ("<=", MAX_STEPS)], "SELF_TRAINING_STEPS": [(">=", 1), ("<=", MAX_STEPS)],
    "N_WAY": [(">=", 2), ("<=", 100)], "SHOTS": [(">=", 1), ("<=", 6_000)], "EPISODES": [(">=", 2), ("<=", MAX_STEPS)],
    "QUERY": [(">=", 1), ("<=", 6_000)], "TASK_WEIGHT": [(">=", 0), ("<=", 1)], "BLOCKS": [(">=", 0), ("<=", 4)],
    "SINE_STEPS": [(">=", 1), ("<=", MAX_STEPS)], "SINE_TASKS": [(">=", 1), ("<=", 10_000)],
    "SINE_SHOTS": [(">=", 1), ("<=", 1_000)], "FINE_TUNE_STEPS": [(">=", 1), ("<=", 10_000)],
    "K_SHOT": [(">=", 1), ("<=", 6_000)], "META_STEPS": [(">=", 1), ("<=", MAX_STEPS)],
    "TASKS_PER_STEP": [(">=", 1), ("<=", 1_000)], "INNER_STEPS": [(">=", 1), ("<=", 100)],
    "TEST_INNER_STEPS": [(">=", 1), ("<=", 1_000)], "PRETRAIN_STEPS": [(">=", 1), ("<=", MAX_STEPS)],
    "ROTATION_STEPS": [(">=", 1), ("<=", MAX_STEPS)], "SHORT_STEPS": [(">=", 1), ("<=", MAX_STEPS)],
}
# What a diverging run (a non-finite loss) is told to look at: the notebook's step sizes and temperature.
DIVERGENCE_SUSPECTS = ("LR", "ROTATION_LR", "INNER_LR", "IMAGE_INNER_LR", "TEMPERATURE", "WEIGHT_DECAY")
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool), "list": lambda v: isinstance(v, list),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


class ParameterError(ValueError):
    """A notebook parameter is unknown, of the wrong type or out of range; the message lists every problem."""


def type_name(annotation: Any) -> str:
    """Spell an annotation as papermill does: `int`, `Optional[int]`, `Optional[list]`."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def value_problem(name: str, value: Any, declared_type: str, choices: Sequence[Any] | None = None) -> str | None:
    """Say what is wrong with one parameter value (type, choice, range), or None when it is fine."""
    optional = declared_type.startswith("Optional[")
    base = declared_type[len("Optional["):-1] if optional else declared_type
    if value is None:
        return None if optional else f"{name} must not be None: give a {base}"
    if not TYPE_CHECKS.get(base, lambda v: True)(value):
        article = "an" if base[0] in "aeiou" else "a"
        return f"{name}={value!r} must be {article} {base}" + (" or None" if optional else "")
    choices = choices or CHOICES.get(name)
    if choices and value not in choices:
        return f"{name}={value!r} is not one of: {', '.join(map(str, choices))}"
    if isinstance(value, list) and not value:
        return f"{name}=[] is empty: give at least one value" + (", or None for the profile's" if optional else "")
    if name not in LIMITS:
        return None
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return f"{name}={value!r} must hold numbers only"
        if not math.isfinite(item):
            return f"{name}={value!r} is not a finite number: give one {_range(name)}"
        if not all(COMPARE[op](item, bound) for op, bound in LIMITS[name]):
            return f"{name}={value!r} is out of range: it must be {_range(name)}"
    return None


def _range(name: str) -> str:
    """Spell a parameter's bounds for a message: `> 0 and <= 10`."""
    return " and ".join(f"{op} {bound:g}" if isinstance(bound, float) else f"{op} {bound}"
                        for op, bound in LIMITS[name])


def image_problem(value: str) -> str | None:
    """Say why IMAGE_PATH cannot be read as a photo (missing, a folder, not an image), or None when it can."""
    path = Path(value).expanduser()
    if not path.is_file():
        return f"IMAGE_PATH={value!r}: no such file; give an existing JPEG or PNG file, or None to use a test image"
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        return f"IMAGE_PATH={value!r} is not an image Pillow can read ({error}); give a JPEG or PNG file"
    return None


def outputs_problem(output_dir: str | None) -> str | None:
    """Say why the run's record could not be written (a file, or a folder it may not write), or None when it can."""
    try:
        folder = Path(output_dir).expanduser() if output_dir else outputs_root()
    except OSError as error:  # outputs_root names the variable and the fix
        return str(error)
    where = f"OUTPUT_DIR={output_dir!r}" if output_dir else f"{OUTPUTS_ENV} ({folder})"
    if folder.exists() and not folder.is_dir():
        return f"{where} is a file, not a folder: point it at a folder (it is created if missing)"
    if not is_writable(folder):
        return f"{where} cannot be written: point it at a folder you can write"
    return None


def place_problems(namespace: Mapping[str, Any]) -> list[str]:
    """Check, before any work, the places a run reads and writes last: IMAGE_PATH and the run's record folder."""
    found = [outputs_problem(namespace.get("OUTPUT_DIR"))]
    if isinstance(namespace.get("IMAGE_PATH"), str):
        found.append(image_problem(namespace["IMAGE_PATH"]))
    return [problem for problem in found if problem]


def check_parameters(namespace: Mapping[str, Any], choices: Mapping[str, Sequence[Any]] | None = None) -> None:
    """Refuse unknown parameters, and values of the wrong type, outside their choices or out of range.

    Unknown means injected by papermill but not declared (annotated) in the parameters cell. The places a run needs
    at its end (its record folder, IMAGE_PATH) are checked too, so no training is lost to a bad path. All problems
    are listed in one error.
    """
    declared = {name: type_name(annotation) for name, annotation in namespace.get("__annotations__", {}).items()}
    problems = []
    for name in namespace:
        if name.isupper() and not name.startswith("_") and name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            problems.append(f"unknown parameter {name}" + (f" (did you mean {close[0]}?)" if close else "")
                            + f"; this notebook takes: {', '.join(declared)}")
    for name, declared_type in declared.items():
        problem = value_problem(name, namespace.get(name), declared_type, (choices or {}).get(name))
        if problem:
            problems.append(problem)
    problems += place_problems(namespace)
    runtime.name_divergence_suspects({name: namespace.get(name) for name in DIVERGENCE_SUSPECTS if name in declared})
    if problems:
        raise ParameterError("Invalid parameters (fix them with papermill -p NAME VALUE, or in the parameters cell):"
                             "\n  " + "\n  ".join(problems))
