"""nbgrader preprocessors that adapt nbgrader to the course's lessons.

The course directory's ``nbgrader_config.py`` (see :mod:`mlcourse.grading.config`) puts
these into nbgrader's own pipelines, so plain ``nbgrader generate_assignment`` and
``nbgrader autograde`` run in a course directory behave exactly like ``mlcourse-grade``:

- :class:`ClearExerciseOutputs` (release): clears the outputs of solution and test cells
  only, so a released lesson keeps the committed lite-mode outputs of its other cells.
- :class:`RestoreDeletedCells` (autograde): puts back test cells a student deleted (or
  whose nbgrader metadata they removed), with the original tests, so a submission is
  always graded with every test the instructor wrote.
- :class:`ForceLiteMode` (autograde): injects ``lite = True`` after the parameters cell,
  so grading never runs a lesson's full-size version.
- :class:`OverwriteReleasedCells` (autograde): nbgrader's ``OverwriteCells`` without its
  false alarm: a test cell exactly as released (hidden tests removed) is restored
  silently; only one a student changed is reported.
- :class:`HideHiddenTests` (feedback): the feedback page shows each hidden-test block of a
  test cell as one comment line, never its source.

Example:
    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> nb = new_notebook(cells=[new_code_cell("lite = False", metadata={"tags": ["parameters"]})])
    >>> nb, _ = ForceLiteMode().preprocess(nb, {})
    >>> nb.cells[1].source.splitlines()[-1]
    'lite = True'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells
from traitlets import Unicode

from mlcourse.parameters_cell import parameters_index

INJECTED_TAG = "injected-by-mlcourse-grade"
LITE_SOURCE = (
    "# Injected by mlcourse-grade: grading always runs the lesson in lite mode.\nlite = True"
)


def is_exercise_cell(cell: NotebookNode) -> bool:
    """Whether nbgrader treats ``cell`` as part of an exercise (solution, test or read-only)."""
    return bool(utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell))


class ClearExerciseOutputs(NbGraderPreprocessor):
    """Clear outputs and execution counts of exercise cells; keep every other output."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict[str, Any], cell_index: int
    ) -> tuple[NotebookNode, dict[str, Any]]:
        if cell.cell_type == "code" and is_exercise_cell(cell):
            cell.outputs = []
            cell.execution_count = None
        return cell, resources


class ForceLiteMode(NbGraderPreprocessor):
    """Insert a cell setting ``lite = True`` right after the lesson's parameters.

    The cell goes after the cell tagged ``parameters``; failing that, after the first code
    cell that assigns ``lite``; failing that, at the top of the notebook.
    """

    def preprocess(
        self, nb: NotebookNode, resources: dict[str, Any]
    ) -> tuple[NotebookNode, dict[str, Any]]:
        nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.metadata.get("tags", [])]
        found = parameters_index(nb.cells)
        position = 0 if found is None else found + 1
        cell = from_dict(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "mlcourse-grade-lite",
                "metadata": {"tags": [INJECTED_TAG]},
                "outputs": [],
                "source": LITE_SOURCE,
            }
        )
        if nb.get("nbformat_minor", 5) < 5:
            del cell["id"]
        nb.cells.insert(position, cell)
        return nb, resources


class RestoreDeletedCells(NbGraderPreprocessor):
    """Put back locked cells (tests, read-only cells) missing from a submission.

    A test cell counts as missing when no cell carries its ``grade_id`` as a graded or
    locked cell, e.g. because the student deleted it or stripped its metadata. The
    original cell (hidden tests included, as nbgrader stored it at release) is inserted
    after the nearest exercise cell that precedes it in the released lesson and is still
    there, or before the nearest one that follows it, or at the end. Solution cells are
    not restored: a student may have answered in other cells, and a stub would overwrite
    that answer. Cells whose nbgrader metadata names no cell of the lesson, or no longer
    marks an exercise cell, lose that metadata: a student cannot add graded cells of their
    own, nor turn a test into an ordinary cell.
    """

    source_directory = Unicode(
        "source",
        help="Folder (relative to the course root, nbgrader's working directory while "
        "converting) holding source/<assignment>/<notebook>.ipynb; gives the cell order.",
    ).tag(config=True)

    def preprocess(
        self, nb: NotebookNode, resources: dict[str, Any]
    ) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            stored = gradebook.find_notebook(info["notebook"], info["assignment"])
            max_scores = {c.name: c.max_score for c in stored.grade_cells}
            cells = {
                c.name: (c.cell_type, c.source, c.checksum, c.locked) for c in stored.source_cells
            }
        order = self._source_order(info["assignment"], info["notebook"], list(cells))
        for cell in nb.cells:
            if "nbgrader" not in cell.metadata:
                continue
            grade_id = cell.metadata["nbgrader"].get("grade_id")
            if grade_id not in cells or not is_exercise_cell(cell):
                self.log.warning("Dropping the nbgrader metadata of cell %r", grade_id)
                del cell.metadata["nbgrader"]
        restored = restore_missing_cells(nb, order, cells, max_scores)
        for grade_id in restored:
            self.log.warning("Restored cell %r, missing from the submission", grade_id)
        return nb, resources

    def _source_order(self, assignment: str, notebook: str, fallback: list[str]) -> list[str]:
        import nbformat

        path = Path(self.source_directory) / assignment / f"{notebook}.ipynb"
        if not path.exists():
            self.log.warning("%s not found; restoring cells in database order", path)
            return fallback
        source = nbformat.read(path, as_version=4)
        ids = [c.metadata["nbgrader"]["grade_id"] for c in source.cells if is_exercise_cell(c)]
        return [i for i in ids if i in fallback] + [i for i in fallback if i not in ids]


