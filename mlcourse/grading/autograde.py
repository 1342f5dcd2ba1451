"""Grade a class's submissions of a lesson in parallel, with nbgrader, without losing a grade.

nbgrader's gradebook (SQLite by default) takes one writer at a time, and
``nbgrader autograde`` grades one submission after another. :func:`grade_lesson` splits
the work in two:

1. **Execute, in parallel.** Each submission is autograded by ``nbgrader autograde`` in a
   private course directory of its own (the lesson's source and a snapshot of the
   gradebook with every student's data deleted), by a pool of worker processes, with a
   time limit per cell and per submission. No worker writes the course's gradebook.
2. **Record, serially.** The executed notebooks are scored into the course's gradebook
   by nbgrader's own ``SaveAutoGrades`` and ``AssignLatePenalties`` (an autograde pass
   that does not execute anything), one process, one writer. Every score is then
   compared with the score the private run gave; a mismatch makes that submission
   "ungradable" instead of a wrong grade.

Feedback (``nbgrader generate_feedback``, which only reads the gradebook) is made in
parallel again, then the gradebook is exported to CSV and a per-submission report
(status, score, reason) is written.

Example:
    >>> default_workers() >= 1
    True
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from mlcourse.grading.config import CELL_TIMEOUT
from mlcourse.grading.course import Course, GradingError, for_assignment, run_converter
from mlcourse.grading.pool import WorkerPool
from mlcourse.grading.submissions import Submission, import_submissions
from mlcourse.grading.worker import private_config
from mlcourse.integrity import atomic_write_text
from mlcourse.notebooks import lesson_kernel_environment
from mlcourse.validation import check_float, check_int

GRADED, UNGRADABLE = "graded", "ungradable"
REPORT_FIELDS = ("student", "status", "score", "max_score", "reason", "notes")
FEEDBACK_TIMEOUT = 300.0  # seconds to turn one graded notebook into HTML
# nbgrader's tables that hold students and their submissions, grades and comments.
_STUDENT_TABLES = ("grade", "comment", "submitted_notebook", "submitted_assignment", "student")
RUN_ENV = "MLCOURSE_GRADING_RUN"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def default_workers() -> int:
    """All the CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Outcome:
    """What became of one submission."""

    student: str
    status: str
    score: float | None = None
    max_score: float | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    feedback: Path | None = None
    seconds: float = 0.0


@dataclass
class GradingReport:
    """The result of :func:`grade_lesson`."""

    lesson: str
    outcomes: list[Outcome]
    ignored: list[str]
    grades_csv: Path
    report_csv: Path
    seconds: float
    run_id: str = ""  # the MLCOURSE_GRADING_RUN value of its processes

    @property
    def ungradable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != GRADED]

    def summary(self) -> str:
        """A plain-text table of every submission, then what could not be graded."""
        lines = [f"{self.lesson}: {len(self.outcomes)} submissions in {self.seconds:.1f} s"]
        if not self.outcomes:
            lines.append("  no student folders found: nothing was graded")
        width = max([len(o.student) for o in self.outcomes] + [7])
        for o in self.outcomes:
            score = f"{o.score:g}/{o.max_score:g}" if o.score is not None else "-"
            detail = o.reason if o.status != GRADED else "; ".join(o.notes)
            lines.append(f"  {o.student:<{width}}  {o.status:<10}  {score:>9}  {detail}".rstrip())
        for entry in self.ignored:
            lines.append(f"  ignored {entry}")
        if self.ungradable:
            lines.append(f"Could not grade {len(self.ungradable)}:")
            lines += [f"  {o.student}: {o.reason}" for o in self.ungradable]
        lines.append(f"Gradebook export: {self.grades_csv}")
        lines.append(f"Report: {self.report_csv}")
        return "\n".join(lines)


