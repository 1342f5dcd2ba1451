"""Run folders: their layout, the plan of one run, and the records written into them.

Every run gets its own folder ``<runs-dir>/<run-name>/`` holding ``config.yaml`` (the
resolved config), ``run_record.json`` (environment, packages, git commit, seeds, data;
one ``run_record.resume-N.json`` per resumed session), ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final metrics) and ``checkpoints/`` (an
:class:`~mlcourse.artifacts.ArtifactStore`). A run folder is built under a hidden staging
name and renamed into place, so it appears whole or not at all.

Example:
    >>> paths = RunPaths(Path("runs") / "demo")
    >>> paths.summary.as_posix(), paths.checkpoints.as_posix()
    ('runs/demo/summary.json', 'runs/demo/checkpoints')
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcourse.artifacts import ArtifactStore, Checkpoint
from mlcourse.integrity import atomic_write_text, make_staging_dir
from mlcourse.resources import Resources
from mlcourse.runrecord import RunRecord, collect_run_record
from mlcourse.training.config import TrainConfig
from mlcourse.training.data import DataSplits
from mlcourse.training.distributed import Launch

DEFAULT_RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunPaths:
    """The layout of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def record(self) -> Path:
        return self.root / "run_record.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow_run.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.checkpoints)

    def session_record(self, session: int) -> Path:
        return self.root / f"run_record.resume-{session}.json"


@dataclass(frozen=True)
class RunPlan:
    """One run to do: checked config, resolved resources and model widths, the data, and
    whether it starts, resumes (from ``resume_from`` when given) or is already done;
    ``launch`` is this process's place among the ranks of a data-parallel run (``None``:
    a single process)."""

    name: str
    paths: RunPaths
    config: TrainConfig
    resources: Resources
    data: DataSplits
    widths: tuple[int, ...]
    mode: str  # "start" | "resume" | "done"
    argv: list[str] = field(default_factory=list)
    resume_from: Path | None = None
    launch: Launch | None = None

    @property
    def is_main(self) -> bool:
        """This process writes the run folder (always, unless it is a rank other than 0)."""
        return self.launch is None or self.launch.is_main

    @property
    def world_size(self) -> int:
        return 1 if self.launch is None else self.launch.world_size


def show_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it, else as given.

    Example:
        >>> show_path(Path.cwd() / "runs" / "a")
        'runs/a'
    """
    with contextlib.suppress(ValueError):
        if path.is_absolute():
            return path.relative_to(Path.cwd()).as_posix()
    return path.as_posix()


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch metrics a run logged, as a list of dicts (a line cut short by a kill
    is left out)."""
    path = RunPaths(Path(run_dir)).metrics
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def append_metrics(paths: RunPaths, row: Mapping[str, Any]) -> None:
    with open(paths.metrics, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(row)) + "\n")
        handle.flush()


def trim_metrics(paths: RunPaths, step: int) -> None:
    """Keep only the metrics lines up to ``step`` (those a resumed session continues from)."""
    rows = [r for r in read_metrics(paths.root) if r.get("step", 0) <= step]
    atomic_write_text(paths.metrics, "".join(json.dumps(r) + "\n" for r in rows), overwrite=True)


def create_run_dir(
    plan: RunPlan, removed_staging: list[str], distributed: dict[str, Any] | None = None
) -> None:
    """Write config and run record into a fresh folder, then move it into place."""
    import yaml

    parent = plan.paths.root.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(parent, plan.name)
    try:
        text = yaml.safe_dump(plan.config.to_dict(), sort_keys=False)
        atomic_write_text(staging / plan.paths.config.name, text)
        record = session_record(plan, 0, removed_staging, distributed)
        record.save(staging / plan.paths.record.name)
        if plan.paths.root.exists():
            raise FileExistsError(f"run directory {str(plan.paths.root)!r} appeared meanwhile.")
        os.rename(staging, plan.paths.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def session_record(
    plan: RunPlan,
    session: int,
    removed_staging: list[str],
    distributed: dict[str, Any] | None = None,
) -> RunRecord:
    """The run record of one session: environment, seeds, resources, data, config,
    ``run`` (name, session, command line, model widths, staging folders removed) and, for
    a data-parallel run, ``distributed`` (backend, world size, every rank's data shard)."""
    record = collect_run_record(
        seeds={"seed": plan.config.seed, "deterministic": plan.config.deterministic},
        resources=plan.resources,
        datasets=[plan.data.reference],
        hyperparameters=plan.config.to_dict(),
    )
    source = "model.hidden" if plan.config.model.hidden is not None else "resources.model_size"
    record["run"] = {
        "name": plan.name,
        "session": session,
        "command": list(plan.argv),
        "model": {"hidden": list(plan.widths), "from": source},
    }
    if removed_staging:
        record["run"]["removed_staging"] = removed_staging
    if distributed is not None:
        record["distributed"] = distributed
    return record


def record_resumed_session(
    plan: RunPlan,
    resumed_from: dict[str, Any] | None,
    removed_staging: list[str],
    distributed: dict[str, Any] | None = None,
) -> None:
    """Write ``run_record.resume-N.json`` for a resumed session (N = 1, 2, ...)."""
    session = 1
    while plan.paths.session_record(session).exists():
        session += 1
    record = session_record(plan, session, removed_staging, distributed)
    record["run"]["resumed_from"] = resumed_from
    record.save(plan.paths.session_record(session))


def write_summary(plan: RunPlan, final: Checkpoint, seconds: float) -> dict[str, Any]:
    """Write ``summary.json``; it is replaced only when a finished run was redone from a
    checkpoint chosen with ``--resume-from``."""
    metrics = final.metadata["metrics"]
    sessions = 1 + sum(1 for _ in plan.paths.root.glob("run_record.resume-*.json"))
    keys = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    summary = {
        "run_name": plan.name,
        "model_name": plan.config.name,
        "steps": metrics["step"],
        "epochs": metrics["epoch"],
        **{k: metrics[k] for k in keys},
        "sizes": plan.data.reference["sizes"],
        "checkpoint": final.path.relative_to(plan.paths.root).as_posix(),
        "weights_sha256": final.weights_sha256,
        "sessions": sessions,
        "last_session_seconds": round(seconds, 3),
    }
    if plan.world_size > 1:
        summary["world_size"] = plan.world_size
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write_text(plan.paths.summary, text, overwrite=plan.resume_from is not None)
    return summary
