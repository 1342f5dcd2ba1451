"""Rewrite a graded test cell so that it records what it checks instead of judging it.

Every call of a check helper from :mod:`mlcourse.checks` (``expect_close``,
``expect_equal``, ``expect_true``, ...) and every ``assert`` in a test cell becomes a call
of the recorder (:mod:`mlcourse.grading.recorder`), and the cell ends by recording that it
finished. The grader then judges the recorded values outside the sandbox
(:mod:`mlcourse.grading.judge`).

Two versions of a test cell are made:

- ``"reference"`` (the instructor's solution): every argument is recorded; the expected
  values the judge uses come from this run.
- ``"student"``: only the check's label and the value under test (``got``,
  ``condition``) are recorded. The other arguments (the expected value, tolerances) are
  not even evaluated in the student's process, so code that replaces the recorder cannot
  copy them into the value under test. A check whose expected value depends on the
  lesson's own state (a variable set outside the test cell, e.g. a measured timing) is
  recorded in full instead; the judge compares that value with the solution's run.

Example:
    >>> source = 'expect_close("mean", mean([1, 2]), 1.5)'
    >>> text, sites = instrument(source, grade_id="t1", mode="student")
    >>> print(text)
    __mlcourse_check__('t1', 0, 'expect_close', {'name': 'mean', 'got': mean([1, 2])})
    __mlcourse_cell_end__('t1')
    >>> sites[0].kind, sites[0].hidden
    ('expect_close', False)
"""

from __future__ import annotations

import ast
import builtins
import inspect
from collections.abc import Iterable
from dataclasses import dataclass

from mlcourse.arguments import check_choice

CHECK_FUNCTION = "__mlcourse_check__"
CELL_END = "__mlcourse_cell_end__"
OUTSIDE_KEY = "__outside__"
ASSERT = "assert"
# Parameters whose value comes from the student's code: recorded in both versions.
STUDENT_ROLES = ("got", "condition")
LABEL_ROLES = ("name",)
MODES = ("reference", "student")
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


class InstrumentError(ValueError):
    """A test cell cannot be rewritten (a check call the grader cannot take apart)."""


@dataclass(frozen=True)
class Site:
    """One check call (or ``assert``) of a test cell, in source order.

    Attributes:
        index: position among the cell's checks (the recorder reports it).
        kind: the check function's name, or ``"assert"``.
        hidden: whether it is inside a ``### BEGIN HIDDEN TESTS`` block.
        line: its line in the test cell.
        outside: names its expected-side arguments read from outside the test cell.
        label: for an ``assert``, its message (a constant) or, when visible, its source.
    """

    index: int
    kind: str
    hidden: bool
    line: int
    outside: tuple[str, ...] = ()
    label: str = ""


def check_signatures() -> dict[str, inspect.Signature]:
    """The check helpers of :mod:`mlcourse.checks` (``expect_*``) and their signatures."""
    import mlcourse.checks

    found = {}
    for name, function in vars(mlcourse.checks).items():
        if name.startswith("expect_") and inspect.isfunction(function):
            found[name] = inspect.signature(function)
    return found


def hidden_lines(source: str) -> set[int]:
    """Line numbers (1-based) inside ``### BEGIN/END HIDDEN TESTS`` blocks, markers included."""
    inside, lines = False, set()
    for number, line in enumerate(source.splitlines(), start=1):
        if HIDDEN_BEGIN in line:
            inside = True
        if inside:
            lines.add(number)
        if HIDDEN_END in line:
            inside = False
    return lines


