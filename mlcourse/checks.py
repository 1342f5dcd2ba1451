"""Assertions for exercise tests that tell a learner what was expected and what came back.

Example:
    >>> expect_close("step size", 0.5, 0.25)
    Traceback (most recent call last):
    ...
    AssertionError: step size: expected 0.25, got 0.5 (tolerance atol=1e-06, rtol=1e-05).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _show(value: Any) -> str:
    array = _as_array(value)
    if array.ndim == 0:
        return f"{array.item()!r}"
    return np.array2string(array, precision=6, threshold=12)


def expect_close(
    name: str,
    got: Any,
    expected: Any,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> None:
    """Assert that numbers, arrays or tensors agree within tolerance, explaining any miss."""
    if got is None:
        raise AssertionError(f"{name}: got None; did the function forget to `return` its result?")
    got_a, expected_a = _as_array(got).astype(float), _as_array(expected).astype(float)
    if got_a.shape != expected_a.shape:
        raise AssertionError(
            f"{name}: expected shape {expected_a.shape}, got shape {got_a.shape}." + _tail(hint)
        )
    if not np.allclose(got_a, expected_a, atol=atol, rtol=rtol, equal_nan=False):
        raise AssertionError(
            f"{name}: expected {_show(expected)}, got {_show(got)} "
            f"(tolerance atol={atol:g}, rtol={rtol:g})." + _tail(hint)
        )


def expect_equal(name: str, got: Any, expected: Any, *, hint: str = "") -> None:
    """Assert exact equality (labels, shapes, counts), explaining any miss."""
    if got != expected:
        raise AssertionError(f"{name}: expected {expected!r}, got {got!r}." + _tail(hint))


def expect_true(condition: bool, message: str) -> None:
    """Assert ``condition``; ``message`` says what should hold and why."""
    if not condition:
        raise AssertionError(message)


def _tail(hint: str) -> str:
    return f" Hint: {hint}" if hint else ""
