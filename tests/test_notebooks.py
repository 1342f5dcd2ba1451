"""Every lesson is clean as committed, and clean when re-executed with each kernel set.

(The comparison of re-executed outputs with the committed ones: test_lesson_outputs.py.)
"""

import nbformat
import pytest

from exercise_checks import exercises
from lesson_runs import KERNEL_SETS
from mlcourse.notebooks import (
    MACHINE_PATH,
    NOTEBOOK_DIR,
    clean_notebook,
    lesson_paths,
    notebook_problems,
)

LESSONS = lesson_paths()
STEMS = [p.stem for p in LESSONS]


def test_lessons_are_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 1


@pytest.mark.parametrize("path", LESSONS, ids=STEMS)
def test_committed_lesson_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert notebook_problems(nb) == []
    nbformat.validate(nb)


@pytest.mark.parametrize("path", LESSONS, ids=STEMS)
def test_lesson_reads_like_a_chapter(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for phrase in ("Goal", "Prerequisites", "Summary", "Next steps", "$"):
        assert phrase in markdown, f"{path.name}: no {phrase!r} in its text"
    assert "publish_results(" in "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("stem", STEMS)
def test_lesson_runs_cleanly(stem, kernels, lesson_run):
    executed = lesson_run(stem, kernels)
    errors = [
        o for c in executed.notebook.cells for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert errors == []
    assert executed.results, "the lesson published no results"
    assert notebook_problems(executed.notebook) == []


def test_clean_notebook_strips_run_metadata():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1", execution_count=7),
               nbformat.v4.new_code_cell("print(x)", execution_count=9)],
        metadata={"papermill": {"input_path": "/home/someone/x.ipynb"}, "widgets": {}},
    )  # fmt: skip
    nb.cells[0].metadata["papermill"] = {"duration": 1.0}
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    cleaned = clean_notebook(nb)
    assert "papermill" not in cleaned.metadata and "widgets" not in cleaned.metadata
    assert [c.execution_count for c in cleaned.cells] == [1, 2]
    assert cleaned.cells[0].metadata == {}


def test_problems_are_reported():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("lite = True", execution_count=None)]
    )
    problems = notebook_problems(nb)
    assert any("tagged 'parameters'" in p for p in problems)
    assert any("has not been executed" in p for p in problems)
    assert MACHINE_PATH.search("saved to /home/alice/run.json")
    assert MACHINE_PATH.search(r"C:\Users\alice\run.json")
    assert not MACHINE_PATH.search("saved to run.json")


def test_student_copies_are_not_collected_as_lessons():
    assert all(p.parent == NOTEBOOK_DIR for p in LESSONS)


EXERCISE_LESSONS = [p for p in LESSONS if int(p.name[:2]) >= 1]


@pytest.mark.parametrize("path", EXERCISE_LESSONS, ids=[p.stem for p in EXERCISE_LESSONS])
def test_lesson_has_graded_exercises_in_nbgrader_form(path):
    nb = nbformat.read(path, as_version=4)
    found = exercises(nb)
    assert len(found) >= 2, "every lesson from 01 on has at least two graded exercises"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    first_exercise = min(i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata)
    headings = [
        line
        for c in nb.cells[:first_exercise]
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("## ")
    ]
    assert headings[-1].startswith("## Exercises"), "exercises sit in one section near the end"
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        assert meta["schema_version"] == 3
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
                f"{meta['grade_id']}: solutions are collapsed in the worked lessons "
                "(python3 course.py student --hide-solutions)"
            )
        if meta.get("grade"):
            assert meta["locked"] is True and meta["points"] > 0
            assert "### BEGIN HIDDEN TESTS" in cell.source, meta["grade_id"]
    summary = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Summary"))
    assert all(i < summary for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata)
