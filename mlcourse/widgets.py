"""Interactive explorers: move a slider, the plot and a one-line summary redraw.

The plot is rendered to a PNG and shown in an ``ipywidgets.Image``, so the explorer
behaves the same in JupyterLab, on Binder and under headless runners (papermill, nbval):
it never writes figures into the cell's own output.

Example (in a notebook)::

    from ipywidgets import FloatLogSlider

    def draw(lr):
        losses = train(lr)
        plt.plot(losses)
        return f"final loss {losses[-1]:.3f}"

    explorer(draw, lr=FloatLogSlider(value=0.1, min=-3, max=0, description="lr"))
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

SUMMARY_CLASS = "mlcourse-summary"
EXPLORER_CLASS = "mlcourse-explorer"
PLOT_CLASS = "mlcourse-plot"


class Explorer(widgets.VBox):
    """Controls on top, a summary line, then the plot. Built by :func:`explorer`.

    Its plain-text form is short and stable (the control names), so a committed
    notebook's output does not change when the plot does.
    """

    def __init__(
        self, draw: Callable[..., str | None], controls: dict[str, widgets.ValueWidget]
    ) -> None:
        self.draw = draw
        self.controls = controls
        self.summary = widgets.Label()
        self.summary.add_class(SUMMARY_CLASS)
        self.plot = widgets.Image(format="png")
        self.plot.add_class(PLOT_CLASS)
        super().__init__([widgets.HBox(list(controls.values())), self.summary, self.plot])
        self.add_class(EXPLORER_CLASS)
        for control in controls.values():
            control.observe(self.refresh, names="value")
        self.refresh()

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self, _change: object = None) -> None:
        """Redraw the plot and the summary for the current control values."""
        before = set(plt.get_fignums())
        show = plt.show
        plt.show = _keep_figure  # a draw() that ends with plt.show() must not flush it away
        try:
            plt.figure()  # a fresh current figure, so pyplot calls in draw() never reuse an old one
            text = self.draw(**self.values())
            newest = max(n for n in plt.get_fignums() if n not in before)
            buffer = io.BytesIO()
            plt.figure(newest).savefig(buffer, format="png", bbox_inches="tight")
            self.plot.value = buffer.getvalue()
        finally:
            plt.show = show
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
        self.summary.value = "" if text is None else str(text)

    def __repr__(self) -> str:
        return f"Explorer({', '.join(self.controls)})"


def _keep_figure(*_args: object, **_kwargs: object) -> None:
    """Stands in for ``plt.show`` while an explorer draws."""


def explorer(draw: Callable[..., str | None], **controls: widgets.ValueWidget) -> Explorer:
    """Build an :class:`Explorer` calling ``draw(**values)`` whenever a control changes.

    Args:
        draw: draws a new matplotlib figure for the given values (one keyword per
            control) and returns a short summary, e.g. ``"final loss 0.123"``.
        **controls: ipywidgets value controls (sliders, dropdowns), keyed by the
            keyword ``draw`` receives.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}.")
    if not controls:
        raise ValueError("explorer needs at least one control, e.g. lr=FloatSlider(...).")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(
                f"control {name!r} must be an ipywidgets value widget (a slider, a dropdown...), "
                f"got {type(control).__name__}."
            )
    return Explorer(draw, dict(controls))
