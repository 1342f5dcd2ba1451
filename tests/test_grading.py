"""Grading with real nbgrader, end to end, in temporary course directories.

A class of the fixture lesson (tests/fixtures/lessons/90_grading_fixture.ipynb, two
exercises worth 2 and 3 points) covers every edge case in one parallel grading run; one
real lesson checks that its solution scores full marks and its student copy scores 0.
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest

from mlcourse.grading import Course, GradingError, GradingReport, grade_lesson
from mlcourse.grading.autograde import (
    RUN_ENV,
    _snapshot_without_students,
    execution_notes,
    failure_reason,
    worker_environment,
)
from mlcourse.grading.cli import main
from mlcourse.grading.preprocessors import restore_missing_cells
from mlcourse.grading.student import lessons_with_exercises, make_student_copy, solution_cells
from mlcourse.grading.submissions import changes_undone, import_submissions
from mlcourse.grading.synthetic import answered_copy
from mlcourse.notebooks import NOTEBOOK_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
LESSON = "90_grading_fixture"
CELL_TIMEOUT = 5  # seconds: the fixture's cells take milliseconds
SUBMISSION_TIMEOUT = 20.0  # seconds: a fixture submission takes 1-3 s
# Lessons by measured grading time (solution + student copy, 2 workers), fastest first;
# lessons not listed come after, in order.
FASTEST_FIRST = ("01_", "05_", "02_", "04_", "03_", "06_")


def gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test_cell(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def save(folder: Path, student: str, nb) -> None:
    (folder / student).mkdir(parents=True)
    nbformat.write(nb, folder / student / f"{LESSON}.ipynb")


def replace_source(nb, grade_id: str, source: str):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if gid(cell) == grade_id:
            cell.source = source
    return nb


# student -> (status, score or None, text the reason or notes must contain)
EXPECTED = {
    "full": ("graded", 5, ""),
    "empty": ("graded", 0, ""),  # the untouched student copy
    "partial": ("graded", 2, ""),
    "hardcoded": ("graded", 3, ""),  # passes ex1's visible test, fails its hidden one
    "edited": ("graded", 0, "test cell ex1_add_tests was edited; graded with the original"),
    "deleted": ("graded", 5, "test cell ex2_mean_tests was missing; graded with the original"),
    "deleted-pair": ("graded", 3, "test cell ex1_add_tests was missing"),
    "unmarked": ("graded", 0, "test cell ex2_mean_tests was missing"),
    "flipped": ("graded", 0, "test cell ex1_add_tests was missing"),  # grade/locked set False
    "not-lite": ("graded", 5, "the parameters set `lite = False`; graded in lite mode"),
    "raises": ("graded", 3, ""),
    "loops": ("graded", 3, "ex1_add ran past the time limit and was interrupted"),
    "dies": ("ungradable", None, "the kernel died"),
    "sleeps": ("ungradable", None, "timed out: grading took longer than 20 s in all"),
    "broken": ("ungradable", None, "not a readable notebook (NotJSONError"),
    "misnamed": ("ungradable", None, f"no {LESSON}.ipynb in misnamed/ (found: Untitled.ipynb)"),
}
# The well-behaved part of the class, also graded by plain serial `nbgrader autograde`.
SERIAL = ("full", "empty", "partial", "hardcoded", "edited", "deleted", "deleted-pair",
          "unmarked", "flipped", "not-lite", "raises")  # fmt: skip


def write_fixture_class(course: Course, folder: Path) -> None:
    release = nbformat.read(course.notebook("release", LESSON), as_version=4)
    source = nbformat.read(course.notebook("source", LESSON), as_version=4)
    both = answered_copy(release, source, ["ex1_add", "ex2_mean"])
    ex2 = answered_copy(release, source, ["ex2_mean"])
    save(folder, "full", both)
    save(folder, "empty", release)
    save(folder, "partial", answered_copy(release, source, ["ex1_add"]))
    save(folder, "hardcoded", replace_source(ex2, "ex1_add", "def add(a, b):\n    return 3"))
    edited = copy.deepcopy(release)
    for cell in edited.cells:
        if is_test_cell(cell):
            cell.source = 'print("all tests passed")'
    save(folder, "edited", edited)
    deleted = copy.deepcopy(both)
    deleted.cells = [c for c in deleted.cells if not is_test_cell(c)]
    save(folder, "deleted", deleted)
    pair = copy.deepcopy(ex2)
    pair.cells = [c for c in pair.cells if gid(c) not in ("ex1_add", "ex1_add_tests")]
    save(folder, "deleted-pair", pair)
    unmarked = copy.deepcopy(release)
    for cell in unmarked.cells:
        if is_test_cell(cell):
            del cell.metadata["nbgrader"]
            cell.source = "pass"
    save(folder, "unmarked", unmarked)
    flipped = copy.deepcopy(release)
    for cell in flipped.cells:
        if is_test_cell(cell):
            cell.metadata["nbgrader"].update(grade=False, locked=False)
            cell.source = "pass"
    save(folder, "flipped", flipped)
    not_lite = copy.deepcopy(both)
    for cell in not_lite.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("lite = True", "lite = False")
    save(folder, "not-lite", not_lite)
    save(folder, "raises", replace_source(ex2, "ex1_add", 'raise ValueError("not today")'))
    save(folder, "loops", replace_source(ex2, "ex1_add", "while True:\n    pass"))
    save(folder, "dies", replace_source(ex2, "ex1_add", "import os\n\nos._exit(3)"))
    sleeps = copy.deepcopy(both)
    naps = [nbformat.v4.new_code_cell("import time\n\ntime.sleep(4)") for _ in range(8)]
    sleeps.cells[2:2] = naps  # each nap is within the cell limit; together they are not
    save(folder, "sleeps", sleeps)
    (folder / "broken").mkdir()
    (folder / "broken" / f"{LESSON}.ipynb").write_text('{"cells": [', encoding="utf-8")
    (folder / "misnamed").mkdir()
    nbformat.write(both, folder / "misnamed" / "Untitled.ipynb")
    (folder / "notes.txt").write_text("not a student", encoding="utf-8")
    (folder / "not a valid id").mkdir()


def nbgrader_env() -> dict[str, str]:
    return worker_environment(1)


@dataclass
class GradedClass:
    course: Course
    submissions: Path
    report: GradingReport
    serial: Course
    serial_log: str


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> GradedClass:
    """Release the fixture lesson, write the class, then grade it twice at once: with
    ``grade_lesson`` (2 workers) and with plain serial ``nbgrader autograde`` on a copy."""
    root = tmp_path_factory.mktemp("grading")
    course = Course.create(root / "course")
    course.release(LESSON, FIXTURES)
    submissions = root / "submissions"
    write_fixture_class(course, submissions)

    serial_root = root / "serial"
    shutil.copytree(course.root, serial_root)
    serial = Course(serial_root)
    for student in SERIAL:
        target = serial.notebook("submitted", LESSON, student)
        target.parent.mkdir(parents=True)
        shutil.copyfile(submissions / student / f"{LESSON}.ipynb", target)
    plain = subprocess.Popen(
        [sys.executable, "-m", "nbgrader", "autograde", LESSON],
        cwd=serial_root, env=nbgrader_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        report = grade_lesson(
            course,
            LESSON,
            submissions,
            workers=2,
            cell_timeout=CELL_TIMEOUT,
            submission_timeout=SUBMISSION_TIMEOUT,
        )
    finally:
        serial_log, _ = plain.communicate(timeout=600)
    assert plain.returncode == 0, serial_log[-3000:]
    return GradedClass(course, submissions, report, serial, serial_log)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_gets_its_own_expected_result(graded_class, student):
    status, score, text = EXPECTED[student]
    outcome = {o.student: o for o in graded_class.report.outcomes}[student]
    assert outcome.status == status, outcome
    assert outcome.score == score, outcome
    assert outcome.max_score == 5
    assert text in outcome.reason + " | " + "; ".join(outcome.notes), outcome


def test_gradebook_holds_every_student_with_the_right_score(graded_class):
    with open(graded_class.course.root / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["assignment"] == LESSON]
    assert sorted(r["student_id"] for r in rows) == sorted(EXPECTED)
    for row in rows:
        _, score, _ = EXPECTED[row["student_id"]]
        assert float(row["score"]) == (score or 0.0), row
        assert float(row["max_score"]) == 5.0
    by_student = graded_class.course.scores(LESSON)
    assert by_student["partial"] == {"ex1_add_tests": 2.0, "ex2_mean_tests": 0.0}
    assert by_student["hardcoded"] == {"ex1_add_tests": 0.0, "ex2_mean_tests": 3.0}


def test_parallel_grades_equal_plain_serial_nbgrader(graded_class):
    serial = graded_class.serial.scores(LESSON)
    parallel = graded_class.course.scores(LESSON)
    assert sorted(serial) == sorted(SERIAL)
    for student in SERIAL:
        assert parallel[student] == serial[student], student


def test_report_lists_ungradable_submissions_and_ignored_entries(graded_class):
    report = graded_class.report
    assert sorted(o.student for o in report.ungradable) == ["broken", "dies", "misnamed", "sleeps"]
    assert any(i.startswith("notes.txt: not a folder") for i in report.ignored)
    assert any(i.startswith("not a valid id: student id 'not a valid id' is not usable") for i in report.ignored)  # fmt: skip
    summary = report.summary()
    assert "Could not grade 4:" in summary and "sleeps: timed out" in summary
    with open(report.report_csv, newline="", encoding="utf-8") as handle:
        rows = {r["student"]: r for r in csv.DictReader(handle)}
    assert sorted(rows) == sorted(EXPECTED)
    assert rows["dies"]["status"] == "ungradable" and "kernel died" in rows["dies"]["reason"]
    assert rows["partial"]["score"] == "2" and rows["partial"]["max_score"] == "5"


def test_tests_are_the_originals_even_when_edited_or_deleted(graded_class):
    source = nbformat.read(graded_class.course.notebook("source", LESSON), as_version=4)
    original = {gid(c): c.source for c in source.cells if is_test_cell(c)}
    assert "### BEGIN HIDDEN TESTS" in original["ex1_add_tests"]
    for student in ("edited", "deleted", "deleted-pair", "unmarked", "flipped", "empty"):
        path = graded_class.course.notebook("autograded", LESSON, student)
        graded = nbformat.read(path, as_version=4)
        tests = {gid(c): c.source for c in graded.cells if is_test_cell(c)}
        assert tests == original, student


def test_grading_runs_lite_mode_on_the_cpu(graded_class):
    path = graded_class.course.notebook("autograded", LESSON, "not-lite")
    body = [c for c in nbformat.read(path, as_version=4).cells if c.get("id") == "fx-body"][0]
    text = "".join(o.get("text", "") for o in body.outputs)
    assert "lite mode: True" in text and "MLCOURSE_DEVICE: cpu" in text


def test_feedback_for_every_graded_student(graded_class):
    for outcome in graded_class.report.outcomes:
        html = graded_class.course.notebook("feedback", LESSON, outcome.student)
        assert html.exists() == (outcome.status == "graded"), outcome.student
        assert outcome.feedback == (html if outcome.status == "graded" else None)
    text = graded_class.course.notebook("feedback", LESSON, "partial").read_text(encoding="utf-8")
    assert "Score: 2.0 / 5.0" in text and "expected 3, got" not in text


def test_logs_say_why(graded_class):
    log = (graded_class.course.root / "logs" / LESSON / "dies.log").read_text(encoding="utf-8")
    assert "DeadKernelError" in log


def test_no_kernel_or_worker_outlives_the_grading_run(graded_class):
    """Every worker and kernel of the run (marked by MLCOURSE_GRADING_RUN) is gone, the
    kernels stopped by the time limits included."""
    run_id = graded_class.report.run_id
    assert run_id
    alive = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get(RUN_ENV) == run_id:
                alive.append(process.info["cmdline"])
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    assert alive == []


def test_resubmitting_a_different_file_needs_force(graded_class):
    course, folder = graded_class.course, graded_class.submissions
    same, ignored = import_submissions(course, LESSON, folder)  # identical files: fine
    assert len(same) == len(EXPECTED) and len(ignored) == 2
    changed = folder / "empty" / f"{LESSON}.ipynb"
    original = changed.read_bytes()
    try:
        changed.write_bytes(original.replace(b"YOUR CODE HERE", b"my code"))
        with pytest.raises(FileExistsError, match="different submission of 90_grading_fixture from empty"):  # fmt: skip
            import_submissions(course, LESSON, folder)
        assert course.notebook("submitted", LESSON, "empty").read_bytes() == original
        import_submissions(course, LESSON, folder, force=True)
        assert course.notebook("submitted", LESSON, "empty").read_bytes() != original
    finally:
        changed.write_bytes(original)
        import_submissions(course, LESSON, folder, force=True)


def test_private_gradebooks_hold_no_student(graded_class, tmp_path):
    from nbgrader.api import Gradebook

    database = graded_class.course.root / "gradebook.db"
    _snapshot_without_students(database, tmp_path / "gradebook.db")
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        assert gb.students == []
        assert gb.find_notebook(LESSON, LESSON).max_score == 5
    assert b"hardcoded" not in (tmp_path / "gradebook.db").read_bytes()


def test_private_gradebook_for_a_server_gradebook_is_released_afresh(graded_class, tmp_path, monkeypatch):  # fmt: skip
    """With PostgreSQL (no SQLite file to snapshot) the lesson is released again into the
    private SQLite gradebook, and must store the same cells as the course's gradebook."""
    from mlcourse.grading import autograde

    monkeypatch.setattr(autograde, "_sqlite_path", lambda url: None)
    shutil.copytree(graded_class.course.root, tmp_path / "course")
    course = Course(tmp_path / "course")
    template = autograde._make_template(course, LESSON, tmp_path / "template")
    assert template.scores(LESSON) == {} and template.max_score(LESSON) == 5
    source = course.notebook("source", LESSON)
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if gid(cell) == "ex1_add_tests":
            cell.source = cell.source.replace("add(1, 2), 3", "add(2, 2), 4")
    nbformat.write(nb, source)
    with pytest.raises(GradingError, match="no longer matches what the gradebook stored"):
        autograde._make_template(course, LESSON, tmp_path / "template2")


