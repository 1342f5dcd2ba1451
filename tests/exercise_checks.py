"""Checks shared by the lesson tests: the exercises' tests accept the solution and reject
the unanswered copy and plausible wrong answers, run outside the lesson.

An exercise is a solution cell (nbgrader ``solution``) followed by its graded test cell.
Lesson tests give wrong answers either as a new *body* for the solution region or as a
whole new *definition* replacing the solution cell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import nbformat
import pytest

from mlcourse.notebooks import NOTEBOOK_DIR

UNANSWERED = "raise NotImplementedError()"


def read_lesson(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)


def exercises(nb: nbformat.NotebookNode) -> dict[str, tuple[str, str]]:
    """grade_id of each solution cell -> (its source, the source of the test cell after it)."""
    found = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and not meta.get("grade"):
            test_cell = nb.cells[index + 1]
            assert test_cell.metadata["nbgrader"]["grade"] is True, meta["grade_id"]
            found[meta["grade_id"]] = (cell.source, test_cell.source)
    return found


def replace_solution(solution: str, body: str) -> str:
    """Swap the code between the solution markers for ``body`` (indented like the markers)."""
    match = re.search(r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION\n?", solution, re.S | re.M)
    assert match, "solution markers missing"
    indent = match.group(1)
    new = "".join(f"{indent}{line}\n" for line in body.strip("\n").splitlines())
    return solution[: match.start()] + new + solution[match.end() :]


def run_exercise(solution: str, test: str, prelude: str = "") -> None:
    """Run ``prelude``, then a solution cell, then its test cell, in a fresh namespace."""
    namespace: dict = {}
    exec(compile(prelude, "<prelude>", "exec"), namespace)
    exec(compile(solution, "<solution>", "exec"), namespace)
    exec(compile(test, "<tests>", "exec"), namespace)


def assert_tests_judge_answers(
    nb: nbformat.NotebookNode,
    wrong_answers: dict[str, Iterable[str]],
    *,
    prelude: str = "",
    replace: str = "body",
    check_solution: bool = True,
) -> None:
    """Every exercise's tests pass with its solution and fail for each wrong answer.

    Args:
        wrong_answers: grade_id of a solution cell -> wrong answers, which must include
            the unanswered student copy (``raise NotImplementedError()``).
        replace: ``"body"`` (an answer replaces the solution region) or ``"definition"``
            (an answer replaces the whole solution cell).
        check_solution: run the solution here too; turn off for exercises whose later
            tests use the lesson's own measurements (the lesson run checks those). A
            wrong answer must then fail on an assertion, not on a missing name.
    """
    found = exercises(nb)
    assert set(found) == set(wrong_answers), "every exercise needs wrong answers checked"
    for grade_id, answers in wrong_answers.items():
        solution, test = found[grade_id]
        if check_solution:
            run_exercise(solution, test, prelude)
        answers = list(answers)
        assert any(UNANSWERED in answer for answer in answers), grade_id
        for answer in answers:
            wrong = replace_solution(solution, answer) if replace == "body" else answer
            with pytest.raises((AssertionError, NotImplementedError, RuntimeError)):
                run_exercise(wrong, test, prelude)
