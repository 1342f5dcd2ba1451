"""Grade a class's submissions of a lesson: the whole pipeline, top to bottom.

:func:`grade_lesson` runs six stages, each in its own module with one narrow input:

1. **import** (:mod:`~mlcourse.grading.submissions`): the submissions folder is copied
   into the course's ``submitted/``; what cannot be graded is kept, with the reason;
2. **run** (:mod:`~mlcourse.grading.execution`): each notebook, with the lesson's
   original tests, runs in a sandbox of its own (:mod:`~mlcourse.grading.sandbox`),
   ``workers`` at a time; the solution runs once the same way (cached);
3. **judge** (:mod:`~mlcourse.grading.judge`): outside the sandbox, the recorded values
   are checked against the solution's, by code no submission can reach;
4. **record** (:mod:`~mlcourse.grading.record`): once every sandbox has ended, the grader
   alone writes the scores into nbgrader's gradebook and checks them;
5. **feedback** (:mod:`~mlcourse.grading.feedback`): a page per student, hidden tests
   hidden;
6. **export** (:mod:`~mlcourse.grading.export`): ``reports/<lesson>.csv`` (status, reason,
   score per question) and ``grades.csv``.

Example:
    >>> default_workers() >= 1
    True
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat

from mlcourse.grading.config import CELL_TIMEOUT
from mlcourse.grading.course_directory import Course, GradingError
from mlcourse.grading.execution import CellResult, RunResult, run_notebook, runner_job, sanitize
from mlcourse.grading.export import export
from mlcourse.grading.feedback import write_feedback
from mlcourse.grading.judge import Judgement, judge_cell, judge_run
from mlcourse.grading.lesson import (
    LessonSpec,
    Reference,
    environment_fingerprint,
    load_lesson,
    reference_for,
)
from mlcourse.grading.record import lingering_processes, record_scores
from mlcourse.grading.report import (
    GRADED,
    LATE,
    MISSING,
    UNGRADABLE,
    GradingReport,
    Outcome,
    write_report,
)
from mlcourse.grading.roster import course_roster
from mlcourse.grading.sandbox import (
    Limits,
    Sandbox,
    Unsandboxed,
    check_separate,
    sandbox_environment,
    sandbox_problem,
)
from mlcourse.grading.submissions import Submission, import_submissions, read_submission
from mlcourse.integrity import atomic_write_text
from mlcourse.validation import check_float, check_int

Say = Callable[[str], None]


def default_workers() -> int:
    """All the CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def compute_reference(
    spec: LessonSpec, key: str, runner: Any, limits: Limits, cell_timeout: float, timeout: float
) -> Reference:
    """Run the solution in the sandbox, record every check in full, and check that it
    passes its own tests there.

    Raises:
        GradingError: the solution cannot run, or fails one of its tests.
    """
    notebook = sanitize(spec, nbformat.reads(spec.source_text, as_version=4))
    job = runner_job(
        spec,
        notebook,
        mode="reference",
        cell_timeout=cell_timeout,
        limits=limits,
        handed_in=spec.source_text,
    )
    run = run_notebook(runner, job, cell_timeout=cell_timeout, submission_timeout=timeout)
    if run.problem:
        raise GradingError(
            f"the solution of {spec.name} could not be run in the sandbox: {run.problem}"
        )
    records = [r for cell in run.cells.values() for r in cell.records]
    by_cell = {g: [r for r in records if r.get("cell") == g and "site" in r] for g in spec.graded}
    finished = {
        g: any(r.get("cell") == g and r.get("end") is True for r in records) for g in spec.graded
    }
    state = {
        g: sorted({r["site"] for r in rs if "data" in dict(r.get("outside", {})).values()})
        for g, rs in by_cell.items()
    }
    reference = Reference(key, by_cell, finished, {g: s for g, s in state.items() if s})
    spec.reference = reference
    for grade_id in spec.graded:
        verdict = judge_cell(
            spec,
            grade_id,
            CellResult(
                "ok", [], by_cell[grade_id] + [{"cell": grade_id, "end": finished[grade_id]}]
            ),
        )
        if not verdict.passed:
            failed = [line.text() for line in verdict.lines if not line.passed] + [verdict.problem]
            raise GradingError(
                f"the solution of {spec.name} fails its own test {grade_id} in the grading "
                f"sandbox: {'; '.join(f for f in failed if f)}"
            )
    return reference


def ensure_reference(
    course: Course,
    spec: LessonSpec,
    runner: Any,
    limits: Limits,
    cell_timeout: float,
    timeout: float,
    say: Say,
) -> None:
    """Load the solution's recorded checks, or compute and cache them."""
    started = time.monotonic()
    fingerprint = environment_fingerprint(runner.env, runner.isolated)
    _, computed = reference_for(
        course,
        spec,
        fingerprint,
        lambda spec, key: compute_reference(spec, key, runner, limits, cell_timeout, timeout),
    )
    where = "in the sandbox" if runner.isolated else "WITHOUT a sandbox"
    if computed:
        say(
            f"ran the solution of {spec.name} {where}: every test passes "
            f"({time.monotonic() - started:.1f} s)"
        )


