"""Every lesson's outputs, re-executed with each kernel set, match the committed ones.

Where the run's numerics fingerprint equals the one recorded in the committed notebook the
texts must be identical; elsewhere words and counts must be identical and numbers agree
within the tolerances the lesson declares (``mlcourse.lesson_outputs``).
"""

from __future__ import annotations

import nbformat
import pytest

from lesson_runs import KERNEL_SETS
from mlcourse.lesson_outputs import (
    cell_tolerance,
    compare_cell,
    is_compared,
    lesson_tolerance,
    recorded_fingerprint,
)
from mlcourse.notebooks import lesson_paths

COMMITTED = {p.stem: nbformat.read(p, as_version=4) for p in lesson_paths()}
CASES = [
    pytest.param(stem, kernels, index, id=f"{stem}-{kernels}-cell{index}")
    for stem, nb in COMMITTED.items()
    for kernels in KERNEL_SETS
    for index, cell in enumerate(nb.cells)
    if is_compared(cell)
]


def comparison_mode(committed, executed) -> str:
    """``"exact"`` when the fingerprints match, else ``"tolerant"``."""
    recorded, current = recorded_fingerprint(committed), recorded_fingerprint(executed)
    return "exact" if recorded and current and recorded["id"] == current["id"] else "tolerant"


@pytest.mark.parametrize("stem,kernels", [(s, k) for s in COMMITTED for k in KERNEL_SETS])
def test_run_has_the_committed_cells(stem, kernels, lesson_run):
    executed = lesson_run(stem, kernels).notebook
    committed = COMMITTED[stem]
    assert [c.cell_type for c in executed.cells] == [c.cell_type for c in committed.cells]
    assert [c.source for c in executed.cells] == [c.source for c in committed.cells]
    assert recorded_fingerprint(committed), (
        f"{stem}: the committed notebook records no numerics fingerprint; "
        "re-run `python3 course.py execute` on it"
    )


@pytest.mark.parametrize("stem,kernels,index", CASES)
def test_outputs_match_the_committed_ones(stem, kernels, index, lesson_run):
    committed = COMMITTED[stem]
    executed = lesson_run(stem, kernels).notebook
    mode = comparison_mode(committed, executed)
    cell = committed.cells[index]
    tolerance = None if mode == "exact" else cell_tolerance(cell, lesson_tolerance(committed))
    problem = compare_cell(cell, executed.cells[index], tolerance)
    assert problem is None, (
        f"{stem} cell {index} ({kernels} kernels, {mode} comparison, fingerprint "
        f"{recorded_fingerprint(executed)['id']} vs committed "
        f"{(recorded_fingerprint(committed) or {}).get('id')}): {problem}"
    )
