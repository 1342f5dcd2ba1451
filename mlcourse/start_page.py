"""The course's start page, ``notebooks/START.md``: a short welcome, the lesson map, where
the exercises are and how to get help. JupyterLab opens it first (:mod:`mlcourse.lab`).

Nothing in it is typed by hand that the lessons or a measurement can say: each lesson's
title and number of exercises come from the notebook, and its lite-mode time from
``benchmarks/lessons.py`` (kept at the end of the page, in a comment, with a hash of the
lesson's code, so a changed lesson shows up as not measured yet)::

    python -m mlcourse.start_page             # rewrite the page from the lessons
    python -m mlcourse.start_page --measure   # measure lessons changed since (then rewrite)
    python -m mlcourse.start_page --check     # is the page current? (what the tests ask)

Example:
    >>> entry = lesson_entries()[0]
    >>> entry.stem, entry.title
    ('00_setup_and_reproducibility', 'Setting up, and making results reproducible')
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from mlcourse.course_files import notebooks_dir, require_course_root
from mlcourse.integrity import atomic_write_text
from mlcourse.lab_settings import CULL_IDLE_MINUTES
from mlcourse.notebooks import lesson_paths

PAGE_NAME = "START.md"
EXERCISE_FOLDER = "student"
BENCHMARK = Path("benchmarks") / "lessons.py"  # in the course folder
MEASURED_PREFIX = "lite-runs "
# "# 00 · Title", "# Lesson 01: Title", "# 02 - Title" -> "Title"
_TITLE_PREFIX = re.compile(r"^(lesson\s+)?\d+\s*[·:.\-–—]?\s*", re.IGNORECASE)
_MEASURED = re.compile(rf"^{MEASURED_PREFIX}(\{{.*\}})$", re.MULTILINE)


@dataclass(frozen=True)
class LessonEntry:
    """One row of the lesson map."""

    stem: str
    number: str
    title: str
    exercises: int
    has_student_copy: bool
    code_hash: str


def lesson_entries(notebooks: str | os.PathLike[str] | None = None) -> list[LessonEntry]:
    """The lessons in ``notebooks`` (default ``notebooks/``), read from the notebooks."""
    folder = Path(notebooks) if notebooks is not None else notebooks_dir()
    entries = []
    for path in lesson_paths(folder):
        nb = nbformat.read(path, as_version=4)
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") is True]
        entries.append(
            LessonEntry(
                stem=path.stem,
                number=path.name[:2],
                title=lesson_title(nb, path.name),
                exercises=len(graded),
                has_student_copy=(folder / EXERCISE_FOLDER / path.name).is_file(),
                code_hash=code_hash(nb),
            )
        )
    return entries


def lesson_title(nb: nbformat.NotebookNode, name: str) -> str:
    """The lesson's title: its first ``# `` heading without the lesson number.

    Example:
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Lesson 01: GD")])
        >>> lesson_title(nb, "01_gd.ipynb")
        'GD'
    """
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    title = _TITLE_PREFIX.sub("", line[2:].strip()).strip()
                    if title:
                        return title
    raise ValueError(f"{name} has no title: its first markdown cells need a '# Title' line.")


def code_hash(nb: nbformat.NotebookNode) -> str:
    """Changes when the lesson's code changes (not its prose or outputs)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()[:16]


def read_measurements(text: str) -> dict[str, Any]:
    """The measurements kept in a start page: ``{"machine": ..., "lessons": {stem: {...}}}``.

    Example:
        >>> read_measurements("no measurements here")
        {'machine': '', 'lessons': {}}
    """
    match = _MEASURED.search(text)
    if match is None:
        return {"machine": "", "lessons": {}}
    data = json.loads(match.group(1))
    if not isinstance(data, dict) or not isinstance(data.get("lessons"), dict):
        raise ValueError(f"the measurements in {PAGE_NAME} are damaged: {match.group(1)[:80]!r}")
    return {"machine": str(data.get("machine", "")), "lessons": data["lessons"]}


def stale_lessons(entries: list[LessonEntry], measurements: dict[str, Any]) -> list[str]:
    """Lessons without a measurement of their current code."""
    measured = measurements["lessons"]
    return [e.stem for e in entries if measured.get(e.stem, {}).get("code") != e.code_hash]


def render(entries: list[LessonEntry], measurements: dict[str, Any]) -> str:
    """The start page for these lessons and measurements."""
    measured = measurements["lessons"]
    rows = []
    for entry in entries:
        run = measured.get(entry.stem, {})
        stale = run.get("code") != entry.code_hash
        time = "not measured yet" if stale else _duration(float(run["wall_s"]))
        exercises = "none"
        if entry.exercises:
            exercises = f"{entry.exercises}"
            if entry.has_student_copy:
                exercises = f"[{entry.exercises}]({EXERCISE_FOLDER}/{entry.stem}.ipynb)"
        link = f"[{entry.title}]({entry.stem}.ipynb)"
        rows.append(f"| {entry.number} | {link} | {time} | {exercises} |")
    peaks = [float(measured[e.stem]["peak_rss_mb"]) for e in entries if e.stem in measured]
    kernel_gb = f"{max(peaks) / 1000:.1f} GB" if peaks else "most of 1 GB"
    first = entries[0] if entries else None
    start = f"[{first.number} · {first.title}]({first.stem}.ipynb)" if first else "the first lesson"
    with_exercises = [e for e in entries if e.exercises]
    data = {"machine": measurements["machine"], "lessons": dict(sorted(measured.items()))}
    return PAGE_TEMPLATE.format(
        start=start,
        rows="\n".join(rows),
        machine=measurements["machine"] or "not measured yet",
        exercise_lessons=_span([e.number for e in with_exercises]),
        exercise_folder=EXERCISE_FOLDER,
        kernel_gb=kernel_gb,
        cull_minutes=CULL_IDLE_MINUTES,
        measured=MEASURED_PREFIX + json.dumps(data, sort_keys=True),
    )


