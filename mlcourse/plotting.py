"""One consistent look for every figure in the course, and the plots lessons share.

Example:
    >>> use_course_style()
    >>> fig, ax = plt.subplots()
    >>> _ = plot_curves({"train": [1.0, 0.5, 0.3], "validation": [1.1, 0.7, 0.6]}, ax=ax,
    ...                 xlabel="epoch", ylabel="loss")
    >>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

FIGURE_DPI = 110
# Colour-blind-safe palette (Okabe and Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

COURSE_STYLE = {
    "figure.figsize": (6.4, 4.0),
    # 110 pixels per inch: a 6.4-inch figure is 704 px wide, shown at its natural size in
    # JupyterLab (never stretched, so never blurred); explorers draw at twice this
    # (mlcourse.widgets) for high-DPI screens.
    "figure.dpi": FIGURE_DPI,
    "savefig.dpi": "figure",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
    "svg.hashsalt": "mlcourse",
}


def use_course_style() -> None:
    """Apply the course's matplotlib style (call once, at the top of a lesson)."""
    mpl.rcParams.update(COURSE_STYLE)


def plot_curves(
    curves: Mapping[str, Sequence[float] | np.ndarray],
    *,
    ax: Axes | None = None,
    x: Sequence[float] | np.ndarray | None = None,
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
) -> Axes:
    """Draw named curves (training loss, validation accuracy...) on one axis."""
    if not curves:
        raise ValueError("curves must hold at least one named series, got an empty mapping.")
    ax = ax or plt.gca()
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        xs = np.arange(1, values.size + 1) if x is None else np.asarray(x)[: values.size]
        ax.plot(xs, values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax


def plot_intervals(
    labels: Sequence[str],
    estimates: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    ax: Axes | None = None,
    xlabel: str = "",
    reference: float | None = None,
) -> Axes:
    """Horizontal point-and-interval plot, e.g. accuracy with 95% CIs per model."""
    n = len(labels)
    if not (len(estimates) == len(lows) == len(highs) == n) or n == 0:
        raise ValueError(
            "labels, estimates, lows and highs must have the same non-zero length, got "
            f"{len(labels)}, {len(estimates)}, {len(lows)}, {len(highs)}."
        )
    ax = ax or plt.gca()
    est = np.asarray(estimates, dtype=float)
    err = np.vstack([est - np.asarray(lows, dtype=float), np.asarray(highs, dtype=float) - est])
    y = np.arange(n)[::-1]
    ax.errorbar(est, y, xerr=err, fmt="o", capsize=4, color=PALETTE[0])
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=1)
    return ax
