"""Run code in a hub user's own server, as that user: a kernel through Jupyter Server's
REST API and its websocket, authenticated with the user's API token.

What runs there runs exactly as the user's notebooks do: their uid and groups, their
server's environment, cwd and cgroup limits. The hub tests use it for what a browser
cannot show directly (which folders a student's code can read) and for the
instructor's terminal commands.

Example (needs a running hub, so not run as a doctest)::

    with UserKernel("http://127.0.0.1:8000/user/alice/", token) as kernel:
        print(kernel.run("import os; print(os.getuid())").stdout)
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests
import websocket


@dataclass
class Execution:
    """What a cell printed, and the error it raised (``""`` when none)."""

    stdout: str
    stderr: str
    error: str


class UserKernel:
    """A kernel in a user's server; a context manager that shuts it down at the end.

    Args:
        server_url: the user's server, e.g. ``http://127.0.0.1:8000/user/alice/``.
        token: an API token of that user.
    """

    def __init__(self, server_url: str, token: str, *, timeout_s: float = 120.0) -> None:
        self.server_url = server_url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout_s = timeout_s
        self.kernel_id: str | None = None

    def __enter__(self) -> UserKernel:
        reply = requests.post(
            self.server_url + "api/kernels", headers=self.headers, json={}, timeout=60
        )
        reply.raise_for_status()
        self.kernel_id = reply.json()["id"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kernel_id is not None:
            requests.delete(
                f"{self.server_url}api/kernels/{self.kernel_id}", headers=self.headers, timeout=60
            )

    def run(self, code: str) -> Execution:
        """Execute ``code``; returns its output once the kernel is idle again.

        Each run has a websocket of its own: the server closes one left unread (its
        pings unanswered) while the test does other things.
        """
        assert self.kernel_id is not None, "use UserKernel as a context manager"
        url = self.server_url.replace("http://", "ws://", 1)
        connection = websocket.create_connection(
            f"{url}api/kernels/{self.kernel_id}/channels",
            header=[f"{k}: {v}" for k, v in self.headers.items()],
            timeout=self.timeout_s,
        )
        try:
            return self._execute(connection, code)
        finally:
            connection.close()

    def _execute(self, connection: websocket.WebSocket, code: str) -> Execution:
        msg_id = uuid.uuid4().hex
        connection.send(json.dumps(_execute_request(msg_id, code)))
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        error = ""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = json.loads(connection.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                out[content["name"]].append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return Execution("".join(out["stdout"]), "".join(out["stderr"]), error)
        raise TimeoutError(f"the kernel did not finish within {self.timeout_s} s: {code[:80]!r}")


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": "",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }
