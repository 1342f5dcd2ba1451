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
from mlcourse.training.shards import ShardedBatchSampler, rank_seed
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
    """What trains: model, optimizer, schedule, gradient scaler and the shuffling loader;
    on a data-parallel run also ``replica``, the model wrapped in DistributedDataParallel
    (train through it; ``model`` is what is saved and evaluated)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    loader: torch.utils.data.DataLoader
    replica: nn.Module | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def trained(self) -> nn.Module:
        """The module the training step calls: the DDP replica, or the model itself."""
        return self.replica if self.replica is not None else self.model

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }

    def restore(self, state: dict[str, Any], rank: int = 0) -> None:
        """Load a checkpoint's state; rank ``rank`` of a data-parallel run takes back its
        own random number generators."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"])
        self.generator.set_state(state["rng"]["loader"])


def build_parts(plan: RunPlan) -> Parts:
    """Seed everything, then build the parts in a fixed order (initialisation draws).

    On a data-parallel run every rank builds the same model and walks the same shuffled
    global batches, keeping its share of each (:class:`ShardedBatchSampler`); the model is
    wrapped in DistributedDataParallel, and ranks other than 0 then reseed their own
    random numbers (dropout) with :func:`~mlcourse.training.distributed.rank_seed`.
    """
    config = plan.config
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    data = plan.data
    model = build_model(config.model, data.n_features, data.n_classes, widths=plan.widths)
    model = model.to(plan.resources.device)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    generator = make_generator(config.seed)
    dataset = torch.utils.data.TensorDataset(*data.train)
    launch = plan.launch
    if launch is None or not launch.is_data_parallel:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            generator=generator,
            worker_init_fn=seed_worker,
        )
        replica = None
    else:  # the single-process loader's batches, each split across the ranks
        global_batches = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(dataset, generator=generator),
            config.batch_size,
            drop_last=False,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=ShardedBatchSampler(
                global_batches, rank=launch.rank, world_size=launch.world_size
            ),
            generator=generator,
            worker_init_fn=seed_worker,
        )
        device = plan.resources.device
        replica = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        if launch.rank != 0:
            seed_everything(rank_seed(config.seed, launch.rank), deterministic=config.deterministic)
    scheduler = build_scheduler(config.scheduler, optimizer, len(loader) * config.epochs)
    scaler = plan.resources.grad_scaler()
    return Parts(model, optimizer, scheduler, scaler, generator, loader, replica)


class CheckpointWriter:
    """Saves resumable checkpoints of one run (and sends buffered metrics to MLflow).

    On a data-parallel run every rank calls :meth:`save` at the same steps: the ranks send
    their random number generators to rank 0, which alone writes the checkpoint.
    """

    def __init__(self, plan: RunPlan, parts: Parts, tracker: Tracker | None) -> None:
        self.plan, self.parts, self.tracker = plan, parts, tracker
        self.store = plan.paths.store()
        self.record = (
            json.loads(plan.paths.record.read_text(encoding="utf-8")) if plan.is_main else {}
        )

    def save(
        self, progress: Progress, loader_state: torch.Tensor, *, finished: bool
    ) -> Checkpoint | None:
        """Write a checkpoint; returns it (``None`` on ranks other than 0)."""
        rng = capture_rng_state()
        every_rank = _gather_on_rank0(rng, self.plan)
        if not self.plan.is_main:
            return None
        state = {
            **self.parts.state(),
            "rng": {**rng, "loader": loader_state.clone()},
            "progress": progress.state(finished=finished),
        }
        if every_rank is not None:
            state["rng_ranks"] = every_rank
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


def _gather_on_rank0(value: Any, plan: RunPlan) -> list[Any] | None:
    """Every rank's ``value`` on rank 0 (``None`` elsewhere, and on a single process)."""
    if plan.launch is None or not plan.launch.is_data_parallel:
        return None
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * plan.world_size if plan.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
