"""The class file: who teaches, who learns, and what each may use.

A YAML file (``deploy/jupyterhub/class.example.yaml`` is a complete one), read with the
course's strict loader (:func:`mlcourse.config_files.load_config_file`: no duplicate keys,
no YAML aliases) and checked field by field (:mod:`mlcourse.config_fields`): every problem
is listed at once, unknown keys with a "did you mean".

Users are local (system) accounts: JupyterHub logs them in with their system password
(PAM) and runs their servers as them, so the operating system keeps their files apart.

Example:
    >>> ClassFile.from_dict({"instructors": ["ada"], "students": ["bob", "cy"]}).students
    ('bob', 'cy')
    >>> ClassFile.from_dict({"instructors": ["ada"], "students": ["ada"]})
    Traceback (most recent call last):
    ...
    mlcourse.config_fields.ConfigError: invalid class file:
      - ['ada'] are listed as instructors and as students; list each user once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcourse.config_fields import Integer, Number, Settings, section, setting
from mlcourse.config_files import load_config_file

# POSIX-portable user names (what `useradd` accepts by default), lower case as JupyterHub
# normalises them.
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class UserNames:
    """A list of distinct local user names (lower case letters, digits, ``_``, ``-``)."""

    at_least: int = 0

    def __call__(self, name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of user names, got {value!r}.")
        bad = [v for v in value if not (isinstance(v, str) and USER_NAME.match(v))]
        if bad:
            raise ValueError(
                f"{name} has invalid user names {bad}; a user name is 1-32 lower case "
                "letters, digits, '_' or '-', starting with a letter or '_'."
            )
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            raise ValueError(f"{name} lists {twice} more than once.")
        if len(value) < self.at_least:
            raise ValueError(f"{name} must list at least {self.at_least} user(s), got none.")
        return tuple(value)

    @property
    def accepts(self) -> str:
        return "list of user names" + (f" (at least {self.at_least})" if self.at_least else "")


@dataclass(frozen=True)
class Limits(Settings):
    """What one student may use: their server and all its kernels and processes together."""

    config_name = "limits"
    memory_gb: float = setting(
        2.0, Number(0.25), "memory (GiB) of the user's server and kernels together"
    )
    cpus: float = setting(1.0, Number(0.1), "CPU cores the user's processes may use together")
    processes: int = setting(512, Integer(64), "processes and threads the user may run at once")


@dataclass(frozen=True)
class InstructorLimits(Limits):
    """What one instructor may use: grading runs several sandboxed kernels at once."""

    memory_gb: float = setting(
        8.0, Number(0.25), "memory (GiB) of the user's server, kernels and grading together"
    )
    cpus: float = setting(2.0, Number(0.1), "CPU cores the user's processes may use together")
    processes: int = setting(4096, Integer(64), "processes and threads the user may run at once")


@dataclass(frozen=True)
class ClassFile(Settings):
    """A class: its instructors and students, their limits, and when idle servers stop."""

    config_name = "class file"
    instructors: tuple[str, ...] = setting(
        (), UserNames(at_least=1), "local users who release, collect and grade (Formgrader)"
    )
    students: tuple[str, ...] = setting(
        (), UserNames(), "local users who fetch and submit (the Assignments tab)"
    )
    student_limits: Limits = section(Limits, "each student's limits")
    instructor_limits: InstructorLimits = section(InstructorLimits, "each instructor's limits")
    idle_server_minutes: int = setting(
        60, Integer(5), "a server with no activity for this long is stopped (work is saved)"
    )

    @classmethod
    def consistency(cls, values: Mapping[str, Any], *, prefix: str) -> list[str]:
        both = sorted(set(values["instructors"]) & set(values["students"]))
        if both:
            return [f"{both} are listed as instructors and as students; list each user once."]
        return []

    def role(self, user: str) -> str:
        """``"instructor"`` or ``"student"``.

        Raises:
            KeyError: ``user`` is not in the class.
        """
        if user in self.instructors:
            return "instructor"
        if user in self.students:
            return "student"
        raise KeyError(f"{user!r} is not in the class (instructors and students of the class file)")

    def limits(self, user: str) -> Limits:
        """The limits of ``user``'s role."""
        return self.instructor_limits if self.role(user) == "instructor" else self.student_limits


def load_class_file(path: str | os.PathLike[str]) -> ClassFile:
    """Read and check a class file.

    Raises:
        mlcourse.config_files.ConfigFileError: not readable YAML/JSON, or not a mapping.
        mlcourse.config_fields.ConfigError: a value is wrong (every problem listed).
    """
    return ClassFile.from_dict(load_config_file(path), source=str(path))
