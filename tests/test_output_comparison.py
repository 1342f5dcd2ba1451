"""The output comparison forgives last-digit drift on another CPU and catches real changes.

Unit tests of :mod:`mlcourse.lesson_outputs`, then the same two properties on the committed
lessons themselves: every published accuracy-like result moved by three points fails the
tolerant comparison, and every published value moved in its last printed digit passes it.
"""

from __future__ import annotations

import copy
import re

import nbformat
import pytest

from mlcourse.lesson_outputs import (
    NUMBER,
    Tolerance,
    cell_tolerance,
    compare_cell,
    compare_notebooks,
    compare_numbers,
    compare_text,
    lesson_tolerance,
)
from mlcourse.notebooks import lesson_paths
from mlcourse.results import METADATA_KEY as RESULTS_KEY

TIGHT = Tolerance()
ACCURACY = Tolerance(atol=0.01)


def test_last_digit_drift_passes_and_a_moved_result_fails():
    assert compare_text("val accuracy 0.848\n", "val accuracy 0.849\n", TIGHT) is None
    assert compare_text("val accuracy 0.848\n", "val accuracy 0.872\n", ACCURACY) is not None
    assert compare_text("momentum: 2.4e-07", "momentum: 1.8e-07", Tolerance(atol=1e-6)) is None
    assert compare_text("momentum: 2.4e-07", "momentum: 1.8e-07", TIGHT) is not None


def test_exact_mode_wants_identical_text_after_masking_measured_values():
    assert compare_text("took 1.5 s, ~3.1x faster", "took 2.7 s, ~2.4x faster", None) is None
    assert compare_text("accuracy 0.848", "accuracy 0.849", None) is not None


def test_words_layout_and_counts_are_exact():
    assert "text differs" in compare_text("verdict: real", "verdict: not established", ACCURACY)
    assert compare_text("31 of 100", "32 of 100", ACCURACY) is not None
    assert compare_text("31 of 100", "32 of 100", Tolerance(counts=1)) is None
    assert "lines" in compare_text("a 0.5\nb 0.5", "a 0.5", ACCURACY)
    # column alignment is not a result
    assert compare_text("lr   0.10  0.912", "lr 0.10 0.912", TIGHT) is None


def test_numbers_are_told_apart_from_words_and_versions():
    assert NUMBER.findall("fp32 x0 torch 2.14.1 ran 3 epochs, loss 1e-3, acc 0.85.") == [
        "3",
        "1e-3",
        "0.85",
    ]
    assert NUMBER.findall("[-0.5, +0.25] 10% p=0.019") == ["-0.5", "+0.25", "10", "0.019"]


def test_one_unit_in_the_last_printed_digit_is_always_allowed():
    assert compare_numbers("0.8476", "0.8477", TIGHT) is None
    assert compare_numbers("0.8476", "0.8478", TIGHT) is not None
    assert compare_numbers("2.4e-07", "2.5e-07", TIGHT) is None


def test_line_rules_give_one_cell_two_tolerances():
    tolerance = Tolerance.from_metadata({"atol": 0.01, "lines": {r"max diff": {"atol": 1e-6}}})
    committed = "max diff 2.4e-07\naccuracy 0.848"
    assert compare_text(committed, "max diff 9.0e-07\naccuracy 0.851", tolerance) is None
    assert compare_text(committed, "max diff 3.0e-06\naccuracy 0.851", tolerance) is not None
    assert compare_text(committed, "max diff 2.4e-07\naccuracy 0.872", tolerance) is not None


def test_bit_dependent_values_are_compared_only_under_the_same_fingerprint():
    tolerance = Tolerance(bit_dependent=(r"sha256 [0-9a-f]+",))
    committed, new = "weights sha256 c71e2c47fb91", "weights sha256 0ab45a5ea80d"
    assert compare_text(committed, new, tolerance) is None
    assert compare_text(committed, new, None) is not None  # same fingerprint: exact


def test_bad_declarations_are_refused_with_the_accepted_keys():
    with pytest.raises(ValueError, match="unknown tolerance key 'rtoll'.*'rtol'"):
        Tolerance.from_metadata({"rtoll": 0.1})
    with pytest.raises(ValueError, match="atol=-1"):
        Tolerance.from_metadata({"atol": -1})
    with pytest.raises(ValueError, match="counts=0.5"):
        Tolerance.from_metadata({"counts": 0.5})


