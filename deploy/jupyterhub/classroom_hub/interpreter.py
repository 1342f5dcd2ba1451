"""Making sure every user runs the course environment's own Python interpreter.

A virtual environment (the course's ``.venv``) runs on the interpreter it was made from
(``sys.base_prefix``). When that interpreter lives where other users cannot read it
(pyenv or uv under ``/root``, mode 0700), their servers silently get whatever the
system has instead: on Debian 12 its Python 3.11.2, whose regular expressions mishandle
possessive quantifiers (nbconvert's HTML export, hence the feedback pages, fails).

:func:`interpreter_problem` runs Python as a class member and compares what they get
with what the launcher runs. Where they differ, :func:`share_interpreter` copies the
interpreter (its ``bin``, ``lib`` and ``include``, without its own site-packages and
test suite: about 100 MB) to a folder all users can read, and
:func:`interpreter_environment` gives the servers ``PYTHONHOME`` and
``LD_LIBRARY_PATH`` pointing there: the same interpreter, byte for byte, for everyone.

Example:
    >>> interpreter_environment(Path("/srv/hub/python"))
    {'PYTHONHOME': '/srv/hub/python', 'LD_LIBRARY_PATH': '/srv/hub/python/lib'}
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from classroom_hub.accounts import run_as

PROBE = "import sys; print(sys.version); print(sys.base_prefix)"
STAMP = "mlcourse-python-copy.txt"  # which interpreter a copy holds
COPIED = ("bin", "lib", "include")
SKIPPED = ("site-packages", "test")  # keep __pycache__: users cannot write one


def interpreter_problem(user: str, extra: Mapping[str, str] | None = None) -> str | None:
    """Why ``user`` would not run this interpreter (with ``extra`` variables), or ``None``."""
    env = {"PATH": "/usr/bin:/bin", **(extra or {})}
    result = run_as(user, [sys.executable, "-c", PROBE], env=env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"user {user!r} cannot start {sys.executable} ({last})"
    version = result.stdout.splitlines()[0] if result.stdout else ""
    if version != sys.version:
        return (
            f"user {user!r} runs Python {version.split()[0] if version else '?'}, not the course "
            f"environment's {sys.version.split()[0]} from {sys.base_prefix}, which other users "
            "cannot read"
        )
    return None


def share_interpreter(target: Path) -> Path:
    """Copy this interpreter to ``target`` (readable by all), unless it holds it already.

    The copy is made next to ``target`` and renamed into place, so a half-made copy is
    never used; an older copy is replaced.
    """
    source = Path(sys.base_prefix)
    stamp = f"{sys.version}\n{source}\n"
    if (target / STAMP).is_file() and (target / STAMP).read_text() == stamp:
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755)
    for name in COPIED:
        if (source / name).is_dir():
            shutil.copytree(
                source / name,
                staging / name,
                symlinks=True,
                ignore=shutil.ignore_patterns(*SKIPPED),
            )
    (staging / STAMP).write_text(stamp)
    _readable_by_all(staging)
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        shutil.rmtree(old)
    staging.rename(target)
    return target


def interpreter_environment(copy: Path) -> dict[str, str]:
    """The variables that make the course environment run on the copy in ``copy``."""
    return {"PYTHONHOME": str(copy), "LD_LIBRARY_PATH": str(copy / "lib")}


def _readable_by_all(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            os.chmod(path, 0o755)
