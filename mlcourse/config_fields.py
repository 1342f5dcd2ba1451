"""One way to declare and check a config: typed fields with a check and a help text.

A config is a frozen dataclass deriving from :class:`Settings` whose fields are declared
with :func:`setting` (a value) or :func:`section` (a nested config). The same declaration
checks a value passed in Python, checks a mapping read from a file (every problem at once,
unknown keys with a "did you mean"), and documents the field (:func:`settings_table`).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Optim(Settings):
    ...     config_name = "optimizer config"
    ...     name: str = setting("sgd", Choice(("sgd", "adam")), "the update rule")
    ...     lr: float = setting(0.05, Number(0.0, low_open=True), "learning rate")
    >>> Optim.from_dict({"lr": 0.1}).lr
    0.1
    >>> Optim.from_dict({"name": "adamw", "lrr": 0.1})
    Traceback (most recent call last):
    ...
    mlcourse.config_fields.ConfigError: invalid optimizer config:
      - unknown key 'lrr' (did you mean 'lr'?); accepted keys: 'lr', 'name'.
      - name='adamw' is not supported; expected one of 'sgd', 'adam'.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from mlcourse.arguments import check_bool, check_choice, check_float, check_int

S = TypeVar("S", bound="Settings")
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
# Names become folder names (runs, artifact store), so they follow one rule.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ConfigError(ValueError):
    """A config is invalid; ``problems`` lists every reason, one per item."""

    def __init__(
        self, problems: Sequence[str], *, source: str | None = None, what: str = "config"
    ) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"invalid {what}{where}:\n" + "\n".join(f"  - {p}" for p in self.problems))


# --- checks: callables (name, value) -> cleaned value, with a description for the docs ------


@dataclass(frozen=True)
class Integer:
    """An integer (not a bool) in ``[low, high]``; also ``null`` when ``optional``."""

    low: int | None = None
    high: int | None = None
    optional: bool = False

    def __call__(self, name: str, value: Any) -> int | None:
        if value is None and self.optional:
            return None
        return check_int(name, value, min_value=self.low, max_value=self.high)

    @property
    def accepts(self) -> str:
        if self.high is not None:
            text = f"integer in [{self.low}, {self.high}]"
        else:
            text = "integer" if self.low is None else f"integer >= {self.low}"
        return text + (", or `null`" if self.optional else "")


@dataclass(frozen=True)
class Number:
    """A finite real number between ``low`` and ``high`` (open ends when asked)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __call__(self, name: str, value: Any) -> float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            raise TypeError(
                f"{name} must be a real number, got the text {value!r}. YAML reads numbers "
                "like 1e-3 as text; write 1.0e-3 (with a dot) or 0.001."
            )
        return check_float(
            name,
            value,
            min_value=self.low,
            max_value=self.high,
            min_inclusive=not self.low_open,
            max_inclusive=not self.high_open,
        )

    @property
    def accepts(self) -> str:
        if self.high is None:
            return f"number {'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"number in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Choice:
    """One of ``choices``."""

    choices: tuple[Any, ...]

    def __call__(self, name: str, value: Any) -> Any:
        return check_choice(name, value, self.choices)

    @property
    def accepts(self) -> str:
        return " \\| ".join(f"`{c}`" for c in self.choices)


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false`` (or also ``null`` when ``optional``)."""

    optional: bool = False

    def __call__(self, name: str, value: Any) -> bool | None:
        if value is None and self.optional:
            return None
        return check_bool(name, value)

    @property
    def accepts(self) -> str:
        return "`true` \\| `false` \\| `null`" if self.optional else "`true` \\| `false`"


@dataclass(frozen=True)
class Text:
    """Non-empty text; with ``name_like``, a folder-safe name (1-100 letters, digits,
    ``.``, ``_``, ``-``, starting with a letter or digit)."""

    name_like: bool = False

    def __call__(self, name: str, value: Any) -> str:
        if self.name_like and not (isinstance(value, str) and NAME_PATTERN.match(value)):
            raise ValueError(
                f"{name}={value!r} is not a valid name; use 1-100 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit."
            )
        if not isinstance(value, str) or not value.strip():
            raise TypeError(f"{name} must be a non-empty string, got {value!r}.")
        return value

    @property
    def accepts(self) -> str:
        return "name (letters, digits, `._-`)" if self.name_like else "text"


@dataclass(frozen=True)
class Widths:
    """A list of positive integers (layer widths); ``null`` too when ``optional``."""

    optional: bool = False

    def __call__(self, name: str, value: Any) -> tuple[int, ...] | None:
        if value is None and self.optional:
            return None
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"{name} must be a list of layer widths such as [64] or [128, 64] ([] for a "
                f"linear model), got {value!r} ({type(value).__name__})."
            )
        return tuple(check_int(f"{name}[{i}]", v, min_value=1) for i, v in enumerate(value))

    @property
    def accepts(self) -> str:
        return "list of widths >= 1" + (", or `null`" if self.optional else "")


# --- declaring fields -----------------------------------------------------------------------


def setting(
    default: Any, check: Any, help: str, *, only_for: tuple[str, tuple[Any, ...]] | None = None
) -> Any:
    """Declare a field: its default, its check, its help, and optionally the values of a
    sibling field it applies to (``only_for=("name", ("sgd",))``): set to anything but its
    default there, it is an error."""
    return field(default=default, metadata={"check": check, "help": help, "only_for": only_for})


def section(cls: type[Settings], help: str) -> Any:
    """Declare a nested config (a :class:`Settings` subclass) under a key of its own."""
    return field(default_factory=cls, metadata={"section": cls, "help": help})


class Settings:
    """Base of every config: values are checked on construction and by :meth:`from_dict`.

    Subclasses are frozen dataclasses; ``config_name`` names them in error messages.
    Override :meth:`consistency` for rules that involve several fields.
    """

    config_name: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        problems: list[str] = []
        for f in fields(self):  # type: ignore[arg-type]
            if "check" in f.metadata:
                value = _checked(f, getattr(self, f.name), f.name, problems)
                object.__setattr__(self, f.name, value)
            elif "section" in f.metadata and not isinstance(
                getattr(self, f.name), f.metadata["section"]
            ):
                problems.append(
                    f"{f.name} must be a {f.metadata['section'].__name__}, "
                    f"got {type(getattr(self, f.name)).__name__}."
                )
        if not problems:
            values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
            problems += _rule_problems(type(self), values, None, prefix="")
        if problems:
            raise ConfigError(problems, what=self.config_name)

    @classmethod
    def consistency(cls, values: Mapping[str, Any], *, prefix: str) -> list[str]:
        """Problems that involve several fields, given every field's (valid) value."""
        return []

    @classmethod
    def from_dict(cls: type[S], values: Any, *, source: str | None = None) -> S:
        """Check a mapping (e.g. read from a file); raise :class:`ConfigError` listing every
        problem, each named by its dotted key."""
        problems: list[str] = []
        built = cls.check_dict(values, prefix="", problems=problems)
        if built is None or problems:
            raise ConfigError(problems, source=source, what=cls.config_name)
        return built

    @classmethod
    def check_dict(cls: type[S], values: Any, *, prefix: str, problems: list[str]) -> S | None:
        """Like :meth:`from_dict`, but add problems to ``problems``; ``None`` if any."""
        if values is None:
            values = {}
        declared = [f for f in fields(cls) if f.init]  # type: ignore[arg-type]
        names = [f.name for f in declared]
        if not isinstance(values, Mapping):
            where = f"section {prefix.rstrip('.')!r}" if prefix else "the config"
            problems.append(
                f"{where} must be a mapping of settings, got {values!r} "
                f"({type(values).__name__}); accepted keys: {_quote(sorted(names))}."
            )
            return None
        before = len(problems)
        problems += unknown_keys(values, names, prefix=prefix)
        cleaned: dict[str, Any] = {}
        for f in declared:
            if f.name not in values:
                continue  # the default applies
            if "section" in f.metadata:
                child = f.metadata["section"]
                built = child.check_dict(
                    values[f.name], prefix=f"{prefix}{f.name}.", problems=problems
                )
                if built is not None:
                    cleaned[f.name] = built
            elif "check" in f.metadata:
                cleaned[f.name] = _checked(f, values[f.name], f"{prefix}{f.name}", problems)
        if len(problems) == before:
            merged = {f.name: cleaned.get(f.name, _default(f)) for f in declared}
            problems += _rule_problems(cls, merged, set(values), prefix=prefix)
        return cls(**cleaned) if len(problems) == before else None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples), ready for YAML or JSON."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = (
                value.to_dict()
                if isinstance(value, Settings)
                else list(value)
                if isinstance(value, tuple)
                else value
            )
        return out


