"""Synthetic submissions: a released lesson answered fully, partly or not at all.

For dry runs of grading (before a real class hands anything in), the tests and
``benchmarks/grading.py``. An answer is the worked lesson's solution cell, copied into
the released notebook; everything else stays as released.

Example:
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> meta = {"nbgrader": {"grade_id": "ex1", "solution": True}}
    >>> release = new_notebook(cells=[new_code_cell("raise NotImplementedError()", metadata=meta)])
    >>> source = new_notebook(cells=[new_code_cell("answer = 42", metadata=meta)])
    >>> answered_copy(release, source, ["ex1"]).cells[0].source
    'answer = 42'
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from mlcourse.arguments import check_int, check_keys
from mlcourse.grading.course_directory import Course
from mlcourse.grading.student import solution_cells
from mlcourse.integrity import atomic_write_text


def answered_copy(
    release: NotebookNode, source: NotebookNode, answered: Iterable[str]
) -> NotebookNode:
    """``release`` with the solution cells named in ``answered`` filled in from ``source``."""
    answered = list(answered)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution_cells(source)}
    check_keys("solution cells", answered, solutions)
    nb = copy.deepcopy(release)
    for cell in solution_cells(nb):
        if cell.metadata["nbgrader"]["grade_id"] in answered:
            cell.source = solutions[cell.metadata["nbgrader"]["grade_id"]]
    return nb


def write_class(
    course: Course, lesson: str, folder: str | os.PathLike[str], students: int
) -> dict[str, float]:
    """Write ``folder/student-NN/<lesson>.ipynb`` for a class of ``students``.

    Students take turns at answering everything, nothing, and every exercise but one
    (each a different one). Returns the score each should get, assuming the worked
    solutions pass every test (``{student: points}``).
    """
    check_int("students", students, min_value=1)
    release = nbformat.read(course.notebook("release", lesson), as_version=4)
    source = nbformat.read(course.notebook("source", lesson), as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in solution_cells(source)]
    points = _points_per_solution(source)
    expected = {}
    for number in range(students):
        kind = number % 3
        if kind == 0:
            answered = ids
        elif kind == 1:
            answered = []
        else:
            skipped = ids[(number // 3) % len(ids)]
            answered = [i for i in ids if i != skipped]
        student = f"student-{number:02d}"
        nb = answered_copy(release, source, answered)
        atomic_write_text(
            Path(folder) / student / f"{lesson}.ipynb", nbformat.writes(nb) + "\n", overwrite=True
        )
        expected[student] = float(sum(points[i] for i in answered))
    return expected


def _points_per_solution(source: NotebookNode) -> dict[str, float]:
    """Points of the test cells that follow each solution cell (up to the next solution)."""
    points: dict[str, float] = {}
    current = None
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            current = meta["grade_id"]
            points[current] = 0.0
        elif meta.get("grade") and current is not None:
            points[current] += float(meta.get("points", 0))
    return points
