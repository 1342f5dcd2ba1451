"""Raw configs before they are checked: reading a file, ``--set`` overrides, ``--sweep`` grids.

Everything here works on plain nested mappings (what a YAML or JSON file holds); checking
them is :class:`mlcourse.training.config.TrainConfig`'s job.

Example:
    >>> apply_overrides({"optimizer": {"lr": 0.1}}, ["optimizer.lr=0.05", "epochs=3"])
    {'optimizer': {'lr': 0.05}, 'epochs': 3}
    >>> [suffix for suffix, _ in expand_sweep({}, ["optimizer.lr=0.1,0.3", "seed=0,1"])]
    ['-lr0.1-seed0', '-lr0.1-seed1', '-lr0.3-seed0', '-lr0.3-seed1']
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlcourse.config_fields import ConfigError
from mlcourse.config_files import (
    ConfigFileError,
    ConfigSyntaxError,
    load_config_file,
    parse_config_text,
)
from mlcourse.course_files import CourseFilesNotFound, configs_dir

WHAT = "training config"


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a config file's mapping (:func:`mlcourse.config_files.load_config_file`),
    turning every failure into a :class:`~mlcourse.config_fields.ConfigError`."""
    try:
        return load_config_file(path)
    except ConfigFileError as error:
        problems = error.problems + shipped_config_hint(Path(path))
        raise ConfigError(problems, source=str(path), what=WHAT) from None


def shipped_config_hint(path: Path) -> list[str]:
    """Where the course's example config of that name is, when ``path`` does not exist
    (run outside the checkout, or from a wheel, ``configs/...`` is elsewhere)."""
    if path.exists():
        return []
    try:
        shipped = configs_dir() / path.name
    except CourseFilesNotFound:
        return []
    if not shipped.is_file():
        return []
    return [f"the course's example {path.name} is {shipped}: pass --config {shipped}"]


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys.

    Example:
        >>> flatten({"a": 1, "b": {"c": 2, "d": [3]}})
        {'a': 1, 'b.c': 2, 'b.d': [3]}
    """
    out: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def parse_value(text: str, *, source: str = "override") -> Any:
    """Read an override's value as YAML: ``0.05`` -> float, ``[64, 32]`` -> list, ``adam`` -> str.

    Text that is not YAML stays text; YAML that breaks the config rules (a repeated key)
    raises :class:`~mlcourse.config_files.ConfigFileError`.

    Example:
        >>> parse_value("0.05"), parse_value("[64, 32]"), parse_value("adam"), parse_value("true")
        (0.05, [64, 32], 'adam', True)
    """
    try:
        return parse_config_text(text, kind="yaml", source=source)
    except ConfigSyntaxError:
        return text


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``"dotted.key=value"`` override applied."""
    result = _deep_copy(raw)
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"override {item!r} must look like key=value, e.g. optimizer.lr=0.05.")
            continue
        try:
            _set_dotted(result, key, parse_value(text, source=f"--set {key}"))
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError(problems, source="overrides", what=WHAT)
    return result


def expand_sweep(raw: Mapping[str, Any], sweeps: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the swept values, as ``(run name suffix, raw config)`` pairs.

    Each sweep is ``key=v1,v2,...`` or ``key=[v1, v2, ...]`` (YAML list, needed when the
    values are themselves lists). The suffix names each swept value, e.g. ``-lr0.1-seed2``.
    """
    axes = _sweep_axes(sweeps)
    runs = []
    for combination in itertools.product(*(values for _, values in axes)):
        config = _deep_copy(raw)
        suffix = ""
        for (key, _), value in zip(axes, combination, strict=True):
            try:
                _set_dotted(config, key, value)
            except ValueError as error:
                raise ConfigError([str(error)], source="sweep", what=WHAT) from None
            suffix += f"-{key.rsplit('.', 1)[-1]}{_slug(value)}"
        runs.append((suffix, config))
    return runs


def _sweep_axes(sweeps: Sequence[str]) -> list[tuple[str, list[Any]]]:
    axes: list[tuple[str, list[Any]]] = []
    problems = []
    for item in sweeps:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            problems.append(f"sweep {item!r} must look like key=v1,v2,..., e.g. seed=0,1,2.")
            continue
        where = f"--sweep {key}"
        try:
            values = (
                parse_value(text, source=where)
                if text.startswith("[")
                else [parse_value(v.strip(), source=where) for v in text.split(",")]
            )
        except ConfigFileError as error:
            problems.append(str(error))
            continue
        if not isinstance(values, list) or not values:
            problems.append(f"sweep {item!r} must list at least one value.")
        elif any(k == key for k, _ in axes):
            problems.append(f"sweep key {key!r} is given twice; list all its values once.")
        else:
            axes.append((key, values))
    if problems:
        raise ConfigError(problems, source="sweep", what=WHAT)
    return axes


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"key {key!r} is not a dotted name such as optimizer.lr.")
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ValueError(
                f"cannot set {key!r}: {where!r} is a value ({child!r}), not a section."
            )
        node = child
    node[parts[-1]] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_slug(v) for v in value) or "none"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "none"
