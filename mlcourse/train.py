"""The training command: train a lesson model from a config file, resumably.

::

    python -m mlcourse.train --config configs/digits_mlp.yaml
    mlcourse-train --config configs/digits_mlp.yaml --set optimizer.lr=0.1 --run-name fast
    mlcourse-train --config configs/digits_mlp.yaml --sweep seed=0,1,2 --mlflow
    mlcourse-train --config configs/digits_mlp.yaml --resume     # after an interruption

Every run gets its own folder ``<runs-dir>/<run-name>/`` holding ``config.yaml`` (the
resolved config), ``run_record.json`` (environment, packages, git commit, seeds, data),
``metrics.jsonl`` (one line per epoch), ``summary.json`` (final metrics) and
``checkpoints/`` (an :class:`~mlcourse.artifacts.ArtifactStore`: verified, never
overwritten). A run folder that exists is never written over; ``--resume`` continues it
from its newest checkpoint, which holds the model, optimizer, scheduler, every random
number generator and the position in the data, so the final weights are bitwise the same
as those of an uninterrupted run.

Exit codes: 0 done, 1 a run failed while training, 2 bad config or command line (nothing
written), 130 interrupted (resume with ``--resume``).

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny.yaml").write_text("name: tiny\\nepochs: 1\\nmodel: {hidden: []}\\n")
    >>> main(["--config", str(folder / "tiny.yaml"), "--runs-dir", str(folder / "runs"),
    ...       "--quiet"])  # doctest: +ELLIPSIS
    run 'tiny': val_accuracy=... test_accuracy=... (35 steps) -> .../runs/tiny
    0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from mlcourse.artifacts import (
    ArtifactNotFoundError,
    ArtifactStore,
    Checkpoint,
    load_checkpoint,
    verify_checkpoint,
)
from mlcourse.config_files import ConfigFileError, load_config_file
from mlcourse.integrity import (
    ChecksumError,
    atomic_write_text,
    make_staging_dir,
    sha256_bytes,
    staging_label,
    stale_staging_dirs,
)
from mlcourse.resources import Resources, ResourceUnavailableError, resolve
from mlcourse.runrecord import collect_run_record, git_info
from mlcourse.seeding import make_generator, seed_everything, seed_worker
from mlcourse.train_config import (
    NAME_PATTERN,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    apply_overrides,
    expand_sweep,
    flatten,
    read_config_file,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_RUNS_DIR = "runs"
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
# Test hook: after this global step the process stops making progress (sleeps), so that a
# test can kill it at a known point. Never set it outside tests.
HANG_ENV = "MLCOURSE_TRAIN_TEST_HANG_AT_STEP"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


# --- run folders ------------------------------------------------------------------------------


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


def run_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The run's checkpoint folders, newest first (by their timestamp), unverified.

    Example:
        >>> run_checkpoints("no/such/run")
        []
    """
    root = RunPaths(Path(run_dir)).checkpoints
    if not root.is_dir():
        return []
    folders = [
        stamp
        for model in root.iterdir()
        if model.is_dir() and not model.name.startswith(".")
        for version in model.iterdir()
        if version.is_dir() and not version.name.startswith(".")
        for stamp in version.iterdir()
        if stamp.is_dir() and not stamp.name.startswith(".")
    ]
    return sorted(folders, key=lambda p: (p.name, str(p)), reverse=True)


def latest_checkpoint(run_dir: str | os.PathLike[str], *, load: bool = True) -> Checkpoint | None:
    """The run's newest checkpoint, verified (and its tensors loaded), or ``None``.

    Raises :class:`~mlcourse.integrity.ChecksumError` if the newest checkpoint is damaged.

    Example:
        >>> latest_checkpoint("no/such/run") is None
        True
    """
    folders = run_checkpoints(run_dir)
    if not folders:
        return None
    if not load:
        return Checkpoint(path=folders[0], metadata=verify_checkpoint(folders[0]), state=None)
    return load_checkpoint(folders[0])


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be trusted, or ``None`` if it verifies."""
    try:
        metadata = verify_checkpoint(folder)
        int(metadata["metrics"]["step"])
    except (ChecksumError, ArtifactNotFoundError) as error:
        return str(error)
    except (KeyError, TypeError, ValueError):
        return f"metadata.json in {_show(folder)!r} records no step."
    return None


# --- data and model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSplits:
    """Train/validation/test tensors and a reference to the data they came from."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    reference: dict[str, Any]

    @property
    def n_features(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.reference["n_classes"])


