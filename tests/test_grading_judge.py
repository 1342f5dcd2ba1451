"""The pieces that make a verdict independent of the submission: rewriting test cells,
carrying values out of the sandbox as plain data, and judging them outside.

No sandbox is started here: records a hostile kernel could send are written by hand.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mlcourse.grading.course_directory import Course
from mlcourse.grading.execution import parse_reply, runner_job, sanitize
from mlcourse.grading.instrument import InstrumentError, instrument
from mlcourse.grading.judge import REDACTED, judge_cell, judge_run, redact, verdict_outputs
from mlcourse.grading.lesson import LessonSpec, Reference, StoredCell, load_lesson
from mlcourse.grading.preprocessors import INJECTED_TAG, hide_hidden_tests, released_source
from mlcourse.grading.sandbox import Limits, Reply
from mlcourse.grading.values import Opaque, TorchDtype, decode, encode

FIXTURES = Path(__file__).parent / "fixtures" / "lessons"
LESSON = "90_grading_fixture"

TEST_SOURCE = """from mlcourse.checks import expect_close, expect_equal, expect_true

expect_equal("add(1, 2)", add(1, 2), 3)
expect_close("half", half(1.0), 0.5, atol=1e-9)
### BEGIN HIDDEN TESTS
for n in (2, 4):
    expect_equal(f"add({n}, {n})", add(n, n), 2 * n, hint="add the two")
