"""The program that runs one notebook inside the grading sandbox.

``python -m mlcourse.grading.runner`` reads one job (a JSON line) on stdin, runs the job's
code cells in a fresh IPython kernel and writes one JSON result line on its original
stdout, which the grader alone reads. It imports nothing but ``jupyter_client`` (nbformat
takes seconds to import), and before the kernel starts it:

1. drops to the unprivileged user id the job names (when the grader runs as root);
2. makes itself non-dumpable, so code in the kernel (same user) cannot trace it, read
   its memory or open its descriptors;
3. sets the job's resource limits (processes, memory, CPU time, file size, open files),
   which the kernel and everything it starts inherit.

Each cell has a time limit: past it the kernel is interrupted (the cell fails, the next
cells run) and every other process the submission started is killed (inside the sandbox:
every process but the kernel; outside: the kernel's descendants). A cell that kills the
kernel or cannot be interrupted fails too; a fresh kernel then runs the cells before it
again and grading goes on (:func:`run_job`). Outputs are capped per cell and per notebook
(the cut is noted), and the recorder's messages (:mod:`mlcourse.grading.recorder`) are
taken out of the outputs into ``records``.

Example (the job format):
    >>> sorted(JOB_KEYS)[:5]
    ['cells', 'drop_to', 'files', 'limits', 'notebook']
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_MIME = "application/vnd.mlcourse.grading-record+json"  # = recorder.RECORD_MIME
JOB_KEYS = frozenset(
    [
        "cells",
        "drop_to",
        "files",
        "limits",
        "notebook",
        "output",
        "own_pid_namespace",
        "setup",
        "workdir",
    ]
)
LIMITS = {
    "processes": resource.RLIMIT_NPROC,
    "memory_bytes": resource.RLIMIT_DATA,
    "cpu_seconds": resource.RLIMIT_CPU,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
}
STARTUP_TIMEOUT = 120.0  # seconds for the kernel to start on a loaded machine
INTERRUPT_GRACE = 3.0  # seconds an interrupted cell has to stop (else the kernel is restarted)
MAX_RESTARTS = 2  # kernels lost (died, or not interruptible) before the run is given up
PR_SET_DUMPABLE = 4


def drop_privileges(drop_to: dict[str, int] | None) -> None:
    """Become the unprivileged user ``drop_to`` names (root only), then non-dumpable."""
    if drop_to:
        os.setgroups([])
        os.setgid(drop_to["gid"])
        os.setuid(drop_to["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - setuid cannot fail silently
            raise RuntimeError("could not drop root privileges")
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:  # pragma: no cover - Linux always allows it
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def set_limits(limits: dict[str, int]) -> None:
    """Apply the job's resource limits to this process (inherited by the kernel)."""
    for name, value in limits.items():
        which = LIMITS[name]
        _, hard = resource.getrlimit(which)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        # CPU time: SIGXCPU at the limit (the kernel dies saying why), SIGKILL 5 s later
        ceiling = value + 5 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            ceiling = min(ceiling, hard)
        resource.setrlimit(which, (value, ceiling))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass
class CellRun:
    """What one code cell did."""

    index: int
    status: str = "not-run"  # ok | error | timeout | not-run
    outputs: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: {"text": 0, "rich": 0, "records": 0})
    seconds: float = 0.0


class OutputCap:
    """Byte budgets for a notebook's outputs (text per cell, one rich output, all)."""

    def __init__(self, output: dict[str, int]) -> None:
        self.text, self.rich = int(output["text_bytes"]), int(output["rich_bytes"])
        self.total_left, self.records_left = int(output["total_bytes"]), int(output["record_bytes"])

    def take_total(self, size: int) -> bool:
        if size > self.total_left:
            return False
        self.total_left -= size
        return True


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data.encode("utf-8", "replace"))
    return len(json.dumps(data, default=str))


