"""Which examples each rank of a data-parallel run trains on, and how its loss is weighed.

The config's ``batch_size`` stays the **global** batch: every rank walks the same shuffled
global batches as a single process would (same generator, same order) and keeps its share,
examples ``rank, rank + W, rank + 2W, ...`` of each (:class:`ShardedBatchSampler`), so a run
on W ranks takes the same steps as a single-process run, up to the order in which
floating-point sums are added. Each rank weighs its summed loss so that the gradients that
DistributedDataParallel averages are those of the whole global batch, even when it does not
split evenly (:func:`shard_loss_weight`).

Example:
    >>> list(ShardedBatchSampler([[7, 3, 5, 1, 0]], rank=1, world_size=2))
    [[3, 1]]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

SHARD_RULE = (
    "every rank walks the same shuffled global batches of `batch_size` examples (the "
    "single-process order) and trains on examples rank, rank + world_size, ... of each"
)


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's share of each global batch: its examples ``rank, rank + W, ...``.

    Every rank iterates the same ``batches`` (built from the same generator), so the
    ranks' shares of one step never overlap and together make up the global batch.
    """

    def __init__(self, batches: Iterable[list[int]], *, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield list(batch)[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def shard_loss_weight(global_batch: int, world_size: int) -> float:
    """The factor on a rank's *summed* loss that makes DistributedDataParallel's average of
    the ranks' gradients equal the gradient of the global batch's mean loss:
    ``W / global_batch`` (DDP divides the sum over ranks by W).

    Example:
        >>> shard_loss_weight(64, 2)
        0.03125
    """
    return world_size / global_batch


def global_batch_size(index: int, batch_size: int, n_examples: int) -> int:
    """Examples in global batch ``index`` of an epoch (the last one may be short).

    Example:
        >>> [global_batch_size(i, 32, 70) for i in range(3)]
        [32, 32, 6]
    """
    return min(batch_size, n_examples - index * batch_size)


def describe_shard(
    loader: torch.utils.data.DataLoader, generator: torch.Generator
) -> dict[str, Any]:
    """What this rank trains on in the first epoch: example count and a SHA-256 of the
    training-set indices in order, by iterating a copy of its loader (``generator`` is
    left as it was). Also returns the indices themselves under ``"indices"``."""
    saved = generator.get_state()
    try:
        index_loader = torch.utils.data.DataLoader(
            _Positions(len(loader.dataset)),  # type: ignore[arg-type]
            batch_sampler=loader.batch_sampler,
            generator=generator,
        )
        indices = [int(i) for batch in index_loader for i in batch]
    finally:
        generator.set_state(saved)
    digest = hashlib.sha256(torch.tensor(indices, dtype=torch.int64).numpy().tobytes())
    return {
        "examples_per_epoch": len(indices),
        "first_epoch_sha256": digest.hexdigest(),
        "indices": indices,
    }


class _Positions(torch.utils.data.Dataset[int]):
    """Stands in for the training set: item ``i`` is ``i``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def check_shards(shards: Sequence[Mapping[str, Any]], n_examples: int) -> list[str]:
    """Problems with the ranks' first-epoch shards: overlaps, or examples nobody sees.

    Example:
        >>> check_shards([{"indices": [0, 2]}, {"indices": [1, 2]}], 4)
        ['ranks share examples (1 of them, e.g. [2]); every example must go to one rank', 'no rank trains on 1 example(s) of 4 (e.g. [3])']
    """
    seen: dict[int, int] = {}
    shared = []
    for shard in shards:
        for index in shard["indices"]:
            if index in seen:
                shared.append(index)
            seen[index] = seen.get(index, 0) + 1
    problems = []
    if shared:
        problems.append(
            f"ranks share examples ({len(shared)} of them, e.g. {sorted(shared)[:3]}); every "
            "example must go to one rank"
        )
    unseen = sorted(set(range(n_examples)) - set(seen))
    if unseen:
        problems.append(
            f"no rank trains on {len(unseen)} example(s) of {n_examples} (e.g. {unseen[:3]})"
        )
    return problems


def reduce_sums(values: Sequence[float], device: torch.device) -> list[float]:
    """``values`` summed over the ranks (in float64), on every rank."""
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random numbers (dropout): the run's seed on rank 0,
    a value derived from it on the others, so that ranks do not drop the same units.

    Example:
        >>> rank_seed(7, 0), rank_seed(7, 1) != rank_seed(7, 2)
        (7, True)
    """
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"mlcourse rank seed {seed} {rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