expect_true(add(0, 0) == 0, "add(0, 0) is 0")
expect_close("the lesson's own number", half(1.0), measured)
assert add(1, 1) == 2, "one and one"
### END HIDDEN TESTS
print("tests passed")
"""


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -(10**30),
        0.1,
        float("inf"),
        -0.0,
        complex(1, -2),
        "text",
        b"\x00\xff",
        [1, (2, 3)],
        {"a": [1.5], 2: None},
        {1, 2},
        frozenset({"x"}),
        Path("/a/b"),
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.int64(8),
        np.float16(0.5),
        np.array([True, False]),
        np.dtype("int32"),
        torch.tensor([1.0, 2.0]),
        torch.tensor([[1, 2]], dtype=torch.int8),
        torch.float64,
        torch.Size([2, 3]),
        torch.tensor([1.5], dtype=torch.bfloat16),
    ],
)
def test_values_come_back_equal_and_of_the_same_kind(value):
    back = decode(encode(value))
    if isinstance(value, np.ndarray):
        assert type(back) is np.ndarray and back.dtype == value.dtype and (back == value).all()
    elif isinstance(value, torch.Tensor):  # as numpy, without importing torch in the grader
        assert type(back) is np.ndarray and (back == value.float().numpy()).all()
        assert back.shape == tuple(value.shape)
    elif isinstance(value, torch.dtype):
        assert back == TorchDtype(str(value).removeprefix("torch.")) and repr(back) == str(value)
    elif isinstance(value, torch.Size):
        assert back == value and type(back) is tuple
    elif isinstance(value, Path):
        assert str(back) == str(value)
    else:
        assert back == value and type(back) is type(value)


def test_nan_and_hostile_objects_are_carried_safely():
    assert math.isnan(decode(encode(float("nan"))))

    class Evil:
        def __repr__(self):
            raise RuntimeError("no")

        def __eq__(self, other):
            return True  # would pass any expect_equal in the student's process

    carried = decode(encode(Evil()))
    assert isinstance(carried, Opaque) and carried != 3 and carried != carried.text
    nested: list = []
    nested.append(nested)
    inner = decode(encode(nested))
    while isinstance(inner, list):
        inner = inner[0]
    assert isinstance(inner, Opaque) and inner.text == "<nested too deeply>"
    assert isinstance(decode(encode(2**20000)), Opaque)  # too large to carry
    assert isinstance(decode(encode("x" * (5 * 2**20))), Opaque)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"t": "pickle", "v": ""}, "unknown value tag 'pickle'"),
        ({"t": "int", "v": "1e5"}, "malformed recorded value: int"),
        (
            {"t": "ndarray", "dtype": "<f8", "shape": [3], "v": "AAAA"},
            "malformed recorded value: array size",
        ),
        ({"t": "ndarray", "dtype": "|O", "shape": [1], "v": ""}, "array dtype"),
        (
            {"t": "tensor", "dtype": "<f4", "shape": [0], "v": "", "torch_dtype": "../os"},
            "tensor dtype",
        ),
        ({"t": "set", "v": [{"t": "list", "v": []}]}, "set of unhashable values"),
        ("not a dict", "not a tagged value"),
    ],
)
def test_malformed_values_are_refused_with_a_reason(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(data)


# --- rewriting test cells ---------------------------------------------------------------


def test_student_version_records_only_labels_and_values_under_test():
    text, sites = instrument(TEST_SOURCE, grade_id="t", mode="student")
    assert "0.5" not in text and "2 * n" not in text and "atol" not in text and "hint" not in text
    assert "'got': add(1, 2)" in text and "'got': half(1.0)" in text
    assert "'condition': add(1, 1) == 2" in text and "one and one" not in text
    assert text.rstrip().endswith("__mlcourse_cell_end__('t')")
    assert [s.kind for s in sites] == [
        "expect_equal",
        "expect_close",
        "expect_equal",
        "expect_true",
        "expect_close",
        "assert",
    ]
    assert [s.hidden for s in sites] == [False, False, True, True, True, True]
    assert sites[4].outside == ("measured",) and sites[2].outside == ()
    assert sites[5].label == "one and one"


def test_reference_version_records_everything_and_names_outside_state():
    text, _ = instrument(TEST_SOURCE, grade_id="t", mode="reference")
    assert "'expected': 0.5, 'atol': 1e-09" in text and "'hint': 'add the two'" in text
    assert "'__outside__': {'measured': measured}" in text
    full, _ = instrument(TEST_SOURCE, grade_id="t", mode="student", state_sites=[4])
    assert "'expected': measured" in full and "'expected': 0.5" not in full


def test_cells_the_grader_cannot_take_apart_are_refused():
    with pytest.raises(InstrumentError, match="no \\* or \\*\\*"):
        instrument("expect_equal(*args)", grade_id="t", mode="student")
    with pytest.raises(InstrumentError, match="missing a required argument"):
        instrument('expect_equal("x", 1)', grade_id="t", mode="student")
    with pytest.raises(InstrumentError, match="not valid Python"):
        instrument("def (:", grade_id="t", mode="student")
    text, _ = instrument("%time x = 1\nexpect_true(x == 1, 'x')", grade_id="t", mode="student")
    assert "run_line_magic" in text  # IPython syntax is turned into Python first


# --- judging ----------------------------------------------------------------------------


def make_spec(source: str = TEST_SOURCE) -> LessonSpec:
    cells = {"t": StoredCell("code", source, "c", True, 2.0)}
    sites = {"t": instrument(source, grade_id="t", mode="reference")[1]}
    release = new_notebook(cells=[])
    hidden = ['expect_true(add(0, 0) == 0, "add(0, 0) is 0")']
    return LessonSpec(LESSON, cells, ["t"], release, "", {}, sites, hidden)


def rec(site, kind, **args):
    return {
        "cell": "t",
        "site": site,
        "kind": kind,
        "args": {k: encode(v) for k, v in args.items()},
    }


def reference_records(measured=0.5):
    return [
        rec(0, "expect_equal", name="add(1, 2)", got=3, expected=3),
        rec(1, "expect_close", name="half", got=0.5, expected=0.5, atol=1e-9),
        rec(2, "expect_equal", name="add(2, 2)", got=4, expected=4, hint="add the two"),
        rec(2, "expect_equal", name="add(4, 4)", got=8, expected=8, hint="add the two"),
        rec(3, "expect_true", condition=True, message="add(0, 0) is 0"),
        {
            **rec(4, "expect_close", name="the lesson's own number", got=0.5, expected=measured),
            "outside": {"measured": "data"},
        },
        rec(5, "assert", condition=True),
    ]


def student_run(records, status="ok", end=True, outputs=()):
    from mlcourse.grading.execution import CellResult

    extra = [{"cell": "t", "end": True}] if end else []
    return CellResult(status, list(outputs), records + extra)


def judged(student_records, **kwargs):
    spec = make_spec()
    spec.reference = Reference("k", {"t": reference_records()}, {"t": True}, {"t": [4]})
    return judge_cell(spec, "t", student_run(student_records, **kwargs))


def honest(add=lambda a, b: a + b, half=lambda x: x / 2, measured=0.5):
    return [
        rec(0, "expect_equal", name="add(1, 2)", got=add(1, 2)),
        rec(1, "expect_close", name="half", got=half(1.0)),
        rec(2, "expect_equal", name="add(2, 2)", got=add(2, 2)),
        rec(2, "expect_equal", name="add(4, 4)", got=add(4, 4)),
        rec(3, "expect_true", condition=add(0, 0) == 0),
        rec(4, "expect_close", name="the lesson's own number", got=half(1.0), expected=measured),
        rec(5, "assert", condition=add(1, 1) == 2),
    ]


def test_a_right_answer_passes_and_a_wrong_one_fails_with_the_trusted_message():
    verdict = judged(honest())
    assert verdict.passed and verdict.points == 2.0 and verdict.review == []
    wrong = judged(honest(add=lambda a, b: a * b))
    assert wrong.points == 0.0
    texts = [line.text() for line in wrong.lines if not line.passed]
    assert texts[0] == "\u2718 add(1, 2): expected 3, got 2."
    assert "\u2718 hidden check add(4, 4): expected 8, got 16. Hint: add the two" in texts
    assert any("hidden check one and one: the assertion is false" in t for t in texts)


def test_values_a_submission_forges_or_mislabels_gain_nothing():
    """A replaced recorder can report values, not verdicts: it must still report the
    right values, in the solution's order, and the cell must have run to its end."""
    forged = honest(add=lambda a, b: 3)  # "add(1, 2) is 3" for every check
    assert judged(forged).points == 0.0
    swapped = honest()
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert "ran differently" in judged(swapped).lines[0].message
    assert judged(honest()[:3]).points == 0.0  # checks missing
    assert "did not run" in judged(honest()[:3]).problem
    extra = judged(honest() + [rec(0, "expect_equal", name="add(1, 2)", got=3)])
    assert "more checks than the solution's" in extra.problem
    unfinished = judged(
        honest(),
        end=False,
        outputs=[{"output_type": "error", "ename": "KeyError", "evalue": "x", "traceback": []}],
    )
    assert (
        unfinished.points == 0.0 and unfinished.problem == "the test cell stopped with KeyError: x"
    )
    truthy = honest()
    truthy[4] = rec(
        3, "expect_true", condition=[0]
    )  # a truthy list where a bool belongs still counts as true
    assert judged(truthy).points == 2.0
    broken = honest()
    broken[1] = {**broken[1], "args": {"name": encode("half"), "got": {"t": "pickle", "v": "..."}}}
    assert "could not be read" in judged(broken).lines[1].message