def test_releasing_again_is_refused_when_the_lesson_changed(graded_class, tmp_path):
    changed = tmp_path / "lessons"
    changed.mkdir()
    nb = nbformat.read(FIXTURES / f"{LESSON}.ipynb", as_version=4)
    nb.cells[0].source += "\n\nA new paragraph."
    nbformat.write(nb, changed / f"{LESSON}.ipynb")
    before = graded_class.course.notebook("source", LESSON).read_bytes()
    with pytest.raises(FileExistsError, match="pass --force"):
        graded_class.course.release(LESSON, changed)
    assert graded_class.course.notebook("source", LESSON).read_bytes() == before


def test_release_is_the_student_copy_without_collapsed_answer_cells(graded_class):
    released = nbformat.read(graded_class.course.notebook("release", LESSON), as_version=4)
    worked = nbformat.read(FIXTURES / f"{LESSON}.ipynb", as_version=4)
    assert released == make_student_copy(worked)
    assert all("jupyter" not in c.metadata for c in solution_cells(released))


# --- the real lesson ------------------------------------------------------------------


def fastest_lesson_with_exercises() -> str | None:
    stems = [p.stem for p in lessons_with_exercises(NOTEBOOK_DIR) if p.stem[:2] != "00"]
    if not stems:
        return None
    rank = {prefix: i for i, prefix in enumerate(FASTEST_FIRST)}
    return min(stems, key=lambda s: (rank.get(s[:3], len(rank)), s))