def write_log(path: Path, run: RunResult) -> None:
    """``logs/<lesson>/<student>.log``: how each cell ended, and what the sandbox printed."""
    lines = [f"## run: {run.problem or 'complete'} in {run.seconds:.1f} s"]
    for index, cell in sorted(run.cells.items()):
        errors = [
            f"{o['ename']}: {o['evalue'][:200]}"
            for o in cell.outputs
            if o["output_type"] == "error"
        ]
        lines.append(f"cell {index + 1}: {cell.status}" + (f" ({errors[0]})" if errors else ""))
    lines += ["## sandbox log (last 64 kB)", run.log]
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite=True)


def grade_one(
    spec: LessonSpec,
    submission: Submission,
    runner: Any,
    limits: Limits,
    cell_timeout: float,
    timeout: float,
    log: Path,
) -> tuple[Outcome, Judgement | None]:
    """Stages 2 and 3 for one submission: run it in its sandbox, judge it outside."""
    outcome = Outcome(
        submission.student, UNGRADABLE, max_score=spec.max_score, notes=list(submission.notes)
    )
    assert submission.notebook is not None
    handed_in = submission.notebook.read_text(encoding="utf-8", errors="replace")
    notebook = sanitize(spec, read_submission(submission.notebook))
    job = runner_job(
        spec,
        notebook,
        mode="student",
        cell_timeout=cell_timeout,
        limits=limits,
        handed_in=handed_in,
    )
    run = run_notebook(runner, job, cell_timeout=cell_timeout, submission_timeout=timeout)
    outcome.seconds = run.seconds
    write_log(log, run)
    if run.problem:
        outcome.reason = run.problem
        return outcome, None
    judgement = judge_run(spec, notebook, run)
    outcome.status, outcome.score = GRADED, judgement.score
    outcome.questions = judgement.scores
    outcome.notes += judgement.notes
    lost = dict(run.lost)
    for index, cell in sorted(run.cells.items()):
        name = (
            notebook.cells[index].metadata.get("nbgrader", {}).get("grade_id")
            or f"cell {index + 1}"
        )
        if index in lost:
            outcome.notes.append(
                f"{name}: {lost[index]}; the kernel was restarted and the cells before it run again"
            )
        elif cell.status == "timeout":
            outcome.notes.append(f"{name} ran past the time limit and was interrupted")
    return outcome, judgement


def _initial_outcomes(
    found: list[Submission], roster: list[str], max_score: float
) -> dict[str, Outcome]:
    outcomes = {}
    for s in found:
        status = MISSING if s.missing else UNGRADABLE
        outcomes[s.student] = Outcome(
            s.student, status, None, max_score, s.problem or "", list(s.notes)
        )
    for student in roster:
        outcomes.setdefault(
            student, Outcome(student, MISSING, None, max_score, "nothing submitted")
        )
    return outcomes