def test_a_check_on_the_lessons_own_state_is_judged_on_this_run_and_flagged():
    verdict = judged(honest(measured=0.75, half=lambda x: 0.75 if x == 1.0 else x / 2))
    lines = {line.label: line for line in verdict.lines}
    assert lines["the lesson's own number"].passed
    assert not lines["half"].passed  # half(1.0) = 0.75 is still wrong against the literal 0.5
    assert verdict.review and "depends on measured" in verdict.review[0]


def test_verdicts_show_hidden_failures_without_their_source():
    verdict = judged(honest(add=lambda a, b: a - b + (a == b == 0) * 0))
    outputs = verdict_outputs(verdict)
    assert outputs[-1]["output_type"] == "error" and outputs[-1]["ename"] == "TestFailed"
    shown = "".join(o.get("text", "") + " ".join(o.get("traceback", [])) for o in outputs)
    assert "hidden check add(2, 2)" in shown and "2 * n" not in shown
    assert (
        redact('got: expect_true(add(0, 0) == 0, "add(0, 0) is 0")', make_spec().hidden_lines)
        == f"got: {REDACTED}"
    )


def test_feedback_source_keeps_visible_tests_only():
    shown = hide_hidden_tests(TEST_SOURCE)
    assert 'expect_close("half", half(1.0), 0.5, atol=1e-9)' in shown and "2 * n" not in shown
    assert "hidden tests" in shown and shown.endswith('print("tests passed")\n')
    assert (
        released_source(TEST_SOURCE)
        == "\n".join(line for line in shown.splitlines() if "hidden tests" not in line) + "\n"
    )


