"""Reproducible numerics on the CPU: pin the kernels the libraries pick, and fingerprint a run.

PyTorch, Intel's MKL (matrix products, ``exp``/``sqrt``...), oneDNN (convolutions, bf16)
and NumPy each look at the CPU when they start and pick the fastest kernels it supports:
AVX-512 on one machine, AVX2 on another. Different kernels add floating-point numbers in a
different order, so the same seed gives results that differ in the last bits, and a long
training run can amplify those bits into a different accuracy. This module

- pins every switch those libraries offer to one instruction set that nearly every x86-64
  CPU since 2013 has (AVX2 with FMA) and to one thread (:func:`numerics_pins`), through
  environment variables that must be set *before* the libraries load
  (:func:`pinned_environment` for a child process, :func:`pin_this_process` for a command);
- reports what a process actually uses (:func:`numerics_fingerprint`): the CPU, the kernel
  set torch dispatches to, the library versions, the pins and the thread counts. Two runs
  whose fingerprints have the same ``id`` are expected to agree bit for bit.

What pinning buys was measured (``docs/numerics.md``): with these pins an AVX-512 AMD EPYC
and an emulated AVX2 AMD CPU produce the same bits. Intel CPUs can still differ in the last
bits (MKL uses vendor-specific kernels even when pinned), and Apple silicon and GPUs run
other code altogether: there the course compares numbers within declared tolerances.

Example:
    >>> pins = numerics_pins(machine="x86_64", cpu_flags={"avx2", "fma"})
    >>> pins["ATEN_CPU_CAPABILITY"], pins["MKL_CBWR"], pins["OMP_NUM_THREADS"]
    ('avx2', 'AVX2,STRICT', '1')
    >>> pinned_environment({"OMP_NUM_THREADS": "4"}, pins=pins)["OMP_NUM_THREADS"]
    '4'
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# One thread for every library: lesson models are tiny, and the number of threads changes
# how a sum is split up, hence its last bits. Set OMP_NUM_THREADS yourself to use more.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# NumPy's run-time dispatch targets above AVX2 (NumPy 2.x names; unknown names are ignored).
_NUMPY_ABOVE_AVX2 = "X86_V4 AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
# torch's, MKL's, oneDNN's and NumPy's portable kernels (SSE4 at most), for a CPU without
# AVX2; the test suite also runs every lesson with them to stand in for another CPU.
PORTABLE_PINS = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _NUMPY_ABOVE_AVX2,
    "OPENBLAS_CORETYPE": "Nehalem",
}
# No pins at all: each library picks its kernels and threads itself (for measuring what
# pinning costs; benchmarks/lessons.py --kernels unpinned).
UNPINNED: dict[str, str | None] = {}  # filled below, once PIN_VARIABLES exists
# Every variable the pins may set, in the order they are reported.
PIN_VARIABLES = (
    "ATEN_CPU_CAPABILITY",  # torch's own kernels: default | avx2 | avx512
    "MKL_CBWR",  # MKL's conditional numerical reproducibility branch
    "ONEDNN_MAX_CPU_ISA",  # the newest instruction set oneDNN may use
    "NPY_DISABLE_CPU_FEATURES",  # NumPy's dispatch targets switched off
    "OPENBLAS_CORETYPE",  # the kernel family of NumPy's and SciPy's OpenBLAS
    *THREAD_VARIABLES,
)
UNPINNED.update(dict.fromkeys(PIN_VARIABLES))
# The CPU features that decide which kernels the libraries can pick.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
)


def cpu_info() -> dict[str, Any]:
    """Vendor, family/model numbers, model name and the instruction-set flags of this CPU.

    Reads ``/proc/cpuinfo`` on Linux; elsewhere reports what ``platform`` and ``sysctl``
    say (no flags).

    Example:
        >>> sorted(cpu_info())
        ['family', 'flags', 'model', 'model_name', 'vendor']
    """
    info: dict[str, Any] = {"vendor": "", "family": "", "model": "", "model_name": "", "flags": []}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields = {"vendor_id": "vendor", "cpu family": "family", "model": "model",
                  "model name": "model_name", "flags": "flags", "Features": "flags",
                  "CPU implementer": "vendor", "CPU part": "model"}  # fmt: skip
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            name = fields.get(key.strip())
            if name and not info[name]:
                info[name] = value.split() if name == "flags" else value.strip()
            if not line.strip() and info["flags"]:
                break  # the first processor is enough
    elif sys.platform == "darwin":
        info["model_name"] = _sysctl("machdep.cpu.brand_string")
        info["vendor"] = "Apple" if platform.machine() == "arm64" else _sysctl("machdep.cpu.vendor")
    if not info["model_name"]:
        info["model_name"] = platform.processor() or platform.machine()
    info["flags"] = sorted(set(info["flags"]) & set(ISA_FLAGS))
    return info


def numerics_pins(
    *, machine: str | None = None, cpu_flags: set[str] | list[str] | None = None
) -> dict[str, str]:
    """The environment variables that pin CPU dispatch and threads on this machine.

    On x86-64 with AVX2 and FMA every library is held to AVX2 (MKL in its strict
    reproducible mode); an older x86-64 CPU gets the portable kernels. On other machines
    (Apple silicon, ARM servers) only the thread counts can be pinned.

    Example:
        >>> numerics_pins(machine="x86_64", cpu_flags=set())["ATEN_CPU_CAPABILITY"]
        'default'
        >>> sorted(numerics_pins(machine="arm64"))
        ['MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS']
    """
    machine = (machine or platform.machine()).lower()
    pins = dict.fromkeys(THREAD_VARIABLES, "1")
    if machine not in ("x86_64", "amd64"):
        return pins
    flags = set(cpu_info()["flags"] if cpu_flags is None else cpu_flags)
    if {"avx2", "fma"} <= flags:
        pins.update(
            ATEN_CPU_CAPABILITY="avx2",
            MKL_CBWR="AVX2,STRICT",
            ONEDNN_MAX_CPU_ISA="AVX2",
            NPY_DISABLE_CPU_FEATURES=_NUMPY_ABOVE_AVX2,
            OPENBLAS_CORETYPE="Haswell",
        )
    else:
        pins.update(PORTABLE_PINS)
        if "sse4_2" not in flags:  # older than Nehalem: let OpenBLAS choose
            del pins["OPENBLAS_CORETYPE"]
    return pins


def pinned_environment(
    base: Mapping[str, str], *, pins: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` plus the pins; a variable ``base`` already sets wins (and is reported).

    So ``ATEN_CPU_CAPABILITY=default python3 course.py test`` runs every lesson on torch's
    portable kernels, and the fingerprint says so.

    Example:
        >>> env = pinned_environment({"ATEN_CPU_CAPABILITY": "default"},
        ...                          pins={"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"})
        >>> env["ATEN_CPU_CAPABILITY"], env["MKL_CBWR"]
        ('default', 'AVX2')
    """
    pins = numerics_pins() if pins is None else pins
    return {**pins, **base}


