"""What the grader trusts about a released lesson: its cells, tests and the solution's run.

:func:`load_lesson` reads, from the course directory only (never from a submission):

- the exercise cells nbgrader stored at release (type, source, checksum, points), in
  notebook order, and the released notebook;
- each test cell's check sites (:mod:`mlcourse.grading.instrument`) and the lines of its
  hidden tests (feedback never shows them);
- the lesson's other files in ``release/<lesson>/`` (a submission's sandbox gets them).

:class:`Reference` is the instructor's solution run through the same sandbox, with every
check recorded in full: the judge takes expected values from it, never from a student's
run. It is computed once per lesson, environment and source (``mlcourse-grade release``
does it when a sandbox is available) and cached in
``<course>/.mlcourse-grade/reference/``, with a checksum verified on every load.

Example:
    >>> StoredCell("code", "pass", "abc", True, 2.0).graded
    True
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode

from mlcourse.grading.course_directory import Course, GradingError, nbgrader_environment
from mlcourse.grading.instrument import HIDDEN_BEGIN, HIDDEN_END, InstrumentError, Site, instrument
from mlcourse.grading.preprocessors import is_exercise_cell
from mlcourse.integrity import atomic_write_text, sha256_bytes

REFERENCE_FORMAT = 1
CACHE_DIR = ".mlcourse-grade/reference"
FINGERPRINT_PACKAGES = ("numpy", "scipy", "torch", "ipykernel", "mlcourse", "nbgrader")


@dataclass(frozen=True)
class StoredCell:
    """An exercise cell as nbgrader stored it when the lesson was released."""

    cell_type: str
    source: str
    checksum: str
    locked: bool
    points: float | None  # None: not a graded cell

    @property
    def graded(self) -> bool:
        return self.points is not None


@dataclass
class Reference:
    """The solution's recorded checks: ``records[grade_id]`` in order, and which finished."""

    key: str
    records: dict[str, list[dict[str, Any]]]
    finished: dict[str, bool]
    state_sites: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT,
            "key": self.key,
            "records": self.records,
            "finished": self.finished,
            "state_sites": self.state_sites,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        if data.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"reference format {data.get('format')!r} is not {REFERENCE_FORMAT}")
        return cls(data["key"], data["records"], data["finished"], data.get("state_sites", {}))


@dataclass
class LessonSpec:
    """The trusted facts about one released lesson (see the module docstring)."""

    name: str
    cells: dict[str, StoredCell]
    order: list[str]
    release: NotebookNode
    source_text: str
    files: dict[str, bytes]
    sites: dict[str, list[Site]]
    hidden_lines: list[str]
    reference: Reference | None = None

    @property
    def graded(self) -> list[str]:
        """The graded (test) cells' ids, in notebook order."""
        return [g for g in self.order if self.cells[g].graded]

    @property
    def max_score(self) -> float:
        return float(sum(self.cells[g].points or 0.0 for g in self.graded))

    def points(self, grade_id: str) -> float:
        return float(self.cells[grade_id].points or 0.0)


def stored_cells(course: Course, lesson: str) -> dict[str, StoredCell]:
    """The lesson's exercise cells as the course gradebook holds them."""
    with nbgrader_environment(), course.gradebook() as gb:
        notebook = gb.find_notebook(lesson, lesson)
        points = {c.name: float(c.max_score) for c in notebook.grade_cells}
        return {
            c.name: StoredCell(
                c.cell_type, c.source, c.checksum, bool(c.locked), points.get(c.name)
            )
            for c in notebook.source_cells
        }


def hidden_test_lines(cells: dict[str, StoredCell]) -> list[str]:
    """Every non-trivial line of the hidden tests (for redacting them from outputs)."""
    from mlcourse.grading.instrument import hidden_lines

    found = []
    for cell in cells.values():
        if not cell.graded:
            continue
        lines = cell.source.splitlines()
        for number in sorted(hidden_lines(cell.source)):
            text = lines[number - 1].strip()
            if len(text) >= 12 and HIDDEN_BEGIN not in text and HIDDEN_END not in text:
                found.append(text)
    return sorted(set(found), key=len, reverse=True)