# --- the notebook that runs -------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_spec(tmp_path_factory) -> LessonSpec:
    course = Course.create(tmp_path_factory.mktemp("judge") / "course")
    course.release(LESSON, FIXTURES)
    return load_lesson(course, LESSON)


def test_plain_nbgrader_feedback_in_a_course_hides_hidden_tests(tmp_path):
    from mlcourse.grading.config import FEEDBACK_PREPROCESSORS
    from mlcourse.grading.preprocessors import HideHiddenTests

    course = Course.create(tmp_path / "course")  # its nbgrader_config.py calls configure(c)
    assert HideHiddenTests in FEEDBACK_PREPROCESSORS
    assert course.config.GenerateFeedback.preprocessors == FEEDBACK_PREPROCESSORS


def test_sanitize_restores_tests_and_drops_metadata_a_student_added(fixture_spec):
    release = fixture_spec.release
    hostile = copy.deepcopy(release)
    tests = [c for c in hostile.cells if c.metadata.get("nbgrader", {}).get("grade")]
    tests[0].source = "print('I pass')"
    tests[1].cell_type = "markdown"  # a test cell turned into text
    del tests[1]["outputs"], tests[1]["execution_count"]
    fake = new_code_cell(
        "score = 100", metadata={"nbgrader": {"grade_id": "bonus", "grade": True, "points": 99}}
    )
    duplicate = copy.deepcopy(tests[0])
    hostile.cells += [fake, duplicate, new_markdown_cell("note")]
    run = sanitize(fixture_spec, hostile)
    stored = {g: c.source for g, c in fixture_spec.cells.items()}
    graded = [c for c in run.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata.nbgrader.grade_id for c in graded] == ["ex1_add_tests", "ex2_mean_tests"]
    assert all(
        c.source == stored[c.metadata.nbgrader.grade_id] and c.cell_type == "code" for c in graded
    )
    assert "nbgrader" not in run.cells[-3].metadata and "nbgrader" not in run.cells[-2].metadata
    assert any(INJECTED_TAG in c.metadata.get("tags", []) for c in run.cells)
    assert hostile.cells[-3].metadata["nbgrader"]["grade_id"] == "bonus"  # input untouched


def test_runner_job_holds_no_expected_values_and_no_solution(fixture_spec):
    spec = copy.deepcopy(fixture_spec)
    spec.reference = Reference("k", {}, {}, {})
    job = runner_job(
        spec,
        sanitize(spec, spec.release),
        mode="student",
        cell_timeout=5,
        limits=Limits(),
        handed_in="{}",
    )
    everything = repr(job)
    assert "return a + b" not in everything and "sum(values) / len(values)" not in everything
    assert "7.0" not in everything and "'got': add(-5, 7)" in everything
    assert job["limits"]["processes"] == 256 and job["output"]["text_bytes"] == 100 * 1024


