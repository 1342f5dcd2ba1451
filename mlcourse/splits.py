"""Deterministic, hash-based train/validation/test splits keyed on a stable id.

Each example goes to a split decided by the SHA-256 of ``"{salt}:{id}"``, never by
Python's ``hash()`` (salted per process) or a random shuffle. The same id lands in the
same split on every run, process and machine, and adding new examples never moves old
ones between splits.

Example:
    >>> split = hash_split(range(10), {"train": 0.8, "test": 0.2})
    >>> sorted(split)
    ['test', 'train']
    >>> sum(len(v) for v in split.values())
    10
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mlcourse.arguments import check_float
from mlcourse.integrity import ChecksumError, atomic_write_text, sha256_bytes

DEFAULT_SALT = "mlcourse-v1"
_SPLIT_FORMAT = "mlcourse-split-v1"


def stable_unit_interval(key: str | int | bytes, *, salt: str = DEFAULT_SALT) -> float:
    """Map ``key`` to a number in ``[0, 1)``, identical everywhere.

    Example:
        >>> stable_unit_interval("example-42") == stable_unit_interval("example-42")
        True
    """
    if isinstance(key, bool) or not isinstance(key, (str, int, bytes, np.integer)):
        raise TypeError(f"split ids must be str, int or bytes, got {key!r} ({type(key).__name__}).")
    raw = (
        key
        if isinstance(key, bytes)
        else str(int(key) if isinstance(key, np.integer) else key).encode()
    )
    digest = hashlib.sha256(salt.encode() + b":" + raw).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(
    ids: Iterable[str | int | bytes],
    fractions: Mapping[str, float],
    *,
    salt: str = DEFAULT_SALT,
) -> dict[str, np.ndarray]:
    """Assign every id to one split by hashing it.

    Args:
        ids: unique, stable identifiers (row ids, file names), one per example.
        fractions: split name to fraction, summing to 1, e.g. ``{"train": 0.8, "test": 0.2}``.
        salt: change it to draw a different (but again fixed) split.

    Returns:
        Split name to sorted positions (indices into ``ids``) of its examples. Sizes are
        close to, not exactly, the fractions: each id is decided on its own.
    """
    if not fractions:
        raise ValueError("fractions must name at least one split, got an empty mapping.")
    for name, value in fractions.items():
        check_float(f"fractions[{name!r}]", value, min_value=0.0, max_value=1.0)
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {dict(fractions)} (sum {total:.6g}).")
    ids = list(ids)
    seen: set[str | int | bytes] = set()
    for key in ids:
        if key in seen:
            raise ValueError(f"split ids must be unique; {key!r} appears more than once.")
        seen.add(key)
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    edges[-1] = 1.0
    positions = np.array([stable_unit_interval(k, salt=salt) for k in ids], dtype=np.float64)
    bucket = np.searchsorted(edges, positions, side="right")
    return {name: np.flatnonzero(bucket == i) for i, name in enumerate(names)}


def save_split(split: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Save split indices as JSON with a checksum; never overwrites an existing file."""
    body = {name: [int(i) for i in np.asarray(idx)] for name, idx in split.items()}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"))
    document = {"format": _SPLIT_FORMAT, "sha256": sha256_bytes(payload.encode()), "splits": body}
    return atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def load_split(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load indices saved by :func:`save_split`, verifying their checksum."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("format") != _SPLIT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a split file written by save_split.")
    body = document["splits"]
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if sha256_bytes(payload.encode()) != document["sha256"]:
        raise ChecksumError(f"split file {str(path)!r} does not match its recorded checksum.")
    return {name: np.asarray(idx, dtype=np.int64) for name, idx in body.items()}
