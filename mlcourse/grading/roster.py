"""The class roster: who is in the class, with the names, e-mails and LMS ids exports need.

A roster is a CSV file with a header row. Only ``student_id`` (the name of the student's
submission folder) is required; the other columns are optional and may come in any order:

=================  ==========================================================
column             used for
=================  ==========================================================
``student_id``     the submission folder's name (letters, digits, ``_.@+-``)
``first_name``     Canvas ``Student``, Moodle ``First name``, grades.csv
``last_name``      Canvas ``Student``, Moodle ``Last name``, grades.csv
``email``          Moodle ``Email address`` (to match users), grades.csv
``lms_user_id``    Canvas ``ID`` (the user's Canvas id)
``sis_user_id``    Canvas ``SIS User ID``
``sis_login_id``   Canvas ``SIS Login ID``
``section``        Canvas ``Section``
``id_number``      Moodle ``ID number`` (to match users)
=================  ==========================================================

``mlcourse-grade roster FILE --course DIR`` checks the file and keeps a copy as
``<course>/roster.csv``; the names, e-mails and LMS ids also go into nbgrader's gradebook.
A student on the roster without a submission is reported as ``missing``.

Example:
    >>> import io
    >>> roster = parse_roster(io.StringIO("student_id,email\\nalice,alice@example.org\\n"))
    >>> roster["alice"].email
    'alice@example.org'
    >>> parse_roster(io.StringIO("student,email\\nalice,a@example.org\\n"))
    Traceback (most recent call last):
    ...
    ValueError: roster: unknown column 'student' (did you mean 'student_id'?); the columns are ...
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from mlcourse.grading.submissions import check_student_id

ROSTER_FILE = "roster.csv"
MAX_ROWS = 100_000


@dataclass(frozen=True)
class Student:
    """One roster row."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    id_number: str = ""

    @property
    def sortable_name(self) -> str:
        """``"Last, First"`` (Canvas's ``Student`` column), or the id without names."""
        if self.last_name or self.first_name:
            return ", ".join(p for p in (self.last_name, self.first_name) if p)
        return self.student_id


COLUMNS = tuple(f.name for f in fields(Student))


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, COLUMNS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_roster(handle: IO[str], source: str = "roster") -> dict[str, Student]:
    """``{student_id: Student}`` from a roster CSV; every problem is reported at once.

    Raises:
        ValueError: unknown or missing columns, bad or repeated student ids, bad e-mails.
    """
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header:
        raise ValueError(
            f"{source}: the file is empty; expected a header row with {list(COLUMNS)}."
        )
    header = [h.strip().lstrip("\ufeff") for h in header]
    problems = [
        f"unknown column {h!r}{_suggest(h)}; the columns are {', '.join(COLUMNS)}"
        for h in header
        if h not in COLUMNS
    ]
    if "student_id" not in header:
        problems.append("the column 'student_id' is required")
    if len(set(header)) != len(header):
        problems.append("a column appears twice")
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems) + ".")
    students: dict[str, Student] = {}
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS:
            raise ValueError(f"{source}: more than {MAX_ROWS} rows.")
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {line} has {len(row)} fields, the header {len(header)}")
            continue
        values = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        try:
            check_student_id(values["student_id"])
        except ValueError as error:
            problems.append(f"line {line}: {error}")
            continue
        if values.get("email") and "@" not in values["email"]:
            problems.append(f"line {line}: email {values['email']!r} has no '@'")
        if values["student_id"] in students:
            problems.append(f"line {line}: student_id {values['student_id']!r} appears twice")
        students[values["student_id"]] = Student(**values)
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems) + ".")
    return students


def read_roster(path: str | os.PathLike[str]) -> dict[str, Student]:
    """The roster in the file ``path`` (see :func:`parse_roster`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"roster file {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return parse_roster(handle, source=str(path))


def roster_text(students: dict[str, Student]) -> str:
    """The CSV text of a roster (all columns, sorted by student id)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for student in sorted(students.values(), key=lambda s: s.student_id):
        writer.writerow([getattr(student, c) for c in COLUMNS])
    return buffer.getvalue()


def install_roster(course: Any, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check the roster at ``path`` and keep it as ``<course>/roster.csv``; put the names,
    e-mails and LMS ids into the gradebook's students.

    Raises:
        FileExistsError: the course has a different roster and ``force`` is false.
    """
    from nbgrader.api import MissingEntry

    from mlcourse.grading.course_directory import nbgrader_environment
    from mlcourse.integrity import atomic_write_text

    students = read_roster(path)
    target = course.root / ROSTER_FILE
    text = roster_text(students)
    if target.exists() and target.read_text(encoding="utf-8") != text and not force:
        raise FileExistsError(
            f"{target} holds a different roster; pass --force to replace it with {str(path)!r}."
        )
    atomic_write_text(target, text, overwrite=True)
    with nbgrader_environment(), course.gradebook() as gb:
        for student in students.values():
            details = {
                "first_name": student.first_name or None,
                "last_name": student.last_name or None,
                "email": student.email or None,
                "lms_user_id": student.lms_user_id or None,
            }
            try:
                gb.find_student(student.student_id)
                gb.update_or_create_student(student.student_id, **details)
            except MissingEntry:
                gb.add_student(student.student_id, **details)
    return target


def course_roster(course: Any) -> dict[str, Student]:
    """The course's roster (``<course>/roster.csv``), or an empty one."""
    path = course.root / ROSTER_FILE
    return read_roster(path) if path.exists() else {}