def load_data(config: DataConfig) -> DataSplits:
    """Load (or generate) the data and split it 60/20/20 by hashing example ids.

    The split never depends on the training seed, so runs with different seeds are scored
    on the same test examples.

    Example:
        >>> data = load_data(DataConfig(dataset="digits"))
        >>> data.n_features, data.n_classes, data.reference["name"]
        (64, 10, 'digits')
    """
    from mlcourse.splits import DEFAULT_SALT, hash_split

    if config.dataset == "digits":
        from mlcourse.datasets import digits_tensors, load_dataset

        parts = digits_tensors(SPLIT_FRACTIONS)
        reference = load_dataset("digits").reference()
        n_classes = 10
    else:
        from mlcourse.synthetic import make_classification_2d

        n_classes = config.n_classes if config.dataset in ("blobs", "spirals") else 2
        X, y = make_classification_2d(
            config.n_samples,
            kind=config.dataset,
            noise=config.noise,
            n_classes=n_classes,
            seed=config.seed,
        )
        split = hash_split(range(len(y)), SPLIT_FRACTIONS)
        parts = {k: (X[torch.from_numpy(i)], y[torch.from_numpy(i)]) for k, i in split.items()}
        reference = {
            "name": f"synthetic-{config.dataset}",
            "generator": "mlcourse.synthetic.make_classification_2d",
            "parameters": {
                "n_samples": config.n_samples,
                "noise": config.noise,
                "n_classes": n_classes,
                "seed": config.seed,
            },
            "sha256": {
                "X": sha256_bytes(X.numpy().tobytes()),
                "y": sha256_bytes(y.numpy().tobytes()),
            },
        }
    reference = {
        **reference,
        "split": {
            "method": "mlcourse.splits.hash_split",
            "salt": DEFAULT_SALT,
            "fractions": dict(SPLIT_FRACTIONS),
        },
        "sizes": {k: int(v[1].numel()) for k, v in parts.items()},
        "n_features": int(parts["train"][0].shape[1]),
        "n_classes": n_classes,
    }
    return DataSplits(parts["train"], parts["val"], parts["test"], reference)


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build_model(config: ModelConfig, n_features: int, n_classes: int) -> nn.Sequential:
    """A multi-layer perceptron ``Linear -> activation [-> Dropout] -> ... -> Linear``.

    Example:
        >>> build_model(ModelConfig(hidden=(8,)), n_features=4, n_classes=3)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=3, bias=True)
        )
    """
    layers: list[nn.Module] = []
    width = n_features
    for hidden in config.hidden:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def build_optimizer(config: OptimizerConfig, parameters: Any) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return kind(parameters, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    config: SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.gamma
        )
    return None


@torch.no_grad()
def evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048
) -> dict[str, Any]:
    """Mean cross-entropy, accuracy and per-example correctness (a bool tensor) of ``model``.

    Example:
        >>> model = build_model(ModelConfig(hidden=()), n_features=2, n_classes=2)
        >>> out = evaluate(model, torch.zeros(5, 2), torch.zeros(5, dtype=torch.long))
        >>> out["correct"].shape
        torch.Size([5])
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, correct = [], []
    for start in range(0, len(y), batch_size):
        xb = X[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        logits = model(xb).float()
        losses.append(nn.functional.cross_entropy(logits, yb, reduction="sum").cpu())
        correct.append((logits.argmax(dim=1) == yb).cpu())
    model.train(was_training)
    hits = torch.cat(correct)
    return {
        "loss": float(torch.stack(losses).sum() / len(y)),
        "accuracy": float(hits.double().mean()),
        "correct": hits,
    }


def load_trained_model(
    source: str | os.PathLike[str] | Checkpoint, *, map_location: str = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild a model from a checkpoint folder (verified first) or a run folder.

    A run folder gives its newest checkpoint. Returns the model in eval mode and the
    loaded :class:`~mlcourse.artifacts.Checkpoint` (config, metrics, data, run record).
    """
    if isinstance(source, Checkpoint) and source.state is not None:
        checkpoint = source
    else:
        path = Path(source.path if isinstance(source, Checkpoint) else source)
        if (path / "metadata.json").exists():
            checkpoint = load_checkpoint(path, map_location=map_location)
        else:
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"no checkpoint found in {str(path)!r}.")
            checkpoint = found
    config = TrainConfig.from_dict(checkpoint.metadata["config"])
    data = checkpoint.metadata["dataset"]
    model = build_model(config.model, data["n_features"], data["n_classes"])
    model.load_state_dict(checkpoint.state["model"])
    return model.eval(), checkpoint


