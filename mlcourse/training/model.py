"""The model, its optimizer and learning-rate schedule, and how to score it.

``resources.model_size`` picks real widths (:data:`MODEL_SIZES`) unless the config names
them in ``model.hidden``.

Example:
    >>> from mlcourse.training.config import ModelConfig
    >>> build_model(ModelConfig(hidden=(8,)), n_features=4, n_classes=3)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from mlcourse.resources import Resources
from mlcourse.training.config import ModelConfig, OptimizerConfig, SchedulerConfig

# Hidden widths per resources.model_size: ~5 thousand, ~50 thousand and ~0.7 million
# parameters on the 64-pixel digits.
MODEL_SIZES: dict[str, tuple[int, ...]] = {
    "small": (64,),
    "medium": (256, 128),
    "large": (1024, 512, 256),
}
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def model_widths(config: ModelConfig, resources: Resources) -> tuple[int, ...]:
    """The hidden widths a run uses: ``model.hidden``, else those of the model size.

    Example:
        >>> from mlcourse.resources import ResourceConfig, resolve
        >>> model_widths(ModelConfig(), resolve(ResourceConfig(device="cpu", model_size="medium")))
        (256, 128)
    """
    if config.hidden is not None:
        return config.hidden
    return resources.pick(MODEL_SIZES)


def build_model(
    config: ModelConfig, n_features: int, n_classes: int, *, widths: Iterable[int] | None = None
) -> nn.Sequential:
    """A multi-layer perceptron ``Linear -> activation [-> Dropout] -> ... -> Linear``.

    ``widths`` (from :func:`model_widths`) is needed when ``config.hidden`` is ``None``.
    """
    hidden = config.hidden if widths is None else tuple(widths)
    if hidden is None:
        raise ValueError(
            "model.hidden is null (set by resources.model_size): pass widths=model_widths(...)."
        )
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), _ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def build_optimizer(config: OptimizerConfig, parameters: Any) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return kind(parameters, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    config: SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.gamma
        )
    return None


@torch.no_grad()
def evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048
) -> dict[str, Any]:
    """Mean cross-entropy, accuracy and per-example correctness (a bool tensor) of ``model``.

    Example:
        >>> model = build_model(ModelConfig(hidden=()), n_features=2, n_classes=2)
        >>> out = evaluate(model, torch.zeros(5, 2), torch.zeros(5, dtype=torch.long))
        >>> out["correct"].shape
        torch.Size([5])
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, correct = [], []
    for start in range(0, len(y), batch_size):
        xb = X[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        logits = model(xb).float()
        losses.append(nn.functional.cross_entropy(logits, yb, reduction="sum").cpu())
        correct.append((logits.argmax(dim=1) == yb).cpu())
    model.train(was_training)
    hits = torch.cat(correct)
    return {
        "loss": float(torch.stack(losses).sum() / len(y)),
        "accuracy": float(hits.double().mean()),
        "correct": hits,
    }
