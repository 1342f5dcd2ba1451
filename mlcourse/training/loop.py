"""The training loop: one planned run, checkpointed so that a resumed run ends bitwise equal.

:func:`run_training` opens a session (a new run folder, or a resumed one), builds what
trains (:class:`~mlcourse.training.state.Parts`), restores it from the resume checkpoint,
and trains, keeping where it stands in a :class:`~mlcourse.training.state.Progress`
record that every checkpoint stores.

``on_step``, if given, is called with the step number after every optimizer step (and
after that step's checkpoint and evaluation): a progress display, or a test that stops
the process at a known point.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from mlcourse.artifacts import Checkpoint
from mlcourse.integrity import atomic_write_text
from mlcourse.training.model import evaluate
from mlcourse.training.report import finished_lines, say, start_line
from mlcourse.training.resume import (
    ResumePoint,
    remove_stale_staging,
    resume_point,
    verify_finished,
)
from mlcourse.training.runs import (
    RunPlan,
    append_metrics,
    create_run_dir,
    record_resumed_session,
    show_path,
    trim_metrics,
    write_summary,
)
from mlcourse.training.state import CheckpointWriter, Parts, Progress, build_parts
from mlcourse.training.tracking import Tracker

StepHook = Callable[[int], None]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stops (its checkpoints stay)."""


def run_training(
    plan: RunPlan,
    *,
    runs_dir: Path,
    progress: bool = False,
    quiet: bool = False,
    out: TextIO | None = None,
    on_step: StepHook | None = None,
) -> dict[str, Any]:
    """Do (or finish) one planned run; return its summary (also in ``summary.json``)."""
    out = out or sys.stdout
    started = time.perf_counter()
    if plan.mode == "done":
        summary = verify_finished(plan)
        where = show_path(plan.paths.root)
        say(out, f"run {plan.name!r} already finished and verified; nothing to do ({where}).")
        return summary
    point = _open_session(plan, out)
    parts = build_parts(plan)
    state = _starting_progress(plan, parts, point, out, quiet=quiet)
    tracker = Tracker(plan, runs_dir) if plan.config.tracking.mlflow else None
    writer = CheckpointWriter(plan, parts, tracker)
    bar = _progress_bar(plan, parts.steps_per_epoch * plan.config.epochs, state.step, progress)
    try:
        final = _train(plan, parts, state, writer, bar, on_step) or point.checkpoint
        summary = write_summary(plan, final, time.perf_counter() - started)
        if tracker is not None:
            _finish_tracking(tracker, summary)
    except BaseException:
        bar.close()
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.finish("KILLED")
        raise
    bar.close()
    uri = tracker.uri if tracker is not None else None
    say(out, finished_lines(plan, summary, uri, quiet=quiet))
    return summary


def _open_session(plan: RunPlan, out: TextIO) -> ResumePoint:
    """Find where to continue, clear staging left by killed saves, record the session."""
    point = resume_point(plan) if plan.mode == "resume" else ResumePoint(None)
    removed = remove_stale_staging(plan)
    for folder in removed:
        say(out, f"removed stale staging folder {show_path(folder)} (left by a killed save)")
    if point.skipped:
        say(out, point.describe())
    staging = [_relative(folder, plan.paths.root) for folder in removed]
    if plan.mode == "start":
        create_run_dir(plan, staging)
    else:
        record_resumed_session(plan, point.as_record(plan.paths.root), staging)
    return point


