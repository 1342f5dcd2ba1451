"""Seed every random number generator a lesson touches, in one call.

Example:
    >>> from mlcourse.seeding import seed_everything
    >>> report = seed_everything(42)
    >>> report.seed
    42
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from mlcourse.arguments import check_bool, check_int

MAX_SEED = 2**32 - 1
# The smaller of the two workspace settings cuBLAS documents for deterministic results.
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_everything` set, ready to store in a run record."""

    seed: int
    python: bool
    numpy: bool
    torch_cpu: bool
    torch_cuda: bool
    torch_mps: bool
    deterministic: bool

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def seed_everything(seed: int, *, deterministic: bool = False) -> SeedReport:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU, CUDA and MPS).

    Args:
        seed: an integer in ``[0, 2**32 - 1]``.
        deterministic: also switch on deterministic algorithms (see :func:`set_deterministic`).

    Returns:
        A :class:`SeedReport` saying which generators were seeded.

    Example:
        >>> seed_everything(0).torch_cpu
        True
    """
    seed = check_int("seed", seed, min_value=0, max_value=MAX_SEED)
    check_bool("deterministic", deterministic)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU generator and every CUDA device
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.manual_seed_all(seed)
    mps = _mps_available()
    if mps:
        torch.mps.manual_seed(seed)
    set_deterministic(deterministic)
    return SeedReport(
        seed=seed,
        python=True,
        numpy=True,
        torch_cpu=True,
        torch_cuda=cuda,
        torch_mps=mps,
        deterministic=deterministic,
    )


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (or go back to the fast defaults).

    Sets ``torch.use_deterministic_algorithms``, the cuDNN flags and
    ``CUBLAS_WORKSPACE_CONFIG``. Operations with no deterministic implementation
    then raise a ``RuntimeError`` instead of silently varying.

    Example:
        >>> set_deterministic(True); torch.are_deterministic_algorithms_enabled()
        True
        >>> set_deterministic(False)
    """
    check_bool("enabled", enabled)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    # Only touch the switch when it changes: setting it imports torch's compiler
    # configuration (about 150 MB and a second), which a plain CPU lesson never needs.
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.backends.cudnn.benchmark


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for a DataLoader: seed NumPy and ``random`` in each worker.

    torch already gives every worker its own seed (base seed + worker id); this copies
    it to the other libraries so that augmentations written with NumPy are reproducible.

    Example:
        >>> loader = torch.utils.data.DataLoader(
        ...     range(8), num_workers=0, worker_init_fn=seed_worker, generator=make_generator(0))
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``, for DataLoader shuffling and sampling.

    Example:
        >>> torch.randint(10, (3,), generator=make_generator(1)).tolist()
        [5, 9, 4]
    """
    seed = check_int("seed", seed, min_value=0, max_value=MAX_SEED)
    return torch.Generator().manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random number generator, as tensors and plain numbers.

    Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA
    device's. The result holds only tensors, numbers and strings, so it can be saved with
    ``torch.save`` and loaded back with ``torch.load(weights_only=True)``; pass it to
    :func:`restore_rng_state` to continue exactly where it was taken.

    Example:
        >>> _ = seed_everything(5)
        >>> state = capture_rng_state()
        >>> first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
        >>> restore_rng_state(state)
        >>> (random.random(), float(np.random.rand()), float(torch.rand(1))) == first
        True
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put every global generator back into a state from :func:`capture_rng_state`.

    The CUDA states are restored when this machine has CUDA (a state taken on a CPU-only
    machine has none). Extra keys (such as a DataLoader generator's state) are ignored.
    """
    missing = sorted({"torch", "cuda", "numpy", "python"} - set(state))
    if missing:
        raise ValueError(f"state lacks {missing}; pass what capture_rng_state() returned.")
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


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
