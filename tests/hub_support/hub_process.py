"""The class hub as the tests run it: ``deploy/jupyterhub/hub.py`` (what ``python3
course.py hub`` runs) in a process of its own, stopped by its own PID.

Example:
    >>> port = free_ports(3)
    >>> 1024 < port < 65533
    True
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
HUB_SCRIPT = ROOT / "deploy" / "jupyterhub" / "hub.py"


def free_ports(count: int) -> int:
    """A port ``p`` such that ``p`` .. ``p + count - 1`` are free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports found")


class HubProcess:
    """A running class hub; :meth:`stop` ends it (SIGTERM to its PID, then waits)."""

    def __init__(self, python: str, args: list[str], log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [python, str(HUB_SCRIPT), *args, "--port", str(port)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float) -> float:
        """Wait until the hub answers through its proxy; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the hub exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/hub/api/", timeout=5) as reply:
                    if reply.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the hub did not answer within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM to the hub's PID; returns its exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
                self._log_file.close()
                return None
        self._log_file.close()
        return self.process.returncode


def processes_of(uids: set[int], markers: list[str]) -> list[psutil.Process]:
    """Running processes owned by ``uids`` or whose command line holds one of ``markers``."""
    found = []
    for process in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            uid = process.info["uids"].real if process.info["uids"] else None
            command = " ".join(process.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if process.pid == os.getpid():
            continue
        if uid in uids or any(marker in command for marker in markers):
            found.append(process)
    return found


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid} {process.username()}: {' '.join(process.cmdline())[:160]}")
        except psutil.Error:
            continue
    return "\n".join(lines)
