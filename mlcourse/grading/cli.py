"""``mlcourse-grade``: release lessons, grade a class in sandboxes, export grades for an LMS.

    mlcourse-grade release 01_gradient_descent --course course
    mlcourse-grade roster roster.csv --course course
    mlcourse-grade grade 01_gradient_descent submissions/ --course course --workers 4
    mlcourse-grade export --course course --format canvas

``grade`` exits with 0 when every submission was graded, 1 when some could not be (or
are missing; they are listed with the reason), 2 when the command itself is wrong or
cannot run (no sandbox and no ``--unsafe-no-sandbox``). Every command prints plain text
and takes all its input from the command line, so scripts (a JupyterHub service, CI) can
drive it.

Example:
    >>> main(["grade", "01_gradient_descent", "--course", "course", "--workers", "0"])
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlcourse.arguments import check_float, check_int

EXIT_OK, EXIT_UNGRADABLE, EXIT_USAGE = 0, 1, 2
FORMATS = ("csv", "canvas", "moodle")  # = mlcourse.grading.export.FORMATS


def _at_least(name: str, kind: type, minimum: float = 1) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            if kind is int:
                return check_int(name, value, min_value=int(minimum))
            return check_float(name, value, min_value=float(minimum))
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name
    return parse


# --option, Limits field, smallest value, help (the default is appended)
SANDBOX_OPTIONS = (
    ("--memory-mb", "memory_mb", 256, "memory per process in MiB"),
    ("--cpu-seconds", "cpu_seconds", 1, "CPU time per process"),
    ("--max-processes", "processes", 16, "processes and threads at once"),
    ("--disk-mb", "disk_mb", 16, "size of the working folder and of /tmp in MiB"),
    ("--output-kb", "output_kb", 1, "printed text kept per cell in KiB"),
)


def _add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    from mlcourse.grading.sandbox import Limits

    defaults = Limits()
    group = parser.add_argument_group("sandbox (each submission's limits)")
    for flag, field, minimum, text in SANDBOX_OPTIONS:
        default = getattr(defaults, field)
        group.add_argument(
            flag,
            dest=field,
            type=_at_least(flag[2:], int, minimum),
            default=default,
            help=f"{text} (default: {default})",
        )
    group.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run student code WITHOUT a sandbox (trusted submissions only; the report says so)",
    )


def _limits(args: argparse.Namespace) -> object:
    from mlcourse.grading.sandbox import Limits

    return Limits(**{field: getattr(args, field) for _, field, _, _ in SANDBOX_OPTIONS})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcourse-grade",
        description="Release mlcourse lessons as nbgrader assignments, grade them in "
        "sandboxes, export grades.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser(
        "release",
        help="make the student version of lessons in a course directory",
        description="Create the course directory if needed, run nbgrader generate_assignment "
        "for each lesson (release/<lesson>/<lesson>.ipynb is what students get), then run the "
        "solution in the grading sandbox to check that it passes its own tests there.",
    )
    release.add_argument("lessons", nargs="+", metavar="LESSON", help="e.g. 01_gradient_descent")
    release.add_argument("--course", required=True, type=Path, help="the course directory")
    release.add_argument(
        "--lessons-dir",
        type=Path,
        default=None,
        help="folder of the worked lessons (default: the course's notebooks/)",
    )
    release.add_argument(
        "--force",
        action="store_true",
        help="release a lesson again although it changed since its last release",
    )
    release.add_argument(
        "--no-check",
        action="store_true",
        help="do not run the solution in the sandbox now (grading will)",
    )
    _add_sandbox_options(release)

    roster = commands.add_parser(
        "roster",
        help="set the class roster (names, e-mails, LMS ids)",
        description="Check a roster CSV (columns: student_id, first_name, last_name, email, "
        "lms_user_id, sis_user_id, sis_login_id, section, id_number; only student_id is "
        "required) and keep it as COURSE/roster.csv.",
    )
    roster.add_argument("file", type=Path, metavar="FILE", help="the roster CSV")
    roster.add_argument("--course", required=True, type=Path, help="the course directory")
    roster.add_argument("--force", action="store_true", help="replace a different roster")

    grade = commands.add_parser(
        "grade",
        help="grade every submission of a lesson, each in its own sandbox, in parallel",
        description="Grade SUBMISSIONS/<student>/<lesson>.ipynb (or, without SUBMISSIONS, "
        "what is in the course's submitted/ folder) in lite mode, each submission in a "
        "sandbox of its own; record the scores in nbgrader's gradebook; write feedback/, "
        "reports/<lesson>.csv and grades.csv; list what could not be graded and why.",
    )
    grade.add_argument("lesson", metavar="LESSON", help="a released lesson")
    grade.add_argument(
        "submissions",
        nargs="?",
        type=Path,
        metavar="SUBMISSIONS",
        help="folder of <student>/<lesson>.ipynb (default: the course's submitted/)",
    )
    grade.add_argument("--course", required=True, type=Path, help="the course directory")
    grade.add_argument(
        "--workers",
        type=_at_least("workers", int),
        default=None,
        help="submissions graded at once (default: all cores)",
    )
    grade.add_argument(
        "--timeout",
        type=_at_least("timeout", int),
        default=None,
        help="seconds per cell before it is interrupted (default: the course config, 60)",
    )
    grade.add_argument(
        "--submission-timeout",
        type=_at_least("submission-timeout", float),
        default=900.0,
        help="seconds per submission in all before it is stopped (default: 900)",
    )
    grade.add_argument(
        "--force",
        action="store_true",
        help="replace submissions already in the course that differ from SUBMISSIONS",
    )
    grade.add_argument("--no-feedback", action="store_true", help="skip the feedback pages")
    _add_sandbox_options(grade)

    export = commands.add_parser(
        "export",
        help="write the grades for an LMS (csv, canvas, moodle)",
        description="Write every student's status and scores: csv (grades.csv, per question), "
        "canvas (Canvas gradebook import) or moodle (Moodle grade import). Missing and "
        "ungradable submissions get an empty score, never 0.",
    )
    export.add_argument("--course", required=True, type=Path, help="the course directory")
    export.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    export.add_argument(
        "--to",
        type=Path,
        default=None,
        help="the file (default: COURSE/grades.csv, grades-canvas.csv, grades-moodle.csv)",
    )
    export.add_argument(
        "--lesson",
        dest="lessons",
        action="append",
        metavar="LESSON",
        help="only this lesson (repeatable; default: all released)",
    )
    return parser


def _existing_course(path: Path) -> object:
    from mlcourse.grading.course_directory import Course

    if not path.is_dir():
        raise FileNotFoundError(
            f"course directory {str(path)!r} does not exist; create it with "
            "`mlcourse-grade release LESSON --course DIR`."
        )
    return Course(path)


def _release(args: argparse.Namespace) -> int:
    from mlcourse.grading.course_directory import Course
    from mlcourse.grading.reference import check_solution
    from mlcourse.grading.sandbox import sandbox_problem

    course = Course.create(args.course)
    for lesson in args.lessons:
        path = course.release(lesson, args.lessons_dir, force=args.force)
        print(f"released {lesson}: {path}")
        if args.no_check:
            continue
        problem = None if args.unsafe_no_sandbox else sandbox_problem()
        if problem is not None:
            print(f"note: the solution was not run ({problem}); grading will need a sandbox")
            continue
        check_solution(
            course, lesson, limits=_limits(args), sandbox=not args.unsafe_no_sandbox, progress=print
        )
    return EXIT_OK


def _grade(args: argparse.Namespace) -> int:
    from mlcourse.grading.pipeline import grade_lesson

    report = grade_lesson(
        _existing_course(args.course),
        args.lesson,
        args.submissions,
        workers=args.workers,
        cell_timeout=args.timeout,
        submission_timeout=args.submission_timeout,
        force=args.force,
        feedback=not args.no_feedback,
        limits=_limits(args),
        sandbox=not args.unsafe_no_sandbox,
        progress=lambda line: print(line, flush=True),
    )
    print(report.summary())
    return EXIT_UNGRADABLE if report.ungradable else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlcourse-grade`` with ``argv`` (default: the command line); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse has printed the problem and the usage
        return int(stop.code or 0)
    from mlcourse.grading.course_directory import GradingError

    try:
        if args.command == "release":
            return _release(args)
        if args.command == "grade":
            return _grade(args)
        course = _existing_course(args.course)
        if args.command == "roster":
            from mlcourse.grading.roster import install_roster

            print(f"wrote {install_roster(course, args.file, force=args.force)}")
            return EXIT_OK
        from mlcourse.grading.export import export

        target, warnings = export(course, args.to, format=args.format, lessons=args.lessons)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"wrote {target}")
        return EXIT_OK
    except (ValueError, TypeError, OSError, GradingError) as error:
        print(f"mlcourse-grade: error: {error}", file=sys.stderr)
        return EXIT_USAGE
