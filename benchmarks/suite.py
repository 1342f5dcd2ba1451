"""How long the whole test suite takes, and where the time goes.

    python benchmarks/suite.py            # the suite as `course.py test` runs it (set up first)
    python benchmarks/suite.py -k lesson  # any pytest arguments

Runs pytest once, as `course.py test` does (two xdist workers, see tests/conftest.py), and
prints a table: each group of tests (a test module, or every module that reads lesson runs,
with the lesson runs they wait for), the worker that ran it and when, and the wall time of
the whole suite. The suite's budget is 8 minutes on 2 cores, set-up excluded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 8 * 60


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "times.json"
        env = {**os.environ, "MLCOURSE_SUITE_TIMES": str(times)}
        start = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=ROOT,
            env=env,
        )
        wall = time.time() - start
        figures = json.loads(times.read_text()) if times.exists() else {}
    print(
        f"\nTest suite on {platform.machine()}, {os.cpu_count()} cores (exit status {done.returncode})\n"
    )
    print(table(figures, start, wall))
    return done.returncode


def table(figures: dict, start: float, wall: float) -> str:
    """The markdown table: each group of tests with its worker and when it ran.

    >>> print(table({"lesson_runs": {"runs": 2, "seconds": 30.0},
    ...              "groups": {"lesson-runs": [100.0, 140.0, "gw0"]}}, 99.0, 45.0))
    | group of tests | worker | from (s) | to (s) | seconds |
    |---|---|---:|---:|---:|
    | lesson-runs (2 lesson runs in 30 s) | gw0 | 1 | 41 | 40 |
    | **whole suite** (budget 480 s) | | 0 | 45 | **45** |
    """
    runs = figures.get("lesson_runs", {"runs": 0, "seconds": 0})
    groups = sorted(figures.get("groups", {}).items(), key=lambda item: item[1][0])
    lines = [
        "| group of tests | worker | from (s) | to (s) | seconds |",
        "|---|---|---:|---:|---:|",
    ]
    for name, (first, last, *worker) in groups:
        if name == "lesson-runs" and runs["runs"]:
            name += f" ({runs['runs']} lesson runs in {runs['seconds']:.0f} s)"
        where = worker[0] if worker else "-"
        lines.append(
            f"| {name} | {where} | {first - start:.0f} | {last - start:.0f} | {last - first:.0f} |"
        )
    for worker, seconds in sorted(figures.get("waits", {}).items()):
        if seconds >= 0.5:
            lines.append(f"| (waiting for the timed lesson runs) | {worker} | | | {seconds:.0f} |")
    lines.append(f"| **whole suite** (budget {BUDGET_S} s) | | 0 | {wall:.0f} | **{wall:.0f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
