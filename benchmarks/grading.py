"""Grading throughput: plain serial ``nbgrader autograde`` against sandboxed ``mlcourse-grade grade``.

    python benchmarks/grading.py                                   # 20 students, lesson 01, 2 workers
    python benchmarks/grading.py --lesson 90_grading_fixture --students 12
    python benchmarks/grading.py --unsandboxed                     # also time the sandbox's cost

Builds a class of synthetic submissions (students take turns at answering everything,
nothing, and all but one exercise), releases the lesson into two fresh course
directories, then grades the class in each: with plain ``nbgrader autograde`` (one
process, one submission after another) and with ``mlcourse-grade grade`` (N workers,
each submission in its own bubblewrap sandbox, without feedback pages, which nbgrader's
command does not write either). Both get the lesson kernels' environment (CPU, pinned
numeric kernels, one thread per kernel). ``mlcourse-grade release`` runs the solution in
the sandbox once and caches its recorded checks (as nbgrader's ``generate_assignment``,
release is not part of the timed grading); its time is printed too. Wall and CPU times
include starting each command. Every student's score is checked against the expected
one; the script prints a Markdown table with the ratio. Take the final measurement on an
otherwise idle machine (the course's helpers use ``flock -x /tmp/mlcourse-cpu.lock``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from grading_support.synthetic import write_class  # noqa: E402

from mlcourse.grading.course_directory import Course  # noqa: E402
from mlcourse.notebooks import NOTEBOOK_DIR, lesson_kernel_environment  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "lessons"
FIXTURE = "90_grading_fixture"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``; return (wall seconds, CPU seconds of it and its children, output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return wall, cpu, result.stdout


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lesson", default="01_gradient_descent", help="default: 01_gradient_descent"
    )
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--unsandboxed", action="store_true", help="also grade with --unsafe-no-sandbox"
    )
    args = parser.parse_args(argv)
    lessons = FIXTURES if args.lesson == FIXTURE else NOTEBOOK_DIR
    env = lesson_kernel_environment(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    grade = [sys.executable, "-m", "mlcourse.grading"]

    with tempfile.TemporaryDirectory(prefix="mlcourse-bench-") as tmp:
        base = Path(tmp)
        serial = Course.create(base / "serial")
        serial.release(args.lesson, lessons)
        release_wall, _, _ = timed(
            [
                *grade,
                "release",
                args.lesson,
                "--course",
                str(base / "parallel"),
                "--lessons-dir",
                str(lessons),
            ],
            ROOT,
            env,
        )
        courses = {"parallel": Course(base / "parallel")}
        if args.unsandboxed:
            shutil.copytree(base / "parallel", base / "unsandboxed")
            courses["unsandboxed"] = Course(base / "unsandboxed")
        expected = write_class(serial, args.lesson, base / "class", args.students)
        for student in expected:
            target = serial.notebook("submitted", args.lesson, student)
            target.parent.mkdir(parents=True)
            shutil.copyfile(base / "class" / student / f"{args.lesson}.ipynb", target)

        rows = []
        wall, cpu, _ = timed(
            [sys.executable, "-m", "nbgrader", "autograde", args.lesson], serial.root, env
        )
        rows.append(("`nbgrader autograde` (serial)", 1, wall, cpu))
        options = ["--workers", str(args.workers), "--no-feedback"]
        for name, course in courses.items():
            extra = ["--unsafe-no-sandbox"] if name == "unsandboxed" else []
            command = [
                *grade,
                "grade",
                args.lesson,
                str(base / "class"),
                "--course",
                str(course.root),
                *options,
                *extra,
            ]
            wall, cpu, _ = timed(command, ROOT, env)
            label = (
                "`mlcourse-grade grade`, sandboxed"
                if name == "parallel"
                else "`mlcourse-grade grade --unsafe-no-sandbox`"
            )
            rows.append((label, args.workers, wall, cpu))
        for course in [serial, *courses.values()]:
            got = {
                s: sum(v or 0.0 for v in g.values()) for s, g in course.scores(args.lesson).items()
            }
            if got != expected:
                raise SystemExit(f"wrong grades in {course.root.name}: {got} != {expected}")

    n = args.students
    print(
        f"Grading {n} synthetic submissions of {args.lesson} on {cpu_name()} ({os.cpu_count()} "
        f"cores; load average {os.getloadavg()[0]:.1f} at the end); every grade checked. "
        f"`mlcourse-grade release` (solution run in the sandbox, cached) took {release_wall:.1f} s.\n"
    )
    print("| command | workers | wall time | CPU time | submissions / min | wall vs serial |")
    print("|---|---:|---:|---:|---:|---:|")
    serial_wall = rows[0][2]
    for label, workers, wall, cpu in rows:
        print(
            f"| {label} | {workers} | {wall:.1f} s | {cpu:.1f} s | {60 * n / wall:.1f} | {wall / serial_wall:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