# --- the training loop ------------------------------------------------------------------------


@dataclass
class RunPlan:
    """One run to do: validated config, resources and data, and whether it resumes."""

    name: str
    paths: RunPaths
    config: TrainConfig
    resources: Resources
    data: DataSplits
    mode: str  # "start" | "resume" | "done"
    argv: list[str] = field(default_factory=list)
    resume_from: Path | None = None  # a checkpoint chosen with --resume-from


class ResumeRefused(RuntimeError):
    """A run cannot be resumed (or re-verified) as it is; the message says what to do."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: a verified checkpoint (``None``: from step 0) and
    the newer checkpoints passed over, each with the reason."""

    checkpoint: Checkpoint | None
    skipped: tuple[tuple[Path, str], ...] = ()

    def as_record(self, root: Path) -> dict[str, Any] | None:
        if self.checkpoint is None:
            return None
        return {
            "checkpoint": self.checkpoint.path.relative_to(root).as_posix(),
            "step": self.checkpoint.metadata["metrics"]["step"],
            "skipped": [
                {"checkpoint": path.relative_to(root).as_posix(), "problem": problem}
                for path, problem in self.skipped
            ],
        }


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stops (its checkpoints stay)."""


class _Hang(Exception):
    pass


def _rng_state(loader_state: torch.Tensor) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "loader": loader_state.clone(),
    }


def _restore_rng(state: Mapping[str, Any]) -> torch.Tensor:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (
            python_state["version"],
            tuple(int(v) for v in python_state["state"].tolist()),
            python_state["gauss_next"],
        )
    )
    return state["loader"]


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch metrics a run logged, as a list of dicts."""
    return _read_metrics(RunPaths(Path(run_dir)).metrics)


