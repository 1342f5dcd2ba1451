"""Grading a class end to end through ``mlcourse-grade``, honest and hostile submissions alike.

One class of the fixture lesson (tests/fixtures/lessons/90_grading_fixture.ipynb: two
exercises worth 2 and 3 points) is graded once, in a real process, with sandboxes and two
workers. It holds every edge case of honest grading (edited, deleted, unmarked tests,
``lite = False``, exceptions, loops, a dying kernel, time limits, broken files) and every
attack of issue 15 (cross-student writes, reading the solution and the gradebook, patched
checks, a detached daemon, a fork bomb, a memory hog, 50 MB of output, network access,
corrupt JSON, a symbolic link). Each submission must score what an honest grader gives,
and nothing outside its sandbox may change. Plain serial ``nbgrader autograde`` grades
the honest part of the class at the same time, for comparison. A real lesson then checks
that its solution scores full marks and its student copy 0.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest

from mlcourse.grading.cli import main
from mlcourse.grading.course_directory import Course
from mlcourse.grading.student import lessons_with_exercises, make_student_copy, solution_cells
from mlcourse.notebooks import NOTEBOOK_DIR, lesson_kernel_environment

sys.path.insert(0, str(Path(__file__).parent))
from grading_support import attacks, skip_without_sandbox  # noqa: E402
from grading_support.synthetic import answered_copy  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
LESSON = "90_grading_fixture"
CELL_TIMEOUT = 5  # seconds: the fixture's cells take milliseconds
SUBMISSION_TIMEOUT = 30.0  # seconds: a fixture submission takes 1-3 s (a fork bomb ~12 s)
FASTEST_FIRST = ("01_", "05_", "02_", "04_", "03_", "06_")  # lessons by grading time
HIDDEN_LINES = (
    'expect_equal("add(-5, 7)", add(-5, 7), 2)',
    'expect_close("mean([7])", mean([7]), 7.0)',
)


def gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test_cell(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def replace_source(nb, grade_id: str, source: str):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if gid(cell) == grade_id:
            cell.source = source
    return nb


# student -> (status, score or None, text the reason or notes must contain)
EXPECTED = {
    # honest edge cases
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
    "dies": (
        "graded",
        3,
        "ex1_add: the kernel died: the code ended the Python process (exit code 3)",
    ),
    "sleeps": ("ungradable", None, "timed out: grading took longer than 30 s in all"),
    "broken": ("ungradable", None, "not a readable notebook (NotJSONError"),  # corrupt JSON
    "misnamed": ("missing", None, f"no {LESSON}.ipynb in misnamed/ (found: Untitled.ipynb)"),
    "absent": ("missing", None, "nothing submitted"),  # on the roster, no folder
    # attacks (each answers ex1 correctly, then attacks)
    "victim": ("graded", 0, ""),  # the untouched copy another student tries to overwrite
    "cross-writer": ("graded", 2, ""),
    "solution-reader": ("graded", 2, ""),
    "check-patcher": ("graded", 2, ""),  # patches the checks, answers ex2 with 0
    "daemon": ("graded", 5, ""),
    # stopped at the process limit and the time limit; interrupted or restarted, by timing
    "fork-bomb": ("graded", 3, "ran past"),
    "memory-hog": ("graded", 5, ""),  # its allocation fails; add() was defined before it
    "loud": ("graded", 5, "ex1_add: output cut in the feedback"),
    "network": ("graded", 5, ""),
    "symlink": ("ungradable", None, "the notebook is a symbolic link"),
}
# Part of the well-behaved class, also graded by plain serial `nbgrader autograde`.
SERIAL = ("full", "empty", "partial", "hardcoded", "edited", "deleted-pair", "unmarked")


def save(folder: Path, student: str, nb) -> None:
    (folder / student).mkdir(parents=True)
    nbformat.write(nb, folder / student / f"{LESSON}.ipynb")


def write_honest_class(release, source, folder: Path) -> None:
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
    sleeps.cells[2:2] = [
        nbformat.v4.new_code_cell("import time\n\ntime.sleep(3)") for _ in range(11)
    ]
    save(folder, "sleeps", sleeps)  # each nap is within the cell limit; together they are not
    (folder / "broken").mkdir()
    (folder / "broken" / f"{LESSON}.ipynb").write_text('{"cells": [', encoding="utf-8")
    (folder / "misnamed").mkdir()
    nbformat.write(both, folder / "misnamed" / "Untitled.ipynb")
    (folder / "notes.txt").write_text("not a student", encoding="utf-8")
    (folder / "not a valid id").mkdir()


@dataclass
class Targets:
    """What the attacks aim at, on the host."""

    course: Path
    submissions: Path
    port: int
    marker: Path
    daemon_tag: str


def write_hostile_class(release, source, folder: Path, targets: Targets) -> None:
    ex2 = answered_copy(release, source, ["ex2_mean"])
    full = answered_copy(release, source, ["ex1_add", "ex2_mean"])
    course = Course(targets.course)
    save(folder, "victim", release)
    victim = course.notebook("submitted", LESSON, "victim")
    cross = attacks.CROSS_WRITE.format(
        stolen=nbformat.writes(full), victim=str(victim), victim_dir=str(folder / "victim")
    )
    save(folder, "cross-writer", replace_source(release, "ex1_add", cross))
    reader = attacks.READ_SOURCE.format(
        source=str(course.notebook("source", LESSON)), gradebook=str(course.root / "gradebook.db")
    )
    save(folder, "solution-reader", replace_source(release, "ex1_add", reader))
    save(folder, "check-patcher", replace_source(release, "ex1_add", attacks.PATCH_CHECKS.format()))
    daemon = attacks.DAEMON.format(
        gradebook=str(course.root / "gradebook.db"), marker=str(targets.marker)
    )
    daemon = daemon.replace(
        "import os, subprocess, sys",
        f"import os, subprocess, sys\nos.environ['DAEMON_TAG'] = {targets.daemon_tag!r}",
    )
    save(folder, "daemon", replace_source(ex2, "ex1_add", daemon))
    save(folder, "fork-bomb", replace_source(ex2, "ex1_add", attacks.FORK_BOMB.format()))
    save(folder, "memory-hog", replace_source(ex2, "ex1_add", attacks.MEMORY_HOG.format()))
    save(folder, "loud", replace_source(ex2, "ex1_add", attacks.BIG_OUTPUT.format()))
    save(
        folder, "network", replace_source(ex2, "ex1_add", attacks.NETWORK.format(port=targets.port))
    )
    (folder / "symlink").mkdir()
    (folder / "symlink" / f"{LESSON}.ipynb").symlink_to(folder / "full" / f"{LESSON}.ipynb")


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (symlinks by target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if relative.startswith(skip):
            continue
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def mlcourse_grade(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlcourse.grading", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class GradedClass:
    course: Course
    submissions: Path
    result: subprocess.CompletedProcess
    rows: dict[str, dict[str, str]]
    serial: Course
    before: dict[str, str]
    after: dict[str, str]
    course_before: dict[str, str]
    connections: list
    targets: Targets
    seconds: float


class _Listener:
    """A TCP server on the host's loopback that records every connection."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                self.connections.append(self.server.accept()[1])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> GradedClass:
    """Release the fixture lesson, write the class, then grade it with ``mlcourse-grade``
    (2 workers, sandboxed) while plain serial ``nbgrader autograde`` grades a copy."""
    skip_without_sandbox()
    root = tmp_path_factory.mktemp("grading")
    release_run = mlcourse_grade(
        "release", LESSON, "--course", str(root / "course"), "--lessons-dir", str(FIXTURES)
    )
    assert release_run.returncode == 0, release_run.stderr
    course = Course(root / "course")
    release = nbformat.read(course.notebook("release", LESSON), as_version=4)
    source = nbformat.read(course.notebook("source", LESSON), as_version=4)
    submissions = root / "submissions"
    listener = _Listener()
    targets = Targets(
        course.root, submissions, listener.port, root / "daemon-marker", uuid.uuid4().hex
    )
    write_honest_class(release, source, submissions)
    write_hostile_class(release, source, submissions, targets)
    (root / "roster.csv").write_text(
        "student_id,first_name,last_name,email,lms_user_id\n"
        "full,Ada,Lovelace,ada@example.org,101\nabsent,Alan,Turing,alan@example.org,102\n",
        encoding="utf-8",
    )
    assert main(["roster", str(root / "roster.csv"), "--course", str(course.root)]) == 0

    serial_root = root / "serial"
    shutil.copytree(course.root, serial_root)
    serial = Course(serial_root)
    for student in SERIAL:
        target = serial.notebook("submitted", LESSON, student)
        target.parent.mkdir(parents=True)
        shutil.copyfile(submissions / student / f"{LESSON}.ipynb", target)
    env = lesson_kernel_environment(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    plain = subprocess.Popen(
        [sys.executable, "-m", "nbgrader", "autograde", LESSON],
        cwd=serial_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    before = tree_digest(submissions)
    course_before = tree_digest(course.root)
    started = time.monotonic()
    try:
        result = mlcourse_grade(
            "grade",
            LESSON,
            str(submissions),
            "--course",
            str(course.root),
            "--workers",
            "2",
            "--timeout",
            str(CELL_TIMEOUT),
            "--submission-timeout",
            str(SUBMISSION_TIMEOUT),
        )
    finally:
        serial_log, _ = plain.communicate(timeout=600)
    seconds = time.monotonic() - started
    time.sleep(1.0)  # a daemon that survived would act now
    listener.close()
    assert plain.returncode == 0, serial_log[-3000:]
    assert result.returncode == 1, result.stdout + result.stderr  # some are ungradable
    with open(course.root / "reports" / f"{LESSON}.csv", newline="", encoding="utf-8") as handle:
        rows = {r["student"]: r for r in csv.DictReader(handle)}
    return GradedClass(
        course,
        submissions,
        result,
        rows,
        serial,
        before,
        tree_digest(submissions),
        course_before,
        listener.connections,
        targets,
        seconds,
    )


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_scores_what_an_honest_grader_gives(graded_class, student):
    status, score, text = EXPECTED[student]
    row = graded_class.rows[student]
    assert row["status"] == status, row
    assert row["score"] == ("" if score is None else f"{score:g}"), row
    assert row["max_score"] == "5"
    assert text in row["reason"] + " | " + row["notes"], row


def test_grading_prints_the_table_and_lists_what_could_not_be_graded(graded_class):
    out = graded_class.result.stdout
    assert "in sandboxes" in out and "WITHOUT" not in out
    assert "Could not grade 5:" in out
    assert "sleeps: ungradable: timed out" in out and "absent: missing: nothing submitted" in out
    assert "ignored notes.txt: not a folder" in out
    assert "ignored not a valid id: student id 'not a valid id' is not usable" in out
    assert f"Report: {graded_class.course.root / 'reports' / (LESSON + '.csv')}" in out


def test_gradebook_report_grades_csv_and_a_later_export_agree(graded_class, tmp_path):
    course = graded_class.course
    stored = course.scores(LESSON)
    for student, (status, score, _) in EXPECTED.items():
        if status == "graded":
            assert sum(stored[student].values()) == score, student
    assert stored["partial"] == {"ex1_add_tests": 2.0, "ex2_mean_tests": 0.0}
    assert stored["hardcoded"] == {"ex1_add_tests": 0.0, "ex2_mean_tests": 3.0}
    with open(course.root / "grades.csv", newline="", encoding="utf-8") as handle:
        grades = {r["student_id"]: r for r in csv.DictReader(handle) if r["lesson"] == LESSON}
    for student, (status, score, _) in EXPECTED.items():
        assert grades[student]["status"] == status, student
        assert grades[student]["score"] == ("" if score is None else f"{score:g}"), student
    assert grades["partial"][f"{LESSON}:ex1_add_tests"] == "2"
    assert grades["partial"][f"{LESSON}:ex2_mean_tests"] == "0"
    assert grades["full"]["email"] == "ada@example.org" and grades["absent"]["lms_user_id"] == "102"
    assert main(["export", "--course", str(course.root), "--to", str(tmp_path / "later.csv")]) == 0

    assert (tmp_path / "later.csv").read_bytes() == (course.root / "grades.csv").read_bytes()


def test_parallel_sandboxed_grades_equal_plain_serial_nbgrader(graded_class):
    serial = graded_class.serial.scores(LESSON)
    parallel = graded_class.course.scores(LESSON)
    assert sorted(serial) == sorted(SERIAL)
    for student in SERIAL:
        assert parallel[student] == serial[student], student


def test_tests_are_the_originals_even_when_edited_or_deleted(graded_class):
    source = nbformat.read(graded_class.course.notebook("source", LESSON), as_version=4)
    original = {gid(c): c.source for c in source.cells if is_test_cell(c)}
    assert "### BEGIN HIDDEN TESTS" in original["ex1_add_tests"]
    for student in ("edited", "deleted", "deleted-pair", "unmarked", "flipped", "empty"):
        graded = nbformat.read(
            graded_class.course.notebook("autograded", LESSON, student), as_version=4
        )
        assert {gid(c): c.source for c in graded.cells if is_test_cell(c)} == original, student


def test_grading_runs_lite_mode_on_the_cpu(graded_class):
    path = graded_class.course.notebook("autograded", LESSON, "not-lite")
    body = [c for c in nbformat.read(path, as_version=4).cells if c.get("id") == "fx-body"][0]
    text = "".join(o.get("text", "") for o in body.outputs)
    assert "lite mode: True" in text and "MLCOURSE_DEVICE: cpu" in text


def test_no_false_checksum_alarm_for_untouched_submissions(graded_class):
    assert graded_class.rows["empty"]["notes"] == "" and graded_class.rows["full"]["notes"] == ""
    for student in ("empty", "full", "partial"):
        log = (graded_class.course.root / "logs" / LESSON / f"{student}.log").read_text(
            encoding="utf-8"
        )
        assert "checksum" not in log.lower(), log


def test_feedback_never_shows_hidden_test_source(graded_class):
    course = graded_class.course
    pages = list((course.root / "feedback").rglob("*.html"))
    graded = [s for s, (status, _, _) in EXPECTED.items() if status == "graded"]
    assert sorted(p.parent.parent.name for p in pages) == sorted(graded)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for line in HIDDEN_LINES:
            assert line not in text and line.replace('"', "&quot;") not in text, page
        assert "BEGIN HIDDEN TESTS" not in text, page
    hardcoded = course.notebook("feedback", LESSON, "hardcoded").read_text(encoding="utf-8")
    assert "Score: 3.0 / 5.0" in hardcoded
    assert "hidden check add(-5, 7): expected 2, got 3." in hardcoded  # which, and why


def test_large_output_is_cut_in_the_feedback_and_flagged(graded_class):
    page = graded_class.course.notebook("feedback", LESSON, "loud")
    assert page.stat().st_size < 1_000_000
    assert "output cut by the grader" in page.read_text(encoding="utf-8")
    assert "printed text left out" in graded_class.rows["loud"]["notes"]


def test_attacks_reach_nothing_outside_their_sandbox(graded_class):
    course, targets = graded_class.course, graded_class.targets
    assert graded_class.after == graded_class.before, "the submissions folder changed"
    victim = course.notebook("submitted", LESSON, "victim")
    assert (
        victim.read_bytes()
        == (graded_class.submissions / "victim" / f"{LESSON}.ipynb").read_bytes()
    )
    for changed in ("source", "release", "nbgrader_config.py", "roster.csv"):
        before = {k: v for k, v in graded_class.course_before.items() if k.startswith(changed)}
        after = {k: v for k, v in tree_digest(course.root).items() if k.startswith(changed)}
        assert after == before, changed
    assert not targets.marker.exists(), "the daemon reached the host"
    assert graded_class.connections == [], "a submission connected to the host"

    def ex1_output(student: str) -> str:
        path = course.notebook("autograded", LESSON, student)
        cells = [c for c in nbformat.read(path, as_version=4).cells if gid(c) == "ex1_add"]
        return "".join(
            o.get("text", "") + o.get("ename", "") + o.get("evalue", "") for o in cells[0].outputs
        )

    outputs = {
        s: ex1_output(s) for s in ("solution-reader", "cross-writer", "memory-hog", "network")
    }
    # fmt: skip
    assert "found the solution in []" in outputs["solution-reader"]
    assert "WROTE" not in outputs["cross-writer"] and "could not plant" in outputs["cross-writer"]
    assert "MemoryError" in outputs["memory-hog"]
    assert "CONNECTED" not in outputs["network"] and "FETCHED" not in outputs["network"]


def test_no_process_outlives_grading_and_the_gradebook_stays_as_recorded(graded_class):
    tag = graded_class.targets.daemon_tag
    alive = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if env.get("DAEMON_TAG") == tag or "MLCOURSE_GRADING_RUN" in env:
            alive.append(process.info["cmdline"])
    assert alive == []
    with sqlite3.connect(graded_class.course.root / "gradebook.db") as db:
        manual = db.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[
            0
        ]
    assert manual == 0
    assert graded_class.course.scores(LESSON)["daemon"] == {
        "ex1_add_tests": 2.0,
        "ex2_mean_tests": 3.0,
    }


def exported(course: Course, fmt: str, path: Path) -> list[list[str]]:
    assert main(["export", "--course", str(course.root), "--format", fmt, "--to", str(path)]) == 0
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_lms_exports_never_turn_missing_or_ungradable_into_zero(graded_class, tmp_path):
    rows = exported(graded_class.course, "canvas", tmp_path / "c.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", LESSON]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "5"
    canvas = {r[0]: r for r in rows[2:]}
    assert canvas["Lovelace, Ada"][1:2] == ["101"] and canvas["Lovelace, Ada"][-1] == "5"
    assert [canvas[s][-1] for s in ("Turing, Alan", "broken", "empty")] == ["", "", "0"]
    moodle = exported(graded_class.course, "moodle", tmp_path / "m.csv")
    by_email = {r[3]: r for r in moodle[1:] if r[3]}
    assert by_email["ada@example.org"][-1] == "5" and by_email["alan@example.org"][-1] == ""


def test_grading_the_class_took(graded_class):
    """Not a speed target (benchmarks/grading.py measures that): a guard against a grading
    run that waits on something it should not."""
    assert graded_class.seconds < 240, graded_class.seconds


# --- the real lesson ------------------------------------------------------------------


def fastest_lesson_with_exercises() -> str | None:
    stems = [p.stem for p in lessons_with_exercises(NOTEBOOK_DIR) if p.stem[:2] != "00"]
    if not stems:
        return None
    rank = {prefix: i for i, prefix in enumerate(FASTEST_FIRST)}
    return min(stems, key=lambda s: (rank.get(s[:3], len(rank)), s))


def test_real_lesson_solution_full_marks_student_copy_zero(tmp_path, capsys):
    skip_without_sandbox()
    lesson = fastest_lesson_with_exercises()
    if lesson is None:
        pytest.skip("no lesson in notebooks/ has graded exercises yet")
    course_dir, folder = tmp_path / "course", tmp_path / "submissions"
    assert main(["release", lesson, "--course", str(course_dir)]) == 0
    assert "every test passes" in capsys.readouterr().out  # the solution, in the sandbox
    course = Course(course_dir)
    release = nbformat.read(course.notebook("release", lesson), as_version=4)
    source = nbformat.read(course.notebook("source", lesson), as_version=4)
    # (the released source, not notebooks/ again: a lesson may be edited meanwhile)
    assert release == make_student_copy(source), "the student copy is not what nbgrader releases"
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
    with open(course_dir / "grades.csv", newline="", encoding="utf-8") as handle:
        scores = {r["student_id"]: float(r["score"]) for r in csv.DictReader(handle)}
    assert scores == {"solved": course.max_score(lesson), "untouched": 0.0}, out
    graded = nbformat.read(course.notebook("autograded", lesson, "untouched"), as_version=4)
    failing = [
        gid(c) or c.get("id")
        for c in graded.cells
        if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    ]
    assert failing and all(
        name in {gid(c) for c in graded.cells if is_test_cell(c)} for name in failing
    )


# --- the command line -------------------------------------------------------------------


def test_cli_errors_name_the_bad_value(tmp_path, capsys):
    course_dir = tmp_path / "course"
    assert (
        main(["release", "99_nothing", "--course", str(course_dir), "--lessons-dir", str(FIXTURES)])
        == 2
    )
    assert (
        f"lesson='99_nothing' is not supported; expected one of '{LESSON}'"
        in capsys.readouterr().err
    )
    assert main(["grade", LESSON, "--course", str(tmp_path / "nowhere")]) == 2
    assert "course directory" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir)]) == 2
    assert f"lesson={LESSON!r} has not been released" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir), "--workers", "0"]) == 2
    assert "workers=0 is out of range; expected an integer in [1, inf)" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir), "--timeout", "soon"]) == 2
    assert "timeout must be an integer, got 'soon'" in capsys.readouterr().err
    assert main(["grade", LESSON, "--course", str(course_dir), "--memory-mb", "12"]) == 2
    assert "memory-mb=12 is out of range" in capsys.readouterr().err
    assert main(["export", "--course", str(course_dir), "--format", "excel"]) == 2
    assert "invalid choice: 'excel'" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "--course" in capsys.readouterr().err


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Course:
    """A course with the fixture lesson released (read by several tests)."""
    course = Course.create(tmp_path_factory.mktemp("released") / "course")
    course.release(LESSON, FIXTURES)
    return course


