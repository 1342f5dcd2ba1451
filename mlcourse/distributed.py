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


START_METHODS = ("template", "spawn")


def default_start_method() -> str:
    """``"template"`` on Linux, ``"spawn"`` elsewhere (see :class:`WorkerGroup`).

    Example:
        >>> default_start_method() in START_METHODS
        True
    """
    return "template" if sys.platform.startswith("linux") else "spawn"


class WorkerGroup:
    """``world_size`` worker processes in one process group; :meth:`run` calls a function
    on every rank (or some) and returns the results, ordered by rank.

    Two ways to start the workers (``start_method``):

    - ``"template"`` (Linux): one fresh process imports torch, ``torch.distributed`` and
      the compiler stack that DistributedDataParallel loads, forks the ranks from itself,
      then replaces itself by a small process that waits for them. The ranks share the
      pages of what was loaded instead of each holding its own copy
      (``benchmarks/lesson_memory.py`` measures the total). Forking a process that has
      imported torch but computed nothing, and holds no threads or GPU context, is safe.
    - ``"spawn"`` (every platform): each rank is a fresh Python process of its own.

    Args:
        world_size: number of worker processes (ranks), at least 1.
        backend: the ``torch.distributed`` backend; ``"gloo"`` works on every CPU.
        threads: torch threads per worker.
        timeout: seconds allowed for starting the group, and the default for each run.
            Collectives that wait longer than this for a partner fail on the workers.
        start_method: ``"template"`` or ``"spawn"``; ``None`` picks
            :func:`default_start_method`.

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
        start_method: str | None = None,
    ) -> None:
        from mlcourse.arguments import check_choice, check_float, check_int

        self.world_size = check_int("world_size", world_size, min_value=1)
        self.backend = check_choice("backend", backend, ("gloo", "nccl"))
        self.threads = check_int("threads", threads, min_value=1)
        self.timeout = check_float("timeout", timeout, min_value=0.0, min_inclusive=False)
        method = default_start_method() if start_method is None else start_method
        self.start_method = check_choice("start_method", method, START_METHODS)
        if self.start_method == "template" and not hasattr(os, "fork"):
            raise ValueError("start_method='template' needs os.fork; use 'spawn' here.")
        self._folder = Path(tempfile.mkdtemp(prefix="mlcourse-workers-"))
        self._processes: list[subprocess.Popen[bytes]] = []  # one per rank, or the template
        self._pids: list[int] = []  # the ranks' process ids, in rank order
        self._connections: list[Connection] = []
        self._closed = False
        self._stopping = {"polite": True}  # False: workers may be stuck, do not wait for them
        self._finalizer = weakref.finalize(
            self, _stop_workers, self._processes, self._pids, self._connections, self._folder,
            self._stopping,
        )  # fmt: skip
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
                "logs": str(self._folder),
            }
            if self.start_method == "spawn":
                for rank in range(self.world_size):
                    self._launch(["--worker", str(rank)], bootstrap, self.log_path(rank))
            else:
                self._launch(["--template"], bootstrap, self._folder / "template.log")
            connections, pids = self._accept(listener)
            self._connections.extend(connections)
            self._pids.extend(pids)
        # rank 0 hosts the rendezvous store on a free port; the others join it there
        port = self._receive(0, "store", self.timeout)
        for connection in self._connections[1:]:
            connection.send(("store", port))
        for rank in range(self.world_size):
            self._receive(rank, "ready", self.timeout)

    def _launch(self, arguments: list[str], bootstrap: dict[str, Any], log_path: Path) -> None:
        log = open(log_path, "wb")  # noqa: SIM115 (the child owns it from here)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlcourse.distributed", *arguments],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=os.getcwd(),
            )  # fmt: skip
        finally:
            log.close()
        self._processes.append(process)
        assert process.stdin is not None
        # the authentication key goes through a pipe, never on a command line others can read
        process.stdin.write(json.dumps(bootstrap).encode() + b"\n")
        process.stdin.close()

    def _accept(self, listener: Listener) -> tuple[list[Connection], list[int]]:
        """Accept one connection per worker (each says its rank and process id first),
        watching for workers that die before they connect."""
        import threading

        accepted: dict[int, tuple[Connection, int]] = {}
        failure: list[BaseException] = []

        def accept_all() -> None:
            try:
                while len(accepted) < self.world_size:
                    connection = listener.accept()
                    rank, pid = connection.recv()
                    accepted[rank] = (connection, pid)
            except BaseException as error:  # the listener was closed: a worker died
                failure.append(error)

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        deadline = time.monotonic() + self.timeout
        while thread.is_alive():
            thread.join(0.05)
            dead = [i for i, p in enumerate(self._processes) if p.poll() is not None]
            if (dead and thread.is_alive()) or time.monotonic() > deadline:
                listener.close()
                thread.join(5)
                what = "a worker exited" if dead else "the workers did not connect"
                raise WorkerError(self._explain(f"{what} while starting", 0))
        if failure or len(accepted) < self.world_size:
            raise WorkerError(self._explain(f"the workers did not connect ({failure})", 0))
        ranks = range(self.world_size)
        return [accepted[r][0] for r in ranks], [accepted[r][1] for r in ranks]

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
        name = getattr(fn, "__name__", repr(fn))
        results, errors, waiting = self._collect(
            chosen, self.timeout if timeout is None else timeout, name
        )
        if errors:
            first = min(errors)
            note = ""
            if waiting:  # they wait for the failed rank in a collective: nothing will come
                self._stopping["polite"] = False
                self.close()
                note = (
                    f" Ranks {sorted(waiting)} were still waiting (for the failed rank, in a "
                    "collective), so the group was closed; start a new one."
                )
            raise WorkerError(f"{name!r} failed on rank {first}:{note}\n{errors[first]}")
        return [cloudpickle.loads(results[rank]) for rank in chosen]

    def _collect(
        self, chosen: list[int], limit: float, name: str
    ) -> tuple[dict[int, Any], dict[int, str], set[int]]:
        """Wait for the answers of ``chosen``; after a failure, give the others 5 seconds."""
        results: dict[int, Any] = {}
        errors: dict[int, str] = {}
        waiting = set(chosen)
        deadline = time.monotonic() + limit
        while waiting:
            if errors:
                deadline = min(deadline, time.monotonic() + 5.0)
            for rank in sorted(waiting):
                try:
                    kind, value = self._poll(rank, 0.01)
                except TimeoutError:
                    continue
                waiting.discard(rank)
                if kind == "ok":
                    results[rank] = value
                else:
                    errors[rank] = value
            if waiting and time.monotonic() > deadline:
                if errors:
                    break
                self._stopping["polite"] = False
                self.close()
                raise WorkerError(
                    f"{name!r} did not finish within {limit:g} s on rank(s) {sorted(waiting)}; "
                    "the group was closed. Start a new one."
                )
        return results, errors, waiting

    def _alive(self, rank: int) -> bool:
        if self.start_method == "spawn":
            return self._processes[rank].poll() is None
        try:  # a rank forked by the template, which reaps it as soon as it ends
            os.kill(self._pids[rank], 0)
        except ProcessLookupError:
            return False
        return True

    def _poll(self, rank: int, wait: float) -> tuple[str, Any]:
        """The next message of ``rank``; TimeoutError if none within ``wait`` seconds."""
        connection = self._connections[rank]
        if not connection.poll(wait):
            if not self._alive(rank):
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
        texts = []
        for path in (self._folder / "template.log", self.log_path(rank)):
            if path.exists() and path.stat().st_size:
                lines = path.read_text(errors="replace").splitlines()[-_LOG_LINES:]
                texts.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return f"{what}. Last lines of its log:\n" + ("\n".join(texts) or "(the logs are empty)")

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


def _stop_workers(
    processes: list[subprocess.Popen[bytes]],
    pids: list[int],
    connections: list[Connection],
    folder: Path,
    stopping: dict[str, bool],
) -> None:
    """Ask every worker to stop, wait briefly (unless they may be stuck), then terminate
    (and kill) what is left."""
    import shutil
    import signal

    for connection in connections:
        with contextlib.suppress(OSError, ValueError):
            connection.send(("stop", None))
    deadline = time.monotonic() + (5.0 if stopping["polite"] else 0.0)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for pid in pids:  # ranks forked by a template are not our children: stop them by id
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.2)
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


def _template_main(bootstrap: dict[str, Any]) -> int:
    """Import what every rank needs once, then fork the ranks; exit when they have, with
    the first failure's status."""
    import gc

    import torch
    import torch._dynamo  # noqa: F401 (DistributedDataParallel loads it; shared after the fork)
    import torch.distributed  # noqa: F401

    del torch
    gc.freeze()  # the garbage collector leaves what is loaded now alone: fewer pages copied
    sys.stdout.flush()
    for rank in range(bootstrap["world_size"]):
        pid = os.fork()
        if pid == 0:  # the rank
            log = os.open(Path(bootstrap["logs"]) / f"worker-{rank}.log",
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # fmt: skip
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            code = 1
            try:
                code = _worker_main(bootstrap, rank)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    # Become a small process that only waits for the ranks: this process's own copy of
    # the pages the ranks have since written to (Python's reference counts) is freed.
    os.execv(sys.executable, [sys.executable, "-S", "-c", _WAITER])
    return 1  # not reached


# Waits for the ranks forked before exec (they stay its children); ends with status 1 as
# soon as one of them fails, so that the kernel's WorkerGroup sees it and stops the others.
_WAITER = """
import os, sys
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        sys.exit(0)
    if os.waitstatus_to_exitcode(status):
        print(f"a rank (process {pid}) exited with status {os.waitstatus_to_exitcode(status)}")
        sys.exit(1)
"""


def _worker_main(bootstrap: dict[str, Any], rank: int) -> int:
    """One worker: connect to the kernel, join the process group, run what it sends."""
    world_size = bootstrap["world_size"]
    connection = Client(tuple(bootstrap["address"]), authkey=bytes.fromhex(bootstrap["authkey"]))
    connection.send((rank, os.getpid()))
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
            _, port = connection.recv()
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


def _main(argv: list[str]) -> int:
    """``python -m mlcourse.distributed --worker RANK | --template`` (started by
    :class:`WorkerGroup`, which sends the bootstrap on stdin)."""
    bootstrap = json.loads(sys.stdin.readline())
    if argv[:1] == ["--template"]:
        return _template_main(bootstrap)
    if argv[:1] == ["--worker"] and len(argv) == 2:
        return _worker_main(bootstrap, int(argv[1]))
    print("usage: python -m mlcourse.distributed --worker RANK | --template", file=sys.stderr)
    return 2


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
    raise SystemExit(_main(sys.argv[1:]))
