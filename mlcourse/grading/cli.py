"""``mlcourse-grade``: release lessons as nbgrader assignments and grade a class in parallel.

    mlcourse-grade release 01_gradient_descent --course course
    mlcourse-grade grade 01_gradient_descent submissions/ --course course --workers 4
    mlcourse-grade export --course course --to grades.csv

``grade`` exits with 0 when every submission was graded, 1 when some could not be
(they are listed with the reason), 2 when the command itself is wrong.

Example:
    >>> main(["grade", "01_gradient_descent", "--course", "course", "--workers", "0"])
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlcourse.validation import check_float, check_int

EXIT_OK, EXIT_UNGRADABLE, EXIT_USAGE = 0, 1, 2


def _at_least_one(name: str, kind: type) -> object:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            if kind is int:
                return check_int(name, value, min_value=1)
            return check_float(name, value, min_value=1.0)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcourse-grade",
        description="Release mlcourse lessons as nbgrader assignments and grade them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser(
        "release",
        help="make the student version of lessons in a course directory",
        description="Create the course directory if needed, then run nbgrader "
        "generate_assignment for each lesson: release/<lesson>/<lesson>.ipynb is what "
        "students get (solutions and hidden tests removed).",
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

    grade = commands.add_parser(
        "grade",
        help="autograde every submission of a lesson, in parallel",
        description="Autograde SUBMISSIONS/<student>/<lesson>.ipynb (or, without "
        "SUBMISSIONS, what is in the course's submitted/ folder) in lite mode, record the "
        "scores in nbgrader's gradebook, write feedback/, grades.csv and "
        "reports/<lesson>.csv, and list what could not be graded and why.",
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
        type=_at_least_one("workers", int),
        default=None,
        help="submissions graded at once (default: all cores)",
    )
    grade.add_argument(
        "--timeout",
        type=_at_least_one("timeout", int),
        default=None,
        help="seconds per cell before it is interrupted (default: the course config, 60)",
    )
    grade.add_argument(
        "--submission-timeout",
        type=_at_least_one("submission-timeout", float),
        default=900.0,
        help="seconds per submission in all before it is stopped (default: 900)",
    )
    grade.add_argument(
        "--force",
        action="store_true",
        help="replace submissions already in the course that differ from SUBMISSIONS",
    )
    grade.add_argument("--no-feedback", action="store_true", help="skip the HTML feedback")

    export = commands.add_parser(
        "export",
        help="write the gradebook as CSV (nbgrader export)",
        description="Write nbgrader's CSV export of the whole gradebook.",
    )
    export.add_argument("--course", required=True, type=Path, help="the course directory")
    export.add_argument(
        "--to", type=Path, default=None, help="the CSV file (default: COURSE/grades.csv)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlcourse-grade`` with ``argv`` (default: the command line); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse has printed the problem and the usage
        return int(stop.code or 0)
    from mlcourse.grading.course import Course, GradingError

    try:
        if args.command == "release":
            course = Course.create(args.course)
            for lesson in args.lessons:
                path = course.release(lesson, args.lessons_dir, force=args.force)
                print(f"released {lesson}: {path}")
            return EXIT_OK
        if not args.course.is_dir():
            raise FileNotFoundError(
                f"course directory {str(args.course)!r} does not exist; create it with "
                "`mlcourse-grade release LESSON --course DIR`."
            )
        course = Course(args.course)
        if args.command == "export":
            print(f"wrote {course.export(args.to)}")
            return EXIT_OK
        from mlcourse.grading.autograde import grade_lesson

        report = grade_lesson(
            course,
            args.lesson,
            args.submissions,
            workers=args.workers,
            cell_timeout=args.timeout,
            submission_timeout=args.submission_timeout,
            force=args.force,
            feedback=not args.no_feedback,
            progress=lambda line: print(line, flush=True),
        )
        print(report.summary())
        return EXIT_UNGRADABLE if report.ungradable else EXIT_OK
    except (ValueError, TypeError, OSError, GradingError) as error:
        print(f"mlcourse-grade: error: {error}", file=sys.stderr)
        return EXIT_USAGE