def test_malformed_runner_results_are_refused():
    bad = Reply(
        {
            "ok": True,
            "kernel": "alive",
            "cells": [{"index": "0", "status": "ok", "outputs": [], "records": []}],
        }
    )
    assert parse_reply(bad, 5, 20).problem == "the sandbox returned a malformed result"
    odd = Reply(
        {
            "ok": True,
            "kernel": "alive",
            "cells": [
                {
                    "index": 0,
                    "status": "ok",
                    "records": [],
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": 5},
                        {"output_type": "weird"},
                    ],
                }
            ],
        }
    )
    assert parse_reply(odd, 5, 20).cells[0].outputs == []
    assert "timed out" in parse_reply(Reply(None, timed_out=True), 5, 20).problem


def test_judged_notebook_scores_the_same_in_nbgrader(fixture_spec):
    """The graded notebook's test cells carry the verdict as outputs, so nbgrader's own
    determine_grade (used when the scores are recorded) gives the judge's points."""
    from nbgrader.utils import determine_grade

    from mlcourse.grading.execution import CellResult, RunResult

    spec = copy.deepcopy(fixture_spec)
    spec.reference = Reference(
        "k",
        {
            "ex1_add_tests": [
                rec(0, "expect_equal", name="add(1, 2)", got=3, expected=3)
                | {"cell": "ex1_add_tests"},
                rec(1, "expect_equal", name="add(-5, 7)", got=2, expected=2)
                | {"cell": "ex1_add_tests"},
            ],
            "ex2_mean_tests": [],
        },
        {"ex1_add_tests": True, "ex2_mean_tests": True},
    )
    notebook = sanitize(spec, spec.release)
    index = {
        c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(notebook.cells)
    }
    mine = [
        rec(0, "expect_equal", name="add(1, 2)", got=3) | {"cell": "ex1_add_tests"},
        rec(1, "expect_equal", name="add(-5, 7)", got=-2) | {"cell": "ex1_add_tests"},
        {"cell": "ex1_add_tests", "end": True},
    ]
    run = RunResult(
        {
            index["ex1_add_tests"]: CellResult("ok", [], mine),
            index["ex2_mean_tests"]: CellResult(
                "ok", [], [{"cell": "ex2_mean_tests", "end": True}]
            ),
        }
    )
    judgement = judge_run(spec, notebook, run)
    assert judgement.scores == {"ex1_add_tests": 0.0, "ex2_mean_tests": 3.0}
    for cell in judgement.notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert determine_grade(cell)[0] == judgement.scores[cell.metadata.nbgrader.grade_id]


def test_plain_nbgrader_in_a_course_warns_only_about_changed_tests(tmp_path):
    """`nbgrader autograde` in a course directory (formgrader users) uses the course's
    quiet OverwriteCells: no checksum alarm for the untouched copy, one for an edit."""
    course = Course.create(tmp_path / "course")
    course.release(LESSON, FIXTURES)
    release = nbformat.read(course.notebook("release", LESSON), as_version=4)
    edited = copy.deepcopy(release)
    [c for c in edited.cells if c.metadata.get("nbgrader", {}).get("grade")][
        0
    ].source += "\n# edited"
    for student, nb in {"untouched": release, "tinkerer": edited}.items():
        target = course.notebook("submitted", LESSON, student)
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "autograde", LESSON],
        cwd=course.root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stdout + result.stderr  # one part per student, in nbgrader's order
    parts = re.split(r"Creating/updating student with ID '([^']+)'", log)[1:]
    logs = dict(zip(parts[::2], parts[1::2], strict=True))
    assert "checksum" not in logs["untouched"].lower()
    assert "Attribute 'checksum' for cell ex1_add_tests has changed" in logs["tinkerer"]
