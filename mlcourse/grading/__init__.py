"""Graded exercises: student copies, nbgrader course directories and parallel autograding.

The lessons' exercises use nbgrader's cell metadata (see ``docs/authoring.md``) and
nbgrader is the grading engine; this package adds what nbgrader lacks:

- :mod:`~mlcourse.grading.student`: reproducible student copies of every lesson
  (``python3 course.py student``) and collapsed solutions in the worked lessons;
- :mod:`~mlcourse.grading.course`: a course directory, one assignment per lesson;
- :mod:`~mlcourse.grading.autograde`: grading a class in parallel, in lite mode, with
  time limits, without losing or mixing up a grade; gradebook CSV, feedback, a report;
- :mod:`~mlcourse.grading.cli`: the ``mlcourse-grade`` command.

Instructor guide: ``docs/instructors.md``.

Example:
    >>> from mlcourse.grading import Course, grade_lesson, make_student_copy
    >>> callable(grade_lesson)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: nbgrader takes seconds to import, and `mlcourse-grade --help`
# or the grading workers should not wait for what they do not use.
_EXPORTS = {
    "Course": "mlcourse.grading.course",
    "GradingError": "mlcourse.grading.course",
    "GradingReport": "mlcourse.grading.autograde",
    "Outcome": "mlcourse.grading.autograde",
    "grade_lesson": "mlcourse.grading.autograde",
    "hide_solutions": "mlcourse.grading.student",
    "make_student_copy": "mlcourse.grading.student",
    "student_copy_problems": "mlcourse.grading.student",
    "write_student_copies": "mlcourse.grading.student",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlcourse.grading' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
