"""What became of each submission: statuses, the per-lesson report file, the summary table.

Every submission ends with one :data:`STATUSES` value and, unless it was graded, the
reason. ``reports/<lesson>.csv`` keeps them (one row per student, with the score of each
question); ``mlcourse-grade export`` reads it back, so a later export shows the same
statuses as the grading run, and never turns a missing or ungradable submission into a
silent 0.

Example:
    >>> safe_cell("=HYPERLINK(1)")
    "'=HYPERLINK(1)"
    >>> Outcome("alice", MISSING, reason="nothing submitted").score_text()
    '-'
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlcourse.integrity import atomic_write_text

GRADED, LATE, UNGRADABLE, MISSING = "graded", "late", "ungradable", "missing"
STATUSES = (GRADED, LATE, UNGRADABLE, MISSING)
REPORT_FIELDS = ("student", "status", "score", "max_score", "reason", "notes", "seconds")
QUESTION_PREFIX = "q:"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text`` made safe for a spreadsheet (a leading ``=``/``+``/``-``/``@`` is quoted).

    Reasons and notes can quote what a submission printed; a cell starting with ``=``
    would be a formula when the instructor opens the CSV.
    """
    return f"'{text}" if text.startswith(_FORMULA_START) else text


@dataclass
class Outcome:
    """What became of one submission of one lesson."""

    student: str
    status: str
    score: float | None = None
    max_score: float | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    questions: dict[str, float | None] = field(default_factory=dict)
    feedback: Path | None = None
    seconds: float = 0.0

    def score_text(self) -> str:
        if self.score is None:
            return "-"
        return (
            f"{self.score:g}/{self.max_score:g}"
            if self.max_score is not None
            else f"{self.score:g}"
        )


@dataclass
class GradingReport:
    """The result of grading a lesson (:func:`mlcourse.grading.pipeline.grade_lesson`)."""

    lesson: str
    outcomes: list[Outcome]
    ignored: list[str]
    grades_csv: Path
    report_csv: Path
    seconds: float
    run_id: str = ""
    sandboxed: bool = True

    @property
    def ungradable(self) -> list[Outcome]:
        """Submissions that got no score (ungradable or missing)."""
        return [o for o in self.outcomes if o.status in (UNGRADABLE, MISSING)]

    def summary(self) -> str:
        """A plain-text table of every submission, then what could not be graded."""
        lines = [f"{self.lesson}: {len(self.outcomes)} submissions in {self.seconds:.1f} s"]
        if not self.sandboxed:
            lines.append("  WARNING: graded WITHOUT a sandbox (--unsafe-no-sandbox)")
        if not self.outcomes:
            lines.append("  no student folders found: nothing was graded")
        width = max([len(o.student) for o in self.outcomes] + [7])
        for o in self.outcomes:
            detail = "; ".join(([o.reason] if o.reason else []) + o.notes)
            lines.append(
                f"  {o.student:<{width}}  {o.status:<10}  {o.score_text():>9}  {detail}".rstrip()
            )
        for entry in self.ignored:
            lines.append(f"  ignored {entry}")
        if self.ungradable:
            lines.append(f"Could not grade {len(self.ungradable)}:")
            lines += [f"  {o.student}: {o.status}: {o.reason}" for o in self.ungradable]
        lines.append(f"Grades: {self.grades_csv}")
        lines.append(f"Report: {self.report_csv}")
        return "\n".join(lines)


def write_report(
    path: Path, outcomes: list[Outcome], questions: list[str], *, sandboxed: bool
) -> Path:
    """Write ``reports/<lesson>.csv``: one row per submission, one column per question."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*REPORT_FIELDS, *(QUESTION_PREFIX + q for q in questions)])
    for o in outcomes:
        notes = list(o.notes) + ([] if sandboxed else ["graded without a sandbox"])
        row = [
            o.student,
            o.status,
            "" if o.score is None else f"{o.score:g}",
            "" if o.max_score is None else f"{o.max_score:g}",
            safe_cell(o.reason),
            safe_cell("; ".join(notes)),
            f"{o.seconds:.1f}",
        ]
        row += ["" if o.questions.get(q) is None else f"{o.questions[q]:g}" for q in questions]
        writer.writerow(row)
    return atomic_write_text(path, buffer.getvalue(), overwrite=True)


def read_report(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``{student: row}`` of a report written by :func:`write_report` (empty if none).

    Raises:
        ValueError: the file is not such a report (its columns are not the expected ones).
    """
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if tuple(columns[: len(REPORT_FIELDS)]) != REPORT_FIELDS:
            raise ValueError(
                f"{str(path)!r} is not a grading report: its columns are {columns[:7]}, "
                f"expected {list(REPORT_FIELDS)} first."
            )
        rows = {row["student"]: row for row in reader}
    for student, row in rows.items():
        if row["status"] not in STATUSES:
            raise ValueError(
                f"{str(path)!r}: status {row['status']!r} of {student!r} is not one of {STATUSES}."
            )
    return rows
