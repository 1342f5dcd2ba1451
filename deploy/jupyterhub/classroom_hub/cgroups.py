"""One user's memory, CPU and process limits, enforced by the Linux kernel (cgroup v1).

JupyterHub's own ``LocalProcessSpawner`` accepts ``mem_limit`` and ``cpu_limit`` but
enforces neither. :class:`UserCgroup` puts a user's server, and so every kernel, terminal
and process it starts (children inherit their cgroup, whatever they do: ``setsid``,
double forks), into one control group per controller:

- ``memory``: ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, so swap is
  no way around it); past it the kernel's OOM killer ends a process of that user only;
- ``cpu``: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` = the CPU cores it may use;
- ``pids``: ``pids.max``, so a fork bomb stops at the user's own limit.

The groups are made under the cgroup the hub itself runs in (``/proc/self/cgroup``), so
a container's or a service's own limits still hold. When the server stops, whatever is
left in them is killed and the groups are removed.

This is cgroup **v1** (this course's test machines have it). On a host with cgroup v2
only (most systemd distributions today) :func:`cgroup_problem` says so: use
``jupyterhub-systemdspawner`` there, which asks systemd for the same limits.

Example:
    >>> limits = UserCgroup("alice", memory_bytes=2 * 2**30, cpus=1.5, processes=512)
    >>> limits.settings()["cpu"]
    [('cpu.cfs_period_us', '100000'), ('cpu.cfs_quota_us', '150000')]
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
GROUP_PREFIX = "mlcourse-hub"  # <hub's cgroup>/mlcourse-hub/<user>
CFS_PERIOD_US = 100_000
MOUNTS = Path("/proc/self/mounts")
OWN_CGROUPS = Path("/proc/self/cgroup")


def v1_hierarchies(mounts: str, own: str) -> dict[str, Path]:
    """``{controller: folder of this process's cgroup}`` for the v1 controllers we use.

    Args:
        mounts: the text of ``/proc/self/mounts``.
        own: the text of ``/proc/self/cgroup``.

    Example:
        >>> mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\\n"
        >>> v1_hierarchies(mounts, "4:memory:/box/1\\n0::/\\n")
        {'memory': PosixPath('/sys/fs/cgroup/memory/box/1')}
    """
    mounted: dict[str, Path] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "cgroup":
            continue
        for option in fields[3].split(","):
            if option in CONTROLLERS:
                mounted[option] = Path(fields[1])
    found: dict[str, Path] = {}
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            if controller in mounted:
                found[controller] = mounted[controller] / parts[2].lstrip("/")
    return found


def own_hierarchies() -> dict[str, Path]:
    """:func:`v1_hierarchies` of this process."""
    try:
        return v1_hierarchies(MOUNTS.read_text(), OWN_CGROUPS.read_text())
    except OSError:
        return {}


def cgroup_problem() -> str | None:
    """Why per-user limits cannot be enforced here, or ``None`` when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the hub is not running as root (it must be, to run servers as their users)"
    found = own_hierarchies()
    missing = [c for c in CONTROLLERS if c not in found]
    if missing:
        return (
            f"no cgroup v1 {', '.join(missing)} controller is mounted (/proc/self/mounts); "
            "on a cgroup v2 host use jupyterhub-systemdspawner for per-user limits"
        )
    for controller, folder in found.items():
        if not os.access(folder, os.W_OK):
            return f"the {controller} cgroup {folder} is not writable"
    return None


class UserCgroup:
    """The cgroups of one user's server: memory, CPU and process limits.

    Args:
        user: the user name (the groups' name).
        memory_bytes: memory of all the user's processes together.
        cpus: CPU cores they may use together (1.5 = one and a half cores).
        processes: processes and threads at once.
        hierarchies: ``{controller: parent folder}`` (default: this process's cgroups).
    """

    def __init__(
        self,
        user: str,
        *,
        memory_bytes: int,
        cpus: float,
        processes: int,
        hierarchies: dict[str, Path] | None = None,
    ) -> None:
        if not user or "/" in user or user.startswith("."):
            raise ValueError(f"user={user!r} cannot name a cgroup.")
        if memory_bytes < 64 * 2**20:
            raise ValueError(f"memory_bytes={memory_bytes} is out of range; expected >= 64 MiB.")
        if not cpus > 0:
            raise ValueError(f"cpus={cpus!r} is out of range; expected a number > 0.")
        if processes < 16:
            raise ValueError(f"processes={processes} is out of range; expected >= 16.")
        self.user = user
        self.memory_bytes = int(memory_bytes)
        self.cpus = float(cpus)
        self.processes = int(processes)
        self._parents = hierarchies

    def settings(self) -> dict[str, list[tuple[str, str]]]:
        """``{controller: [(file, value), ...]}`` written in that order when the groups are made."""
        memory = str(self.memory_bytes)
        return {
            # memory+swap may never be below memory: lift it, set memory, then lower it
            "memory": [
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", memory),
                ("memory.memsw.limit_in_bytes", memory),
            ],
            "cpu": [
                ("cpu.cfs_period_us", str(CFS_PERIOD_US)),
                ("cpu.cfs_quota_us", str(round(self.cpus * CFS_PERIOD_US))),
            ],
            "pids": [("pids.max", str(self.processes))],
        }

    def folders(self) -> dict[str, Path]:
        """``{controller: the user's cgroup folder}``."""
        parents = self._parents if self._parents is not None else own_hierarchies()
        return {c: parents[c] / GROUP_PREFIX / self.user for c in CONTROLLERS if c in parents}

    def create(self) -> None:
        """Make the groups (or reuse them) and write the limits.

        Raises:
            OSError: a group cannot be made or a limit cannot be written (the message says
                which file).
        """
        folders = self.folders()
        missing = [c for c in CONTROLLERS if c not in folders]
        if missing:
            raise OSError(f"no cgroup for {', '.join(missing)}: {cgroup_problem()}")
        for controller, values in self.settings().items():
            folder = folders[controller]
            folder.mkdir(parents=True, exist_ok=True)
            for name, value in values:
                target = folder / name
                if name == "memory.memsw.limit_in_bytes" and not target.exists():
                    continue  # the kernel does not account swap: the memory limit is all
                try:
                    target.write_text(value)
                except OSError as error:
                    raise OSError(f"cannot set {target} to {value}: {error}") from error

    def join(self, pid: int | None = None) -> None:
        """Move a process (default: this one) into the groups; its children follow."""
        text = str(pid if pid is not None else os.getpid())
        for folder in self.folders().values():
            (folder / "cgroup.procs").write_text(text)

    def pids(self) -> set[int]:
        """Every process in the groups now."""
        found: set[int] = set()
        for folder in self.folders().values():
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return found

    def peak_memory(self) -> int:
        """The most memory the groups have held since they were made, in bytes."""
        return int((self.folders()["memory"] / "memory.max_usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        """How many processes the memory limit has ended (0 when the kernel does not say)."""
        text = (self.folders()["memory"] / "memory.oom_control").read_text()
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", 0))

    def remove(self, *, grace_s: float = 5.0) -> set[int]:
        """Kill whatever is left in the groups, then remove them; returns the killed PIDs."""
        killed: set[int] = set()
        deadline = time.monotonic() + grace_s
        while True:
            left = self.pids()
            for pid in left - killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            killed |= left
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for folder in self.folders().values():
            for empty in (folder, folder.parent):  # the parent goes with the last user
                try:
                    empty.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:  # another user's group is still in it
                    break
        return killed
