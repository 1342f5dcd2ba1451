"""The rules of a lesson's ``parameters`` cell, in one place.

Every lesson has exactly one code cell tagged ``parameters`` that sets ``lite``, ``seed`` and
``device`` at the start of a line (``lite = True`` or ``lite: bool = True``). papermill
injects its values after that cell (:mod:`mlcourse.notebooks`), and grading injects
``lite = True`` there and notes a submission that set anything else
(:mod:`mlcourse.grading.preprocessors`, :mod:`mlcourse.grading.submissions`).

Example:
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> cell = new_code_cell("lite: bool = False  # full size\\nseed = 0", metadata={"tags": ["parameters"]})
    >>> assigned_values(cell.source, "lite")
    ['False']
    >>> parameters_problems(new_notebook(cells=[cell]))
    ["parameters cell does not set 'device'"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

PARAMETERS_TAG = "parameters"
REQUIRED_PARAMETERS = ("lite", "seed", "device")


def _assignment(name: str) -> re.Pattern[str]:
    """``name = value`` or ``name: type = value`` at the start of a line (not ``==``)."""
    return re.compile(
        rf"^{re.escape(name)}\s*(:[^=\n]+)?=(?!=)(?P<value>[^#\n]*)", flags=re.MULTILINE
    )


def assigned_values(source: str, name: str) -> list[str]:
    """The values ``source`` assigns to ``name`` at the start of a line, comments removed.

    Example:
        >>> assigned_values("seed = 3\\nif seed == 3:\\n    seed = 4\\nseed: int = 5", "seed")
        ['3', '5']
    """
    return [m.group("value").strip() for m in _assignment(name).finditer(source)]


def is_parameters_cell(cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` is tagged ``parameters``."""
    return PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])


def parameters_index(cells: Sequence[Mapping[str, Any]]) -> int | None:
    """Where a lesson's parameters are: the cell tagged ``parameters``; failing that, the
    first code cell that assigns ``lite``; failing that, ``None``.

    Example:
        >>> from nbformat.v4 import new_code_cell, new_markdown_cell
        >>> parameters_index([new_markdown_cell("lite = 1"), new_code_cell("lite = True")])
        1
    """
    tagged = [i for i, cell in enumerate(cells) if is_parameters_cell(cell)]
    if tagged:
        return tagged[0]
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code" and assigned_values(cell.get("source", ""), "lite"):
            return index
    return None


def parameters_problems(nb: Mapping[str, Any]) -> list[str]:
    """What breaks the rules: not exactly one cell tagged ``parameters``, or one that does
    not set every name of :data:`REQUIRED_PARAMETERS`. An empty list means none."""
    tagged = [cell for cell in nb["cells"] if is_parameters_cell(cell)]
    if len(tagged) != 1:
        return [f"expected exactly one cell tagged {PARAMETERS_TAG!r}, found {len(tagged)}"]
    source = tagged[0].get("source", "")
    return [
        f"parameters cell does not set {name!r}"
        for name in REQUIRED_PARAMETERS
        if not assigned_values(source, name)
    ]