def _checked(f: Field[Any], value: Any, name: str, problems: list[str]) -> Any:
    try:
        return f.metadata["check"](name, value)
    except (TypeError, ValueError) as error:
        problems.append(str(error))
        return value


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def _rule_problems(
    cls: type[Settings], values: Mapping[str, Any], given: set[str] | None, *, prefix: str
) -> list[str]:
    """Fields set (to a non-default value) where their ``only_for`` says they do nothing
    (only those in ``given``, when it is not ``None``), then the class's consistency rules."""
    problems = []
    for f in fields(cls):  # type: ignore[arg-type]
        rule = f.metadata.get("only_for")
        value = values[f.name]
        if rule is None or (given is not None and f.name not in given) or value == f.default:
            continue
        selector, users = rule
        chosen = values[selector]
        if chosen not in users:
            problems.append(
                f"{prefix}{f.name} is used only when {prefix}{selector} is one of "
                f"{_quote(users)}, but {prefix}{selector}={chosen!r}; remove it."
            )
    return problems + cls.consistency(values, prefix=prefix)


def unknown_keys(values: Mapping[str, Any], accepted: Sequence[str], *, prefix: str) -> list[str]:
    """One problem per key of ``values`` not in ``accepted``, with a "did you mean" hint.

    Example:
        >>> unknown_keys({"epoch": 3}, ["epochs", "seed"], prefix="")
        ["unknown key 'epoch' (did you mean 'epochs'?); accepted keys: 'epochs', 'seed'."]
    """
    problems = []
    where = f" in {prefix.rstrip('.')!r}" if prefix else ""
    for key in values:
        if key in accepted:
            continue
        close = difflib.get_close_matches(str(key), [str(a) for a in accepted], n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        problems.append(
            f"unknown key {prefix + str(key)!r}{hint}; accepted keys{where}: "
            f"{_quote(sorted(accepted))}."
        )
    return problems


def settings_table(cls: type[Settings], *, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, default, accepted values, help)`` for every setting, sections flattened.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Tiny(Settings):
        ...     seed: int = setting(0, Integer(0), "seed of the generator")
        >>> settings_table(Tiny)
        [('seed', '0', 'integer >= 0', 'seed of the generator')]
    """
    rows = []
    for f in fields(cls):  # type: ignore[arg-type]
        if "section" in f.metadata:
            rows += settings_table(f.metadata["section"], prefix=f"{prefix}{f.name}.")
        elif "check" in f.metadata:
            default = "" if f.default is MISSING else _yaml_text(f.default)
            meaning = f.metadata["help"]
            if f.metadata["only_for"] is not None:
                selector, users = f.metadata["only_for"]
                meaning += f" (only with `{prefix}{selector}`: {', '.join(map(str, users))})"
            rows.append((prefix + f.name, default, f.metadata["check"].accepts, meaning))
    return rows


def _yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _quote(items: Any) -> str:
    return ", ".join(repr(i) for i in items)
