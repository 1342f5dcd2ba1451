"""Opening a session of a run: where it starts or continues, and what its record says.

A session either creates the run folder (a new run) or records a resumed session in it,
after finding the verified checkpoint to continue from (:mod:`mlcourse.training.resume`).
On a data-parallel run rank 0 does all of it, and the other ranks load the checkpoint it
chose; the record also lists every rank's data shard (:func:`distributed_record`).

Example:
    >>> _relative(Path("runs/a/checkpoints/x"), Path("runs/a"))
    'checkpoints/x'
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, TextIO

from mlcourse.artifacts import load_checkpoint
from mlcourse.integrity import atomic_write_text
from mlcourse.numerics import numerics_fingerprint
from mlcourse.training.distributed import (
    DistributedSetupError,
    backend_for,
    gather_to_all,
    rank0_decides,
)
from mlcourse.training.report import say, start_line
from mlcourse.training.resume import ResumePoint, remove_stale_staging, resume_point
from mlcourse.training.runs import (
    RunPlan,
    create_run_dir,
    record_resumed_session,
    show_path,
    trim_metrics,
)
from mlcourse.training.shards import SHARD_RULE, check_shards, describe_shard, rank_seed
from mlcourse.training.state import Parts, Progress


def open_session(
    plan: RunPlan, out: TextIO, distributed: dict[str, Any] | None = None
) -> ResumePoint:
    """Find where to continue, clear staging left by killed saves, record the session.

    On a data-parallel run rank 0 does all of it; the other ranks load the checkpoint it
    chose (verified again as they load it).
    """

    if not plan.is_main:
        chosen = rank0_decides(plan.launch, lambda: None)
        return ResumePoint(None if chosen is None else load_checkpoint(chosen))
    point = _open_on_rank0(plan, out, distributed)
    path = None if point.checkpoint is None else str(point.checkpoint.path)
    rank0_decides(plan.launch, lambda: path)  # the other ranks wait for it here
    return point


def _open_on_rank0(plan: RunPlan, out: TextIO, distributed: dict[str, Any] | None) -> ResumePoint:
    point = resume_point(plan) if plan.mode == "resume" else ResumePoint(None)
    removed = remove_stale_staging(plan)
    for folder in removed:
        say(out, f"removed stale staging folder {show_path(folder)} (left by a killed save)")
    if point.skipped:
        say(out, point.describe())
    staging = [_relative(folder, plan.paths.root) for folder in removed]
    if plan.mode == "start":
        create_run_dir(plan, staging, distributed)
    else:
        record_resumed_session(plan, point.as_record(plan.paths.root), staging, distributed)
    return point


def distributed_record(plan: RunPlan, parts: Parts) -> dict[str, Any] | None:
    """What the run record says about a data-parallel run: the backend, the world size and
    every rank's data shard (gathered from the ranks, and checked: no overlap, no gap)."""
    launch = plan.launch
    if launch is None or not launch.is_data_parallel:
        return None
    shard = describe_shard(parts.loader, parts.generator)
    mine = {
        "rank": launch.rank,
        "local_rank": launch.local_rank,
        "device": str(plan.resources.device),
        "seed": rank_seed(plan.config.seed, launch.rank),
        "numerics_id": numerics_fingerprint()["id"],
        **shard,
    }
    shards = gather_to_all(mine)
    n_train = plan.data.reference["sizes"]["train"]
    problems = check_shards(shards, n_train)
    if problems:
        raise DistributedSetupError([f"{plan.name}: {p}" for p in problems])
    for entry in shards:
        del entry["indices"]
    return {
        "world_size": launch.world_size,
        "backend": backend_for(plan.resources.device),
        "backend_chosen_for": plan.resources.device.type,
        "global_batch_size": plan.config.batch_size,
        "shard_rule": SHARD_RULE,
        "same_numerics_on_every_rank": len({s["numerics_id"] for s in shards}) == 1,
        "shards": shards,
    }


def _relative(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.relative_to(root).as_posix()
    return path.name  # a run folder's own staging, beside it


def starting_progress(
    plan: RunPlan, parts: Parts, point: ResumePoint, out: TextIO, *, quiet: bool
) -> Progress:
    """Restore the parts from the resume checkpoint (if any) and say where training starts."""
    total = parts.steps_per_epoch * plan.config.epochs
    if point.checkpoint is not None:
        parts.restore(point.checkpoint.state, 0 if plan.launch is None else plan.launch.rank)
        progress = Progress.from_checkpoint(point.checkpoint)
        if plan.is_main:
            trim_metrics(plan.paths, progress.step)
        if not quiet:
            say(
                out,
                f"resuming run {plan.name!r} from step {progress.step} of {total} "
                f"(epoch {progress.epoch + 1}, batch {progress.batch})",
            )
        return progress
    if plan.mode == "resume":
        if plan.is_main:  # drop the lines of the lost session
            atomic_write_text(plan.paths.metrics, "", overwrite=True)
        if not quiet:
            say(out, f"run {plan.name!r} has no checkpoint yet; starting it from step 0")
    elif not quiet:
        say(out, start_line(plan, total, parts.steps_per_epoch))
    return Progress()