def page_problems(notebooks: str | os.PathLike[str] | None = None) -> list[str]:
    """Why ``notebooks/START.md`` is not current (empty when it is)."""
    folder = Path(notebooks) if notebooks is not None else notebooks_dir()
    page = folder / PAGE_NAME
    if not page.is_file():
        return [f"{page} is missing: run `python -m mlcourse.start_page --measure`"]
    text = page.read_text(encoding="utf-8")
    entries, measurements = lesson_entries(folder), read_measurements(text)
    problems = [
        f"lesson {stem} changed since its lite time was measured (or was never measured): "
        "run `python -m mlcourse.start_page --measure`"
        for stem in stale_lessons(entries, measurements)
    ]
    if text != render(entries, measurements):
        problems.append(f"{page} is out of date: run `python -m mlcourse.start_page`")
    return problems


def measure(stems: list[str], *, repeat: int = 1) -> dict[str, dict[str, Any]]:
    """Lite-mode wall time and peak memory of lessons, by ``benchmarks/lessons.py``."""
    root = require_course_root()
    paths = [str(root / "notebooks" / f"{stem}.ipynb") for stem in stems]
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "lessons.json"
        subprocess.run(
            [sys.executable, str(root / BENCHMARK), *paths, "--repeat", str(repeat), "--json", str(output)],
            check=True, cwd=root,
        )  # fmt: skip
        rows = json.loads(output.read_text())
    by_stem = {row["notebook"]: row["pinned"] for row in rows}
    return {stem: by_stem[stem] for stem in stems}


def machine_description() -> str:
    """The CPU the measurements ran on, e.g. ``"AMD EPYC (x86_64, AVX-512), 2 cores"``."""
    from mlcourse.numerics import cpu_info

    info = cpu_info()
    flags = set(info["flags"])
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    arch = os.uname().machine if hasattr(os, "uname") else ""
    return f"{info['model_name']} ({arch}, {isa}), {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    """``python -m mlcourse.start_page [--check | --measure [LESSON ...]]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="only say whether it is current")
    action.add_argument(
        "--measure",
        nargs="*",
        metavar="LESSON",
        help="measure these lessons (stems; default: those changed since measured), then write",
    )
    args = parser.parse_args(argv)
    page = notebooks_dir() / PAGE_NAME
    if args.check:
        problems = page_problems()
        print("\n".join(problems) or f"{page} is current.")
        return 1 if problems else 0
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    entries, measurements = lesson_entries(), read_measurements(text)
    hashes = {e.stem: e.code_hash for e in entries}
    if args.measure is not None:
        unknown = sorted(set(args.measure) - set(hashes))
        if unknown:
            parser.error(f"unknown lessons {unknown}; expected some of {sorted(hashes)}")
        stems = args.measure or stale_lessons(entries, measurements)
        for stem, run in measure(stems).items():
            measurements["lessons"][stem] = {
                "code": hashes[stem],
                "wall_s": round(run["wall_s"], 1),
                "peak_rss_mb": round(run["peak_rss_mb"]),
            }
        if stems:
            measurements["machine"] = machine_description()
    # lessons that no longer exist drop out
    measurements["lessons"] = {k: v for k, v in measurements["lessons"].items() if k in hashes}
    atomic_write_text(page, render(entries, measurements), overwrite=True)
    print(f"wrote {page}")
    return 0


def _duration(seconds: float) -> str:
    """``"8 s"``, ``"1 min 5 s"``."""
    whole = max(1, round(seconds))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def _span(numbers: list[str]) -> str:
    """``"01-06"`` for consecutive lesson numbers, else ``"01, 03"``."""
    if not numbers:
        return "none"
    values = [int(n) for n in numbers]
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(numbers)


PAGE_TEMPLATE = """\
# Welcome to mlcourse

Reproducible, resource-aware machine learning, one small lesson at a time. Each lesson
builds one idea from scratch, checks it against a reference, and runs in seconds on a
laptop CPU ("lite mode").

**Start here:** open {start}, then choose **Run › Run All Cells**.

## Lessons

| | lesson | lite run | exercises |
|---:|---|---:|---:|
{rows}

Lite run: Run All in lite mode, measured on {machine}. Yours may be faster or slower.

## Exercises

Lessons {exercise_lessons} end with exercises. Practise on their copies in
[`{exercise_folder}/`]({exercise_folder}/): write your answer where a function says
`raise NotImplementedError()`, then run the test cell below it. A failed test says what it
checked, what it expected, what came back, and gives a hint. The worked solutions are in
the lessons themselves, folded away: try first.

## Your work stays yours

In JupyterLab you work in `my-work/`, your own copy of the course's notebooks, made the
first time you start it. Save and change anything: the originals in `notebooks/` are not
touched, so `git pull` never conflicts with your work. When the course adds or updates a
lesson, the next `python3 course.py lab` copies it in, but never overwrites a notebook you
changed. To start a lesson afresh, delete your copy and start JupyterLab again.

## Help

- **Memory:** each open lesson runs its own Python kernel (up to {kernel_gb}). Closing
  a notebook's tab stops its kernel, and so do {cull_minutes} idle minutes; Run All starts a
  new one.
- **A cell fails:** read the message under it, then see "Troubleshooting" in
  `docs/environments.md`, in the course's repository.
- **Questions, or a bug:** open an issue on the course's repository.

<!-- Generated by `python -m mlcourse.start_page` from the lessons and their measured lite
runs; edit the template in mlcourse/start_page.py, not this file.
{measured}
-->
"""


if __name__ == "__main__":
    raise SystemExit(main())
