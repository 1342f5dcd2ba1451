#!/usr/bin/env python3
"""Set up the course and run it: the only commands a newcomer needs.

    python3 course.py lab     # set up (first time only), then open JupyterLab at notebooks/
    python3 course.py test    # set up (first time only), then run the whole test suite

On Windows type ``py course.py lab`` / ``py course.py test``. Set-up creates ``.venv``
and installs ``requirements.lock`` (exact versions, hash-checked) plus this project; it
re-installs only when ``requirements.lock`` or ``pyproject.toml`` changed.

Maintainer commands (same set-up first):

    python3 course.py execute [NOTEBOOK ...]  # re-run lessons in lite mode, commit outputs
    python3 course.py student                 # regenerate the student copies
    python3 course.py bench                   # lite-mode time and memory per lesson
    python3 course.py lock                    # re-resolve requirements.lock (needs uv)

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
LOCK = ROOT / "requirements.lock"
STAMP_NAME = "mlcourse-installed.sha256"
LOCK_COMMAND = [
    "uv", "pip", "compile", "pyproject.toml", "--universal", "--python-version", "3.11",
    "--generate-hashes", "-o", "requirements.lock",
]  # fmt: skip
CHROMIUM = Path("/usr/bin/chromium")
USAGE = __doc__.split("Maintainer", 1)[0].strip()


def venv_python() -> Path:
    if platform.system() == "Windows":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def environment_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def run(command: list[str | os.PathLike[str]], **kwargs: object) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, **kwargs)  # type: ignore[arg-type]


def setup() -> Path:
    """Create ``.venv`` and install the lock, unless it is already current."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(
            f"mlcourse needs Python 3.11; this is {platform.python_version()} ({sys.executable}).\n"
            "Run this file with a Python 3.11 interpreter, e.g. `python3.11 course.py ...`."
        )
    python = venv_python()
    stamp = VENV / STAMP_NAME
    wanted = environment_fingerprint()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing the pinned packages (first time: a few minutes) ...", flush=True)
    run([python, "-m", "pip", "install", "--require-hashes", "-r", LOCK])
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", ROOT])
    stamp.write_text(wanted + "\n")
    return python


def ensure_browser() -> None:
    """The browser tests drive Debian's Chromium; install it where we can (root + apt)."""
    if CHROMIUM.exists() or platform.system() != "Linux":
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("Installing Chromium for the browser tests (apt-get) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env)
    else:
        print(
            "note: /usr/bin/chromium not found; browser tests will be skipped "
            "(install Debian/Ubuntu's `chromium` package to run them).",
            flush=True,
        )


def lab(python: Path, args: list[str]) -> int:
    command = [
        python, "-m", "jupyterlab", "--ip=127.0.0.1", f"--ServerApp.root_dir={ROOT / 'notebooks'}",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    print("+", " ".join(str(c) for c in command + args), flush=True)
    return subprocess.call([str(c) for c in command + args], cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    if command == "lock":
        run(LOCK_COMMAND, cwd=ROOT)
        return 0
    if command not in ("lab", "test", "setup", "execute", "student", "bench"):
        print(f"unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    python = setup()
    if command == "setup":
        return 0
    if command == "lab":
        return lab(python, args)
    if command == "test":
        ensure_browser()
        return subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT)
    script = {"execute": "tools/execute_lessons.py", "student": "tools/make_student_copies.py",
              "bench": "benchmarks/lessons.py"}[command]  # fmt: skip
    return subprocess.call([str(python), str(ROOT / script), *args], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
