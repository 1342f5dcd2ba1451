"""Stage 4 of grading: write the judged scores into the gradebook, one writer, at the end.

Input: the graded notebooks (:class:`~mlcourse.grading.judge.Judgement`), by student.
Only the grader's own process writes the gradebook, and only after every sandbox of the
run has ended (:func:`lingering_processes` checks that none is left). The notebooks are
recorded by nbgrader's own ``SaveAutoGrades`` and ``AssignLatePenalties`` (an autograde
pass that executes nothing), so late penalties, manual-grade flags and
``autograded/<student>/<lesson>/`` are nbgrader's; then every stored score is compared
with the judge's, and a mismatch makes that submission ungradable instead of a wrong grade.

Example:
    >>> lingering_processes("no-such-run")
    []
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from mlcourse.grading.course_directory import Course, GradingError, for_assignment, run_converter
from mlcourse.grading.sandbox import RUN_ENV


def lingering_processes(run_id: str) -> list[int]:
    """PIDs of processes still marked as part of grading run ``run_id``."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if process.environ().get(RUN_ENV) == run_id:
                found.append(process.info["pid"])
    return found


def record_scores(
    course: Course,
    lesson: str,
    graded: dict[str, tuple[NotebookNode, dict[str, float]]],
    staging: Path,
) -> dict[str, str]:
    """Record ``graded`` (``{student: (graded notebook, judged scores)}``) in the gradebook.

    Returns:
        ``{student: problem}`` for each submission whose stored scores are not the judged
        ones (empty when all were recorded as judged).
    """
    if not graded:
        return {}
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades

    for student, (notebook, _) in graded.items():
        target = staging / student / lesson / f"{lesson}.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(notebook, target)
        stamp = course.path("submitted", lesson, student) / "timestamp.txt"
        if stamp.is_file():
            shutil.copyfile(stamp, target.parent / "timestamp.txt")
    config = copy.deepcopy(course.config)
    config.CourseDirectory.submitted_directory = str(staging)
    config.Autograde.sanitize_preprocessors = []  # the judge's notebooks are already clean
    config.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties]
    recorder = Course(course.root, config)
    failure = ""
    with for_assignment(recorder.coursedir, lesson, "*"):
        converter = Autograde(coursedir=recorder.coursedir, config=config)
        converter.force = True
        try:
            run_converter(converter, "recording the scores in the gradebook")
        except GradingError as error:
            failure = str(error).splitlines()[-1]
    stored = course.scores(lesson)
    problems = {}
    for student, (_, scores) in graded.items():
        if stored.get(student) != scores:
            problems[student] = (
                f"the gradebook holds {stored.get(student)} but the judge gave {scores}"
                + (f" ({failure})" if failure else "")
            )
    return problems
