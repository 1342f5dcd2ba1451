"""Checks of the arguments passed to the library's own functions: they fail early, with a
message naming the bad value and what is accepted.

For library code: every public helper of :mod:`mlcourse` validates its inputs with these
functions, in the spirit of scikit-learn: the error says which parameter, what it got, and
what it takes. (The checks in a learner's exercise tests are :mod:`mlcourse.checks`.)

Example:
    >>> check_choice("device", "tpu", ("auto", "cpu", "cuda", "mps"))
    Traceback (most recent call last):
    ...
    ValueError: device='tpu' is not supported; expected one of 'auto', 'cpu', 'cuda', 'mps'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any


def _quote_all(choices: Iterable[Any]) -> str:
    return ", ".join(repr(c) for c in choices)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` otherwise."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not supported; expected one of {_quote_all(choices)}."
        )
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a real ``bool`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return value


def check_int(
    name: str,
    value: Any,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
) -> int:
    """Return ``value`` as ``int`` if it is an integer within ``[min_value, max_value]``.

    Booleans are rejected: ``True`` is an ``int`` in Python but never a sensible count.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    _check_range(name, value, min_value, max_value, "an integer")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Return ``value`` as ``float`` if it is a finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    _check_range(name, value, min_value, max_value, "a number", min_inclusive, max_inclusive)
    return value


def _check_range(
    name: str,
    value: float,
    low: float | None,
    high: float | None,
    kind: str,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if not (too_low or too_high):
        return
    left = "[" if low_inclusive and low is not None else "("
    right = "]" if high_inclusive and high is not None else ")"
    low_text = "-inf" if low is None else repr(low)
    high_text = "inf" if high is None else repr(high)
    raise ValueError(
        f"{name}={value!r} is out of range; expected {kind} in {left}{low_text}, {high_text}{right}."
    )


def check_keys(name: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Raise ``ValueError`` listing every key of ``given`` that is not in ``accepted``."""
    accepted = tuple(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown {name} {_quote_all(unknown)}; accepted keys are {_quote_all(sorted(accepted))}."
        )
