"""A grading worker: a long-lived process that runs one nbgrader job at a time.

:class:`mlcourse.grading.autograde.WorkerPool` starts ``python -m mlcourse.grading.worker``
processes and sends each a job as one JSON line on stdin; the worker answers with one
JSON line on stdout. Importing nbgrader takes seconds, so a worker pays it once and then
grades many submissions; each submission still runs in a kernel of its own. A job that
runs too long is stopped by killing the worker (and its kernel) and starting a new one.

Jobs:
    ``{"kind": "autograde", "root": PRIVATE, "config_root": COURSE, "lesson": L,
    "student": S, "cell_timeout": T}``: ``nbgrader autograde L --student S --force`` in the
    private course directory PRIVATE (its own SQLite gradebook), with COURSE's config.
    ``{"kind": "feedback", "root": COURSE, "lesson": L, "student": S}``:
    ``nbgrader generate_feedback L --student S --force`` in the course directory (which
    only reads the gradebook, so several workers can do it at once).

The worker first answers ``{"ready": true}`` once nbgrader is imported (the pool does not
count that time against a job). Replies: ``{"ok": bool, "log": str, "error": str, "scores": {grade_id: score}}``.

Example:
    >>> run_job({"kind": "unknown"})["error"]
    "kind='unknown' is not supported; expected one of 'autograde', 'feedback'."
"""

from __future__ import annotations

import copy
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from traitlets.config import Config

JOB_KINDS = ("autograde", "feedback")


def private_config(config: Config, root: str | os.PathLike[str]) -> Config:
    """``config`` pointed at the private course directory ``root`` and its own SQLite gradebook."""
    private = copy.deepcopy(config)  # the original is left alone
    root = Path(root).resolve()
    private.CourseDirectory.root = str(root)
    private.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    return private


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (see the module docstring); never raises."""
    try:
        from mlcourse.validation import check_choice

        check_choice("kind", job.get("kind"), JOB_KINDS)
        return _autograde(job) if job["kind"] == "autograde" else _feedback(job)
    except Exception as error:  # reported to the parent, which decides
        return {"ok": False, "log": "", "error": str(error), "trace": traceback.format_exc()}


def _autograde(job: dict[str, Any]) -> dict[str, Any]:
    from nbgrader.api import Gradebook
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    from mlcourse.grading.config import load_course_config

    config = private_config(load_course_config(job["config_root"]), job["root"])
    config.Execute.timeout = int(job["cell_timeout"])
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id, coursedir.student_id = job["lesson"], job["student"]
    converter = Autograde(coursedir=coursedir, config=config)
    converter.force = True
    result = capture_log(converter)
    scores: dict[str, float | None] = {}
    if result["success"]:
        with Gradebook(config.CourseDirectory.db_url) as gb:
            submission = gb.find_submission(job["lesson"], job["student"])
            scores = {g.name: g.auto_score for nb in submission.notebooks for g in nb.grades}
    return {
        "ok": bool(result["success"]),
        "log": result.get("log", ""),
        "error": result.get("error", ""),
        "scores": scores,
    }


def _feedback(job: dict[str, Any]) -> dict[str, Any]:
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    from mlcourse.grading.config import load_course_config

    config = load_course_config(job["root"])
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id, coursedir.student_id = job["lesson"], job["student"]
    converter = GenerateFeedback(coursedir=coursedir, config=config)
    converter.force = True
    result = capture_log(converter)
    return {
        "ok": bool(result["success"]),
        "log": result.get("log", ""),
        "error": result.get("error", ""),
        "scores": {},
    }


def main() -> int:
    """Serve jobs from stdin until it closes.

    The job and reply pipes are moved to private descriptors first, and fds 0/1 are
    pointed at /dev/null and stderr: a kernel inherits them, and student code writing to
    fd 1 must not be able to forge a reply.
    """
    jobs = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    import nbgrader.converters  # noqa: F401 (the slow import, done before the first job)

    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in jobs:
        if line.strip():
            reply = run_job(json.loads(line))
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
