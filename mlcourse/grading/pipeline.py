"""Grade a class's submissions of a lesson: the whole pipeline, top to bottom.

:func:`grade_lesson` runs six stages, each in its own module with one narrow input:

1. **import** (:mod:`~mlcourse.grading.submissions`): the submissions folder is copied
   into the course's ``submitted/``; what cannot be graded is kept, with the reason;
2. **run** (:mod:`~mlcourse.grading.execution`): each notebook, with the lesson's
   original tests, runs in a sandbox of its own (:mod:`~mlcourse.grading.sandbox`),
   ``workers`` at a time; the solution ran once the same way
   (:mod:`~mlcourse.grading.reference`);
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

import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlcourse.arguments import check_float, check_int
from mlcourse.grading.config import CELL_TIMEOUT
from mlcourse.grading.course_directory import Course, GradingError
from mlcourse.grading.execution import RunResult, run_notebook, runner_job, sanitize
from mlcourse.grading.export import export
from mlcourse.grading.feedback import write_feedback
from mlcourse.grading.judge import Judgement, judge_run
from mlcourse.grading.lesson import LessonSpec, load_lesson
from mlcourse.grading.record import lingering_processes, record_scores
from mlcourse.grading.reference import Runs, Say, ensure_reference, open_runner
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
from mlcourse.grading.sandbox import Limits, check_separate
from mlcourse.grading.submissions import Submission, import_submissions, read_submission
from mlcourse.integrity import atomic_write_text


def default_workers() -> int:
    """All the CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    settings = Runs(
        limits if limits is not None else Limits(),
        check_int("cell_timeout", cell_timeout, min_value=1),
        check_float("submission_timeout", submission_timeout, min_value=1.0),
        progress or (lambda line: None),
    )
    run_id = uuid.uuid4().hex
    with course.lock():
        spec = load_lesson(course, lesson)
        found, ignored = import_submissions(course, lesson, submissions, force=force)  # 1
        outcomes = initial_outcomes(found, sorted(course_roster(course)), spec.max_score)
        runnable = [s for s in found if s.problem is None]
        slots = max(1, min(workers, len(runnable)))
        with open_runner(settings.limits, run_id, slots, sandbox=sandbox) as runner:
            if runner.isolated:  # nothing private may be inside what every sandbox reads
                private = {"course directory": course.root}
                if submissions is not None:
                    private["submissions folder"] = Path(submissions)
                check_separate(runner.bound, private)
            how = "in sandboxes" if runner.isolated else "WITHOUT a sandbox"
            settings.say(f"{lesson}: grading {len(runnable)} of {len(outcomes)} submissions, {workers} at a time, {how}")  # fmt: skip
            results = run_and_judge(course, spec, runnable, runner, settings, workers)  # 2, 3
        for outcome, _ in results:
            outcomes[outcome.student] = outcome
        left = lingering_processes(run_id)
        if left:
            raise GradingError(f"processes of this grading run are still alive ({left}); nothing was recorded")  # fmt: skip
        judged = {o.student: j for o, j in results if j is not None}
        record(course, lesson, judged, outcomes, settings.say)  # 4
        if feedback:
            write_pages(course, lesson, outcomes, settings.say)  # 5
        ordered = [outcomes[s] for s in sorted(outcomes)]
        path = course.root / "reports" / f"{lesson}.csv"  # 6
        report_csv = write_report(path, ordered, spec.graded, sandboxed=runner.isolated)
        grades_csv, _ = export(course)
    seconds = time.monotonic() - started
    return GradingReport(lesson, ordered, ignored, grades_csv, report_csv, seconds, run_id, runner.isolated)  # fmt: skip


def initial_outcomes(found: list[Submission], roster: list[str], max_score: float) -> dict[str, Outcome]:  # fmt: skip
    """Every student's outcome before anything runs: import problems, roster-only students."""
    outcomes = {}
    for s in found:
        status = MISSING if s.missing else UNGRADABLE
        outcomes[s.student] = Outcome(s.student, status, None, max_score, s.problem or "", list(s.notes))  # fmt: skip
    for student in roster:
        outcomes.setdefault(student, Outcome(student, MISSING, None, max_score, "nothing submitted"))  # fmt: skip
    return outcomes


def run_and_judge(
    course: Course,
    spec: LessonSpec,
    runnable: list[Submission],
    runner: object,
    settings: Runs,
    workers: int,
) -> list[tuple[Outcome, Judgement | None]]:
    """Stages 2 and 3 for every submission, ``workers`` at a time: each one's outcome, and
    its judgement (``None`` when it could not be judged; the outcome says why)."""
    if runnable:
        ensure_reference(course, spec, runner, settings)

    def grade(submission: Submission) -> tuple[Outcome, Judgement | None]:
        log = course.root / "logs" / spec.name / f"{submission.student}.log"
        outcome, judgement = grade_one(spec, submission, runner, settings, log)
        detail = outcome.score_text() if judgement else outcome.reason
        settings.say(f"  {submission.student}: {outcome.status} {detail} ({outcome.seconds:.1f} s)")  # fmt: skip
        return outcome, judgement

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(grade, runnable))


