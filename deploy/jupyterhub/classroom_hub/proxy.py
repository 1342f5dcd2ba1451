"""Finding configurable-http-proxy, JupyterHub's proxy (a Node.js program).

The hub uses the one installed on the machine: Debian's ``node-configurable-http-proxy``
(what ``python3 course.py test`` installs) or npm's ``configurable-http-proxy``. Nothing
is downloaded when the hub starts.

Debian's package keeps its JavaScript libraries in ``/usr/share/nodejs``, which Debian's
own ``nodejs`` searches; a Node.js from elsewhere (e.g. NodeSource's) does not, so
:func:`proxy_environment` adds that folder to ``NODE_PATH`` when the proxy comes from
there.

Example:
    >>> proxy_environment(Path("/usr/share/nodejs/configurable-http-proxy/bin/x"), {})
    {'NODE_PATH': '/usr/share/nodejs'}
    >>> proxy_environment(Path("/opt/node/bin/configurable-http-proxy"), {})
    {}
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

PROXY = "configurable-http-proxy"
DEBIAN_NODE_LIBRARIES = Path("/usr/share/nodejs")


class ProxyMissing(RuntimeError):
    """configurable-http-proxy is not installed (or does not run)."""


def find_proxy(path: str | None = None) -> Path:
    """The proxy's program: ``path`` or the one on ``PATH``, resolved.

    Raises:
        ProxyMissing: it is not installed, saying how to install it.
    """
    found = shutil.which(path or PROXY)
    if found is None:
        raise ProxyMissing(
            f"{path or PROXY} not found. Install Debian/Ubuntu's `node-configurable-http-proxy` "
            "(apt-get install node-configurable-http-proxy) or npm's `configurable-http-proxy` "
            "(npm install -g configurable-http-proxy), then start the hub again."
        )
    return Path(found).resolve()


def proxy_environment(program: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The variables the proxy needs besides ``base``: ``NODE_PATH`` for Debian's package."""
    if DEBIAN_NODE_LIBRARIES not in program.parents:
        return {}
    paths = [p for p in base.get("NODE_PATH", "").split(os.pathsep) if p]
    if str(DEBIAN_NODE_LIBRARIES) in paths:
        return {}
    return {"NODE_PATH": os.pathsep.join([*paths, str(DEBIAN_NODE_LIBRARIES)])}


def proxy_version(program: Path, base: Mapping[str, str]) -> str:
    """``configurable-http-proxy --version``, run with :func:`proxy_environment`.

    Raises:
        ProxyMissing: it does not run (its error is in the message).
    """
    env = {**base, **proxy_environment(program, base)}
    try:
        result = subprocess.run(
            [str(program), "--version"], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ProxyMissing(f"{program} does not run: {error}") from error
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ProxyMissing(f"{program} --version failed (exit code {result.returncode}): {last}")
    return result.stdout.strip()