def test_real_lesson_solution_full_marks_student_copy_zero(tmp_path, capsys):
    lesson = fastest_lesson_with_exercises()
    if lesson is None:
        pytest.skip("no lesson in notebooks/ has graded exercises yet")
    course_dir, folder = tmp_path / "course", tmp_path / "submissions"
    assert main(["release", lesson, "--course", str(course_dir)]) == 0
    course = Course(course_dir)
    release = nbformat.read(course.notebook("release", lesson), as_version=4)
    source = nbformat.read(course.notebook("source", lesson), as_version=4)
    worked = nbformat.read(NOTEBOOK_DIR / f"{lesson}.ipynb", as_version=4)
    assert release == make_student_copy(worked), "the student copy is not what nbgrader releases"
    ids = [gid(c) for c in solution_cells(source)]
    for student, nb in {
        "solved": answered_copy(release, source, ids),
        "untouched": release,
    }.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, folder / student / f"{lesson}.ipynb")

    code = main(["grade", lesson, str(folder), "--course", str(course_dir), "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    max_score = course.max_score(lesson)
    with open(course_dir / "grades.csv", newline="", encoding="utf-8") as handle:
        scores = {r["student_id"]: float(r["score"]) for r in csv.DictReader(handle)}
    assert scores == {"solved": max_score, "untouched": 0.0}, out
    # An unanswered exercise breaks nothing else: errors only in the exercises' test cells.
    graded = nbformat.read(course.notebook("autograded", lesson, "untouched"), as_version=4)
    failing = [
        gid(c) or c.get("id")
        for c in graded.cells
        if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    ]
    assert failing and all(name in {gid(c) for c in graded.cells if is_test_cell(c)} for name in failing)  # fmt: skip


# --- the command line -------------------------------------------------------------------


def test_cli_errors_name_the_bad_value(tmp_path, capsys):
    course_dir = tmp_path / "course"
    assert main(["release", "99_nothing", "--course", str(course_dir), "--lessons-dir", str(FIXTURES)]) == 2  # fmt: skip
    assert f"lesson='99_nothing' is not supported; expected one of '{LESSON}'" in capsys.readouterr().err  # fmt: skip
    assert main(["grade", LESSON, "--course", str(tmp_path / "nowhere")]) == 2
    assert "course directory" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir)]) == 2
    assert f"lesson={LESSON!r} has not been released" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir), "--workers", "0"]) == 2
    assert "workers=0 is out of range; expected an integer in [1, inf)" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir), "--timeout", "soon"]) == 2
    assert "timeout must be an integer, got 'soon'" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "--course" in capsys.readouterr().err


