"""Lite-mode wall time and peak memory of every lesson, beside the import floors.

    python3 course.py bench                        # every lesson, 1 run each
    python3 course.py bench --repeat 3 notebooks/03_attention.ipynb

Each notebook runs in a fresh process (papermill, lite mode, CPU, the lesson's folder as
working directory), with one extra cell appended that reads the kernel's resource usage.
"Peak RSS" is the high-water mark of the largest process by the end of the last cell: the
kernel itself (``getrusage(RUSAGE_SELF)``) or a process it started and waited for
(``RUSAGE_CHILDREN``). Two floors show what any lesson pays before doing anything:
importing torch, and importing torch plus one optimizer step (torch 2.14 imports its
compiler stack, about 150 MB, on the first ``optimizer.step()``). Not counted: a
transient of about 130 MB in torch's native teardown when the kernel process exits,
which every notebook, the floors included, shows. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
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

MARKER = "MLCOURSE-BENCHMARK "
USAGE_CELL = f"""import json as _json, resource as _resource
print({MARKER!r} + _json.dumps({{
    "self_kib": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,
    "children_kib": _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss,
}}))"""
FLOORS = {
    "floor: import torch": "import torch",
    "floor: torch + one optimizer step": (
        "import torch\n"
        "w = torch.zeros(1, requires_grad=True)\n"
        "w.sum().backward()\n"
        "torch.optim.SGD([w], lr=0.1).step()"
    ),
}

# Run in the child process: execute one notebook (with the usage cell appended) and report.
CHILD = r"""
import json, sys, time
from pathlib import Path
from mlcourse.notebooks import execute_lesson
start = time.perf_counter()
nb = execute_lesson(sys.argv[1], cwd=sys.argv[2])
wall = time.perf_counter() - start
text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
usage = json.loads(text.split(sys.argv[3], 1)[1])
print(json.dumps({"wall_s": wall, "peak_rss_mb": max(usage.values()) / 1024}))
"""


def instrumented_copy(path: Path, folder: Path) -> Path:
    """The notebook with the usage cell appended, written into ``folder``."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(USAGE_CELL))
    target = folder / path.name
    nbformat.write(nb, target)
    return target


def floor_notebook(folder: Path, name: str, code: str) -> Path:
    params = nbformat.v4.new_code_cell("lite = True\nseed = 0\ndevice = 'auto'")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)])
    path = folder / f"{name.replace(':', '').replace(' ', '_')}.ipynb"
    nbformat.write(nb, path)
    return path


def measure(path: Path, cwd: Path, folder: Path) -> dict[str, float]:
    copy = instrumented_copy(path, folder)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(copy), str(cwd), MARKER],
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
        folder = Path(tmp)
        targets = [(name, floor_notebook(folder, name, code)) for name, code in FLOORS.items()]
        targets += [(p.stem, Path(p).resolve()) for p in (args.notebooks or lesson_paths())]
        for name, path in targets:
            cwd = path.parent if path.parent != folder else ROOT / "notebooks"
            runs = [measure(path, cwd, folder) for _ in range(args.repeat)]
            rows.append({
                "notebook": name,
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            })  # fmt: skip
            print(f"measured {name}", file=sys.stderr, flush=True)
    floor = rows[0]["peak_rss_mb"]
    print(
        f"\nLite mode, {platform.machine()}, {os.cpu_count()} cores, "
        f"median wall time of {args.repeat} run(s), largest peak:\n"
    )
    print("| notebook | wall time (s) | peak RSS (MB) | above `import torch` (MB) |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['notebook']} | {row['wall_s']:.1f} | {row['peak_rss_mb']:.0f} | "
            f"{row['peak_rss_mb'] - floor:+.0f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
