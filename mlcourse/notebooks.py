"""Run the lessons with papermill and keep the committed notebooks clean.

Used by ``course.py execute`` (regenerate committed outputs), the tests and the
benchmarks. Lessons always run here on the CPU, in lite mode unless told otherwise, with
the notebook's folder as working directory.

Example:
    >>> [p.name for p in lesson_paths()][:1]
    ['00_setup_and_reproducibility.ipynb']
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from mlcourse.course_files import notebooks_dir, require_course_root
from mlcourse.integrity import atomic_write_text
from mlcourse.lesson_outputs import METADATA_KEY, NUMERICS_KEY
from mlcourse.numerics import PORTABLE_PINS, pinned_environment, with_overrides
from mlcourse.parameters_cell import parameters_problems
from mlcourse.resources import DEVICE_ENV

LESSON_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
# Kernel sets the test suite runs every lesson with: the course's pins, and the portable
# kernels, which stand in for another CPU (see docs/numerics.md).
KERNEL_SETS: dict[str, dict[str, str]] = {"pinned": {}, "portable": PORTABLE_PINS}
KERNEL_SPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# Cell metadata that execution adds and a committed notebook should not carry.
_VOLATILE_CELL_KEYS = ("papermill", "execution", "collapsed", "scrolled")
# Paths of the machine the notebook ran on, which must never be committed.
MACHINE_PATH = re.compile(r"(/home/|/root/|/tmp/|/Users/|/private/var/|[A-Za-z]:\\Users\\)")


def __getattr__(name: str) -> Path:
    """``PROJECT_ROOT`` (the course folder) and ``NOTEBOOK_DIR`` (its ``notebooks/``), looked
    up in :mod:`mlcourse.course_files` when asked for (PEP 562); an error says to set
    ``$MLCOURSE_ROOT`` where there is no course folder (a wheel install)."""
    if name == "PROJECT_ROOT":
        return require_course_root()
    if name == "NOTEBOOK_DIR":
        return notebooks_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lesson_paths(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """The numbered lessons ``NN_name.ipynb`` in ``folder`` (default ``notebooks/``), in order."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    return sorted(p for p in folder.iterdir() if LESSON_NAME.match(p.name))


def lesson_kernel_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` as every lesson kernel run by the course's tools sees it: on the CPU (so
    outputs match the committed ones), with CPU dispatch and threads pinned
    (:mod:`mlcourse.numerics`; a pin ``base`` already sets wins), with the inline plotting
    backend, and without a debugger warning on stderr.

    Example:
        >>> env = lesson_kernel_environment({"MPLBACKEND": "agg"})
        >>> env[DEVICE_ENV], env["OMP_NUM_THREADS"], "MPLBACKEND" in env
        ('cpu', '1', False)
    """
    env = pinned_environment({k: v for k, v in base.items() if k != "MPLBACKEND"})
    env[DEVICE_ENV] = "cpu"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


@contextlib.contextmanager
def lesson_environment(kernels: Mapping[str, str | None] | None = None) -> Iterator[None]:
    """Run the body with :func:`lesson_kernel_environment` applied to ``os.environ``, plus
    ``kernels``: variables that select another kernel set (e.g. :data:`PORTABLE_PINS`; a
    ``None`` value removes the variable)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(with_overrides(lesson_kernel_environment(saved), kernels or {}))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def kernel_fingerprint(kernels: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The numerics fingerprint of a lesson kernel started now (with ``kernels`` on top).

    Computed in a child process with the kernel's environment, since the pins act only
    before torch loads; cached per environment.
    """
    with lesson_environment(kernels):
        key = tuple(sorted(os.environ.items()))
        if key not in _FINGERPRINTS:
            output = subprocess.run(
                [sys.executable, "-m", "mlcourse.numerics", "--fingerprint"],
                check=True, capture_output=True, text=True, timeout=300,
            ).stdout  # fmt: skip
            _FINGERPRINTS[key] = json.loads(output)
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}


def execute_lesson(
    path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernels: Mapping[str, str | None] | None = None,
    timeout: int = 600,
    cwd: str | os.PathLike[str] | None = None,
) -> nbformat.NotebookNode:
    """Execute a lesson with papermill (in its own folder) and return the clean result.

    The result's metadata ``mlcourse.numerics`` holds the kernel's numerics fingerprint,
    so committed outputs say which kernels made them.

    Args:
        path: the lesson notebook.
        output_path: where to write the executed notebook; ``None`` writes nothing.
        parameters: values injected after the ``parameters`` cell, e.g. ``{"seed": 1}``.
        kernels: environment variables on top of the pins, e.g. :data:`PORTABLE_PINS`.
        timeout: seconds allowed per cell.
        cwd: working directory of the kernel; default the notebook's own folder.
    """
    import papermill

    path = Path(path).resolve()
    fingerprint = kernel_fingerprint(kernels)
    with lesson_environment(kernels):
        executed = papermill.execute_notebook(
            str(path),
            None,
            parameters=dict(parameters or {}),
            cwd=str(cwd or path.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            execution_timeout=timeout,
        )
    cleaned = clean_notebook(executed)
    cleaned.metadata.setdefault(METADATA_KEY, {})[NUMERICS_KEY] = fingerprint
    if output_path is not None:
        text = nbformat.writes(cleaned) + "\n"
        atomic_write_text(output_path, text, overwrite=True)
    return cleaned


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove run-specific metadata (papermill, timings, widget state, machine paths in
    metadata) and number the executed code cells 1, 2, 3... in order."""
    nb = nbformat.from_dict(nb)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNEL_SPEC)
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    count = 0
    for cell in nb.cells:
        for key in _VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
    return nb


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What keeps a committed lesson from being clean; an empty list means clean."""
    problems = parameters_problems(nb)
    if "papermill" in nb.metadata or "widgets" in nb.metadata:
        problems.append("notebook metadata holds papermill or widget state")
    expected = 1
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if any(k in cell.metadata for k in _VOLATILE_CELL_KEYS):
            problems.append(f"cell {index} carries run metadata {sorted(cell.metadata)}")
        if cell.execution_count is None:
            problems.append(f"cell {index} has not been executed (no committed output)")
            continue
        if cell.execution_count != expected:
            problems.append(
                f"cell {index} has execution_count {cell.execution_count}, expected {expected}"
            )
        expected = cell.execution_count + 1
        for output in cell.outputs:
            if output.output_type == "error":
                problems.append(f"cell {index} has an error output ({output.ename})")
            text = _text_of(output)
            if "Traceback (most recent call last)" in text:
                problems.append(f"cell {index} output holds a traceback")
            if output.output_type == "stream" and output.name == "stderr":
                problems.append(f"cell {index} writes to stderr: {output.text[:80]!r}")
            if MACHINE_PATH.search(text):
                problems.append(f"cell {index} output holds a machine path")
    return problems


def _text_of(output: Mapping[str, Any]) -> str:
    if "text" in output:
        return str(output["text"])
    data = output.get("data", {})
    return "\n".join(
        str(data[k]) for k in ("text/plain", "text/html", "text/markdown") if k in data
    )
