"""Stage 5 of grading: each student's feedback page, without the hidden tests' source.

Input: the course, the lesson and the students graded in this run. The pages are
nbgrader's feedback HTML (``nbgrader generate_feedback``, which only reads the gradebook
and ``autograded/``), made with :data:`~mlcourse.grading.config.FEEDBACK_PREPROCESSORS`:
nbgrader's, plus :class:`~mlcourse.grading.preprocessors.HideHiddenTests`, so a test cell
shows its visible tests and, in place of each hidden block, one line saying it is hidden.
Which hidden check failed, and its message, is in the cell's output (written by the
judge, :mod:`mlcourse.grading.judge`), as are outputs cut for size.

Example:
    >>> callable(write_feedback)
    True
"""

from __future__ import annotations

import copy
from pathlib import Path

from mlcourse.grading.config import FEEDBACK_PREPROCESSORS
from mlcourse.grading.course_directory import Course, GradingError, for_assignment, run_converter


def write_feedback(course: Course, lesson: str, students: list[str]) -> dict[str, Path | str]:
    """Write the feedback page of each of ``students``; ``{student: page or problem}``.

    The course's preprocessors are used even if its ``nbgrader_config.py`` sets others.
    """
    from nbgrader.converters import GenerateFeedback

    config = copy.deepcopy(course.config)
    config.GenerateFeedback.preprocessors = list(FEEDBACK_PREPROCESSORS)
    writer = Course(course.root, config)
    done: dict[str, Path | str] = {}
    for student in students:
        page = course.notebook("feedback", lesson, student)
        with for_assignment(writer.coursedir, lesson, student):
            converter = GenerateFeedback(coursedir=writer.coursedir, config=config)
            converter.force = True
            try:
                run_converter(converter, f"feedback for {student}")
            except GradingError as error:
                done[student] = str(error).splitlines()[-1]
                continue
        done[student] = page if page.exists() else "nbgrader wrote no feedback page"
    return done
