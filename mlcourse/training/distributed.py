"""Data-parallel training under ``torchrun``: who this process is, how it meets the others,
which examples it trains on, and the checks that keep every rank in step.

``torchrun --nproc-per-node 2 -m mlcourse.train --config ...`` starts one training process
per *rank* and tells each one its place through environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): :func:`launch_from_environment`
reads them, :func:`join` meets the other ranks there (the *rendezvous*), with NCCL on CUDA
devices and gloo on the CPU (:func:`backend_for`).

Which examples each rank trains on is :mod:`mlcourse.training.shards`'s job.

Rank 0 alone writes the run folder, checkpoints and MLflow records; the others send it
what it records (their data shards, their random number generators) and wait for its
decisions (:func:`rank0_decides`).

Example:
    >>> launch_from_environment({}) is None   # a plain command: one process
    True
    >>> launch = launch_from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
    ...     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    >>> launch.rank, launch.world_size, launch.is_main
    (1, 2, False)
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch

from mlcourse.config_fields import ConfigError
from mlcourse.resources import Resources

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RENDEZVOUS_TIMEOUT_S = 300.0  # how long a rank waits for the others to arrive
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)  # torch's default for gloo
LAUNCH_HINT = "torchrun --nproc-per-node 2 -m mlcourse.train --config CONFIG"

T = TypeVar("T")


class DistributedSetupError(ConfigError):
    """The ranks cannot train together as launched; the message says why and what to do."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems, what="data-parallel launch")


@dataclass(frozen=True)
class Launch:
    """This process's place among the ranks, as the launcher (torchrun) set it."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder, checkpoints and MLflow records."""
        return self.rank == 0

    @property
    def is_data_parallel(self) -> bool:
        """More than one rank: gradients are averaged across processes."""
        return self.world_size > 1


def launch_from_environment(environ: Mapping[str, str]) -> Launch | None:
    """This process's :class:`Launch`, or ``None`` when no launcher started it (neither
    ``RANK`` nor ``WORLD_SIZE`` is set: a plain single-process command).

    ``LOCAL_RANK`` defaults to ``RANK`` (one node). Raises :class:`DistributedSetupError`
    when the variables are incomplete or inconsistent, naming each one.

    Example:
        >>> launch_from_environment({"RANK": "0", "WORLD_SIZE": "2"})
        Traceback (most recent call last):
        ...
        mlcourse.training.distributed.DistributedSetupError: invalid data-parallel launch:
          - RANK and WORLD_SIZE are set (rank 0 of 2), but MASTER_ADDR, MASTER_PORT are not: there is no rendezvous address to meet the other ranks at. Start the ranks with torchrun, which sets all five variables: torchrun --nproc-per-node 2 -m mlcourse.train --config CONFIG
    """
    if not environ.get("RANK") and not environ.get("WORLD_SIZE"):
        return None
    problems: list[str] = []
    rank = _integer(environ, "RANK", 0, problems)
    world_size = _integer(environ, "WORLD_SIZE", 1, problems)
    local_rank = _integer(environ, "LOCAL_RANK", 0, problems, default=rank)
    port = _integer(environ, "MASTER_PORT", 1, problems, maximum=65535)
    if problems:
        raise DistributedSetupError(problems)
    assert rank is not None and world_size is not None and local_rank is not None
    if rank >= world_size:
        problems.append(
            f"RANK={rank} is not a rank of WORLD_SIZE={world_size} ranks; expected RANK in "
            f"[0, {world_size - 1}]."
        )
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
    if missing:
        problems.append(
            f"RANK and WORLD_SIZE are set (rank {rank} of {world_size}), but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: there is no "
            "rendezvous address to meet the other ranks at. Start the ranks with torchrun, "
            f"which sets all five variables: {LAUNCH_HINT}"
        )
    if problems:
        raise DistributedSetupError(problems)
    assert port is not None
    return Launch(rank, world_size, local_rank, environ["MASTER_ADDR"], port)


def _integer(
    environ: Mapping[str, str],
    name: str,
    minimum: int,
    problems: list[str],
    *,
    default: int | None = None,
    maximum: int | None = None,
) -> int | None:
    text = environ.get(name)
    if not text:
        if default is None and name != "MASTER_PORT":
            problems.append(f"{name} is not set; torchrun sets it for every rank.")
        return default
    try:
        value = int(text)
    except ValueError:
        problems.append(f"{name}={text!r} is not an integer.")
        return None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "inf" if maximum is None else str(maximum)
        problems.append(
            f"{name}={value} is out of range; expected an integer in [{minimum}, {upper}]."
        )
        return None
    return value


