"""Datasets for lesson 05: digits behind an expensive per-image transform, and its fixes.

The lesson measures a data-bound training loop and fixes it. The datasets live in this
module, not in the notebook, so that DataLoader worker processes can import them: on
macOS and Windows workers are *spawned* (a fresh interpreter that cannot see classes
defined in a notebook), on Linux they are *forked* (a copy of the notebook's process).

- :func:`expensive_transform`: upsample an 8x8 digit to 32x32 (cubic spline) and blur it,
  about 0.3 ms per image, the same every time: the part worth computing once.
- :func:`random_shift`: move the image by up to ``max_shift`` pixels with NumPy's global
  generator, a cheap augmentation that must stay per sample (seed workers with
  :func:`mlcourse.seeding.seed_worker`).
- :class:`TransformedDigits` does both for every item; :class:`PrecomputedDigits` only
  shifts images prepared once by :func:`precompute` (a NumPy array or a memory-mapped
  ``.npy`` file, see :func:`save_memmap`).
- :class:`BatchedDigits` serves a whole batch per call (``DataLoader(..., batch_size=None,
  sampler=BatchSampler(...))``), shifting all its images at once: the same batches as
  :class:`PrecomputedDigits`, bit for bit, without the per-item Python calls and stacking.

Example:
    >>> import numpy as np
    >>> images = np.zeros((3, 8, 8), dtype=np.float32); labels = np.array([0, 1, 2])
    >>> x, y = TransformedDigits(images, labels)[1]
    >>> tuple(x.shape), y
    ((1, 32, 32), 1)
    >>> x2, _ = PrecomputedDigits(precompute(images), labels)[1]
    >>> tuple(x2.shape)
    (1, 32, 32)
    >>> xb, yb = BatchedDigits(precompute(images), labels)[[2, 0]]
    >>> tuple(xb.shape), yb.tolist()
    ((2, 1, 32, 32), [2, 0])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from mlcourse.arguments import check_float, check_int

SIZE = 32


def expensive_transform(image: np.ndarray, *, zoom: int = 4, blur: float = 1.0) -> np.ndarray:
    """Upsample a small grey image ``zoom`` times with cubic splines, then blur it.

    Deterministic: the same image always gives the same result.

    Example:
        >>> expensive_transform(np.ones((8, 8), dtype=np.float32)).shape
        (32, 32)
    """
    check_int("zoom", zoom, min_value=1)
    check_float("blur", blur, min_value=0.0)
    big = ndimage.zoom(np.asarray(image, dtype=np.float32), zoom, order=3)
    return ndimage.gaussian_filter(big, blur).astype(np.float32)


def random_shift(image: np.ndarray, max_shift: int = 2) -> np.ndarray:
    """Roll ``image`` by a random offset in ``[-max_shift, max_shift]`` along each axis,
    drawn from NumPy's global generator (seeded per worker by ``seed_worker``).

    Example:
        >>> np.random.seed(0); random_shift(np.arange(4.0).reshape(2, 2), 1).shape
        (2, 2)
    """
    dy, dx = np.random.randint(-max_shift, max_shift + 1, size=2)
    return np.roll(image, (int(dy), int(dx)), axis=(0, 1))


class TransformedDigits(Dataset):
    """Digits with :func:`expensive_transform` and :func:`random_shift` applied per item.

    Args:
        images: ``(n, 8, 8)`` floats; labels: ``(n,)`` integers.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, max_shift: int = 2) -> None:
        _check_pair(images, labels)
        self.images = images
        self.labels = labels
        self.max_shift = check_int("max_shift", max_shift, min_value=0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = random_shift(expensive_transform(self.images[index]), self.max_shift)
        return torch.from_numpy(np.ascontiguousarray(image)[None]), int(self.labels[index])


class PrecomputedDigits(Dataset):
    """Images already passed through :func:`expensive_transform`; only shifts per item.

    ``prepared`` may be a NumPy array in memory or a read-only memory map
    (``np.load(path, mmap_mode="r")``): rows are then read from disk (or the page cache)
    when asked for, and worker processes share them without copying.
    """

    def __init__(self, prepared: np.ndarray, labels: np.ndarray, *, max_shift: int = 2) -> None:
        _check_pair(prepared, labels)
        self.prepared = prepared
        self.labels = labels
        self.max_shift = check_int("max_shift", max_shift, min_value=0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = random_shift(np.asarray(self.prepared[index]), self.max_shift)
        return torch.from_numpy(np.ascontiguousarray(image)[None]), int(self.labels[index])


class BatchedDigits(Dataset):
    """Precomputed images served a whole batch per call: ``dataset[[i, j, ...]]``.

    Use it with automatic batching turned off, so that the DataLoader hands each list of
    indices from a :class:`~torch.utils.data.BatchSampler` to one call::

        DataLoader(dataset, batch_size=None, generator=g,
                   sampler=BatchSampler(RandomSampler(dataset, generator=g), 64, False))

    The shifts are drawn in one call, ``(dy, dx)`` per image in the batch's order, which is
    the order in which :class:`PrecomputedDigits` draws them item by item: with the same
    seeds both loaders give the same batches, bit for bit.

    Example:
        >>> prepared = np.arange(2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
        >>> np.random.seed(0); x, y = BatchedDigits(prepared, np.array([7, 8]))[[1]]
        >>> np.random.seed(0); x1, y1 = PrecomputedDigits(prepared, np.array([7, 8]))[1]
        >>> bool(torch.equal(x[0], x1)), y.tolist(), y1
        (True, [8], 8)
    """

    def __init__(self, prepared: np.ndarray, labels: np.ndarray, *, max_shift: int = 2) -> None:
        _check_pair(prepared, labels)
        self.prepared = prepared
        self.labels = np.asarray(labels)
        self.max_shift = check_int("max_shift", max_shift, min_value=0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = _batch_index(indices, len(self))
        images = np.asarray(self.prepared[index], dtype=np.float32)  # (n, h, w), a copy
        n, height, width = images.shape
        dy, dx = np.random.randint(-self.max_shift, self.max_shift + 1, size=(n, 2)).T
        # np.roll by (dy, dx) for every image at once: out[r, c] = image[r - dy, c - dx].
        rows = (np.arange(height)[None, :] - dy[:, None]) % height
        cols = (np.arange(width)[None, :] - dx[:, None]) % width
        shifted = images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return (
            torch.from_numpy(np.ascontiguousarray(shifted)[:, None]),
            torch.from_numpy(self.labels[index].astype(np.int64)),
        )


def precompute(images: np.ndarray) -> np.ndarray:
    """:func:`expensive_transform` of every image, as one float32 array ``(n, 32, 32)``."""
    return np.stack([expensive_transform(image) for image in images]).astype(np.float32)


def save_memmap(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """Save ``array`` as ``.npy`` (never over an existing file) and reopen it memory-mapped.

    Example:
        >>> import tempfile
        >>> mapped = save_memmap(np.zeros((2, 3)), Path(tempfile.mkdtemp()) / "a.npy")
        >>> type(mapped).__name__, mapped.shape
        ('memmap', (2, 3))
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}.")
    with open(path, "xb") as handle:
        np.save(handle, array)
    return np.load(path, mmap_mode="r")


def _batch_index(indices: Sequence[int], length: int) -> np.ndarray:
    """``indices`` as a 1-D integer array of valid positions, or a clear error."""
    if isinstance(indices, (int, np.integer, str, bytes)):
        raise TypeError(
            f"BatchedDigits serves whole batches: index it with a list of indices, got "
            f"{indices!r}; use DataLoader(..., batch_size=None, sampler=BatchSampler(...))."
        )
    index = np.asarray(indices)
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise TypeError(
            f"indices must be a non-empty list of integers, got {_short(indices)} "
            f"(shape {index.shape}, dtype {index.dtype})."
        )
    bad = index[(index < 0) | (index >= length)]
    if bad.size:
        raise IndexError(f"index {int(bad[0])} is out of range for {length} images.")
    return index.astype(np.int64)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_pair(images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise ValueError(
            f"images and labels must have the same length, got {len(images)} and {len(labels)}."
        )
