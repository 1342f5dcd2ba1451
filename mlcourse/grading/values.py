"""Plain-data copies of the values a test checks: made in the sandbox, read back outside it.

A graded test cell does not judge anything inside the sandbox (see
:mod:`mlcourse.grading.judge`): each check only *records* the value it was given, as
tagged JSON made by :func:`encode`. The grader rebuilds the value with :func:`decode`,
which accepts nothing but these tags and builds only plain Python and numpy values, never
an object of the student's classes, and never imports PyTorch: a tensor comes back as a
numpy array with its values (``bfloat16`` as ``float32``), a ``torch.Size`` as a tuple, a
dtype as :class:`TorchDtype`. The course's checks compare these exactly as they compare
tensors. Anything else is kept as an :class:`Opaque` value (its class name and ``repr``),
which equals only an identical opaque value. Sizes and nesting are bounded on both sides.

Example:
    >>> import numpy as np
    >>> decode(encode((1, 2.5, "three")))
    (1, 2.5, 'three')
    >>> decode(encode(np.arange(3.0)))
    array([0., 1., 2.])
    >>> decode({"t": "pickle", "v": "..."})
    Traceback (most recent call last):
    ...
    ValueError: unknown value tag 'pickle'; expected one of ...
"""

from __future__ import annotations

import base64
import math
import pathlib
import re
import sys
from typing import Any

MAX_BYTES = 16 * 2**20  # of one encoded value (arrays count their raw bytes)
MAX_DEPTH = 32
MAX_ITEMS = 100_000  # elements of one list/tuple/dict/set
MAX_REPR = 2_000  # characters of an opaque value's repr
# numpy dtypes an array may have, by their ``dtype.str`` (little-endian or byte-sized)
_ARRAY_DTYPES = frozenset(
    ["|b1", "|i1", "|u1"]
    + [f"<{k}{n}" for k in "iu" for n in (2, 4, 8)]
    + ["<f2", "<f4", "<f8", "<c8", "<c16"]
)
_TORCH_DTYPE = re.compile(r"^[a-z0-9_]{1,32}$")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.<>]{0,200}$")
TAGS = (
    "none",
    "bool",
    "int",
    "float",
    "complex",
    "str",
    "bytes",
    "list",
    "tuple",
    "dict",
    "set",
    "frozenset",
    "ndarray",
    "npscalar",
    "npdtype",
    "tensor",
    "torch.dtype",
    "torch.Size",
    "path",
    "opaque",
)


class Opaque:
    """A value the encoding cannot carry: its class and ``repr`` only.

    Two opaque values are equal when both are the same; an opaque value never equals a
    plain one, so a check that needs the real object fails with a clear message.
    """

    def __init__(self, cls: str, text: str) -> None:
        self.cls, self.text = cls, text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and (self.cls, self.text) == (other.cls, other.text)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.cls, self.text))

    def __repr__(self) -> str:
        return self.text