class _Collector:
    """Turns one cell's iopub messages into notebook outputs, within the caps."""

    def __init__(self, run: CellRun, cap: OutputCap) -> None:
        self.run, self.cap = run, cap
        self.text_used = 0
        self.clear_pending = False
        self.execution_count: int | None = None

    def _append(self, output: dict[str, Any]) -> None:
        if self.clear_pending:
            self.run.outputs.clear()
            self.clear_pending = False
        self.run.outputs.append(output)

    def _text(self, text: str) -> str:
        size = _size(text)
        room = max(0, min(self.cap.text - self.text_used, self.cap.total_left))
        if size <= room:
            self.text_used += size
            self.cap.take_total(size)
            return text
        kept = text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
        self.text_used += len(kept.encode())
        self.cap.take_total(len(kept.encode()))
        self.run.dropped["text"] += size - len(kept.encode())
        return kept

    def handle(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self.run.outputs.clear()
        elif kind == "stream":
            name = content.get("name") if content.get("name") in ("stdout", "stderr") else "stdout"
            text = self._text(str(content.get("text", "")))
            last = self.run.outputs[-1] if self.run.outputs else None
            if (
                last
                and last["output_type"] == "stream"
                and last["name"] == name
                and not self.clear_pending
            ):
                last["text"] += text
            elif text:
                self._append({"output_type": "stream", "name": name, "text": text})
        elif kind in ("display_data", "execute_result"):
            self._display(kind, content)
        elif kind == "error":
            self._append(
                {
                    "output_type": "error",
                    "ename": self._text(str(content.get("ename", "Error"))[:200]),
                    "evalue": self._text(str(content.get("evalue", ""))[:10_000]),
                    "traceback": [
                        self._text(str(line)[:10_000])
                        for line in content.get("traceback", [])[:200]
                    ],
                }
            )

    def _display(self, kind: str, content: dict[str, Any]) -> None:
        data = content.get("data") or {}
        if not isinstance(data, dict):
            return
        if RECORD_MIME in data:
            record = data[RECORD_MIME]
            size = _size(record)
            if size <= self.cap.records_left:
                self.cap.records_left -= size
                self.run.records.append(record)
            else:
                self.run.dropped["records"] += 1
            return
        size = _size(data)
        if size > self.cap.rich or not self.cap.take_total(size):
            self.run.dropped["rich"] += size
            data = {"text/plain": f"[an output of {size:,} bytes was left out by the grader]"}
        output = {"output_type": kind, "data": data, "metadata": content.get("metadata") or {}}
        if kind == "execute_result":
            output["execution_count"] = content.get("execution_count")
        self._append(output)


class NotebookRun:
    """Runs a job's cells in one kernel (see the module docstring)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.cap = OutputCap(job["output"])
        self.kernel_state = "alive"
        self.kernel_exit: int | None = None
        self.km: Any = None
        self.kc: Any = None

    def start(self) -> None:
        """Start a fresh kernel and install the recorder in it."""
        from jupyter_client.manager import KernelManager

        runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR", "/tmp/jupyter-runtime"))
        runtime.mkdir(parents=True, exist_ok=True)
        self.km = KernelManager(kernel_name="python3", transport="ipc", ip=str(runtime / "kernel"))
        self.km.start_kernel(
            cwd=self.job["workdir"], extra_arguments=["--HistoryManager.enabled=False"]
        )
        self.kc = self.km.client()
        self.kc.allow_stdin = False
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        self.kernel_state, self.kernel_exit = "alive", None
        setup = CellRun(-1)
        self.execute(self.job["setup"], STARTUP_TIMEOUT, setup)
        if setup.status != "ok":
            raise RuntimeError(f"the grading setup failed in the kernel: {setup.outputs}")

    def replay(self, cells: list[dict[str, Any]], runs: list[CellRun]) -> bool:
        """Restart the kernel and run again the ``cells`` that completed before (outputs
        dropped); ``False`` if the kernel is lost again."""
        self.stop()
        self.start()
        for cell, run in zip(cells, runs, strict=True):
            if run.status in ("ok", "error"):
                self.execute(cell["source"], float(cell["timeout"]), CellRun(run.index))
                if self.kernel_state != "alive":
                    return False
        return True

    def kernel_pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def execute(self, source: str, timeout: float, run: CellRun) -> None:
        """Run ``source``; fill ``run``. Sets ``kernel_state`` if the kernel is lost."""
        started = time.monotonic()
        collector = _Collector(run, self.cap)
        msg_id = self.kc.execute(source, store_history=True, allow_stdin=False, stop_on_error=False)
        deadline, interrupted, next_interrupt = started + timeout, False, 0.0
        while True:
            now = time.monotonic()
            if now > deadline:
                if interrupted:
                    self.kernel_state = "unresponsive"
                    break
                interrupted, deadline = True, now + INTERRUPT_GRACE
            if interrupted and now >= next_interrupt:
                # The cell has failed: nothing else it started may keep running. The
                # interrupt is repeated: one can land where Python ignores it (an at-fork
                # handler); an idle kernel ignores it.
                self.kill_strays()
                self.km.interrupt_kernel()
                next_interrupt = now + 1.0
            try:
                msg = self.kc.get_iopub_msg(timeout=min(0.5, max(0.01, deadline - now)))
            except queue.Empty:
                if not self.km.is_alive():
                    self.kernel_state = "died"
                    process = getattr(self.km.provisioner, "process", None)
                    self.kernel_exit = process.poll() if process is not None else None
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    break
                continue
            collector.handle(msg)
        run.seconds = time.monotonic() - started
        errors = [o for o in run.outputs if o["output_type"] == "error"]
        if interrupted:
            run.status = "timeout"
            run.outputs = [o for o in run.outputs if o["output_type"] != "error"]
            run.outputs.append(
                {
                    "output_type": "error",
                    "ename": "CellTimeoutError",
                    "evalue": (
                        f"the cell ran past its time limit of {timeout:g} s and was interrupted"
                    ),
                    "traceback": [],
                }
            )
        else:
            run.status = "error" if errors else "ok"
        if self.kernel_state != "alive":
            run.status = "error" if self.kernel_state == "died" else "timeout"
        if collector.execution_count is not None:
            run.outputs = [
                {**o, "execution_count": collector.execution_count}
                if o["output_type"] == "execute_result"
                else o
                for o in run.outputs
            ]

    def kill_strays(self) -> None:
        """Kill every process of the submission but this runner and the kernel."""
        keep = {os.getpid(), self.kernel_pid(), 1}
        if self.job.get("own_pid_namespace"):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and int(entry.name) not in keep:
                    with contextlib.suppress(OSError):
                        os.kill(int(entry.name), signal.SIGKILL)
            return
        import psutil  # outside a sandbox: the kernel's own descendants only

        pid = self.kernel_pid()
        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()

    def stop(self) -> None:
        """Stop the kernel and everything it started."""
        if self.km is None:
            return
        pid = self.kernel_pid()
        self.kill_strays()
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.km.shutdown_kernel(now=True)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def write_files(job: dict[str, Any]) -> None:
    """Put the notebook and the lesson's other files into the working folder."""
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    name, text = job["notebook"]["name"], job["notebook"]["text"]
    (workdir / name).write_text(text, encoding="utf-8")
    for relative, encoded in job["files"].items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(encoded))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` (privileges already dropped, limits set); the result dictionary.

    A cell that kills the kernel or cannot be interrupted fails; the kernel is then
    started again, the cells that ran before it are run again (their new outputs are not
    kept) and grading goes on after it, at most :data:`MAX_RESTARTS` times.
    """
    started = time.monotonic()
    runs = [CellRun(cell["index"]) for cell in job["cells"]]
    notebook = NotebookRun(job)
    error, lost = "", []
    try:
        write_files(job)
        notebook.start()
        position = 0
        while position < len(runs):
            cell, run = job["cells"][position], runs[position]
            notebook.execute(cell["source"], float(cell["timeout"]), run)
            if notebook.kernel_state != "alive":
                lost.append(
                    {
                        "index": cell["index"],
                        "why": notebook.kernel_state,
                        "exit": notebook.kernel_exit,
                    }
                )
                if len(lost) > MAX_RESTARTS or not notebook.replay(
                    job["cells"][:position], runs[:position]
                ):
                    break
            position += 1
    except Exception as failure:  # reported to the grader, which decides
        error = f"{type(failure).__name__}: {failure}"
    finally:
        notebook.stop()
    return {
        "ok": not error,
        "error": error,
        "kernel": notebook.kernel_state,
        "kernel_exit": notebook.kernel_exit,
        "lost": lost,
        "cells": [run.__dict__ for run in runs],
        "seconds": time.monotonic() - started,
    }


def main() -> int:
    """Read the job from stdin, run it, write the result to the original stdout."""
    result_fd = os.dup(1)
    os.dup2(2, 1)  # anything else printed goes to the log, not into the result
    os.set_inheritable(result_fd, False)
    job = json.loads(sys.stdin.readline())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    drop_privileges(job.get("drop_to"))
    set_limits(job["limits"])
    result = run_job(job)
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
