"""Load the small real datasets shipped in ``datasets/``, verifying them first.

Each dataset lives in ``datasets/<name>/`` with its arrays (``.npz``), a ``dataset.json``
(name, version, what each array holds), a ``data_card.md`` and a ``SHA256SUMS``
manifest. :func:`load_dataset` checks every checksum before reading a byte of data (the
``dataset.json`` manifest included: it is verified before it is parsed) and never
unpickles anything. The folder is found by :func:`mlcourse.course_files.datasets_dir` (a
checkout's ``datasets/``, or the copies a wheel installs); set ``MLCOURSE_DATA_DIR`` to read
datasets from elsewhere.

Example:
    >>> digits = load_dataset("digits")
    >>> digits["images"].shape, digits.version
    ((1797, 8, 8), '1.0.0')
    >>> parts = digits_tensors({"train": 0.8, "test": 0.2})
    >>> X, y = parts["train"]
    >>> X.shape[1], X.dtype, y.dtype
    (64, torch.float32, torch.int64)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcourse.arguments import check_choice
from mlcourse.config_files import load_config_file
from mlcourse.course_files import datasets_dir
from mlcourse.integrity import ChecksumError, verify_sums
from mlcourse.splits import DEFAULT_SALT, hash_split

INFO_FILE = "dataset.json"
CARD_FILE = "data_card.md"
INFO_KEYS = ("name", "version", "file", "arrays")


def data_dir() -> Path:
    """The folder holding the shipped datasets (:func:`mlcourse.course_files.datasets_dir`)."""
    return datasets_dir()


def available_datasets(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets found under ``root`` (default: :func:`data_dir`)."""
    root = Path(root) if root is not None else data_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / INFO_FILE).is_file())


@dataclass(frozen=True)
class ShippedDataset:
    """A verified dataset: its arrays, version, checksums and data card."""

    name: str
    version: str
    arrays: Mapping[str, np.ndarray] = field(repr=False)
    sha256: Mapping[str, str]
    info: Mapping[str, Any] = field(repr=False)
    card_path: Path = field(repr=False)

    def __getitem__(self, key: str) -> np.ndarray:
        check_choice(f"{self.name} array", key, tuple(self.arrays))
        return self.arrays[key]

    def reference(self) -> dict[str, Any]:
        """Name, version and checksums: what a run record stores about the data."""
        return {"name": self.name, "version": self.version, "sha256": dict(self.sha256)}

    def card(self) -> str:
        """The data card's Markdown text."""
        return self.card_path.read_text(encoding="utf-8")


def load_dataset(name: str, *, root: str | os.PathLike[str] | None = None) -> ShippedDataset:
    """Verify and load a shipped dataset.

    Raises:
        ValueError: ``name`` is not a shipped dataset (the message lists those that are).
        ChecksumError: a file is missing or its content does not match ``SHA256SUMS``.
    """
    root = Path(root) if root is not None else data_dir()
    check_choice("dataset", name, available_datasets(root))
    folder = root / name
    verify_sums(folder, [INFO_FILE])  # the manifest is trusted only once verified
    info = _read_info(folder / INFO_FILE)
    data_file = info["file"]
    sums = verify_sums(folder, [data_file, INFO_FILE, CARD_FILE])
    with np.load(folder / data_file, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    expected = set(info["arrays"])
    if set(arrays) != expected:
        raise ChecksumError(
            f"{data_file} holds arrays {sorted(arrays)}, but {INFO_FILE} promises {sorted(expected)}."
        )
    return ShippedDataset(
        name=info["name"],
        version=info["version"],
        arrays=arrays,
        sha256=sums,
        info=info,
        card_path=folder / CARD_FILE,
    )


def _read_info(path: Path) -> dict[str, Any]:
    """Parse a verified ``dataset.json`` and check the fields the loader relies on."""
    info = load_config_file(path)
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {', '.join(repr(k) for k in missing)}; it must name "
            f"{', '.join(repr(k) for k in INFO_KEYS)}."
        )
    file = info["file"]
    if not isinstance(file, str) or Path(file).name != file or file.startswith("."):
        raise ValueError(
            f"{str(path)!r}: 'file' must be the name of a file beside dataset.json, got {file!r}."
        )
    if not isinstance(info["arrays"], dict):
        raise ValueError(f"{str(path)!r}: 'arrays' must be a mapping of array name to description.")
    return info


def digits_tensors(
    fractions: Mapping[str, float] | None = None, *, salt: str = DEFAULT_SALT
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The shipped digits as ``(X, y)`` tensors per split, split by hashing each example's id.

    ``X`` is float32 of shape ``(n, 64)`` scaled to ``[0, 1]``; ``y`` is int64 labels. The
    split is the same on every machine and run (see :func:`mlcourse.splits.hash_split`).

    Args:
        fractions: split name to fraction; default ``{"train": 0.6, "val": 0.2, "test": 0.2}``.
        salt: change it to draw another fixed split.
    """
    fractions = fractions or {"train": 0.6, "val": 0.2, "test": 0.2}
    digits = load_dataset("digits")
    X = torch.from_numpy(
        digits["images"].reshape(len(digits["labels"]), -1).astype(np.float32) / 16.0
    )
    y = torch.from_numpy(digits["labels"])
    split = hash_split(digits["ids"].tolist(), fractions, salt=salt)
    return {
        name: (X[torch.from_numpy(idx)], y[torch.from_numpy(idx)]) for name, idx in split.items()
    }
