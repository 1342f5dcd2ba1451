"""Resource-aware configuration: which device, precision and model size a run uses.

A lesson asks for resources with a :class:`ResourceConfig` and gets back a
:class:`Resources` that says what it will *actually* use. ``"auto"`` picks the best
hardware present; asking for something absent either raises a clear error or, when
``allow_fallback=True``, warns and records the fallback so that the run record shows it.

Example:
    >>> res = resolve(ResourceConfig(device="cpu"))
    >>> res.device, res.precision, res.lite
    (device(type='cpu'), 'fp32', True)
    >>> res.pick({"small": 32, "medium": 128, "large": 512})
    32
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import torch

from mlcourse.arguments import check_choice, check_keys
from mlcourse.config_fields import Boolean, Choice, Settings, setting

DEVICES = ("auto", "cpu", "cuda", "mps")
MODEL_SIZES = ("auto", "small", "medium", "large")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICE_ENV = "MLCOURSE_DEVICE"  # what "auto" means, when set (the tests pin it to "cpu")

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Precision to try instead, per device, when the requested one is not supported there.
_PRECISION_FALLBACKS = {
    "cpu": {"fp16": "bf16"},
    "cuda": {"int8": "fp16", "bf16": "fp16"},
    "mps": {"bf16": "fp16", "int8": "fp32"},
}

T = TypeVar("T")


class ResourceUnavailableError(ValueError):
    """A device or precision was requested that this machine cannot provide."""


class ResourceFallbackWarning(UserWarning):
    """A requested device or precision was replaced by a fallback."""


@dataclass(frozen=True)
class Hardware:
    """What this machine offers, as torch sees it."""

    cuda_devices: tuple[str, ...]
    cuda_bf16: bool
    mps: bool
    cpu_count: int

    @property
    def cuda(self) -> bool:
        return bool(self.cuda_devices)

    def devices(self) -> tuple[str, ...]:
        """Usable device types, best first."""
        return tuple(d for d, ok in (("cuda", self.cuda), ("mps", self.mps), ("cpu", True)) if ok)

    def precisions(self, device: str) -> tuple[str, ...]:
        """Precisions this machine supports on ``device``."""
        if device == "cpu":
            return ("fp32", "bf16", "int8")  # int8: frozen layers (quantize_frozen_linear)
        if device == "cuda":
            return ("fp32", "fp16", "bf16") if self.cuda_bf16 else ("fp32", "fp16")
        if device == "mps":
            return ("fp32", "fp16")
        raise ValueError(
            f"device={device!r} is not a concrete device; expected 'cpu', 'cuda' or 'mps'."
        )


def detect_hardware() -> Hardware:
    """Look at the machine once: CUDA devices (and bf16 support), Apple MPS, CPU cores.

    Example:
        >>> detect_hardware().cpu_count >= 1
        True
    """
    cuda_devices: tuple[str, ...] = ()
    cuda_bf16 = False
    if torch.cuda.is_available():
        cuda_devices = tuple(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
        cuda_bf16 = bool(torch.cuda.is_bf16_supported())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    return Hardware(
        cuda_devices=cuda_devices, cuda_bf16=cuda_bf16, mps=mps, cpu_count=os.cpu_count() or 1
    )


@dataclass(frozen=True)
class ResourceConfig(Settings):
    """What a run asks for. Every field is checked on construction (all problems at once),
    and :meth:`~mlcourse.config_fields.Settings.from_dict` reads one from a mapping.

    Example:
        >>> ResourceConfig(precision="fp8", device="tpu")
        Traceback (most recent call last):
        ...
        mlcourse.config_fields.ConfigError: invalid resource config:
          - device='tpu' is not supported; expected one of 'auto', 'cpu', 'cuda', 'mps'.
          - precision='fp8' is not supported; expected one of 'fp32', 'fp16', 'bf16', 'int8'.
    """

    config_name = "resource config"

    device: str = setting(
        "auto", Choice(DEVICES), "`auto` picks CUDA, then Apple's MPS, then the CPU"
    )
    model_size: str = setting(
        "auto",
        Choice(MODEL_SIZES),
        "`auto`: small in lite mode or on a CPU, medium otherwise (what a size means: "
        "`Resources.pick`)",
    )
    precision: str = setting(
        "fp32",
        Choice(PRECISIONS),
        "fp16/bf16: mixed precision (autocast); int8: frozen `nn.Linear` weights stored in "
        "int8 on the CPU (`Resources.quantize`)",
    )
    lite: bool | None = setting(
        None, Boolean(optional=True), "seconds-long lite mode; `null`: lite on a CPU"
    )
    allow_fallback: bool = setting(
        False, Boolean(), "use the nearest available device/precision (with a warning)"
    )


@dataclass(frozen=True)
class Fallback:
    """One substitution made because the requested resource was missing."""

    setting: str
    requested: str
    used: str
    reason: str


@dataclass(frozen=True)
class Resources:
    """What a run actually uses; build it with :func:`resolve`."""

    requested: ResourceConfig
    device: torch.device
    precision: str
    model_size: str
    lite: bool
    fallbacks: tuple[Fallback, ...] = field(default=())

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype autocast runs in, or ``None`` for fp32/int8."""
        return _AUTOCAST_DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass: autocast for fp16/bf16, a no-op otherwise.

        Example:
            >>> res = resolve(ResourceConfig(device="cpu", precision="bf16"))
            >>> with res.autocast():
            ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
            >>> y.dtype
            torch.bfloat16
        """
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only where it is needed (fp16 on CUDA)."""
        enabled = self.precision == "fp16" and self.device.type == "cuda"
        return torch.amp.GradScaler(self.device.type, enabled=enabled)

    def quantize(self, model: torch.nn.Module) -> torch.nn.Module:
        """For ``precision="int8"``: store the model's frozen ``nn.Linear`` layers in int8
        (:func:`quantize_frozen_linear`, in place); for any other precision, do nothing.
        Either way, return ``model``."""
        if self.precision != "int8":
            return model
        return quantize_frozen_linear(model)

    def pick(self, choices: Mapping[str, T]) -> T:
        """Choose a per-size value, e.g. a hidden width: ``res.pick({"small": 32, ...})``."""
        check_keys("model sizes", choices, MODEL_SIZES[1:])
        if self.model_size not in choices:
            raise ValueError(
                f"no value given for model_size={self.model_size!r}; given sizes are "
                f"{', '.join(repr(k) for k in choices)}."
            )
        return choices[self.model_size]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for a run record."""
        return {
            "requested": self.requested.to_dict(),
            "device": str(self.device),
            "precision": self.precision,
            "model_size": self.model_size,
            "lite": self.lite,
            "fallbacks": [asdict(f) for f in self.fallbacks],
        }

    def __str__(self) -> str:
        text = (
            f"device={self.device}, precision={self.precision}, "
            f"model_size={self.model_size}, lite={self.lite}"
        )
        for fb in self.fallbacks:
            text += f"\n  fallback: {fb.setting} {fb.requested!r} -> {fb.used!r} ({fb.reason})"
        return text


def resolve(
    config: ResourceConfig | None = None,
    *,
    hardware: Hardware | None = None,
    **overrides: Any,
) -> Resources:
    """Turn a request into the resources this machine will actually use.

    Args:
        config: the request; defaults to ``ResourceConfig()``.
        hardware: what the machine offers; detected when omitted (pass one in tests).
        **overrides: field values replacing those of ``config``, e.g. ``device="cpu"``.

    Raises:
        ResourceUnavailableError: the request cannot be met and fallback is not allowed.

    Example:
        >>> cpu_only = Hardware(cuda_devices=(), cuda_bf16=False, mps=False, cpu_count=2)
        >>> resolve(device="cuda", hardware=cpu_only)
        Traceback (most recent call last):
        ...
        mlcourse.resources.ResourceUnavailableError: device='cuda' is not available on this machine; available: 'cpu'. Pass allow_fallback=True to use 'cpu' instead.
    """
    config = config or ResourceConfig()
    if overrides:
        config = ResourceConfig.from_dict({**config.to_dict(), **overrides})
    hardware = hardware or detect_hardware()
    fallbacks: list[Fallback] = []

    device = _resolve_device(config, hardware, fallbacks)
    precision = _resolve_precision(config, device, hardware, fallbacks)
    lite = config.lite if config.lite is not None else device == "cpu"
    model_size = config.model_size
    if model_size == "auto":
        model_size = "small" if (lite or device == "cpu") else "medium"
    return Resources(
        requested=config,
        device=torch.device(device),
        precision=precision,
        model_size=model_size,
        lite=lite,
        fallbacks=tuple(fallbacks),
    )


def _resolve_device(config: ResourceConfig, hardware: Hardware, fallbacks: list[Fallback]) -> str:
    available = hardware.devices()
    if config.device == "auto":
        forced = os.environ.get(DEVICE_ENV)
        if forced:
            check_choice(f"environment variable {DEVICE_ENV}", forced, DEVICES[1:])
            if forced in available:
                return forced
        return available[0]
    if config.device in available:
        return config.device
    used = available[0]
    message = f"device={config.device!r} is not available on this machine; available: " + ", ".join(
        repr(d) for d in available
    )
    return _fall_back(config, fallbacks, "device", config.device, used, message)


def _resolve_precision(
    config: ResourceConfig, device: str, hardware: Hardware, fallbacks: list[Fallback]
) -> str:
    supported = hardware.precisions(device)
    if config.precision in supported:
        return config.precision
    used = _PRECISION_FALLBACKS[device].get(config.precision, "fp32")
    if used not in supported:
        used = "fp32"
    message = f"precision={config.precision!r} is not supported on {device!r}; supported: " + (
        ", ".join(repr(p) for p in supported)
    )
    return _fall_back(config, fallbacks, "precision", config.precision, used, message)


def _fall_back(
    config: ResourceConfig,
    fallbacks: list[Fallback],
    setting: str,
    requested: str,
    used: str,
    message: str,
) -> str:
    if not config.allow_fallback:
        raise ResourceUnavailableError(
            f"{message}. Pass allow_fallback=True to use {used!r} instead."
        )
    warnings.warn(f"{message}; using {used!r} instead.", ResourceFallbackWarning, stacklevel=4)
    fallbacks.append(Fallback(setting=setting, requested=requested, used=used, reason=message))
    return used


# --- int8: frozen layers stored in one byte per weight ------------------------------------------


class Int8Linear(torch.nn.Module):
    """A frozen ``nn.Linear`` whose weight is stored in int8, one scale per output row.

    ``weight ~= weight_int8 * scale[:, None]`` with ``scale = max|row| / 127``
    (symmetric, per output channel), so each weight costs one byte instead of four. The
    forward pass rebuilds the weight in the input's dtype and calls ``F.linear``:
    gradients flow through to the input (and to LoRA adapters on earlier layers), but
    nothing here is trainable; the int8 values are buffers.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = torch.nn.Linear(16, 4)
        >>> q = Int8Linear(layer.requires_grad_(False))
        >>> x = torch.randn(3, 16)
        >>> bool((q(x) - layer(x)).abs().max() < 0.02), q.weight_int8.dtype
        (True, torch.int8)
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}.")
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
        quantised = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", quantised)
        self.register_buffer("scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (a new tensor; the layer cannot be changed through it)."""
        return self.weight_int8.float() * self.scale[:, None]

    @weight.setter
    def weight(self, value: Any) -> None:
        raise AttributeError(
            "an Int8Linear's weights are frozen int8 values and cannot be assigned or merged "
            "into; merge LoRA updates into a full-precision copy of the base model instead."
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, int8"
        )


def quantize_frozen_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every frozen ``nn.Linear`` of ``model`` by an :class:`Int8Linear`, in place.

    A layer is frozen when none of its parameters requires a gradient. Trainable layers
    stay as they are: int8 weights cannot be trained. The usual order for LoRA on an int8
    base: inject the adapters (which freezes the base), then quantise.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: the model has no frozen ``nn.Linear`` (say, it is about to be trained
            whole, which int8 weights cannot be).
        ResourceUnavailableError: a layer is on a device other than the CPU.

    Example:
        >>> from mlcourse.lora import inject_lora
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> model = quantize_frozen_linear(inject_lora(model, ["0", "2"], rank=2))
        >>> type(model[0].base).__name__, model[0].lora_A.requires_grad
        ('Int8Linear', True)
        >>> quantize_frozen_linear(torch.nn.Sequential(torch.nn.Linear(2, 2)))
        Traceback (most recent call last):
        ...
        ValueError: the model has no frozen nn.Linear layer to quantise; int8 weights cannot be trained. Freeze the layers first (for LoRA: mlcourse.lora.inject_lora freezes the base), then quantise.
    """
    frozen = {
        name: module
        for name, module in model.named_modules()
        if type(module) is torch.nn.Linear
        and name
        and not any(p.requires_grad for p in module.parameters())
    }
    if not frozen:
        raise ValueError(
            "the model has no frozen nn.Linear layer to quantise; int8 weights cannot be "
            "trained. Freeze the layers first (for LoRA: mlcourse.lora.inject_lora freezes "
            "the base), then quantise."
        )
    elsewhere = sorted(
        {str(m.weight.device) for m in frozen.values() if m.weight.device.type != "cpu"}
    )
    if elsewhere:
        raise ResourceUnavailableError(
            f"int8 weights are supported on the CPU only; the model is on {', '.join(elsewhere)}. "
            "On a GPU use precision 'fp16' or 'bf16', or move the model to the CPU first."
        )
    modules = dict(model.named_modules())
    for name, module in frozen.items():
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, Int8Linear(module))
    return model