def backend_for(device: torch.device) -> str:
    """The ``torch.distributed`` backend for a device: NCCL on CUDA, gloo on the CPU.

    Example:
        >>> backend_for(torch.device("cpu")), backend_for(torch.device("cuda", 1))
        ('gloo', 'nccl')
    """
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise DistributedSetupError(
        [
            f"resources.device resolved to {device.type!r}, for which torch.distributed has "
            "no backend (NCCL needs CUDA, gloo the CPU); set resources.device: cpu to train "
            "data-parallel on the CPU."
        ]
    )


def rank_resources(resources: Resources, launch: Launch) -> Resources:
    """``resources`` on this rank's own GPU (``cuda:LOCAL_RANK``); unchanged on the CPU.

    Example:
        >>> from mlcourse.resources import ResourceConfig, resolve
        >>> cpu = resolve(ResourceConfig(device="cpu"))
        >>> rank_resources(cpu, Launch(1, 2, 1, "127.0.0.1", 29500)).device
        device(type='cpu')
    """
    if resources.device.type != "cuda":
        return resources
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise DistributedSetupError(
            [
                f"LOCAL_RANK={launch.local_rank}, but this machine has {count} CUDA "
                f"device(s): start at most {count} ranks per machine "
                f"(torchrun --nproc-per-node {count})."
            ]
        )
    return replace(resources, device=torch.device("cuda", launch.local_rank))


def join(launch: Launch, backend: str, *, timeout_s: float = RENDEZVOUS_TIMEOUT_S) -> None:
    """Meet the other ranks at ``MASTER_ADDR:MASTER_PORT`` and start the process group.

    Raises :class:`DistributedSetupError` when they do not all arrive within ``timeout_s``.
    """
    import torch.distributed as dist

    where = f"{launch.master_addr}:{launch.master_port}"
    try:
        store, _, _ = next(
            dist.rendezvous(
                "env://",
                rank=launch.rank,
                world_size=launch.world_size,
                timeout=datetime.timedelta(seconds=timeout_s),
            )
        )
        store.set_timeout(COLLECTIVE_TIMEOUT)
        dist.init_process_group(
            backend,
            store=store,
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=COLLECTIVE_TIMEOUT,
        )
    except (RuntimeError, ValueError) as error:  # DistStoreError, DistNetworkError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DistributedSetupError(
            [
                f"rank {launch.rank} of {launch.world_size} could not meet the other ranks at "
                f"{where} within {timeout_s:g} s ({type(error).__name__}: {first}). Are all "
                f"{launch.world_size} processes started, with the same MASTER_ADDR and "
                "MASTER_PORT (torchrun on every node, with the same --rdzv-endpoint)? Is that "
                "address reachable from here? Use --rendezvous-timeout to wait longer."
            ]
        ) from None


def leave() -> None:
    """Shut the process group down (if one was started)."""
    if "torch.distributed" not in sys.modules:  # nothing started; do not import torch
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --- agreement between ranks -----------------------------------------------------------------


def gather_to_all(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def rank0_decides(launch: Launch | None, decide: Callable[[], T]) -> T:
    """Run ``decide`` on rank 0 only and hand its result (or the exception it raised) to
    every rank: rank 0 reads and writes the run folder, the others follow.

    Without a launch (one process) it simply calls ``decide``.
    """
    if launch is None or not launch.is_data_parallel:
        return decide()
    import torch.distributed as dist

    box: list[Any] = [None]
    if launch.is_main:
        try:
            box[0] = ("ok", decide())
        except Exception as error:
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def disagreements(descriptions: Sequence[Mapping[str, Any]]) -> list[str]:
    """What differs between the ranks' descriptions of their runs (rank 0 is the reference).

    Example:
        >>> disagreements([{"run a": {"optimizer.lr": 0.05}}, {"run a": {"optimizer.lr": 0.1}}])
        ['rank 1 differs from rank 0 in run a: optimizer.lr: 0.05 (rank 0) vs 0.1 (rank 1)']
    """
    problems = []
    reference = descriptions[0]
    for rank, described in enumerate(descriptions[1:], start=1):
        for run in sorted(set(reference) | set(described)):
            mine, theirs = reference.get(run), described.get(run)
            if mine == theirs:
                continue
            if mine is None or theirs is None:
                side = rank if mine is None else 0
                problems.append(f"rank {rank} differs from rank 0: only rank {side} has {run}")
                continue
            keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            details = ", ".join(
                f"{k}: {mine.get(k)!r} (rank 0) vs {theirs.get(k)!r} (rank {rank})" for k in keys
            )
            problems.append(f"rank {rank} differs from rank 0 in {run}: {details}")
    return problems
