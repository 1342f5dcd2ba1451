"""Stage 6 of grading: grades an LMS can import, never a silent 0.

Input: the course (its gradebook, ``reports/<lesson>.csv`` and ``roster.csv``). One row
per student and lesson joins

- the gradebook's scores (nbgrader's; manual grades from the formgrader included), per
  question and in total, with the late penalty;
- the grading report's status and reason (:mod:`mlcourse.grading.report`): ``graded``,
  ``late``, ``ungradable`` or ``missing``;
- the roster's names, e-mails and LMS ids (:mod:`mlcourse.grading.roster`); a student on
  the roster without a submission is ``missing``.

An ungradable or missing submission has an empty score, with its reason, in every format.
Three formats:

``csv`` (``grades.csv``)
    ``student_id, first_name, last_name, email, lms_user_id, lesson, status, reason,
    score, max_score, late_penalty, submitted_at, notes``, then ``<lesson>:<question>``
    for every question's score.
``canvas``
    The layout of Canvas's own gradebook export, which its gradebook import reads:
    ``Student, ID, SIS User ID, SIS Login ID, Section``, then one column per lesson, and a
    ``Points Possible`` row first. Canvas matches students by ``ID`` or the SIS ids.
``moodle``
    A CSV for Moodle's grade import: ``First name, Last name, ID number, Email address``,
    then one column per lesson; map ``Email address`` (or ``ID number``) to the user and
    each lesson column to its grade item when importing.

Example:
    >>> format_score(2.0), format_score(None)
    ('2', '')
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlcourse.arguments import check_choice
from mlcourse.grading.course_directory import Course, nbgrader_environment
from mlcourse.grading.report import GRADED, LATE, MISSING, UNGRADABLE, read_report, safe_cell
from mlcourse.grading.roster import Student, course_roster
from mlcourse.integrity import atomic_write_text

FORMATS = ("csv", "canvas", "moodle")
CSV_FIELDS = (
    "student_id",
    "first_name",
    "last_name",
    "email",
    "lms_user_id",
    "lesson",
    "status",
    "reason",
    "score",
    "max_score",
    "late_penalty",
    "submitted_at",
    "notes",
)
CANVAS_FIELDS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_FIELDS = ("First name", "Last name", "ID number", "Email address")


def format_score(value: float | None) -> str:
    """A score as the exports write it: ``""`` for none (never 0)."""
    return "" if value is None else f"{value:g}"


@dataclass
class GradeRow:
    """One student's result for one lesson, as every export format reads it."""

    student: Student
    lesson: str
    status: str
    reason: str = ""
    score: float | None = None
    max_score: float = 0.0
    late_penalty: float = 0.0
    submitted_at: str = ""
    notes: list[str] = field(default_factory=list)
    questions: dict[str, float | None] = field(default_factory=dict)


def _gradebook_rows(course: Course, lessons: list[str]) -> tuple[dict, dict, dict]:
    """Scores, max scores and question lists from nbgrader's gradebook."""
    results: dict[tuple[str, str], dict] = {}
    max_scores: dict[str, float] = {}
    questions: dict[str, list[str]] = {}
    with nbgrader_environment(), course.gradebook() as gb:
        for lesson in lessons:
            assignment = gb.find_assignment(lesson)
            max_scores[lesson] = float(assignment.max_score)
            notebook = gb.find_notebook(lesson, lesson)
            order = {c.name: i for i, c in enumerate(notebook.source_cells)}
            questions[lesson] = sorted(
                (c.name for c in notebook.grade_cells), key=lambda n: order.get(n, 0)
            )
            for submission in assignment.submissions:
                penalty = float(submission.late_submission_penalty or 0.0)
                results[(submission.student_id, lesson)] = {
                    "score": max(0.0, float(submission.score) - penalty),
                    "penalty": penalty,
                    "late": bool(
                        submission.total_seconds_late and submission.total_seconds_late > 0
                    ),
                    "timestamp": str(submission.timestamp or ""),
                    "questions": {
                        g.name: (None if g.score is None else float(g.score))
                        for nb in submission.notebooks
                        for g in nb.grades
                    },
                }
        names = {
            s.id: Student(
                s.id, s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or ""
            )
            for s in gb.students
        }
    return results, max_scores, {"questions": questions, "students": names}


def grade_rows(course: Course, lessons: list[str] | None = None) -> list[GradeRow]:
    """Every (student, lesson) row of the course (see the module docstring)."""
    lessons = course.released_lessons() if lessons is None else lessons
    for lesson in lessons:
        course.check_released(lesson)
    results, max_scores, extra = _gradebook_rows(course, lessons)
    roster = course_roster(course)
    students = {**extra["students"], **roster}
    rows = []
    for lesson in lessons:
        report = read_report(course.root / "reports" / f"{lesson}.csv")
        everyone = sorted(set(students) | set(report) | {s for s, les in results if les == lesson})
        for student_id in everyone:
            student = students.get(student_id, Student(student_id))
            rows.append(
                _row(
                    student,
                    lesson,
                    report.get(student_id),
                    results.get((student_id, lesson)),
                    max_scores[lesson],
                )
            )
    return rows


