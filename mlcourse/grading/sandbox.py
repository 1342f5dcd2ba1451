"""One sandbox per submission: bubblewrap, resource limits, nothing of the course in view.

:class:`Sandbox` runs the notebook runner (:mod:`mlcourse.grading.runner`) under
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, Debian's
``bubblewrap``, the sandbox Flatpak uses). Each run gets:

- its own PID, network, IPC and UTS namespaces: no network (not even the host's
  loopback), its own ``/proc`` (no view of the grader or other students), and every
  process it starts dies with it (the namespace's first process exits, the kernel
  kills the rest; ``--die-with-parent`` does the same if the grader dies);
- a fresh, size-limited working folder (``/submission``, a tmpfs) holding only the
  notebook and the lesson's files, and a size-limited ``/tmp``;
- read-only: the system (``/usr``), the course's Python environment, the ``mlcourse``
  package, the datasets and configs; nothing else of the host (no home, no course
  folder, no gradebook, no other student);
- a clean environment, and the :class:`Limits` set by the runner before any student
  code runs.

When the grader runs as root, bwrap keeps only ``CAP_SETUID``/``CAP_SETGID`` and the
runner drops to an unprivileged user id of its own for each worker slot (process limits
only apply to non-root users); otherwise bwrap runs unprivileged in a user namespace.
Where bwrap cannot run, :func:`sandbox_problem` says why, and grading refuses unless
``--unsafe-no-sandbox`` (:class:`Unsandboxed`: same runner and limits, no isolation).

Example:
    >>> Limits().memory_mb, Limits().processes
    (4096, 256)
    >>> Limits(processes=0)
    Traceback (most recent call last):
    ...
    ValueError: processes=0 is out of range; expected an integer in [16, inf).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlcourse.arguments import check_int

WORKDIR = "/submission"
RUN_ENV = "MLCOURSE_GRADING_RUN"  # marks every process of one grading run
# Environment variables a submission may see (besides those set here): locale, time
# zone, thread counts and the numeric libraries' own switches.
PASSED_VARIABLES = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED")
PASSED_PREFIXES = (
    "MLCOURSE_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "NPY_",
    "ATEN_",
    "ONEDNN_",
    "DNNL_",
    "KMP_",
    "TORCH_",
)
# Host files the Python runtime reads; everything else of /etc stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "alternatives")
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Unprivileged user ids the sandboxes use when the grader is root: systemd's range for
# dynamic users; ids with a passwd entry or a running process are skipped.
SANDBOX_UIDS = range(61184, 65520)
RESULT_LIMIT = 256 * 2**20  # bytes of the runner's result
LOG_LIMIT = 64 * 2**10  # bytes of the sandbox's stderr kept for the log


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission (documented in ``docs/instructors.md``).

    Attributes:
        memory_mb: memory (data segment) of each process, in MiB.
        cpu_seconds: CPU time of each process.
        processes: processes and threads the submission may run at once.
        file_size_mb: largest file it may write.
        open_files: open files per process.
        disk_mb: size of the working folder and of ``/tmp`` (each).
        output_kb: text a cell may print that is kept (the rest is cut, with a note).
    """

    memory_mb: int = 4096
    cpu_seconds: int = 900
    processes: int = 256
    file_size_mb: int = 64
    open_files: int = 1024
    disk_mb: int = 512
    output_kb: int = 100

    def __post_init__(self) -> None:
        check_int("memory_mb", self.memory_mb, min_value=256)
        check_int("cpu_seconds", self.cpu_seconds, min_value=1)
        check_int("processes", self.processes, min_value=16)
        check_int("file_size_mb", self.file_size_mb, min_value=1)
        check_int("open_files", self.open_files, min_value=64)
        check_int("disk_mb", self.disk_mb, min_value=16)
        check_int("output_kb", self.output_kb, min_value=1)

    def rlimits(self) -> dict[str, int]:
        """The runner's ``limits`` (see :data:`mlcourse.grading.runner.LIMITS`)."""
        return {
            "processes": self.processes,
            "memory_bytes": self.memory_mb * 2**20,
            "cpu_seconds": self.cpu_seconds,
            "file_size_bytes": self.file_size_mb * 2**20,
            "open_files": self.open_files,
        }

    def output(self) -> dict[str, int]:
        """The runner's output caps."""
        return {
            "text_bytes": self.output_kb * 1024,
            "rich_bytes": 4 * 2**20,
            "total_bytes": 32 * 2**20,
            "record_bytes": 64 * 2**20,
        }


