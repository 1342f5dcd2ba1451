"""Every lesson is clean as committed, and clean when re-executed with each kernel set.

(The comparison of re-executed outputs with the committed ones: test_lesson_outputs.py.)
"""

import re

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
# The line a worked lesson shows above the tests that student copies do not contain.
HIDDEN_TESTS_LABEL = "# Instructors' hidden tests"
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
    for phrase in ("Goal", "Prerequisites", "Summary", "Next steps", "Lite and full", "$"):
        assert phrase in markdown, f"{path.name}: no {phrase!r} in its text"


@pytest.mark.parametrize("path", LESSONS, ids=STEMS)
def test_summary_takes_its_numbers_from_the_computation(path):
    """The summary is rendered from published results, readable, and reached by Run All on
    a student copy: it comes before the exercises, and its prose holds no typed-in numbers."""
    nb = nbformat.read(path, as_version=4)
    starts = [i for i, c in enumerate(nb.cells) if c.source.startswith("## Summary")]
    assert len(starts) == 1, f"{path.name}: one '## Summary' section"
    end = next(
        (i for i, c in enumerate(nb.cells) if i > starts[0] and c.source.startswith("## ")),
        len(nb.cells),
    )
    section = nb.cells[starts[0] : end]
    code = [c for c in section if c.cell_type == "code"]
    assert any("publish_results(" in c.source for c in code), f"{path.name}: no publish_results"
    assert any("render_summary(" in c.source for c in code), f"{path.name}: no render_summary"
    assert any("show_lite_and_full(" in c.source for c in code), f"{path.name}: no lite/full box"
    for cell in code:  # plumbing is collapsed; its rendered output is what a reader sees
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
            f"{path.name}: collapse the summary's code cells (metadata jupyter.source_hidden)"
        )
    for cell in section:
        if cell.cell_type == "markdown":
            prose = re.sub(r"\[[^\]]*\]\([^)]*\)|`[^`]*`|\$[^$]*\$", "", cell.source)
            prose = re.sub(r"^#+ .*$", "", prose, flags=re.M)
            typed = re.search(r".{0,30}\d.{0,30}", prose)
            assert typed is None, (
                f"{path.name}: a number typed into the summary's prose: {typed.group(0)!r}; "
                "render it from published results with render_summary"
            )
    if int(path.name[:2]) >= 1:
        first_exercise = min(i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata)
        assert starts[0] < first_exercise, f"{path.name}: the summary comes before the exercises"


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
    assert headings[-1].startswith("## Exercises"), "exercises sit in one section at the end"
    later = [c.source for c in nb.cells[first_exercise:] if c.source.startswith("## ")]
    assert not later, f"the exercises are the last section; found {later[0][:40]!r} after them"
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
            before = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip().splitlines()[-1]
            assert before.lstrip().startswith(HIDDEN_TESTS_LABEL), (
                f"{meta['grade_id']}: label the hidden tests for readers of the worked lesson: "
                f"put a line starting {HIDDEN_TESTS_LABEL!r} right before ### BEGIN HIDDEN TESTS"
            )
