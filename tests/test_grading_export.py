"""Rosters, statuses and exports: what an LMS receives, and that nothing becomes a silent 0.

The gradebook here is filled through nbgrader's own API (no notebook runs), so every
combination of status can be set up directly.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from mlcourse.grading.course_directory import Course, nbgrader_environment
from mlcourse.grading.export import export, grade_rows
from mlcourse.grading.report import GRADED, MISSING, UNGRADABLE, Outcome, read_report, write_report
from mlcourse.grading.roster import install_roster, parse_roster, read_roster

# nbgrader's add_submission trips an SQLAlchemy 2 warning (as in nbgrader's own autograde)
pytestmark = pytest.mark.filterwarnings("ignore:Object of type:sqlalchemy.exc.SAWarning")
FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
LESSON = "90_grading_fixture"
ROSTER = (
    "student_id,first_name,last_name,email,lms_user_id,sis_user_id,sis_login_id,section,id_number\n"
    "alice,Alice,Liddell,alice@example.org,11,S1,alice1,A,ID-1\n"
    "bob,Bob,=cmd|' /C calc'!A0,bob@example.org,12,S2,bob2,A,ID-2\n"
    "carol,Carol,Ann,carol@example.org,13,S3,carol3,B,ID-3\n"
    "dave,Dave,Doe,dave@example.org,14,S4,dave4,B,ID-4\n"
)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    """A course where alice was graded (2 + 3), bob graded late, carol ungradable (with an
    earlier score in the gradebook), and dave never handed anything in. Tests that change
    it make their own copy (:func:`own_copy`)."""
    tmp_path = tmp_path_factory.mktemp("export")
    course = Course.create(tmp_path / "course")
    course.release(LESSON, FIXTURES)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    install_roster(course, tmp_path / "roster.csv")
    with nbgrader_environment(), Gradebook(course.db_url, course.coursedir.course_id) as gb:
        assignment = gb.find_assignment(LESSON)
        assignment.duedate = datetime(2025, 1, 1)
        for student, scores, hours_late in (
            ("alice", (2, 3), -1),
            ("bob", (2, 0), 1),
            ("carol", (0, 3), -1),
        ):
            stamp = assignment.duedate + timedelta(hours=hours_late)
            submission = gb.add_submission(LESSON, student, timestamp=stamp)
            notebook = submission.notebooks[0]
            for grade in notebook.grades:
                grade.auto_score = scores[0] if grade.name == "ex1_add_tests" else scores[1]
            if hours_late > 0:
                notebook.late_submission_penalty = 1.0
        gb.db.commit()
    outcomes = [
        Outcome("alice", GRADED, 5.0, 5.0, questions={"ex1_add_tests": 2.0, "ex2_mean_tests": 3.0}),
        Outcome("bob", GRADED, 2.0, 5.0),
        Outcome(
            "carol",
            UNGRADABLE,
            None,
            5.0,
            "=the kernel died",
            ["the gradebook keeps an earlier score of 3"],
        ),
        Outcome("dave", MISSING, None, 5.0, "nothing submitted"),
    ]
    write_report(
        course.root / "reports" / f"{LESSON}.csv",
        outcomes,
        ["ex1_add_tests", "ex2_mean_tests"],
        sandboxed=True,
    )
    return course


def test_statuses_and_scores_join_gradebook_report_and_roster(course):
    rows = {r.student.student_id: r for r in grade_rows(course)}
    assert (rows["alice"].status, rows["alice"].score) == (GRADED, 5.0)
    assert rows["alice"].questions == {"ex1_add_tests": 2.0, "ex2_mean_tests": 3.0}
    assert (
        rows["bob"].status == "late"
        and rows["bob"].score == 1.0
        and rows["bob"].late_penalty == 1.0
    )
    assert (rows["carol"].status, rows["carol"].score) == (UNGRADABLE, None)
    assert "earlier score of 3" in "; ".join(rows["carol"].notes)
    assert (rows["dave"].status, rows["dave"].score, rows["dave"].reason) == (
        MISSING,
        None,
        "nothing submitted",
    )
    assert rows["alice"].student.email == "alice@example.org"


def test_csv_export_has_a_status_per_question_scores_and_no_formulas(course):
    path, warnings = export(course)
    assert path == course.root / "grades.csv" and warnings == []
    rows = read_csv(path)
    header = rows[0]
    assert ",".join(header[:13]) == (
        "student_id,first_name,last_name,email,lms_user_id,lesson,status,reason,score,"
        "max_score,late_penalty,submitted_at,notes"
    )
    assert header[13:] == [f"{LESSON}:ex1_add_tests", f"{LESSON}:ex2_mean_tests"]
    table = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert table["alice"]["score"] == "5" and table["alice"][f"{LESSON}:ex2_mean_tests"] == "3"
    assert table["carol"]["score"] == "" and table["carol"]["reason"] == "'=the kernel died"
    assert table["dave"]["score"] == "" and table["dave"]["status"] == "missing"
    assert table["bob"]["last_name"].startswith("'=")  # a roster formula is quoted, not run


def test_canvas_export_follows_canvas_gradebook_layout(course):
    path, warnings = export(course, format="canvas")
    rows = read_csv(path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", LESSON]
    assert rows[1] == ["    Points Possible", "", "", "", "", "5"]
    body = {r[1]: r for r in rows[2:]}
    assert body["11"] == ["Liddell, Alice", "11", "S1", "alice1", "A", "5"]
    assert body["13"][-1] == "" and body["14"][-1] == ""  # ungradable, missing: no grade
    assert body["12"][-1] == "1"  # late, after nbgrader's penalty
    assert warnings == []


def test_moodle_export_matches_users_by_email_or_id_number(course):
    path, _ = export(course, format="moodle")
    rows = read_csv(path)
    assert rows[0] == ["First name", "Last name", "ID number", "Email address", LESSON]
    body = {r[3]: r for r in rows[1:]}
    assert body["alice@example.org"] == ["Alice", "Liddell", "ID-1", "alice@example.org", "5"]
    assert body["dave@example.org"][-1] == ""


def test_students_an_lms_cannot_match_are_named(tmp_path):
    course = Course.create(tmp_path / "course")
    course.release(LESSON, FIXTURES)
    write_report(
        course.root / "reports" / f"{LESSON}.csv",
        [Outcome("eve", MISSING, None, 5.0, "nothing submitted")],
        [],
        sandboxed=True,
    )
    _, warnings = export(course, format="canvas")
    assert warnings == ["no Canvas ID or SIS id for eve: add them to the roster"]
    _, warnings = export(course, format="moodle")
    assert warnings == ["no email or ID number for eve: add them to the roster"]


def test_roster_problems_are_reported_together():
    text = "student_id,emial,section\nalice,a@x,1\nalice,b@x,1\n../etc,c@x,1\n,,\nbob\n"
    with pytest.raises(ValueError) as error:
        parse_roster(io.StringIO(text))
    message = str(error.value)
    assert "unknown column 'emial' (did you mean 'email'?)" in message
    text = "student_id,email\nalice,a@x\nalice,b@x\n../etc,c@x\nbob,nobody\ncarol\n"
    with pytest.raises(ValueError) as error:
        parse_roster(io.StringIO(text))
    message = str(error.value)
    assert "line 3: student_id 'alice' appears twice" in message
    assert "line 4: student id '../etc' is not usable" in message
    assert "line 5: email 'nobody' has no '@'" in message
    assert "line 6 has 1 fields, the header 2" in message
    with pytest.raises(ValueError, match="the column 'student_id' is required"):
        parse_roster(io.StringIO("email\na@x\n"))


def own_copy(course: Course, tmp_path: Path) -> Course:
    shutil.copytree(course.root, tmp_path / "mine")
    return Course(tmp_path / "mine")


def test_roster_goes_into_the_course_and_the_gradebook(course, tmp_path):
    course = own_copy(course, tmp_path)
    with nbgrader_environment(), course.gradebook() as gb:
        alice = gb.find_student("alice")
        assert (alice.first_name, alice.last_name, alice.email, alice.lms_user_id) == (
            "Alice",
            "Liddell",
            "alice@example.org",
            "11",
        )
    other = tmp_path / "other.csv"
    other.write_text("\ufeffstudent_id\nzoe\n", encoding="utf-8")  # a spreadsheet's byte-order mark
    assert list(read_roster(other)) == ["zoe"]
    with pytest.raises(FileExistsError, match="holds a different roster; pass --force"):
        install_roster(course, other)
    install_roster(course, other, force=True)
    assert (
        (course.root / "roster.csv").read_text(encoding="utf-8")
        == "student_id,first_name,last_name,email,lms_user_id,sis_user_id,sis_login_id,section,id_number\nzoe,,,,,,,,\n"
    )


def test_reports_are_checked_when_read(tmp_path):
    (tmp_path / "r.csv").write_text("name,score\nalice,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not a grading report"):
        read_report(tmp_path / "r.csv")
    write_report(tmp_path / "ok.csv", [Outcome("alice", GRADED, 1.0, 2.0)], [], sandboxed=True)
    text = (tmp_path / "ok.csv").read_text(encoding="utf-8").replace("graded", "perfect")
    (tmp_path / "ok.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="status 'perfect' of 'alice' is not one of"):
        read_report(tmp_path / "ok.csv")