def test_grading_refuses_without_a_sandbox_unless_told(released, tmp_path, monkeypatch, capsys):
    """With no bwrap on PATH, grading stops before running anything; with
    --unsafe-no-sandbox it grades and says so everywhere."""
    from mlcourse.grading import sandbox

    release = nbformat.read(released.notebook("release", LESSON), as_version=4)
    source = nbformat.read(released.notebook("source", LESSON), as_version=4)
    save(tmp_path / "subs", "alice", answered_copy(release, source, ["ex1_add"]))
    command = ["grade", LESSON, str(tmp_path / "subs"), "--course", str(released.root)]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no bwrap
    sandbox.sandbox_problem.cache_clear()
    try:
        assert main(command) == 2
        refused = capsys.readouterr().err
        assert "cannot sandbox the submissions: bwrap was not found" in refused
        assert "--unsafe-no-sandbox" in refused
        assert not released.path("autograded", LESSON, "alice").exists()
        assert main([*command, "--unsafe-no-sandbox", "--no-feedback"]) == 0
    finally:
        sandbox.sandbox_problem.cache_clear()
    out = capsys.readouterr().out
    assert "WITHOUT a sandbox" in out and "alice    graded            2/5" in out
    report = (released.root / "reports" / f"{LESSON}.csv").read_text(encoding="utf-8")
    assert "graded without a sandbox" in report and ",2,5," in report


