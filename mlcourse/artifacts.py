"""A small, safe checkpoint store: ``{root}/{model_name}/{version}/{timestamp}/``.

Every checkpoint folder holds ``weights.pt`` (tensors only), ``metadata.json`` (config,
metrics, dataset, parent checkpoint, run record) and ``SHA256SUMS``. Saving builds the
folder under a temporary name and renames it into place, so a crash never leaves half a
checkpoint; a version that exists is never written over. Loading verifies every checksum
first and reads weights with ``torch.load(weights_only=True)``, which cannot run code.

Example:
    >>> import tempfile, torch
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> ckpt = store.save("linear", "v1", torch.nn.Linear(2, 1).state_dict(), metrics={"mse": 0.1})
    >>> store.load("linear", "v1").metadata["metrics"]
    {'mse': 0.1}
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlcourse.integrity import (
    ChecksumError,
    atomic_write_bytes,
    current_umask,
    sha256_bytes,
    verify_sums,
    write_sums,
)
from mlcourse.runrecord import _as_plain

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


class ArtifactExistsError(FileExistsError):
    """The checkpoint (or version) being saved already exists; nothing was written."""


class ArtifactNotFoundError(FileNotFoundError):
    """No checkpoint matches the requested model name, version or timestamp."""


@dataclass(frozen=True)
class Checkpoint:
    """A saved (or loaded) checkpoint: where it is, its metadata, and its tensors."""

    path: Path
    metadata: dict[str, Any]
    state: dict[str, Any] | None = None

    @property
    def weights_sha256(self) -> str:
        return self.metadata["files"][WEIGHTS_FILE]

    def reference(self, root: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """How a child checkpoint names this one: model, version, timestamp, weights checksum."""
        return {
            "model_name": self.metadata["model_name"],
            "version": self.metadata["version"],
            "timestamp": self.metadata["timestamp"],
            "weights_sha256": self.weights_sha256,
        }


class ArtifactStore:
    """Save and load checkpoints under ``root``.

    Args:
        root: the store's folder; created when missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def save(
        self,
        model_name: str,
        version: str,
        state: Mapping[str, Any],
        *,
        config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        dataset: Mapping[str, Any] | Any | None = None,
        parent: Checkpoint | Mapping[str, Any] | None = None,
        run_record: Mapping[str, Any] | None = None,
        new_checkpoint_in_version: bool = False,
    ) -> Checkpoint:
        """Write a new checkpoint and return it.

        Args:
            state: tensors to save, usually ``model.state_dict()``; nested dicts, lists,
                numbers and strings are allowed (e.g. an optimizer's ``state_dict()``).
            config, metrics: JSON-ready mappings stored in ``metadata.json``.
            dataset: a :class:`~mlcourse.datasets.ShippedDataset` or its ``reference()``.
            parent: the checkpoint this one was fine-tuned from (recorded by checksum).
            run_record: from :func:`mlcourse.runrecord.collect_run_record`.
            new_checkpoint_in_version: allow adding a checkpoint (a new timestamp) to a
                version that already has one, as a resumable training run does. Existing
                checkpoints are never modified either way.

        Raises:
            ArtifactExistsError: the version exists and ``new_checkpoint_in_version`` is false.
        """
        _check_name("model_name", model_name)
        _check_name("version", version)
        if not isinstance(state, Mapping):
            raise TypeError(
                f"state must be a mapping such as model.state_dict(), got {type(state).__name__}."
            )
        version_dir = self.root / model_name / version
        if self.timestamps(model_name, version) and not new_checkpoint_in_version:
            raise ArtifactExistsError(
                f"version {version!r} of {model_name!r} already exists in {str(version_dir)!r}; "
                "choose a new version name (checkpoints are never overwritten), or pass "
                "new_checkpoint_in_version=True to add a newer checkpoint beside it."
            )
        timestamp = dt.datetime.now(dt.UTC).strftime(_TIMESTAMP_FORMAT)
        final = version_dir / timestamp
        if final.exists():
            raise ArtifactExistsError(
                f"checkpoint {str(final)!r} already exists; not overwriting it."
            )
        version_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{timestamp}.", suffix=".partial", dir=version_dir)
        )
        try:
            staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private (0700)
            buffer = _serialise(state)
            atomic_write_bytes(staging / WEIGHTS_FILE, buffer)
            metadata = {
                "format": "mlcourse-checkpoint-v1",
                "model_name": model_name,
                "version": version,
                "timestamp": timestamp,
                "files": {WEIGHTS_FILE: sha256_bytes(buffer)},
                "config": _as_plain(config or {}),
                "metrics": _as_plain(metrics or {}),
                "dataset": _as_plain(
                    dataset.reference() if hasattr(dataset, "reference") else dataset
                ),
                "parent": _parent_reference(parent),
                "run_record": _as_plain(run_record),
            }
            text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
            atomic_write_bytes(staging / METADATA_FILE, text.encode())
            write_sums(staging, [WEIGHTS_FILE, METADATA_FILE])
            os.rename(staging, final)  # atomic; fails rather than replace a non-empty folder
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Checkpoint(path=final, metadata=metadata, state=None)

    def timestamps(self, model_name: str, version: str) -> list[str]:
        """Timestamps of the checkpoints of a version, oldest first."""
        folder = self.root / model_name / version
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, model_name: str) -> list[str]:
        """Versions of a model that hold at least one checkpoint."""
        folder = self.root / model_name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if self.timestamps(model_name, p.name))

    def load(
        self,
        model_name: str,
        version: str,
        timestamp: str | None = None,
        *,
        map_location: str | torch.device = "cpu",
    ) -> Checkpoint:
        """Verify and load a checkpoint (the newest of the version unless ``timestamp``).

        Raises:
            ArtifactNotFoundError: nothing matches (the message lists what exists).
            ChecksumError: a file is missing or corrupted.
        """
        stamps = self.timestamps(model_name, version)
        if not stamps:
            known = self.versions(model_name)
            raise ArtifactNotFoundError(
                f"no checkpoint for model {model_name!r} version {version!r} in {str(self.root)!r}; "
                f"versions present: {known or 'none'}."
            )
        if timestamp is None:
            timestamp = stamps[-1]
        elif timestamp not in stamps:
            raise ArtifactNotFoundError(
                f"timestamp={timestamp!r} not found for {model_name!r} {version!r}; present: {stamps}."
            )
        return load_checkpoint(
            self.root / model_name / version / timestamp, map_location=map_location
        )


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Verify ``SHA256SUMS`` of a checkpoint folder, then load its metadata and tensors."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactNotFoundError(f"checkpoint folder {str(path)!r} does not exist.")
    sums = verify_sums(path, [WEIGHTS_FILE, METADATA_FILE])
    metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    if metadata.get("files", {}).get(WEIGHTS_FILE) != sums[WEIGHTS_FILE]:
        raise ChecksumError(
            f"{METADATA_FILE} in {str(path)!r} names other weights than SHA256SUMS."
        )
    state = torch.load(path / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    return Checkpoint(path=path, metadata=metadata, state=state)


def _serialise(state: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue()


def _parent_reference(parent: Checkpoint | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    if isinstance(parent, Checkpoint):
        return parent.reference()
    if "weights_sha256" not in parent:
        raise ValueError(
            f"parent must be a Checkpoint or a mapping with 'weights_sha256', got keys {sorted(parent)}."
        )
    return dict(parent)


def _check_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{what}={value!r} is not a valid name; use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
