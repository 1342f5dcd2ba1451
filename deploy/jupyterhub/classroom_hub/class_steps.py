"""``mlcourse-class``: each step of a class through nbgrader's exchange, as one command.

An instructor runs it in a terminal of their JupyterLab on the hub (it is on their
``PATH``; the course directory is ``$MLCOURSE_COURSE_DIR``). Each step prints and runs
the ``mlcourse-grade`` and ``nbgrader`` commands it stands for, in the course directory,
and stops at the first that fails, with its exit code:

==========================  ==================================================================
``release LESSON``          ``mlcourse-grade release`` (student version, solution checked in
                            the sandbox), then ``nbgrader release_assignment`` (to the exchange)
``collect LESSON``          ``nbgrader collect --update``: submissions into ``submitted/``
``grade LESSON``            ``mlcourse-grade grade``: every submission in its own sandbox, in
                            parallel; scores, reports, feedback without hidden tests
``return LESSON``           ``nbgrader release_feedback``: students fetch it in their
                            Assignments tab (:func:`add_submission_secrets` first)
==========================  ==================================================================

Options after the lesson go to ``mlcourse-grade`` (``release``: ``--lessons-dir``,
``--force``; ``grade``: ``--workers``, ``--timeout``, ...); ``release --force`` also
replaces an earlier release in the exchange.

Example:
    >>> for command in step_commands("release", "01_gradient_descent", ["--force"], "/c"):
    ...     print(" ".join(command))
    mlcourse-grade release 01_gradient_descent --course /c --force
    nbgrader release_assignment 01_gradient_descent --force
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlcourse.arguments import check_choice

COURSE_ENV = "MLCOURSE_COURSE_DIR"
STEPS = ("release", "collect", "grade", "return")
USAGE = "usage: mlcourse-class {release,collect,grade,return} LESSON [OPTIONS]"


def step_commands(step: str, lesson: str, options: list[str], course: str) -> list[list[str]]:
    """The commands of ``step`` for ``lesson`` in course directory ``course``."""
    check_choice("step", step, STEPS)
    if not lesson or lesson.startswith("-"):
        raise ValueError(f"lesson={lesson!r} is not a lesson name; {USAGE}")
    if step == "release":
        again = ["--force"] if "--force" in options else []
        return [
            ["mlcourse-grade", "release", lesson, "--course", course, *options],
            ["nbgrader", "release_assignment", lesson, *again],
        ]
    if step == "grade":
        return [["mlcourse-grade", "grade", lesson, "--course", course, *options]]
    if options:
        raise ValueError(f"{step} takes no options, got {options}; {USAGE}")
    if step == "collect":
        return [["nbgrader", "collect", lesson, "--update"]]
    return [["nbgrader", "release_feedback", lesson]]


def add_submission_secrets(course: str | os.PathLike[str], lesson: str) -> list[str]:
    """Put each submission's ``submission_secret.txt`` next to its feedback page, where
    ``nbgrader release_feedback`` needs it (the exchange names a student's feedback file
    after it, so nobody else can guess the name). ``mlcourse-grade``'s feedback pages
    do not carry it; nbgrader's own ``generate_feedback`` would. Returns the students
    whose secret was added."""
    root = Path(course)
    added = []
    for page_folder in sorted(root.glob(f"feedback/*/{lesson}")):
        student = page_folder.parent.name
        secret = root / "submitted" / student / lesson / "submission_secret.txt"
        target = page_folder / "submission_secret.txt"
        if secret.is_file() and not target.exists():
            shutil.copyfile(secret, target)
            added.append(student)
    return added


def main(argv: list[str] | None = None) -> int:
    """Run a step; returns the exit code of the first command that fails, else 0."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.split("Example:")[0].strip() if args[:1] in (["-h"], ["--help"]) else USAGE)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    course = os.environ.get(COURSE_ENV)
    if not course or not os.path.isdir(course):
        print(
            f"mlcourse-class: ${COURSE_ENV} does not name the course directory ({course!r}); "
            "run it in a terminal of an instructor's JupyterLab on the class hub.",
            file=sys.stderr,
        )
        return 2
    try:
        commands = step_commands(args[0], args[1], args[2:], course)
    except ValueError as error:
        print(f"mlcourse-class: {error}", file=sys.stderr)
        return 2
    if args[0] == "return":
        add_submission_secrets(course, args[1])
    for command in commands:
        print("+", " ".join(command), flush=True)
        code = subprocess.call(command, cwd=course)
        if code != 0:
            print(
                f"mlcourse-class: `{' '.join(command)}` failed (exit code {code})", file=sys.stderr
            )
            return code
    return 0
