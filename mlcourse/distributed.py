"""Worker processes for a notebook: a ``torch.distributed`` process group driven from cells.

Data-parallel training needs several processes (*ranks*) that talk to each other. A
notebook cannot simply start them with :mod:`multiprocessing`: the ``spawn`` start method
imports the target function by name, and a function defined in a notebook cell lives in
the kernel's ``__main__``, which no other process can import; ``fork`` copies a kernel that
already runs threads, which is unsafe and does not exist on Windows. So
:class:`WorkerGroup` starts ``world_size`` fresh Python processes running this module
(``python -m mlcourse.distributed``), joins them in a process group (gloo, over
127.0.0.1) and runs functions on them. Functions travel *by value* (``cloudpickle``): one
defined in a notebook cell runs on every rank as written, with the notebook globals it
uses; the modules it uses are imported by name on the workers. This works the same in
JupyterLab, under papermill and on Binder.

The workers

- inherit the kernel's environment, so the course's numerics pins
  (:mod:`mlcourse.numerics`) reach them when the kernel was started by the course's tools,
  and use one torch thread each;
- write their own output to a log file, never into the notebook (the last lines of the log
  are shown when a worker fails);
- stop when the group is closed, and on their own when the kernel that started them goes
  away (they notice their connection closing).

Example:
    >>> import torch.distributed as dist
    >>> def my_rank_squared():
    ...     return dist.get_rank() ** 2
    >>> with WorkerGroup(2) as workers:
    ...     workers.run(my_rank_squared)
    [0, 1]

Inside a worker, :func:`torch.distributed.get_rank` and ``get_world_size`` say who it is.
The module also holds the floating-point bound the data-parallel lesson derives
(:func:`gamma`, :func:`reduction_bound`), which the training command's tests reuse.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
UNIT_ROUNDOFF_FP32 = 2.0**-24  # u: the largest relative error of one float32 rounding
DEFAULT_TIMEOUT_S = 300.0  # starting the group (importing torch) and each run
_LOG_LINES = 30  # lines of a failed worker's log shown in the error


class WorkerError(RuntimeError):
    """A worker failed, died or did not answer; the message holds its traceback or log."""


class WorkerGroup:
    """``world_size`` worker processes in one process group; :meth:`run` calls a function
    on every rank (or some) and returns the results, ordered by rank.

    Args:
        world_size: number of worker processes (ranks), at least 1.
        backend: the ``torch.distributed`` backend; ``"gloo"`` works on every CPU.
        threads: torch threads per worker.
        timeout: seconds allowed for starting the group, and the default for each run.
            Collectives that wait longer than this for a partner fail on the workers.

    Raises:
        WorkerError: a worker could not start (its log is in the message).
    """

    def __init__(
        self,
        world_size: int = 2,
        *,
        backend: str = "gloo",
        threads: int = 1,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        from mlcourse.arguments import check_choice, check_float, check_int

        self.world_size = check_int("world_size", world_size, min_value=1)
        self.backend = check_choice("backend", backend, ("gloo", "nccl"))
        self.threads = check_int("threads", threads, min_value=1)
        self.timeout = check_float("timeout", timeout, min_value=0.0, min_inclusive=False)
        self._folder = Path(tempfile.mkdtemp(prefix="mlcourse-workers-"))
        self._processes: list[subprocess.Popen[bytes]] = []
        self._connections: list[Connection] = []
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _stop_processes, self._processes, self._connections, self._folder
        )
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # --- starting -------------------------------------------------------------------------

    def _start(self) -> None:
        authkey = os.urandom(32)
        with Listener((LOOPBACK, 0), authkey=authkey) as listener:
            bootstrap = {
                "address": list(listener.address),
                "authkey": authkey.hex(),
                "world_size": self.world_size,
                "backend": self.backend,
                "threads": self.threads,
                "timeout": self.timeout,
            }
            for rank in range(self.world_size):
                self._processes.append(self._launch(rank, bootstrap))
            self._connections.extend(self._accept(listener))
        # rank 0 hosts the rendezvous store on a free port; the others join it there
        port = self._receive(0, "store", self.timeout)
        for connection in self._connections[1:]:
            connection.send(("store", port))
        for rank in range(self.world_size):
            self._receive(rank, "ready", self.timeout)

    def _launch(self, rank: int, bootstrap: dict[str, Any]) -> subprocess.Popen[bytes]:
        log = open(self.log_path(rank), "wb")  # noqa: SIM115 (the child owns it from here)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlcourse.distributed"],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=os.getcwd(),
            )  # fmt: skip
        finally:
            log.close()
        assert process.stdin is not None
        # the authentication key goes through a pipe, never on a command line others can read
        process.stdin.write(json.dumps({**bootstrap, "rank": rank}).encode() + b"\n")
        process.stdin.close()
        return process

    def _accept(self, listener: Listener) -> list[Connection]:
        """Accept one connection per worker (each says its rank first), watching for
        workers that die before they connect."""
        import threading

        accepted: dict[int, Connection] = {}
        failure: list[BaseException] = []

        def accept_all() -> None:
            try:
                while len(accepted) < self.world_size:
                    connection = listener.accept()
                    rank = connection.recv()
                    accepted[rank] = connection
            except BaseException as error:  # the listener was closed: a worker died
                failure.append(error)

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        deadline = time.monotonic() + self.timeout
        while thread.is_alive():
            thread.join(0.05)
            dead = [r for r, p in enumerate(self._processes) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                listener.close()
                thread.join(5)
                what = f"worker {dead[0]} exited" if dead else "the workers did not connect"
                raise WorkerError(self._explain(what, dead[0] if dead else 0))
        if failure or len(accepted) < self.world_size:
            raise WorkerError(self._explain(f"the workers did not connect ({failure})", 0))
        return [accepted[rank] for rank in range(self.world_size)]

    # --- running ----------------------------------------------------------------------------

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        ranks: Sequence[int] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Call ``fn(*args, **kwargs)`` on each rank in ``ranks`` (default: all of them) and
        return the results in rank order. A function that uses collectives (all-reduce,
        DistributedDataParallel...) must run on every rank.

        Raises:
            WorkerError: ``fn`` raised on a worker (the message holds the worker's
                traceback), or a worker died or did not answer within ``timeout``. A
                group whose workers may be stuck in a collective is closed.
        """
        import cloudpickle

        if self._closed:
            raise WorkerError("this WorkerGroup is closed; start a new one.")
        chosen = list(range(self.world_size)) if ranks is None else list(ranks)
        bad = [r for r in chosen if not (isinstance(r, int) and 0 <= r < self.world_size)]
        if bad or len(set(chosen)) != len(chosen) or not chosen:
            raise ValueError(
                f"ranks={ranks!r}: expected distinct ranks in [0, {self.world_size - 1}]."
            )
        payload = cloudpickle.dumps((fn, args, kwargs))
        for rank in chosen:
            self._connections[rank].send(("run", payload))
        limit = self.timeout if timeout is None else timeout
        results, errors = {}, {}
        deadline = time.monotonic() + limit
        waiting = set(chosen)
        while waiting:
            for rank in sorted(waiting):
                try:
                    kind, value = self._poll(rank, 0.01)
                except TimeoutError:
                    continue
                waiting.discard(rank)
                if kind == "ok":
                    results[rank] = cloudpickle.loads(value)
                else:
                    errors[rank] = value
            if errors and waiting:  # the others may wait for the failed rank forever
                grace = time.monotonic() + 5.0
                while waiting and time.monotonic() < grace:
                    for rank in sorted(waiting):
                        with contextlib.suppress(TimeoutError):
                            kind, value = self._poll(rank, 0.01)
                            waiting.discard(rank)
                            if kind != "ok":
                                errors[rank] = value
                break
            if waiting and time.monotonic() > deadline:
                self.close()
                raise WorkerError(
                    f"{getattr(fn, '__name__', fn)!r} did not finish within {limit:g} s on "
                    f"rank(s) {sorted(waiting)}; the group was closed. Start a new one."
                )
        if errors:
            stuck = sorted(waiting)
            if stuck:
                self.close()
            first = min(errors)
            note = (
                f" Ranks {stuck} were still waiting (for the failed rank, in a collective), "
                "so the group was closed; start a new one."
                if stuck
                else ""
            )
            raise WorkerError(
                f"{getattr(fn, '__name__', fn)!r} failed on rank {first}:{note}\n{errors[first]}"
            )
        return [results[rank] for rank in chosen]

    def _poll(self, rank: int, wait: float) -> tuple[str, Any]:
        """The next message of ``rank``; TimeoutError if none within ``wait`` seconds."""
        connection = self._connections[rank]
        if not connection.poll(wait):
            if self._processes[rank].poll() is not None:
                self.close()
                raise WorkerError(self._explain(f"worker {rank} died", rank))
            raise TimeoutError
        try:
            return connection.recv()
        except (EOFError, OSError):
            self.close()
            raise WorkerError(self._explain(f"worker {rank} closed its connection", rank)) from None

    def _receive(self, rank: int, expected: str, limit: float) -> Any:
        deadline = time.monotonic() + limit
        while True:
            try:
                kind, value = self._poll(rank, 0.05)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise WorkerError(
                        self._explain(f"worker {rank} did not start in {limit:g} s", rank)
                    ) from None
                continue
            if kind == "error":
                raise WorkerError(f"worker {rank} could not start:\n{value}")
            if kind != expected:
                raise WorkerError(f"worker {rank} sent {kind!r}, expected {expected!r}.")
            return value

    # --- stopping ---------------------------------------------------------------------------

    def log_path(self, rank: int) -> Path:
        """The file that holds worker ``rank``'s own output."""
        return self._folder / f"worker-{rank}.log"

    def _explain(self, what: str, rank: int) -> str:
        path = self.log_path(rank)
        text = path.read_text(errors="replace") if path.exists() else ""
        tail = "\n".join(text.splitlines()[-_LOG_LINES:]) or "(its log is empty)"
        return f"{what}. Last lines of its log:\n{tail}"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the workers (politely, then by force) and remove their logs. Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"WorkerGroup(world_size={self.world_size}, backend={self.backend!r}, {state})"