def _row(
    student: Student, lesson: str, reported: dict | None, stored: dict | None, max_score: float
) -> GradeRow:
    row = GradeRow(student, lesson, MISSING, "nothing submitted", max_score=max_score)
    if reported is not None:
        row.status, row.reason = reported["status"], reported["reason"]
        row.notes = [n for n in reported["notes"].split("; ") if n]
    if stored is not None:
        row.submitted_at = stored["timestamp"]
        if reported is None:  # graded by plain nbgrader (the formgrader, autograde)
            row.status, row.reason = GRADED, ""
    if row.status in (GRADED, LATE) and stored is not None:
        row.score, row.late_penalty, row.questions = (
            stored["score"],
            stored["penalty"],
            stored["questions"],
        )
        row.status = LATE if stored["late"] else GRADED
        written = reported.get("score") if reported is not None else ""
        if written and abs(float(written) - row.score) > 1e-9:
            row.notes.append(
                f"score changed in the gradebook after grading: {written} -> {row.score:g}"
            )
    elif row.status in (GRADED, LATE):  # the report says graded but the gradebook lost it
        row.status, row.reason = UNGRADABLE, "graded, but the gradebook has no score for it"
    return row


def _table(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_text(rows: list[GradeRow]) -> str:
    """The ``csv`` format (see the module docstring)."""
    questions: list[str] = []
    for row in rows:
        questions += [
            f"{row.lesson}:{q}" for q in row.questions if f"{row.lesson}:{q}" not in questions
        ]
    lines = []
    for row in rows:
        s = row.student
        line = [
            s.student_id,
            s.first_name,
            s.last_name,
            s.email,
            s.lms_user_id,
            row.lesson,
            row.status,
        ]
        line += [safe_cell(row.reason), format_score(row.score), format_score(row.max_score)]
        line += [format_score(row.late_penalty), row.submitted_at, safe_cell("; ".join(row.notes))]
        line += [
            format_score(row.questions.get(q.split(":", 1)[1]))
            if q.startswith(row.lesson + ":")
            else ""
            for q in questions
        ]
        lines.append([safe_cell(c) for c in line[:5]] + line[5:])
    return _table([*CSV_FIELDS, *questions], lines)


def _by_student(rows: list[GradeRow]) -> tuple[list[str], dict[str, dict[str, GradeRow]]]:
    lessons = sorted({r.lesson for r in rows})
    table: dict[str, dict[str, GradeRow]] = {}
    for row in rows:
        table.setdefault(row.student.student_id, {})[row.lesson] = row
    return lessons, table


def canvas_text(rows: list[GradeRow]) -> str:
    """The ``canvas`` format (see the module docstring)."""
    lessons, table = _by_student(rows)
    possible = {r.lesson: r.max_score for r in rows}
    lines = [
        ["    Points Possible", "", "", "", "", *(format_score(possible[les]) for les in lessons)]
    ]
    for student_id in sorted(table):
        s = next(iter(table[student_id].values())).student
        line = [s.sortable_name, s.lms_user_id, s.sis_user_id, s.sis_login_id, s.section]
        scores = [
            format_score(table[student_id][les].score) if les in table[student_id] else ""
            for les in lessons
        ]
        lines.append([safe_cell(c) for c in line] + scores)
    return _table([*CANVAS_FIELDS, *lessons], lines)


def moodle_text(rows: list[GradeRow]) -> str:
    """The ``moodle`` format (see the module docstring)."""
    lessons, table = _by_student(rows)
    lines = []
    for student_id in sorted(table):
        s = next(iter(table[student_id].values())).student
        line = [s.first_name, s.last_name, s.id_number, s.email]
        scores = [
            format_score(table[student_id][les].score) if les in table[student_id] else ""
            for les in lessons
        ]
        lines.append([safe_cell(c) for c in line] + scores)
    return _table([*MOODLE_FIELDS, *lessons], lines)


def export(
    course: Course,
    to: str | os.PathLike[str] | None = None,
    *,
    format: str = "csv",
    lessons: list[str] | None = None,
) -> tuple[Path, list[str]]:
    """Write the grades in ``format``; return the file and warnings (students an LMS cannot
    match). Default file: ``<course>/grades.csv`` (``grades-canvas.csv``, ``grades-moodle.csv``).
    """
    check_choice("format", format, FORMATS)
    rows = grade_rows(course, lessons)
    default = {"csv": "grades.csv", "canvas": "grades-canvas.csv", "moodle": "grades-moodle.csv"}
    target = Path(to) if to is not None else course.root / default[format]
    text = {"csv": csv_text, "canvas": canvas_text, "moodle": moodle_text}[format](rows)
    atomic_write_text(target, text, overwrite=True)
    warnings = []
    students = {r.student.student_id: r.student for r in rows}
    if format == "canvas":
        unmatched = [
            s
            for s, st in students.items()
            if not (st.lms_user_id or st.sis_user_id or st.sis_login_id)
        ]
        if unmatched:
            warnings.append(
                f"no Canvas ID or SIS id for {', '.join(sorted(unmatched))}: add them to the roster"
            )
    if format == "moodle":
        unmatched = [s for s, st in students.items() if not (st.email or st.id_number)]
        if unmatched:
            warnings.append(
                f"no email or ID number for {', '.join(sorted(unmatched))}: add them to the roster"
            )
    return target, warnings
