"""Checks for exercise tests that tell a learner what was checked, what was expected, what
came back, and what the likely mistake is, in a few lines and without a traceback.

For the learners' exercises: the test cells of the lessons call these. (Library functions
check their own arguments with :mod:`mlcourse.arguments`.)

A failed check raises :class:`CheckFailed`, an ``AssertionError`` (so nbgrader still
scores the cell as failed). In a notebook IPython shows only its short report, not the
frames of this library::

    Check failed: step size
      expected  0.25
      got       0.5  (tolerance atol=1e-06, rtol=1e-05)
      hint      subtract the gradient, do not add it

Write the checks of a test cell in the order of cause and effect (the value computed
first is checked first), and wrap them in :func:`checks_together` to report every failed
check of the block at once, the first one marked as the place to start.

Example:
    >>> expect_close("step size", 0.5, 0.25)
    Traceback (most recent call last):
    ...
    mlcourse.checks.CheckFailed: step size: expected 0.25, got 0.5 (tolerance atol=1e-06, rtol=1e-05).
    >>> with checks_together("Exercise 1"):
    ...     expect_equal("label", 3, 3)
    ...     expect_close("loss", 2.0, 1.0, hint="divide by the batch size")
    ...     expect_true(False, "the loss must decrease")
    Traceback (most recent call last):
    ...
    mlcourse.checks.CheckFailed: Exercise 1: 2 of 3 checks failed. Start with the first: loss: ...
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

SHOWN_CHARACTERS = 300  # longer values are cut in the report
_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"


class CheckFailed(AssertionError):
    """An exercise check that failed: ``str(error)`` is one line, and IPython shows
    :meth:`report` (no traceback).

    Attributes:
        check: what was checked, e.g. ``"x after one step"``.
        rows: the report's ``(label, text)`` rows: expected, got, hint...
    """

    def __init__(self, check: str, summary: str, rows: list[tuple[str, str]]) -> None:
        super().__init__(f"{check}: {summary}" if check else summary)
        self.check, self.rows = check, rows

    def report(self) -> list[str]:
        """The lines a learner sees in the notebook."""
        title = f"Check failed: {self.check}" if self.check else "Check failed"
        width = max((len(label) for label, _ in self.rows), default=0)
        lines = [f"{_RED}{_BOLD}{title}{_RESET}"]
        for label, text in self.rows:
            first, *rest = text.splitlines() or [""]
            lines.append(f"  {label.ljust(width)}  {first}")
            lines += [f"  {' ' * width}  {line}" for line in rest]
        return lines

    def _render_traceback_(self) -> list[str]:
        """IPython prints this instead of a traceback (the error stays an error output)."""
        return self.report()


class _Collector:
    """The checks of one :func:`checks_together` block: how many ran, which failed."""

    def __init__(self, title: str) -> None:
        self.title, self.count, self.failures = title, 0, []

    def error(self, after: BaseException | None) -> CheckFailed:
        first, *others = self.failures
        summary = (
            f"{len(self.failures)} of {self.count} checks failed. Start with the first: {first}"
            if others or self.count > 1
            else str(first)
        )
        rows = [(f"{n}.", str(failure)) for n, failure in enumerate(self.failures, start=1)]
        if after is not None:
            rows.append(("then", f"the cell stopped with {type(after).__name__}: {after}"))
        if others:
            rows.append(("", "Fix the first one first: the others may follow from it."))
        return CheckFailed(self.title, summary, rows)


_COLLECTOR: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar(
    "mlcourse_checks_collector", default=None
)


@contextlib.contextmanager
def checks_together(title: str) -> Iterator[None]:
    """Run every check in the block, then report all that failed, in the order written.

    Without it the first failed check stops the cell; with it the learner also sees which
    later checks fail, and is told to start with the first. Any other error in the block
    is reported after the failed checks that came before it.

    Args:
        title: what the block tests, e.g. ``"Exercise 1"``.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}.")
    collector = _Collector(title)
    token = _COLLECTOR.set(collector)
    try:
        yield
    except Exception as error:
        if isinstance(error, CheckFailed):  # from a nested block: one more failure
            collector.failures.append(error)
            raise collector.error(after=None) from None
        if not collector.failures:
            raise
        raise collector.error(after=error) from error
    finally:
        _COLLECTOR.reset(token)
    if collector.failures:
        raise collector.error(after=None)