class TorchDtype:
    """A PyTorch dtype, by name (``torch.float32``), without importing PyTorch.

    Example:
        >>> TorchDtype("bool") == TorchDtype("bool"), TorchDtype("bool")
        (True, torch.bool)
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchDtype) and other.name == self.name

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("torch", self.name))

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, size: int) -> bool:
        self.left -= size
        return self.left >= 0


def _too_large(value: Any) -> dict[str, Any]:
    return {"t": "opaque", "cls": _class_name(value), "v": f"<{_class_name(value)}: too large>"}


def _class_name(value: Any) -> str:
    cls = type(value)
    name = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"
    return name if _CLASS_NAME.match(name) else "unknown"


def _float(value: float) -> str:
    return float(value).hex() if math.isfinite(value) else repr(float(value))


def encode(value: Any, *, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """Tagged JSON-ready data describing ``value`` (never raises)."""
    try:
        return _encode(value, _Budget(max_bytes), 0)
    except Exception as error:  # a hostile __repr__, __len__, ...: keep what can be said
        return {
            "t": "opaque",
            "cls": "unknown",
            "v": f"<value not readable: {type(error).__name__}>",
        }


def _encode(value: Any, budget: _Budget, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {"t": "opaque", "cls": "unknown", "v": "<nested too deeply>"}
    kind = type(value)
    if value is None:
        return {"t": "none"}
    if kind is bool:
        return {"t": "bool", "v": value}
    if kind is int:
        text = str(value) if value.bit_length() < 4000 else None
        if text is None or not budget.take(len(text)):
            return _too_large(value)
        return {"t": "int", "v": text}
    if kind is float:
        return {"t": "float", "v": _float(value)}
    if kind is complex:
        return {"t": "complex", "v": [_float(value.real), _float(value.imag)]}
    if kind is str:
        return {"t": "str", "v": value} if budget.take(len(value) * 4) else _too_large(value)
    if kind is bytes:
        if not budget.take(len(value) * 2):
            return _too_large(value)
        return {"t": "bytes", "v": base64.b64encode(value).decode("ascii")}
    if kind in (list, tuple, set, frozenset):
        if len(value) > MAX_ITEMS or not budget.take(8 * len(value)):
            return _too_large(value)
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return {"t": kind.__name__, "v": [_encode(v, budget, depth + 1) for v in items]}
    if kind is dict:
        if len(value) > MAX_ITEMS or not budget.take(16 * len(value)):
            return _too_large(value)
        pairs = [
            [_encode(k, budget, depth + 1), _encode(v, budget, depth + 1)] for k, v in value.items()
        ]
        return {"t": "dict", "v": pairs}
    if isinstance(value, pathlib.PurePath):
        return {"t": "path", "v": str(value)}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        found = _encode_numpy(value, numpy, budget, depth)
        if found is not None:
            return found
    torch = sys.modules.get("torch")
    if torch is not None:
        found = _encode_torch(value, torch, numpy, budget, depth)
        if found is not None:
            return found
    text = repr(value)[:MAX_REPR]
    return {"t": "opaque", "cls": _class_name(value), "v": text}


def _encode_numpy(value: Any, np: Any, budget: _Budget, depth: int) -> dict[str, Any] | None:
    if isinstance(value, np.dtype):
        return {"t": "npdtype", "v": value.str}
    if isinstance(value, np.generic | np.ndarray):
        array = np.asarray(value)
        if array.dtype.kind == "O":
            if array.size > MAX_ITEMS:
                return _too_large(value)
            items = [_encode(v, budget, depth + 1) for v in array.ravel().tolist()]
            return {"t": "list", "v": items} if array.ndim == 1 else _too_large(value)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        if array.dtype.str not in _ARRAY_DTYPES or not budget.take(array.nbytes):
            return _too_large(value)
        data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
        tag = "npscalar" if isinstance(value, np.generic) else "ndarray"
        return {"t": tag, "dtype": array.dtype.str, "shape": list(array.shape), "v": data}
    return None


def _encode_torch(
    value: Any, torch: Any, np: Any, budget: _Budget, depth: int
) -> dict[str, Any] | None:
    if isinstance(value, torch.dtype):
        return {"t": "torch.dtype", "v": str(value).removeprefix("torch.")}
    if isinstance(value, torch.Size):
        return {"t": "torch.Size", "v": [int(v) for v in value]}
    if isinstance(value, torch.Tensor) and np is not None:
        tensor = value.detach().cpu()
        name = str(tensor.dtype).removeprefix("torch.")
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        try:
            array = tensor.contiguous().numpy()
        except (TypeError, RuntimeError):
            return _too_large(value)
        found = _encode_numpy(array, np, budget, depth)
        if found is None or found["t"] != "ndarray":
            return found
        return {**found, "t": "tensor", "torch_dtype": name}
    return None


def decode(data: Any) -> Any:
    """The value described by ``data`` (from :func:`encode`); ``ValueError`` if malformed."""
    return _decode(data, 0)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"malformed recorded value: {what}")


def _decode(data: Any, depth: int) -> Any:
    _expect(depth <= MAX_DEPTH + 1, "nested too deeply")
    _expect(isinstance(data, dict) and isinstance(data.get("t"), str), "not a tagged value")
    tag = data["t"]
    if tag not in TAGS:
        shown = ", ".join(repr(t) for t in TAGS)
        raise ValueError(f"unknown value tag {tag!r}; expected one of {shown}.")
    raw = data.get("v")
    if tag == "none":
        return None
    if tag == "bool":
        _expect(isinstance(raw, bool), "bool")
        return raw
    if tag == "int":
        _expect(isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,1300}", raw) is not None, "int")
        return int(raw)
    if tag == "float":
        return _read_float(raw)
    if tag == "complex":
        _expect(isinstance(raw, list) and len(raw) == 2, "complex")
        return complex(_read_float(raw[0]), _read_float(raw[1]))
    if tag in ("str", "path"):
        _expect(isinstance(raw, str), tag)
        return raw if tag == "str" else pathlib.PurePosixPath(raw)
    if tag == "bytes":
        _expect(isinstance(raw, str), "bytes")
        return base64.b64decode(raw, validate=True)
    if tag in ("list", "tuple", "set", "frozenset"):
        _expect(isinstance(raw, list) and len(raw) <= MAX_ITEMS, tag)
        items = [_decode(v, depth + 1) for v in raw]
        if tag in ("set", "frozenset"):
            _expect(all(_hashable(v) for v in items), "set of unhashable values")
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict":
        _expect(isinstance(raw, list) and len(raw) <= MAX_ITEMS, "dict")
        result = {}
        for pair in raw:
            _expect(isinstance(pair, list) and len(pair) == 2, "dict item")
            key = _decode(pair[0], depth + 1)
            _expect(_hashable(key), "dict key")
            result[key] = _decode(pair[1], depth + 1)
        return result
    if tag == "opaque":
        cls = data.get("cls")
        _expect(isinstance(cls, str) and isinstance(raw, str), "opaque")
        return Opaque(cls[:300], raw[:MAX_REPR])
    if tag in ("ndarray", "npscalar", "tensor"):
        return _decode_array(data, tag)
    if tag == "npdtype":
        import numpy as np

        _expect(isinstance(raw, str) and raw in _ARRAY_DTYPES, "numpy dtype")
        return np.dtype(raw)
    return _decode_torch(tag, raw)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _read_float(raw: Any) -> float:
    _expect(isinstance(raw, str) and len(raw) < 40, "float")
    if raw in ("nan", "inf", "-inf"):
        return float(raw)
    try:
        return float.fromhex(raw)
    except ValueError:
        raise ValueError(f"malformed recorded value: float {raw!r}") from None


def _decode_array(data: dict[str, Any], tag: str) -> Any:
    import numpy as np

    dtype, shape, raw = data.get("dtype"), data.get("shape"), data.get("v")
    _expect(isinstance(dtype, str) and dtype in _ARRAY_DTYPES, "array dtype")
    _expect(
        isinstance(shape, list)
        and len(shape) <= 32
        and all(type(n) is int and n >= 0 for n in shape),
        "array shape",
    )
    _expect(isinstance(raw, str) and len(raw) <= MAX_BYTES * 2, "array data")
    buffer = base64.b64decode(raw, validate=True)
    count = math.prod(shape)
    _expect(len(buffer) == count * np.dtype(dtype).itemsize, "array size")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape).copy()
    if tag == "npscalar":
        _expect(array.ndim == 0, "numpy scalar")
        return array[()]
    if tag == "tensor":
        name = data.get("torch_dtype")
        _expect(isinstance(name, str) and _TORCH_DTYPE.match(name) is not None, "tensor dtype")
    return array


def _decode_torch(tag: str, raw: Any) -> Any:
    if tag == "torch.dtype":
        _expect(isinstance(raw, str) and _TORCH_DTYPE.match(raw) is not None, "torch dtype")
        return TorchDtype(raw)
    _expect(isinstance(raw, list) and all(type(n) is int for n in raw), "torch.Size")
    return tuple(raw)