def load_lesson(course: Course, lesson: str) -> LessonSpec:
    """The trusted facts about ``lesson`` in ``course`` (which must have released it)."""
    course.check_released(lesson)
    cells = stored_cells(course, lesson)
    source_path = course.notebook("source", lesson)
    source_text = source_path.read_text(encoding="utf-8")
    source = nbformat.reads(source_text, as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in source.cells if is_exercise_cell(c)]
    order = [i for i in ids if i in cells] + [i for i in cells if i not in ids]
    release_dir = course.path("release", lesson)
    release = nbformat.read(course.notebook("release", lesson), as_version=4)
    files = {
        str(p.relative_to(release_dir)): p.read_bytes()
        for p in sorted(release_dir.rglob("*"))
        if p.is_file() and p.suffix != ".ipynb" and not p.name.startswith(".")
    }
    sites = {}
    for grade_id, cell in cells.items():
        if cell.graded and cell.cell_type == "code":
            try:
                sites[grade_id] = instrument(cell.source, grade_id=grade_id, mode="reference")[1]
            except InstrumentError as error:
                raise GradingError(f"{lesson}: {error}") from None
    return LessonSpec(
        lesson, cells, order, release, source_text, files, sites, hidden_test_lines(cells)
    )


def environment_fingerprint(env: dict[str, str], isolated: bool) -> dict[str, Any]:
    """What the solution's recorded values depend on, besides the lesson itself."""
    versions = {}
    for name in FINGERPRINT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    from mlcourse.grading.sandbox import RUN_ENV

    return {
        "python": sys.version,
        "machine": platform.machine(),
        "cpu_flags": hashlib.sha256(flags.encode()).hexdigest(),
        "packages": versions,
        "env": {k: v for k, v in sorted(env.items()) if k != RUN_ENV},
        "isolated": isolated,
    }


def reference_key(spec: LessonSpec, fingerprint: dict[str, Any]) -> str:
    """The cache key of ``spec``'s reference run in the environment ``fingerprint``."""
    facts = {
        "format": REFERENCE_FORMAT,
        "source": spec.source_text,
        "cells": {k: v.__dict__ for k, v in sorted(spec.cells.items())},
        "files": {k: sha256_bytes(v) for k, v in sorted(spec.files.items())},
        "fingerprint": fingerprint,
    }
    return sha256_bytes(json.dumps(facts, sort_keys=True).encode())


def _cache_path(course: Course, lesson: str, key: str) -> Path:
    return course.root / CACHE_DIR / f"{lesson}-{key[:24]}.json"


def load_cached_reference(course: Course, lesson: str, key: str) -> Reference | None:
    """The cached reference for ``key``; ``None`` if there is none or it is damaged (then
    the damaged file is moved aside, never read again)."""
    path = _cache_path(course, lesson, key)
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        payload = json.dumps(stored["reference"], sort_keys=True).encode()
        if stored.get("sha256") != sha256_bytes(payload):
            raise ValueError("checksum mismatch")
        reference = Reference.from_json(stored["reference"])
        if reference.key != key:
            raise ValueError("key mismatch")
        return reference
    except (ValueError, KeyError, TypeError):
        path.rename(path.with_name(f"{path.name}.damaged-{int(time.time())}"))
        return None


def save_reference(course: Course, lesson: str, reference: Reference) -> Path:
    """Cache ``reference`` (atomically; an existing file for the same key is kept)."""
    path = _cache_path(course, lesson, reference.key)
    data = reference.to_json()
    payload = json.dumps(data, sort_keys=True).encode()
    text = json.dumps({"sha256": sha256_bytes(payload), "reference": data}, sort_keys=True)
    if not path.exists():
        atomic_write_text(path, text + "\n")
    return path


def reference_for(
    course: Course,
    spec: LessonSpec,
    fingerprint: dict[str, Any],
    compute: Callable[[LessonSpec, str], Reference],
) -> tuple[Reference, bool]:
    """``spec``'s reference, cached or computed with ``compute(spec, key)``; and whether it
    was computed now. The result is also stored in ``spec.reference``."""
    key = reference_key(spec, fingerprint)
    reference = load_cached_reference(course, spec.name, key)
    computed = reference is None
    if reference is None:
        reference = compute(spec, key)
        save_reference(course, spec.name, reference)
    spec.reference = reference
    return reference, computed