def worker_environment(workers: int, run_id: str = "") -> dict[str, str]:
    """Environment of the grading workers and their kernels.

    The CPU (lessons' outputs and time limits assume it), no interactive plotting
    backend, no MLflow server of the grader's, the cores shared among the workers
    (unless thread counts are set), and ``MLCOURSE_GRADING_RUN=run_id``, which marks
    every process of one grading run (so a test can check that none outlives it).
    """
    env = lesson_kernel_environment(os.environ)
    env[RUN_ENV] = run_id
    env.pop("MLFLOW_TRACKING_URI", None)  # lesson 06 would log a student's runs there
    threads = str(max(1, default_workers() // workers))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


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
    progress: Callable[[str], None] | None = None,
) -> GradingReport:
    """Grade every submission of ``lesson``; see the module docstring for how.

    Args:
        course: the course directory, with ``lesson`` released.
        lesson: e.g. ``"01_gradient_descent"``.
        submissions: a folder of ``<student>/<lesson>.ipynb``; ``None`` grades what is in
            the course's ``submitted/`` folder.
        workers: submissions graded at once (default: every core).
        cell_timeout: seconds any one cell may run before it is interrupted (default: the
            course config's ``c.Execute.timeout``, 60 s unless changed there).
        submission_timeout: seconds one submission may take in all before its kernel is
            killed and it is reported as not gradable.
        force: replace different submissions already in the course (see
            :func:`~mlcourse.grading.submissions.import_submissions`).
        feedback: also write each student's HTML feedback.
        progress: called with a line of text as each submission finishes.

    Returns:
        the report; ``report.ungradable`` lists what could not be graded, with reasons.
    """
    started = time.monotonic()
    workers = check_int(
        "workers", workers if workers is not None else default_workers(), min_value=1
    )
    if cell_timeout is None:
        cell_timeout = int(course.config.Execute.get("timeout", CELL_TIMEOUT))
    cell_timeout = check_int("cell_timeout", cell_timeout, min_value=1)
    submission_timeout = check_float("submission_timeout", submission_timeout, min_value=1.0)
    run_id = uuid.uuid4().hex
    with course.lock():
        course.check_released(lesson)
        found, ignored = import_submissions(course, lesson, submissions, force=force)
        max_score = course.max_score(lesson)
        outcomes = {
            s.student: Outcome(
                s.student, UNGRADABLE, None, max_score, s.problem or "", list(s.notes)
            )
            for s in found
        }
        gradable = [s for s in found if s.problem is None]
        logs = course.root / "logs" / lesson
        logs.mkdir(parents=True, exist_ok=True)
        say = progress or (lambda line: None)
        say(f"{lesson}: grading {len(gradable)} of {len(found)} submissions with {workers} workers")

        with tempfile.TemporaryDirectory(prefix="mlcourse-grade-") as tmp:
            run = Path(tmp)
            size = max(1, min(workers, len(gradable)))  # no idle workers to start
            env = worker_environment(size, run_id)
            with WorkerPool(size, env=env, log_dir=run / "logs") as pool:
                if gradable:
                    executed = _execute(
                        course, lesson, gradable, outcomes, pool, run, logs, say,
                        cell_timeout, submission_timeout,
                    )  # fmt: skip
                    mark = time.monotonic()
                    _record(course, lesson, executed, run / "executed", outcomes)
                    say(
                        f"recorded {len(executed)} scores in the gradebook ({time.monotonic() - mark:.1f} s)"
                    )
                course.add_students(sorted(outcomes))
                earlier = course.scores(lesson)
                for outcome in outcomes.values():
                    if outcome.status != GRADED and outcome.student in earlier:
                        points = sum(v or 0.0 for v in earlier[outcome.student].values())
                        outcome.notes.append(f"the gradebook keeps an earlier score of {points:g}")
                if feedback:
                    mark = time.monotonic()
                    _feedback(course, lesson, outcomes, pool, logs)
                    say(f"wrote feedback ({time.monotonic() - mark:.1f} s)")

        ordered = [outcomes[s] for s in sorted(outcomes)]
        grades_csv = course.export()
        report_csv = write_report(course.root / "reports" / f"{lesson}.csv", ordered)
    seconds = time.monotonic() - started
    return GradingReport(lesson, ordered, ignored, grades_csv, report_csv, seconds, run_id)


def _execute(
    course: Course,
    lesson: str,
    gradable: list[Submission],
    outcomes: dict[str, Outcome],
    pool: WorkerPool,
    run: Path,
    logs: Path,
    say: Callable[[str], None],
    cell_timeout: int,
    submission_timeout: float,
) -> dict[str, tuple[Path, dict[str, float | None]]]:
    """Autograde each submission in a private course copy; return the executed notebooks."""
    mark = time.monotonic()
    template = _make_template(course, lesson, run / "template")
    jobs = [_prepare_private(course, lesson, s, template, run, cell_timeout) for s in gradable]
    say(f"prepared {len(jobs)} private course copies ({time.monotonic() - mark:.1f} s)")

    def done(job: dict, reply: dict) -> None:
        status = "executed" if reply.get("ok") else "FAILED"
        say(f"  {job['student']}: {status} ({reply.get('seconds', 0):.1f} s)")

    replies = pool.run(jobs, timeout=submission_timeout, on_done=done)
    executed = {}
    for submission, job, reply in zip(gradable, jobs, replies, strict=True):
        outcome = outcomes[submission.student]
        outcome.seconds = reply.get("seconds", 0.0)
        _write_log(logs / f"{submission.student}.log", "autograde", reply)
        private = Course(job["root"], private_config(course.config, job["root"]))
        notebook = private.notebook("autograded", lesson, submission.student)
        if reply.get("ok") and notebook.exists():
            executed[submission.student] = (notebook, reply["scores"])
            outcome.notes += execution_notes(nbformat.read(notebook, as_version=4))
        else:
            outcome.reason = failure_reason(reply, cell_timeout, submission_timeout)
    return executed


def _feedback(
    course: Course, lesson: str, outcomes: dict[str, Outcome], pool: WorkerPool, logs: Path
) -> None:
    """``nbgrader generate_feedback`` for every graded submission, in parallel (read-only)."""
    graded = [o for o in outcomes.values() if o.status == GRADED]
    jobs = [
        {"kind": "feedback", "root": str(course.root), "lesson": lesson, "student": o.student}
        for o in graded
    ]
    for outcome, reply in zip(graded, pool.run(jobs, timeout=FEEDBACK_TIMEOUT), strict=True):
        _write_log(logs / f"{outcome.student}.log", "feedback", reply, append=True)
        html = course.notebook("feedback", lesson, outcome.student)
        if reply.get("ok") and html.exists():
            outcome.feedback = html
        else:
            reason = failure_reason(reply, FEEDBACK_TIMEOUT, FEEDBACK_TIMEOUT)
            outcome.notes.append(f"no feedback file: {reason}")


def _make_template(course: Course, lesson: str, root: Path) -> Course:
    """A private course directory: the lesson's source and a gradebook without students.

    With a SQLite gradebook it is a snapshot of the course's, with every student's data
    deleted (fast, and no student's code sees another's grades). Otherwise (PostgreSQL)
    the lesson is released again into a fresh SQLite gradebook, whose stored cells must
    equal the course gradebook's: else the lesson changed since it was released there.
    """
    template = Course(root, private_config(course.config, root))
    source = template.notebook("source", lesson)
    source.parent.mkdir(parents=True)
    shutil.copytree(course.path("source", lesson), source.parent, dirs_exist_ok=True)
    database = _sqlite_path(course.db_url)
    if database is not None and database.exists():
        _snapshot_without_students(database, root / "gradebook.db")
        return template
    from nbgrader.converters import GenerateAssignment

    with for_assignment(template.coursedir, lesson, "."):
        converter = GenerateAssignment(coursedir=template.coursedir, config=template.config)
        converter.force = True
        run_converter(converter, f"nbgrader generate_assignment {lesson} (grading copy)")
    if _stored_cells(template, lesson) != _stored_cells(course, lesson):
        raise GradingError(
            f"{course.notebook('source', lesson)} no longer matches what the gradebook stored "
            f"when {lesson} was released; release it again with "
            f"`mlcourse-grade release {lesson} --course {course.root} --force`."
        )
    return template


def _sqlite_path(db_url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(db_url[len(prefix) :]) if db_url.startswith(prefix) else None


def _snapshot_without_students(database: Path, target: Path) -> None:
    """Copy a SQLite gradebook consistently, then delete (and VACUUM away) all student data."""
    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy_,
    ):
        source.backup(copy_)
        with copy_:
            for table in _STUDENT_TABLES:
                copy_.execute(f"DELETE FROM {table}")
        copy_.execute("VACUUM")


def _stored_cells(course: Course, lesson: str) -> dict[str, tuple]:
    from mlcourse.grading.course import nbgrader_environment

    with nbgrader_environment(), course.gradebook() as gb:
        notebook = gb.find_notebook(lesson, lesson)
        cells = {c.name: (c.cell_type, c.checksum, c.locked) for c in notebook.source_cells}
        for c in notebook.grade_cells:
            cells[c.name] += (c.max_score,)
    return cells


def _prepare_private(
    course: Course,
    lesson: str,
    submission: Submission,
    template: Course,
    run: Path,
    cell_timeout: int,
) -> dict:
    root = run / "students" / submission.student
    shutil.copytree(template.root, root, ignore=shutil.ignore_patterns("release", "*.tmp"))
    private = Course(root, private_config(course.config, root))
    target = private.notebook("submitted", lesson, submission.student)
    target.parent.mkdir(parents=True)
    assert submission.notebook is not None
    shutil.copyfile(submission.notebook, target)
    stamp = submission.notebook.parent / "timestamp.txt"
    if stamp.exists():
        shutil.copyfile(stamp, target.parent / "timestamp.txt")
    return {
        "kind": "autograde",
        "root": str(root),
        "config_root": str(course.root),
        "lesson": lesson,
        "student": submission.student,
        "cell_timeout": cell_timeout,
    }


def _record(
    course: Course,
    lesson: str,
    executed: dict[str, tuple[Path, dict[str, float | None]]],
    staging: Path,
    outcomes: dict[str, Outcome],
) -> None:
    """Score the executed notebooks into the course gradebook, serially, then check them."""
    if not executed:
        return
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, SaveAutoGrades

    for student, (notebook, _) in executed.items():
        target = staging / student / lesson / f"{lesson}.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copyfile(notebook, target)
        stamp = course.path("submitted", lesson, student) / "timestamp.txt"
        if stamp.exists():
            shutil.copyfile(stamp, target.parent / "timestamp.txt")
    config = copy.deepcopy(course.config)
    config.CourseDirectory.submitted_directory = str(staging)
    config.Autograde.sanitize_preprocessors = [CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    recorder = Course(course.root, config)
    with for_assignment(recorder.coursedir, lesson, "*"):
        converter = Autograde(coursedir=recorder.coursedir, config=config)
        converter.force = True
        try:
            run_converter(converter, "recording the scores in the gradebook")
        except GradingError as error:
            failure = str(error)
        else:
            failure = ""
    recorded = course.scores(lesson)
    for student, (_, scores) in executed.items():
        outcome = outcomes[student]
        if recorded.get(student) != scores:
            outcome.reason = (
                f"the gradebook holds {recorded.get(student)} but grading gave {scores}"
                + (f" ({failure.splitlines()[-1]})" if failure else "")
            )
            continue
        outcome.status = GRADED
        outcome.score = float(sum(v or 0.0 for v in scores.values()))


def execution_notes(notebook: nbformat.NotebookNode) -> list[str]:
    """Cells of an autograded notebook that were stopped by the per-cell time limit."""
    notes = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index}")
            notes.append(f"{name} ran past the time limit and was interrupted")
    return notes


def failure_reason(reply: dict, cell_timeout: float, submission_timeout: float) -> str:
    """One line saying why a worker's job failed, for the report."""
    text = f"{reply.get('error', '')}\n{reply.get('log', '')}"
    if reply.get("timed_out"):
        return f"timed out: grading took longer than {submission_timeout:g} s in all"
    if "DeadKernelError" in text:
        return "the kernel died (the code ended the Python process or ran out of memory)"
    if "UnresponsiveKernelError" in text or "Timeout waiting for IOPub" in text:
        return (
            f"timed out: a cell ran past {cell_timeout:g} s and the kernel could not be interrupted"
        )
    if "worker died" in text or "worker exited" in text:
        return reply.get("error", "the grading worker died")
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("[", "Please see")):
            return f"nbgrader failed: {line[:300]}"
    return "nbgrader failed without a message"


def _write_log(path: Path, step: str, reply: dict, *, append: bool = False) -> None:
    text = (
        f"## {step}: {'ok' if reply.get('ok') else 'failed'} in {reply.get('seconds', 0):.1f} s\n"
    )
    text += reply.get("log", "") + reply.get("error", "") + reply.get("trace", "") + "\n"
    if append and path.exists():
        text = path.read_text(encoding="utf-8") + text
    atomic_write_text(path, text, overwrite=True)


def write_report(path: Path, outcomes: list[Outcome]) -> Path:
    """Write the per-submission report CSV (``REPORT_FIELDS``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for o in outcomes:
        score = "" if o.score is None else f"{o.score:g}"
        max_score = "" if o.max_score is None else f"{o.max_score:g}"
        writer.writerow([o.student, o.status, score, max_score, o.reason, "; ".join(o.notes)])
    return atomic_write_text(path, buffer.getvalue(), overwrite=True)
