"""The parameters-cell rules (mlcourse.parameters_cell) and the two places that apply them:
the committed-lesson check and grading's lite mode."""

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mlcourse.grading.preprocessors import INJECTED_TAG, ForceLiteMode
from mlcourse.grading.submissions import changes_undone
from mlcourse.notebooks import notebook_problems
from mlcourse.parameters_cell import (
    REQUIRED_PARAMETERS,
    assigned_values,
    parameters_index,
    parameters_problems,
)

FULL = 'lite = True  # seconds\nseed: int = 0\ndevice = "auto"\n'


def params(source: str = FULL):
    return new_code_cell(source, metadata={"tags": ["parameters"]})


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("lite = False", ["False"]),
        ("lite: bool = False  # full size", ["False"]),
        ("lite=True\nlite = False", ["True", "False"]),
        ("if lite == True:\n    lite = False", []),  # a comparison, an indented assignment
        ("elite = False\nlite_steps = 3", []),
    ],
)
def test_an_assignment_is_one_at_the_start_of_a_line(source, values):
    assert assigned_values(source, "lite") == values


def test_a_lesson_sets_every_required_parameter_in_one_tagged_cell():
    assert parameters_problems(new_notebook(cells=[params()])) == []
    assert parameters_problems(new_notebook(cells=[params(), params()])) == [
        "expected exactly one cell tagged 'parameters', found 2"
    ]
    assert parameters_problems(new_notebook(cells=[new_code_cell(FULL)])) == [
        "expected exactly one cell tagged 'parameters', found 0"
    ]
    for name in REQUIRED_PARAMETERS:
        source = "\n".join(line for line in FULL.splitlines() if not line.startswith(name))
        assert parameters_problems(new_notebook(cells=[params(source)])) == [
            f"parameters cell does not set {name!r}"
        ]


def test_the_committed_lesson_check_applies_the_rules():
    problems = notebook_problems(new_notebook(cells=[params("lite = True\nseed = 0")]))
    assert "parameters cell does not set 'device'" in problems


def test_the_parameters_are_the_tagged_cell_else_the_first_code_cell_setting_lite():
    cells = [new_markdown_cell("lite = True"), new_code_cell("x = 1"), new_code_cell("lite = 1")]
    assert parameters_index(cells) == 2
    assert parameters_index([*cells, params()]) == 3
    assert parameters_index(cells[:2]) is None


@pytest.mark.parametrize(
    ("cells", "position"),
    [
        ([new_markdown_cell("# t"), params(), new_code_cell("x = 1")], 2),
        ([new_markdown_cell("# t"), new_code_cell("lite = False"), new_code_cell("x = 1")], 2),
        ([new_code_cell("x = 1")], 0),
    ],
)
def test_grading_injects_lite_mode_right_after_the_parameters(cells, position):
    nb, _ = ForceLiteMode().preprocess(new_notebook(cells=cells), {})
    injected = [i for i, c in enumerate(nb.cells) if INJECTED_TAG in c.metadata.get("tags", [])]
    assert injected == [position]
    assert assigned_values(nb.cells[position].source, "lite") == ["True"]


def test_grading_notes_every_parameter_setting_other_than_lite_mode():
    submitted = new_notebook(cells=[params("lite: bool = False\nseed = 0\nlite = True")])
    assert changes_undone(submitted, new_notebook()) == [
        "the parameters set `lite = False`; graded in lite mode"
    ]
    assert changes_undone(new_notebook(cells=[params()]), new_notebook()) == []