def _notebook(*texts: str, compare: dict | None = None) -> nbformat.NotebookNode:
    cells = []
    for text in texts:
        cell = nbformat.v4.new_code_cell("print(...)", execution_count=len(cells) + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    if compare:
        nb.metadata["mlcourse"] = {"compare": compare}
    return nb


def test_stream_chunks_are_joined_before_comparing():
    committed = _notebook("loss 0.25\nacc 0.9\n")
    executed = copy.deepcopy(committed)
    executed.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="loss 0.25\n"),
        nbformat.v4.new_output("stream", name="stdout", text="acc 0.9\n"),
    ]
    assert compare_notebooks(committed, executed, exact=True) == []


def test_a_table_column_can_have_its_own_tolerance():
    """p-values after an interval move freely (their verdict is words, compared exactly);
    the effect and the interval on the same line keep the lesson's tolerance."""
    tolerance = Tolerance.from_metadata(
        {"atol": 0.01, "numbers": {r"\]\s+$": {"atol": 0.05, "rtol": 1.0}}}
    )
    row = "AdamW +0.006 [-0.006, +0.018] 0.255 not established"
    assert compare_text(row, row.replace("0.255", "0.200"), tolerance) is None
    assert compare_text(row, row.replace("+0.006", "+0.036"), tolerance) is not None
    assert compare_text(row, row.replace("+0.018", "+0.048"), tolerance) is not None
    assert compare_text(row, row.replace("not established", "established"), tolerance)


def test_whole_notebooks_report_the_cell_that_moved():
    committed = _notebook("epoch 1 0.5\n", "accuracy 0.848\n", compare={"atol": 0.01})
    drifted = _notebook("epoch 1 0.5\n", "accuracy 0.850\n")
    regressed = _notebook("epoch 1 0.5\n", "accuracy 0.812\n")
    assert compare_notebooks(committed, drifted, exact=False) == []
    [mismatch] = compare_notebooks(committed, regressed, exact=False)
    assert mismatch.cell == 1 and "0.812 differs from the committed 0.848" in mismatch.message


# --- the same properties on the committed lessons --------------------------------------------

LESSONS = {p.stem: nbformat.read(p, as_version=4) for p in lesson_paths()}


def published_cells(nb):
    """(index, cell) of cells whose output carries published results."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if RESULTS_KEY in output.get("metadata", {}):
                yield index, cell, output


def _with_text(cell, output, old_line, new_line):
    changed = copy.deepcopy(cell)
    for out in changed.outputs:
        if out.get("metadata", {}).get(RESULTS_KEY) == output["metadata"][RESULTS_KEY]:
            out["data"]["text/plain"] = out["data"]["text/plain"].replace(old_line, new_line)
    return changed


@pytest.mark.parametrize("stem", list(LESSONS))
def test_a_published_accuracy_moved_by_three_points_fails_on_another_cpu(stem):
    nb = LESSONS[stem]
    lesson = lesson_tolerance(nb)
    moved = 0
    for index, cell, output in published_cells(nb):
        tolerance = cell_tolerance(cell, lesson)
        for line in output["data"]["text/plain"].splitlines():
            match = re.fullmatch(r"(\w*acc\w*) = (0\.\d+)", line)
            if not match or float(match.group(2)) < 0.2:
                continue
            if re.search(r"_p(_holm|_value)?$", match.group(1)):
                continue  # a p-value about an accuracy, not an accuracy
            if any(re.search(p, line) for p in tolerance.bit_dependent):
                continue  # declared chaotic (one seed's flip moves it): checked over seeds instead
            value = float(match.group(2))
            new = f"{match.group(1)} = {value - 0.03 if value > 0.5 else value + 0.03:.4f}"
            changed = _with_text(cell, output, line, new)
            problem = compare_cell(cell, changed, tolerance)
            assert problem is not None, f"{stem} cell {index}: {line!r} -> {new!r} passed"
            moved += 1
    if moved == 0:
        pytest.skip(f"{stem} publishes no accuracy")


@pytest.mark.parametrize("stem", list(LESSONS))
def test_every_published_number_may_move_in_its_last_digit(stem):
    nb = LESSONS[stem]
    lesson = lesson_tolerance(nb)
    for index, cell, output in published_cells(nb):
        for line in output["data"]["text/plain"].splitlines():
            match = re.fullmatch(r"(\w+) = (-?\d+\.\d*[1-8])", line)
            if not match:
                continue
            digits = match.group(2)
            nudged = digits[:-1] + str(int(digits[-1]) + 1)
            changed = _with_text(cell, output, line, f"{match.group(1)} = {nudged}")
            problem = compare_cell(cell, changed, cell_tolerance(cell, lesson))
            assert problem is None, f"{stem} cell {index}: {line!r} -> {nudged}: {problem}"
