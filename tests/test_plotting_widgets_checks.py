import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from ipywidgets import Dropdown, FloatSlider  # noqa: E402

from mlcourse.checks import (  # noqa: E402
    CheckFailed,
    checks_together,
    expect_close,
    expect_equal,
    expect_true,
)
from mlcourse.plotting import (  # noqa: E402
    COURSE_STYLE,
    FIGURE_DPI,
    plot_curves,
    plot_intervals,
    use_course_style,
)
from mlcourse.results import format_results, publish_results, read_results  # noqa: E402
from mlcourse.widgets import MAX_DISPLAY, PIXEL_RATIO, explorer, png_size  # noqa: E402


def test_course_style_applies():
    use_course_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert set(COURSE_STYLE) <= set(matplotlib.rcParams)
    # sharp figures: at least 110 pixels per inch, and saved at the figure's own resolution
    assert matplotlib.rcParams["figure.dpi"] == FIGURE_DPI >= 110
    assert matplotlib.rcParams["savefig.dpi"] == "figure"


def test_plot_helpers_draw_and_validate():
    fig, axes = plt.subplots(1, 2)
    plot_curves({"train": [3, 2, 1], "val": [3, 2.5, 2]}, ax=axes[0], logy=True)
    assert len(axes[0].lines) == 2 and axes[0].get_yscale() == "log"
    plot_intervals(["a", "b"], [0.8, 0.9], [0.7, 0.85], [0.85, 0.95], ax=axes[1], reference=0.8)
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one named series"):
        plot_curves({})
    with pytest.raises(ValueError, match="same non-zero length"):
        plot_intervals(["a"], [1, 2], [0], [2])


def test_explorer_redraws_summary_and_image_when_a_control_moves():
    calls = []

    def draw(lr, kind):
        calls.append((lr, kind))
        plt.plot([0, 1], [0, lr])
        plt.show()  # tolerated: the explorer keeps the figure
        return f"{kind}: lr {lr:.2f}"

    open_figures = plt.get_fignums()
    box = explorer(draw, lr=FloatSlider(value=0.1, min=0, max=1), kind=Dropdown(options=["a", "b"]))
    assert box.summary.value == "a: lr 0.10"
    first_png = bytes(box.plot.value)
    assert first_png[:4] == b"\x89PNG"
    box.controls["lr"].value = 0.5
    assert box.summary.value == "a: lr 0.50" and bytes(box.plot.value) != first_png
    box.controls["kind"].value = "b"
    assert calls[-1] == (0.5, "b")
    assert repr(box) == "Explorer(lr, kind)"
    assert plt.get_fignums() == open_figures  # its figures are closed after rendering


def test_explorer_rejects_bad_controls():
    with pytest.raises(ValueError, match="at least one control"):
        explorer(lambda: "")
    with pytest.raises(TypeError, match="control 'lr' must be an ipywidgets value widget"):
        explorer(lambda lr: "", lr=0.1)
    with pytest.raises(TypeError, match="draw must be callable"):
        explorer("draw", lr=FloatSlider())


