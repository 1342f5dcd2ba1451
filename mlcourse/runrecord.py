"""The run record: everything needed to reproduce (or explain) a result, as JSON.

One call captures the environment (Python, OS, CPU, torch/CUDA/cuDNN, GPU, package
versions, git commit) together with what you pass in (seeds, resources, datasets,
hyperparameters). Store it beside every checkpoint; in a notebook it shows as a table.

Example:
    >>> record = collect_run_record(hyperparameters={"lr": 0.1})
    >>> record["hyperparameters"]
    {'lr': 0.1}
    >>> sorted(record["environment"])[:3]
    ['cpu', 'cpu_count', 'cuda']
    >>> record["environment"]["numerics"]["torch"]["threads"] >= 1
    True
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mlcourse.course_files import course_root
from mlcourse.integrity import atomic_write_text
from mlcourse.numerics import numerics_fingerprint

DEFAULT_PACKAGES = (
    "mlcourse",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "matplotlib",
    "ipywidgets",
    "papermill",
)


class RunRecord(dict):
    """A ``dict`` (JSON-ready) that renders as a readable table in Jupyter."""

    def to_json(self) -> str:
        return json.dumps(self, indent=2, sort_keys=True, default=str)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record as JSON, atomically, never over an existing file."""
        return atomic_write_text(path, self.to_json() + "\n")

    def _repr_html_(self) -> str:
        rows = []
        for section, values in self.items():
            if isinstance(values, Mapping) and values:
                for key, value in values.items():
                    rows.append((section, key, value))
            else:
                rows.append((section, "", values))
        body = "".join(
            f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td>"
            f"<td style='text-align:left'>{html.escape(_short(c))}</td></tr>"
            for a, b, c in rows
        )
        return (
            "<table><thead><tr><th>section</th><th>key</th><th>value</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )


def collect_run_record(
    *,
    seeds: Mapping[str, Any] | Any | None = None,
    resources: Any | None = None,
    datasets: Iterable[Any] = (),
    hyperparameters: Mapping[str, Any] | None = None,
    packages: Iterable[str] = DEFAULT_PACKAGES,
) -> RunRecord:
    """Capture the environment plus what you pass in.

    Args:
        seeds: a :class:`~mlcourse.seeding.SeedReport` or a mapping of seed values.
        resources: a :class:`~mlcourse.resources.Resources` (records fallbacks too).
        datasets: :class:`~mlcourse.datasets.ShippedDataset` objects or plain mappings
            (name, version, sha256) for the data the run used.
        hyperparameters: any JSON-ready mapping.
        packages: distribution names whose installed versions are recorded.
    """
    return RunRecord(
        created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        environment=environment_info(),
        packages=package_versions(packages),
        git=git_info(),
        seeds=_as_plain(seeds),
        resources=_as_plain(resources),
        datasets=[_as_plain(d.reference() if hasattr(d, "reference") else d) for d in datasets],
        hyperparameters=_as_plain(hyperparameters or {}),
    )


def environment_info() -> dict[str, Any]:
    """Python, OS, CPU and accelerator facts, as torch reports them, and the numerics
    fingerprint (CPU flags, kernel set, BLAS, threads, pins: :mod:`mlcourse.numerics`)."""
    cuda = torch.cuda.is_available()
    # Asking for the cuDNN version loads the library (~50 MB); only worth it with a GPU.
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_build": torch.version.cuda,
        "cudnn": cudnn,
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "numerics": numerics_fingerprint(),
    }


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution, ``None`` where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_info(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``path`` (default: the course
    folder, :func:`mlcourse.course_files.course_root`), or ``None`` (no checkout, no git)."""
    path = path if path is not None else course_root()
    if path is None:
        return None
    try:
        commit = _git(path, "rev-parse", "HEAD")
        status = _git(path, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status)}


def _git(path: str | os.PathLike[str], *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(path), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.strip()


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def _as_plain(value: Any) -> Any:
    """Turn dataclasses and objects with ``as_dict`` into JSON-ready structures."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "as_dict"):
        return _as_plain(value.as_dict())
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_plain(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, torch tensors
        return value.tolist()
    return str(value)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
