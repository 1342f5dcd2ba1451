"""The solution's run: the sandbox (or not) a grading run uses, and the reference it judges by.

:func:`open_runner` gives the launcher every notebook of a run goes through: a
:class:`~mlcourse.grading.sandbox.Sandbox`, or, only when asked, an
:class:`~mlcourse.grading.sandbox.Unsandboxed` one; it refuses to grade without a sandbox
otherwise. :func:`ensure_reference` runs the lesson's solution through it once, with every
check recorded in full (:func:`compute_reference`), checks that the solution passes each
of its tests there, and caches what it recorded (:mod:`mlcourse.grading.lesson`): the
judge takes every expected value from it. ``mlcourse-grade release`` does this up front
(:func:`check_solution`).

Example:
    >>> Runs(Limits(), 60, 900.0, print).cell_timeout
    60
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nbformat

from mlcourse.grading.config import CELL_TIMEOUT
from mlcourse.grading.course_directory import Course, GradingError
from mlcourse.grading.execution import CellResult, run_notebook, runner_job, sanitize
from mlcourse.grading.judge import judge_cell
from mlcourse.grading.lesson import (
    LessonSpec,
    Reference,
    environment_fingerprint,
    load_lesson,
    reference_for,
)
from mlcourse.grading.sandbox import (
    Limits,
    Sandbox,
    Unsandboxed,
    sandbox_environment,
    sandbox_problem,
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Runs:
    """How each notebook of a grading run is run: limits, time limits, progress lines."""

    limits: Limits
    cell_timeout: int
    timeout: float  # seconds per notebook in all
    say: Say


@contextlib.contextmanager
def open_runner(limits: Limits, run_id: str, slots: int, *, sandbox: bool) -> Iterator[Any]:
    """The sandbox (or, with ``sandbox=False``, the unsandboxed runner) for one grading run.

    Raises:
        GradingError: ``sandbox`` is asked for and cannot run here (the message says why
            and names ``--unsafe-no-sandbox``).
    """
    env = sandbox_environment(run_id)
    if not sandbox:
        with Unsandboxed(limits, env, slots) as runner:
            yield runner
        return
    problem = sandbox_problem()
    if problem is not None:
        raise GradingError(
            f"cannot sandbox the submissions: {problem}. Grading runs student code; without "
            "a sandbox it could read or change the course, the gradebook and other "
            "students' work. Fix that, or accept the risk with --unsafe-no-sandbox."
        )
    with Sandbox(limits, env, slots) as runner:
        yield runner


def compute_reference(spec: LessonSpec, key: str, runner: Any, settings: Runs) -> Reference:
    """Run the solution through ``runner``, every check recorded in full, and check that it
    passes its own tests there.

    Raises:
        GradingError: the solution cannot run, or fails one of its tests.
    """
    notebook = sanitize(spec, nbformat.reads(spec.source_text, as_version=4))
    job = runner_job(spec, notebook, mode="reference", cell_timeout=settings.cell_timeout, limits=settings.limits, handed_in=spec.source_text)  # fmt: skip
    run = run_notebook(runner, job, cell_timeout=settings.cell_timeout, submission_timeout=settings.timeout)  # fmt: skip
    if run.problem:
        raise GradingError(f"the solution of {spec.name} could not be run: {run.problem}")
    records = [r for cell in run.cells.values() for r in cell.records]
    by_cell = {g: [r for r in records if r.get("cell") == g and "site" in r] for g in spec.graded}
    finished = {g: any(r.get("cell") == g and r.get("end") is True for r in records) for g in spec.graded}  # fmt: skip
    state = {
        g: sorted({r["site"] for r in rs if "data" in dict(r.get("outside", {})).values()})
        for g, rs in by_cell.items()
    }
    reference = Reference(key, by_cell, finished, {g: s for g, s in state.items() if s})
    spec.reference = reference
    for grade_id in spec.graded:
        ended = [{"cell": grade_id, "end": finished[grade_id]}]
        verdict = judge_cell(spec, grade_id, CellResult("ok", [], by_cell[grade_id] + ended))
        if not verdict.passed:
            failed = [line.text() for line in verdict.lines if not line.passed] + [verdict.problem]
            raise GradingError(
                f"the solution of {spec.name} fails its own test {grade_id} where it is "
                f"graded: {'; '.join(f for f in failed if f)}"
            )
    return reference


def ensure_reference(course: Course, spec: LessonSpec, runner: Any, settings: Runs) -> None:
    """Load the solution's recorded checks, or compute and cache them."""
    started = time.monotonic()
    fingerprint = environment_fingerprint(runner.env, runner.isolated)
    _, computed = reference_for(
        course, spec, fingerprint, lambda spec, key: compute_reference(spec, key, runner, settings)
    )
    if computed:
        where = "in the sandbox" if runner.isolated else "WITHOUT a sandbox"
        seconds = time.monotonic() - started
        settings.say(f"ran the solution of {spec.name} {where}: every test passes ({seconds:.1f} s)")  # fmt: skip


def check_solution(
    course: Course,
    lesson: str,
    *,
    cell_timeout: int | None = None,
    limits: Limits | None = None,
    sandbox: bool = True,
    progress: Say | None = None,
) -> None:
    """Run the released solution of ``lesson`` as grading will, check that it passes every
    test there, and cache its recorded checks (``mlcourse-grade release``).

    Raises:
        GradingError: no sandbox here (and ``sandbox``), or the solution fails a test.
    """
    if cell_timeout is None:
        cell_timeout = int(course.config.Execute.get("timeout", CELL_TIMEOUT))
    limits = limits if limits is not None else Limits()
    settings = Runs(limits, cell_timeout, 900.0, progress or (lambda line: None))
    with course.lock():
        spec = load_lesson(course, lesson)
        with open_runner(limits, uuid.uuid4().hex, 1, sandbox=sandbox) as runner:
            ensure_reference(course, spec, runner, settings)
