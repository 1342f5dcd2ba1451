"""The training command's configuration: typed, nested, and checked before anything runs.

A config is a YAML or JSON mapping with a few top-level settings and one section per
concern (``data``, ``model``, ``optimizer``, ``scheduler``, ``resources``, ``tracking``).
Every field is declared once, with :func:`mlcourse.config_fields.setting` (the same way
as :class:`mlcourse.resources.ResourceConfig`): the declaration checks the value, reports
every problem at once (unknown keys with the accepted ones and a "did you mean"), and
documents the field (:func:`options_markdown`, the table in ``docs/training_cli.md``).

Example:
    >>> config = TrainConfig.from_dict({"name": "demo", "optimizer": {"lr": 0.05}})
    >>> config.optimizer.lr, config.batch_size
    (0.05, 32)
    >>> TrainConfig.from_dict({"epochs": 0, "optimizer": {"lrr": 0.1}})
    Traceback (most recent call last):
    ...
    mlcourse.config_fields.ConfigError: invalid training config:
      - epochs=0 is out of range; expected an integer in [1, inf).
      - unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?); accepted keys in 'optimizer': 'lr', 'momentum', 'name', 'weight_decay'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlcourse.config_fields import (
    Boolean,
    Choice,
    ConfigError,
    Integer,
    Number,
    Settings,
    Text,
    Widths,
    section,
    setting,
    settings_table,
)
from mlcourse.resources import ResourceConfig
from mlcourse.seeding import MAX_SEED
from mlcourse.synthetic import CLASSIFICATION_KINDS
from mlcourse.training.overrides import apply_overrides, flatten, read_config_file

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrackingConfig",
    "TrainConfig",
    "options_markdown",
]

DATASETS = ("digits", *CLASSIFICATION_KINDS)
ACTIVATIONS = ("relu", "tanh", "gelu")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "cosine", "step")
SYNTHETIC = ("dataset", CLASSIFICATION_KINDS)


@dataclass(frozen=True)
class DataConfig(Settings):
    """Which data to train on. Splits are fixed (60/20/20 train/val/test, by hashing ids)."""

    config_name = "data config"

    dataset: str = setting("digits", Choice(DATASETS), "the shipped 8x8 digits or a 2-D set")
    n_samples: int = setting(1000, Integer(30), "number of points", only_for=SYNTHETIC)
    noise: float = setting(0.1, Number(0.0), "jitter of the points", only_for=SYNTHETIC)
    n_classes: int | None = setting(
        None,
        Integer(2, optional=True),
        "classes; `null`: 3",
        only_for=("dataset", ("blobs", "spirals")),
    )
    seed: int = setting(
        0,
        Integer(0, MAX_SEED),
        "seed of the data generator (the data stay fixed when `seed` changes)",
        only_for=SYNTHETIC,
    )


@dataclass(frozen=True)
class ModelConfig(Settings):
    """A multi-layer perceptron; ``hidden: []`` gives softmax regression."""

    config_name = "model config"

    hidden: tuple[int, ...] | None = setting(
        None,
        Widths(optional=True),
        "hidden widths, `[]` for softmax regression; `null`: by `resources.model_size` "
        "(small [64], medium [256, 128], large [1024, 512, 256])",
    )
    activation: str = setting("relu", Choice(ACTIVATIONS), "between hidden layers")
    dropout: float = setting(
        0.0, Number(0.0, 1.0, high_open=True), "dropout after each hidden layer"
    )


@dataclass(frozen=True)
class OptimizerConfig(Settings):
    config_name = "optimizer config"

    name: str = setting("sgd", Choice(OPTIMIZERS), "the update rule")
    lr: float = setting(0.05, Number(0.0, low_open=True), "learning rate")
    momentum: float = setting(
        0.0, Number(0.0, 1.0, high_open=True), "momentum", only_for=("name", ("sgd",))
    )
    weight_decay: float = setting(0.0, Number(0.0), "L2 penalty (decoupled for `adamw`)")


@dataclass(frozen=True)
class SchedulerConfig(Settings):
    """Learning-rate schedule, stepped once per optimizer step."""

    config_name = "scheduler config"

    name: str = setting("constant", Choice(SCHEDULERS), "`cosine` anneals to 0 over the run")
    step_size: int = setting(100, Integer(1), "steps between decays", only_for=("name", ("step",)))
    gamma: float = setting(
        0.5,
        Number(0.0, 1.0, low_open=True),
        "decay factor",
        only_for=("name", ("step",)),
    )


@dataclass(frozen=True)
class TrackingConfig(Settings):
    config_name = "tracking config"

    mlflow: bool = setting(False, Boolean(), "log to MLflow (or pass `--mlflow`)")
    experiment: str = setting("mlcourse", Text(), "MLflow experiment name")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything a training run needs, checked on construction and by :meth:`from_dict`.

    ``checkpoint_every=0`` saves at the end of each epoch only (the final state is always
    saved); ``deterministic`` asks torch for deterministic kernels (set it on GPUs; the
    CPU kernels these models use are deterministic already for a fixed thread count);
    ``threads=0`` keeps torch's default (small models train fastest on one thread, and a
    fixed count keeps results identical on machines with more or fewer cores).
    """

    config_name = "training config"

    name: str = setting("model", Text(name_like=True), "model name; the default run name")
    seed: int = setting(0, Integer(0, MAX_SEED), "seeds Python, NumPy and torch")
    epochs: int = setting(10, Integer(1), "passes over the training set")
    batch_size: int = setting(32, Integer(1), "examples per optimizer step")
    checkpoint_every: int = setting(0, Integer(0), "steps between checkpoints; 0: each epoch")
    deterministic: bool = setting(False, Boolean(), "deterministic torch kernels")
    threads: int = setting(0, Integer(0, 1024), "CPU threads for torch; 0: torch's default")
    data: DataConfig = section(DataConfig, "the data")
    model: ModelConfig = section(ModelConfig, "the model")
    optimizer: OptimizerConfig = section(OptimizerConfig, "the optimizer")
    scheduler: SchedulerConfig = section(SchedulerConfig, "the learning-rate schedule")
    resources: ResourceConfig = section(ResourceConfig, "device, precision, model size")
    tracking: TrackingConfig = section(TrackingConfig, "MLflow tracking")

    @classmethod
    def consistency(cls, values: Mapping[str, Any], *, prefix: str) -> list[str]:
        """int8 cannot be trained; the model's size is set in one place only."""
        resources, model = values["resources"], values["model"]
        problems = []
        if resources.precision == "int8":
            problems.append(
                f"{prefix}resources.precision='int8' stores frozen weights in int8 (for LoRA on "
                "a frozen base, see mlcourse.resources.quantize_frozen_linear); mlcourse-train "
                "trains every weight, which int8 cannot; use 'fp32', 'bf16' or 'fp16'."
            )
        if model.hidden is not None and resources.model_size != "auto":
            problems.append(
                f"{prefix}model.hidden={list(model.hidden)} and "
                f"{prefix}resources.model_size={resources.model_size!r} both set the model's "
                "size; remove one."
            )
        return problems

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
        """Read a ``.yaml``/``.yml``/``.json`` config, apply ``key=value`` overrides, check."""
        raw = read_config_file(path)
        return cls.from_dict(apply_overrides(raw, overrides), source=str(path))

    def flat(self) -> dict[str, Any]:
        """``{"optimizer.lr": 0.05, ...}``: one entry per setting, e.g. for MLflow params."""
        return flatten(self.to_dict())


def options_markdown() -> str:
    """The table of every setting (key, default, accepted values, meaning) that
    ``docs/training_cli.md`` shows, generated from the field declarations.

    Example:
        >>> print(options_markdown().splitlines()[2])
        | `name` | `model` | name (letters, digits, `._-`) | model name; the default run name |
    """
    lines = ["| Key | Default | Accepts | Meaning |", "|---|---|---|---|"]
    for key, default, accepts, meaning in settings_table(TrainConfig):
        lines.append(f"| `{key}` | `{default}` | {accepts} | {meaning} |")
    return "\n".join(lines) + "\n"
