"""The training config, kept importable here for older code (lesson 06 imports
``TrainConfig`` from here): it lives in :mod:`mlcourse.training.config`, the raw-config
helpers in :mod:`mlcourse.training.overrides`.

Example:
    >>> TrainConfig.from_dict({"epochs": 3}).epochs
    3
"""

from mlcourse.config_fields import ConfigError
from mlcourse.training.config import TrainConfig
from mlcourse.training.overrides import apply_overrides, expand_sweep, flatten

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "expand_sweep", "flatten"]
