"""The training command's configuration: typed, nested, and checked before anything runs.

A config is a YAML or JSON mapping with a few top-level settings and one section per
concern (``data``, ``model``, ``optimizer``, ``scheduler``, ``resources``, ``tracking``).
:meth:`TrainConfig.from_dict` checks *every* key and value and reports all problems at
once: unknown keys (with the accepted ones and a "did you mean"), wrong types and
impossible values, each named by its dotted path.

Example:
    >>> config = TrainConfig.from_dict({"name": "demo", "optimizer": {"lr": 0.05}})
    >>> config.optimizer.lr, config.batch_size
    (0.05, 32)
    >>> TrainConfig.from_dict({"epochs": 0, "optimizer": {"lrr": 0.1}})
    Traceback (most recent call last):
    ...
    mlcourse.train_config.ConfigError: invalid training config:
      - epochs=0 is out of range; expected an integer in [1, inf).
      - unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?); accepted keys in 'optimizer': 'lr', 'momentum', 'name', 'weight_decay'.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from mlcourse.config_files import (
    ConfigFileError,
    ConfigSyntaxError,
    load_config_file,
    parse_config_text,
)
from mlcourse.resources import ResourceConfig
from mlcourse.synthetic import CLASSIFICATION_KINDS
from mlcourse.validation import check_bool, check_choice, check_float, check_int

DATASETS = ("digits", *CLASSIFICATION_KINDS)
ACTIVATIONS = ("relu", "tanh", "gelu")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "cosine", "step")
# Names become folder names in the artifact store, so they follow its rule.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

Check = Callable[[str, Any], Any]


class ConfigError(ValueError):
    """A config (or an override) is invalid; ``problems`` lists every reason, one per item."""

    def __init__(self, problems: Sequence[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(
            f"invalid training config{where}:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


# --- per-value checks: each returns the cleaned value or raises with a message --------------


def _integer(min_value: int | None = None, max_value: int | None = None) -> Check:
    return lambda name, value: check_int(name, value, min_value=min_value, max_value=max_value)


def _number(
    min_value: float | None = None,
    max_value: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> Check:
    def check(name: str, value: Any) -> float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            raise TypeError(
                f"{name} must be a real number, got the text {value!r}. YAML reads numbers "
                "like 1e-3 as text; write 1.0e-3 (with a dot) or 0.001."
            )
        return check_float(
            name,
            value,
            min_value=min_value,
            max_value=max_value,
            min_inclusive=min_inclusive,
            max_inclusive=max_inclusive,
        )

    return check


def _choice(choices: Sequence[str]) -> Check:
    return lambda name, value: check_choice(name, value, choices)


def _boolean(name: str, value: Any) -> bool:
    return check_bool(name, value)


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(
            f"{name}={value!r} is not a valid name; use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def _widths(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of layer widths such as [64] or [128, 64] ([] for a "
            f"linear model), got {value!r} ({type(value).__name__})."
        )
    return tuple(check_int(f"{name}[{i}]", v, min_value=1) for i, v in enumerate(value))


def _setting(default: Any, check: Check, help: str) -> Any:
    return field(default=default, metadata={"check": check, "help": help})


# --- the sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Which data to train on. Splits are fixed (60/20/20 train/val/test, by hashing ids)."""

    dataset: str = _setting("digits", _choice(DATASETS), "'digits' or a synthetic 2-D set")
    n_samples: int = _setting(1000, _integer(30), "synthetic sets only: number of points")
    noise: float = _setting(0.1, _number(0.0), "synthetic sets only: jitter of the points")
    n_classes: int = _setting(3, _integer(2), "synthetic 'blobs'/'spirals' only: classes")
    seed: int = _setting(0, _integer(0, 2**32 - 1), "synthetic sets only: generator seed")


@dataclass(frozen=True)
class ModelConfig:
    """A multi-layer perceptron; ``hidden: []`` gives softmax regression."""

    hidden: tuple[int, ...] = _setting((64,), _widths, "hidden layer widths, [] for linear")
    activation: str = _setting("relu", _choice(ACTIVATIONS), "activation between layers")
    dropout: float = _setting(
        0.0, _number(0.0, 1.0, max_inclusive=False), "dropout after each hidden layer"
    )


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _setting("sgd", _choice(OPTIMIZERS), "'sgd', 'adam' or 'adamw'")
    lr: float = _setting(0.05, _number(0.0, min_inclusive=False), "learning rate (> 0)")
    momentum: float = _setting(
        0.0, _number(0.0, 1.0, max_inclusive=False), "sgd only: momentum in [0, 1)"
    )
    weight_decay: float = _setting(0.0, _number(0.0), "L2 penalty (decoupled for adamw)")


@dataclass(frozen=True)
class SchedulerConfig:
    """Learning-rate schedule, stepped once per optimizer step."""

    name: str = _setting("constant", _choice(SCHEDULERS), "'constant', 'cosine' or 'step'")
    step_size: int = _setting(100, _integer(1), "step only: steps between decays")
    gamma: float = _setting(
        0.5, _number(0.0, 1.0, min_inclusive=False), "step only: decay factor in (0, 1]"
    )


@dataclass(frozen=True)
class TrackingConfig:
    mlflow: bool = _setting(False, _boolean, "log params and metrics to MLflow")
    experiment: str = _setting("mlcourse", _text, "MLflow experiment name")


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "tracking": TrackingConfig,
}
# Keys that only some choices use: (section, key) -> (selector key, values that use it).
# Setting one to a non-default value where it has no effect is an error.
_ONLY_FOR = {
    ("data", "n_samples"): ("dataset", CLASSIFICATION_KINDS),
    ("data", "noise"): ("dataset", CLASSIFICATION_KINDS),
    ("data", "n_classes"): ("dataset", ("blobs", "spirals")),
    ("data", "seed"): ("dataset", CLASSIFICATION_KINDS),
    ("optimizer", "momentum"): ("name", ("sgd",)),
    ("scheduler", "step_size"): ("name", ("step",)),
    ("scheduler", "gamma"): ("name", ("step",)),
}
_TOP_LEVEL = (
    "name", "seed", "epochs", "batch_size", "checkpoint_every", "deterministic", "threads",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, validated on construction via :meth:`from_dict`.

    Top-level settings:
        name: model name, used for the artifact store and as the default run name.
        seed: seeds Python, NumPy and torch (model init, shuffling, dropout).
        epochs, batch_size: length of training and examples per optimizer step.
        checkpoint_every: save a resumable checkpoint every this many steps; 0 saves at
            the end of each epoch only. The final state is always saved.
        deterministic: ask torch for deterministic kernels. Set it on accelerators for
            bitwise-reproducible runs; the CPU kernels these models use are deterministic
            already for a fixed thread count.
        threads: CPU threads torch may use (``torch.set_num_threads``); 0 keeps torch's
            default (one per core). Small models train fastest on one thread, and a fixed
            count keeps results identical on machines with more or fewer cores.
    """

    name: str = _setting("model", _name, "model name (artifact store, default run name)")
    seed: int = _setting(0, _integer(0, 2**32 - 1), "seed of every random number generator")
    epochs: int = _setting(10, _integer(1), "passes over the training set (>= 1)")
    batch_size: int = _setting(32, _integer(1), "examples per optimizer step (>= 1)")
    checkpoint_every: int = _setting(0, _integer(0), "steps between checkpoints; 0 = per epoch")
    deterministic: bool = _setting(False, _boolean, "deterministic kernels (accelerators)")
    threads: int = _setting(0, _integer(0, 1024), "CPU threads for torch; 0 = torch's default")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: ResourceConfig = field(default_factory=lambda: ResourceConfig(device="auto"))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str | None = None) -> TrainConfig:
        """Build and validate a config; raise :class:`ConfigError` listing every problem."""
        problems: list[str] = []
        if not isinstance(values, Mapping):
            raise ConfigError(
                [f"the config must be a mapping of settings, got {type(values).__name__}."],
                source=source,
            )
        accepted = (*_TOP_LEVEL, *_SECTIONS, "resources")
        problems += _unknown_keys(values, accepted, prefix="")
        top = _check_fields(cls, values, prefix="", problems=problems, only=_TOP_LEVEL)
        sections: dict[str, Any] = {}
        for key, section_cls in _SECTIONS.items():
            sections[key] = _build_section(key, section_cls, values.get(key, {}), problems)
        sections["resources"] = _build_resources(values.get("resources", {}), problems)
        if problems:
            raise ConfigError(problems, source=source)
        return cls(**top, **sections)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
        """Read a ``.yaml``/``.yml``/``.json`` config, apply ``key=value`` overrides, validate."""
        raw = read_config_file(path)
        return cls.from_dict(apply_overrides(raw, overrides), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples): what ``config.yaml`` in a run holds."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECTIONS or f.name == "resources":
                value = {g.name: _plain(getattr(value, g.name)) for g in fields(value)}
            out[f.name] = _plain(value)
        return out

    def flat(self) -> dict[str, Any]:
        """``{"optimizer.lr": 0.05, ...}``: one entry per setting, e.g. for MLflow params."""
        return flatten(self.to_dict())


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


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a config file's mapping (:func:`mlcourse.config_files.load_config_file`),
    turning every failure into a :class:`ConfigError`."""
    try:
        return load_config_file(path)
    except ConfigFileError as error:
        raise ConfigError(error.problems, source=str(path)) from None


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
    """Return a copy of ``raw`` with each ``"dotted.key=value"`` override applied.

    Example:
        >>> apply_overrides({"optimizer": {"lr": 0.1}}, ["optimizer.lr=0.05", "epochs=3"])
        {'optimizer': {'lr': 0.05}, 'epochs': 3}
    """
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
        raise ConfigError(problems, source="overrides")
    return result


def expand_sweep(raw: Mapping[str, Any], sweeps: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the swept values, as ``(run name suffix, raw config)`` pairs.

    Each sweep is ``key=v1,v2,...`` or ``key=[v1, v2, ...]`` (YAML list, needed when the
    values are themselves lists). The suffix names each swept value, e.g. ``-lr0.1-seed2``.

    Example:
        >>> [s for s, _ in expand_sweep({}, ["optimizer.lr=0.1,0.3", "seed=0,1"])]
        ['-lr0.1-seed0', '-lr0.1-seed1', '-lr0.3-seed0', '-lr0.3-seed1']
    """
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
            continue
        if any(k == key for k, _ in axes):
            problems.append(f"sweep key {key!r} is given twice; list all its values once.")
            continue
        axes.append((key, values))
    if problems:
        raise ConfigError(problems, source="sweep")
    runs = []
    for combination in itertools.product(*(values for _, values in axes)):
        overrides = {key: value for (key, _), value in zip(axes, combination, strict=True)}
        config = _deep_copy(raw)
        suffix = ""
        for key, value in overrides.items():
            try:
                _set_dotted(config, key, value)
            except ValueError as error:
                raise ConfigError([str(error)], source="sweep") from None
            suffix += f"-{key.rsplit('.', 1)[-1]}{_slug(value)}"
        runs.append((suffix, config))
    return runs


# --- helpers ----------------------------------------------------------------------------------


def _check_fields(
    cls: type,
    values: Mapping[str, Any],
    *,
    prefix: str,
    problems: list[str],
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    cleaned = {}
    for f in fields(cls):
        if "check" not in f.metadata or (only is not None and f.name not in only):
            continue
        if f.name not in values:
            continue  # the dataclass default applies
        try:
            cleaned[f.name] = f.metadata["check"](f"{prefix}{f.name}", values[f.name])
        except (TypeError, ValueError) as error:
            problems.append(str(error))
    return cleaned


def _build_section(key: str, cls: type, values: Any, problems: list[str]) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        problems.append(
            f"section {key!r} must be a mapping of settings, got {values!r} "
            f"({type(values).__name__}); accepted keys: {_quote(f.name for f in fields(cls))}."
        )
        return None
    before = len(problems)
    problems += _unknown_keys(values, [f.name for f in fields(cls)], prefix=f"{key}.")
    cleaned = _check_fields(cls, values, prefix=f"{key}.", problems=problems)
    section = cls(**cleaned) if len(problems) == before else None
    if section is not None:
        for (where, name), (selector, users) in _ONLY_FOR.items():
            if where != key or name not in values:
                continue
            chosen = getattr(section, selector)
            if chosen not in users and getattr(section, name) != getattr(cls(), name):
                problems.append(
                    f"{key}.{name} is used only when {key}.{selector} is one of "
                    f"{_quote(users)}, but {key}.{selector}={chosen!r}; remove it."
                )
    two_classes = isinstance(section, DataConfig) and section.dataset in ("moons", "circles")
    if two_classes and "n_classes" in values and section.n_classes != 2:
        problems.append(f"data.dataset={section.dataset!r} has exactly 2 classes.")
    return section


def _build_resources(values: Any, problems: list[str]) -> ResourceConfig | None:
    if values is None:
        values = {}
    accepted = [f.name for f in fields(ResourceConfig)]
    if not isinstance(values, Mapping):
        problems.append(
            f"section 'resources' must be a mapping, got {values!r}; accepted keys: "
            f"{_quote(accepted)}."
        )
        return None
    unknown = _unknown_keys(values, accepted, prefix="resources.")
    if unknown:
        problems += unknown
        return None
    try:
        resources = ResourceConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        problems.append(f"resources.{error}")
        return None
    if resources.precision == "int8":
        problems.append(
            "resources.precision='int8' is for inference (dynamic quantisation), not "
            "training; expected one of 'fp32', 'fp16', 'bf16'."
        )
        return None
    return resources


def _unknown_keys(values: Mapping[str, Any], accepted: Sequence[str], *, prefix: str) -> list[str]:
    problems = []
    section = prefix.rstrip(".") or "the top level"
    for key in values:
        if key in accepted:
            continue
        close = difflib.get_close_matches(str(key), accepted, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        where = f"'{section}'" if prefix else section
        problems.append(
            f"unknown key {prefix + str(key)!r}{hint}; accepted keys in {where}: "
            f"{_quote(sorted(accepted))}."
        )
    return problems


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


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_slug(v) for v in value) or "none"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "none"


def _quote(items: Any) -> str:
    return ", ".join(repr(i) for i in items)
