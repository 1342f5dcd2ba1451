"""The class's local accounts: users, the instructors' group, private homes.

JupyterHub logs users in with their system password (PAM) and runs each server as its
user, so the operating system's permissions are what keep students apart: each home is
private (mode 0700), and only instructors (the :data:`INSTRUCTORS_GROUP` group) can
enter the course directory. Every change is made with the system's own tools
(``useradd``, ``groupadd``, ``gpasswd``, ``chpasswd``) and printed.

Example:
    >>> home_is_private(0o40700), home_is_private(0o40755)
    (True, False)
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import stat
import subprocess
from collections.abc import Callable, Iterable

INSTRUCTORS_GROUP = "mlcourse-instructors"


def user_exists(name: str) -> bool:
    """Whether a local user ``name`` exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def missing_users(names: Iterable[str]) -> list[str]:
    """The names of ``names`` that are not local users."""
    return [n for n in names if not user_exists(n)]


def create_user(name: str) -> str:
    """Create local user ``name`` with a private home and a new random password; returns
    the password (tell it to the user; they change it with ``passwd``)."""
    password = secrets.token_urlsafe(12)
    _run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", name])
    _run(["chpasswd"], text=f"{name}:{password}\n")
    make_home_private(name)
    return password


def ensure_group(name: str, members: Iterable[str], say: Callable[[str], None] = print) -> int:
    """Create group ``name`` if missing and add ``members`` to it; returns its id.

    Members already in it are left alone; nobody is removed.
    """
    try:
        group = grp.getgrnam(name)
    except KeyError:
        _run(["groupadd", name])
        say(f"created group {name}")
        group = grp.getgrnam(name)
    for member in members:
        if member not in group.gr_mem and pwd.getpwnam(member).pw_gid != group.gr_gid:
            _run(["gpasswd", "--add", member, name])
            say(f"added {member} to group {name}")
    return group.gr_gid


def home_is_private(mode: int) -> bool:
    """Whether a home folder's mode keeps other users out (no group/other bits)."""
    return stat.S_IMODE(mode) & 0o077 == 0


def make_home_private(name: str) -> bool:
    """Set ``name``'s home to mode 0700 if others could read it; returns True if changed.

    Raises:
        FileNotFoundError: the user has no home folder.
    """
    home = pwd.getpwnam(name).pw_dir
    mode = os.stat(home).st_mode
    if home_is_private(mode):
        return False
    os.chmod(home, 0o700)
    return True


def run_as(name: str, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as local user ``name`` (uid, gid and groups), the way JupyterHub's
    spawner starts their server; returns the finished process (output captured)."""
    user = pwd.getpwnam(name)
    return subprocess.run(
        command,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=os.getgrouplist(name, user.pw_gid),
        cwd=user.pw_dir,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _run(command: list[str], *, text: str | None = None) -> None:
    result = subprocess.run(command, input=text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(
            f"`{' '.join(command)}` failed (exit code {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
