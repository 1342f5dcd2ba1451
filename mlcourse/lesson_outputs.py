"""Compare a lesson's re-executed outputs with its committed ones, honestly across machines.

Two rules, chosen by the numerics fingerprint (:mod:`mlcourse.numerics`):

- **Same fingerprint** as the one recorded when the outputs were committed: every text
  output must be identical, after masking only what legitimately varies from run to run
  (values printed with a leading ``~``, plain timings, memory addresses).
- **Another fingerprint** (another CPU, another kernel set, Apple silicon, a GPU): words,
  punctuation, layout and integer counts must still be identical, and each number must
  agree within the tolerance the lesson declares. Values the lesson declares
  *bit-dependent* (such as the SHA-256 of trained weights) cannot agree across kernels and
  are compared only under the first rule.

A lesson declares its tolerances in notebook metadata ``mlcourse.compare`` (defaults for the
lesson) and cell metadata ``mlcourse.compare`` (one cell)::

    {"rtol": 0.02, "atol": 1e-6, "counts": 2, "bit_dependent": ["sha256 [0-9a-f]+"],
     "lines": {"max diff": {"atol": 1e-6}}}

``lines`` maps a regular expression, searched in the committed line that holds a number, to
the tolerance for the numbers on such lines (the first match wins), so one cell can hold an
accuracy compared to 0.01 and a float32 round-off compared to 1e-6. ``numbers`` does the same
for single numbers in a table: its expressions are searched in the committed line *up to*
the number (so ``"\\]\\s+$"`` picks the number right after a bracketed interval); it wins
over ``lines``.

Two printed numbers ``a`` (committed) and ``b`` agree when
``|a - b| <= atol + rtol * |a| + unit``, where ``unit`` is one unit in the last digit
printed (a value on a rounding boundary can print either way). Integers (counts) agree
when ``|a - b| <= counts``, which is 0 unless declared. In both modes runs of spaces count
as one, since the width of a column of masked or moved numbers is not a result.

Example:
    >>> loose = Tolerance(atol=0.01)
    >>> compare_text("accuracy 0.848", "accuracy 0.851", loose) is None
    True
    >>> print(compare_text("accuracy 0.848", "accuracy 0.872", loose))
    0.872 differs from the committed 0.848 by 0.024, more than the tolerance 0.011 (atol=0.01, rtol=0, last digit 0.001) in: accuracy 0.848
"""

from __future__ import annotations

import configparser
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

METADATA_KEY = "mlcourse"
COMPARE_KEY = "compare"  # tolerances, in notebook and cell metadata
NUMERICS_KEY = "numerics"  # the fingerprint of the kernel that made the committed outputs
# nbval's tag for a cell whose output is never compared: only for machine facts (the run
# record's table, a profiler's timing table), never for a result.
IGNORE_TAG = "nbval-ignore-output"
# Output data compared as text; images and widget views are not compared.
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")
SANITIZE_FILE = Path(__file__).with_name("output_sanitize.cfg")
# A number: not glued to a word or a dotted version on its left, not followed by more digits.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\.?\d)")


