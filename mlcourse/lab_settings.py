"""The course's JupyterLab settings for learners and instructors, as Jupyter config files.

Both modes:

- no "Jupyter news" pop-up and no update check (nothing is fetched from the network);
- closing a notebook shuts its kernel down, and a kernel idle for :data:`CULL_IDLE_MINUTES`
  minutes is shut down too, open or not (each lesson's kernel holds torch: most of 1 GB);
- Markdown files (the start page) open rendered; the file browser shows names only, in
  a sidebar wide enough for the lessons' names (the first layout; JupyterLab then keeps
  the learner's own, in ``workspaces/`` beside the settings).

The **learner** mode has no nbgrader at all: its JupyterLab extension (menu, "Create
Assignment" panel, Validate button, Formgrader) is disabled and its server extensions are
off, which also silences nbgrader's "No nbgrader_config.py" warnings. The **instructor**
mode keeps them.

Everything uses JupyterLab's own mechanisms, in a folder the launcher owns (nothing inside
the Python environment is changed): ``jupyter_server_config.json`` and
``labconfig/page_config.json`` in a folder put first on ``JUPYTER_CONFIG_PATH``, and
``overrides.json`` in the folder given as ``LabApp.app_settings_dir`` (defaults the
learner can still change in JupyterLab's settings).

Example:
    >>> page_config("learner")
    {'disabledExtensions': {'@jupyter/nbgrader': True}}
    >>> server_config("instructor", settings_dir="/s", start_url="/lab")["ServerApp"]
    {'jpserver_extensions': {}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlcourse.arguments import check_choice
from mlcourse.integrity import atomic_write_text

MODES = ("learner", "instructor")
NBGRADER_LAB_EXTENSION = "@jupyter/nbgrader"
NBGRADER_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
)
CULL_IDLE_MINUTES = 20
CULL_INTERVAL_S = 60
# Defaults for JupyterLab's settings (plugin id -> values); the learner's own settings win.
SETTINGS_DEFAULTS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"kernelShutdown": True},
    "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Markdown Preview"}},
    "@jupyterlab/filebrowser-extension:browser": {"showLastModifiedColumn": False},
}
# The first layout (JupyterLab's "default" workspace, until the learner changes it): the
# file browser open and wide enough for a lesson's name, nothing else open.
FIRST_LAYOUT = {
    "data": {
        "layout-restorer:data": {
            "main": {"dock": None},
            "left": {"collapsed": False, "visible": True, "current": "filebrowser",
                     "widgets": ["filebrowser", "running-sessions", "@jupyterlab/toc:plugin"]},
            "right": {"collapsed": True, "visible": True, "widgets": []},
            "relativeSizes": [0.28, 0.72, 0],
        },
        "file-browser-filebrowser:columns": {"sizes": {"name": 320}},
    },
    "metadata": {"id": "default"},
}  # fmt: skip


def server_config(
    mode: str, *, settings_dir: str, start_url: str, workspaces_dir: str = ""
) -> dict[str, Any]:
    """``jupyter_server_config.json`` for ``mode``.

    Args:
        settings_dir: the folder holding ``overrides.json`` (``LabApp.app_settings_dir``).
        start_url: the page JupyterLab opens first, e.g. ``"/lab/tree/START.md"``.
        workspaces_dir: where JupyterLab keeps its layouts (default: its own choice).
    """
    check_choice("mode", mode, MODES)
    disabled = NBGRADER_SERVER_EXTENSIONS if mode == "learner" else ()
    return {
        "ServerApp": {"jpserver_extensions": dict.fromkeys(disabled, False)},
        "LabApp": {
            "app_settings_dir": settings_dir,
            "default_url": start_url,
            "news_url": None,
            "extension_manager": "readonly",  # nothing installed from the network
            **({"workspaces_dir": workspaces_dir} if workspaces_dir else {}),
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        },
        "MappingKernelManager": {
            "cull_idle_timeout": CULL_IDLE_MINUTES * 60,
            "cull_interval": CULL_INTERVAL_S,
            "cull_connected": True,
            "cull_busy": False,
        },
    }


def page_config(mode: str) -> dict[str, Any]:
    """``labconfig/page_config.json`` for ``mode``: the JupyterLab extensions switched off."""
    check_choice("mode", mode, MODES)
    disabled = [NBGRADER_LAB_EXTENSION] if mode == "learner" else []
    return {"disabledExtensions": dict.fromkeys(disabled, True)}


def write_config(folder: str | os.PathLike[str], mode: str, *, start_url: str) -> Path:
    """Write ``mode``'s configuration into ``folder`` (replacing what an earlier start
    wrote there) and return the folder to put first on ``JUPYTER_CONFIG_PATH``.

    Example:
        >>> import tempfile
        >>> config = write_config(tempfile.mkdtemp(), "learner", start_url="/lab")
        >>> sorted(p.relative_to(config).as_posix() for p in config.rglob("*.json"))
        ['jupyter_server_config.json', 'labconfig/page_config.json', 'settings/overrides.json']
        >>> [p.name for p in (config / "workspaces").iterdir()]
        ['default-37a8.jupyterlab-workspace']
    """
    check_choice("mode", mode, MODES)
    config = Path(folder).resolve()
    settings, workspaces = config / "settings", config / "workspaces"
    files = {
        config / "jupyter_server_config.json": server_config(
            mode, settings_dir=str(settings), start_url=start_url, workspaces_dir=str(workspaces)
        ),
        config / "labconfig" / "page_config.json": page_config(mode),
        settings / "overrides.json": SETTINGS_DEFAULTS,
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(content, indent=2) + "\n", overwrite=True)
    seed_first_layout(workspaces)
    return config


def seed_first_layout(folder: str | os.PathLike[str]) -> None:
    """Store :data:`FIRST_LAYOUT` as JupyterLab's default workspace in ``folder``, unless
    there is one already (the learner's own layout is kept)."""
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    manager = WorkspacesManager(str(folder))
    if not any(w["metadata"]["id"] == "default" for w in manager.list_workspaces()):
        Path(folder).mkdir(parents=True, exist_ok=True)
        manager.save("default", json.dumps(FIRST_LAYOUT))
