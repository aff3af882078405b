"""`helpers` imports in one direction: no module reaches, directly or through others, back to itself.

Imports inside functions count too: a lazy import only hides a circle until the day someone moves it.
"""

from __future__ import annotations

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def imported_helpers(path: Path) -> set[str]:
    """Name the helpers modules one module imports anywhere in its code (`from .x import`, `from . import x`)."""
    modules = {p.stem for p in HELPERS.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("helpers.")}
    return (found & modules) - {path.stem}


def import_graph() -> dict[str, set[str]]:
    """Map each helpers module to the helpers modules it imports."""
    return {path.stem: imported_helpers(path) for path in sorted(HELPERS.glob("*.py")) if path.stem != "__init__"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Find one import circle through each module that is on one (depth-first search)."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        """Walk the imports from `module`, reporting a return to a module already on the path."""
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_the_cycle_finder_finds_a_circle_and_passes_a_line():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"course": {"sweep"}, "sweep": {"cluster", "runner"}, "cluster": {"runner"}, "runner": set()}) == []


def test_helpers_import_in_one_direction():
    found = cycles(import_graph())
    assert not found, "import circles among helpers modules:\n" + "\n".join(" -> ".join(c) for c in found)


def test_orchestration_reads_top_down():
    graph = import_graph()
    assert "sweep" not in graph["cluster"] and "course" not in graph["sweep"] and "course" not in graph["models"]
    assert not graph["runner"] & {"course", "sweep", "cluster"}
