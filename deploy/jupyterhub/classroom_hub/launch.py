"""``python3 course.py hub``: check and prepare everything, then start JupyterHub.

    python3 course.py hub [--class FILE] [--data-dir DIR] [--ip IP] [--port PORT]
                          [--create-users] [--no-limits] [--copy-python] [--check]

Runs as root (JupyterHub starts each user's server as that user). In order, it:

1. reads the class file (default: ``deploy/jupyterhub/class.example.yaml``);
2. finds configurable-http-proxy and runs it once (``--version``);
3. checks that per-user limits can be enforced (cgroup v1), unless ``--no-limits``;
4. checks the class's local users exist; ``--create-users`` creates the missing ones,
   each with a random password, printed once and kept in ``DATA/state/new-passwords.txt``
   (root only);
5. puts the instructors in the ``mlcourse-instructors`` group and makes every class
   member's home private (0700), saying what it changed;
6. checks that a class member runs the course environment's own Python interpreter and
   can import it (as that user); where the interpreter is not readable by them (e.g.
   under ``/root``) ``--copy-python`` gives them a copy (:mod:`classroom_hub.interpreter`);
7. makes the data folder's layout (:mod:`classroom_hub.layout`) and each role's Jupyter
   configuration (:mod:`classroom_hub.user_config`);
8. checks the three ports (PORT, PORT+1, PORT+2) are free, and replaces itself by
   JupyterHub (``deploy/jupyterhub/jupyterhub_config.py``). Ctrl+C stops the hub, its
   proxy, the culler and every user's server.

``--check`` does 1-7 and stops there. Exit codes: 2 when something is wrong (the message
says what and how to fix it), otherwise JupyterHub's.

Example:
    >>> options = parse_args(["--port", "8100", "--no-limits"])
    >>> options.port, options.ip, options.no_limits
    (8100, '127.0.0.1', True)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from classroom_hub import accounts
from classroom_hub.cgroups import cgroup_problem
from classroom_hub.class_file import ClassFile, load_class_file
from classroom_hub.hub_config import SETTINGS_ENV, HubSettings
from classroom_hub.interpreter import (
    interpreter_environment,
    interpreter_problem,
    share_interpreter,
)
from classroom_hub.layout import Layout, prepare_folders
from classroom_hub.proxy import ProxyMissing, find_proxy, proxy_version
from classroom_hub.user_config import ROLES, write_role_config
from mlcourse.config_fields import ConfigError
from mlcourse.config_files import ConfigFileError
from mlcourse.integrity import atomic_write_text

HUB_FOLDER = Path(__file__).resolve().parent.parent
EXAMPLE_CLASS = HUB_FOLDER / "class.example.yaml"
HUB_CONFIG = HUB_FOLDER / "jupyterhub_config.py"
DEFAULT_DATA = Path("/srv/mlcourse-hub")
# Run as a class member: imports what their servers need, and prints each role's
# variables (the role's config folder first on JUPYTER_CONFIG_PATH, the lesson-kernel
# pins): computing them imports torch, which the launcher and the hub never do.
ROLE_ENVIRONMENTS = """
import json, sys
import jupyterhub.singleuser, jupyterlab, nbgrader, mlcourse.grading.cli
from mlcourse.lab import lab_environment
base, folders = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({role: lab_environment(base, folder) for role, folder in folders.items()}))
"""
# What the users' servers keep of the launcher's environment (it runs as root).
PASSED_VARIABLES = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")


class LaunchError(RuntimeError):
    """The hub cannot start; the message says why and what to do."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The launcher's options."""
    parser = argparse.ArgumentParser(
        prog="python3 course.py hub",
        description="Start the course's JupyterHub for a class (see docs/classroom.md).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--class",
        dest="class_file",
        type=Path,
        default=EXAMPLE_CLASS,
        help="the class file: instructors, students, limits (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="where the hub keeps its state, the exchange and the course (default: %(default)s)",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="public address (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="public port; the hub's and the proxy's APIs take the next two (default: 8000)",
    )
    parser.add_argument(
        "--create-users",
        action="store_true",
        help="create the class's missing local users, with random passwords (printed once)",
    )
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="run without per-user memory, CPU and process limits (where cgroups are missing)",
    )
    parser.add_argument(
        "--copy-python",
        action="store_true",
        help="where users cannot read the course environment's Python interpreter (e.g. it "
        "is under /root), give them a copy of it in DATA/python",
    )
    parser.add_argument(
        "--check", action="store_true", help="check and prepare everything, then stop"
    )
    options = parser.parse_args(argv)
    if not 1 <= options.port <= 65533:
        parser.error(f"--port {options.port} is out of range; expected 1-65533.")
    return options


