"""Lessons executed at most once per test session (papermill, lite mode, CPU), cached.

Test modules import from here (``from lesson_runs import ANOTHER_SEED``); the
``lesson_run`` fixture in conftest.py hands out :func:`run_lesson`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nbformat

from mlcourse.notebooks import NOTEBOOK_DIR, execute_lesson
from mlcourse.results import read_results

# The seed of the "explicit parameters" run; the committed outputs use the default (0).
ANOTHER_SEED = 1


@dataclass(frozen=True)
class ExecutedLesson:
    notebook: nbformat.NotebookNode
    results: dict[str, Any]


_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], ExecutedLesson] = {}


def run_lesson(stem: str, **parameters: Any) -> ExecutedLesson:
    """Execute ``notebooks/<stem>.ipynb`` in lite mode with papermill (cached per session)."""
    parameters.setdefault("lite", True)
    key = (stem, tuple(sorted(parameters.items())))
    if key not in _CACHE:
        nb = execute_lesson(NOTEBOOK_DIR / f"{stem}.ipynb", parameters=parameters)
        _CACHE[key] = ExecutedLesson(notebook=nb, results=read_results(nb))
    return _CACHE[key]
