"""Shared fixtures: lessons are executed at most once per test session and cached."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from mlcourse.notebooks import NOTEBOOK_DIR, execute_lesson
from mlcourse.results import read_results

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.fixture(scope="session")
def lesson_run():
    """``lesson_run("01_gradient_descent", seed=1)`` -> :class:`ExecutedLesson`."""
    return run_lesson