def grade_lesson(
    course: Course,
    lesson: str,
    submissions: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    cell_timeout: int | None = None,
    submission_timeout: float = 900.0,
    force: bool = False,
    feedback: bool = True,
    limits: Limits | None = None,
    sandbox: bool = True,
    progress: Say | None = None,
) -> GradingReport:
    """Grade every submission of ``lesson`` (see the module docstring for the stages).

    Args:
        course: the course directory, with ``lesson`` released.
        lesson: e.g. ``"01_gradient_descent"``.
        submissions: a folder of ``<student>/<lesson>.ipynb``; ``None`` grades what is in
            the course's ``submitted/`` folder.
        workers: submissions graded at once (default: every core).
        cell_timeout: seconds a cell may run before it is interrupted (default: the course
            config's ``c.Execute.timeout``, 60 s unless changed there).
        submission_timeout: seconds one submission may take in all.
        force: replace different submissions already in the course.
        feedback: also write each student's feedback page.
        limits: the sandbox's resource limits (default: :class:`Limits`).
        sandbox: run each submission in a sandbox (``False``: ``--unsafe-no-sandbox``).
        progress: called with a line of text as grading goes on.
    """
    started = time.monotonic()
    workers = check_int(
        "workers", workers if workers is not None else default_workers(), min_value=1
    )
    if cell_timeout is None:
        cell_timeout = int(course.config.Execute.get("timeout", CELL_TIMEOUT))
    cell_timeout = check_int("cell_timeout", cell_timeout, min_value=1)
    timeout = check_float("submission_timeout", submission_timeout, min_value=1.0)
    limits = limits if limits is not None else Limits()
    say = progress or (lambda line: None)
    run_id = uuid.uuid4().hex
    with course.lock():
        spec = load_lesson(course, lesson)
        found, ignored = import_submissions(course, lesson, submissions, force=force)  # 1
        outcomes = _initial_outcomes(found, sorted(course_roster(course)), spec.max_score)
        runnable = [s for s in found if s.problem is None]
        judged: dict[str, Judgement] = {}
        with open_runner(
            limits, run_id, max(1, min(workers, len(runnable))), sandbox=sandbox
        ) as runner:
            if runner.isolated:  # nothing private may be inside what every sandbox reads
                private = {"course directory": course.root}
                if submissions is not None:
                    private["submissions folder"] = Path(submissions)
                check_separate(runner.bound, private)
            say(
                f"{lesson}: grading {len(runnable)} of {len(outcomes)} submissions, {workers} "
                f"at a time, {'in sandboxes' if runner.isolated else 'WITHOUT a sandbox'}"
            )
            if runnable:
                ensure_reference(course, spec, runner, limits, cell_timeout, timeout, say)

            def grade(submission: Submission) -> tuple[Outcome, Judgement | None]:  # 2 and 3
                log = course.root / "logs" / lesson / f"{submission.student}.log"
                outcome, judgement = grade_one(
                    spec, submission, runner, limits, cell_timeout, timeout, log
                )
                detail = outcome.score_text() if judgement else outcome.reason
                say(f"  {submission.student}: {outcome.status} {detail} ({outcome.seconds:.1f} s)")
                return outcome, judgement

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for outcome, judgement in pool.map(grade, runnable):
                    outcomes[outcome.student] = outcome
                    if judgement is not None:
                        judged[outcome.student] = judgement
        left = lingering_processes(run_id)
        if left:
            raise GradingError(
                f"processes of this grading run are still alive ({left}); nothing was recorded"
            )
        mark = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mlcourse-record-") as staging:  # 4
            graded = {s: (j.notebook, j.scores) for s, j in judged.items()}
            for student, problem in record_scores(course, lesson, graded, Path(staging)).items():
                outcomes[student].status, outcomes[student].reason = UNGRADABLE, problem
                outcomes[student].score = None
        say(f"recorded {len(judged)} scores in the gradebook ({time.monotonic() - mark:.1f} s)")
        late = course.seconds_late(lesson)
        for outcome in outcomes.values():
            if outcome.status == GRADED and late.get(outcome.student, 0.0) > 0:
                outcome.status = LATE
                outcome.notes.append(f"handed in {late[outcome.student] / 3600:.1f} h late")
        course.add_students(sorted(outcomes))
        earlier = course.scores(lesson)
        for outcome in outcomes.values():
            if outcome.status not in (GRADED, LATE) and outcome.student in earlier:
                points = sum(v or 0.0 for v in earlier[outcome.student].values())
                outcome.notes.append(f"the gradebook keeps an earlier score of {points:g}")
        if feedback:  # 5
            mark = time.monotonic()
            pages = write_feedback(
                course, lesson, sorted(s for s, o in outcomes.items() if o.status in (GRADED, LATE))
            )
            for student, page in pages.items():
                if isinstance(page, Path):
                    outcomes[student].feedback = page
                else:
                    outcomes[student].notes.append(f"no feedback page: {page}")
            say(f"wrote {len(pages)} feedback pages ({time.monotonic() - mark:.1f} s)")
        ordered = [outcomes[s] for s in sorted(outcomes)]
        report_csv = write_report(
            course.root / "reports" / f"{lesson}.csv",
            ordered,
            spec.graded,
            sandboxed=runner.isolated,
        )  # 6
        grades_csv, _ = export(course)
    return GradingReport(
        lesson,
        ordered,
        ignored,
        grades_csv,
        report_csv,
        time.monotonic() - started,
        run_id,
        runner.isolated,
    )


def check_solution(
    course: Course,
    lesson: str,
    *,
    cell_timeout: int | None = None,
    limits: Limits | None = None,
    sandbox: bool = True,
    progress: Say | None = None,
) -> None:
    """Run the released solution of ``lesson`` in a sandbox, check that it passes every
    test there, and cache its recorded checks for grading (``mlcourse-grade release``).

    Raises:
        GradingError: no sandbox here, or the solution fails a test in it.
    """
    if cell_timeout is None:
        cell_timeout = int(course.config.Execute.get("timeout", CELL_TIMEOUT))
    limits = limits if limits is not None else Limits()
    with course.lock():
        spec = load_lesson(course, lesson)
        with open_runner(limits, uuid.uuid4().hex, 1, sandbox=sandbox) as runner:
            ensure_reference(
                course, spec, runner, limits, cell_timeout, 900.0, progress or (lambda line: None)
            )