def _stop_processes(
    processes: list[subprocess.Popen[bytes]], connections: list[Connection], folder: Path
) -> None:
    """Ask every worker to stop, wait briefly, then terminate (and kill) those left."""
    import shutil

    for connection in connections:
        with contextlib.suppress(OSError, ValueError):
            connection.send(("stop", None))
    deadline = time.monotonic() + 5.0
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for connection in connections:
        connection.close()
    shutil.rmtree(folder, ignore_errors=True)


# --- the worker side ------------------------------------------------------------------------


def _worker_main() -> int:
    """One worker: connect to the kernel, join the process group, run what it sends."""
    bootstrap = json.loads(sys.stdin.readline())
    rank, world_size = bootstrap["rank"], bootstrap["world_size"]
    connection = Client(tuple(bootstrap["address"]), authkey=bytes.fromhex(bootstrap["authkey"]))
    connection.send(rank)
    try:
        import cloudpickle
        import torch
        import torch.distributed as dist

        torch.set_num_threads(bootstrap["threads"])
        timeout = datetime.timedelta(seconds=bootstrap["timeout"])
        if rank == 0:
            store = dist.TCPStore(LOOPBACK, 0, world_size, is_master=True, timeout=timeout,
                                  wait_for_workers=False)  # fmt: skip
            connection.send(("store", store.port))
        else:
            kind, port = connection.recv()
            store = dist.TCPStore(LOOPBACK, port, world_size, is_master=False, timeout=timeout)
        dist.init_process_group(
            bootstrap["backend"], store=store, rank=rank, world_size=world_size, timeout=timeout
        )
        connection.send(("ready", os.getpid()))
    except BaseException:
        connection.send(("error", traceback.format_exc()))
        return 1
    try:
        while True:
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):  # the kernel went away
                return 0
            if kind == "stop":
                return 0
            try:
                fn, args, kwargs = cloudpickle.loads(payload)
                connection.send(("ok", cloudpickle.dumps(fn(*args, **kwargs))))
            except Exception:
                connection.send(("error", traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# --- the floating-point bound of a sum computed in another order -----------------------------


def gamma(n: int, unit_roundoff: float = UNIT_ROUNDOFF_FP32) -> float:
    """Higham's constant γ_n = n·u / (1 − n·u): a sum or dot product of ``n`` terms,
    computed in floating point in *any* order, is within γ_n · Σ|terms| of the exact value.

    Example:
        >>> round(gamma(64) / 2.0**-24, 6)  # about n units of roundoff
        64.000244
        >>> gamma(2**25)
        Traceback (most recent call last):
        ...
        ValueError: n=33554432 terms: n * u = 2 >= 1, the bound does not hold.
    """
    product = n * unit_roundoff
    if n < 0:
        raise ValueError(f"n={n} terms: expected n >= 0.")
    if product >= 1:
        raise ValueError(f"n={n} terms: n * u = {product:g} >= 1, the bound does not hold.")
    return product / (1 - product)


def reduction_bound(abs_sum: Any, n_terms: int, pieces: int = 1) -> Any:
    """How far apart two float32 evaluations of the same sum of ``n_terms`` terms may be,
    when one adds all terms in one pass and the other adds ``pieces`` partial sums of
    ``n_terms / pieces`` terms each (ranks, or micro-batches) and then the partial sums.

    Each evaluation is within γ_k · Σ|terms| of the exact sum (k: the longest chain of
    additions it makes), so they differ by at most (γ_n + γ_{n/p + p - 1}) · Σ|terms|.
    ``abs_sum`` (Σ|terms|, a number or a tensor of them) should be computed in float64.

    Example:
        >>> b = reduction_bound(1.0, 64, pieces=2)
        >>> round(b / 2.0**-24, 3)  # 64 + 33 units of roundoff
        97.0
    """
    if pieces < 1 or n_terms < pieces:
        raise ValueError(f"pieces={pieces}, n_terms={n_terms}: expected 1 <= pieces <= n_terms.")
    per_piece = -(-n_terms // pieces)  # the largest piece
    return (gamma(n_terms) + gamma(per_piece + pieces - 1)) * abs_sum


def softmax_regression_gradient_bound(
    x: Any, y: Any, weight: Any, bias: Any, *, pieces: int
) -> float:
    """How far apart (Frobenius norm) two float32 evaluations of the gradient of the mean
    cross-entropy of a linear classifier ``logits = x @ weight.T + bias`` on one batch may
    be, when one sums the batch in one pass and the other in ``pieces`` parts (the ranks
    of a data-parallel step, or micro-batches), each example's terms being computed alike.

    Entry (j, k) of the gradient is Σ_i δ_ij x_ik with δ = (softmax - one_hot) / n and
    x_i0 = 1 for the bias; :func:`reduction_bound` bounds each entry with Σ_i |δ_ij x_ik|,
    computed here in float64.

    Example:
        >>> import torch
        >>> x, y = torch.rand(64, 5), torch.arange(64) % 3
        >>> b = softmax_regression_gradient_bound(x, y, torch.zeros(3, 5), torch.zeros(3), pieces=2)
        >>> 0 < b < 1e-4
        True
    """
    import torch

    with torch.no_grad():
        features = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
        params = torch.cat([weight.double(), bias.double()[:, None]], dim=1)
        probabilities = torch.softmax(features @ params.T, dim=1)
        one_hot = torch.nn.functional.one_hot(y, params.shape[0]).double()
        delta = (probabilities - one_hot).abs() / len(x)
        abs_sum = delta.T @ features.abs()  # Σ_i |δ_ij| |x_ik|, one per gradient entry
        return float(reduction_bound(abs_sum, len(x), pieces).norm())


if __name__ == "__main__":
    raise SystemExit(_worker_main())
