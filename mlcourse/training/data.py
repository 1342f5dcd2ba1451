"""The data a run trains on: loaded (or generated) and split 60/20/20 by hashing ids.

Example:
    >>> from mlcourse.training.config import DataConfig
    >>> data = load_data(DataConfig(dataset="digits"))
    >>> data.n_features, data.n_classes, data.reference["sizes"]
    (64, 10, {'train': 1107, 'val': 374, 'test': 316})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mlcourse.integrity import sha256_bytes
from mlcourse.splits import DEFAULT_SALT, hash_split
from mlcourse.training.config import DataConfig

SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
DEFAULT_CLASSES = 3  # blobs and spirals, when data.n_classes is null


@dataclass(frozen=True)
class DataSplits:
    """Train/validation/test tensors and a reference to the data they came from."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    reference: dict[str, Any]

    @property
    def n_features(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.reference["n_classes"])


def load_data(config: DataConfig) -> DataSplits:
    """Load (or generate) the data and split it 60/20/20 by hashing example ids.

    The split never depends on the training seed, so runs with different seeds are scored
    on the same test examples.
    """
    if config.dataset == "digits":
        parts, reference, n_classes = _digits()
    else:
        parts, reference, n_classes = _synthetic(config)
    reference = {
        **reference,
        "split": {
            "method": "mlcourse.splits.hash_split",
            "salt": DEFAULT_SALT,
            "fractions": dict(SPLIT_FRACTIONS),
        },
        "sizes": {k: int(v[1].numel()) for k, v in parts.items()},
        "n_features": int(parts["train"][0].shape[1]),
        "n_classes": n_classes,
    }
    return DataSplits(parts["train"], parts["val"], parts["test"], reference)


def _digits() -> tuple[dict[str, Any], dict[str, Any], int]:
    from mlcourse.datasets import digits_tensors, load_dataset

    return digits_tensors(SPLIT_FRACTIONS), load_dataset("digits").reference(), 10


def _synthetic(config: DataConfig) -> tuple[dict[str, Any], dict[str, Any], int]:
    from mlcourse.synthetic import make_classification_2d

    n_classes = 2
    if config.dataset in ("blobs", "spirals"):
        n_classes = config.n_classes or DEFAULT_CLASSES
    X, y = make_classification_2d(
        config.n_samples, kind=config.dataset, noise=config.noise, n_classes=n_classes,
        seed=config.seed,
    )  # fmt: skip
    split = hash_split(range(len(y)), SPLIT_FRACTIONS)
    parts = {k: (X[torch.from_numpy(i)], y[torch.from_numpy(i)]) for k, i in split.items()}
    reference = {
        "name": f"synthetic-{config.dataset}",
        "generator": "mlcourse.synthetic.make_classification_2d",
        "parameters": {
            "n_samples": config.n_samples,
            "noise": config.noise,
            "n_classes": n_classes,
            "seed": config.seed,
        },
        "sha256": {
            "X": sha256_bytes(X.numpy().tobytes()),
            "y": sha256_bytes(y.numpy().tobytes()),
        },
    }
    return parts, reference, n_classes
