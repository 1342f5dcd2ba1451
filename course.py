#!/usr/bin/env python3
"""Set up the course and run it: the only commands a newcomer needs.

    python3 course.py lab     # set up (first time only), then open the course in JupyterLab
    python3 course.py test    # set up (first time only), then run the whole test suite

On Windows type ``py course.py lab`` / ``py course.py test``. Set-up creates ``.venv``
and installs exact, hash-checked versions plus this project: ``lab`` the learner's set
(``requirements.lock``), ``test`` and ``lab --instructor`` the developer's set
(``requirements-dev.lock``: the learner's plus grading, JupyterHub and the test tools). It
re-installs only when the lock it needs or ``pyproject.toml`` changed.

On Linux without an NVIDIA GPU, ``MLCOURSE_TORCH=cpu python3 course.py lab`` installs
PyTorch's CPU-only build instead (about 4 GB smaller; what Docker and Binder use).

Maintainer commands (same set-up first):

    python3 course.py execute [NOTEBOOK ...]  # re-run lessons in lite mode, commit outputs
    python3 course.py student [--check | --hide-solutions]  # regenerate/check the student copies
    python3 course.py bench                   # lite-mode time and memory per lesson
    python3 course.py lock                    # re-resolve both locks (needs uv)
    python3 course.py setup [--requirements-only] [--dev]  # set up only (Docker, Binder)

Instructors (as root; see docs/classroom.md):

    python3 course.py hub [--class FILE] [--create-users] [--port 8000]  # a class on JupyterHub

This file uses only the standard library: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MLCOURSE_VENV", ROOT / ".venv"))
# The package sets: what a learner needs, and what a developer or instructor adds.
PACKAGE_SETS = ("learner", "dev")
LOCKS = {"learner": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}
# CPU-only variants, generated from the locks by tools/make_binder_requirements.py: every
# pin of the lock (hash-checked) except torch, torchvision and the CUDA libraries, and
# PyTorch's CPU builds of torch and torchvision from PyTorch's own index.
CPU_REQUIREMENTS = {
    "learner": ROOT / "binder" / "requirements.txt",
    "dev": ROOT / "binder" / "requirements-dev.txt",
}
CPU_TORCH = ROOT / "binder" / "requirements-torch-cpu.txt"
TORCH_ENV = "MLCOURSE_TORCH"
TORCH_VARIANTS = ("default", "cpu")
STAMP_NAME = "mlcourse-installed.sha256"  # the whole set-up is current
VARIANT_NAME = "mlcourse-torch-variant"  # which torch build the environment holds
REQUIREMENTS_STAMP_NAME = "mlcourse-requirements.sha256"  # the pinned packages are current
# The developer's lock first; the learner's is then resolved with the developer's pins as
# preferences (uv keeps the versions of an existing output file), so the shared pins agree.
_UV_COMPILE = ["uv", "pip", "compile", "pyproject.toml", "--universal", "--python-version", "3.11",
               "--generate-hashes"]  # fmt: skip
LOCK_COMMANDS = {
    "dev": [*_UV_COMPILE, "--extra", "instructor", "--extra", "hub", "--group", "dev",
            "-o", "requirements-dev.lock"],
    "learner": [*_UV_COMPILE, "-o", "requirements.lock"],
}  # fmt: skip
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM = Path(os.environ.get("MLCOURSE_CHROMIUM", DEBIAN_CHROMIUM))  # the browser tests' browser
# Set by `course.py test` where it can install Chromium: the browser tests must then run.
REQUIRE_BROWSER_ENV = "MLCOURSE_REQUIRE_BROWSER"
# The class hub's proxy (deploy/jupyterhub): Debian's package, installed like Chromium.
HTTP_PROXY_COMMAND = "configurable-http-proxy"
HTTP_PROXY_PACKAGE = "node-configurable-http-proxy"
# Set by `course.py test` where it can install the proxy: the hub tests must then run.
REQUIRE_HUB_ENV = "MLCOURSE_REQUIRE_HUB"
USAGE = __doc__.split("Maintainer", 1)[0].strip()


def venv_python() -> Path:
    """The interpreter of the course environment (``.venv`` or ``$MLCOURSE_VENV``)."""
    if platform.system() == "Windows":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def torch_variant() -> str:
    """``"default"`` (the lock: CUDA build on Linux) or ``"cpu"`` (``MLCOURSE_TORCH=cpu``).

    The environment remembers its variant, so later commands need not repeat the setting;
    asking an existing environment for the other one is refused (it would mix builds).
    """
    record = VENV / VARIANT_NAME
    if record.exists():
        recorded: str | None = record.read_text().strip()
    else:  # environments set up before variants existed hold the default build
        recorded = "default" if (VENV / STAMP_NAME).exists() else None
    asked = os.environ.get(TORCH_ENV, "").strip().lower() or None
    if asked is not None and asked not in TORCH_VARIANTS:
        sys.exit(f"{TORCH_ENV}={asked!r} is not one of {', '.join(TORCH_VARIANTS)}.")
    if asked and recorded and asked != recorded:
        sys.exit(
            f"{VENV} holds the {recorded!r} torch build, not {asked!r}: delete that folder "
            f"to switch, or unset {TORCH_ENV}."
        )
    return asked or recorded or "default"


def pinned_files(packages: str) -> list[Path]:
    """The files listing the pinned packages of a set, for the selected torch variant."""
    if packages not in PACKAGE_SETS:
        raise ValueError(f"packages={packages!r}; expected one of {', '.join(PACKAGE_SETS)}")
    if torch_variant() == "cpu":
        return [CPU_REQUIREMENTS[packages], CPU_TORCH]
    return [LOCKS[packages]]


def requirement_commands(
    python: str | os.PathLike[str], packages: str = "learner"
) -> list[list[str]]:
    """The pip commands installing a set's pinned packages for the selected torch variant."""
    pip = [str(python), "-m", "pip", "install"]
    files = pinned_files(packages)
    if torch_variant() == "cpu":
        return [
            [*pip, "--require-hashes", "-r", str(files[0])],
            [*pip, "--no-deps", "-r", str(files[1])],
        ]
    return [[*pip, "--require-hashes", "-r", str(files[0])]]


