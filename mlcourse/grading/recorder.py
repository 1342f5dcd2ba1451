"""The recorder that instrumented test cells call, inside the grading kernel.

:mod:`mlcourse.grading.instrument` turns each check of a test cell into
``__mlcourse_check__(cell, site, kind, {argument: value})`` and ends the cell with
``__mlcourse_cell_end__(cell)``. :func:`install` puts both into the kernel's namespace
before the notebook runs. Each call publishes one display message of the type
:data:`RECORD_MIME`, which the sandbox's runner takes out of the cell's outputs.

This code runs next to the student's code, which can replace it: nothing here is
trusted. What it records is judged outside the sandbox against the solution's run
(:mod:`mlcourse.grading.judge`), so a replaced recorder can only report values, and a
value passes only if it is right.

Example:
    >>> namespace = {}
    >>> install(namespace)
    >>> sorted(namespace)
    ['__mlcourse_cell_end__', '__mlcourse_check__']
"""

from __future__ import annotations

import inspect
from typing import Any

from mlcourse.grading.instrument import CELL_END, CHECK_FUNCTION, OUTSIDE_KEY
from mlcourse.grading.values import encode

RECORD_MIME = "application/vnd.mlcourse.grading-record+json"


def _publish(record: dict[str, Any]) -> None:
    from IPython.display import publish_display_data

    publish_display_data({RECORD_MIME: record})


def value_kind(value: Any) -> str:
    """``"code"`` for modules, classes and functions; ``"data"`` for anything else."""
    if inspect.ismodule(value) or inspect.isclass(value) or callable(value):
        return "code"
    return "data"


def check(cell: str, site: int, kind: str, args: dict[str, Any]) -> None:
    """Record one check's arguments (see the module docstring)."""
    outside = args.pop(OUTSIDE_KEY, None)
    record: dict[str, Any] = {
        "cell": cell,
        "site": site,
        "kind": kind,
        "args": {name: encode(value) for name, value in args.items()},
    }
    if outside is not None:
        record["outside"] = {name: value_kind(value) for name, value in outside.items()}
    _publish(record)


def cell_end(cell: str) -> None:
    """Record that the test cell ``cell`` ran to its end."""
    _publish({"cell": cell, "end": True})


def install(namespace: dict[str, Any]) -> None:
    """Define the recorder's two functions in ``namespace`` (the kernel's user namespace)."""
    namespace[CHECK_FUNCTION] = check
    namespace[CELL_END] = cell_end
