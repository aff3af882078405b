"""Take code exactly as a notebook writes it (its py:percent twin), so tests check the lesson's own cells."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_definition(notebook: str, name: str, namespace: dict[str, Any]) -> Any:
    """Define the function or class `name` of notebooks/<notebook>.py in `namespace`, and return it."""
    path = NOTEBOOKS / f"{notebook}.py"
    kinds = (ast.FunctionDef, ast.ClassDef)
    found = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, kinds) and node.name == name]
    assert len(found) == 1, f"{path.name} defines {name} {len(found)} times"
    exec(compile(ast.Module([found[0]], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]