@dataclass(frozen=True)
class Tolerance:
    """How far a printed number may move when the numerics fingerprint differs.

    Attributes:
        rtol: relative tolerance, as a fraction of the committed value.
        atol: absolute tolerance.
        counts: how far an integer may move (0: counts are exact).
        bit_dependent: regular expressions whose matches depend on the exact bits and are
            masked, only where the fingerprints differ.
        lines: (regular expression, tolerance) pairs: numbers on a committed line the
            expression matches use that tolerance instead (the first match wins).
        numbers: (regular expression, tolerance) pairs for single numbers: searched in the
            committed line up to the number; wins over ``lines``.
    """

    rtol: float = 0.0
    atol: float = 0.0
    counts: int = 0
    bit_dependent: tuple[str, ...] = field(default=())
    lines: tuple[tuple[str, Tolerance], ...] = field(default=())
    numbers: tuple[tuple[str, Tolerance], ...] = field(default=())

    def for_number(self, line: str, before: str) -> Tolerance:
        """The tolerance for the number that follows ``before`` on the committed ``line``.

        Example:
            >>> t = Tolerance.from_metadata({"atol": 0.01, "numbers": {"p = $": {"rtol": 1}}})
            >>> t.for_number("acc 0.9, p = 0.3", "acc 0.9, p = ").rtol
            1
            >>> t.for_number("acc 0.9, p = 0.3", "acc ").rtol
            0.0
        """
        for pattern, tolerance in self.numbers:
            if re.search(pattern, before):
                return tolerance
        return self.for_line(line)

    def for_line(self, line: str) -> Tolerance:
        """The tolerance for numbers on ``line`` (a committed line).

        Example:
            >>> t = Tolerance.from_metadata({"atol": 0.01, "lines": {"max diff": {"atol": 1e-6}}})
            >>> t.for_line("SGD max diff 2.4e-07").atol, t.for_line("accuracy 0.9").atol
            (1e-06, 0.01)
        """
        for pattern, tolerance in self.lines:
            if re.search(pattern, line):
                return tolerance
        return self

    @classmethod
    def from_metadata(cls, *layers: Mapping[str, Any] | None) -> Tolerance:
        """Merge ``mlcourse.compare`` mappings, later layers winning, checking every key.

        Example:
            >>> Tolerance.from_metadata({"atol": 0.1}, {"rtol": 0.5}).atol
            0.1
            >>> Tolerance.from_metadata({"atoll": 0.1})
            Traceback (most recent call last):
            ...
            ValueError: unknown tolerance key 'atoll'; expected one of 'rtol', 'atol', 'counts', 'bit_dependent', 'lines', 'numbers'.
        """
        values: dict[str, Any] = {}
        names = [f.name for f in fields(cls)]
        for layer in layers:
            for key, value in (layer or {}).items():
                if key not in names:
                    raise ValueError(
                        f"unknown tolerance key {key!r}; expected one of "
                        f"{', '.join(repr(n) for n in names)}."
                    )
                values[key] = value
        lines = values.pop("lines", {})
        numbers = values.pop("numbers", {})
        bit_dependent = tuple(values.pop("bit_dependent", ()))
        if isinstance(lines, Mapping):  # from metadata: {pattern: overrides}
            lines = tuple((p, cls.from_metadata(values, o)) for p, o in lines.items())
        if isinstance(numbers, Mapping):
            numbers = tuple((p, cls.from_metadata(values, o)) for p, o in numbers.items())
        tolerance = cls(
            **values, bit_dependent=bit_dependent, lines=tuple(lines), numbers=tuple(numbers)
        )
        tolerance.check()
        return tolerance

    def check(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name}={value!r} must be a finite number >= 0.")
        if not (isinstance(self.counts, int) and self.counts >= 0):
            raise ValueError(f"tolerance counts={self.counts!r} must be an integer >= 0.")
        for pattern in (*self.bit_dependent, *(p for p, _ in (*self.lines, *self.numbers))):
            re.compile(pattern)


def load_sanitizers(path: Path = SANITIZE_FILE) -> list[tuple[re.Pattern[str], str]]:
    """The masks for values that vary from run to run, in nbval's sanitiser file format."""
    parser = configparser.ConfigParser()
    parser.read_string(path.read_text())
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


SANITIZERS = load_sanitizers()


def sanitize(text: str) -> str:
    """Mask measured values (``~12.3``), plain timings and memory addresses.

    Example:
        >>> sanitize("took 1.5 s, speed-up ~3.1x at 0x7f3a2b1c4d50")
        'took <time>, speed-up ~<measured>x at 0x<address>'
    """
    for pattern, replacement in SANITIZERS:
        text = pattern.sub(replacement, text)
    return text


