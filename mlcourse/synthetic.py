"""Synthetic data the lessons train on: small, exact, and the same on every machine.

All generators take a ``seed`` and use NumPy's PCG64 generator, whose streams are
platform-independent, then return float32 / int64 torch tensors.

Example:
    >>> X, y = make_classification_2d(100, kind="spirals", n_classes=3, seed=0)
    >>> tuple(X.shape), tuple(y.shape), X.dtype, y.dtype
    ((100, 2), (100,), torch.float32, torch.int64)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mlcourse.arguments import check_choice, check_float, check_int

CLASSIFICATION_KINDS = ("blobs", "moons", "circles", "spirals")
SEQUENCE_TASKS = ("copy", "reverse", "sort")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(check_int("seed", seed, min_value=0))


def make_sine(
    n_samples: int, *, noise: float = 0.2, seed: int = 0, low: float = 0.0, high: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on ``sin(2*pi*x)`` plus Gaussian noise, ``x`` uniform in ``[low, high]``.

    The classic target for polynomial fitting: no polynomial of low degree matches it,
    so the bias-variance trade-off is visible.

    Example:
        >>> x, y = make_sine(5, seed=1)
        >>> tuple(x.shape)
        (5,)
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    noise = check_float("noise", noise, min_value=0.0)
    low = check_float("low", low)
    high = check_float("high", high, min_value=low, min_inclusive=False)
    rng = _rng(seed)
    x = rng.uniform(low, high, n_samples)
    y = np.sin(2 * math.pi * x) + noise * rng.standard_normal(n_samples)
    return _f32(x), _f32(y)


def make_classification_2d(
    n_samples: int, *, kind: str = "moons", noise: float = 0.1, n_classes: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-dimensional points with class labels, for decision-boundary pictures.

    Args:
        kind: ``"blobs"`` (Gaussian clusters), ``"moons"`` (two interleaved half circles),
            ``"circles"`` (a ring around a disc) or ``"spirals"`` (``n_classes`` arms).
        noise: standard deviation of the Gaussian jitter added to each point.
        n_classes: number of classes; ``moons`` and ``circles`` always have 2.

    Returns:
        ``(X, y)``: float32 points ``(n, 2)`` and int64 labels ``(n,)``, classes balanced.

    Example:
        >>> X, y = make_classification_2d(6, kind="spirals", n_classes=3)
        >>> sorted(y.tolist())
        [0, 0, 1, 1, 2, 2]
    """
    n_samples = check_int("n_samples", n_samples, min_value=2)
    check_choice("kind", kind, CLASSIFICATION_KINDS)
    noise = check_float("noise", noise, min_value=0.0)
    n_classes = check_int("n_classes", n_classes, min_value=2)
    if kind in ("moons", "circles") and n_classes != 2:
        raise ValueError(f"kind={kind!r} has exactly 2 classes, got n_classes={n_classes}.")
    rng = _rng(seed)
    y = np.arange(n_samples) % n_classes
    t = rng.uniform(0.0, 1.0, n_samples)
    if kind == "blobs":
        angles = 2 * math.pi * y / n_classes
        centres = 2.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        X = centres + rng.standard_normal((n_samples, 2))
    elif kind == "moons":
        angle = math.pi * t
        upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
        X = np.where(y[:, None] == 0, upper, lower)
    elif kind == "circles":
        angle = 2 * math.pi * t
        radius = np.where(y == 0, 1.0, 0.5)
        X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    else:  # spirals
        radius = 0.2 + 0.8 * t
        angle = 1.75 * math.pi * t + 2 * math.pi * y / n_classes
        X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    X = X + noise * rng.standard_normal((n_samples, 2))
    return _f32(X), torch.from_numpy(y.astype(np.int64))


def make_sequence_task(
    n_samples: int,
    *,
    task: str = "reverse",
    length: int = 8,
    vocab_size: int = 10,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences and their targets for a sequence-to-sequence toy task.

    Tokens are drawn uniformly from ``0 .. vocab_size - 1``; the target is the input
    itself (``"copy"``), reversed (``"reverse"``) or sorted ascending (``"sort"``).

    Returns:
        ``(inputs, targets)``, both int64 of shape ``(n_samples, length)``.

    Example:
        >>> x, y = make_sequence_task(1, task="reverse", length=4, seed=3)
        >>> y.tolist()[0] == x.tolist()[0][::-1]
        True
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    check_choice("task", task, SEQUENCE_TASKS)
    length = check_int("length", length, min_value=1)
    vocab_size = check_int("vocab_size", vocab_size, min_value=2)
    rng = _rng(seed)
    x = rng.integers(0, vocab_size, size=(n_samples, length))
    if task == "copy":
        y = x.copy()
    elif task == "reverse":
        y = x[:, ::-1].copy()
    else:
        y = np.sort(x, axis=1)
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
