"""How long the whole test suite takes, and where the time goes.

    python benchmarks/suite.py            # the suite as `course.py test` runs it (set up first)
    python benchmarks/suite.py -k lesson  # any pytest arguments

Runs pytest once and prints a table: the lesson runs executed before the tests (every lesson
with each kernel set), then the tests, file by file, slowest first, and the total wall time.
The suite's budget is 8 minutes on 2 cores, set-up excluded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 8 * 60


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as tmp:
        junit, times = Path(tmp) / "junit.xml", Path(tmp) / "times.json"
        env = {**os.environ, "MLCOURSE_SUITE_TIMES": str(times)}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args],
            cwd=ROOT, env=env,
        )  # fmt: skip
        wall = time.perf_counter() - start
        per_file: dict[str, float] = defaultdict(float)
        for case in ET.parse(junit).iter("testcase"):
            per_file[case.get("classname", "?").split(".")[-1]] += float(case.get("time", 0))
        prefetch = json.loads(times.read_text()) if times.exists() else {"runs": 0, "seconds": 0}
    rows = [(f"lesson runs before the tests ({prefetch['runs']} runs)", prefetch["seconds"])]
    rows += sorted(per_file.items(), key=lambda item: -item[1])
    rest = wall - sum(seconds for _, seconds in rows)
    print(
        f"\nTest suite on {platform.machine()}, {os.cpu_count()} cores (exit status {done.returncode})\n"
    )
    print("| part | seconds |\n|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.0f} |")
    print(f"| collection, start-up and teardown | {rest:.0f} |")
    print(f"| **total** | **{wall:.0f}** (budget {BUDGET_S}) |")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