def test_checks_explain_failures():
    expect_close("x", torch.tensor([1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(AssertionError, match=r"x: expected shape \(3,\), got shape \(2,\)"):
        expect_close("x", [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match=r"got None; did the function forget to `return`"):
        expect_close("x", None, 1.0)
    with pytest.raises(AssertionError, match=r"step: expected 0.8, got 0.9 .* Hint: subtract"):
        expect_close("step", 0.9, 0.8, hint="subtract the gradient")
    with pytest.raises(AssertionError, match="label: expected 3, got 4"):
        expect_equal("label", 4, 3)
    with pytest.raises(AssertionError, match="must be positive"):
        expect_true(False, "must be positive")


def test_results_format_and_round_trip():
    text = format_results({"acc": np.float64(0.912345), "ok": True, "n": 3}, measured={"t": 0.0123})
    assert text == "acc = 0.9123\nok = True\nn = 3\nt = ~0.0123"
    with pytest.raises(ValueError, match="appear in both"):
        publish_results({"a": 1}, measured={"a": 2})
    with pytest.raises(TypeError, match="result 'a' must be a bool, int, float or str"):
        publish_results({"a": [1, 2]})
    nb = {"cells": [{"outputs": [{"metadata": {"mlcourse_results": {"a": 1}}}]},
                    {"outputs": [{"metadata": {"mlcourse_results": {"a": 2, "b": 3}}}]}]}  # fmt: skip
    assert read_results(nb) == {"a": 2, "b": 3}


# --- explorer images: drawn at twice the size they are shown, never upscaled --------------


def shown_width(box) -> float:
    assert box.plot.layout.width.endswith("px") and box.plot.layout.height == "auto"
    assert box.plot.layout.max_width == "100%"  # a narrow notebook shrinks it, never stretches
    return float(box.plot.layout.width.removesuffix("px"))


def test_explorer_images_are_drawn_at_twice_the_size_they_are_shown():
    def draw(width):
        plt.figure(figsize=(width, 3.0))
        plt.plot([0, 1], [0, 1])
        return f"width {width}"

    box = explorer(draw, width=FloatSlider(value=6.0, min=2.0, max=20.0))
    pixels = png_size(bytes(box.plot.value))
    drawn = 6.0 * FIGURE_DPI * PIXEL_RATIO  # pixels across the figure; "tight" crops margins
    assert 0.75 * drawn < pixels[0] <= drawn
    assert shown_width(box) == pixels[0] // PIXEL_RATIO
    # a figure wider than the window allows is shown smaller, with the same shape
    box.controls["width"].value = 20.0
    pixels = png_size(bytes(box.plot.value))
    assert shown_width(box) == MAX_DISPLAY[0] < pixels[0] / PIXEL_RATIO
    assert box.children[0].layout.flex_flow == "row wrap"  # controls wrap, never overflow


def test_tall_explorer_images_fit_the_window_height():
    def draw(height):
        plt.figure(figsize=(4.0, height))
        plt.imshow(np.eye(4))
        return "map"

    box = explorer(draw, height=FloatSlider(value=8.0, min=1.0, max=10.0))
    pixels = png_size(bytes(box.plot.value))
    shown_height = shown_width(box) * pixels[1] / pixels[0]
    assert shown_height <= MAX_DISPLAY[1] + 1


def test_png_size_refuses_other_data():
    with pytest.raises(ValueError, match="not a PNG image"):
        png_size(b"GIF89a" + bytes(30))


# --- exercise checks: short reports a learner can act on ---------------------------------


def test_a_failed_check_is_an_assertion_error_with_a_short_report():
    with pytest.raises(CheckFailed) as caught:
        expect_close("v after one step", 0.2, 2.0, hint="v_new = beta * v + grad")
    error = caught.value
    assert isinstance(error, AssertionError)  # nbgrader scores the cell as failed
    assert str(error) == (
        "v after one step: expected 2.0, got 0.2 (tolerance atol=1e-06, rtol=1e-05). "
        "Hint: v_new = beta * v + grad"
    )
    report = [line.replace("\x1b[31m\x1b[1m", "").replace("\x1b[0m", "") for line in error.report()]
    assert report == [
        "Check failed: v after one step",
        "  expected  2.0",
        "  got       0.2  (tolerance atol=1e-06, rtol=1e-05)",
        "  hint      v_new = beta * v + grad",
    ]
    assert error._render_traceback_() == error.report()  # what IPython shows


def test_checks_explain_what_came_back():
    with pytest.raises(CheckFailed, match=r"expected numbers, got str 'oops'"):
        expect_close("loss", "oops", 1.0)
    with pytest.raises(CheckFailed, match=r"weights: expected \[1. , 2.5, 3. \]") as caught:
        expect_close("weights", np.array([1.0, 2.0, 3.0]), [1.0, 2.5, 3.0])
    assert "1 of 3 entries; first at [1]: expected 2.5, got 2" in "\n".join(caught.value.report())
    # values that agree to 6 digits are shown with enough digits to see the difference
    with pytest.raises(CheckFailed, match=r"expected 0.3000001, got 0.30000011"):
        expect_close("x", 0.30000011, 0.3000001, atol=0, rtol=1e-9)
    expect_equal("labels", np.array([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(CheckFailed, match=r"labels: expected array\(\[1, 3\]\), got"):
        expect_equal("labels", np.array([1, 2]), np.array([1, 3]))
    with pytest.raises(CheckFailed, match="must decrease Hint: is the step positive?"):
        expect_true(False, "the loss must decrease", hint="is the step positive?")


def test_checks_together_report_every_failure_first_one_first():
    with pytest.raises(CheckFailed) as caught, checks_together("Exercise 1"):
        expect_close("v after one step", 0.2, 2.0, hint="v_new = beta * v + grad")
        expect_equal("steps taken", 1, 1)
        expect_close("x after one step", 0.98, 0.8)
    error = caught.value
    assert str(error).startswith(
        "Exercise 1: 2 of 3 checks failed. Start with the first: v after one step: expected 2.0"
    )
    text = "\n".join(error.report())
    assert text.index("1.") < text.index("v after one step") < text.index("x after one step")
    assert "Fix the first one first" in text


def test_checks_together_report_an_error_after_a_failed_check():
    with (
        pytest.raises(CheckFailed, match="v: expected 2.0, got 0.2") as caught,
        checks_together("Exercise 2"),
    ):
        expect_close("v", 0.2, 2.0)
        raise TypeError("unsupported operand")
    assert "then  the cell stopped with TypeError: unsupported operand" in "\n".join(
        caught.value.report()
    )
    assert isinstance(caught.value.__cause__, TypeError)
    # without a failed check first, the learner's own error goes through untouched
    with pytest.raises(TypeError, match="unsupported operand"), checks_together("Exercise 2"):
        expect_close("v", 2.0, 2.0)
        raise TypeError("unsupported operand")
    with checks_together("Exercise 3"):  # all pass: nothing raised
        expect_true(True, "fine")
    with pytest.raises(ValueError, match="title must be a non-empty string"), checks_together(""):
        pass


NOTEBOOK_CELLS = [
    "def step(x, grad, lr):\n    return x + lr * grad  # the classic sign mistake",
    "from mlcourse.checks import expect_close\n"
    "expect_close('x after one step', step(1.0, 2.0, 0.1), 0.8, hint='step against the gradient')",
]


def test_ipython_shows_the_report_and_no_library_frames(tmp_path):
    """A real kernel runs a wrong answer: the error output is the short report, still an
    error (so nbgrader scores the cell 0), with no traceback frame from mlcourse."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    with pytest.raises(CellExecutionError):
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={
            "metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    (output,) = nb.cells[1].outputs
    assert output.output_type == "error" and output.ename == "CheckFailed"
    text = "\n".join(output.traceback)
    assert (
        "Check failed: x after one step" in text and "hint      step against the gradient" in text
    )
    assert "mlcourse" not in text and "Traceback" not in text and "File " not in text, text
    assert len(output.traceback) == 4