def compare_text(committed: str, new: str, tolerance: Tolerance | None) -> str | None:
    """``None`` when ``new`` matches ``committed``, else what differs first.

    ``tolerance=None`` asks for identical text (same fingerprint); both texts are
    sanitised first either way.

    Example:
        >>> compare_text("loss 0.25", "loss 0.25", None) is None
        True
        >>> compare_text("loss 0.25", "loss 0.26", None)
        "text differs: 'loss 0.26' where the committed output has 'loss 0.25'"
    """
    committed, new = _squeeze(sanitize(committed)), _squeeze(sanitize(new))
    if tolerance is None:
        if committed == new:
            return None
        return _first_text_difference(committed, new)
    for pattern in tolerance.bit_dependent:
        committed = re.sub(pattern, "<bit-dependent>", committed)
        new = re.sub(pattern, "<bit-dependent>", new)
    parts_a, parts_b = NUMBER.split(committed), NUMBER.split(new)
    numbers_a, numbers_b = NUMBER.findall(committed), NUMBER.findall(new)
    if parts_a != parts_b or len(numbers_a) != len(numbers_b):
        return _first_text_difference(
            NUMBER.sub("<number>", committed), NUMBER.sub("<number>", new)
        )
    problems = []
    for index, (a, b) in enumerate(zip(numbers_a, numbers_b, strict=True)):
        line = _context(parts_a, numbers_a, index)
        problem = compare_numbers(
            a, b, tolerance.for_number(line, _before(parts_a, numbers_a, index))
        )
        if problem:
            problems.append(f"{problem} in: {line}")
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more numbers out of tolerance)" if len(problems) > 1 else ""
    return problems[0] + more


def compare_numbers(committed: str, new: str, tolerance: Tolerance) -> str | None:
    """``None`` when two printed numbers agree within ``tolerance``, else why not.

    Example:
        >>> compare_numbers("2.4e-07", "1.8e-07", Tolerance(atol=1e-6)) is None
        True
        >>> compare_numbers("31", "32", Tolerance())
        'count 32 differs from the committed 31 (counts may move by 0)'
    """
    a, b = float(committed), float(new)
    if _is_integer(committed) and _is_integer(new):
        if abs(a - b) <= tolerance.counts:
            return None
        return f"count {new} differs from the committed {committed} (counts may move by {tolerance.counts})"
    unit = max(_last_digit(committed), _last_digit(new))
    allowed = tolerance.atol + tolerance.rtol * abs(a) + unit
    if abs(a - b) <= allowed * (1 + 1e-9):
        return None
    return (
        f"{new} differs from the committed {committed} by {abs(a - b):.3g}, more than the "
        f"tolerance {allowed:.3g} (atol={tolerance.atol:g}, rtol={tolerance.rtol:g}, "
        f"last digit {unit:g})"
    )


@dataclass(frozen=True)
class Mismatch:
    """One code cell whose outputs do not match the committed ones."""

    cell: int
    message: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.message}"


def compare_cell(
    committed: Mapping[str, Any], executed: Mapping[str, Any], tolerance: Tolerance | None
) -> str | None:
    """Compare the outputs of one code cell; ``None`` when they match."""
    old, new = _comparable_outputs(committed), _comparable_outputs(executed)
    if [k for k, _ in old] != [k for k, _ in new]:
        return f"the outputs are {[k for k, _ in new]}, the committed ones {[k for k, _ in old]}"
    for (kind, a), (_, b) in zip(old, new, strict=True):
        problem = compare_text(a, b, tolerance)
        if problem:
            return f"{kind}: {problem}"
    return None


def compare_notebooks(
    committed: Mapping[str, Any], executed: Mapping[str, Any], *, exact: bool
) -> list[Mismatch]:
    """Every code cell of ``executed`` compared with ``committed``.

    Args:
        exact: the fingerprints match: texts must be identical (after sanitising).
    """
    cells_a, cells_b = committed["cells"], executed["cells"]
    if [c["cell_type"] for c in cells_a] != [c["cell_type"] for c in cells_b]:
        return [Mismatch(-1, "the executed notebook has other cells than the committed one")]
    mismatches = []
    lesson = lesson_tolerance(committed)
    for index, (a, b) in enumerate(zip(cells_a, cells_b, strict=True)):
        if not is_compared(a):
            continue
        tolerance = None if exact else cell_tolerance(a, lesson)
        problem = compare_cell(a, b, tolerance)
        if problem:
            mismatches.append(Mismatch(index, problem))
    return mismatches