def test_one_command_at_a_time_per_course(released, capsys):
    with released.lock():
        code = main(["grade", LESSON, "--course", str(released.root)])
    assert code == 2
    assert "another mlcourse-grade command is working in" in capsys.readouterr().err


def test_a_course_is_never_created_over_other_files(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is not empty and is not a course directory"):
        Course.create(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_python_dash_m_runs_the_cli():
    result = mlcourse_grade("grade", "--help", timeout=120)
    assert result.returncode == 0
    for option in ("--submission-timeout", "--unsafe-no-sandbox", "--memory-mb", "--max-processes"):
        assert option in result.stdout


def test_release_is_the_student_copy_without_collapsed_answer_cells(released):
    released_nb = nbformat.read(released.notebook("release", LESSON), as_version=4)
    worked = nbformat.read(FIXTURES / f"{LESSON}.ipynb", as_version=4)
    assert released_nb == make_student_copy(worked)
    assert all("jupyter" not in c.metadata for c in solution_cells(released_nb))


def test_releasing_again_is_refused_when_the_lesson_changed(released, tmp_path):
    changed = tmp_path / "lessons"
    changed.mkdir()
    nb = nbformat.read(FIXTURES / f"{LESSON}.ipynb", as_version=4)
    nb.cells[0].source += "\n\nA new paragraph."
    nbformat.write(nb, changed / f"{LESSON}.ipynb")
    before = released.notebook("source", LESSON).read_bytes()
    with pytest.raises(FileExistsError, match="pass --force"):
        released.release(LESSON, changed)
    assert released.notebook("source", LESSON).read_bytes() == before
