"""The learner's own copies of the course notebooks (``my-work/``), so that their work never
touches the repository and a ``git pull`` never conflicts with it.

The folder mirrors ``notebooks/``: the start page, the worked lessons and, in
``student/``, the exercise versions. :func:`sync_work` makes it on the first start and
tops it up on every later one:

- a course notebook that is not in the folder is copied in (new lessons appear; a copy
  the learner deleted comes back fresh);
- a copy the learner never changed is updated when the course's version changes;
- a copy the learner changed is never touched: the result names it, and where the
  course's newer version is;
- anything else in the folder (the learner's own files) is left alone, and nothing is
  ever written through a symbolic link.

What was copied is recorded in ``.mlcourse-copies.json`` (each file's SHA-256 as copied);
a damaged record only makes every existing copy count as the learner's.

Example:
    >>> import tempfile
    >>> from mlcourse.notebooks import NOTEBOOK_DIR
    >>> work = Path(tempfile.mkdtemp()) / "my-work"
    >>> first = sync_work(NOTEBOOK_DIR, work)
    >>> "00_setup_and_reproducibility.ipynb" in first.copied, sync_work(NOTEBOOK_DIR, work).copied
    (True, [])
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlcourse.integrity import atomic_write_bytes, atomic_write_text
from mlcourse.notebooks import lesson_paths

RECORD_NAME = ".mlcourse-copies.json"
START_PAGE = "START.md"
EXERCISE_FOLDER = "student"


@dataclass
class SyncResult:
    """What :func:`sync_work` did, as paths relative to the work folder."""

    copied: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # the learner's copy -> newer course file
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was not touched
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """A few lines for the terminal (nothing when nothing happened)."""
        lines = []
        if self.copied:
            lines.append(f"copied in {len(self.copied)} new files: {', '.join(self.copied)}")
        if self.updated:
            lines.append(f"updated {len(self.updated)} files: {', '.join(self.updated)}")
        lines += [f"kept your {path} (the course's newer version: {newer})"
                  for path, newer in self.kept.items()]  # fmt: skip
        lines += [f"left {path} alone: {why}" for path, why in self.skipped.items()]
        return lines + self.warnings


def course_files(notebooks: str | os.PathLike[str]) -> dict[str, Path]:
    """The files copied into a work folder: relative path -> the course's file.

    Example:
        >>> from mlcourse.notebooks import NOTEBOOK_DIR
        >>> files = course_files(NOTEBOOK_DIR)
        >>> "START.md" in files, "student/01_gradient_descent.ipynb" in files
        (True, True)
    """
    notebooks = Path(notebooks)
    files = {START_PAGE: notebooks / START_PAGE} if (notebooks / START_PAGE).is_file() else {}
    files |= {path.name: path for path in lesson_paths(notebooks)}
    exercises = notebooks / EXERCISE_FOLDER
    if exercises.is_dir():
        files |= {f"{EXERCISE_FOLDER}/{p.name}": p for p in lesson_paths(exercises)}
    return files


def check_work_folder(notebooks: str | os.PathLike[str], work: str | os.PathLike[str]) -> Path:
    """``work`` as an absolute path, if it can hold the learner's copies.

    Raises:
        ValueError: ``work`` is, holds or lies inside the course's own ``notebooks``
            (the copies would be the tracked files themselves).
        NotADirectoryError: ``work`` exists and is not a folder.
    """
    notebooks, work = Path(notebooks).resolve(), Path(work).resolve()
    if work == notebooks or notebooks.is_relative_to(work) or work.is_relative_to(notebooks):
        raise ValueError(
            f"the work folder {str(work)!r} must be outside the course's notebooks folder "
            f"{str(notebooks)!r} (and not hold it): the copies must not be the course's files."
        )
    if work.exists() and not work.is_dir():
        raise NotADirectoryError(
            f"the work folder {str(work)!r} is a file, not a folder: move it away, or choose "
            "another folder (--work-dir)."
        )
    return work


def sync_work(notebooks: str | os.PathLike[str], work: str | os.PathLike[str]) -> SyncResult:
    """Make or top up the learner's work folder from the course's ``notebooks`` folder."""
    work = check_work_folder(notebooks, work)
    work.mkdir(parents=True, exist_ok=True)
    result = SyncResult()
    record = _read_record(work / RECORD_NAME, result)
    for name, source in course_files(notebooks).items():
        data = source.read_bytes()
        action = _sync_file(work, name, data, record.get(name))
        if action in ("copied", "updated", "same"):
            record[name] = _sha256(data)
        if action == "copied":
            result.copied.append(name)
        elif action == "updated":
            result.updated.append(name)
        elif action == "kept-newer":
            result.kept[name] = str(source)
        elif action not in ("same", "kept"):
            result.skipped[name] = action
    text = json.dumps(dict(sorted(record.items())), indent=1) + "\n"
    atomic_write_text(work / RECORD_NAME, text, overwrite=True)
    return result


def _sync_file(work: Path, name: str, data: bytes, copied_sha: str | None) -> str:
    """Bring one copy up to date; returns what was done (or why nothing was)."""
    target = work / name
    if target.parent != work and target.parent.is_symlink():
        return "its folder is a symbolic link"
    if target.parent.exists() and not target.parent.is_dir():
        return "its folder is a file"
    if target.is_symlink():
        return "it is a symbolic link"
    if not target.exists():
        atomic_write_bytes(target, data)
        return "copied"
    if not target.is_file():
        return "it is not a regular file"
    current, wanted = _sha256(target.read_bytes()), _sha256(data)
    if current == wanted:
        return "same"
    if current != copied_sha:  # the learner changed it (or it predates the record)
        return "kept-newer" if copied_sha is not None and copied_sha != wanted else "kept"
    atomic_write_bytes(target, data, overwrite=True)
    return "updated"


def _read_record(path: Path, result: SyncResult) -> dict[str, str]:
    """The record of what was copied; a damaged one counts as empty (and is reported)."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        record = error
    valid = isinstance(record, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in record.items()
    )
    if not valid:
        result.warnings.append(
            f"{path.name} was damaged, so every existing copy counts as yours (nothing is "
            "updated); it is rewritten now"
        )
        return {}
    return record


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
