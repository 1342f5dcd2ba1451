"""A lesson's key numbers, shown to the reader and readable by the tests.

:func:`publish_results` prints the numbers a lesson claims (rounded, one per line) and
attaches the exact values to the cell output's metadata. The test suite executes every
lesson and reads them back with :func:`read_results` to assert the lesson's claims.
Measured quantities (timings, speed-ups, memory) are marked with ``~`` so that output
comparison ignores their value; everything else must be identical on every run.

Example:
    >>> format_results({"accuracy": 0.91234, "epochs": 5}, measured={"speedup": 3.14159})
    'accuracy = 0.9123\\nepochs = 5\\nspeedup = ~3.14'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

METADATA_KEY = "mlcourse_results"
_ALLOWED = (bool, int, float, str)


def format_results(results: Mapping[str, Any], *, measured: Mapping[str, Any] | None = None) -> str:
    """One ``name = value`` line per result: floats to 4 significant digits, measured
    values as ``~value`` with 3."""
    lines = [f"{name} = {_fmt(value, 4)}" for name, value in results.items()]
    lines += [f"{name} = ~{_fmt(value, 3)}" for name, value in (measured or {}).items()]
    return "\n".join(lines)


def publish_results(
    results: Mapping[str, Any], *, measured: Mapping[str, Any] | None = None
) -> None:
    """Display a lesson's key numbers and attach them to the output for the tests.

    Args:
        results: deterministic values (accuracies, errors, counts) by name.
        measured: values that vary run to run (timings, speed-ups, memory).
    """
    from IPython.display import display

    measured = dict(measured or {})
    _check(results)
    _check(measured)
    overlap = set(results) & set(measured)
    if overlap:
        raise ValueError(f"names {sorted(overlap)} appear in both results and measured.")
    values = {
        **{k: _plain(v) for k, v in results.items()},
        **{k: _plain(v) for k, v in measured.items()},
    }
    display(
        {"text/plain": format_results(results, measured=measured)},
        raw=True,
        metadata={METADATA_KEY: values},
    )


def read_results(notebook: Mapping[str, Any]) -> dict[str, Any]:
    """Collect every published result of an executed notebook (later cells win)."""
    found: dict[str, Any] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            found.update(output.get("metadata", {}).get(METADATA_KEY, {}))
    return found


def _check(values: Mapping[str, Any] | Iterable[Any]) -> None:
    if not isinstance(values, Mapping):
        raise TypeError(f"results must be a mapping of name to value, got {type(values).__name__}.")
    for name, value in values.items():
        if not isinstance(_plain(value), _ALLOWED):
            raise TypeError(
                f"result {name!r} must be a bool, int, float or str, got {type(value).__name__}."
            )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: Any, digits: int) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
