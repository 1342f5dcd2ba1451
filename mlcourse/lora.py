"""LoRA: low-rank adapters for the ``nn.Linear`` layers of a frozen model (Hu et al., 2021).

A frozen layer ``y = x W^T + b`` with ``W`` of shape ``(out, in)`` gets a trainable update
of rank at most ``r``::

    y = x W^T + b + (alpha / r) * x A^T B^T        A: (r, in), B: (out, r)

``B`` starts at zero, so a freshly injected model computes exactly what the base model
did; only ``A`` and ``B`` are trained, ``r * (in + out)`` numbers per layer instead of
``in * out``. After training, :func:`merge_lora` folds ``(alpha / r) * B @ A`` into ``W``
(inference then costs what the base model costs) and :func:`unmerge_lora` takes it out.

Example:
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> x = torch.randn(5, 16)
    >>> before = model(x)
    >>> _ = inject_lora(model, ["0", "2"], rank=2, alpha=4.0)
    >>> torch.equal(model(x), before)  # B = 0: nothing changed yet
    True
    >>> print(count_parameters(model))
    168 of 844 parameters trainable (19.91%)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mlcourse.arguments import check_float, check_int

LORA_PARAMETER_NAMES = ("lora_A", "lora_B")


class LoRALinear(nn.Module):
    """An ``nn.Linear`` with a frozen base weight and a trainable low-rank update.

    Args:
        base: the layer to adapt; it is kept (as ``self.base``) and frozen.
        rank: ``r``, the rank of the update, a positive integer.
        alpha: scale of the update; the update is multiplied by ``alpha / rank``.
            ``None`` means ``alpha = rank`` (scaling 1). Keeping ``alpha`` fixed while
            changing ``rank`` keeps the size of the update roughly comparable.

    ``lora_A`` (``rank x in_features``) starts like an ``nn.Linear`` weight (Kaiming
    uniform), ``lora_B`` (``out_features x rank``) starts at zero.

    Example:
        >>> layer = LoRALinear(torch.nn.Linear(6, 3), rank=2, alpha=4.0)
        >>> layer.lora_A.shape, layer.lora_B.shape, layer.scaling
        (torch.Size([2, 6]), torch.Size([3, 2]), 2.0)
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}.")
        self.rank = check_int("rank", rank, min_value=1)
        self.alpha = (
            float(self.rank)
            if alpha is None
            else check_float("alpha", alpha, min_value=0.0, min_inclusive=False)
        )
        self.scaling = self.alpha / self.rank
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        weight = base.weight
        self.lora_A = nn.Parameter(
            torch.empty(self.rank, base.in_features, dtype=weight.dtype, device=weight.device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, self.rank, dtype=weight.dtype, device=weight.device)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) * B @ A``, shaped like ``base.weight``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # the update already lives in base.weight
            return self.base(x)
        return self.base(x) + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update to ``base.weight``: one matrix product per call afterwards.

        Raises:
            RuntimeError: already merged.
            TypeError: the base layer is no longer a plain ``nn.Linear`` (say, its weights
                are stored in int8), so there is no float weight to add the update to.
        """
        if self.merged:
            raise RuntimeError("this LoRALinear is already merged; call unmerge() first.")
        self.check_mergeable()
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update from ``base.weight`` again (equal up to float rounding)."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged; there is nothing to unmerge.")
        self.check_mergeable()
        self.base.weight -= self.delta_weight()
        self.merged = False

    def check_mergeable(self) -> None:
        """Raise ``TypeError`` unless the base layer holds a float weight the update can
        be added to (a plain ``nn.Linear``)."""
        if type(self.base) is not nn.Linear:
            raise TypeError(
                f"cannot merge into a base layer of type {type(self.base).__name__}: it holds no float "
                "weight to add the update to (an int8 base, for example). Merge into a "
                "full-precision copy of the base model instead, or keep the adapter separate."
            )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"
        )


def inject_lora(
    model: nn.Module,
    target_modules: Iterable[str],
    rank: int,
    alpha: float | None = None,
) -> nn.Module:
    """Replace the named ``nn.Linear`` layers of ``model`` by :class:`LoRALinear`, in place,
    and freeze every other parameter, so that only the ``lora_A``/``lora_B`` matrices train.

    Args:
        model: the base model (its weights are kept, frozen).
        target_modules: names as in ``model.named_modules()``, e.g. ``["0", "blocks.1.proj"]``.
        rank, alpha: see :class:`LoRALinear`.

    Returns:
        ``model`` itself, for chaining.

    Raises:
        ValueError: a name is not a module of ``model`` (the message lists the
            ``nn.Linear`` layers it has), or a name is repeated.
        TypeError: a named module is not an ``nn.Linear`` (or is already adapted).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
        >>> inject_lora(net, ["1"], rank=1)
        Traceback (most recent call last):
        ...
        TypeError: target module '1' is a ReLU, not a plain nn.Linear; nn.Linear layers of the model: '0'.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(target_modules, str):
        raise TypeError(
            f"target_modules must be a list of module names, got the string {target_modules!r}; "
            f"write [{target_modules!r}]."
        )
    targets = list(target_modules)
    rank = check_int("rank", rank, min_value=1)
    if alpha is not None:
        alpha = check_float("alpha", alpha, min_value=0.0, min_inclusive=False)
    if not targets:
        raise ValueError(
            "target_modules is empty; name at least one nn.Linear layer, e.g. "
            f"{linear_layer_names(model)[:2]}."
        )
    repeated = sorted({name for name in targets if targets.count(name) > 1})
    if repeated:
        raise ValueError(f"target_modules names {repeated} more than once.")
    modules = dict(model.named_modules())
    linear_names = ", ".join(repr(n) for n in linear_layer_names(model)) or "none"
    missing = [name for name in targets if name not in modules or name == ""]
    if missing:
        raise ValueError(
            f"target module(s) {', '.join(repr(n) for n in missing)} not found in the model; "
            f"nn.Linear layers of the model: {linear_names}."
        )
    for name in targets:
        module = modules[name]
        if isinstance(module, LoRALinear) or type(module) is not nn.Linear:
            kind = (
                "already a LoRALinear"
                if isinstance(module, LoRALinear)
                else f"a {type(module).__name__}, not a plain nn.Linear"
            )
            raise TypeError(
                f"target module {name!r} is {kind}; nn.Linear layers of the model: {linear_names}."
            )
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, LoRALinear(modules[name], rank, alpha))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.rpartition(".")[2] in LORA_PARAMETER_NAMES)
    return model


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of the plain ``nn.Linear`` layers of ``model`` (the possible LoRA targets).

    Example:
        >>> linear_layer_names(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()))
        ['0']
    """
    return [name for name, m in model.named_modules() if type(m) is nn.Linear and name]


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The :class:`LoRALinear` layers of ``model`` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer of ``model`` (see :meth:`LoRALinear.merge`); return how many.

    Every layer is checked first, so a model that cannot be merged is left as it was.
    """
    layers = _require_lora(model)
    for name, layer in layers.items():
        if layer.merged:
            raise RuntimeError(f"LoRA layer {name!r} is already merged; call unmerge_lora first.")
        layer.check_mergeable()
    for layer in layers.values():
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Unmerge every LoRA layer of ``model`` (see :meth:`LoRALinear.unmerge`); return how many.

    Every layer is checked first, so a model that cannot be unmerged is left as it was.
    """
    layers = _require_lora(model)
    for name, layer in layers.items():
        if not layer.merged:
            raise RuntimeError(f"LoRA layer {name!r} is not merged; there is nothing to unmerge.")
        layer.check_mergeable()
    for layer in layers.values():
        layer.unmerge()
    return len(layers)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: the ``lora_A`` and ``lora_B`` tensors of ``model``, by state-dict name.

    Example:
        >>> net = inject_lora(torch.nn.Sequential(torch.nn.Linear(4, 2)), ["0"], rank=1)
        >>> sorted(lora_state_dict(net))
        ['0.lora_A', '0.lora_B']
    """
    _require_lora(model)
    return {
        name: tensor.detach().clone()
        for name, tensor in model.state_dict().items()
        if name.rpartition(".")[2] in LORA_PARAMETER_NAMES
    }


def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy an adapter saved with :func:`lora_state_dict` into ``model`` (injected alike).

    Raises:
        ValueError: the names or shapes differ from the model's LoRA parameters.
    """
    expected = lora_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"adapter does not fit the model: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}."
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"adapter tensor {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)} (was it saved with another rank?)."
            )
    if any(layer.merged for layer in lora_layers(model).values()):
        raise RuntimeError("unmerge the model before loading an adapter into it.")
    model.load_state_dict(dict(state), strict=False)


@dataclass(frozen=True)
class ParameterCount:
    """How many parameters a model has and how many of them train."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.trainable:,} of {self.total:,} parameters trainable ({self.fraction:.2%})"


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count trainable (``requires_grad``) and all parameters of ``model``.

    Example:
        >>> count_parameters(torch.nn.Linear(3, 2))
        ParameterCount(trainable=8, total=8)
    """
    params = list(model.parameters())
    return ParameterCount(
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers; call inject_lora(model, ...) first.")
    return layers
