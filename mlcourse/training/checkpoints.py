"""A run's checkpoints: find them (newest first), verify them, rebuild the trained model.

A checkpoint holds everything the rest of a run depends on: model, optimizer, scheduler
(and gradient scaler) state, every random number generator, and the position in the data.
Nothing is read from a checkpoint before its ``SHA256SUMS`` are verified.

Example:
    >>> run_checkpoints("no/such/run"), latest_checkpoint("no/such/run")
    ([], None)
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from mlcourse.artifacts import (
    ArtifactNotFoundError,
    Checkpoint,
    load_checkpoint,
    verify_checkpoint,
)
from mlcourse.integrity import ChecksumError
from mlcourse.training.config import TrainConfig
from mlcourse.training.model import build_model
from mlcourse.training.runs import RunPaths, show_path


def run_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The run's checkpoint folders, newest first (by their timestamp), unverified."""
    root = RunPaths(Path(run_dir)).checkpoints
    if not root.is_dir():
        return []
    folders = [
        stamp
        for model in _visible_folders(root)
        for version in _visible_folders(model)
        for stamp in _visible_folders(version)
    ]
    return sorted(folders, key=lambda p: (p.name, str(p)), reverse=True)


def _visible_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def latest_checkpoint(run_dir: str | os.PathLike[str], *, load: bool = True) -> Checkpoint | None:
    """The run's newest checkpoint, verified (with its tensors unless ``load=False``), or
    ``None`` if it has none.

    Raises:
        ChecksumError: the newest checkpoint is damaged.
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
        checkpoint_step(folder)
    except (ChecksumError, ArtifactNotFoundError) as error:
        return str(error)
    except (KeyError, TypeError, ValueError):
        return f"metadata.json in {show_path(folder)!r} records no step."
    return None


def checkpoint_step(folder: Path) -> int:
    """The training step a checkpoint was saved at (after verifying it)."""
    return int(verify_checkpoint(folder)["metrics"]["step"])


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
    recorded = ((checkpoint.metadata.get("run_record") or {}).get("run") or {}).get("model")
    widths = recorded["hidden"] if recorded else config.model.hidden
    model = build_model(config.model, data["n_features"], data["n_classes"], widths=widths)
    model.load_state_dict(checkpoint.state["model"])
    return model.eval(), checkpoint