def prepare(options: argparse.Namespace, say: Callable[[str], None] = print) -> HubSettings:
    """Steps 1-7 of the module's list; returns the hub's settings.

    Raises:
        LaunchError: something is missing or wrong (the message says how to fix it).
    """
    if platform.system() != "Linux":
        raise LaunchError("the class hub runs on Linux (local users, PAM, cgroups).")
    if os.geteuid() != 0:
        raise LaunchError(
            "run it as root (sudo): JupyterHub starts each user's server as that user."
        )
    try:
        classroom = load_class_file(options.class_file)
    except (ConfigError, ConfigFileError, OSError) as error:
        raise LaunchError(str(error)) from error
    try:
        proxy = find_proxy()
        say(f"proxy: {proxy} {proxy_version(proxy, os.environ)}")
    except ProxyMissing as error:
        raise LaunchError(str(error)) from error
    problem = None if options.no_limits else cgroup_problem()
    if problem:
        raise LaunchError(
            f"per-user limits cannot be enforced here: {problem}. "
            "Start with --no-limits to run without them."
        )
    data = options.data_dir.resolve()
    layout = Layout(data)
    _prepare_users(classroom, layout, create=options.create_users, say=say)
    group = accounts.ensure_group(accounts.INSTRUCTORS_GROUP, classroom.instructors, say)
    prepare_folders(
        layout, lead=classroom.instructors[0], instructors=classroom.instructors, group=group
    )
    for role in ROLES:
        write_role_config(
            layout.role_config(role),
            role,
            exchange=str(layout.exchange),
            course_dir=str(layout.course),
        )
    member = classroom.students[0] if classroom.students else classroom.instructors[0]
    shared = _shared_interpreter(member, layout, copy=options.copy_python, say=say)
    environments = _role_environments(member, shared, layout)
    return HubSettings(
        class_file=options.class_file.resolve(),
        data_dir=data,
        ip=options.ip,
        port=options.port,
        proxy=proxy,
        enforce_limits=not options.no_limits,
        idle_server_minutes=classroom.idle_server_minutes,
        groups={"instructors": list(classroom.instructors), "students": list(classroom.students)},
        environments=environments,
    )


def _prepare_users(
    classroom: ClassFile, layout: Layout, *, create: bool, say: Callable[[str], None]
) -> None:
    members = [*classroom.instructors, *classroom.students]
    missing = accounts.missing_users(members)
    if missing and not create:
        raise LaunchError(
            f"these users of the class file do not exist: {', '.join(missing)}. Create them "
            "(useradd; they log in with their system password), or start with --create-users."
        )
    if missing:
        layout.data.mkdir(parents=True, exist_ok=True)
        layout.state.mkdir(mode=0o700, exist_ok=True)
        record = layout.state / "new-passwords.txt"
        lines = [f"{name}: {accounts.create_user(name)}" for name in missing]
        old = record.read_text() if record.exists() else ""
        atomic_write_text(record, old + "\n".join(lines) + "\n", overwrite=True)
        record.chmod(0o600)
        say(f"created {len(missing)} user(s); passwords (also in {record}, root only):")
        for line in lines:
            say(f"  {line}")
    for name in members:
        if accounts.make_home_private(name):
            say(f"made {name}'s home private (mode 0700)")


def _shared_interpreter(
    user: str, layout: Layout, *, copy: bool, say: Callable[[str], None]
) -> dict[str, str]:
    """The variables users need to run the course's interpreter ({} when they run it as is)."""
    problem = interpreter_problem(user)
    if problem is None:
        return {}
    if not copy:
        raise LaunchError(
            f"{problem}. Install the course with a Python every user can read (e.g. under "
            f"/opt), or start with --copy-python to give the hub's users a copy of it "
            f"({layout.python}, about 100 MB)."
        )
    extra = interpreter_environment(share_interpreter(layout.python))
    problem = interpreter_problem(user, extra)
    if problem is not None:
        raise LaunchError(f"even with the copy in {layout.python}: {problem}")
    say(f"users run a copy of the course's Python interpreter: {layout.python}")
    return extra


def _role_environments(
    user: str, extra: dict[str, str], layout: Layout
) -> dict[str, dict[str, str]]:
    """Each role's variables, computed by ``user`` in the course environment (which
    shows they can run it); ``extra`` (the shared interpreter's) added to each."""
    base = {k: v for k, v in os.environ.items() if k in PASSED_VARIABLES}
    folders = {role: str(layout.role_config(role)) for role in ROLES}
    command = [sys.executable, "-c", ROLE_ENVIRONMENTS, json.dumps(base), json.dumps(folders)]
    result = accounts.run_as(user, command, env={"PATH": "/usr/bin:/bin", **extra})
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise LaunchError(
            f"user {user!r} cannot run the course environment {sys.prefix} ({last}). Every "
            "folder above it and the repository must be readable by all users (e.g. clone "
            "the course under /opt, not in root's home)."
        )
    environments = json.loads(result.stdout.strip().splitlines()[-1])
    return {role: {**environments[role], **extra} for role in ROLES}


def check_ports(ip: str, port: int) -> None:
    """Raise :class:`LaunchError` unless ``port`` (on ``ip``) and the next two (on
    127.0.0.1) are free."""
    for host, number in ((ip, port), ("127.0.0.1", port + 1), ("127.0.0.1", port + 2)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, number))
            except OSError as error:
                raise LaunchError(
                    f"port {number} on {host} is taken ({error.strerror}); choose another --port."
                ) from None


def main(argv: list[str] | None = None) -> int:
    """Prepare, then replace this process by JupyterHub."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = prepare(options)
        if options.check:
            print("checked: the hub can start (run again without --check)")
            return 0
        check_ports(settings.ip, settings.port)
    except (LaunchError, OSError) as error:
        print(f"course.py hub: {error}", file=sys.stderr)
        return 2
    layout = Layout(settings.data_dir)
    settings_file = layout.state / "hub-settings.json"
    atomic_write_text(settings_file, settings.to_json(), overwrite=True)
    print(
        f"JupyterHub for {len(settings.groups['students'])} student(s) and "
        f"{len(settings.groups['instructors'])} instructor(s): "
        f"http://{settings.ip}:{settings.port}/ (Ctrl+C stops it)",
        flush=True,
    )
    env = {**os.environ, SETTINGS_ENV: str(settings_file)}
    # Ctrl+C must reach the hub and, through it, every server it starts, even when this
    # launcher was started with SIGINT ignored (`nohup`, `cmd &` in a script)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    command = [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)]
    os.chdir(layout.state)
    os.execve(command[0], command, env)
    return 0  # not reached
