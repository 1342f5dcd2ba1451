"""A small, safe checkpoint store: ``{root}/{model_name}/{version}/{timestamp}/``.

Every checkpoint folder holds ``weights.pt`` (tensors only), ``metadata.json`` (config,
metrics, dataset, parent checkpoint, run record) and ``SHA256SUMS``. Saving builds the
folder under a hidden ``.partial`` name and renames it into place, so a crash never leaves
half a checkpoint, and a version that exists is never written over: claiming a new version
is one atomic rename, so of two processes saving the same new version at once exactly one
succeeds. A save killed part-way leaves its hidden staging folder, which
:meth:`ArtifactStore.stale_staging` finds and :meth:`ArtifactStore.remove_stale_staging`
deletes. Loading verifies every checksum
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
import errno
import io
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlcourse.integrity import (
    ChecksumError,
    atomic_write_bytes,
    make_staging_dir,
    sha256_bytes,
    stale_staging_dirs,
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
            raise self._version_taken(model_name, version)
        timestamp = dt.datetime.now(dt.UTC).strftime(_TIMESTAMP_FORMAT)
        buffer = _serialise(state)
        metadata = {
            "format": "mlcourse-checkpoint-v1",
            "model_name": model_name,
            "version": version,
            "timestamp": timestamp,
            "files": {WEIGHTS_FILE: sha256_bytes(buffer)},
            "config": _as_plain(config or {}),
            "metrics": _as_plain(metrics or {}),
            "dataset": _as_plain(dataset.reference() if hasattr(dataset, "reference") else dataset),
            "parent": _parent_reference(parent),
            "run_record": _as_plain(run_record),
        }
        text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
        # A new version is built whole (version folder and checkpoint) beside the others and
        # renamed into place: the rename fails if the version holds anything, so of two
        # writers claiming it at once exactly one wins. A checkpoint added to a version is
        # built inside the version folder and renamed to its timestamp.
        parent_dir = version_dir if new_checkpoint_in_version else version_dir.parent
        parent_dir.mkdir(parents=True, exist_ok=True)
        label = timestamp if new_checkpoint_in_version else f"{version}.{timestamp}"
        staging = make_staging_dir(parent_dir, label)
        try:
            folder = staging if new_checkpoint_in_version else staging / timestamp
            folder.mkdir(exist_ok=True)
            atomic_write_bytes(folder / WEIGHTS_FILE, buffer)
            atomic_write_bytes(folder / METADATA_FILE, text.encode())
            write_sums(folder, [WEIGHTS_FILE, METADATA_FILE])
            if new_checkpoint_in_version:
                _rename_into_place(staging, version_dir / timestamp, _checkpoint_exists)
            else:
                _rename_into_place(
                    staging, version_dir, lambda: self._version_taken(model_name, version)
                )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Checkpoint(path=version_dir / timestamp, metadata=metadata, state=None)

    def _version_taken(self, model_name: str, version: str) -> ArtifactExistsError:
        version_dir = self.root / model_name / version
        if not self.timestamps(model_name, version):
            return ArtifactExistsError(
                f"version {version!r} of {model_name!r} holds no checkpoint yet but is being "
                f"written ({str(version_dir)!r} is not empty): another process is saving it, or "
                "a killed save left staging folders there (see stale_staging())."
            )
        return ArtifactExistsError(
            f"version {version!r} of {model_name!r} already exists in {str(version_dir)!r}; "
            "choose a new version name (checkpoints are never overwritten), or pass "
            "new_checkpoint_in_version=True to add a newer checkpoint beside it."
        )

    def stale_staging(self, *, older_than: float | None = None) -> list[Path]:
        """Staging folders left by saves that were killed part-way (see
        :func:`mlcourse.integrity.stale_staging_dirs`): never visible as checkpoints, but
        they take space. ``older_than`` defaults to the start of this process."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()]
        folders += [v for m in folders for v in m.iterdir() if v.is_dir() and not v.is_symlink()]
        return sorted(
            stale
            for folder in folders
            for stale in stale_staging_dirs(folder, older_than=older_than)
        )

    def remove_stale_staging(self, *, older_than: float | None = None) -> list[Path]:
        """Delete what :meth:`stale_staging` finds and return the folders removed."""
        removed = self.stale_staging(older_than=older_than)
        for folder in removed:
            shutil.rmtree(folder)
        return removed

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
        return sorted(
            p.name
            for p in folder.iterdir()
            if not p.name.startswith(".") and self.timestamps(model_name, p.name)
        )

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
    metadata = verify_checkpoint(path)
    state = torch.load(path / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    return Checkpoint(path=path, metadata=metadata, state=state)


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a checkpoint folder's files against its ``SHA256SUMS``; return its metadata.

    Reads no tensors. Raises :class:`ArtifactNotFoundError` if the folder is missing and
    :class:`~mlcourse.integrity.ChecksumError` for any damage: a missing, changed or
    unlisted file, or metadata that does not parse or names other weights.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactNotFoundError(f"checkpoint folder {str(path)!r} does not exist.")
    sums = verify_sums(path, [WEIGHTS_FILE, METADATA_FILE])
    try:
        metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ChecksumError(f"{METADATA_FILE} in {str(path)!r} does not parse: {error}.") from None
    files = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(files, dict) or files.get(WEIGHTS_FILE) != sums[WEIGHTS_FILE]:
        raise ChecksumError(
            f"{METADATA_FILE} in {str(path)!r} names other weights than SHA256SUMS."
        )
    return metadata


def _checkpoint_exists() -> ArtifactExistsError:
    return ArtifactExistsError("a checkpoint with the same timestamp appeared; not overwriting it.")


def _rename_into_place(staging: Path, final: Path, error: Any) -> None:
    """Rename a finished folder to ``final``; raise ``error()`` if ``final`` holds anything.

    ``rename`` replaces an *empty* folder and fails on a non-empty one, atomically.
    """
    try:
        os.rename(staging, final)
    except OSError as failure:
        if failure.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.exists():
            raise error() from None
        raise


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
