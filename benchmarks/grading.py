"""Grading throughput: plain serial ``nbgrader autograde`` against ``mlcourse-grade grade``.

    python benchmarks/grading.py                                  # 12 students, fixture lesson
    python benchmarks/grading.py --lesson 01_gradient_descent --students 8 --workers 2

Builds a class of synthetic submissions (students take turns at answering everything,
nothing, and all but one exercise), releases the lesson into two fresh course
directories, then grades the class in each: once with plain ``nbgrader autograde`` (one
process, one submission after another) and once with ``mlcourse-grade grade`` (N
workers, without feedback, which nbgrader's command does not write either). Both
wall times include starting the command. Checks that both gave every student the
expected score, then prints a Markdown table with submissions per minute and the ratio.

The default lesson is the tiny grading fixture (tests/fixtures/lessons/), where fixed
costs dominate; a real lesson (``--lesson 01_gradient_descent``) shows the throughput on
real work. Timings vary with the machine's load: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlcourse.grading.autograde import (  # noqa: E402
    THREAD_VARIABLES,
    default_workers,
    worker_environment,
)
from mlcourse.grading.course import Course  # noqa: E402
from mlcourse.grading.synthetic import write_class  # noqa: E402
from mlcourse.notebooks import NOTEBOOK_DIR  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "lessons"
FIXTURE = "90_grading_fixture"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default=FIXTURE, help=f"default: {FIXTURE}")
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args(argv)
    lessons = FIXTURES if args.lesson == FIXTURE else NOTEBOOK_DIR

    with tempfile.TemporaryDirectory(prefix="mlcourse-bench-") as tmp:
        base = Path(tmp)
        serial = Course.create(base / "serial")
        serial.release(args.lesson, lessons)
        shutil.copytree(serial.root, base / "parallel")
        parallel = Course(base / "parallel")
        expected = write_class(serial, args.lesson, base / "class", args.students)
        for student in expected:
            target = serial.notebook("submitted", args.lesson, student)
            target.parent.mkdir(parents=True)
            shutil.copyfile(base / "class" / student / f"{args.lesson}.ipynb", target)

        # Both get the environment the workers get (CPU, no plotting backend); the serial
        # run's one kernel may use every core, and mlcourse-grade shares them out itself.
        env = worker_environment(1)
        shared = {k: v for k, v in env.items() if k not in THREAD_VARIABLES}
        plain = timed(
            [sys.executable, "-m", "nbgrader", "autograde", args.lesson], serial.root, env
        )
        ours = timed(
            [sys.executable, "-m", "mlcourse.grading", "grade", args.lesson, str(base / "class"),
             "--course", str(parallel.root), "--workers", str(args.workers), "--no-feedback"],
            ROOT, shared,
        )  # fmt: skip
        for course in (serial, parallel):
            got = {s: sum(v or 0.0 for v in g.values()) for s, g in course.scores(args.lesson).items()}  # fmt: skip
            if got != expected:
                raise SystemExit(f"wrong grades in {course.root.name}: {got} != {expected}")

    n = args.students
    print(
        f"Grading {n} synthetic submissions of {args.lesson} on {platform.machine()} with "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end); "
        "every grade checked.\n"
    )
    print("| command | workers | wall time | submissions / min | ratio |")
    print("|---|---:|---:|---:|---:|")
    print(f"| `nbgrader autograde` (serial) | 1 | {plain:.1f} s | {60 * n / plain:.1f} | 1.00x |")
    print(
        f"| `mlcourse-grade grade` | {args.workers} | {ours:.1f} s | {60 * n / ours:.1f} "
        f"| {plain / ours:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