def is_compared(cell: Mapping[str, Any]) -> bool:
    """A code cell whose outputs are compared (not tagged :data:`IGNORE_TAG`)."""
    return cell["cell_type"] == "code" and IGNORE_TAG not in cell.get("metadata", {}).get(
        "tags", []
    )


def lesson_tolerance(notebook: Mapping[str, Any]) -> Tolerance:
    """The lesson-wide tolerance declared in the notebook's metadata (zero if none)."""
    return Tolerance.from_metadata(
        notebook.get("metadata", {}).get(METADATA_KEY, {}).get(COMPARE_KEY)
    )


def cell_tolerance(cell: Mapping[str, Any], lesson: Tolerance) -> Tolerance:
    """The lesson's tolerance with the cell's own declaration on top."""
    declared = cell.get("metadata", {}).get(METADATA_KEY, {}).get(COMPARE_KEY)
    if not declared:
        return lesson
    base = {f.name: getattr(lesson, f.name) for f in fields(lesson)}
    return Tolerance.from_metadata(base, declared)


def recorded_fingerprint(notebook: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The numerics fingerprint stored with the committed outputs, if any."""
    return notebook.get("metadata", {}).get(METADATA_KEY, {}).get(NUMERICS_KEY)


def _comparable_outputs(cell: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, text) per output, consecutive stream chunks of one stream joined (how a
    kernel splits a stream into chunks depends on timing)."""
    result: list[tuple[str, str]] = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            name = f"stream:{output['name']}"
            text = _joined(output["text"])
            if result and result[-1][0] == name:
                result[-1] = (name, result[-1][1] + text)
            else:
                result.append((name, text))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            result.extend(
                (f"{kind}:{mime}", _joined(data[mime])) for mime in TEXT_MIMES if mime in data
            )
        elif kind == "error":
            result.append(("error", f"{output.get('ename')}: {output.get('evalue')}"))
    return result


def _squeeze(text: str) -> str:
    """Runs of spaces and tabs become one space; line breaks stay."""
    return re.sub(r"[ \t]+", " ", text)


def _joined(text: str | Sequence[str]) -> str:
    return text if isinstance(text, str) else "".join(text)


def _is_integer(token: str) -> bool:
    return not any(c in token for c in ".eE")


def _last_digit(token: str) -> float:
    """One unit in the last printed digit: 0.848 -> 0.001, 2.4e-07 -> 1e-08, 31 -> 1."""
    exponent = Decimal(token).as_tuple().exponent
    return 10.0 ** int(exponent) if isinstance(exponent, int) else 0.0


def _first_text_difference(a: str, b: str) -> str:
    lines_a, lines_b = a.splitlines(), b.splitlines()
    for line_a, line_b in zip(lines_a, lines_b, strict=False):
        if line_a != line_b:
            return f"text differs: {line_b.strip()!r} where the committed output has {line_a.strip()!r}"
    return f"the output has {len(lines_b)} lines, the committed one {len(lines_a)}"


def _before(parts: Sequence[str], numbers: Sequence[str], index: int) -> str:
    """The committed line up to number ``index`` (the number excluded)."""
    text = "".join(p + n for p, n in zip(parts[:index], numbers[:index], strict=True))
    text += parts[index]
    return text[text.rfind("\n") + 1 :]


def _context(parts: Sequence[str], numbers: Sequence[str], index: int) -> str:
    """The committed line holding number ``index``, for an error message."""
    after = "".join(
        p + n for p, n in zip(parts[index + 1 :], [*numbers[index + 1 :], ""], strict=True)
    )
    return (_before(parts, numbers, index) + numbers[index] + after.split("\n", 1)[0]).strip()
