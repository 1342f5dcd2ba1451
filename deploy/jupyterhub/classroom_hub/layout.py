"""The hub's folders, their owners and modes, under one data folder.

::

    DATA/                       root, 0755
      state/                    root, 0700: JupyterHub's database, cookie secret, logs
      config/student/           root, 0755: the students' Jupyter configuration
      config/instructor/        root, 0755: the instructors' Jupyter configuration
      exchange/                 root, 1777: nbgrader's exchange (anyone may write, the
                                sticky bit keeps each entry to its owner)
      exchange/mlcourse/        lead instructor : instructors, 2775; made here so no
                                student can claim the course's name first
      course/                   lead instructor : instructors, 2770: the course directory
                                (source, gradebook, submissions, feedback); students
                                cannot even list it
      python/                   root, 0755: with --copy-python, the interpreter users run

Existing folders are never emptied or replaced: only their group and mode are set, and
a folder owned by someone who is not root or an instructor is refused (it could be a
student's trap). The lead instructor is the first one in the class file.

Example:
    >>> layout = Layout(Path("/srv/mlcourse-hub"))
    >>> str(layout.exchange_course), str(layout.role_config("student"))
    ('/srv/mlcourse-hub/exchange/mlcourse', '/srv/mlcourse-hub/config/student')
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The course's nbgrader course id: = mlcourse.grading.config.COURSE_ID (tests/test_hub.py
# checks they agree), not imported because importing nbgrader takes seconds.
COURSE_ID = "mlcourse"


@dataclass(frozen=True)
class Layout:
    """Where the hub keeps everything, under ``data``."""

    data: Path

    @property
    def state(self) -> Path:
        return self.data / "state"

    @property
    def exchange(self) -> Path:
        return self.data / "exchange"

    @property
    def exchange_course(self) -> Path:
        return self.exchange / COURSE_ID

    @property
    def course(self) -> Path:
        return self.data / "course"

    @property
    def python(self) -> Path:
        """Where ``--copy-python`` puts the interpreter users run (readable by all)."""
        return self.data / "python"

    def role_config(self, role: str) -> Path:
        """The Jupyter configuration folder of ``role`` (``student``/``instructor``)."""
        return self.data / "config" / role


def prepare_folders(layout: Layout, *, lead: str, instructors: Iterable[str], group: int) -> None:
    """Make (or check) every folder of ``layout`` with its owner and mode.

    Args:
        lead: the instructor who owns the course directory and the exchange's course folder.
        instructors: every instructor (who may own those folders already).
        group: the instructors' group id.

    Raises:
        PermissionError: a folder exists with an owner who is not root or an instructor.
    """
    lead_uid = pwd.getpwnam(lead).pw_uid
    trusted = {0} | {pwd.getpwnam(name).pw_uid for name in instructors}
    _folder(layout.data, 0, 0, 0o755, trusted={0})
    _folder(layout.state, 0, 0, 0o700, trusted={0})
    _folder(layout.data / "config", 0, 0, 0o755, trusted={0})
    _folder(layout.exchange, 0, 0, 0o1777, trusted={0})
    _folder(layout.exchange_course, lead_uid, group, 0o2775, trusted=trusted)
    _folder(layout.course, lead_uid, group, 0o2770, trusted=trusted)


def _folder(path: Path, uid: int, gid: int, mode: int, *, trusted: set[int]) -> None:
    """Make ``path`` owned by ``uid:gid`` with ``mode``; an existing one keeps its owner
    (if trusted) and gets the group and mode."""
    try:
        path.mkdir()
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{path} exists and is not a folder") from None
        if info.st_uid not in trusted:
            owner = _user_name(info.st_uid)
            raise PermissionError(
                f"{path} exists and belongs to {owner!r}, who is not root or an instructor; "
                "check what it holds, then remove it or give it to the lead instructor."
            ) from None
        os.chown(path, -1, gid)
    else:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
