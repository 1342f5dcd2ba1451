"""Local users made for one test run, with random names and passwords, and removed after.

Example:
    >>> names = user_names("ab12")
    >>> names["instructor"], names["students"]
    ('mlhab12i', ['mlhab12a', 'mlhab12b'])
"""

from __future__ import annotations

import grp
import subprocess

from classroom_hub.accounts import create_user, user_exists  # deploy/jupyterhub is on sys.path


def user_names(tag: str) -> dict[str, object]:
    """One instructor and two students, named after ``tag`` (short hex)."""
    return {"instructor": f"mlh{tag}i", "students": [f"mlh{tag}a", f"mlh{tag}b"]}


def create_users(names: list[str]) -> dict[str, str]:
    """Create ``names`` (none may exist) with private homes; ``{name: password}``."""
    existing = [n for n in names if user_exists(n)]
    if existing:
        raise RuntimeError(f"test users {existing} exist already; remove them first")
    return {name: create_user(name) for name in names}  # what `course.py hub --create-users` does


def remove_users(names: list[str]) -> None:
    """Remove the users and their homes (those that exist)."""
    for name in names:
        if user_exists(name):
            subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def remove_group(name: str) -> None:
    subprocess.run(["groupdel", name], capture_output=True, check=False)
