"""Lite-mode wall time and peak memory of every lesson, beside the import floors.

    python3 course.py bench                        # every lesson, 1 run each
    python3 course.py bench --repeat 3 notebooks/03_attention.ipynb
    python3 course.py bench --kernels pinned unpinned   # also: what pinning costs

``--kernels`` runs every notebook with each kernel set: ``pinned`` (what the course's
kernels use, the default), ``portable`` (torch's, MKL's, oneDNN's and NumPy's portable
kernels) and ``unpinned`` (no pins: each library picks its own kernels and threads). With
more than one, the table gets a column per set and the cost of each relative to the first.

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

from mlcourse.notebooks import KERNEL_SETS as NOTEBOOK_KERNEL_SETS  # noqa: E402
from mlcourse.notebooks import lesson_paths  # noqa: E402
from mlcourse.numerics import UNPINNED  # noqa: E402

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
from mlcourse.results import read_results
parameters, kernels = json.loads(sys.argv[4]), json.loads(sys.argv[5])
start = time.perf_counter()
nb = execute_lesson(sys.argv[1], cwd=sys.argv[2], parameters=parameters, kernels=kernels,
                    timeout=3600)
wall = time.perf_counter() - start
text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
usage = json.loads(text.split(sys.argv[3], 1)[1])
print(json.dumps({"wall_s": wall, "peak_rss_mb": max(usage.values()) / 1024,
                  "results": read_results(nb)}))
"""
KERNEL_SETS = {**NOTEBOOK_KERNEL_SETS, "unpinned": UNPINNED}


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


def measure(
    path: Path,
    cwd: Path,
    folder: Path,
    *,
    parameters: dict | None = None,
    kernels: str = "pinned",
    timeout: float | None = None,
) -> dict:
    """Wall time, peak RSS (MB) and published results of one run, in a fresh process.

    Raises subprocess.TimeoutExpired after ``timeout`` seconds."""
    copy = instrumented_copy(path, folder)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(copy), str(cwd), MARKER,
         json.dumps(parameters or {}), json.dumps(KERNEL_SETS[kernels])],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=timeout,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lesson")
    parser.add_argument("--repeat", type=int, default=1, help="runs per lesson (median reported)")
    parser.add_argument("--kernels", nargs="+", default=["pinned"], choices=list(KERNEL_SETS))
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
            row = {"notebook": name}
            for _ in range(args.repeat):  # interleave the kernel sets: load drifts hit all alike
                for kernels in args.kernels:
                    run = measure(path, cwd, folder, kernels=kernels)
                    row.setdefault(kernels, []).append(run)
            for kernels in args.kernels:
                runs = row.pop(kernels)
                row[kernels] = {
                    "wall_s": statistics.median(r["wall_s"] for r in runs),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                }
            rows.append(row)
            print(f"measured {name}", file=sys.stderr, flush=True)
    print(
        f"\nLite mode, {platform.machine()} ({cpu_name()}), {os.cpu_count()} cores, "
        f"median wall time of {args.repeat} run(s), largest peak:\n"
    )
    print(render(rows, args.kernels))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def render(rows: list[dict], kernel_sets: list[str]) -> str:
    """A Markdown table: per kernel set wall time and peak RSS; the others' cost vs the first."""
    first = kernel_sets[0]
    floor = rows[0][first]["peak_rss_mb"]
    header = ["notebook"]
    for kernels in kernel_sets:
        header += [f"{kernels}: wall (s)", f"{kernels}: peak RSS (MB)"]
    header.append(f"above `import torch` ({first}, MB)")
    header += [f"{first} vs {k}: time" for k in kernel_sets[1:]]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [row["notebook"]]
        for kernels in kernel_sets:
            cells += [f"{row[kernels]['wall_s']:.1f}", f"{row[kernels]['peak_rss_mb']:.0f}"]
        cells.append(f"{row[first]['peak_rss_mb'] - floor:+.0f}")
        cells += [f"{row[first]['wall_s'] / row[k]['wall_s'] - 1:+.0%}" for k in kernel_sets[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    from mlcourse.numerics import cpu_info

    info = cpu_info()
    flags = set(info["flags"])
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{info['model_name']}, {isa}"


if __name__ == "__main__":
    raise SystemExit(main())
