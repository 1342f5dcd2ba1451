"""Stage 2 of grading: run one notebook in its sandbox.

Input: the trusted lesson facts (:class:`~mlcourse.grading.lesson.LessonSpec`) and one
notebook (a submission, or the solution for the reference run). Output: a
:class:`RunResult`, what each cell printed and recorded, or why the run failed.

:func:`sanitize` is nbgrader's autograde clean-up done by the grader, before anything
runs: outputs cleared, every locked cell (tests, read-only cells) replaced by the
original nbgrader stored at release, test cells a student deleted or unmarked put back,
metadata a student added dropped, and ``lite = True`` injected after the parameters.
:func:`runner_job` then swaps each graded test cell for its recording version
(:mod:`mlcourse.grading.instrument`) and :func:`run_notebook` hands the job to the
sandbox (:mod:`mlcourse.grading.sandbox`).

Example:
    >>> failure_reason({"kernel": "died", "kernel_exit": -24}, 60, 900)
    'the kernel died: it used up its CPU time limit'
"""

from __future__ import annotations

import base64
import copy
import signal
from dataclasses import dataclass, field
from typing import Any

from nbformat.notebooknode import NotebookNode

from mlcourse.grading.instrument import instrument
from mlcourse.grading.lesson import LessonSpec
from mlcourse.grading.preprocessors import ForceLiteMode, is_exercise_cell, restore_missing_cells
from mlcourse.grading.sandbox import Limits, Reply

SETUP = (
    "from mlcourse.grading.recorder import install as _install\n_install(globals())\ndel _install"
)
CELL_STATUSES = ("ok", "error", "timeout", "not-run")


def sanitize(spec: LessonSpec, submitted: NotebookNode) -> NotebookNode:
    """The notebook that is run for ``submitted``: its answers, the lesson's original tests.

    ``submitted`` is not changed. Cells keep the student's order; only exercise metadata
    and locked cells are taken from the lesson (see the module docstring).
    """
    nb = copy.deepcopy(submitted)
    nb.metadata = {"kernelspec": dict(spec.release.metadata.get("kernelspec", {}))}
    seen: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("jupyter", None)
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if grade_id not in spec.cells or grade_id in seen or not is_exercise_cell(cell):
            del cell.metadata["nbgrader"]
            continue
        seen.add(grade_id)
        _restore_cell(cell, grade_id, spec)
    restore_missing_cells(
        nb,
        spec.order,
        {g: (c.cell_type, c.source, c.checksum, c.locked) for g, c in spec.cells.items()},
        {g: spec.points(g) for g in spec.graded},
    )
    nb, _ = ForceLiteMode().preprocess(nb, {})
    return nb


def _restore_cell(cell: NotebookNode, grade_id: str, spec: LessonSpec) -> None:
    stored = spec.cells[grade_id]
    meta = {
        "grade": stored.graded,
        "grade_id": grade_id,
        "locked": stored.locked,
        "schema_version": 3,
        "solution": not stored.locked,
        "task": False,
        "checksum": stored.checksum,
    }
    if stored.graded:
        meta["points"] = stored.points
    cell.metadata["nbgrader"] = meta
    if stored.locked:
        if cell.cell_type != stored.cell_type:
            cell.cell_type = stored.cell_type
            if stored.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        cell.source = stored.source


def runner_job(
    spec: LessonSpec,
    notebook: NotebookNode,
    *,
    mode: str,
    cell_timeout: float,
    limits: Limits,
    handed_in: str,
) -> dict[str, Any]:
    """The sandbox runner's job for ``notebook`` (see :mod:`mlcourse.grading.runner`).

    Args:
        mode: ``"student"`` or ``"reference"`` (how test cells record).
        handed_in: the text put in the working folder as the notebook (what the student
            handed in; the run itself uses ``notebook``).
    """
    state = spec.reference.state_sites if spec.reference is not None else {}
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        meta = cell.metadata.get("nbgrader", {})
        source = cell.source
        if meta.get("grade") and meta.get("grade_id") in spec.sites:
            grade_id = meta["grade_id"]
            source, _ = instrument(
                source, grade_id=grade_id, mode=mode, state_sites=state.get(grade_id, ())
            )
        cells.append({"index": index, "source": source, "timeout": cell_timeout})
    return {
        "cells": cells,
        "setup": SETUP,
        "files": {
            name: base64.b64encode(data).decode("ascii") for name, data in spec.files.items()
        },
        "notebook": {"name": f"{spec.name}.ipynb", "text": handed_in},
        "limits": limits.rlimits(),
        "output": limits.output(),
    }