class _Tracker:
    """Logs one run to MLflow through ``MlflowClient`` (no global "active run" state).

    Parameters are logged when the run starts. Metrics are buffered and sent whenever a
    checkpoint is written (and at the end), so MLflow always holds at least what a resumed
    run continues from, with one database transaction per checkpoint rather than per value.
    """

    def __init__(self, plan: RunPlan, runs_dir: Path) -> None:
        self.pending: list[tuple[str, float, int]] = []
        self.uri = tracking_uri(runs_dir)
        client, experiment_id = _mlflow_client(self.uri, plan.config.tracking.experiment, runs_dir)
        self.client = client
        saved = json.loads(plan.paths.mlflow.read_text()) if plan.paths.mlflow.exists() else None
        if saved and saved.get("tracking_uri") == self.uri:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment_id, run_name=plan.name)
            self.run_id = run.info.run_id
            atomic_write_text(
                plan.paths.mlflow,
                json.dumps(
                    {
                        "run_id": self.run_id,
                        "tracking_uri": self.uri,
                        "experiment": plan.config.tracking.experiment,
                    },
                    indent=2,
                )
                + "\n",
                overwrite=True,
            )
            self._log(
                params=plan.config.flat(),
                tags={
                    "mlcourse.run_dir": str(plan.paths.root),
                    "mlcourse.dataset": plan.data.reference["name"],
                    "mlcourse.git_commit": str((git_info() or {}).get("commit")),
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
        self.pending += [(k, float(v), step) for k, v in values.items()]

    def flush(self, tags: Mapping[str, Any] = ()) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in self.pending]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow's limit per batch
            tag_list = [RunTag(k, str(v)) for k, v in dict(tags).items()] if start == 0 else []
            if metrics[start : start + 1000] or tag_list:
                self.client.log_batch(
                    self.run_id, metrics=metrics[start : start + 1000], tags=tag_list
                )
        self.pending = []

    def finish(self, status: str, tags: Mapping[str, Any] = ()) -> None:
        self.flush(tags)
        self.client.set_terminated(self.run_id, status=status)


def tracking_uri(runs_dir: str | os.PathLike[str] = DEFAULT_RUNS_DIR) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``<runs_dir>/mlflow.db``.

    Example:
        >>> tracking_uri("runs") == os.environ.get(TRACKING_URI_ENV, "sqlite:///runs/mlflow.db")
        True
    """
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


def run_training(
    plan: RunPlan,
    *,
    runs_dir: Path,
    progress: bool = False,
    quiet: bool = False,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Do (or finish) one planned run; return its summary (also in ``summary.json``)."""
    out = out or sys.stdout
    config, paths = plan.config, plan.paths
    started = time.perf_counter()
    if plan.mode == "done":
        summary = _verify_finished(plan)
        _say(
            out,
            f"run {plan.name!r} already finished and verified; nothing to do "
            f"({_show(paths.root)}).",
        )
        return summary

    point = _resume_point(plan) if plan.mode == "resume" else ResumePoint(None)
    removed = _remove_stale_staging(plan, runs_dir)
    for folder in removed:
        _say(
            out,
            f"removed stale staging folder {_show(folder)} (left by a save that was killed "
            "part-way)",
        )
    if point.skipped:
        _say(out, _describe_fallback(point))
    staging = [_relative(folder, paths.root) for folder in removed]
    if plan.mode == "start":
        _create_run_dir(plan, staging)
    else:
        _record_session(plan, point, staging)
    resume_from = point.checkpoint

    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    device = plan.resources.device
    Xtr, ytr = plan.data.train
    model = build_model(config.model, plan.data.n_features, plan.data.n_classes).to(device)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    generator = make_generator(config.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Xtr, ytr),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        worker_init_fn=seed_worker,
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    scheduler = build_scheduler(config.scheduler, optimizer, total_steps)
    scaler = plan.resources.grad_scaler()

    step, epoch, skip = 0, 0, 0
    loss_sum, seen = 0.0, 0
    last_eval: dict[str, Any] = {}
    if resume_from is not None:
        state = resume_from.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        generator.set_state(_restore_rng(state["rng"]))
        progress_state = state["progress"]
        step, epoch, skip = progress_state["step"], progress_state["epoch"], progress_state["batch"]
        loss_sum, seen = progress_state["loss_sum"], progress_state["seen"]
        last_eval = {k: v for k, v in resume_from.metadata["metrics"].items() if k != "step"}
        rows = [r for r in _read_metrics(paths.metrics) if r.get("step", 0) <= step]
        atomic_write_text(
            paths.metrics, "".join(json.dumps(r) + "\n" for r in rows), overwrite=True
        )
        if not quiet:
            _say(
                out,
                f"resuming run {plan.name!r} from step {step} of {total_steps} "
                f"(epoch {epoch + 1}, batch {skip})",
            )
    elif plan.mode == "resume":
        atomic_write_text(paths.metrics, "", overwrite=True)  # drop lines of the lost session
        if not quiet:
            _say(out, f"run {plan.name!r} has no checkpoint yet; starting it from step 0")
    if plan.mode == "start" and not quiet:
        _say(
            out,
            f"run {plan.name!r}: {total_steps} steps ({config.epochs} epochs x "
            f"{steps_per_epoch} batches) on {device}/{plan.resources.precision} "
            f"-> {_show(paths.root)}",
        )

    tracker = _Tracker(plan, runs_dir) if config.tracking.mlflow else None
    record = json.loads(paths.record.read_text(encoding="utf-8"))
    store = paths.store()
    hang_at = int(os.environ.get(HANG_ENV, "0") or 0)
    bar = _progress_bar(plan, total_steps, step, progress)
    final: Checkpoint | None = None
    summary: dict[str, Any] = {}

    def save(
        metrics: Mapping[str, Any], loader_state: torch.Tensor, *, finished: bool
    ) -> Checkpoint:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "rng": _rng_state(loader_state),
            "progress": {
                "step": step,
                "epoch": epoch,
                "batch": batch_in_epoch,
                "loss_sum": loss_sum,
                "seen": seen,
                "finished": finished,
            },
        }
        checkpoint = store.save(
            config.name,
            plan.name,
            state,
            config=config.to_dict(),
            metrics={"step": step, **metrics},
            dataset=plan.data.reference,
            run_record=record,
            new_checkpoint_in_version=True,
        )
        if tracker is not None:
            tracker.flush()
        return checkpoint

    try:
        model.train()
        batch_in_epoch = skip
        while epoch < config.epochs:
            epoch_start_state = generator.get_state()
            for batch_index, (xb, yb) in enumerate(loader):
                if batch_index < skip:
                    continue  # already trained on before the interruption
                xb, yb = xb.to(device), yb.to(device)
                optimizer.zero_grad(set_to_none=True)
                with plan.resources.autocast():
                    loss = nn.functional.cross_entropy(model(xb).float(), yb)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                batch_in_epoch = batch_index + 1
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(
                        f"the loss became {loss_value} at step {step} (epoch {epoch + 1}); "
                        f"optimizer.lr={config.optimizer.lr} is probably too high."
                    )
                loss_sum += loss_value * len(yb)
                seen += len(yb)
                bar.update(1)
                end_of_epoch = batch_in_epoch == steps_per_epoch
                due = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
                if not end_of_epoch and due:
                    save(last_eval, epoch_start_state, finished=False)
                if not end_of_epoch and step == hang_at:
                    raise _Hang
            skip = 0
            epoch += 1
            batch_in_epoch = 0
            val = evaluate(model, *plan.data.val)
            last_eval = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(seen, 1),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
            }
            loss_sum, seen = 0.0, 0
            _append_metrics(paths.metrics, {"step": step, **last_eval})
            if tracker is not None:
                tracker.metrics({k: v for k, v in last_eval.items() if k != "epoch"}, step)
            bar.set_postfix(val_acc=f"{val['accuracy']:.3f}", refresh=False)
            finished = epoch == config.epochs
            if finished:
                test = evaluate(model, *plan.data.test)
                last_eval = {
                    **last_eval,
                    "test_loss": test["loss"],
                    "test_accuracy": test["accuracy"],
                }
                final = save(last_eval, generator.get_state(), finished=True)
            elif config.checkpoint_every == 0 or step % config.checkpoint_every == 0:
                save(last_eval, generator.get_state(), finished=False)
            if step == hang_at:
                raise _Hang
        if final is None:  # resumed from the final checkpoint: nothing left to train
            final = resume_from
        summary = _write_summary(plan, final, time.perf_counter() - started)
        if tracker is not None:
            tracker.metrics(
                {"test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"]}, step
            )
            tracker.finish(
                "FINISHED",
                tags={
                    "mlcourse.checkpoint": summary["checkpoint"],
                    "mlcourse.weights_sha256": summary["weights_sha256"],
                },
            )
    except _Hang:
        bar.close()
        print(f"test hook: hanging after step {step}", flush=True)
        while True:  # wait to be killed
            time.sleep(1)
    except BaseException:
        bar.close()
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.finish("KILLED")
        raise
    bar.close()
    _report(plan, summary, runs_dir, tracker, quiet=quiet, out=out)
    return summary


