"""Student copies of the lessons: solutions and hidden tests removed, outputs kept.

A student copy is what ``nbgrader generate_assignment`` releases for the lesson in a
course directory made by ``mlcourse-grade`` (the same nbgrader preprocessors, in the same
order; see :data:`mlcourse.grading.config.RELEASE_PREPROCESSORS`): every solution region
becomes ``raise NotImplementedError()``, hidden tests disappear, exercise cells are locked
and checksummed, and the outputs of exercise cells are cleared. The lite-mode outputs
of every other cell stay, so a learner sees the expected results before running.

Copies are byte-for-byte reproducible (no timestamps; cell ids are the lesson's), so
:func:`student_copy_problems` can regenerate them in memory and compare them with the
committed files. ``python3 course.py student`` writes them to ``notebooks/student/``.

The worked lessons keep their solutions; :func:`hide_solutions` collapses every solution
cell there (JupyterLab's ``jupyter.source_hidden`` metadata), so that opening a worked
lesson does not show an answer by accident.

Example:
    >>> import nbformat
    >>> from mlcourse.notebooks import NOTEBOOK_DIR
    >>> worked = nbformat.read(NOTEBOOK_DIR / "01_gradient_descent.ipynb", as_version=4)
    >>> copy = make_student_copy(worked)
    >>> any("### BEGIN SOLUTION" in cell.source for cell in copy.cells)
    False
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import SaveCells
from traitlets.config import Config

from mlcourse.course_files import notebooks_dir
from mlcourse.grading.preprocessors import is_exercise_cell
from mlcourse.integrity import atomic_write_text
from mlcourse.notebooks import lesson_paths

SOLUTION_BEGIN = "### BEGIN SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"


def student_copies_dir() -> Path:
    """The student copies' folder, ``notebooks/student/`` of the course folder."""
    return notebooks_dir() / "student"


def graded_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The autograded test cells of a notebook (nbgrader ``grade: true``)."""
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade", False)]


def solution_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The solution cells of a notebook (nbgrader ``solution: true``)."""
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution", False)]


def lessons_with_exercises(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """The numbered lessons in ``folder`` (default ``notebooks/``) with a graded exercise."""
    return [p for p in lesson_paths(folder) if graded_cells(nbformat.read(p, as_version=4))]


def prepare_source(nb: NotebookNode) -> NotebookNode:
    """A copy of a worked lesson ready for nbgrader: exercise cells no longer collapsed.

    The worked lessons collapse their solution cells (:func:`hide_solutions`); a released
    or student copy must show the cell a learner answers in.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        jupyter = cell.metadata.get("jupyter")
        if is_exercise_cell(cell) and isinstance(jupyter, dict):
            jupyter.pop("source_hidden", None)
            jupyter.pop("outputs_hidden", None)
            if not jupyter:
                del cell.metadata["jupyter"]
    return nb


def make_student_copy(nb: NotebookNode) -> NotebookNode:
    """The student copy of a worked lesson (the input is not changed)."""
    from mlcourse.grading.config import RELEASE_PREPROCESSORS

    config = Config()
    nb = prepare_source(nb)
    resources: dict = {"metadata": {"path": "."}, "nbgrader": {}}
    for kind in RELEASE_PREPROCESSORS:
        if kind is SaveCells:  # writes the gradebook; a student copy has none
            continue
        nb, resources = kind(config=config).preprocess(nb, resources)
    return nb


def student_copy_text(nb: NotebookNode) -> str:
    """The exact file content of the student copy of ``nb``."""
    return nbformat.writes(make_student_copy(nb)) + "\n"


def student_copy_problems(
    lessons: str | os.PathLike[str] | None = None,
    student_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """What is missing, stale or left over in ``student_dir``; an empty list means current.

    Args:
        lessons: the worked lessons' folder (default ``notebooks/``).
        student_dir: the student copies' folder (default ``notebooks/student/``).
    """
    student_dir = Path(student_dir) if student_dir is not None else student_copies_dir()
    problems = []
    expected = {p.name: p for p in lessons_with_exercises(lessons)}
    for name, path in expected.items():
        target = student_dir / name
        if not target.exists():
            problems.append(f"{target} is missing")
        elif target.read_text(encoding="utf-8") != student_copy_text(
            nbformat.read(path, as_version=4)
        ):
            problems.append(f"{target} is stale (differs from the copy made from {path.name})")
    if student_dir.is_dir():
        for extra in sorted(student_dir.glob("*.ipynb")):
            if extra.name not in expected:
                problems.append(f"{extra} has no lesson with exercises behind it")
    return problems


def write_student_copies(
    lessons: str | os.PathLike[str] | None = None,
    student_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """(Re)write the student copy of every lesson with exercises.

    Returns ``{file name: "new" | "updated" | "unchanged"}``. Copies of lessons that no
    longer exist are reported by :func:`student_copy_problems`, never deleted here.
    """
    student_dir = Path(student_dir) if student_dir is not None else student_copies_dir()
    status = {}
    for path in lessons_with_exercises(lessons):
        text = student_copy_text(nbformat.read(path, as_version=4))
        target = student_dir / path.name
        if not target.exists():
            status[path.name] = "new"
        elif target.read_text(encoding="utf-8") == text:
            status[path.name] = "unchanged"
            continue
        else:
            status[path.name] = "updated"
        atomic_write_text(target, text, overwrite=True)
    return status


def visible_solutions(nb: NotebookNode) -> list[str]:
    """``grade_id`` of every solution cell that JupyterLab would show expanded."""
    return [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in solution_cells(nb)
        if not cell.metadata.get("jupyter", {}).get("source_hidden", False)
    ]


def hide_solutions(path: str | os.PathLike[str]) -> list[str]:
    """Collapse every solution cell of the worked lesson at ``path``; return their ids.

    Only the cell metadata key ``jupyter.source_hidden`` changes; the file is rewritten
    only when a cell was not collapsed yet.
    """
    nb = nbformat.read(path, as_version=4)
    changed = visible_solutions(nb)
    if not changed:
        return []
    for cell in solution_cells(nb):
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    atomic_write_text(path, nbformat.writes(nb) + "\n", overwrite=True)
    return changed
