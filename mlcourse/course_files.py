"""Where the course's own files are: the lessons, the shipped datasets, the example configs.

The one place that answers it; every other module asks here. A *course root* is a folder
holding ``notebooks/``, ``datasets/`` and ``configs/`` (a checkout of the repository). It is,
in order:

1. ``$MLCOURSE_ROOT``, when set: an explicit course folder;
2. the checkout this package runs from, as pip recorded it (PEP 610's ``direct_url.json`` of
   an editable install, which is how ``course.py`` installs it);
3. none, when the package was installed from a wheel (or ``pip install .``): the datasets
   and configs the wheel carries are then used, installed under
   ``<environment>/share/mlcourse/``, and tools that need the lessons say to set
   ``$MLCOURSE_ROOT``.

``$MLCOURSE_DATA_DIR`` overrides the datasets folder alone.

Example:
    >>> root = course_root()
    >>> root is None or (root / "notebooks").is_dir()
    True
    >>> (datasets_dir() / "digits" / "dataset.json").is_file()
    True
    >>> sorted(p.name for p in configs_dir().glob("digits_mlp*.yaml"))[:1]
    ['digits_mlp.yaml']
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT_ENV = "MLCOURSE_ROOT"
DATA_DIR_ENV = "MLCOURSE_DATA_DIR"
# Where a wheel installs the course files it carries (pyproject's data-files).
INSTALLED = Path(sys.prefix) / "share" / "mlcourse"
SHIPPED = ("datasets", "configs")  # the folders a wheel carries


class CourseFilesNotFound(FileNotFoundError):
    """The course's files (lessons, datasets or configs) are not where they should be."""


def course_root() -> Path | None:
    """The course folder (``$MLCOURSE_ROOT``, else the checkout this package runs from),
    or ``None`` when the package was installed from a wheel.

    Raises:
        CourseFilesNotFound: ``$MLCOURSE_ROOT`` names a folder without ``notebooks/``.
    """
    explicit = os.environ.get(ROOT_ENV)
    if explicit:
        root = Path(explicit).expanduser().resolve()
        if not (root / "notebooks").is_dir():
            raise CourseFilesNotFound(
                f"{ROOT_ENV}={explicit!r} is not a course folder: it holds no notebooks/ "
                "(expected a checkout of the course, the folder holding notebooks/, "
                "datasets/ and configs/)."
            )
        return root
    return editable_checkout()


def editable_checkout() -> Path | None:
    """The checkout this very package is imported from, when pip installed it editable
    (PEP 610 ``direct_url.json``: ``dir_info.editable``), else ``None``.

    A distribution whose folder does not hold this module (e.g. another environment's
    editable install that happens to be on ``sys.path``) is not taken. The folder need not
    show all of the course: the grading sandbox shows only the package, the datasets and
    the configs of it.
    """
    here = Path(__file__).resolve()
    for dist in metadata.distributions(name="mlcourse"):
        folder = _editable_folder(dist.read_text("direct_url.json"))
        if folder is not None and here.is_relative_to(folder):
            return folder
    return None


def _editable_folder(direct_url: str | None) -> Path | None:
    """The local folder of an editable install's ``direct_url.json`` text, else ``None``.

    Example:
        >>> _editable_folder('{"url": "file:///src/course", "dir_info": {"editable": true}}')
        PosixPath('/src/course')
        >>> _editable_folder('{"url": "file:///w/m.whl", "archive_info": {}}') is None
        True
    """
    if not direct_url:
        return None
    record = json.loads(direct_url)
    url = urlparse(record.get("url", ""))
    if url.scheme != "file" or not record.get("dir_info", {}).get("editable"):
        return None  # a wheel, an archive or a copy: no checkout to point at
    return Path(unquote(url.path)).resolve()


def require_course_root() -> Path:
    """:func:`course_root`, or an error saying how to point at one.

    Raises:
        CourseFilesNotFound: no course folder (a wheel install without ``$MLCOURSE_ROOT``).
    """
    root = course_root()
    if root is None:
        raise CourseFilesNotFound(
            "the lessons are not installed with the package: set "
            f"{ROOT_ENV} to a checkout of the course (the folder holding notebooks/)."
        )
    return root


def notebooks_dir() -> Path:
    """The folder of the numbered lessons (needs a course root)."""
    return require_course_root() / "notebooks"


def datasets_dir() -> Path:
    """The shipped datasets: ``$MLCOURSE_DATA_DIR``, the course's ``datasets/``, or the
    copies installed with the package."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return shipped_dir("datasets")


def configs_dir() -> Path:
    """The example training configs: the course's ``configs/`` or the installed copies."""
    return shipped_dir("configs")


def shipped_dir(name: str) -> Path:
    """``name`` (one of :data:`SHIPPED`) in the course root, or as installed with a wheel.

    Raises:
        ValueError: ``name`` is not a folder the wheel carries.
        CourseFilesNotFound: the folder is in neither place.
    """
    if name not in SHIPPED:
        raise ValueError(f"name={name!r} is not shipped; expected one of {SHIPPED!r}.")
    root = course_root()
    folder = (root / name) if root is not None else (INSTALLED / name)
    if not folder.is_dir():
        raise CourseFilesNotFound(
            f"no {name}/ folder at {folder}: reinstall the package, or set {ROOT_ENV} to a "
            "checkout of the course."
        )
    return folder
