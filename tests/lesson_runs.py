"""Lessons executed at most once per test session (papermill, lite mode, CPU), cached.

Every lesson runs with seed 0 under each kernel set of :data:`KERNEL_SETS`: the course's
pinned kernels, and the portable kernels standing in for another CPU. The output
comparison (``test_lesson_outputs.py``) and the claims (``test_lesson_NN_*.py``) read the
same runs. Test modules import from here (``from lesson_runs import KERNEL_SETS``); the
``lesson_run`` fixture in conftest.py hands out :func:`run_lesson`.

When a test first asks for a run, conftest.py calls :func:`prefetch` with every run the
selected tests need: the profiling lesson first, one run at a time and with nothing else
running (it measures speed; the other xdist worker waits, see conftest.py), then the others
two kernels at a time on two cores (the lessons pin torch to one thread).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import nbformat

from mlcourse.notebooks import KERNEL_SETS as _KERNEL_SETS
from mlcourse.notebooks import NOTEBOOK_DIR, execute_lesson
from mlcourse.results import read_results

KERNEL_SETS = tuple(_KERNEL_SETS)  # ("pinned", "portable")
# Lessons that measure time: they run first, with nothing beside them.
RUN_ALONE = ("05_profiling",)
PARALLEL_RUNS = 2

RunKey = tuple[str, str, tuple[tuple[str, Any], ...]]


@dataclass(frozen=True)
class ExecutedLesson:
    notebook: nbformat.NotebookNode
    results: dict[str, Any]
    seconds: float


class LessonRunError(RuntimeError):
    """A lesson failed to execute; the message holds papermill's report."""


_CACHE: dict[RunKey, ExecutedLesson | LessonRunError] = {}


def run_key(stem: str, kernels: str = "pinned", **parameters: Any) -> RunKey:
    if kernels not in _KERNEL_SETS:
        raise ValueError(f"kernels={kernels!r}; expected one of {', '.join(KERNEL_SETS)}.")
    return (stem, kernels, tuple(sorted(parameters.items())))


def run_lesson(stem: str, kernels: str = "pinned", **parameters: Any) -> ExecutedLesson:
    """Execute ``notebooks/<stem>.ipynb`` (cached per session).

    Args:
        stem: the lesson, e.g. ``"01_gradient_descent"``.
        kernels: a name in :data:`KERNEL_SETS`.
        parameters: papermill parameters, e.g. ``seed=1``; none (the default) runs the
            lesson as committed (lite mode, seed 0), with no injected cell, so that its
            outputs line up with the committed ones.
    """
    key = run_key(stem, kernels, **parameters)
    if key not in _CACHE:
        prefetch([key], parallel=1)
    outcome = _CACHE[key]
    if isinstance(outcome, LessonRunError):
        raise outcome
    return outcome


def prefetch(keys: Iterable[RunKey], parallel: int = PARALLEL_RUNS) -> None:
    """Execute every run in ``keys`` not cached yet, ``parallel`` at a time, except the
    lessons in :data:`RUN_ALONE`, which run first, one at a time."""
    todo = sorted({k for k in keys if k not in _CACHE})
    shared = [k for k in todo if k[0] not in RUN_ALONE]
    alone = [k for k in todo if k[0] in RUN_ALONE]
    for batch, workers in ((alone, 1), (shared, parallel)):
        if not batch:
            continue
        if workers == 1:
            for key in batch:
                _CACHE[key] = _outcome(key, _execute(key))
            continue
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(batch)), mp_context=context) as pool:
            futures = {key: pool.submit(_execute, key) for key in batch}
            for key, future in futures.items():
                _CACHE[key] = _outcome(key, future.result())


def _execute(key: RunKey) -> tuple[str, float] | str:
    """Run one lesson; returns (notebook JSON, seconds) or an error message."""
    stem, kernels, parameters = key
    start = time.perf_counter()
    try:
        nb = execute_lesson(
            NOTEBOOK_DIR / f"{stem}.ipynb",
            parameters=dict(parameters),
            kernels=_KERNEL_SETS[kernels],
        )
    except Exception as error:  # papermill's report names the failing cell
        return f"{stem} ({kernels} kernels, {dict(parameters)}) failed: {error}"
    return nbformat.writes(nb), time.perf_counter() - start


def _outcome(key: RunKey, result: tuple[str, float] | str) -> ExecutedLesson | LessonRunError:
    if isinstance(result, str):
        return LessonRunError(result)
    nb = nbformat.reads(result[0], as_version=4)
    return ExecutedLesson(notebook=nb, results=read_results(nb), seconds=result[1])
