"""Graded exercises: student copies, nbgrader course directories, sandboxed parallel grading.

The lessons' exercises use nbgrader's cell metadata (see ``docs/authoring.md``) and
nbgrader keeps the course directory and the gradebook; this package adds what nbgrader
lacks. Grading a lesson (:func:`~mlcourse.grading.pipeline.grade_lesson`) is a pipeline,
one module per stage:

1. :mod:`~mlcourse.grading.submissions`: import the submissions;
2. :mod:`~mlcourse.grading.execution`: run each in its own sandbox
   (:mod:`~mlcourse.grading.sandbox`, :mod:`~mlcourse.grading.runner`), test cells rewritten
   to record what they check (:mod:`~mlcourse.grading.instrument`,
   :mod:`~mlcourse.grading.recorder`, :mod:`~mlcourse.grading.values`);
3. :mod:`~mlcourse.grading.judge`: judge the recorded values outside the sandbox, against
   the solution's run (:mod:`~mlcourse.grading.reference`, :mod:`~mlcourse.grading.lesson`);
4. :mod:`~mlcourse.grading.record`: write the gradebook, one writer, at the end;
5. :mod:`~mlcourse.grading.feedback`: feedback pages without hidden tests;
6. :mod:`~mlcourse.grading.export`: ``grades.csv``, Canvas and Moodle files, with the
   statuses of :mod:`~mlcourse.grading.report` and the :mod:`~mlcourse.grading.roster`.

Around it: :mod:`~mlcourse.grading.course_directory` (the nbgrader course directory,
releases), :mod:`~mlcourse.grading.config` and :mod:`~mlcourse.grading.preprocessors`
(nbgrader settings), :mod:`~mlcourse.grading.student` (student copies,
``python3 course.py student``) and :mod:`~mlcourse.grading.cli` (``mlcourse-grade``).

Instructor guide and threat model: ``docs/instructors.md``.

Example:
    >>> from mlcourse.grading import Course, grade_lesson, make_student_copy
    >>> callable(grade_lesson)
    True
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: nbgrader takes seconds to import, and `mlcourse-grade --help`
# or the sandbox's runner should not wait for what they do not use.
_EXPORTS = {
    "Course": "mlcourse.grading.course_directory",
    "GradingError": "mlcourse.grading.course_directory",
    "GradingReport": "mlcourse.grading.report",
    "Limits": "mlcourse.grading.sandbox",
    "Outcome": "mlcourse.grading.report",
    "export": "mlcourse.grading.export",
    "grade_lesson": "mlcourse.grading.pipeline",
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