def _relative(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.relative_to(root).as_posix()
    return path.name  # a run folder's own staging, beside it


def _starting_progress(
    plan: RunPlan, parts: Parts, point: ResumePoint, out: TextIO, *, quiet: bool
) -> Progress:
    """Restore the parts from the resume checkpoint (if any) and say where training starts."""
    total = parts.steps_per_epoch * plan.config.epochs
    if point.checkpoint is not None:
        parts.restore(point.checkpoint.state)
        progress = Progress.from_checkpoint(point.checkpoint)
        trim_metrics(plan.paths, progress.step)
        if not quiet:
            say(
                out,
                f"resuming run {plan.name!r} from step {progress.step} of {total} "
                f"(epoch {progress.epoch + 1}, batch {progress.batch})",
            )
        return progress
    if plan.mode == "resume":
        atomic_write_text(plan.paths.metrics, "", overwrite=True)  # lines of the lost session
        if not quiet:
            say(out, f"run {plan.name!r} has no checkpoint yet; starting it from step 0")
    elif not quiet:
        say(out, start_line(plan, total, parts.steps_per_epoch))
    return Progress()


def _train(
    plan: RunPlan,
    parts: Parts,
    progress: Progress,
    writer: CheckpointWriter,
    bar: Any,
    on_step: StepHook | None,
) -> Checkpoint | None:
    """Train until the last epoch; return the final checkpoint (``None`` if the run was
    already at its end)."""
    config, final = plan.config, None
    parts.model.train()
    while progress.epoch < config.epochs:
        epoch_start = parts.generator.get_state()  # the loader draws its order from here
        for index, (xb, yb) in enumerate(parts.loader):
            if index < progress.batch:
                continue  # trained on before the interruption
            _train_step(plan, parts, progress, xb, yb)
            bar.update(1)
            if progress.batch == parts.steps_per_epoch:
                final = _end_epoch(plan, parts, progress, writer, bar)
            elif config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                writer.save(progress, epoch_start, finished=False)
            if on_step is not None:
                on_step(progress.step)
    return final


def _train_step(
    plan: RunPlan, parts: Parts, progress: Progress, xb: torch.Tensor, yb: torch.Tensor
) -> None:
    device = plan.resources.device
    xb, yb = xb.to(device), yb.to(device)
    parts.optimizer.zero_grad(set_to_none=True)
    with plan.resources.autocast():
        loss = nn.functional.cross_entropy(parts.model(xb).float(), yb)
    parts.scaler.scale(loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.scheduler is not None:
        parts.scheduler.step()
    progress.step += 1
    progress.batch += 1
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise TrainingDiverged(
            f"the loss became {loss_value} at step {progress.step} (epoch {progress.epoch + 1}); "
            f"optimizer.lr={plan.config.optimizer.lr} is probably too high."
        )
    progress.loss_sum += loss_value * len(yb)
    progress.seen += len(yb)


def _end_epoch(
    plan: RunPlan, parts: Parts, progress: Progress, writer: CheckpointWriter, bar: Any
) -> Checkpoint | None:
    """Evaluate, log the epoch's metrics, checkpoint; the final checkpoint after the last."""
    config = plan.config
    progress.epoch += 1
    progress.batch = 0
    val = evaluate(parts.model, *plan.data.val)
    progress.last_eval = {
        "epoch": progress.epoch,
        "lr": parts.optimizer.param_groups[0]["lr"],
        "train_loss": progress.loss_sum / max(progress.seen, 1),
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
    }
    progress.loss_sum, progress.seen = 0.0, 0
    append_metrics(plan.paths, {"step": progress.step, **progress.last_eval})
    if writer.tracker is not None:
        logged = {k: v for k, v in progress.last_eval.items() if k != "epoch"}
        writer.tracker.metrics(logged, progress.step)
    bar.set_postfix(val_acc=f"{val['accuracy']:.3f}", refresh=False)
    if progress.epoch == config.epochs:
        test = evaluate(parts.model, *plan.data.test)
        progress.last_eval["test_loss"] = test["loss"]
        progress.last_eval["test_accuracy"] = test["accuracy"]
        return writer.save(progress, parts.generator.get_state(), finished=True)
    if config.checkpoint_every == 0 or progress.step % config.checkpoint_every == 0:
        writer.save(progress, parts.generator.get_state(), finished=False)
    return None


def _finish_tracking(tracker: Tracker, summary: dict[str, Any]) -> None:
    tests = {"test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"]}
    tracker.metrics(tests, summary["steps"])
    tags = {
        "mlcourse.checkpoint": summary["checkpoint"],
        "mlcourse.weights_sha256": summary["weights_sha256"],
    }
    tracker.finish("FINISHED", tags=tags)


def _progress_bar(plan: RunPlan, total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=plan.name,
        unit="step",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )
