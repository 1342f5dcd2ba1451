"""An nbgrader course directory for the lessons: create it, release lessons, read scores.

One nbgrader *assignment* per lesson, named after the lesson (``01_gradient_descent``),
holding one notebook of the same name. The directory is nbgrader's standard layout, so
every ``nbgrader`` command works in it too::

    course/
      nbgrader_config.py      calls mlcourse.grading.config.configure(c); your settings below
      gradebook.db            nbgrader's gradebook (SQLite unless db_url says otherwise)
      source/<lesson>/<lesson>.ipynb                  the worked lesson (with solutions)
      release/<lesson>/<lesson>.ipynb                 what students get
      submitted/<student>/<lesson>/<lesson>.ipynb     what they handed in
      autograded/<student>/<lesson>/<lesson>.ipynb    executed and scored
      feedback/<student>/<lesson>/<lesson>.html       the report a student reads
      roster.csv                                      names, e-mails, LMS ids (optional)
      grades.csv                                      every student and lesson: status, scores
      reports/<lesson>.csv                            one row per submission: status, reason
      logs/<lesson>/<student>.log                     the grading log of each submission
      .mlcourse-grade/reference/                      the solutions' recorded checks (cache)

Example:
    >>> import tempfile
    >>> course = Course.create(tempfile.mkdtemp())
    >>> course.released_lessons()
    []
    >>> course.release("99_missing")
    Traceback (most recent call last):
    ...
    ValueError: lesson='99_missing' is not supported; expected one of ...
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import capture_log
from traitlets.config import Config

from mlcourse.arguments import check_choice
from mlcourse.course_files import notebooks_dir
from mlcourse.grading.config import CONFIG_FILE, CONFIG_TEXT, load_course_config
from mlcourse.grading.student import graded_cells, lessons_with_exercises, prepare_source
from mlcourse.integrity import atomic_write_text

LOCK_FILE = ".mlcourse-grade.lock"


class GradingError(RuntimeError):
    """An nbgrader step failed; the message carries the end of nbgrader's log."""


@contextlib.contextmanager
def nbgrader_environment() -> Iterator[None]:
    """nbgrader runs ``alembic`` (installed beside Python) when it creates a gradebook;
    make sure it is on ``PATH`` even when the virtual environment is not activated."""
    saved = os.environ.get("PATH", "")
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in saved.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, saved]) if saved else bin_dir
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def run_converter(converter: Any, what: str) -> str:
    """Run an nbgrader converter in this process; return its log or raise GradingError."""
    with nbgrader_environment(), warnings.catch_warnings():
        # nbgrader 0.9 trips an SQLAlchemy 2 warning each time it adds a submission
        warnings.filterwarnings("ignore", message=".*not in session.*")
        result = capture_log(converter)
    log = result.get("log", "")
    if not result["success"]:
        detail = (result.get("error", "") + "\n" + log).strip().splitlines()[-15:]
        raise GradingError(f"{what} failed:\n" + "\n".join(detail))
    return log


class Course:
    """An nbgrader course directory (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike[str], config: Config | None = None) -> None:
        self.root = Path(root).resolve()
        self.config = config if config is not None else load_course_config(self.root)
        self.coursedir = CourseDirectory(config=self.config)
        self.coursedir.root = str(self.root)

    @classmethod
    def create(cls, root: str | os.PathLike[str]) -> Course:
        """Open the course directory at ``root``, creating it (and its config) if needed.

        An existing ``nbgrader_config.py`` is never replaced.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"course directory {str(root)!r} is a file, not a folder.")
        if root.is_dir() and not (root / CONFIG_FILE).exists() and any(root.iterdir()):
            raise FileExistsError(
                f"{str(root)!r} is not empty and is not a course directory (it has no "
                f"{CONFIG_FILE}); give a new or empty folder for the course."
            )
        root.mkdir(parents=True, exist_ok=True)
        if not (root / CONFIG_FILE).exists():
            atomic_write_text(root / CONFIG_FILE, CONFIG_TEXT)
        return cls(root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the course's lock file: one ``release`` or ``grade`` at a time per course.

        Raises:
            GradingError: another process holds it.
        """
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; run one command at a time
            yield
            return
        with open(self.root / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GradingError(
                    f"another mlcourse-grade command is working in {self.root} (it holds "
                    f"{LOCK_FILE}); wait for it to finish."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # paths -------------------------------------------------------------------------
    def path(self, step: str, lesson: str, student: str = ".") -> Path:
        """``<root>/<step folder>/<student>/<lesson>`` as nbgrader lays it out.

        ``step`` is one of ``source``, ``release``, ``submitted``, ``autograded``,
        ``feedback``; the folder names come from the course's config.
        """
        check_choice("step", step, ("source", "release", "submitted", "autograded", "feedback"))
        folder = getattr(self.coursedir, f"{step}_directory")
        return Path(self.coursedir.format_path(folder, student, lesson))

    def notebook(self, step: str, lesson: str, student: str = ".") -> Path:
        """The lesson's notebook in ``step`` (see :meth:`path`)."""
        suffix = ".html" if step == "feedback" else ".ipynb"
        return self.path(step, lesson, student) / f"{lesson}{suffix}"

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    def gradebook(self) -> Gradebook:
        """nbgrader's gradebook; use as ``with course.gradebook() as gb: ...``."""
        return Gradebook(self.db_url, self.coursedir.course_id)

    # lessons -----------------------------------------------------------------------
    def released_lessons(self) -> list[str]:
        """Lessons released in this course: in the gradebook and in ``source/``."""
        if not self.db_url.startswith("sqlite:///") or Path(self.db_url[10:]).exists():
            with nbgrader_environment(), self.gradebook() as gb:
                names = [a.name for a in gb.assignments]
        else:
            names = []
        return sorted(n for n in names if self.notebook("source", n).exists())

    def check_released(self, lesson: str) -> str:
        """Return ``lesson`` if it is released here; raise ``ValueError`` naming the released ones."""
        released = self.released_lessons()
        if lesson not in released:
            listed = ", ".join(repr(n) for n in released) or "none yet"
            raise ValueError(
                f"lesson={lesson!r} has not been released in course {str(self.root)!r} "
                f"(released: {listed}); run `mlcourse-grade release {lesson} --course "
                f"{self.root}` first."
            )
        return lesson

    def release(
        self,
        lesson: str,
        lessons_dir: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
    ) -> Path:
        """Make ``release/<lesson>/<lesson>.ipynb`` with nbgrader from the worked lesson.

        Args:
            lesson: a lesson with exercises, e.g. ``"01_gradient_descent"``.
            lessons_dir: where the worked lessons are (default ``notebooks/``).
            force: replace a source that differs from the lesson (a lesson changed since
                it was released). Without it such a source is never overwritten.

        Returns:
            the released notebook.
        """
        lessons_dir = Path(lessons_dir) if lessons_dir is not None else notebooks_dir()
        available = {p.stem: p for p in lessons_with_exercises(lessons_dir)}
        check_choice("lesson", lesson, sorted(available))
        worked = nbformat.read(available[lesson], as_version=4)
        ids = [c.metadata["nbgrader"]["grade_id"] for c in graded_cells(worked)]
        if len(ids) < 1:  # pragma: no cover - lessons_with_exercises filters these
            raise ValueError(f"lesson {lesson!r} has no graded exercise.")
        text = nbformat.writes(prepare_source(worked)) + "\n"
        source = self.notebook("source", lesson)
        current = source.read_text(encoding="utf-8") if source.exists() else None
        if current is not None and current != text and not force:
            raise FileExistsError(
                f"{source} differs from {available[lesson]} (the lesson changed since it "
                "was released); pass --force to release the new version."
            )
        if current != text:
            atomic_write_text(source, text, overwrite=True)
        from nbgrader.converters import GenerateAssignment

        with self.lock(), for_assignment(self.coursedir, lesson, "."):
            converter = GenerateAssignment(coursedir=self.coursedir, config=self.config)
            converter.force = True
            run_converter(converter, f"nbgrader generate_assignment {lesson}")
        return self.notebook("release", lesson)

    def max_score(self, lesson: str) -> float:
        """The points the lesson's exercises are worth."""
        with nbgrader_environment(), self.gradebook() as gb:
            return float(gb.find_assignment(lesson).max_score)

    def scores(self, lesson: str) -> dict[str, dict[str, float | None]]:
        """``{student: {grade_id: auto score}}`` for every submission of ``lesson``."""
        found: dict[str, dict[str, float | None]] = {}
        with nbgrader_environment(), self.gradebook() as gb:
            for submission in gb.find_assignment(lesson).submissions:
                found[submission.student_id] = {
                    grade.name: grade.auto_score
                    for notebook in submission.notebooks
                    for grade in notebook.grades
                }
        return found

    def add_students(self, students: list[str]) -> None:
        """Make sure every id in ``students`` is in the gradebook (so exports list them)."""
        with nbgrader_environment(), self.gradebook() as gb:
            for student in students:
                try:
                    gb.find_student(student)
                except MissingEntry:
                    gb.add_student(student)

    def seconds_late(self, lesson: str) -> dict[str, float]:
        """``{student: seconds late}`` for every submission of ``lesson`` (0 if on time)."""
        with nbgrader_environment(), self.gradebook() as gb:
            return {
                s.student_id: float(s.total_seconds_late or 0.0)
                for s in gb.find_assignment(lesson).submissions
            }


@contextlib.contextmanager
def for_assignment(coursedir: CourseDirectory, lesson: str, student: str) -> Iterator[None]:
    """Point ``coursedir`` at one lesson and student (``"*"``: all, ``"."``: the source)."""
    saved = coursedir.assignment_id, coursedir.student_id
    coursedir.assignment_id, coursedir.student_id = lesson, student
    try:
        yield
    finally:
        coursedir.assignment_id, coursedir.student_id = saved
