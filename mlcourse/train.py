"""``python -m mlcourse.train``: the ``mlcourse-train`` command as a module.

The training command lives in :mod:`mlcourse.training` (one job per module, documented in
``docs/training_cli.md``; the console script calls :func:`mlcourse.training.cli.main`);
this module is its ``-m`` entry point. Loading it imports no numerical
library, so :func:`main` can pin the numerics environment before torch loads.

The names older code imported from here still resolve, from their new modules, when first
used: ``from mlcourse.train import load_data`` gives
:func:`mlcourse.training.data.load_data`. New code imports them from where they live.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlcourse.training.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

MOVED = {
    "load_data": "mlcourse.training.data",
    "DataSplits": "mlcourse.training.data",
    "evaluate": "mlcourse.training.model",
    "build_model": "mlcourse.training.model",
    "load_trained_model": "mlcourse.training.checkpoints",
    "latest_checkpoint": "mlcourse.training.checkpoints",
    "read_metrics": "mlcourse.training.runs",
    "quiet_mlflow": "mlcourse.training.tracking",
    "tracking_uri": "mlcourse.training.tracking",
    "run_training": "mlcourse.training.loop",
    "plan_runs": "mlcourse.training.planning",
}


def __getattr__(name: str) -> Any:
    """Resolve a name that moved to :mod:`mlcourse.training` (see :data:`MOVED`)."""
    module = MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'mlcourse.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if __name__ == "__main__":
    raise SystemExit(main())
