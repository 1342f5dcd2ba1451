"""The nbgrader configuration of a course directory.

A course directory's ``nbgrader_config.py`` is a few lines that call :func:`configure`,
so the course's choices live here, under test, and an instructor's own settings (a
PostgreSQL gradebook, another time limit) go below the call in that file. Plain
``nbgrader`` commands run in the course directory then behave like ``mlcourse-grade``.

Example:
    >>> from traitlets.config import Config
    >>> c = Config()
    >>> configure(c, cell_timeout=30)
    >>> c.Execute.timeout, c.CourseDirectory.course_id
    (30, 'mlcourse')
"""

from __future__ import annotations

import os
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    DeduplicateIds,
    GetGrades,
    IncludeHeaderFooter,
    InstantiateTests,
    LockCells,
    OverwriteKernelspec,
    SaveCells,
)
from traitlets.config import Config, PyFileConfigLoader

from mlcourse.arguments import check_int
from mlcourse.grading.preprocessors import (
    ClearExerciseOutputs,
    ForceLiteMode,
    HideHiddenTests,
    OverwriteReleasedCells,
    RestoreDeletedCells,
)

CONFIG_FILE = "nbgrader_config.py"
COURSE_ID = "mlcourse"
CELL_TIMEOUT = 60  # seconds per cell while autograding; lite-mode cells take a few

# nbgrader's GenerateAssignment pipeline with ClearOutput replaced by ClearExerciseOutputs.
# Without SaveCells (which writes the gradebook) it is also how the student copies are made.
RELEASE_PREPROCESSORS = [
    IncludeHeaderFooter,
    InstantiateTests,
    LockCells,
    ClearSolutions,
    ClearExerciseOutputs,
    CheckCellMetadata,
    ComputeChecksums,
    SaveCells,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]
# nbgrader's Autograde sanitising pipeline plus RestoreDeletedCells and ForceLiteMode, with
# OverwriteCells quiet about untouched test cells. (Plain `nbgrader autograde` in the course
# directory uses it; `mlcourse-grade grade` does the same clean-up itself, before sandboxing.)
SANITIZE_PREPROCESSORS = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreDeletedCells,
    OverwriteReleasedCells,
    ForceLiteMode,
    CheckCellMetadata,
]

# nbgrader's GenerateFeedback pipeline with the hidden tests' source left out.
FEEDBACK_PREPROCESSORS = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

CONFIG_TEXT = '''\
"""nbgrader settings for an mlcourse course directory (written by `mlcourse-grade release`).

`configure(c)` sets the course's defaults (see mlcourse/grading/config.py): lessons are
released with their lite-mode outputs but without solutions, hidden tests or exercise
outputs; submissions are graded with the original tests (deleted ones are put back), always
in lite mode, each cell limited to 60 seconds; feedback pages never show hidden tests. Lines below the call override these
defaults; `mlcourse-grade grade --timeout` and nbgrader's command line override both.
"""

from mlcourse.grading.config import configure

configure(c)  # noqa: F821 (`c` is the config object nbgrader passes to this file)

# A gradebook shared by several graders (default: sqlite:///<this folder>/gradebook.db):
# c.CourseDirectory.db_url = "postgresql://grader:PASSWORD@db.example.org/mlcourse"
# The time limit per cell while autograding, in seconds:
# c.Execute.timeout = 60
'''


def configure(c: Config, *, course_id: str = COURSE_ID, cell_timeout: int = CELL_TIMEOUT) -> None:
    """Set the course's nbgrader defaults on the config object ``c``."""
    check_int("cell_timeout", cell_timeout, min_value=1)
    c.CourseDirectory.course_id = course_id
    c.GenerateAssignment.preprocessors = list(RELEASE_PREPROCESSORS)
    c.Autograde.sanitize_preprocessors = list(SANITIZE_PREPROCESSORS)
    c.GenerateFeedback.preprocessors = list(FEEDBACK_PREPROCESSORS)
    c.Execute.timeout = cell_timeout
    c.Execute.interrupt_on_timeout = True
    c.Execute.startup_timeout = 120  # a loaded grading machine starts kernels slowly


def load_course_config(root: str | os.PathLike[str]) -> Config:
    """Read ``<root>/nbgrader_config.py`` the way nbgrader does, with ``root`` as course root.

    Raises:
        FileNotFoundError: the folder has no ``nbgrader_config.py`` (not a course directory).
    """
    root = Path(root).resolve()
    if not (root / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{str(root)!r} is not a course directory: it has no {CONFIG_FILE}; "
            "create one with `mlcourse-grade release LESSON --course DIR`."
        )
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return config
