"""JupyterHub's configuration for a class on one machine (``jupyterhub_config.py`` calls
:func:`configure`).

- **Proxy**: configurable-http-proxy, found on the machine (:mod:`classroom_hub.proxy`),
  started and stopped by the hub; the public port on ``ip`` (127.0.0.1 for a trial), the
  hub's and the proxy's API ports on 127.0.0.1 only.
- **Authenticator**: PAM (the users' system passwords), only the class's users allowed;
  JupyterHub groups ``instructors`` and ``students`` from the class file.
- **Roles**: instructors may see who is on the hub and whether their servers run (the
  admin page, read only); nobody may open another user's server.
- **Spawner**: :class:`classroom_hub.spawner.ClassSpawner`: each server as its local
  user, in the role's mode, in its cgroup limits.
- **Culling**: the ``idle-culler`` service (jupyterhub-idle-culler) stops servers idle
  for the class file's ``idle_server_minutes``; inside a server, idle kernels are culled
  by the course's lab settings (:data:`mlcourse.lab_settings.CULL_IDLE_MINUTES`).
- **State**: database, cookie secret and PID files in the data folder's ``state/``.

Example:
    >>> from traitlets.config import Config
    >>> c = Config()
    >>> settings = HubSettings(
    ...     class_file=Path("class.yaml"), data_dir=Path("/srv/h"), ip="127.0.0.1", port=8000,
    ...     proxy=Path("/usr/bin/configurable-http-proxy"), enforce_limits=True,
    ...     idle_server_minutes=60, groups={"instructors": ["ada"], "students": ["bob"]},
    ...     environments={"student": {}, "instructor": {}})
    >>> configure(c, settings)
    >>> c.JupyterHub.bind_url, c.JupyterHub.hub_bind_url
    ('http://127.0.0.1:8000', 'http://127.0.0.1:8001')
    >>> sorted(c.Authenticator.allowed_users)
    ['ada', 'bob']
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from traitlets.config import Config

from classroom_hub.layout import Layout
from classroom_hub.proxy import proxy_environment

HERE = Path(__file__).resolve().parent
INSTRUCTOR_COMMANDS = HERE.parent / "bin"  # mlcourse-class
SETTINGS_ENV = "MLCOURSE_HUB_SETTINGS"  # the launcher's settings file, for jupyterhub_config.py
CULL_EVERY_S = 60
INSTRUCTOR_SCOPES = ["admin-ui", "list:users", "read:users", "read:servers", "read:groups"]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


@dataclass(frozen=True)
class HubSettings:
    """What :func:`configure` needs (the launcher passes them in the environment)."""

    class_file: Path
    data_dir: Path
    ip: str
    port: int  # public; the hub's API is on port + 1, the proxy's on port + 2
    proxy: Path
    enforce_limits: bool
    idle_server_minutes: float
    groups: dict[str, list[str]]
    # {role: variables} of every server of that role: the role's Jupyter configuration and
    # the course's lesson-kernel pins (computed by the launcher: that needs torch, which
    # the hub itself never imports)
    environments: dict[str, dict[str, str]]

    @property
    def users(self) -> set[str]:
        return {u for members in self.groups.values() for u in members}

    def to_json(self) -> str:
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> HubSettings:
        """The settings :meth:`to_json` wrote.

        Example:
            >>> s = HubSettings(Path("c.yaml"), Path("/d"), "127.0.0.1", 8000, Path("/p"),
            ...                 False, 60, {"students": []}, {"student": {"A": "1"}})
            >>> HubSettings.from_json(s.to_json()) == s
            True
        """
        values = json.loads(text)
        for key in ("class_file", "data_dir", "proxy"):
            values[key] = Path(values[key])
        return cls(**values)


def configure(c: Config, settings: HubSettings) -> None:
    """Set JupyterHub's configuration ``c`` for the class."""
    layout = Layout(settings.data_dir)
    state = layout.state
    c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.port + 1}"
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True  # stopping the hub stops every server
    c.JupyterHub.cleanup_proxy = True

    c.JupyterHub.proxy_class = "configurable-http-proxy"
    c.ConfigurableHTTPProxy.command = [str(settings.proxy)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.port + 2}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.ConfigurableHTTPProxy.should_start = True
    node_path = proxy_environment(settings.proxy, os.environ).get("NODE_PATH")
    if node_path:  # the hub starts the proxy with its own environment
        os.environ["NODE_PATH"] = node_path

    c.JupyterHub.authenticator_class = "pam"
    c.PAMAuthenticator.open_sessions = False
    c.Authenticator.allowed_users = settings.users
    c.Authenticator.admin_users = set()
    c.JupyterHub.load_groups = {
        name: {"users": sorted(members)} for name, members in settings.groups.items()
    }
    c.JupyterHub.load_roles = [
        {"name": "instructor", "scopes": INSTRUCTOR_SCOPES, "groups": ["instructors"]},
        {"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]},
    ]
    c.JupyterHub.services = [
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={round(settings.idle_server_minutes * 60)}",
                f"--cull-every={CULL_EVERY_S}",
            ],
            "cwd": str(state),
        }
    ]

    c.JupyterHub.spawner_class = "classroom_hub.spawner.ClassSpawner"
    c.ClassSpawner.class_file = str(settings.class_file)
    c.ClassSpawner.data_dir = str(settings.data_dir)
    c.ClassSpawner.commands_dir = str(Path(sys.executable).parent)
    c.ClassSpawner.instructor_commands_dir = str(INSTRUCTOR_COMMANDS)
    c.ClassSpawner.enforce_limits = settings.enforce_limits
    c.ClassSpawner.role_environments = settings.environments
    c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 120  # a loaded 2-core machine starts JupyterLab slowly
    c.Spawner.start_timeout = 120
