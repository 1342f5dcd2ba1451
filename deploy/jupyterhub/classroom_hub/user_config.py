"""The Jupyter configuration each role gets on the hub, in a folder first on its
``JUPYTER_CONFIG_PATH``.

It is the course's own learner/instructor configuration (:mod:`mlcourse.lab_settings`:
no news pop-up, closed notebooks' kernels shut down, idle kernels culled, the file
browser's names in full) with what a class on a hub adds:

- **students** keep nbgrader's *Assignments* tab (fetch, submit, fetch feedback: the
  ``assignment_list`` server extension and the lab plugins ``menu`` and
  ``assignment-list``), and nothing of the instructor's tools: no Formgrader, no Course
  List, no Create Assignment panel, no Validate button in notebooks;
- **instructors** get every nbgrader tool, Formgrader on the course directory; their
  server may be framed by its own pages (``frame-ancestors 'self'``: JupyterLab shows
  Formgrader in a frame, which JupyterHub's default ``frame-ancestors 'none'`` blocks);
- both get ``nbgrader_config.py`` naming the exchange and the course, so fetch,
  submit, release and collect find them, and instructors share the course directory
  (``groupshared``).

Example:
    >>> sorted(page_config("student")["disabledExtensions"])  # doctest: +NORMALIZE_WHITESPACE
    ['@jupyter/nbgrader:course-list', '@jupyter/nbgrader:create-assignment',
     '@jupyter/nbgrader:formgrader', '@jupyter/nbgrader:validate-assignment']
    >>> server_extensions("student")["nbgrader.server_extensions.formgrader"]
    False
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from classroom_hub.layout import COURSE_ID
from mlcourse.arguments import check_choice
from mlcourse.integrity import atomic_write_text
from mlcourse.lab_settings import (
    NBGRADER_LAB_EXTENSION,
    NBGRADER_SERVER_EXTENSIONS,
    SETTINGS_DEFAULTS,
    server_config,
)

ROLES = ("student", "instructor")
# The course's own mode each role starts from (mlcourse.lab_settings).
LAB_MODE = {"student": "learner", "instructor": "instructor"}
# What students keep of nbgrader: the Assignments tab, its menu entry, and its server side.
STUDENT_SERVER_EXTENSIONS = ("nbgrader.server_extensions.assignment_list",)
STUDENT_HIDDEN_PLUGINS = ("course-list", "create-assignment", "formgrader", "validate-assignment")
START_URL = "/lab"
# Formgrader is a frame inside the instructor's JupyterLab: same-origin frames only.
INSTRUCTOR_HEADERS = {"Content-Security-Policy": "frame-ancestors 'self'"}


def server_extensions(role: str) -> dict[str, bool]:
    """nbgrader's server extensions, on or off, for ``role``."""
    check_choice("role", role, ROLES)
    if role == "instructor":
        return dict.fromkeys(NBGRADER_SERVER_EXTENSIONS, True)
    return {name: name in STUDENT_SERVER_EXTENSIONS for name in NBGRADER_SERVER_EXTENSIONS}


def page_config(role: str) -> dict[str, Any]:
    """``labconfig/page_config.json``: the JupyterLab plugins switched off for ``role``."""
    check_choice("role", role, ROLES)
    hidden = STUDENT_HIDDEN_PLUGINS if role == "student" else ()
    return {"disabledExtensions": {f"{NBGRADER_LAB_EXTENSION}:{p}": True for p in hidden}}


def nbgrader_config(role: str, *, exchange: str, course_dir: str) -> str:
    """``nbgrader_config.py``: the exchange and the course (and, for instructors, the
    shared course directory). A Python file, because nbgrader warns about every folder
    of its config path without one; the values are written with ``repr``.

    Example:
        >>> print(nbgrader_config("student", exchange="/x", course_dir="/c"), end="")
        # The class hub's nbgrader settings (written by `python3 course.py hub`).
        c.Exchange.root = '/x'
        c.CourseDirectory.course_id = 'mlcourse'
    """
    check_choice("role", role, ROLES)
    settings = {"Exchange.root": exchange, "CourseDirectory.course_id": COURSE_ID}
    if role == "instructor":
        settings.update({"CourseDirectory.root": course_dir, "CourseDirectory.groupshared": True})
    lines = ["# The class hub's nbgrader settings (written by `python3 course.py hub`)."]
    lines += [f"c.{name} = {value!r}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def write_role_config(
    folder: str | os.PathLike[str], role: str, *, exchange: str, course_dir: str
) -> Path:
    """Write ``role``'s configuration into ``folder`` (replacing an earlier one); returns
    the folder to put first on the role's ``JUPYTER_CONFIG_PATH``.

    Every file is readable by all users (the servers run as them) and holds no secret.

    Example:
        >>> import tempfile
        >>> config = write_role_config(tempfile.mkdtemp(), "student", exchange="/x", course_dir="/c")
        >>> sorted(p.relative_to(config).as_posix() for p in config.rglob("*.*"))
        ['jupyter_server_config.json', 'labconfig/page_config.json', 'nbgrader_config.py', 'settings/overrides.json']
    """
    check_choice("role", role, ROLES)
    config = Path(folder).resolve()
    settings = config / "settings"
    server = server_config(LAB_MODE[role], settings_dir=str(settings), start_url=START_URL)
    server["ServerApp"]["jpserver_extensions"] = server_extensions(role)
    if role == "instructor":
        server["ServerApp"]["tornado_settings"] = {"headers": INSTRUCTOR_HEADERS}
    files = {
        config / "jupyter_server_config.json": _json(server),
        config / "labconfig" / "page_config.json": _json(page_config(role)),
        config / "nbgrader_config.py": nbgrader_config(
            role, exchange=exchange, course_dir=course_dir
        ),
        settings / "overrides.json": _json(SETTINGS_DEFAULTS),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        atomic_write_text(path, text, overwrite=True)
        path.chmod(0o644)
    config.chmod(0o755)
    return config


def _json(content: Any) -> str:
    return json.dumps(content, indent=2) + "\n"