def with_overrides(
    environment: Mapping[str, str], overrides: Mapping[str, str | None]
) -> dict[str, str]:
    """``environment`` with ``overrides`` on top; a ``None`` value removes the variable.

    Example:
        >>> with_overrides({"A": "1", "B": "2"}, {"A": None, "C": "3"})
        {'B': '2', 'C': '3'}
    """
    merged = {**environment, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


def pin_this_process() -> dict[str, str]:
    """Apply the pins to ``os.environ`` of this process, before torch or NumPy load.

    Command-line tools (``mlcourse-train``) call it first thing. Returns the variables it set.

    Raises:
        RuntimeError: torch or NumPy is already imported, so the pins would not take effect.
    """
    loaded = [name for name in ("torch", "numpy") if name in sys.modules]
    missing = {k: v for k, v in numerics_pins().items() if k not in os.environ}
    if loaded and missing:
        raise RuntimeError(
            f"pin_this_process() must run before {' and '.join(loaded)} is imported: "
            f"{', '.join(sorted(missing))} would not take effect. Call it at the very top of "
            "the program, or set those variables in the environment."
        )
    os.environ.update(missing)
    return missing


def numerics_fingerprint() -> dict[str, Any]:
    """What decides the bits of this process's results, with a short ``id`` over all of it.

    Imports torch and NumPy (call it after :func:`pin_this_process`, or in a child
    process started with :func:`pinned_environment`).

    Example:
        >>> fp = numerics_fingerprint()
        >>> len(fp["id"]), fp["torch"]["capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX")
        (12, True)
    """
    import numpy as np
    import torch

    config = torch.__config__.show()
    parts: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": cpu_info(),
        "torch": {
            "version": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(),
            "blas": _first_match(r"Math Kernel Library Version (\S+)", config, prefix="MKL "),
            "onednn": _first_match(r"MKL-DNN v(\S+)", config),
            "threads": torch.get_num_threads(),
        },
        "numpy": {"version": np.__version__, "simd": _numpy_simd()},
        "pins": {name: os.environ.get(name) for name in PIN_VARIABLES},
    }
    parts["id"] = fingerprint_id(parts)
    return parts


