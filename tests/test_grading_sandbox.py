"""The grading sandbox on its own: what a notebook inside it can see, reach and use up.

Each test runs a few cells in a real bubblewrap sandbox through the runner, as grading
does, and checks the cells' outputs from the host.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from mlcourse.grading import sandbox as sandbox_module
from mlcourse.grading.execution import SETUP, parse_reply
from mlcourse.grading.sandbox import (
    Limits,
    Sandbox,
    Unsandboxed,
    check_separate,
    course_environment,
    sandbox_environment,
)

sys.path.insert(0, str(Path(__file__).parent))
from grading_support import skip_without_sandbox  # noqa: E402


@pytest.fixture(autouse=True)
def _sandbox_here() -> None:
    skip_without_sandbox()


def run_cells(
    cells: list[str],
    limits: Limits | None = None,
    *,
    timeout: float = 60,  # seconds per cell: generous, the machine may be busy
    runner: type = Sandbox,
    env: dict | None = None,
):
    limits = limits or Limits()
    job = {
        "cells": [{"index": i, "source": s, "timeout": timeout} for i, s in enumerate(cells)],
        "setup": SETUP,
        "files": {"data/extra.txt": "aGVsbG8="},
        "notebook": {"name": "lesson.ipynb", "text": "{}"},
        "limits": limits.rlimits(),
        "output": limits.output(),
    }
    with runner(limits, env or sandbox_environment("sandbox-test"), 1) as launcher:
        result = parse_reply(launcher.run(job, 120), timeout, 120)
    assert not result.problem or "kernel" in result.problem, result.problem + result.log
    return result


def printed(result, index: int) -> str:
    cell = result.cells[index]
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)


def test_a_submission_sees_only_its_folder_and_the_course_environment(tmp_path):
    secret = tmp_path / "course" / "gradebook.db"
    secret.parent.mkdir()
    secret.write_text("grades", encoding="utf-8")
    result = run_cells(
        [
            "import os; print(sorted(os.listdir('.')), sorted(os.listdir('data')), os.getcwd())",
            f"import os; print(os.path.exists({str(secret)!r}), os.path.exists({str(Path.home())!r} + '/.bashrc'))",
            "print(sorted(p for p in __import__('os').listdir('/proc') if p.isdigit()))",
            "import mlcourse.datasets; print(mlcourse.datasets.load_dataset('digits').arrays['images'].shape[1:])",
            "import os; print(os.getuid() != 0, sorted(k for k in os.environ if 'SECRET' in k), os.uname().nodename)",
            "open('/usr/lib/pwned', 'w')",
        ],
        env=sandbox_environment("t", {**os.environ, "GRADER_SECRET_TOKEN": "hunter2"}),
    )
    assert printed(result, 0) == "['data', 'lesson.ipynb'] ['extra.txt'] /submission\n"
    assert printed(result, 1) == "False False\n"
    assert printed(result, 2) == "['1', '2', '3']\n"  # bwrap's init, the runner, the kernel
    assert printed(result, 3).startswith("(")
    assert printed(result, 4) == "True [] grading\n"
    assert "Read-only file system" in printed(result, 5) or "Permission denied" in printed(
        result, 5
    )


def test_no_network_not_even_the_hosts_loopback():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    result = run_cells(
        [
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\nexcept OSError as e:\n    print(type(e).__name__)"
        ]
    )
    server.close()
    assert printed(result, 0) == "ConnectionRefusedError\n"


def test_memory_file_size_disk_and_output_limits():
    limits = Limits(memory_mb=512, file_size_mb=1, disk_mb=16, output_kb=1)
    result = run_cells(
        [
            "try:\n    x = bytearray(1024 * 2**20)\nexcept MemoryError:\n    print('MemoryError')",
            "try:\n    open('big', 'wb').write(b'0' * 2 * 2**20)\nexcept OSError as e:\n    print(e.strerror)",
            "import os\ntry:\n    for i in range(40):\n        open(f'/tmp/f{i}', 'wb').write(b'0' * (2**20 // 2))\nexcept OSError as e:\n    print(e.strerror)",
            "print('y' * 5000)",
        ],
        limits,
    )
    assert printed(result, 0) == "MemoryError\n"
    assert printed(result, 1) == "File too large\n"
    assert printed(result, 2) == "No space left on device\n"
    assert len(printed(result, 3)) == 1024 and result.cells[3].dropped["text"] == 5001 - 1024


def test_process_limit_stops_a_fork_bomb_and_nothing_outlives_the_run():
    tag = uuid.uuid4().hex
    result = run_cells(
        [
            f"import os, subprocess, sys\nos.environ['TAG'] = {tag!r}\nsubprocess.Popen([sys.executable, '-c', 'import os, time\\nif os.fork(): os._exit(0)\\nos.setsid()\\ntime.sleep(60)'], start_new_session=True)\nprint('detached')",
            "import os, time\nborn = 0\nfor _ in range(400):\n    try:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        born += 1\n    except OSError:\n        break\nprint(born < 64, born > 16)",
        ],
        Limits(processes=64),
    )
    assert printed(result, 0) == "detached\n"
    assert printed(result, 1) == "True True\n"
    left = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("TAG") == tag:
                left.append(process.pid)
        except (psutil.Error, OSError):
            continue
    assert left == []


def test_cpu_time_limit_ends_a_spinning_kernel_and_grading_goes_on():
    result = run_cells(
        ["x = 1", "while True:\n    pass", "print('after', x)"],
        Limits(cpu_seconds=3),
        timeout=30,
    )
    assert result.problem == ""
    assert result.lost == [(1, "the kernel died: it used up its CPU time limit")]
    assert printed(result, 2) == "after 1\n"  # the cells before were run again


def test_without_a_sandbox_the_same_runner_and_limits_apply():
    result = run_cells(
        [
            "import os; print(os.getcwd().endswith('submission'))",
            "try:\n    bytearray(1024 * 2**20)\nexcept MemoryError:\n    print('MemoryError')",
        ],
        Limits(memory_mb=512),
        runner=Unsandboxed,
    )
    assert printed(result, 0) == "True\n" and printed(result, 1) == "MemoryError\n"


def test_sandbox_problem_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    sandbox_module.sandbox_problem.cache_clear()
    try:
        assert "bwrap was not found; install bubblewrap" in sandbox_module.sandbox_problem()
    finally:
        monkeypatch.undo()
        sandbox_module.sandbox_problem.cache_clear()
    assert sandbox_module.sandbox_problem() is None


def test_a_course_inside_the_course_environment_is_refused(tmp_path):
    bound = course_environment()
    assert all(p.is_absolute() for p in bound) and Path(sys.prefix).resolve() in [
        p.resolve() for p in bound
    ]
    with pytest.raises(ValueError, match="overlaps"):
        check_separate(bound, {"course directory": bound[0] / "course"})
    check_separate(bound, {"course directory": tmp_path / "course"})


def test_root_sandboxes_keep_only_the_capabilities_to_drop_root():
    with Sandbox(Limits(), sandbox_environment("t"), 2) as sandbox:
        argv = sandbox.argv(["true"])
    if os.geteuid() == 0:
        assert argv[argv.index("--cap-drop") + 1] == "ALL"
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"] == [
            "CAP_SETUID",
            "CAP_SETGID",
        ]
    else:
        assert "--unshare-user" in argv and "--disable-userns" in argv
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--die-with-parent" in argv
