"""Stage 3 of grading: judge a run outside the sandbox, with code no submission can reach.

Input: the trusted lesson facts with the solution's recorded checks
(:class:`~mlcourse.grading.lesson.LessonSpec` and its ``reference``), the notebook that
was run, and the student's :class:`~mlcourse.grading.execution.RunResult`. Output: a
:class:`Judgement`: points per test cell, what each check said, and the graded notebook
(the student's outputs, capped and scrubbed of hidden-test source, and in each test cell
the judge's verdict instead of what the sandbox printed).

A test cell passes when, check by check in the solution's order,

1. the student's run recorded the same check (same site, same label): a test that did
   not run (an error, a time limit) or ran differently fails;
2. the grader's own copy of the check (:mod:`mlcourse.checks`, imported here, in the
   grader's process) accepts the student's value against the **solution's** expected
   value and tolerances; for ``expect_true``/``assert`` the student's condition must be
   true;
3. the cell ran to its end.

Nothing the submission did inside its sandbox (patching ``mlcourse.checks``, numpy,
torch, builtins, IPython or the recorder; printing "tests passed"; hiding errors) takes
part in this decision; only the values it recorded do, and they are decoded as plain data
(:mod:`mlcourse.grading.values`). ``docs/instructors.md`` lists what remains possible.

Example:
    >>> redact("leak: expect_equal('secret', f(3), 42) here", ["expect_equal('secret', f(3), 42)"])
    'leak: [hidden test] here'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from nbformat.notebooknode import NotebookNode, from_dict

from mlcourse.grading.execution import CellResult, RunResult
from mlcourse.grading.instrument import ASSERT, STUDENT_ROLES, Site
from mlcourse.grading.lesson import LessonSpec
from mlcourse.grading.values import decode

MESSAGE_LIMIT = 1_000  # characters of one check's message in the feedback
REDACTED = "[hidden test]"
PASS, FAIL = "\u2714", "\u2718"


@dataclass
class CheckLine:
    """One check of a test cell: passed or not, and what the student sees."""

    passed: bool
    hidden: bool
    label: str
    message: str = ""
    reached: bool = True

    def text(self) -> str:
        where = "hidden check " if self.hidden else ""
        if self.passed:
            return f"{PASS} {where}{self.label}"
        return f"{FAIL} {where}{self.label}: {self.message}"


@dataclass
class CellVerdict:
    """The judge's verdict on one graded test cell."""

    grade_id: str
    points: float
    max_points: float
    lines: list[CheckLine]
    problem: str = ""  # why the cell failed besides its checks
    review: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass
class Judgement:
    """A whole submission's verdicts, graded notebook and notes for the report."""

    verdicts: dict[str, CellVerdict]
    notebook: NotebookNode
    notes: list[str]

    @property
    def scores(self) -> dict[str, float]:
        return {g: v.points for g, v in self.verdicts.items()}

    @property
    def score(self) -> float:
        return float(sum(self.scores.values()))


def redact(text: str, hidden: list[str]) -> str:
    """``text`` with every line of the hidden tests replaced by :data:`REDACTED`."""
    for line in hidden:  # longest first (LessonSpec.hidden_lines)
        if line in text:
            text = text.replace(line, REDACTED)
    return text


def _short(text: str, hidden: list[str]) -> str:
    text = redact(str(text), hidden)
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " [...]"


def _label(site: Site, args: dict[str, Any]) -> str:
    for name in ("name", "message"):
        if name in args and isinstance(args[name], str):
            return args[name]
    return site.label or site.kind


def _trusted_check(kind: str) -> Any:
    import mlcourse.checks  # the grader's copy: student code never runs in this process

    return getattr(mlcourse.checks, kind)


