"""Lite-mode wall time and TOTAL memory of lessons that start worker processes.

    python benchmarks/lesson_memory.py                      # lesson 07, 1 run
    python benchmarks/lesson_memory.py --repeat 3 notebooks/07_data_parallel.ipynb

``benchmarks/lessons.py`` reports the peak RSS of the largest process, which is right for
a lesson that runs in its kernel alone. A lesson that starts worker processes (lesson 07's
ranks) uses memory in several processes at once, and those processes share pages: the
code of the libraries they all load (torch, its CUDA and MKL libraries) is in memory once.
Adding their RSS would count those pages once per process; taking the largest undercounts
the workers. This script measures the **proportional set size** (PSS, from Linux's
``/proc/PID/smaps_rollup``): each shared page is split among the processes that map it,
so the PSS of a group of processes adds up to the memory the group really occupies, shared
pages counted once.

Each run executes the notebook in a fresh process with papermill (lite mode, CPU, pinned
kernels, the lesson's folder as working directory), exactly as ``benchmarks/lessons.py``
does, while a sampler reads the PSS of the lesson's kernel and of every process it started
(its workers) every 20 ms and keeps the largest total. The papermill runner itself (the
process that drives the kernel) is not the lesson's and is reported apart. Linux only.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lessons import CHILD, KERNEL_SETS, cpu_name, instrumented_copy  # noqa: E402

SAMPLE_EVERY_S = 0.02
DEFAULT_LESSONS = ("07_data_parallel",)


def pss_kib(pid: int) -> int:
    """The proportional set size of process ``pid`` in KiB (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            kids = [int(k) for k in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        found += kids
        queue += kids
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


class PssSampler(threading.Thread):
    """Samples the PSS of a process tree until stopped; keeps the peaks."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.peak_lesson_kib = 0  # the kernel and the processes it started
        self.peak_runner_kib = 0  # the papermill runner
        self.peak_workers = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            time.sleep(SAMPLE_EVERY_S)

    def sample(self) -> None:
        tree = children_of(self.root_pid)
        kernels = [p for p in tree if "ipykernel_launcher" in command_of(p)]
        lesson = set(kernels)
        for kernel in kernels:
            lesson.update(children_of(kernel))
        total = sum(pss_kib(p) for p in lesson)
        self.peak_lesson_kib = max(self.peak_lesson_kib, total)
        self.peak_runner_kib = max(self.peak_runner_kib, pss_kib(self.root_pid))
        self.peak_workers = max(self.peak_workers, len(lesson) - len(kernels))


def measure(path: Path, folder: Path, kernels: str = "pinned") -> dict:
    """Wall time and peak total PSS (MB) of one lite run, in a fresh process."""
    copy = instrumented_copy(path, folder)
    marker = "MLCOURSE-BENCHMARK "
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(copy), str(path.parent), marker, "{}",
         json.dumps(KERNEL_SETS[kernels])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    sampler = PssSampler(process.pid)
    sampler.start()
    out, err = process.communicate()
    sampler.stopped.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{path.name} failed:\n{err[-3000:]}")
    run = json.loads(out.strip().splitlines()[-1])
    return {
        "wall_s": run["wall_s"],
        "peak_pss_mb": sampler.peak_lesson_kib / 1024,
        "runner_pss_mb": sampler.peak_runner_kib / 1024,
        "workers": sampler.peak_workers,
        "kernel_peak_rss_mb": run["peak_rss_mb"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="runs per lesson")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if not Path("/proc/self/smaps_rollup").exists():
        parser.error("this benchmark reads /proc/PID/smaps_rollup (Linux 4.14 or newer)")
    paths = args.notebooks or [ROOT / "notebooks" / f"{s}.ipynb" for s in DEFAULT_LESSONS]
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            runs = [measure(Path(path).resolve(), Path(tmp)) for _ in range(args.repeat)]
            rows.append((Path(path).stem, runs))
            print(f"measured {Path(path).stem}", file=sys.stderr, flush=True)
    print(
        f"\nLite mode, {platform.machine()} ({cpu_name()}), {os.cpu_count()} cores, pinned "
        f"kernels, {args.repeat} run(s): median wall time, largest peaks.\n"
    )
    print(
        "| notebook | wall (s) | peak PSS, kernel + workers (MB) | worker processes | "
        "kernel peak RSS (MB) | papermill runner PSS (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in rows:
        print(
            f"| {name} | {statistics.median(r['wall_s'] for r in runs):.1f} | "
            f"{max(r['peak_pss_mb'] for r in runs):.0f} | {max(r['workers'] for r in runs)} | "
            f"{max(r['kernel_peak_rss_mb'] for r in runs):.0f} | "
            f"{max(r['runner_pss_mb'] for r in runs):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