def python_source(source: str) -> str:
    """``source`` with IPython syntax (magics, ``!shell``) turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def instrument(
    source: str,
    *,
    grade_id: str,
    mode: str,
    state_sites: Iterable[int] = (),
) -> tuple[str, list[Site]]:
    """The recording version of a test cell, and its check sites.

    Args:
        source: the test cell as the instructor wrote it (the original, hidden tests
            included).
        grade_id: the cell's nbgrader id (each record names it).
        mode: ``"reference"`` or ``"student"`` (see the module docstring).
        state_sites: indexes of checks to record in full in student mode.

    Raises:
        InstrumentError: the cell is not valid Python, or a check is called in a way the
            grader cannot take apart (``*args``, an unknown keyword, a missing argument).
    """
    check_choice("mode", mode, MODES)
    python = python_source(source)
    try:
        tree = ast.parse(python)
    except SyntaxError as error:
        raise InstrumentError(
            f"test cell {grade_id} is not valid Python (line {error.lineno}: {error.msg})"
        ) from None
    rewriter = _Rewriter(grade_id, mode, set(state_sites), hidden_lines(python), _bound_names(tree))
    tree = rewriter.visit(tree)
    tree.body.append(_statement(_call(CELL_END, [ast.Constant(grade_id)])))
    return ast.unparse(ast.fix_missing_locations(tree)), rewriter.sites


def _call(function: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(func=ast.Name(function, ast.Load()), args=args, keywords=[])


def _statement(call: ast.expr) -> ast.Expr:
    return ast.Expr(call)


def _bound_names(tree: ast.Module) -> set[str]:
    """Names the cell itself binds (assignments, loops, imports, definitions)."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _free_names(nodes: Iterable[ast.AST], bound: set[str]) -> tuple[str, ...]:
    names = {
        n.id
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return tuple(sorted(n for n in names - bound if not hasattr(builtins, n)))


class _Rewriter(ast.NodeTransformer):
    def __init__(
        self, grade_id: str, mode: str, state: set[int], hidden: set[int], bound: set[str]
    ) -> None:
        self.grade_id, self.mode, self.state, self.hidden, self.bound = (
            grade_id,
            mode,
            state,
            hidden,
            bound,
        )
        self.signatures = check_signatures()
        self.sites: list[Site] = []

    def _check_name(self, node: ast.Call) -> str | None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return name if name in self.signatures else None

    def _record(self, kind: str, line: int, args: dict[str, ast.expr], label: str = "") -> ast.Call:
        index = len(self.sites)
        expected_side = [v for k, v in args.items() if k not in STUDENT_ROLES + LABEL_ROLES]
        outside = _free_names(expected_side, self.bound)
        self.sites.append(Site(index, kind, line in self.hidden, line, outside, label))
        if self.mode == "student" and index not in self.state:
            args = {k: v for k, v in args.items() if k in STUDENT_ROLES + LABEL_ROLES}
        elif self.mode == "reference" and outside:
            names = [ast.Constant(n) for n in outside]
            values: list[ast.expr | None] = [ast.Name(n, ast.Load()) for n in outside]
            args = {**args, OUTSIDE_KEY: ast.Dict(keys=names, values=values)}
        record = ast.Dict(keys=[ast.Constant(k) for k in args], values=list(args.values()))
        site_args = [ast.Constant(self.grade_id), ast.Constant(index), ast.Constant(kind), record]
        return _call(CHECK_FUNCTION, site_args)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        kind = self._check_name(node)
        if kind is None:
            return node
        where = f"test cell {self.grade_id}, line {node.lineno}"
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise InstrumentError(f"{where}: write the arguments of {kind} out (no * or **)")
        placeholders = list(range(len(node.args)))
        try:
            bound = self.signatures[kind].bind(
                *placeholders, **{k.arg: k.arg for k in node.keywords}
            )
        except TypeError as error:
            raise InstrumentError(f"{where}: {kind}() {error}") from None
        by_position = dict(zip(placeholders, node.args, strict=True))
        by_keyword = {k.arg: k.value for k in node.keywords}
        args = {}
        for parameter, value in bound.arguments.items():
            args[parameter] = by_position[value] if isinstance(value, int) else by_keyword[value]
        if not set(args) & set(STUDENT_ROLES):
            raise InstrumentError(f"{where}: {kind}() has no 'got' or 'condition' argument")
        ordered = dict(sorted(args.items(), key=lambda item: (item[1].lineno, item[1].col_offset)))
        return self._record(kind, node.lineno, ordered)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        self.generic_visit(node)
        hidden = node.lineno in self.hidden
        if isinstance(node.msg, ast.Constant) and isinstance(node.msg.value, str):
            label = node.msg.value
        else:
            label = "a hidden assertion" if hidden else f"assert {ast.unparse(node.test)}"
        call = self._record(ASSERT, node.lineno, {"condition": node.test}, label)
        return ast.copy_location(_statement(call), node)
