"""The spawner: each user's server as that local user, in their role's mode and limits.

:class:`ClassSpawner` is JupyterHub's ``LocalProcessSpawner`` (the server runs as the
user, in their home, with their groups) plus what a class needs:

- the role's variables (``role_environments``, from the launcher: the role's Jupyter
  configuration (:mod:`classroom_hub.user_config`) first on ``JUPYTER_CONFIG_PATH``, the
  course's lesson-kernel pins (:func:`mlcourse.lab.lab_environment`)), and the course
  environment's commands first on ``PATH`` (``mlcourse-grade``, ``nbgrader``;
  instructors also ``mlcourse-class``, with ``MLCOURSE_COURSE_DIR``);
- students' servers open their home; instructors' open the course directory (Formgrader
  and ``mlcourse-class`` work there);
- with ``enforce_limits``, the server and everything it starts run in the user's cgroups
  (:class:`classroom_hub.cgroups.UserCgroup`: memory, CPU cores, processes from the
  class file); whatever is left when the server stops or dies is killed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Dict, Unicode

from classroom_hub.cgroups import UserCgroup
from classroom_hub.class_file import ClassFile, load_class_file
from classroom_hub.class_steps import COURSE_ENV
from classroom_hub.layout import Layout

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class ClassSpawner(LocalProcessSpawner):
    """``LocalProcessSpawner`` with the class's roles, environment and cgroup limits."""

    class_file = Unicode(help="the class file (deploy/jupyterhub/class.example.yaml)").tag(
        config=True
    )
    data_dir = Unicode(help="the hub's data folder (classroom_hub.layout)").tag(config=True)
    commands_dir = Unicode(help="folder of the course environment's commands").tag(config=True)
    instructor_commands_dir = Unicode(help="folder holding mlcourse-class").tag(config=True)
    enforce_limits = Bool(True, help="run each server in cgroups with its limits").tag(config=True)
    role_environments = Dict(help="{role: variables} every server of that role gets").tag(
        config=True
    )

    _class: ClassFile | None = None

    @property
    def classroom(self) -> ClassFile:
        """The class file, read once per spawner."""
        if self._class is None:
            self._class = load_class_file(self.class_file)
        return self._class

    @property
    def role(self) -> str:
        return self.classroom.role(self.user.name)

    @property
    def cgroup(self) -> UserCgroup:
        limits = self.classroom.limits(self.user.name)
        return UserCgroup(
            self.user.name,
            memory_bytes=int(limits.memory_gb * 2**30),
            cpus=limits.cpus,
            processes=limits.processes,
        )

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self.role_environments[self.role])
        folders = [self.commands_dir]
        if self.role == "instructor":
            folders.append(self.instructor_commands_dir)
        env["PATH"] = os.pathsep.join([*folders, SYSTEM_PATH])
        if self.role == "instructor":
            env[COURSE_ENV] = str(Layout(Path(self.data_dir)).course)
        env.pop("PYTHONPATH", None)
        return env

    async def start(self) -> Any:
        limits = self.classroom.limits(self.user.name)
        self.mem_limit = int(limits.memory_gb * 2**30)  # shown to the server as MEM_LIMIT
        self.cpu_limit = limits.cpus
        if self.role == "instructor":
            self.notebook_dir = str(Layout(Path(self.data_dir)).course)
        if self.enforce_limits:
            cgroup = self.cgroup
            cgroup.remove()  # leftovers of an earlier server that died
            cgroup.create()
        return await super().start()

    def make_preexec_fn(self, name: str) -> Any:
        become_user = super().make_preexec_fn(name)
        if not self.enforce_limits:
            return become_user
        procs = [str(folder / "cgroup.procs") for folder in self.cgroup.folders().values()]

        def preexec() -> None:  # runs in the child, before exec: join the cgroups as root
            pid = str(os.getpid())
            for path in procs:
                with open(path, "w") as file:
                    file.write(pid)
            become_user()

        return preexec

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is not None and self.enforce_limits:
            self.cgroup.remove()  # the server ended: end its kernels and whatever else
        return status

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.enforce_limits:
            killed = self.cgroup.remove()
            if killed:
                self.log.info(
                    "Ended %d process(es) left by %s's server", len(killed), self.user.name
                )
