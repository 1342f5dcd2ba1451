"""MLflow tracking for training runs, through ``MlflowClient`` (no global "active run").

Example:
    >>> tracking_uri("runs") == os.environ.get(TRACKING_URI_ENV, "sqlite:///runs/mlflow.db")
    True
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlcourse.integrity import atomic_write_text
from mlcourse.runrecord import git_info
from mlcourse.training.runs import DEFAULT_RUNS_DIR, RunPlan

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def tracking_uri(runs_dir: str | os.PathLike[str] = DEFAULT_RUNS_DIR) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``<runs_dir>/mlflow.db``."""
    uri = os.environ.get(TRACKING_URI_ENV)
    if uri:
        return uri
    return f"sqlite:///{Path(runs_dir).as_posix()}/mlflow.db"


def quiet_mlflow() -> None:
    """Keep MLflow (and the database libraries under it) from logging INFO lines to stderr."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # SQLAlchemy deprecation notices about MLflow's own code: nothing a learner can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow(\.|$)")


class Tracker:
    """Logs one run to MLflow.

    Parameters are logged when the run starts. Metrics are buffered and sent whenever a
    checkpoint is written (and at the end), so MLflow always holds at least what a resumed
    run continues from, with one database transaction per checkpoint rather than per value.
    A resumed run continues its MLflow run (its id is kept in ``mlflow_run.json``).
    """

    def __init__(self, plan: RunPlan, runs_dir: Path) -> None:
        self.pending: list[tuple[str, float, int]] = []
        self.uri = tracking_uri(runs_dir)
        self.client, experiment_id = _mlflow_client(
            self.uri, plan.config.tracking.experiment, runs_dir
        )
        saved = json.loads(plan.paths.mlflow.read_text()) if plan.paths.mlflow.exists() else None
        if saved and saved.get("tracking_uri") == self.uri:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        self.run_id = self.client.create_run(experiment_id, run_name=plan.name).info.run_id
        saved = {
            "run_id": self.run_id,
            "tracking_uri": self.uri,
            "experiment": plan.config.tracking.experiment,
        }
        atomic_write_text(plan.paths.mlflow, json.dumps(saved, indent=2) + "\n", overwrite=True)
        self._log(
            params=plan.config.flat(),
            tags={
                "mlcourse.run_dir": str(plan.paths.root),
                "mlcourse.dataset": plan.data.reference["name"],
                "mlcourse.git_commit": str((git_info() or {}).get("commit")),
                "mlcourse.world_size": plan.world_size,  # ranks of a data-parallel run
            },
        )

    def _log(self, *, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        self.client.log_batch(
            self.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """Buffer metrics at ``step`` until the next :meth:`flush`."""
        self.pending += [(k, float(v), step) for k, v in values.items()]

    def flush(self, tags: Mapping[str, Any] | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in self.pending]
        for start in range(0, max(len(metrics), 1), _BATCH):
            tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()] if start == 0 else []
            if metrics[start : start + _BATCH] or tag_list:
                self.client.log_batch(
                    self.run_id, metrics=metrics[start : start + _BATCH], tags=tag_list
                )
        self.pending = []

    def finish(self, status: str, tags: Mapping[str, Any] | None = None) -> None:
        self.flush(tags)
        self.client.set_terminated(self.run_id, status=status)


def _mlflow_client(uri: str, experiment: str, runs_dir: Path) -> tuple[Any, str]:
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    quiet_mlflow()  # mlflow sets its logger's level when imported
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return client, found.experiment_id
    location = None
    if not os.environ.get(TRACKING_URI_ENV):  # our own store: keep artifacts beside it
        location = (runs_dir / "mlflow-artifacts").resolve().as_uri()
    return client, client.create_experiment(experiment, artifact_location=location)
