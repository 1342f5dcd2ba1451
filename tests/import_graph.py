"""The import graph of ``mlcourse/``, read from the source (no module is imported), for the
architecture tests (tests/test_architecture.py, tests/test_training_package.py).

Example:
    >>> graph = import_graph()
    >>> "mlcourse.arguments" in graph["mlcourse.datasets"]
    True
    >>> find_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlcourse"


def module_name(path: Path) -> str:
    """``mlcourse/training/cli.py`` -> ``mlcourse.training.cli``; a package's ``__init__``
    is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of ``mlcourse/`` by name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_mlcourse_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at the top or inside a function
    (``from mlcourse import datasets`` counts as importing ``mlcourse.datasets``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Module name -> the ``mlcourse`` modules it imports (itself left out)."""
    found = modules()
    return {
        name: imported_mlcourse_modules(path, set(found)) - {name} for name, path in found.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), or ``None``."""
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = "open"
        for child in sorted(graph.get(name, ())):
            if state.get(child) == "open":  # on the trail: the way back to it is a cycle
                return [*trail[trail.index(child) :], child]
            if child not in state and (cycle := visit(child, [*trail, child])):
                return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None
