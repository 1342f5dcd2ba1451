"""The training loop: one planned run, checkpointed so that a resumed run ends bitwise equal.

:func:`run_training` opens a session (a new run folder, or a resumed one), builds what
trains (:class:`~mlcourse.training.state.Parts`), restores it from the resume checkpoint,
and trains, keeping where it stands in a :class:`~mlcourse.training.state.Progress`
record that every checkpoint stores.

``on_step``, if given, is called with the step number after every optimizer step (and
after that step's checkpoint and evaluation): a progress display, or a test that stops
the process at a known point.

On a data-parallel run (``plan.launch``, under torchrun) every rank runs this loop in
step: rank 0 opens the session, evaluates, writes checkpoints, metrics and MLflow records
and prints; the others train their share of each global batch and follow rank 0's
decisions (:mod:`mlcourse.training.distributed`).
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from mlcourse.artifacts import Checkpoint
from mlcourse.training.distributed import rank0_decides
from mlcourse.training.model import evaluate
from mlcourse.training.report import finished_lines, say
from mlcourse.training.resume import verify_finished
from mlcourse.training.runs import RunPlan, append_metrics, show_path, write_summary
from mlcourse.training.session import distributed_record, open_session, starting_progress
from mlcourse.training.shards import global_batch_size, reduce_sums, shard_loss_weight
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
    """Do (or finish) one planned run; return its summary (also in ``summary.json``; on a
    data-parallel run, ranks other than 0 return an empty dict)."""
    out = (out or sys.stdout) if plan.is_main else io.StringIO()  # rank 0 speaks for all
    started = time.perf_counter()
    if plan.mode == "done":
        summary = rank0_decides(plan.launch, lambda: verify_finished(plan))
        where = show_path(plan.paths.root)
        say(out, f"run {plan.name!r} already finished and verified; nothing to do ({where}).")
        return summary
    parts = build_parts(plan)
    point = open_session(plan, out, distributed_record(plan, parts))
    state = starting_progress(plan, parts, point, out, quiet=quiet)
    tracker = Tracker(plan, runs_dir) if plan.config.tracking.mlflow and plan.is_main else None
    writer = CheckpointWriter(plan, parts, tracker)
    bar = _progress_bar(
        plan, parts.steps_per_epoch * plan.config.epochs, state.step, progress and plan.is_main
    )
    try:
        final = _train(plan, parts, state, writer, bar, on_step) or point.checkpoint
        if not plan.is_main:
            bar.close()
            return {}
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
            _train_step(plan, parts, progress, xb, yb, index)
            bar.update(1)
            if progress.batch == parts.steps_per_epoch:
                final = _end_epoch(plan, parts, progress, writer, bar)
            elif config.checkpoint_every and progress.step % config.checkpoint_every == 0:
                writer.save(progress, epoch_start, finished=False)
            if on_step is not None:
                on_step(progress.step)
    return final


def _train_step(
    plan: RunPlan,
    parts: Parts,
    progress: Progress,
    xb: torch.Tensor,
    yb: torch.Tensor,
    index: int,
) -> None:
    device = plan.resources.device
    xb, yb = xb.to(device), yb.to(device)
    parts.optimizer.zero_grad(set_to_none=True)
    data_parallel = parts.replica is not None
    if data_parallel:  # this rank's share of the global batch, weighed to average right
        n_global = global_batch_size(index, plan.config.batch_size, len(parts.loader.dataset))
        with plan.resources.autocast():
            logits = parts.trained(xb).float()
        local_sum = nn.functional.cross_entropy(logits, yb, reduction="sum")
        loss = local_sum * shard_loss_weight(n_global, plan.world_size)
    else:
        with plan.resources.autocast():
            loss = nn.functional.cross_entropy(parts.model(xb).float(), yb)
    parts.scaler.scale(loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.scheduler is not None:
        parts.scheduler.step()
    progress.step += 1
    progress.batch += 1
    if data_parallel:  # the global batch's mean loss, the same on every rank
        loss_sum, seen = reduce_sums([float(local_sum.detach()), len(yb)], device)
        loss_value, n_examples = loss_sum / seen, int(seen)
    else:
        loss_value, n_examples = float(loss.detach()), len(yb)
    if not math.isfinite(loss_value):
        raise TrainingDiverged(
            f"the loss became {loss_value} at step {progress.step} (epoch {progress.epoch + 1}); "
            f"optimizer.lr={plan.config.optimizer.lr} is probably too high."
        )
    progress.loss_sum += loss_value * n_examples
    progress.seen += n_examples


def _end_epoch(
    plan: RunPlan, parts: Parts, progress: Progress, writer: CheckpointWriter, bar: Any
) -> Checkpoint | None:
    """Evaluate, log the epoch's metrics, checkpoint; the final checkpoint after the last.
    (Rank 0 evaluates and logs; every rank takes part in the checkpoint.)"""
    config = plan.config
    progress.epoch += 1
    progress.batch = 0
    if not plan.is_main:
        progress.loss_sum, progress.seen = 0.0, 0
        at_end = progress.epoch == config.epochs
        if at_end or config.checkpoint_every == 0 or progress.step % config.checkpoint_every == 0:
            writer.save(progress, parts.generator.get_state(), finished=at_end)
        return None
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
