"""What a checkpoint holds: the parts that train, where training stands, every generator.

A resumed run rebuilds the :class:`Parts` exactly as the first session did
(:func:`build_parts`), then restores them, the global random number generators and the
:class:`Progress` record from the checkpoint, which makes its final weights bitwise equal
to those of a run that was never interrupted.

Example:
    >>> Progress(step=40, epoch=1, batch=5).state(finished=False)
    {'step': 40, 'epoch': 1, 'batch': 5, 'loss_sum': 0.0, 'seen': 0, 'finished': False}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlcourse.artifacts import Checkpoint
from mlcourse.seeding import (
    capture_rng_state,
    make_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
)
from mlcourse.training.model import build_model, build_optimizer, build_scheduler
from mlcourse.training.runs import RunPlan
from mlcourse.training.tracking import Tracker


@dataclass
class Progress:
    """Where training stands; a checkpoint stores it to continue exactly there."""

    step: int = 0
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    loss_sum: float = 0.0  # summed over the examples of the current epoch so far
    seen: int = 0
    last_eval: dict[str, Any] = field(default_factory=dict)

    def state(self, *, finished: bool) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "loss_sum": self.loss_sum,
            "seen": self.seen,
            "finished": finished,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> Progress:
        saved = checkpoint.state["progress"]
        metrics = checkpoint.metadata["metrics"]
        return cls(
            step=saved["step"],
            epoch=saved["epoch"],
            batch=saved["batch"],
            loss_sum=saved["loss_sum"],
            seen=saved["seen"],
            last_eval={k: v for k, v in metrics.items() if k != "step"},
        )


@dataclass
class Parts:
    """What trains: model, optimizer, schedule, gradient scaler and the shuffling loader."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    loader: torch.utils.data.DataLoader

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.generator.set_state(state["rng"]["loader"])


def build_parts(plan: RunPlan) -> Parts:
    """Seed everything, then build the parts in a fixed order (initialisation draws)."""
    config = plan.config
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    data = plan.data
    model = build_model(config.model, data.n_features, data.n_classes, widths=plan.widths)
    model = model.to(plan.resources.device)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    generator = make_generator(config.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*data.train),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        worker_init_fn=seed_worker,
    )
    scheduler = build_scheduler(config.scheduler, optimizer, len(loader) * config.epochs)
    scaler = plan.resources.grad_scaler()
    return Parts(model, optimizer, scheduler, scaler, generator, loader)


class CheckpointWriter:
    """Saves resumable checkpoints of one run (and sends buffered metrics to MLflow)."""

    def __init__(self, plan: RunPlan, parts: Parts, tracker: Tracker | None) -> None:
        self.plan, self.parts, self.tracker = plan, parts, tracker
        self.store = plan.paths.store()
        self.record = json.loads(plan.paths.record.read_text(encoding="utf-8"))

    def save(self, progress: Progress, loader_state: torch.Tensor, *, finished: bool) -> Checkpoint:
        state = {
            **self.parts.state(),
            "rng": {**capture_rng_state(), "loader": loader_state.clone()},
            "progress": progress.state(finished=finished),
        }
        config = self.plan.config
        checkpoint = self.store.save(
            config.name,
            self.plan.name,
            state,
            config=config.to_dict(),
            metrics={"step": progress.step, **progress.last_eval},
            dataset=self.plan.data.reference,
            run_record=self.record,
            new_checkpoint_in_version=True,
        )
        if self.tracker is not None:
            self.tracker.flush()
        return checkpoint
