"""Re-run lessons in lite mode and write their outputs back (``course.py execute``).

python3 course.py execute                       # every lesson
python3 course.py execute notebooks/03_*.ipynb  # some lessons

The outputs are made with the course's pinned kernels, and the notebook records their
numerics fingerprint. A lesson that prints a comparison with its own recorded fingerprint
(lesson 00) would print a stale one when the fingerprint changes, so such a lesson is run
a second time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat

from mlcourse.lesson_outputs import recorded_fingerprint
from mlcourse.notebooks import execute_lesson, lesson_paths, notebook_problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lesson")
    args = parser.parse_args()
    paths = args.notebooks or lesson_paths()
    failed = 0
    for path in paths:
        start = time.perf_counter()
        before = recorded_fingerprint(nbformat.read(path, as_version=4))
        nb = execute_lesson(path, path)
        if before != recorded_fingerprint(nb):
            nb = execute_lesson(path, path)
        problems = notebook_problems(nb)
        status = "ok" if not problems else "PROBLEMS: " + "; ".join(problems)
        failed += bool(problems)
        print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s, {status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
