"""Stage 5 of grading: each student's feedback page, without the hidden tests' source.

Input: the course, the lesson and the students graded in this run. The pages are
nbgrader's feedback HTML (``nbgrader generate_feedback``, which only reads the gradebook
and ``autograded/``), with one more preprocessor, :class:`HideHiddenTests`: a test cell
shows its visible tests and, in place of each hidden block, one line saying it is hidden.
Which hidden check failed, and its message, is in the cell's output (written by the
judge, :mod:`mlcourse.grading.judge`), as are outputs cut for size.

Example:
    >>> print(hide_hidden_tests("a()\\n### BEGIN HIDDEN TESTS\\nb()\\n### END HIDDEN TESTS\\nc()"))
    a()
    # (hidden tests: their results are in the output below)
    c()
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

from mlcourse.grading.course_directory import Course, GradingError, for_assignment, run_converter
from mlcourse.grading.instrument import HIDDEN_BEGIN, HIDDEN_END

HIDDEN_NOTE = "# (hidden tests: their results are in the output below)"


def hide_hidden_tests(source: str) -> str:
    """``source`` with each hidden-test block replaced by :data:`HIDDEN_NOTE`."""
    lines, inside = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            inside = True
            lines.append(HIDDEN_NOTE)
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            lines.append(line)
    return "\n".join(lines)


class HideHiddenTests(NbGraderPreprocessor):
    """Replace the hidden-test blocks of graded cells (only those: a student's own cells
    are shown as written, whatever they contain)."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict[str, Any], cell_index: int
    ) -> tuple[NotebookNode, dict[str, Any]]:
        if utils.is_grade(cell):
            cell.source = hide_hidden_tests(cell.source)
        return cell, resources


def write_feedback(course: Course, lesson: str, students: list[str]) -> dict[str, Path | str]:
    """Write the feedback page of each of ``students``; ``{student: page or problem}``."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import GetGrades

    config = copy.deepcopy(course.config)
    config.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
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