@dataclass
class Reply:
    """What came back from one run: the runner's result, or why there is none."""

    result: dict[str, Any] | None
    timed_out: bool = False
    returncode: int | None = None
    log: str = ""
    seconds: float = 0.0

    @property
    def problem(self) -> str:
        """Why there is no result ("" when there is one)."""
        if self.result is not None:
            return ""
        if self.timed_out:
            return "timed out"
        return f"the sandbox ended without a result (exit code {self.returncode})"


def course_environment() -> list[Path]:
    """What a submission may read: the Python environment, ``mlcourse``, data, configs."""
    import mlcourse
    from mlcourse.course_files import configs_dir, datasets_dir

    paths = [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
    paths += [Path(mlcourse.__file__).parent, datasets_dir(), configs_dir()]
    found: list[Path] = []
    for path in paths:
        for candidate in {path.absolute(), path.resolve()}:
            if candidate.exists() and candidate not in found:
                found.append(candidate)
    # a folder inside another bound folder is already there
    return sorted(p for p in found if not any(p != q and q in p.parents for q in found))


def check_separate(bound: list[Path], private: Mapping[str, Path]) -> None:
    """Refuse to grade when a private folder (the course, the submissions) would be in view.

    Raises:
        ValueError: a private folder is inside a folder the sandbox reads, or contains one.
    """
    for what, folder in private.items():
        folder = folder.resolve()
        for path in bound:
            if path == folder or path in folder.parents or folder in path.parents:
                raise ValueError(
                    f"the {what} {str(folder)!r} overlaps {str(path)!r}, which every "
                    "submission can read; keep it outside the course environment."
                )


def sandbox_environment(run_id: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a submission sees: the lesson kernels' settings (CPU, pinned numeric
    kernels and threads: :func:`~mlcourse.notebooks.lesson_kernel_environment`), locale and
    numeric switches passed through from ``base``, and the sandbox's own paths.

    Example:
        >>> env = sandbox_environment("run1", {"HOME": "/root", "SECRET_TOKEN": "x", "TZ": "UTC"})
        >>> env["HOME"], env["TZ"], "SECRET_TOKEN" in env, env["MLCOURSE_GRADING_RUN"]
        ('/submission', 'UTC', False, 'run1')
    """
    from mlcourse.notebooks import lesson_kernel_environment

    base = os.environ if base is None else base
    passed = {
        k: v for k, v in base.items() if k in PASSED_VARIABLES or k.startswith(PASSED_PREFIXES)
    }
    env = lesson_kernel_environment(passed)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        HOME=WORKDIR,
        TMPDIR="/tmp",
        USER="student",
        LOGNAME="student",
        JUPYTER_RUNTIME_DIR="/tmp/jupyter/runtime",
        JUPYTER_DATA_DIR="/tmp/jupyter/data",
        JUPYTER_CONFIG_DIR="/tmp/jupyter/config",
        IPYTHONDIR="/tmp/ipython",
        MPLCONFIGDIR="/tmp/matplotlib",
        XDG_CACHE_HOME="/tmp/cache",
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env[RUN_ENV] = run_id
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sandbox_uids(count: int) -> list[int]:
    """``count`` unused unprivileged user ids for the sandboxes of a root grader: no passwd
    entry and no running process."""
    import pwd

    import psutil

    taken = {entry.pw_uid for entry in pwd.getpwall()}
    for process in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error, TypeError):
            taken |= set(process.info["uids"])
    found = [uid for uid in SANDBOX_UIDS if uid not in taken][:count]
    if len(found) < count:
        raise RuntimeError(f"no {count} free user ids in {SANDBOX_UIDS} for the sandboxes")
    return found


class _Capped:
    """Reads a pipe in a thread, keeping at most ``limit`` bytes (the head or the tail)."""

    def __init__(self, pipe: IO[bytes], limit: int, keep: str) -> None:
        self.limit, self.keep, self.data, self.overflow = limit, keep, bytearray(), False
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := pipe.read1(1 << 16) if hasattr(pipe, "read1") else pipe.read(1 << 16):
                self.data += chunk
                if len(self.data) > self.limit:
                    self.overflow = True
                    if self.keep == "head":
                        del self.data[self.limit :]
                    else:
                        del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        self.thread.join(timeout=10)
        return bytes(self.data).decode("utf-8", "replace")


class _Launcher:
    """Runs the runner with a job, a time limit and capped outputs (shared by both kinds)."""

    def launch(
        self, argv: list[str], env: dict[str, str] | None, job: dict[str, Any], timeout: float
    ) -> Reply:
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        out = _Capped(process.stdout, RESULT_LIMIT, "head")
        err = _Capped(process.stderr, LOG_LIMIT, "tail")
        timed_out = False
        try:
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(json.dumps(job).encode() + b"\n")
                process.stdin.close()
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self.end(process)
        text = out.text()
        result = None
        if not timed_out and not out.overflow:
            with contextlib.suppress(ValueError):
                result = json.loads(text.splitlines()[-1]) if text.strip() else None
        log = err.text() + ("\n[result too large; left out]" if out.overflow else "")
        return Reply(result, timed_out, process.returncode, log, time.monotonic() - started)

    def end(self, process: subprocess.Popen) -> None:
        """Stop ``process`` and everything it left (overridden by each kind)."""
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()


class Sandbox(_Launcher):
    """Runs jobs in bubblewrap sandboxes; ``slots`` may run at once (see the module docstring).

    Args:
        limits: the resource limits of each submission.
        env: the submissions' environment (:func:`sandbox_environment`).
        slots: how many sandboxes run at once (each gets its own user id under root).
    """

    isolated = True

    def __init__(self, limits: Limits, env: dict[str, str], slots: int = 1) -> None:
        self.limits, self.env = limits, env
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise RuntimeError(sandbox_problem() or "bwrap not found")
        self.root = os.geteuid() == 0
        self.bound = course_environment()
        self._etc = Path(tempfile.mkdtemp(prefix="mlcourse-sandbox-etc-"))
        self._slots: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        uids = sandbox_uids(slots) if self.root else [None] * slots
        for uid in uids:
            self._slots.put(uid)
        ids = [u for u in uids if u is not None] or [os.getuid()]
        users = "".join(f"student:x:{u}:{u}::{WORKDIR}:/bin/false\n" for u in ids)
        (self._etc / "passwd").write_text(users, encoding="utf-8")
        (self._etc / "group").write_text(
            "".join(f"student:x:{u}:\n" for u in ids), encoding="utf-8"
        )
        (self._etc / "hosts").write_text("127.0.0.1 localhost\n", encoding="utf-8")

    def close(self) -> None:
        shutil.rmtree(self._etc, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def slot(self) -> Iterator[int | None]:
        uid = self._slots.get()
        try:
            yield uid
        finally:
            self._slots.put(uid)

    def argv(self, command: list[str]) -> list[str]:
        """The bwrap command line that runs ``command`` in a sandbox."""
        disk = str(self.limits.disk_mb * 2**20)
        args = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net"]
        args += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "grading"]
        if self.root:
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in MERGED_DIRS:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--dev", "/dev", "--proc", "/proc"]
        for where in ("/tmp", "/dev/shm", WORKDIR):
            args += ["--perms", "1777", "--size", disk, "--tmpfs", where]
        made: set[Path] = {Path("/"), Path("/usr"), Path("/tmp"), Path("/dev")}
        for path in self.bound:
            for parent in reversed(path.parents):
                if parent not in made and not any(
                    parent == b or b in parent.parents for b in self.bound
                ):
                    args += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            args += ["--ro-bind", str(path), str(path)]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hosts"):
            args += ["--ro-bind", str(self._etc / name), f"/etc/{name}"]
        args += ["--clearenv"]
        for key, value in sorted(self.env.items()):
            args += ["--setenv", key, value]
        return [*args, "--chdir", WORKDIR, "--", *command]

    def run(self, job: dict[str, Any], timeout: float) -> Reply:
        """Run ``job`` in a fresh sandbox, at most ``timeout`` seconds in all."""
        with self.slot() as uid:
            job = {
                **job,
                "workdir": WORKDIR,
                "own_pid_namespace": True,
                "drop_to": {"uid": uid, "gid": uid} if uid is not None else None,
            }
            command = [sys.executable, "-m", "mlcourse.grading.runner"]
            return self.launch(
                self.argv(command), {"PATH": os.environ.get("PATH", "")}, job, timeout
            )


class Unsandboxed(_Launcher):
    """``--unsafe-no-sandbox``: the same runner and limits, without any isolation.

    Student code runs as the grader, sees its files and network, and a process it
    detaches from the kernel can outlive grading. The process limit is not set: outside a
    user namespace it would count every process the grader's user runs (and root has
    none). Only for trusted submissions.
    """

    isolated = False

    def __init__(self, limits: Limits, env: dict[str, str], slots: int = 1) -> None:
        self.limits = limits
        self.env = {**os.environ, **env}
        self.env.pop("HOME", None)

    def close(self) -> None:
        pass

    def __enter__(self) -> Unsandboxed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, job: dict[str, Any], timeout: float) -> Reply:
        with tempfile.TemporaryDirectory(prefix="mlcourse-unsandboxed-") as workdir:
            env = {**self.env, "HOME": workdir, "TMPDIR": workdir}
            for name in (
                "JUPYTER_RUNTIME_DIR",
                "JUPYTER_DATA_DIR",
                "JUPYTER_CONFIG_DIR",
                "IPYTHONDIR",
                "MPLCONFIGDIR",
                "XDG_CACHE_HOME",
            ):
                env[name] = str(Path(workdir) / ".grading" / name.lower())
            limits = {k: v for k, v in job["limits"].items() if k != "processes"}
            job = {
                **job,
                "limits": limits,
                "workdir": str(Path(workdir) / "submission"),
                "own_pid_namespace": False,
                "drop_to": None,
            }
            return self.launch([sys.executable, "-m", "mlcourse.grading.runner"], env, job, timeout)

    def end(self, process: subprocess.Popen) -> None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, 9)
        process.wait()


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why submissions cannot be sandboxed here, or ``None`` when they can.

    Runs a tiny sandbox once (cached): bwrap must exist and be allowed to create the
    namespaces (unprivileged user namespaces, or root).
    """
    if platform.system() != "Linux":
        return f"the sandbox needs Linux (bubblewrap); this is {platform.system()}"
    if shutil.which("bwrap") is None:
        return "bwrap was not found; install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"
    with Sandbox(Limits(), sandbox_environment("probe")) as sandbox:
        command = [sys.executable, "-c", "import mlcourse; print('ok')"]
        try:
            result = subprocess.run(
                sandbox.argv(command), capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bwrap could not start a sandbox: {error}"
    if result.returncode != 0 or result.stdout.strip() != "ok":
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bwrap could not start a sandbox here ({detail})"
    return None
