import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from ipywidgets import Dropdown, FloatSlider  # noqa: E402

from mlcourse.checks import expect_close, expect_equal, expect_true  # noqa: E402
from mlcourse.plotting import (  # noqa: E402
    COURSE_STYLE,
    plot_curves,
    plot_intervals,
    use_course_style,
)
from mlcourse.results import format_results, publish_results, read_results  # noqa: E402
from mlcourse.widgets import explorer  # noqa: E402


def test_course_style_applies():
    use_course_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert set(COURSE_STYLE) <= set(matplotlib.rcParams)


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
