"""Student copies: current, free of solutions, reproducible; worked solutions collapsed;
exercises that stand alone."""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from mlcourse.grading.student import (
    graded_cells,
    hide_solutions,
    lessons_with_exercises,
    make_student_copy,
    solution_cells,
    student_copies_dir,
    student_copy_problems,
    student_copy_text,
    visible_solutions,
    write_student_copies,
)
from mlcourse.notebooks import NOTEBOOK_DIR, lesson_paths

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
FIXTURE = FIXTURES / "90_grading_fixture.ipynb"
LESSONS = lessons_with_exercises(NOTEBOOK_DIR)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", flags=re.DOTALL)

sys.path.insert(0, str(ROOT / "tools"))
import make_student_copies  # noqa: E402


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def test_student_copies_are_current():
    problems = student_copy_problems()
    assert problems == [], "\n".join(problems) + "\nRegenerate with `python3 course.py student`."


def test_every_lesson_from_01_has_two_graded_exercises():
    numbered = [p for p in lesson_paths() if not p.name.startswith("00_")]
    for path in numbered:
        nb = read(path)
        tests = graded_cells(nb)
        assert len(tests) >= 2, f"{path.name} has {len(tests)} graded test cells; needs 2 or more"
        ids = [meta(c)["grade_id"] for c in nb.cells if "grade_id" in meta(c)]
        assert len(ids) == len(set(ids)), f"{path.name} repeats a grade_id: {ids}"
        for cell in tests:
            assert meta(cell).get("points", 0) > 0 and meta(cell).get("locked"), meta(cell)
        for cell in solution_cells(nb):
            assert "### BEGIN SOLUTION" in cell.source, f"{path.name}: {meta(cell)['grade_id']}"


@pytest.mark.parametrize("path", LESSONS + [FIXTURE], ids=lambda p: p.stem)
def test_a_student_copy_holds_no_solution_and_no_hidden_test(path):
    worked = read(path)
    student = make_student_copy(worked)
    text = nbformat.writes(student)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    for cell in solution_cells(student):
        assert "raise NotImplementedError()" in cell.source, meta(cell)["grade_id"]
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is not True
    without_hidden = copy.deepcopy(worked)
    for cell in without_hidden.cells:
        cell.source = HIDDEN.sub("", cell.source)
    elsewhere = nbformat.writes(without_hidden)
    for cell in worked.cells:
        for block in HIDDEN.findall(cell.source):
            for line in filter(None, (x.strip() for x in block.splitlines())):
                if json.dumps(line)[1:-1] not in elsewhere:  # lines only the hidden tests have
                    assert json.dumps(line)[1:-1] not in text, f"hidden test leaked: {line!r}"
    for cell in student.cells:
        if cell.cell_type == "code" and "nbgrader" in cell.metadata:
            assert cell.outputs == [] and cell.execution_count is None


def test_student_copy_keeps_lesson_outputs_and_is_reproducible():
    worked = read(FIXTURE)
    before = copy.deepcopy(worked)
    student = make_student_copy(worked)
    assert worked == before, "make_student_copy changed its input"
    body = {c.id: c for c in student.cells}["fx-body"]
    assert body.outputs == {c.id: c for c in worked.cells}["fx-body"].outputs != []
    assert [c.id for c in student.cells] == [c.id for c in worked.cells]
    assert student_copy_text(worked) == student_copy_text(read(FIXTURE))
    locked = [c for c in student.cells if meta(c).get("grade")]
    assert all(c.metadata["editable"] is False and "checksum" in meta(c) for c in locked)


def test_generator_writes_checks_and_never_deletes(tmp_path, capsys):
    lessons, out = tmp_path / "lessons", tmp_path / "student"
    lessons.mkdir()
    shutil.copy(FIXTURE, lessons)
    assert make_student_copies.main(["--check", "--lessons", str(lessons), "--out", str(out)]) == 1
    assert "is missing" in capsys.readouterr().out
    assert write_student_copies(lessons, out) == {FIXTURE.name: "new"}
    assert write_student_copies(lessons, out) == {FIXTURE.name: "unchanged"}
    assert make_student_copies.main(["--check", "--lessons", str(lessons), "--out", str(out)]) == 0
    (out / FIXTURE.name).write_text((out / FIXTURE.name).read_text() + " ", encoding="utf-8")
    (out / "77_removed.ipynb").write_text("{}", encoding="utf-8")
    assert make_student_copies.main(["--check", "--lessons", str(lessons), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "is stale" in printed and "77_removed.ipynb has no lesson" in printed
    assert make_student_copies.main(["--lessons", str(lessons), "--out", str(out)]) == 0
    assert "warning" in capsys.readouterr().out and (out / "77_removed.ipynb").exists()
    assert (out / FIXTURE.name).read_text(encoding="utf-8") == student_copy_text(read(FIXTURE))


def test_hide_solutions_changes_only_that_metadata(tmp_path):
    path = tmp_path / FIXTURE.name
    nb = read(FIXTURE)
    for cell in solution_cells(nb):
        del cell.metadata["jupyter"]
    nbformat.write(nb, path)
    assert visible_solutions(read(path)) == ["ex1_add", "ex2_mean"]
    assert hide_solutions(path) == ["ex1_add", "ex2_mean"]
    assert visible_solutions(read(path)) == []
    assert read(path) == read(FIXTURE)
    text = path.read_text(encoding="utf-8")
    assert hide_solutions(path) == [] and path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_solutions_are_collapsed_in_the_worked_lessons(path):
    visible = visible_solutions(read(path))
    assert visible == [], (
        f"{path.name}: solution cells {visible} open expanded in JupyterLab; run "
        "`python3 course.py student --hide-solutions`"
    )


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines at top level, names it reads)."""
    tree = ast.parse(source)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                defined |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    read_ = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}  # fmt: skip
    return defined, read_


@pytest.mark.parametrize("path", LESSONS + [FIXTURE], ids=lambda p: p.stem)
def test_each_exercise_stands_alone(path):
    """The lesson body never reads an exercise's answer, and no exercise's tests read
    another exercise's answer, so an unanswered exercise breaks nothing else."""
    nb = read(path)
    answers: dict[str, set[str]] = {}
    current = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        defined, used = _names(cell.source)
        if meta(cell).get("solution"):
            current = meta(cell)["grade_id"]
            answers[current] = defined
            continue
        own = answers.get(current, set()) if meta(cell).get("grade") else set()
        others = set().union(*answers.values()) - own - defined if answers else set()
        borrowed = sorted(used & others)
        where = meta(cell).get("grade_id") or cell.get("id")
        assert borrowed == [], f"{path.name}: cell {where} uses answers {borrowed}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lessons_with_exercises_find_files_without_relying_on_their_folder(path):
    """Graded and student copies run in other folders (autograded/<student>/<lesson>/,
    notebooks/student/), so lessons must not open files relative to notebooks/."""
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert not re.search(r"""Path\(\s*["']\.\.["']\s*\)|["']\.\./""", cell.source), (
                f"{path.name}: {cell.source[:120]!r} depends on the notebook's folder"
            )


def test_readme_of_the_student_folder_says_where_solutions_are():
    text = (student_copies_dir() / "README.md").read_text(encoding="utf-8")
    assert "python3 course.py student" in text and "notebooks/" in text and "Binder" in text
