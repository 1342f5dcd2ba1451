"""Start the course's JupyterLab: what ``python3 course.py lab`` runs, inside the course's
environment, and what Binder's ``binder/start`` runs.

    python -m mlcourse.lab [--instructor] [--work-dir DIR] [JupyterLab options ...]
    python -m mlcourse.lab --wrap COMMAND ...    # prepare the same, then run COMMAND

**Learner mode** (the default) opens the start page in the learner's own folder,
``my-work/`` (made and topped up by :mod:`mlcourse.my_work`), so their work never changes
the repository; nbgrader's tools are hidden (:mod:`mlcourse.lab_settings`).
**Instructor mode** (``--instructor``) serves the repository, with nbgrader's menus,
panels and Formgrader working on the course directory ``course/`` (made by
``mlcourse-grade``'s :class:`~mlcourse.grading.course_directory.Course` if missing).

In both, JupyterLab listens on 127.0.0.1 with a login token (unless ``--ip`` says
otherwise), and its kernels inherit the lesson-kernel environment
(:func:`mlcourse.notebooks.lesson_kernel_environment`: CPU-dispatch and thread pins, so
results match the committed outputs) -- except the device: a learner's GPU stays usable.
The configuration is written to ``.mlcourse-lab/<mode>/`` in the repository (ignored by
git) on every start.

Example:
    >>> options, rest = parse_args(["--instructor", "--port=8899"])
    >>> options.mode, rest
    ('instructor', ['--port=8899'])
    >>> parse_args(["--wrap", "jupyter", "lab", "--instructor"])[0].wrap
    ['jupyter', 'lab', '--instructor']
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlcourse.course_files import require_course_root
from mlcourse.lab_settings import write_config
from mlcourse.my_work import START_PAGE, sync_work
from mlcourse.notebooks import lesson_kernel_environment
from mlcourse.resources import DEVICE_ENV

WORK_DIR_ENV = "MLCOURSE_WORK_DIR"
STATE_FOLDER = ".mlcourse-lab"
WORK_FOLDER = "my-work"
COURSE_FOLDER = "course"


@dataclass
class Launch:
    """Where and how JupyterLab runs: its root, working directory and environment."""

    root_dir: Path
    cwd: Path
    environment: dict[str, str]
    messages: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This launcher's options, and the rest (for JupyterLab, or ``--wrap``'s command)."""
    parser = argparse.ArgumentParser(
        prog="python -m mlcourse.lab", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument(
        "--instructor",
        dest="mode",
        action="store_const",
        const="instructor",
        default="learner",
        help="show nbgrader's tools (Formgrader, Create Assignment) and serve the repository",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=os.environ.get(WORK_DIR_ENV) or None,
        help=f"the learner's folder (default: ${WORK_DIR_ENV} or {WORK_FOLDER}/ in the repository)",
    )
    parser.add_argument("--course-dir", type=Path, help="instructor mode's nbgrader course folder")
    parser.add_argument(
        "--project",
        type=Path,
        help="the course's repository (default: $MLCOURSE_ROOT, or the checkout this "
        "package is installed from)",
    )
    parser.add_argument(
        "--wrap",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="prepare everything, then run COMMAND (all that follows) instead of JupyterLab",
    )
    options, rest = parser.parse_known_args(argv)
    if options.wrap is not None and not options.wrap:
        parser.error("--wrap needs the command to run, e.g. --wrap jupyter lab --ip=0.0.0.0")
    if options.wrap and rest:
        parser.error(f"options for JupyterLab go after --wrap's command, not before: {rest}")
    return options, rest


def lab_environment(base: Mapping[str, str], config_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The server's (and so every kernel's) environment: the lesson-kernel pins, the
    learner's own device choice, and the course's Jupyter configuration first.

    Example:
        >>> env = lab_environment({"JUPYTER_CONFIG_PATH": "/theirs"}, "/course-config")
        >>> env["JUPYTER_CONFIG_PATH"] == os.pathsep.join(["/course-config", "/theirs"])
        True
        >>> DEVICE_ENV in env, env["OMP_NUM_THREADS"]
        (False, '1')
    """
    env = lesson_kernel_environment(base)
    if DEVICE_ENV in base:  # the tools run lessons on the CPU; a learner may have a GPU
        env[DEVICE_ENV] = base[DEVICE_ENV]
    else:
        env.pop(DEVICE_ENV, None)
    paths = [str(config_dir), *filter(None, base.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep))]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
    return env


def jupyterlab_command(python: str, root_dir: str | os.PathLike[str], args: list[str]) -> list[str]:
    """``python -m jupyterlab`` on ``root_dir``: on 127.0.0.1 unless ``args`` give an
    ``--ip`` (JupyterLab refuses two), ``--allow-root`` when run as root, then ``args``.

    Example:
        >>> jupyterlab_command("py", "/w", ["--ip=0.0.0.0"])[:4]
        ['py', '-m', 'jupyterlab', '--ServerApp.root_dir=/w']
    """
    command = [python, "-m", "jupyterlab", f"--ServerApp.root_dir={root_dir}"]
    if not any(a.startswith(("--ip", "--ServerApp.ip")) for a in args):
        command.append("--ip=127.0.0.1")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")
    return command + list(args)


def prepare(options: argparse.Namespace, base: Mapping[str, str], cwd: Path) -> Launch:
    """Make the work folder (learner) or course folder (instructor), write the mode's
    configuration, and say where JupyterLab runs. ``cwd`` is the server's root for
    ``--wrap`` (Binder serves the folder it starts in)."""
    project = (options.project or require_course_root()).resolve()
    notebooks = project / "notebooks"
    messages: list[str] = []
    if options.mode == "learner":
        work = (options.work_dir or project / WORK_FOLDER).resolve()
        result = sync_work(notebooks, work)
        messages += [f"{WORK_FOLDER}: {line}" for line in result.summary()]
        root_dir = cwd.resolve() if options.wrap else work
        start, server_cwd = work / START_PAGE, work
    else:
        course = _course_directory(options.course_dir or project / COURSE_FOLDER)
        root_dir = cwd.resolve() if options.wrap else _common_root(project, course)
        start, server_cwd = notebooks / START_PAGE, course  # nbgrader reads its config there
    start_url = "/lab/tree/" + _url_path(start, root_dir)
    config = write_config(project / STATE_FOLDER / options.mode, options.mode, start_url=start_url)
    return Launch(root_dir, server_cwd, lab_environment(base, config), messages)


def main(argv: list[str] | None = None) -> int:
    """Prepare, then replace this process by JupyterLab (or ``--wrap``'s command)."""
    options, rest = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        launch = prepare(options, os.environ, Path.cwd())
    except (OSError, ValueError) as error:
        print(f"mlcourse.lab: {error}", file=sys.stderr)
        return 2
    for message in launch.messages:
        print(message, flush=True)
    if options.wrap:
        command, cwd = options.wrap, Path.cwd()
    else:
        command, cwd = jupyterlab_command(sys.executable, launch.root_dir, rest), launch.cwd
    if os.name != "posix":  # no exec on Windows: wait for JupyterLab instead
        return subprocess.call(command, cwd=cwd, env=launch.environment)
    os.chdir(cwd)
    os.execvpe(command[0], command, launch.environment)
    return 0  # not reached


def _course_directory(path: Path) -> Path:
    """Instructor mode's nbgrader course folder, created (with its config) if missing."""
    from mlcourse.grading.course_directory import Course

    return Course.create(path).root.resolve()


def _common_root(project: Path, course: Path) -> Path:
    """The repository, or the course folder's parent when it lies outside it (Formgrader
    needs the course folder inside the server's root)."""
    return project if course.is_relative_to(project) else course.parent


def _url_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a URL path; the root itself when outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