def _create_run_dir(plan: RunPlan, removed_staging: list[str]) -> None:
    """Write config and run record into a fresh folder, then move it into place."""
    import yaml

    parent = plan.paths.root.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(parent, plan.name)
    try:
        atomic_write_text(
            staging / plan.paths.config.name, yaml.safe_dump(plan.config.to_dict(), sort_keys=False)
        )
        _session_record(plan, 0, removed_staging).save(staging / plan.paths.record.name)
        if plan.paths.root.exists():
            raise FileExistsError(f"run directory {str(plan.paths.root)!r} appeared meanwhile.")
        os.rename(staging, plan.paths.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _session_record(plan: RunPlan, session: int, removed_staging: list[str]) -> Any:
    record = collect_run_record(
        seeds={"seed": plan.config.seed, "deterministic": plan.config.deterministic},
        resources=plan.resources,
        datasets=[plan.data.reference],
        hyperparameters=plan.config.to_dict(),
    )
    record["run"] = {"name": plan.name, "session": session, "command": list(plan.argv)}
    if removed_staging:
        record["run"]["removed_staging"] = removed_staging
    return record


def _record_session(plan: RunPlan, point: ResumePoint, removed_staging: list[str]) -> None:
    session = 1
    while (plan.paths.root / f"run_record.resume-{session}.json").exists():
        session += 1
    record = _session_record(plan, session, removed_staging)
    record["run"]["resumed_from"] = point.as_record(plan.paths.root)
    record.save(plan.paths.root / f"run_record.resume-{session}.json")


# --- resuming: find a verified checkpoint, or refuse and say what to do ----------------------


def _resume_point(plan: RunPlan) -> ResumePoint:
    """The verified checkpoint a resumed run continues from; refuse on any damage."""
    folders = run_checkpoints(plan.paths.root)
    if plan.resume_from is not None:
        chosen = plan.resume_from
        problem = checkpoint_problem(chosen)
        if problem is not None:
            what = f"cannot resume run {plan.name!r} from {_show(chosen)}: it is damaged: {problem}"
            raise ResumeRefused(_refusal(plan, what, [f for f in folders if f != chosen]))
        newer = folders[: folders.index(chosen)]
        skipped = tuple(
            (f, checkpoint_problem(f) or "verified, but --resume-from chose an older one")
            for f in newer
        )
        return ResumePoint(load_checkpoint(chosen), skipped)
    if not folders:
        return ResumePoint(None)
    problem = checkpoint_problem(folders[0])
    if problem is not None:
        what = (
            f"cannot resume run {plan.name!r}: its newest checkpoint {_show(folders[0])} is "
            f"damaged: {problem}"
        )
        raise ResumeRefused(_refusal(plan, what, folders[1:]))
    return ResumePoint(load_checkpoint(folders[0]))


def _verify_finished(plan: RunPlan) -> dict[str, Any]:
    """Re-verify a finished run: its summary and the final checkpoint it names."""
    paths = plan.paths
    folders = run_checkpoints(paths.root)
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
        final, expected = paths.root / summary["checkpoint"], summary["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        what = (
            f"run {plan.name!r} is finished, but its summary {_show(paths.summary)} is damaged "
            f"({type(error).__name__}: {error})."
        )
        raise ResumeRefused(_refusal(plan, what, folders)) from None
    if final not in folders:
        problem = f"summary.json names {summary['checkpoint']!r}, not one of the run's checkpoints."
    else:
        problem = checkpoint_problem(final)
        if problem is None and verify_checkpoint(final)["files"]["weights.pt"] != expected:
            problem = "its weights are not those summary.json records."
    if problem is not None:
        what = (
            f"run {plan.name!r} is finished, but its final checkpoint {_show(final)} is "
            f"damaged: {problem}"
        )
        raise ResumeRefused(_refusal(plan, what, [f for f in folders if f != final]))
    return summary


def _refusal(plan: RunPlan, what: str, candidates: Sequence[Path]) -> str:
    """``what`` went wrong, plus the newest verified checkpoint and the command to use it."""
    verified = next((f for f in candidates if checkpoint_problem(f) is None), None)
    if verified is None:
        command = _command(plan, run_name=f"{plan.name}-2")
        return (
            f"{what}\nNo verified checkpoint is left (no verified checkpoint to resume from). "
            f"Start the run again under a new name:\n  {command}"
        )
    step = verify_checkpoint(verified)["metrics"]["step"]
    return (
        f"{what}\nThe newest verified checkpoint is {_show(verified)} (step {step}). To resume "
        f"from it (the steps after it are trained again):\n  "
        f"{_command(plan, run_name=plan.name, resume_from=verified)}"
    )


def _command(plan: RunPlan, *, run_name: str, resume_from: Path | None = None) -> str:
    """The command line that continues (or restarts) ``plan`` from its saved config."""
    argv = ["mlcourse-train", "--config", _show(plan.paths.config)]
    argv += ["--runs-dir", _show(plan.paths.root.parent), "--run-name", run_name]
    if resume_from is not None:
        argv += ["--resume-from", _show(resume_from)]
    return shlex.join(argv)


def _describe_fallback(point: ResumePoint) -> str:
    assert point.checkpoint is not None
    lines = [
        f"falling back to {_show(point.checkpoint.path)} "
        f"(step {point.checkpoint.metadata['metrics']['step']}), passing over:"
    ]
    lines += [f"  {_show(path)}: {problem}" for path, problem in point.skipped]
    return "\n".join(lines)


def _remove_stale_staging(plan: RunPlan, runs_dir: Path) -> list[Path]:
    """Remove staging folders that killed processes left for this run (its run folder's
    and its checkpoints'); return them."""
    removed = plan.paths.store().remove_stale_staging()
    for folder in stale_staging_dirs(runs_dir):
        if staging_label(folder) == plan.name:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _relative(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.relative_to(root).as_posix()
    return path.name


def _append_metrics(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(row)) + "\n")
        handle.flush()


def _write_summary(plan: RunPlan, final: Checkpoint, seconds: float) -> dict[str, Any]:
    """Write ``summary.json``; it is replaced only when a finished run was redone from a
    checkpoint chosen with ``--resume-from``."""
    metrics = final.metadata["metrics"]
    sessions = 1 + sum(1 for _ in plan.paths.root.glob("run_record.resume-*.json"))
    summary = {
        "run_name": plan.name,
        "model_name": plan.config.name,
        "steps": metrics["step"],
        "epochs": metrics["epoch"],
        **{
            k: metrics[k]
            for k in ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
        },
        "sizes": plan.data.reference["sizes"],
        "checkpoint": final.path.relative_to(plan.paths.root).as_posix(),
        "weights_sha256": final.weights_sha256,
        "sessions": sessions,
        "last_session_seconds": round(seconds, 3),
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write_text(plan.paths.summary, text, overwrite=plan.resume_from is not None)
    return summary


def _report(
    plan: RunPlan,
    summary: Mapping[str, Any],
    runs_dir: Path,
    tracker: _Tracker | None,
    *,
    quiet: bool,
    out: TextIO,
) -> None:
    result = (
        f"val_accuracy={summary['val_accuracy']:.4f} test_accuracy={summary['test_accuracy']:.4f}"
    )
    if quiet:
        _say(
            out,
            f"run {plan.name!r}: {result} ({summary['steps']} steps) -> {_show(plan.paths.root)}",
        )
        return
    paths = plan.paths
    version_dir = paths.checkpoints / plan.config.name / plan.name
    kept = len(paths.store().timestamps(plan.config.name, plan.name))
    lines = [
        f"finished run {plan.name!r}: {summary['steps']} steps, {summary['epochs']} epochs "
        f"(~{summary['last_session_seconds']:.1f} s in this session)",
        f"  run directory  {_show(paths.root)}/",
        f"  config         {_show(paths.config)}",
        f"  run record     {_show(paths.record)}",
        f"  metrics        {_show(paths.metrics)} (one line per epoch)",
        f"  summary        {_show(paths.summary)}",
        f"  checkpoints    {_show(version_dir)}/ ({kept} kept; final at step {summary['steps']})",
    ]
    if tracker is not None:
        lines.append(
            f"  mlflow         experiment {plan.config.tracking.experiment!r}, run "
            f"{plan.name!r} at {_show_uri(tracker.uri)}"
        )
    lines.append(f"  result         {result}")
    _say(out, "\n".join(lines))


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _show(path: Path) -> str:
    with contextlib.suppress(ValueError):
        if path.is_absolute():
            return path.relative_to(Path.cwd()).as_posix()
    return path.as_posix()


def _show_uri(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return prefix + _show(Path(uri[len(prefix) :]))
    return uri


# --- planning: everything that can fail is checked before any run starts ---------------------


def plan_runs(args: argparse.Namespace, argv: Sequence[str]) -> list[RunPlan]:
    """Validate the command line into a list of runs; raise :class:`ConfigError` if any is bad."""
    raw = read_config_file(args.config)
    overrides = list(args.set or [])
    if args.mlflow is not None:
        overrides.append(f"tracking.mlflow={'true' if args.mlflow else 'false'}")
    raw = apply_overrides(raw, overrides)
    variants = expand_sweep(raw, args.sweep or []) if args.sweep else [("", raw)]
    configs = [
        (suffix, TrainConfig.from_dict(values, source=str(args.config)))
        for suffix, values in variants
    ]
    runs_dir = Path(args.runs_dir)
    problems: list[str] = []
    plans: list[RunPlan] = []
    data_cache: dict[DataConfig, DataSplits] = {}
    if args.resume_from is not None and len(configs) > 1:
        raise ConfigError(
            [f"--resume-from resumes one run, but this command makes {len(configs)} runs."],
            source=str(args.config),
        )
    for suffix, config in configs:
        name = (args.run_name or config.name) + suffix
        if not NAME_PATTERN.match(name):
            problems.append(
                f"run name {name!r} is not valid; use 1-100 letters, digits, '.', "
                "'_' or '-', starting with a letter or digit."
            )
            continue
        try:
            resources = resolve(config.resources)
        except ResourceUnavailableError as error:
            problems.append(f"{name}: {error}")
            continue
        paths = RunPaths(runs_dir / name)
        mode, chosen = "start", None
        if args.resume_from is not None:
            chosen = _chosen_checkpoint(paths, name, Path(args.resume_from))
            if chosen is None:
                problems.append(
                    f"--resume-from {args.resume_from!r} is not a checkpoint of run {name!r}; "
                    f"its checkpoints are the folders under {_show(paths.checkpoints)}/."
                )
                continue
        if paths.root.exists():
            if not (args.resume or chosen):
                problems.append(
                    f"run directory {_show(paths.root)!r} already exists and runs are never "
                    "overwritten; pass --resume to continue it, or --run-name to start a new run."
                )
                continue
            mode = "done" if paths.summary.exists() and chosen is None else "resume"
            problems += _compare_saved_config(paths, config)
        if config.data not in data_cache:
            data_cache[config.data] = load_data(config.data)
        data = data_cache[config.data]
        n_train = data.reference["sizes"]["train"]
        if config.batch_size > n_train:
            problems.append(
                f"batch_size={config.batch_size} is larger than the {n_train} "
                f"training examples of {data.reference['name']!r}."
            )
        plans.append(RunPlan(name, paths, config, resources, data, mode, list(argv), chosen))
    names = [p.name for p in plans]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"several runs would be named {duplicates}; sweep keys must differ.")
    if problems:
        raise ConfigError(problems, source=str(args.config))
    return plans


def _chosen_checkpoint(paths: RunPaths, name: str, given: Path) -> Path | None:
    """The checkpoint folder of the run that ``--resume-from`` names, or ``None``."""
    if not given.is_dir():
        return None
    wanted = given.resolve()
    return next((f for f in run_checkpoints(paths.root) if f.resolve() == wanted), None)


def _compare_saved_config(paths: RunPaths, config: TrainConfig) -> list[str]:
    if not paths.config.exists():
        return [f"{_show(paths.root)!r} is not a run directory (no config.yaml); not touching it."]
    try:
        saved = flatten(load_config_file(paths.config))
    except ConfigFileError as error:
        return [f"cannot resume {_show(paths.root)!r}: its saved config is damaged: {error}"]
    now = config.flat()
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if not changed:
        return []
    details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
    return [
        f"cannot resume {_show(paths.root)!r} with a different config ({details}); "
        "resume with the original settings, or start a new run with --run-name."
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcourse-train",
        description="Train a lesson model from a YAML/JSON config, resumably.",
        epilog="Example: mlcourse-train --config configs/digits_mlp.yaml --set optimizer.lr=0.1",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML or JSON config")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set optimizer.lr=0.05 (repeatable)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="train every combination, e.g. --sweep seed=0,1,2 (repeatable)",
    )
    parser.add_argument(
        "--run-name",
        metavar="NAME",
        help="run folder name (default: the config's name + swept values)",
    )
    parser.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where run folders go (default: %(default)s)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue existing runs from their newest checkpoint"
    )
    parser.add_argument(
        "--resume-from",
        metavar="CHECKPOINT",
        help="continue one run from this checkpoint folder of it (an older one, when the "
        "newest is damaged)",
    )
    parser.add_argument(
        "--mlflow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log to MLflow (same as --set tracking.mlflow=true)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument("--quiet", action="store_true", help="one line per run")
    parser.add_argument(
        "--dry-run", action="store_true", help="check everything and show the plan; write nothing"
    )
    return parser


@contextlib.contextmanager
def _caller_state_preserved() -> Iterator[None]:
    """Leave the caller's random generators and determinism flag as they were (for
    in-process use from a notebook or a test)."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if torch.are_deterministic_algorithms_enabled() != deterministic:
            torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by argparse
        return int(exit_.code or 0)
    try:
        plans = plan_runs(args, argv)
    except ConfigError as error:
        print(f"mlcourse-train: error: {error}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        import yaml

        for plan in plans:
            print(f"# run {plan.name!r} ({plan.mode}) -> {_show(plan.paths.root)}")
            print(yaml.safe_dump(plan.config.to_dict(), sort_keys=False), end="")
        return EXIT_OK
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    runs_dir = Path(args.runs_dir)
    failed = 0
    with _caller_state_preserved():
        for plan in plans:
            try:
                run_training(plan, runs_dir=runs_dir, progress=progress, quiet=args.quiet)
            except ResumeRefused as error:
                failed += 1
                print(f"mlcourse-train: {error}", file=sys.stderr)
            except KeyboardInterrupt:
                print(
                    f"\ninterrupted: run {plan.name!r} stopped; continue it with the same "
                    "command and --resume.",
                    file=sys.stderr,
                )
                return EXIT_INTERRUPTED
            except Exception as error:  # report, then go on with the other runs
                failed += 1
                print(
                    f"mlcourse-train: run {plan.name!r} failed: {type(error).__name__}: {error}",
                    file=sys.stderr,
                )
    if len(plans) > 1 and not args.quiet:
        print(f"{len(plans) - failed} of {len(plans)} runs done in {_show(runs_dir)}/")
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