def fingerprint_id(parts: Mapping[str, Any]) -> str:
    """12 hex digits over everything in a fingerprint except its model *name* (virtual
    machines often report a generic one; family and model numbers identify the CPU).

    Example:
        >>> a = {"cpu": {"model_name": "AMD EPYC", "family": "26"}, "torch": {"version": "2.14.1"}}
        >>> fingerprint_id(a) == fingerprint_id({**a, "cpu": {**a["cpu"], "model_name": "x"}})
        True
    """
    relevant = {k: v for k, v in parts.items() if k != "id"}
    relevant["cpu"] = {k: v for k, v in dict(relevant.get("cpu", {})).items() if k != "model_name"}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe(fingerprint: Mapping[str, Any]) -> str:
    """A few readable lines about a fingerprint, for a lesson or a log.

    Example:
        >>> print(describe({"id": "abc", "machine": "x86_64", "cpu": {"vendor": "AuthenticAMD",
        ...     "model_name": "AMD EPYC", "flags": ["avx2"]}, "torch": {"version": "2.14.1",
        ...     "capability": "AVX2", "blas": "MKL 2024.2", "threads": 1},
        ...     "numpy": {"version": "2.4.6", "simd": "X86_V3"}, "pins": {"MKL_CBWR": "AVX2"}}))
        numerics fingerprint abc
          CPU: AMD EPYC (AuthenticAMD, x86_64), flags: avx2
          torch 2.14.1: AVX2 kernels, MKL 2024.2, 1 thread(s)
          NumPy 2.4.6: X86_V3 kernels
          pins: MKL_CBWR=AVX2
    """
    cpu, torch_, numpy_ = fingerprint["cpu"], fingerprint["torch"], fingerprint["numpy"]
    pins = [f"{k}={v}" for k, v in fingerprint["pins"].items() if v is not None]
    return "\n".join(
        [
            f"numerics fingerprint {fingerprint['id']}",
            f"  CPU: {cpu['model_name']} ({cpu['vendor']}, {fingerprint['machine']}), "
            f"flags: {' '.join(cpu['flags']) or 'none reported'}",
            f"  torch {torch_['version']}: {torch_['capability']} kernels, "
            f"{torch_['blas'] or 'no MKL'}, {torch_['threads']} thread(s)",
            f"  NumPy {numpy_['version']}: {numpy_['simd']} kernels",
            f"  pins: {' '.join(pins) or 'none'}",
        ]
    )


def _numpy_simd() -> str:
    """The newest NumPy dispatch target in use (after NPY_DISABLE_CPU_FEATURES)."""
    try:
        from numpy._core._multiarray_umath import (
            __cpu_baseline__,
            __cpu_dispatch__,
            __cpu_features__,
        )
    except ImportError:  # another NumPy layout: say nothing rather than guess
        return "unknown"
    active = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    return (active or list(__cpu_baseline__) or ["baseline"])[-1]


def _first_match(pattern: str, text: str, prefix: str = "") -> str | None:
    match = re.search(pattern, text)
    return prefix + match.group(1) if match else None


def _sysctl(name: str) -> str:
    try:
        result = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except OSError:
        return ""
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m mlcourse.numerics [--pins | --fingerprint]``: print JSON (for launchers)."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--fingerprint"]):
        print(json.dumps(numerics_fingerprint(), sort_keys=True))
    elif args == ["--pins"]:
        print(json.dumps(numerics_pins(), sort_keys=True))
    else:
        print("usage: python -m mlcourse.numerics [--pins | --fingerprint]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