def grade_one(spec: LessonSpec, submission: Submission, runner: object, settings: Runs, log: Path) -> tuple[Outcome, Judgement | None]:  # fmt: skip
    """Stages 2 and 3 for one submission: run it in its sandbox, judge it outside."""
    outcome = Outcome(submission.student, UNGRADABLE, max_score=spec.max_score, notes=list(submission.notes))  # fmt: skip
    assert submission.notebook is not None
    handed_in = submission.notebook.read_text(encoding="utf-8", errors="replace")
    notebook = sanitize(spec, read_submission(submission.notebook))
    job = runner_job(spec, notebook, mode="student", cell_timeout=settings.cell_timeout, limits=settings.limits, handed_in=handed_in)  # fmt: skip
    run = run_notebook(runner, job, cell_timeout=settings.cell_timeout, submission_timeout=settings.timeout)  # fmt: skip
    outcome.seconds = run.seconds
    write_log(log, run)
    if run.problem:
        outcome.reason = run.problem
        return outcome, None
    judgement = judge_run(spec, notebook, run)
    outcome.status, outcome.score = GRADED, judgement.score
    outcome.questions = judgement.scores
    outcome.notes += judgement.notes + run_notes(run, notebook)
    return outcome, judgement


def run_notes(run: RunResult, notebook: object) -> list[str]:
    """Notes on cells stopped by the time limit, and kernels lost and started again."""
    notes, lost = [], dict(run.lost)
    for index, cell in sorted(run.cells.items()):
        meta = notebook.cells[index].metadata.get("nbgrader", {})
        name = meta.get("grade_id") or f"cell {index + 1}"
        if index in lost:
            notes.append(f"{name}: {lost[index]}; the kernel was restarted and the cells before it run again")  # fmt: skip
        elif cell.status == "timeout":
            notes.append(f"{name} ran past the time limit and was interrupted")
    return notes


def write_log(path: Path, run: RunResult) -> None:
    """``logs/<lesson>/<student>.log``: how each cell ended, and what the sandbox printed."""
    lines = [f"## run: {run.problem or 'complete'} in {run.seconds:.1f} s"]
    for index, cell in sorted(run.cells.items()):
        errors = [f"{o['ename']}: {o['evalue'][:200]}" for o in cell.outputs if o["output_type"] == "error"]  # fmt: skip
        lines.append(f"cell {index + 1}: {cell.status}" + (f" ({errors[0]})" if errors else ""))
    lines += ["## sandbox log (last 64 kB)", run.log]
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite=True)


def record(course: Course, lesson: str, judged: dict[str, Judgement], outcomes: dict[str, Outcome], say: Say) -> None:  # fmt: skip
    """Stage 4: the judged scores into the gradebook; then lateness and earlier scores."""
    mark = time.monotonic()
    graded = {s: (j.notebook, j.scores) for s, j in judged.items()}
    with tempfile.TemporaryDirectory(prefix="mlcourse-record-") as staging:
        for student, problem in record_scores(course, lesson, graded, Path(staging)).items():
            outcomes[student].status, outcomes[student].reason = UNGRADABLE, problem
            outcomes[student].score = None
    say(f"recorded {len(graded)} scores in the gradebook ({time.monotonic() - mark:.1f} s)")
    late = course.seconds_late(lesson)
    course.add_students(sorted(outcomes))
    earlier = course.scores(lesson)
    for outcome in outcomes.values():
        if outcome.status == GRADED and late.get(outcome.student, 0.0) > 0:
            outcome.status = LATE
            outcome.notes.append(f"handed in {late[outcome.student] / 3600:.1f} h late")
        elif outcome.status not in (GRADED, LATE) and outcome.student in earlier:
            points = sum(v or 0.0 for v in earlier[outcome.student].values())
            outcome.notes.append(f"the gradebook keeps an earlier score of {points:g}")


def write_pages(course: Course, lesson: str, outcomes: dict[str, Outcome], say: Say) -> None:
    """Stage 5: the feedback page of every graded student."""
    mark = time.monotonic()
    graded = sorted(s for s, o in outcomes.items() if o.status in (GRADED, LATE))
    pages = write_feedback(course, lesson, graded)
    for student, page in pages.items():
        if isinstance(page, Path):
            outcomes[student].feedback = page
        else:
            outcomes[student].notes.append(f"no feedback page: {page}")
    say(f"wrote {len(pages)} feedback pages ({time.monotonic() - mark:.1f} s)")