def evaluate(site: Site, reference: dict[str, Any], student: dict[str, Any]) -> tuple[str, str]:
    """Judge one check; return (message if it failed, review note if any)."""
    try:
        ref_args = {k: decode(v) for k, v in reference["args"].items()}
        got = {k: decode(v) for k, v in student.get("args", {}).items() if k in STUDENT_ROLES}
    except (ValueError, TypeError, RecursionError) as error:
        return f"the recorded value could not be read ({error})", ""
    review = ""
    state = {k for k, v in dict(reference.get("outside", {})).items() if v == "data"}
    if state:  # expected values that depend on the lesson's own state: this run's, checked
        theirs = {k: v for k, v in student.get("args", {}).items() if k not in STUDENT_ROLES}
        ours = {k: v for k, v in reference["args"].items() if k not in STUDENT_ROLES}
        if theirs != ours:
            review = (
                f"check {_label(site, ref_args)!r} used this run's own expected value, which "
                f"differs from the solution's run (it depends on {', '.join(sorted(state))})"
            )
            try:
                ref_args.update({k: decode(v) for k, v in theirs.items() if k in ref_args})
            except (ValueError, TypeError, RecursionError) as error:
                return f"the recorded value could not be read ({error})", review
    if not any(role in got for role in STUDENT_ROLES):
        return "no value was recorded for this check", review
    ref_args.update(got)
    try:
        if site.kind == ASSERT:
            if not bool(ref_args["condition"]):
                return "the assertion is false", review
            return "", review
        _trusted_check(site.kind)(**ref_args)
    except AssertionError as error:
        return str(error) or "the check failed", review
    except Exception as error:  # the student's value broke the comparison: it fails
        return f"{type(error).__name__}: {error}", review
    return "", review


def _stop_message(cell: CellResult | None) -> str:
    if cell is None or cell.status == "not-run":
        return "the test cell did not run (the notebook stopped before it)"
    if cell.status == "timeout":
        return "the test cell ran past its time limit"
    for output in cell.outputs:
        if output["output_type"] == "error":
            value = f": {output['evalue']}" if output["evalue"] else ""
            return f"the test cell stopped with {output['ename']}{value}"
    return "the test cell did not run to its end"


def judge_cell(spec: LessonSpec, grade_id: str, cell: CellResult | None) -> CellVerdict:
    """The verdict on test cell ``grade_id`` from the student's ``cell`` run."""
    assert spec.reference is not None
    hidden = spec.hidden_lines
    sites = spec.sites[grade_id]
    reference = [r for r in spec.reference.records[grade_id] if "site" in r]
    records = cell.records if cell is not None else []
    mine = [r for r in records if r.get("cell") == grade_id and isinstance(r.get("site"), int)]
    finished = any(r.get("cell") == grade_id and r.get("end") is True for r in records)
    lines, review = [], []
    for position, ref in enumerate(reference):
        site = sites[ref["site"]]
        label = _short(_label(site, _decoded_labels(ref)), hidden)
        if position >= len(mine):
            lines.append(CheckLine(False, site.hidden, label, "not reached", reached=False))
            continue
        student = mine[position]
        if (student.get("site"), student.get("kind")) != (ref["site"], ref["kind"]) or (
            _decoded_labels(student).get("name") != _decoded_labels(ref).get("name")
        ):
            lines.append(
                CheckLine(
                    False,
                    site.hidden,
                    label,
                    "the test ran differently from the solution's (another check ran here)",
                )
            )
            continue
        message, note = evaluate(site, ref, student)
        if note:
            review.append(f"{grade_id}: {_short(note, hidden)}")
        if message:  # the checks' messages start with the label, which the line shows
            full = _label(site, _decoded_labels(ref))
            message = message.removeprefix(f"{full}: ").removeprefix(full).strip()
            message = message or "the condition is false"
        lines.append(CheckLine(not message, site.hidden, label, _short(message, hidden)))
    problem = ""
    if len(mine) > len(reference):
        problem = (
            f"the test cell recorded {len(mine) - len(reference)} more checks than the solution's"
        )
    elif not finished or (cell is not None and cell.status != "ok"):
        problem = _short(_stop_message(cell), hidden)
    unreached = [line for line in lines if not line.reached]
    if unreached:
        hidden_count = sum(line.hidden for line in unreached)
        what = f"{len(unreached)} check{'s' * (len(unreached) != 1)}" + (
            f" ({hidden_count} hidden)" if hidden_count else ""
        )
        problem = f"{what} did not run: {problem or 'the test cell stopped early'}"
    passed = all(line.passed for line in lines) and not problem
    points = spec.points(grade_id)
    return CellVerdict(grade_id, points if passed else 0.0, points, lines, problem, review)


