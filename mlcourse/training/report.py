"""What the training command prints: where each run went and how it did.

Messages go to ``out`` (stdout by default); the progress bar and errors go to stderr.
Paths are shown relative to the working folder when they lie inside it.

Example:
    >>> show_uri("sqlite:///runs/mlflow.db")
    'sqlite:///runs/mlflow.db'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from mlcourse.training.distributed import backend_for
from mlcourse.training.runs import RunPlan, show_path


def say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def show_uri(uri: str) -> str:
    """A tracking URI with a local SQLite path shown like :func:`show_path` shows paths."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return prefix + show_path(Path(uri[len(prefix) :]))
    return uri


def start_line(plan: RunPlan, total_steps: int, steps_per_epoch: int) -> str:
    """What a run is about to do, e.g. ``run 'a': 700 steps (20 epochs x 35 batches) on
    cpu/fp32 -> runs/a``; a data-parallel run also says on how many ranks."""
    where = f"{plan.resources.device}/{plan.resources.precision}"
    if plan.world_size > 1:
        backend = backend_for(plan.resources.device)
        where = f"{plan.world_size} ranks ({backend}, {plan.resources.device.type}/{plan.resources.precision})"
    return (
        f"run {plan.name!r}: {total_steps} steps ({plan.config.epochs} epochs x "
        f"{steps_per_epoch} batches) on {where} -> {show_path(plan.paths.root)}"
    )


def finished_lines(
    plan: RunPlan, summary: Mapping[str, Any], tracking_uri: str | None, *, quiet: bool
) -> str:
    """The report of a finished run: one line with ``quiet``, else every file it wrote."""
    result = (
        f"val_accuracy={summary['val_accuracy']:.4f} test_accuracy={summary['test_accuracy']:.4f}"
    )
    paths = plan.paths
    if quiet:
        return f"run {plan.name!r}: {result} ({summary['steps']} steps) -> {show_path(paths.root)}"
    version_dir = paths.checkpoints / plan.config.name / plan.name
    kept = len(paths.store().timestamps(plan.config.name, plan.name))
    lines = [
        f"finished run {plan.name!r}: {summary['steps']} steps, {summary['epochs']} epochs "
        f"(~{summary['last_session_seconds']:.1f} s in this session)",
        f"  run directory  {show_path(paths.root)}/",
        f"  config         {show_path(paths.config)}",
        f"  run record     {show_path(paths.record)}",
        f"  metrics        {show_path(paths.metrics)} (one line per epoch)",
        f"  summary        {show_path(paths.summary)}",
        f"  checkpoints    {show_path(version_dir)}/ ({kept} kept; final at step {summary['steps']})",
    ]
    if tracking_uri is not None:
        lines.append(
            f"  mlflow         experiment {plan.config.tracking.experiment!r}, run "
            f"{plan.name!r} at {show_uri(tracking_uri)}"
        )
    lines.append(f"  result         {result}")
    return "\n".join(lines)
