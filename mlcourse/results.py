"""A lesson's key numbers, shown to the reader and readable by the tests.

:func:`publish_results` prints the numbers a lesson claims (rounded, one per line) and
attaches the exact values to the cell output's metadata. The test suite executes every
lesson and reads them back with :func:`read_results` to assert the lesson's claims.
Measured quantities (timings, speed-ups, memory) are marked with ``~`` so that output
comparison ignores their value; everything else must be identical on every run.

The lesson's summary prose takes its numbers from the same values: :func:`render_summary`
fills a Markdown template (``{accuracy:.3f}``) with what the lesson published, so the text a
reader sees and the numbers the tests check cannot drift apart.

Example:
    >>> format_results({"accuracy": 0.91234, "epochs": 5}, measured={"speedup": 3.14159})
    'accuracy = 0.9123\\nepochs = 5\\nspeedup = ~3.14'
    >>> fill_summary("{n} runs, best {acc:.2f}, ~{speedup:.0f}x faster",
    ...              {"n": 5, "acc": 0.912}, measured={"speedup": 3.1})
    '5 runs, best 0.91, ~3x faster'
"""

from __future__ import annotations

import re
import string
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
    _PUBLISHED.update({k: _plain(v) for k, v in results.items()})
    _MEASURED.update({k: _plain(v) for k, v in measured.items()})
    for name in results:
        _MEASURED.pop(name, None)
    display(
        {"text/plain": format_results(results, measured=measured)},
        raw=True,
        metadata={METADATA_KEY: values},
    )


# What this kernel has published so far, for render_summary.
_PUBLISHED: dict[str, Any] = {}
_MEASURED: dict[str, Any] = {}


def published() -> dict[str, Any]:
    """Everything this kernel has published so far (results and measured values)."""
    return {**_MEASURED, **_PUBLISHED}


def fill_summary(
    template: str, results: Mapping[str, Any], *, measured: Mapping[str, Any] | None = None
) -> str:
    """``template`` with every ``{name}`` / ``{name:format}`` replaced by a published value.

    A measured value must be written right after a ``~`` (``~{speedup:.1f}x``), so that
    readers and the output comparison both see that it varies from run to run.

    Raises:
        KeyError: the template names a value that was not published.
        ValueError: a measured value is not preceded by ``~``.
    """
    measured = dict(measured or {})
    for prefix, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in results and name not in measured:
            known = ", ".join(sorted({*results, *measured}))
            raise KeyError(
                f"the summary names {name!r}, which was not published; published: {known}"
            )
        if name in measured and not re.search(r"~$", prefix or ""):
            raise ValueError(
                f"{name!r} is measured (it varies run to run): write it as ~{{{name}...}} in the summary."
            )
    return template.format(**{**measured, **results})


def render_summary(template: str) -> None:
    """Display ``template`` as Markdown, filled with the results published in this kernel.

    Use it for the summary of a lesson, instead of typing the numbers into a Markdown cell::

        render_summary(\"\"\"**Expected in lite mode:** test accuracy {test_accuracy:.3f} ...\"\"\")
    """
    from IPython.display import Markdown, display

    display(Markdown(fill_summary(template, _PUBLISHED, measured=_MEASURED)))


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