def project_command(python: str | os.PathLike[str]) -> list[str]:
    """The pip command installing this project (editable, its dependencies already pinned)."""
    pip = [str(python), "-m", "pip", "install"]
    return [*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)]


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    if torch_variant() != "default":  # the default's fingerprint predates the variants
        digest.update(torch_variant().encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def requirements_fingerprint(packages: str = "learner") -> str:
    """Changes when the pinned packages of a set change."""
    return _fingerprint(pinned_files(packages))


def environment_fingerprint(packages: str = "learner") -> str:
    """Changes when anything set-up installs for a set changes (its pins or ``pyproject.toml``)."""
    return _fingerprint([*pinned_files(packages), ROOT / "pyproject.toml"])


def run(command: list[str | os.PathLike[str]], **kwargs: object) -> None:
    """Print and run a command; a failure stops set-up with pip's own message above it."""
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, **kwargs)  # type: ignore[arg-type]


def _is_current(stamp: Path, *wanted: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() in wanted


def setup(requirements_only: bool = False, packages: str = "learner") -> Path:
    """Create ``.venv`` and install a package set's pins and the project, unless current.

    ``packages`` is ``"learner"`` (``requirements.lock``) or ``"dev"``
    (``requirements-dev.lock``, which holds every learner pin at the same version plus the
    developer's and instructor's tools). An environment set up for ``"dev"`` serves the
    learner too. With ``requirements_only`` only the pinned packages are installed (Docker
    builds cache that layer before copying the rest of the repository).
    """
    if sys.version_info[:2] != (3, 11):
        sys.exit(
            f"mlcourse needs Python 3.11; this is {platform.python_version()} ({sys.executable}).\n"
            "Run this file with a Python 3.11 interpreter, e.g. `python3.11 course.py ...`."
        )
    python = venv_python()
    stamp, requirements_stamp = VENV / STAMP_NAME, VENV / REQUIREMENTS_STAMP_NAME
    # The developer's set includes the learner's: an environment holding it serves both.
    serves = [packages] + (["dev"] if packages == "learner" else [])
    if python.exists() and _is_current(stamp, *map(environment_fingerprint, serves)):
        return python
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    installed = next(
        (s for s in serves if _is_current(requirements_stamp, requirements_fingerprint(s))), None
    )
    if installed is None:
        print(f"Installing the {packages} packages (first time: a few minutes) ...", flush=True)
        (VENV / VARIANT_NAME).write_text(torch_variant() + "\n")
        for command in requirement_commands(python, packages):
            run(command)
        requirements_stamp.write_text(requirements_fingerprint(packages) + "\n")
        installed = packages
    if requirements_only:
        return python
    print("Installing the course package ...", flush=True)
    run(project_command(python))
    stamp.write_text(environment_fingerprint(installed) + "\n")
    return python


def ensure_browser() -> bool:
    """Install Debian's Chromium for the browser tests where we can (Linux, root, apt).

    Returns True when the browser tests must run (Chromium was there or is now installed
    by us), False when they may be skipped (no Chromium and no way to install it here).
    """
    if CHROMIUM.exists():
        return True
    if platform.system() != "Linux" or CHROMIUM != DEBIAN_CHROMIUM:
        return False
    if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        print(
            f"note: {CHROMIUM} not found; browser tests will be skipped "
            "(install Debian/Ubuntu's `chromium` package to run them).",
            flush=True,
        )
        return False
    print("Installing Chromium for the browser tests (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env)
    except subprocess.CalledProcessError as error:
        message = f"could not install Chromium for the browser tests ({error})"
        if os.environ.get("CI"):  # CI must run them: stop here, not with skipped tests
            sys.exit(f"{message}.\nInstall it with `apt-get install chromium` and run again.")
        print(f"note: {message}; browser tests will be skipped.", flush=True)
    return CHROMIUM.exists()


def ensure_bubblewrap() -> bool:
    """Install Debian's bubblewrap, the grading sandbox, where we can (Linux, root, apt).

    Returns True when ``bwrap`` is there (or is now installed by us): the sandboxed
    grading tests must then run. False when it is not and cannot be installed here (those
    tests are then skipped, saying why).
    """
    if shutil.which("bwrap"):
        return True
    if platform.system() != "Linux":
        return False
    if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        print(
            "note: bwrap not found; the sandboxed grading tests will be skipped "
            "(install Debian/Ubuntu's `bubblewrap` package to run them).",
            flush=True,
        )
        return False
    print("Installing bubblewrap for the grading sandbox (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "bubblewrap"], env=env)
    except subprocess.CalledProcessError as error:
        message = f"could not install bubblewrap for the grading sandbox ({error})"
        if os.environ.get("CI"):  # CI must run the sandboxed tests: stop here
            sys.exit(f"{message}.\nInstall it with `apt-get install bubblewrap` and run again.")
        print(f"note: {message}; the sandboxed grading tests will be skipped.", flush=True)
    return shutil.which("bwrap") is not None


def ensure_http_proxy() -> bool:
    """Install Debian's configurable-http-proxy for the class hub where we can (Linux,
    root, apt): the hub's test and ``course.py hub`` need it.

    Returns True when it is there (or is now installed by us), False when it is not and
    cannot be installed here (the hub's end-to-end tests are then skipped, saying why).
    """
    if shutil.which(HTTP_PROXY_COMMAND):
        return True
    if platform.system() != "Linux":
        return False
    if not (shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        print(
            f"note: {HTTP_PROXY_COMMAND} not found; the class hub's tests will be skipped "
            f"(install Debian/Ubuntu's `{HTTP_PROXY_PACKAGE}` package to run them).",
            flush=True,
        )
        return False
    print(f"Installing {HTTP_PROXY_COMMAND} for the class hub (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], env=env)
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", HTTP_PROXY_PACKAGE],
            env=env,
        )
    except subprocess.CalledProcessError as error:
        message = f"could not install {HTTP_PROXY_PACKAGE} ({error})"
        if os.environ.get("CI"):  # CI must run the hub's tests: stop here
            sys.exit(
                f"{message}.\nInstall it with `apt-get install {HTTP_PROXY_PACKAGE}` and run again."
            )
        print(f"note: {message}; the class hub's tests will be skipped.", flush=True)
    return shutil.which(HTTP_PROXY_COMMAND) is not None


def hub_command(python: str | os.PathLike[str], extra_args: list[str]) -> list[str]:
    """The command of ``course.py hub``: ``deploy/jupyterhub/hub.py`` in the environment.

    It checks and prepares the class (users, folders, each role's settings, limits) and
    starts JupyterHub on 127.0.0.1 unless ``--ip`` says otherwise; options in
    ``deploy/jupyterhub/classroom_hub/launch.py`` and docs/classroom.md.
    """
    return [str(python), str(ROOT / "deploy" / "jupyterhub" / "hub.py"), *extra_args]


def hub(python: Path, args: list[str]) -> int:
    """Run the class hub until it is stopped (Ctrl+C stops it and every user's server).

    On Linux it replaces this process, so Ctrl+C and ``systemctl stop`` reach the hub
    itself, which then stops the proxy, the culler and every server before it exits.
    """
    ensure_http_proxy()
    return run_in_place(hub_command(python, args))


def lab_command(python: str | os.PathLike[str], extra_args: list[str]) -> list[str]:
    """The command of ``course.py lab``: the course's launcher, ``python -m mlcourse.lab``.

    It runs inside the environment (this file runs before anything is installed): it
    makes the learner's ``my-work/`` copies, writes the learner (or, with
    ``--instructor``, the instructor) settings, gives the kernels the course's numerics
    pins, and starts JupyterLab on the start page, on 127.0.0.1 with a login token unless
    ``extra_args`` hold an ``--ip=...`` (the Docker image listens on ``--ip=0.0.0.0``
    inside its container). Other arguments go to JupyterLab. See ``mlcourse/lab.py``.
    """
    return [str(python), "-m", "mlcourse.lab", *extra_args]


def lab(python: Path, args: list[str]) -> int:
    """Run the course's JupyterLab until it is stopped (Ctrl+C twice).

    On Linux and macOS it replaces this process, so Ctrl+C and ``docker stop`` reach the
    server itself and it shuts its kernels down cleanly.
    """
    return run_in_place(lab_command(python, args))


def run_in_place(command: list[str]) -> int:
    """Print ``command`` and run it from the repository root: on Linux and macOS it
    replaces this process (signals reach the server itself), elsewhere it runs as a child
    and its exit status is returned."""
    print("+", " ".join(command), flush=True)
    if os.name == "posix":
        os.chdir(ROOT)
        os.execv(command[0], command)
    return subprocess.call(command, cwd=ROOT)


def main(argv: list[str]) -> int:
    """Dispatch ``course.py COMMAND [ARGS...]``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    if command == "lock":
        for name in ("dev", "learner"):
            run(LOCK_COMMANDS[name], cwd=ROOT)
        return 0
    if command not in ("lab", "test", "setup", "execute", "student", "bench", "hub"):
        print(f"unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    if command == "setup":
        if not set(args) <= {"--requirements-only", "--dev"} or len(set(args)) != len(args):
            print(
                f"usage: python3 course.py setup [--requirements-only] [--dev]; got {args}",
                file=sys.stderr,
            )
            return 2
        setup("--requirements-only" in args, packages="dev" if "--dev" in args else "learner")
        return 0
    # Learners get the learner's set; the tests, the maintainer tools and instructors the rest.
    learner = command == "lab" and "--instructor" not in args
    python = setup(packages="learner" if learner else "dev")
    if command == "lab":
        return lab(python, args)
    if command == "hub":
        return hub(python, args)
    if command == "test":
        env = dict(os.environ)
        if ensure_browser():
            env.setdefault(REQUIRE_BROWSER_ENV, "1")
        if ensure_bubblewrap():
            env.setdefault("MLCOURSE_REQUIRE_SANDBOX", "1")
        if ensure_http_proxy():
            env.setdefault(REQUIRE_HUB_ENV, "1")
        return subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT, env=env)
    script = {"execute": "tools/execute_lessons.py", "student": "tools/make_student_copies.py",
              "bench": "benchmarks/lessons.py"}[command]  # fmt: skip
    return subprocess.call([str(python), str(ROOT / script), *args], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
