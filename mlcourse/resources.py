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

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import torch

from mlcourse.validation import check_bool, check_choice, check_keys

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
            return ("fp32", "bf16", "int8")  # int8: dynamic quantisation for inference
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
class ResourceConfig:
    """What a run asks for. Every field is validated on construction.

    Attributes:
        device: ``"auto"`` (best available), ``"cpu"``, ``"cuda"`` or ``"mps"``.
        model_size: ``"auto"`` (small in lite mode or on a CPU, medium otherwise),
            ``"small"``, ``"medium"`` or ``"large"``.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` (mixed precision via autocast) or
            ``"int8"`` (dynamic quantisation of ``nn.Linear`` for CPU inference).
        lite: ``True`` for the seconds-long lite mode, ``False`` for the full run,
            ``None`` to decide by hardware (lite on a CPU).
        allow_fallback: replace what is missing with the nearest thing available, with a
            warning, instead of raising.

    Example:
        >>> ResourceConfig(precision="fp8")
        Traceback (most recent call last):
        ...
        ValueError: precision='fp8' is not supported; expected one of 'fp32', 'fp16', 'bf16', 'int8'.
    """

    device: str = "auto"
    model_size: str = "auto"
    precision: str = "fp32"
    lite: bool | None = None
    allow_fallback: bool = False

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_choice("model_size", self.model_size, MODEL_SIZES)
        check_choice("precision", self.precision, PRECISIONS)
        if self.lite is not None:
            check_bool("lite", self.lite)
        check_bool("allow_fallback", self.allow_fallback)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ResourceConfig:
        """Build from a mapping; unknown keys are an error, not silently ignored."""
        if not isinstance(values, Mapping):
            raise TypeError(f"resource config must be a mapping, got {type(values).__name__}.")
        check_keys("resource config keys", values, [f.name for f in fields(cls)])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ResourceConfig:
        """Read a ``.json``, ``.yaml`` or ``.yml`` file holding the fields above."""
        return cls.from_dict(load_mapping(path))

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add ``--device``, ``--model-size``, ``--precision``, ``--lite/--full`` and
        ``--allow-fallback`` to an argparse parser."""
        group = parser.add_argument_group("resources")
        group.add_argument("--device", choices=DEVICES, default="auto")
        group.add_argument("--model-size", choices=MODEL_SIZES, default="auto")
        group.add_argument("--precision", choices=PRECISIONS, default="fp32")
        lite = group.add_mutually_exclusive_group()
        lite.add_argument("--lite", dest="lite", action="store_true", default=None)
        lite.add_argument("--full", dest="lite", action="store_false")
        group.add_argument("--allow-fallback", action="store_true")

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> ResourceConfig:
        """Build from the namespace of a parser set up with :meth:`add_arguments`."""
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})


def load_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a JSON or YAML file whose top level is a mapping (see
    :func:`mlcourse.config_files.load_config_file`: duplicate keys are refused).

    Example:
        >>> load_mapping("config.toml")
        Traceback (most recent call last):
        ...
        mlcourse.config_files.ConfigFileError: config file 'config.toml': the file has suffix '.toml'; expected one of '.json', '.yaml', '.yml'.
    """
    from mlcourse.config_files import load_config_file

    return load_config_file(path)


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
        """For ``precision="int8"``: a dynamically quantised copy of ``model`` for CPU
        inference. For any other precision, ``model`` itself."""
        if self.precision != "int8":
            return model
        return _quantize_dynamic(model)

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
            "requested": self.requested.as_dict(),
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
        config = ResourceConfig.from_dict({**config.as_dict(), **overrides})
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


@contextlib.contextmanager
def _no_deprecation_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # torch 2.14 marks its quantized tensor types as deprecated (moving to torchao).
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        yield


def _quantize_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    with _no_deprecation_warnings():
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