def expect_close(
    name: str,
    got: Any,
    expected: Any,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> None:
    """Check that numbers, arrays or tensors agree within tolerance, explaining any miss.

    Example:
        >>> import torch
        >>> expect_close("weights", torch.tensor([1.0, 2.0]), [1.0, 2.0])
    """
    _count()
    problem = _close_problem(got, expected, atol, rtol, hint)
    if problem is not None:
        _fail(name, *problem)


def _close_problem(
    got: Any, expected: Any, atol: float, rtol: float, hint: str
) -> tuple[str, list[tuple[str, str]]] | None:
    """Why ``got`` is not close to ``expected`` (one-line summary, report rows), or None."""
    hint_rows = [("hint", hint)] if hint else []
    if got is None:
        hint_rows = [("hint", hint or "end the function with `return <your result>`")]
        return "got None; did the function forget to `return` its result?", [
            ("got", "None"),
            *hint_rows,
        ]
    try:
        got_a = _as_array(got).astype(float)
    except (TypeError, ValueError):
        shown_got = f"{type(got).__name__} {_cut(repr(got))}"
        summary = f"expected numbers, got {shown_got}." + _tail(hint)
        return summary, [("expected", _show(expected)), ("got", shown_got), *hint_rows]
    expected_a = _as_array(expected).astype(float)
    if got_a.shape != expected_a.shape:
        summary = f"expected shape {expected_a.shape}, got shape {got_a.shape}." + _tail(hint)
        rows = [("expected", f"shape {expected_a.shape}"), ("got", f"shape {got_a.shape}")]
        return summary, [*rows, *hint_rows]
    if np.allclose(got_a, expected_a, atol=atol, rtol=rtol, equal_nan=False):
        return None
    tolerance = f"(tolerance atol={atol:g}, rtol={rtol:g})"
    shown_expected, shown_got = _show(expected, got), _show(got, expected)
    summary = f"expected {shown_expected}, got {shown_got} {tolerance}." + _tail(hint)
    rows = [("expected", shown_expected), ("got", f"{shown_got}  {tolerance}")]
    return summary, [*rows, *_where(got_a, expected_a, atol, rtol), *hint_rows]


def expect_equal(name: str, got: Any, expected: Any, *, hint: str = "") -> None:
    """Check exact equality (labels, shapes, counts, arrays), explaining any miss.

    Example:
        >>> expect_equal("label", 4, 3, hint="count from 0")
        Traceback (most recent call last):
        ...
        mlcourse.checks.CheckFailed: label: expected 3, got 4. Hint: count from 0
    """
    _count()
    if not _equal(got, expected):
        shown_expected, shown_got = _cut(repr(expected)), _cut(repr(got))
        _fail(
            name,
            f"expected {shown_expected}, got {shown_got}." + _tail(hint),
            [("expected", shown_expected), ("got", shown_got), *([("hint", hint)] if hint else [])],
        )


def expect_true(condition: bool, message: str, *, hint: str = "") -> None:
    """Check ``condition``; ``message`` says what should hold (and why).

    Example:
        >>> expect_true(1 < 0, "the loss must decrease", hint="is the step size positive?")
        Traceback (most recent call last):
        ...
        mlcourse.checks.CheckFailed: the loss must decrease Hint: is the step size positive?
    """
    _count()
    if not condition:
        _fail(
            "", message + _tail(hint), [("expected", message), *([("hint", hint)] if hint else [])]
        )


def _count() -> None:
    collector = _COLLECTOR.get()
    if collector is not None:
        collector.count += 1


def _fail(check: str, summary: str, rows: list[tuple[str, str]]) -> None:
    """Raise the failure, or record it when a :func:`checks_together` block is open."""
    error = CheckFailed(check, summary, rows)
    collector = _COLLECTOR.get()
    if collector is None:
        raise error
    collector.failures.append(error)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _equal(got: Any, expected: Any) -> bool:
    """``got == expected``, also for arrays and tensors (same shape, same values)."""
    if any(hasattr(v, "shape") and hasattr(v, "dtype") for v in (got, expected)):
        try:
            return bool(np.array_equal(_as_array(got), _as_array(expected)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(got == expected)
    except (TypeError, ValueError):  # a comparison that has no single answer
        return False


def _show(value: Any, other: Any = None) -> str:
    """A short text for a number or array; more digits when the short forms would agree."""
    try:
        array = _as_array(value)
        if array.dtype == object:
            raise TypeError
    except (TypeError, ValueError):
        return _cut(repr(value))
    if array.ndim == 0:
        item = array.item()
        if isinstance(item, float):
            if other is not None and _same_at(item, other, 6):  # show where they differ
                return f"{item:.12g}"
            short = repr(item)  # 2.0 stays "2.0"; 0.30000000000000004 becomes "0.3"
            return short if len(short) <= 8 else f"{item:.6g}"
        return repr(item)
    with np.printoptions(precision=6, threshold=12, edgeitems=3):
        return _cut(np.array2string(array, separator=", "))


def _same_at(item: float, other: Any, digits: int) -> bool:
    try:
        other_item = float(_as_array(other).item())
    except (TypeError, ValueError):
        return False
    return f"{item:.{digits}g}" == f"{other_item:.{digits}g}"


def _where(
    got: np.ndarray, expected: np.ndarray, atol: float, rtol: float
) -> list[tuple[str, str]]:
    """For arrays: how many entries differ, and the first one."""
    if got.ndim == 0:
        return []
    wrong = ~np.isclose(got, expected, atol=atol, rtol=rtol)
    first = tuple(int(i) for i in np.argwhere(wrong)[0])
    index = first[0] if len(first) == 1 else first
    return [
        (
            "differs",
            f"{int(wrong.sum())} of {wrong.size} entries; first at [{index}]: "
            f"expected {expected[first]:.6g}, got {got[first]:.6g}",
        )
    ]


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 5] + " ..."


def _tail(hint: str) -> str:
    return f" Hint: {hint}" if hint else ""
