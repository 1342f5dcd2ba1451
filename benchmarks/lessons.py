"""Lite-mode wall time and peak memory of every lesson, beside the import floor.

    python3 course.py bench                        # every lesson, 1 run each
    python3 course.py bench --repeat 3 notebooks/03_attention.ipynb

Each lesson runs in a fresh process (papermill, lite mode, CPU). "Peak RSS" is the
largest resident set of the kernel process, read from the operating system after the
kernel exits (``getrusage(RUSAGE_CHILDREN)``). The floor is a notebook that only imports
torch: what any lesson pays before doing anything. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlcourse.notebooks import lesson_paths  # noqa: E402

# Run inside the child process: execute one notebook, report time and the kernel's peak RSS.
CHILD = r"""
import json, resource, sys, time
from mlcourse.notebooks import execute_lesson
start = time.perf_counter()
execute_lesson(sys.argv[1])
wall = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_kib / 1024}))
"""


def floor_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("lite = True\nseed = 0\ndevice = 'auto'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import torch")]
    path = folder / "floor_import_torch.ipynb"
    nbformat.write(nb, path)
    return path


def measure(path: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lesson")
    parser.add_argument("--repeat", type=int, default=1, help="runs per lesson (median reported)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = [floor_notebook(Path(tmp)), *(args.notebooks or lesson_paths())]
        for path in targets:
            runs = [measure(path) for _ in range(args.repeat)]
            rows.append({
                "notebook": path.stem,
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            })  # fmt: skip
            print(f"measured {path.stem}", file=sys.stderr, flush=True)
    floor = rows[0]["peak_rss_mb"]
    print(f"\nLite mode, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, median of {args.repeat} run(s):\n")  # fmt: skip
    print("| notebook | wall time (s) | peak RSS (MB) | above floor (MB) |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['notebook']} | {row['wall_s']:.1f} | {row['peak_rss_mb']:.0f} | "
              f"{row['peak_rss_mb'] - floor:+.0f} |")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
