"""Write the student copies of the lessons (``python3 course.py student``).

python3 course.py student                   # regenerate notebooks/student/NN_topic.ipynb
python3 course.py student --check           # exit 1 if a copy is missing or stale (CI)
python3 course.py student --hide-solutions  # also collapse the solution cells of the
                                            # worked lessons (rewrites that metadata only)

A student copy is what ``mlcourse-grade release`` hands out: solutions and hidden tests
removed (nbgrader's own preprocessors), the lite-mode outputs of the other cells kept.
Every lesson with graded exercises gets one; lesson 00 has none and is opened directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlcourse.course_files import notebooks_dir  # noqa: E402
from mlcourse.grading.student import (  # noqa: E402
    hide_solutions,
    lessons_with_exercises,
    student_copies_dir,
    student_copy_problems,
    visible_solutions,
    write_student_copies,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that the copies are current"
    )
    parser.add_argument(
        "--hide-solutions",
        action="store_true",
        help="collapse every solution cell of the worked lessons in notebooks/",
    )
    parser.add_argument("--lessons", type=Path, default=notebooks_dir(), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=student_copies_dir(), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.check:
        problems = student_copy_problems(args.lessons, args.out)
        for lesson in lessons_with_exercises(args.lessons):
            for grade_id in visible_solutions_of(lesson):
                problems.append(
                    f"{lesson.name}: solution cell {grade_id} is not collapsed "
                    "(run `python3 course.py student --hide-solutions`)"
                )
        for problem in problems:
            print(problem)
        if any("collapsed" not in p for p in problems):
            print("Regenerate the copies with `python3 course.py student`.")
        if problems:
            return 1
        print(f"student copies in {args.out} are current.")
        return 0

    if args.hide_solutions:
        for lesson in lessons_with_exercises(args.lessons):
            hidden = hide_solutions(lesson)
            if hidden:
                print(f"{lesson.name}: collapsed solution cells {', '.join(hidden)}")
    for name, status in write_student_copies(args.lessons, args.out).items():
        print(f"{args.out.name}/{name}: {status}")
    leftovers = [p for p in student_copy_problems(args.lessons, args.out) if "no lesson" in p]
    for problem in leftovers:
        print(f"warning: {problem}; delete it if the lesson was removed")
    return 0


def visible_solutions_of(path: Path) -> list[str]:
    import nbformat

    return visible_solutions(nbformat.read(path, as_version=4))


if __name__ == "__main__":
    raise SystemExit(main())