def _decoded_labels(record: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for name in ("name", "message"):
        raw = record.get("args", {}).get(name)
        if isinstance(raw, dict) and raw.get("t") == "str" and isinstance(raw.get("v"), str):
            found[name] = raw["v"]
    return found


def verdict_outputs(verdict: CellVerdict) -> list[dict[str, Any]]:
    """What a test cell shows in the graded notebook and the feedback: the checks that
    passed (hidden ones only counted), then the failures as an error."""
    passed = [line.text() for line in verdict.lines if line.passed and not line.hidden]
    hidden_passed = sum(1 for line in verdict.lines if line.hidden and line.passed)
    if hidden_passed:
        passed.append(f"{PASS} {hidden_passed} hidden check{'s' * (hidden_passed != 1)} passed")
    outputs: list[dict[str, Any]] = []
    if passed:
        outputs.append(
            {"output_type": "stream", "name": "stdout", "text": "\n".join(passed) + "\n"}
        )
    failures = [line.text() for line in verdict.lines if not line.passed and line.reached]
    if verdict.problem:
        failures.append(f"{FAIL} {verdict.problem}")
    if failures:
        first = failures[0].removeprefix(f"{FAIL} ")
        outputs.append(
            {"output_type": "error", "ename": "TestFailed", "evalue": first, "traceback": failures}
        )
    return outputs


def _scrub(output: dict[str, Any], hidden: list[str]) -> dict[str, Any]:
    """``output`` with hidden-test source redacted from its text."""
    output = copy.deepcopy(output)
    if output["output_type"] == "stream":
        output["text"] = redact(output["text"], hidden)
    elif output["output_type"] == "error":
        output["evalue"] = redact(output["evalue"], hidden)
        output["traceback"] = [redact(line, hidden) for line in output["traceback"]]
    else:
        output["data"] = {
            k: redact(v, hidden) if isinstance(v, str) and k.startswith("text/") else v
            for k, v in output["data"].items()
        }
    return output


def _cut_note(dropped: dict[str, int]) -> str:
    parts = []
    if dropped.get("text"):
        parts.append(f"{dropped['text']:,} more bytes of printed text")
    if dropped.get("rich"):
        parts.append(f"{dropped['rich']:,} bytes of rich output (images, HTML)")
    return " and ".join(parts)


def judge_run(spec: LessonSpec, notebook: NotebookNode, run: RunResult) -> Judgement:
    """Judge every graded test cell of ``notebook`` (as run) and build the graded notebook."""
    graded = copy.deepcopy(notebook)
    verdicts: dict[str, CellVerdict] = {}
    notes: list[str] = []
    count = 0
    for index, cell in enumerate(graded.cells):
        if cell.cell_type != "code":
            continue
        result = run.cells.get(index)
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if result is not None and result.status != "not-run":
            count += 1
            cell.execution_count = count
        if meta.get("grade") and grade_id in spec.sites:
            verdict = judge_cell(spec, grade_id, result)
            verdicts[grade_id] = verdict
            notes += verdict.review
            outputs = verdict_outputs(verdict)
        else:
            outputs = [_scrub(o, spec.hidden_lines) for o in (result.outputs if result else [])]
            cut = _cut_note(result.dropped) if result else ""
            if cut:
                label = grade_id or f"cell {index + 1}"
                notes.append(f"{label}: output cut in the feedback ({cut} left out)")
                outputs.append(
                    {
                        "output_type": "stream",
                        "name": "stdout",
                        "text": f"\n[output cut by the grader: {cut} left out]\n",
                    }
                )
        for output in outputs:
            if output["output_type"] == "execute_result":
                output["execution_count"] = cell.execution_count
        cell.outputs = [from_dict(o) for o in outputs]
    return Judgement(verdicts, graded, notes)