def restore_missing_cells(
    nb: NotebookNode,
    order: list[str],
    cells: dict[str, tuple[str, str, str, bool]],
    max_scores: dict[str, float],
) -> list[str]:
    """Insert into ``nb`` the locked cells of ``cells`` that ``nb`` lacks; return their ids.

    Args:
        nb: the submission, changed in place.
        order: every ``grade_id`` of the released notebook, in notebook order.
        cells: ``grade_id -> (cell_type, source, checksum, locked)`` as nbgrader stored them.
        max_scores: points of each graded cell.
    """

    def present() -> dict[str, int]:
        found = {}
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            if "grade_id" in meta and is_exercise_cell(cell):
                found[meta["grade_id"]] = index
        return found

    restored = []
    for position, grade_id in enumerate(order):
        cell_type, source, checksum, locked = cells[grade_id]
        graded = grade_id in max_scores
        if not (graded or locked) or grade_id in present():
            continue
        where = present()
        before = [where[g] for g in order[:position] if g in where]
        after = [where[g] for g in order[position + 1 :] if g in where]
        index = max(before) + 1 if before else (min(after) if after else len(nb.cells))
        meta = {
            "deletable": False,
            "editable": False,
            "nbgrader": {
                "cell_type": cell_type,
                "checksum": checksum,
                "grade": graded,
                "grade_id": grade_id,
                "locked": True,
                "schema_version": 3,
                "solution": False,
                "task": False,
            },
        }
        if graded:
            meta["nbgrader"]["points"] = max_scores[grade_id]
        cell: dict[str, Any] = {"cell_type": cell_type, "metadata": meta, "source": source}
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        if nb.get("nbformat_minor", 5) >= 5:
            cell["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", f"restored-{grade_id}")[:64]
        nb.cells.insert(index, from_dict(cell))
        restored.append(grade_id)
    return restored


def released_source(source: str) -> str:
    """A test cell's source as students get it: its hidden-test blocks removed.

    Example:
        >>> released_source("a()\\n### BEGIN HIDDEN TESTS\\nb()\\n### END HIDDEN TESTS\\nc()")
        'a()\\nc()'
    """
    cell = from_dict({"cell_type": "code", "source": source, "metadata": {}})
    ClearHiddenTests()._remove_hidden_test_region(cell)
    return cell.source


class OverwriteReleasedCells(OverwriteCells):
    """nbgrader's ``OverwriteCells``, quiet for untouched test cells.

    A released test cell lacks its hidden tests, so its checksum always differs from the
    one nbgrader stored, and ``OverwriteCells`` warns for every test cell of every
    submission. A cell whose source is exactly the released one gets the stored source
    first; a cell the student changed is still reported (and restored).
    """

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict[str, Any], cell_index: int
    ) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import MissingEntry

        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and utils.is_locked(cell):
            try:
                stored = self.gradebook.find_source_cell(
                    grade_id, self.notebook_id, self.assignment_id
                )
            except MissingEntry:
                stored = None
            if stored is not None and cell.source == released_source(stored.source):
                cell.source = stored.source
        return super().preprocess_cell(cell, resources, cell_index)


HIDDEN_NOTE = "# (hidden tests: their results are in the output below)"


def hide_hidden_tests(source: str) -> str:
    """``source`` with each hidden-test block replaced by :data:`HIDDEN_NOTE`.

    Example:
        >>> print(hide_hidden_tests("a()\\n### BEGIN HIDDEN TESTS\\nb()\\n### END HIDDEN TESTS"))
        a()
        # (hidden tests: their results are in the output below)
    """
    from mlcourse.grading.instrument import HIDDEN_BEGIN, HIDDEN_END

    lines, inside = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            inside = True
            lines.append(HIDDEN_NOTE)
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            lines.append(line)
    return "\n".join(lines)


class HideHiddenTests(NbGraderPreprocessor):
    """Replace the hidden-test blocks of graded cells (only those: a student's own cells
    are shown as written, whatever they contain)."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict[str, Any], cell_index: int
    ) -> tuple[NotebookNode, dict[str, Any]]:
        if utils.is_grade(cell):
            cell.source = hide_hidden_tests(cell.source)
        return cell, resources
