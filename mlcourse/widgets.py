"""Interactive explorers: move a slider, the plot and a one-line summary redraw.

The plot is rendered to a PNG and shown in an ``ipywidgets.Image``, so the explorer
behaves the same in JupyterLab, on Binder and under headless runners (papermill, nbval):
it never writes figures into the cell's own output.

Sharp at every size: the PNG is drawn at twice the course's figure resolution
(:data:`PIXEL_RATIO` x :data:`mlcourse.plotting.FIGURE_DPI`) and shown at half its pixel
size, so it is crisp on high-DPI screens and only ever scaled *down* elsewhere. A figure
larger than :data:`MAX_DISPLAY` is shown smaller (same shape), so an explorer and its
controls fit a 1280x800 window; in a narrower notebook it shrinks with the page.

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

from mlcourse.plotting import FIGURE_DPI

PIXEL_RATIO = 2  # image pixels per CSS pixel: sharp on high-DPI (retina) screens
MAX_DISPLAY = (880, 440)  # largest shown size (CSS px): fits a 1280x800 window with controls
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
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.plot.add_class(PLOT_CLASS)
        # controls wrap onto a second row in a narrow notebook instead of overflowing it
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([row, self.summary, self.plot])
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
            plt.figure(newest).savefig(
                buffer, format="png", bbox_inches="tight", dpi=FIGURE_DPI * PIXEL_RATIO
            )
            png = buffer.getvalue()
            width, height = display_size(png_size(png))
            self.plot.layout.width, self.plot.layout.height = f"{width}px", "auto"
            self.plot.value = png
        finally:
            plt.show = show
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
        self.summary.value = "" if text is None else str(text)

    def __repr__(self) -> str:
        return f"Explorer({', '.join(self.controls)})"


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a PNG image, read from its header.

    Example:
        >>> header = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00\\x00\\x00\\rIHDR"
        >>> png_size(header + (3).to_bytes(4, "big") + (2).to_bytes(4, "big"))
        (3, 2)
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image (no PNG signature and IHDR header).")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def display_size(
    pixels: tuple[int, int], *, ratio: int = PIXEL_RATIO, limit: tuple[int, int] = MAX_DISPLAY
) -> tuple[int, int]:
    """The CSS size to show an image of ``pixels`` at: ``pixels / ratio``, scaled down
    (same shape) to fit ``limit``; never larger than ``pixels / ratio``.

    Example:
        >>> display_size((1408, 792))
        (704, 396)
        >>> display_size((2200, 792))  # a wide figure is shown narrower, same shape
        (880, 316)
    """
    width, height = pixels[0] / ratio, pixels[1] / ratio
    scale = min(1.0, limit[0] / width, limit[1] / height)
    return max(1, int(width * scale)), max(1, int(height * scale))


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