def test_one_command_at_a_time_per_course(graded_class, capsys):
    course = graded_class.course
    with course.lock():
        code = main(["grade", LESSON, str(graded_class.submissions), "--course", str(course.root)])  # fmt: skip
    assert code == 2
    assert "another mlcourse-grade command is working in" in capsys.readouterr().err


def test_a_course_is_never_created_over_other_files(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is not empty and is not a course directory"):
        Course.create(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_cli_missing_submissions_folder(graded_class, tmp_path, capsys):
    code = main(["grade", LESSON, str(tmp_path / "missing"), "--course", str(graded_class.course.root)])  # fmt: skip
    assert code == 2
    assert "submissions folder" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "mlcourse.grading", "grade", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "--submission-timeout" in result.stdout


# --- pieces -----------------------------------------------------------------------------


def test_restore_missing_cells_puts_each_test_back_in_place():
    from nbformat.v4 import new_code_cell, new_notebook

    def cell(grade_id, **flags):
        return new_code_cell(grade_id, metadata={"nbgrader": {"grade_id": grade_id, **flags}})

    stored = {
        "a": ("code", "a", "x", False),
        "a_tests": ("code", "A tests", "y", True),
        "b": ("code", "b", "z", False),
        "b_tests": ("code", "B tests", "w", True),
    }
    points = {"a_tests": 1.0, "b_tests": 2.0}
    order = list(stored)
    nb = new_notebook(cells=[new_code_cell("intro"), cell("b", solution=True)])
    assert restore_missing_cells(nb, order, stored, points) == ["a_tests", "b_tests"]
    assert [c.source for c in nb.cells] == ["intro", "A tests", "b", "B tests"]
    assert nb.cells[1].metadata.nbgrader.points == 1.0 and nb.cells[1].metadata.nbgrader.locked
    empty = new_notebook(cells=[new_code_cell("my own answer")])
    restore_missing_cells(empty, order, stored, points)
    assert [c.source for c in empty.cells] == ["my own answer", "A tests", "B tests"]


def test_changes_undone_and_failure_reasons():
    from nbformat.v4 import new_code_cell, new_notebook

    tests = {"nbgrader": {"grade": True, "grade_id": "t", "locked": True, "points": 1}}
    release = new_notebook(cells=[new_code_cell("check()", metadata=tests)])
    assert changes_undone(copy.deepcopy(release), release) == []
    edited = replace_source(release, "t", "pass")
    assert changes_undone(edited, release) == ["test cell t was edited; graded with the original"]
    assert failure_reason({"timed_out": True}, 5, 20) == "timed out: grading took longer than 20 s in all"  # fmt: skip
    assert "could not be interrupted" in failure_reason({"error": "UnresponsiveKernelError"}, 5, 20)
    assert failure_reason({"error": "Traceback\nKeyError: 'x'"}, 5, 20) == "nbgrader failed: KeyError: 'x'"  # fmt: skip
    timed_out = new_code_cell("", metadata=tests)
    timed_out.outputs = [nbformat.v4.new_output("error", ename="CellTimeoutError", evalue="", traceback=[])]  # fmt: skip
    assert execution_notes(new_notebook(cells=[timed_out])) == ["t ran past the time limit and was interrupted"]  # fmt: skip


def test_worker_environment_shares_the_cores():
    env = worker_environment(2)
    assert env["MLCOURSE_DEVICE"] == "cpu" and "MPLBACKEND" not in env
    if "OMP_NUM_THREADS" not in os.environ:
        assert int(env["OMP_NUM_THREADS"]) >= 1
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