@dataclass
class CellResult:
    """One cell's run, as the runner reported it (checked for shape, not trusted)."""

    status: str
    outputs: list[dict[str, Any]]
    records: list[dict[str, Any]]
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class RunResult:
    """A notebook's run: cells by index, the kernel's fate, and why it failed (if it did)."""

    cells: dict[int, CellResult]
    problem: str = ""
    log: str = ""
    seconds: float = 0.0
    lost: list[tuple[int, str]] = field(default_factory=list)  # (cell index, why) per lost kernel


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def kernel_loss(why: Any, code: Any, cell_timeout: float) -> str:
    """Why a kernel was lost, in words (``why``: ``"died"`` or ``"unresponsive"``)."""
    if why == "unresponsive":
        return f"a cell ran past {cell_timeout:g} s and the kernel could not be interrupted"
    if code == -signal.SIGXCPU:
        return "the kernel died: it used up its CPU time limit"
    if code == -signal.SIGKILL:
        return "the kernel died: it was killed (out of memory, or the code killed it)"
    return f"the kernel died: the code ended the Python process ({_signal_name(code)})"


def failure_reason(result: dict[str, Any], cell_timeout: float, submission_timeout: float) -> str:
    """Why a run ended early, in one line (``""`` if it did not)."""
    kernel = result.get("kernel")
    if kernel == "died":
        return kernel_loss("died", result.get("kernel_exit"), cell_timeout)
    if kernel == "unresponsive":
        return "timed out: " + kernel_loss("unresponsive", None, cell_timeout)
    if not result.get("ok", False):
        return f"grading failed: {str(result.get('error', ''))[:300]}"
    return ""


def parse_reply(reply: Reply, cell_timeout: float, submission_timeout: float) -> RunResult:
    """A :class:`RunResult` from the sandbox's reply, refusing anything malformed."""
    if reply.result is None:
        if reply.timed_out:
            problem = f"timed out: grading took longer than {submission_timeout:g} s in all"
        else:
            last = (reply.log.strip().splitlines() or ["no message"])[-1][:300]
            problem = f"{reply.problem}: {last}"
        return RunResult({}, problem, reply.log, reply.seconds)
    result = reply.result
    cells: dict[int, CellResult] = {}
    try:
        for raw in result["cells"]:
            status = raw["status"]
            if status not in CELL_STATUSES or type(raw["index"]) is not int:
                raise ValueError(status)
            outputs = [o for o in raw["outputs"] if _valid_output(o)]
            records = [r for r in raw["records"] if isinstance(r, dict)]
            dropped = {k: int(v) for k, v in dict(raw.get("dropped", {})).items()}
            cells[raw["index"]] = CellResult(status, outputs, records, dropped)
    except (KeyError, TypeError, ValueError):
        return RunResult({}, "the sandbox returned a malformed result", reply.log, reply.seconds)
    problem = failure_reason(result, cell_timeout, submission_timeout)
    lost = []
    for entry in result.get("lost", []) if isinstance(result.get("lost"), list) else []:
        if isinstance(entry, dict) and type(entry.get("index")) is int:
            lost.append(
                (entry["index"], kernel_loss(entry.get("why"), entry.get("exit"), cell_timeout))
            )
    return RunResult(cells, problem, reply.log, reply.seconds, lost)


def _valid_output(output: Any) -> bool:
    """Whether ``output`` has the shape of a notebook output (nbformat 4)."""
    if not isinstance(output, dict):
        return False
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("name") in ("stdout", "stderr") and isinstance(output.get("text"), str)
    if kind in ("display_data", "execute_result"):
        data = output.get("data")
        return (
            isinstance(data, dict)
            and all(isinstance(k, str) for k in data)
            and isinstance(output.get("metadata", {}), dict)
        )
    if kind == "error":
        traceback = output.get("traceback")
        return (
            isinstance(output.get("ename"), str)
            and isinstance(output.get("evalue"), str)
            and isinstance(traceback, list)
            and all(isinstance(line, str) for line in traceback)
        )
    return False


def run_notebook(
    launcher: Any,
    job: dict[str, Any],
    *,
    cell_timeout: float,
    submission_timeout: float,
) -> RunResult:
    """Run ``job`` with ``launcher`` (a :class:`~mlcourse.grading.sandbox.Sandbox`)."""
    reply = launcher.run(job, submission_timeout)
    return parse_reply(reply, cell_timeout, submission_timeout)
