"""A pool of grading workers with a hard time limit per job.

Each worker is a ``python -m mlcourse.grading.worker`` process (see
:mod:`mlcourse.grading.worker`). A job that does not answer within its time limit, or
whose worker dies, costs only that job: the worker and every process under it (the
kernel included, although Jupyter starts kernels in a session of their own) are killed
and a fresh worker takes the next job.

Example:
    >>> with WorkerPool(1) as pool:
    ...     [reply["error"] for reply in pool.run([{"kind": "nothing"}], timeout=60)]
    ["kind='nothing' is not supported; expected one of 'autograde', 'feedback'."]
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import psutil

from mlcourse.validation import check_float, check_int

STARTUP_TIMEOUT = 300.0  # seconds for a new worker to import nbgrader (not charged to a job)
Job = dict[str, Any]
Reply = dict[str, Any]


def kill_tree(pid: int) -> None:
    """Kill the process ``pid`` and all its descendants (children first, then it)."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = parent.children(recursive=True) + [parent]
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=10)


class _Worker:
    """One worker process and the protocol to talk to it."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlcourse.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        self.ready = False

    def start(self, timeout: float) -> Reply | None:
        """Wait until the worker has imported nbgrader; ``None`` if ready, else a failure."""
        if self.ready:
            return None
        reply = self._read(timeout)
        if reply.get("ready"):
            self.ready = True
            return None
        reply["error"] = "the grading worker did not start: " + reply.get("error", "")
        return reply

    def ask(self, job: Job, timeout: float) -> Reply:
        """Send ``job``; return the reply, or a failure saying why none came."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": "the grading worker exited before the job started"}
        return self._read(timeout)

    def _read(self, timeout: float) -> Reply:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"ok": False, "timed_out": True, "error": f"no result in {timeout:g} s"}
                if not selector.select(timeout=left):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self.process.wait()
                    return {"ok": False, "error": f"the grading worker died (exit code {code})"}
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def finish(self) -> None:
        """Ask the worker to finish: close its input (it exits at the end of it)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def kill(self) -> None:
        """Kill the worker and everything under it (a kernel that runs student code)."""
        self.finish()
        kill_tree(self.process.pid)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class WorkerPool:
    """``workers`` grading workers running jobs in parallel; use as a context manager.

    Args:
        workers: how many jobs run at once (>= 1).
        env: the workers' environment (default: this process's).
        log_dir: where each worker's stderr goes (default: a temporary folder).
    """

    def __init__(
        self,
        workers: int,
        env: dict[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.workers = check_int("workers", workers, min_value=1)
        self.env = dict(os.environ if env is None else env)
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mlcourse-workers-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._executor = ThreadPoolExecutor(max_workers=self.workers)
        for _ in range(self.workers):  # they import nbgrader while the caller prepares jobs
            self._idle.put(self._spawn())

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        with self._lock:
            log = open(self._log_dir / f"worker-{len(self._all)}.log", "ab")  # noqa: SIM115
            worker = _Worker(self.env, log)
            log.close()  # the child holds its own copy of the descriptor
            self._all.append(worker)
        return worker

    def _run_one(self, job: Job, timeout: float) -> Reply:
        worker = self._idle.get()  # one idle worker per executor thread, so never a wait
        replace = True
        try:
            failed = worker.start(STARTUP_TIMEOUT)
            started = time.monotonic()
            reply = failed if failed is not None else worker.ask(job, timeout)
            reply["seconds"] = time.monotonic() - started
            replace = (
                failed is not None or "timed_out" in reply or worker.process.poll() is not None
            )
            return reply
        finally:
            if replace:
                worker.kill()
                worker = self._spawn()
            self._idle.put(worker)

    def run(
        self,
        jobs: Sequence[Job],
        timeout: float,
        on_done: Callable[[Job, Reply], None] | None = None,
    ) -> list[Reply]:
        """Run ``jobs`` (each at most ``timeout`` seconds); replies come in job order."""
        check_float("timeout", timeout, min_value=0, min_inclusive=False)

        def task(job: Job) -> Reply:
            reply = self._run_one(job, timeout)
            if on_done is not None:
                on_done(job, reply)
            return reply

        return list(self._executor.map(task, jobs))

    def close(self) -> None:
        """Stop every worker (and anything left under it)."""
        self._executor.shutdown(wait=True)
        for worker in self._all:  # idle between jobs: nothing to save, so no grace period
            worker.kill()
        self._all.clear()
