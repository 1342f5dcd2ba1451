"""Stage 1 of grading: import the submissions of a lesson, check them, note what a student changed.

A submissions folder holds one folder per student with the lesson inside, as an LMS
download or a shared drive usually gives it::

    submissions/
      alice/01_gradient_descent.ipynb
      bob/01_gradient_descent.ipynb

:func:`import_submissions` copies them into the course's ``submitted/`` folder
(nbgrader's layout), refusing to replace a different file already there unless told to.
A submission that cannot be graded is kept with the reason: ``missing`` when no notebook
was handed in, ``ungradable`` when the file is not a notebook, too large, or a symbolic
link (which could point at another student's file). Entries that are not student
folders are listed as ignored.

Example:
    >>> check_student_id("alice")
    'alice'
    >>> check_student_id("../etc")
    Traceback (most recent call last):
    ...
    ValueError: student id '../etc' is not usable; expected letters, digits and _ . @ + - (starting with a letter or digit, at most 100 characters).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from mlcourse.grading.course_directory import Course
from mlcourse.grading.preprocessors import INJECTED_TAG
from mlcourse.parameters_cell import assigned_values, is_parameters_cell

MAX_NOTEBOOK_BYTES = 64 * 2**20  # larger files are not read (and not graded)
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")


@dataclass
class Submission:
    """One student's submission of one lesson.

    Attributes:
        student: the student id (their folder's name).
        notebook: the submission inside the course's ``submitted/`` folder; ``None`` when
            nothing usable was handed in.
        problem: why it cannot be graded; ``None`` when it can.
        missing: whether nothing was handed in (else a file was, but cannot be graded).
        notes: what the student changed that grading undoes (edited tests, ``lite``).
    """

    student: str
    notebook: Path | None = None
    problem: str | None = None
    missing: bool = False
    notes: list[str] = field(default_factory=list)


def check_student_id(student: str) -> str:
    """Return ``student`` if it is a usable nbgrader student id; raise ``ValueError`` otherwise."""
    if not STUDENT_ID.match(student):
        raise ValueError(
            f"student id {student!r} is not usable; expected letters, digits and _ . @ + - "
            "(starting with a letter or digit, at most 100 characters)."
        )
    return student


def read_submission(path: str | os.PathLike[str]) -> NotebookNode:
    """Read a submitted notebook; raise ``ValueError`` saying why it is not one."""
    problem = _file_problem(Path(path))
    if problem is not None:
        raise ValueError(problem)
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # JSON, encoding or schema problems all mean "not a notebook"
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"not a readable notebook ({type(error).__name__}: {message[:200]})"
        ) from None


def _file_problem(path: Path) -> str | None:
    """Why the handed-in file cannot even be copied, or ``None``."""
    if path.is_symlink():
        return "the notebook is a symbolic link, not a file; hand in the file itself"
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return (
            f"the notebook is too large to grade ({path.stat().st_size / 2**20:.1f} MiB; "
            f"the limit is {MAX_NOTEBOOK_BYTES // 2**20} MiB)"
        )
    return None


def _describe(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return "the folder is empty"
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"found: {shown}"


def import_submissions(
    course: Course,
    lesson: str,
    folder: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
) -> tuple[list[Submission], list[str]]:
    """Gather the submissions of ``lesson``, copying them into the course if ``folder`` is given.

    Args:
        course: the course directory.
        lesson: a released lesson.
        folder: ``<student>/<lesson>.ipynb`` folders; ``None`` takes what is already in the
            course's ``submitted/`` folder (e.g. after ``nbgrader collect``).
        force: replace a submission in ``submitted/`` that differs from the one in
            ``folder``. Without it, nothing is copied and ``FileExistsError`` lists them.

    Returns:
        the submissions (sorted by student) and the entries of ``folder`` that were
        ignored, each with the reason.
    """
    ignored: list[str] = []
    found: list[tuple[str, Path | None, str | None]] = []
    missing: set[str] = set()
    if folder is None:
        base = Path(course.coursedir.format_path(course.coursedir.submitted_directory, ".", "."))
        entries = sorted(base.iterdir()) if base.is_dir() else []
    else:
        base = Path(folder)
        if not base.exists():
            raise FileNotFoundError(f"submissions folder {str(base)!r} does not exist.")
        if not base.is_dir():
            raise NotADirectoryError(f"submissions folder {str(base)!r} is not a folder.")
        entries = sorted(base.iterdir())
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if entry.is_symlink():
            ignored.append(f"{entry.name}: a symbolic link, not a student folder")
            continue
        if not entry.is_dir():
            ignored.append(f"{entry.name}: not a folder (expected <student>/{lesson}.ipynb)")
            continue
        try:
            check_student_id(entry.name)
        except ValueError as error:
            ignored.append(f"{entry.name}: {error}")
            continue
        if folder is None:
            notebook = course.notebook("submitted", lesson, entry.name)
            where = f"{entry.name}/{lesson}/"
            listing = notebook.parent
        else:
            notebook = entry / f"{lesson}.ipynb"
            where = f"{entry.name}/"
            listing = entry
        if notebook.is_symlink() or notebook.is_file():
            found.append((entry.name, notebook, _file_problem(notebook)))
            continue
        missing.add(entry.name)
        if listing.is_dir():
            found.append((entry.name, None, f"no {lesson}.ipynb in {where} ({_describe(listing)})"))
        else:
            found.append((entry.name, None, f"nothing submitted for {lesson}"))

    if folder is not None:
        conflicts = []
        for student, notebook, problem in found:
            target = course.notebook("submitted", lesson, student)
            exists = notebook is not None and problem is None and target.exists()
            if exists and target.read_bytes() != notebook.read_bytes():
                conflicts.append(student)
        if conflicts and not force:
            raise FileExistsError(
                f"the course already holds a different submission of {lesson} from "
                f"{', '.join(conflicts)} (in {course.path('submitted', lesson, conflicts[0]).parent.parent}); "
                "pass --force to replace them with the ones in "
                f"{str(base)!r}."
            )
        for index, (student, notebook, problem) in enumerate(found):
            if notebook is None or problem is not None:
                found[index] = (student, None, problem)
                continue
            target = course.notebook("submitted", lesson, student)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != notebook.read_bytes():
                shutil.copyfile(notebook, target)
            found[index] = (student, target, problem)

    submissions = []
    release = nbformat.read(course.notebook("release", lesson), as_version=4)
    for student, notebook, problem in found:
        if problem is not None:
            notebook = None
        submission = Submission(student, notebook, problem, missing=student in missing)
        if notebook is not None:
            try:
                submission.notes = changes_undone(read_submission(notebook), release)
            except ValueError as error:
                submission.problem = str(error)
        submissions.append(submission)
    return submissions, ignored


def changes_undone(submitted: NotebookNode, release: NotebookNode) -> list[str]:
    """What grading will undo in ``submitted``: edited or missing test cells, ``lite``.

    Example:
        >>> from nbformat.v4 import new_code_cell, new_notebook
        >>> params = new_code_cell("lite = False", metadata={"tags": ["parameters"]})
        >>> changes_undone(new_notebook(cells=[params]), new_notebook())
        ['the parameters set `lite = False`; graded in lite mode']
    """
    notes = []
    by_id = {}
    for cell in submitted.cells:
        meta = cell.metadata.get("nbgrader", {})
        if "grade_id" in meta and (meta.get("grade") or meta.get("locked")):
            by_id.setdefault(meta["grade_id"], cell)
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") or (meta.get("locked") and not meta.get("solution"))):
            continue
        grade_id = meta["grade_id"]
        if grade_id not in by_id:
            notes.append(f"test cell {grade_id} was missing; graded with the original")
        elif by_id[grade_id].source != cell.source:
            notes.append(f"test cell {grade_id} was edited; graded with the original")
    for cell in submitted.cells:
        if is_parameters_cell(cell) and INJECTED_TAG not in cell.metadata.get("tags", []):
            notes += [
                f"the parameters set `lite = {value}`; graded in lite mode"
                for value in assigned_values(cell.source, "lite")
                if value != "True"
            ]
    return notes
