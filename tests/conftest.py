"""Shared fixtures of the test suite, the lesson runs the selected tests need, and how the
tests are shared between pytest-xdist's workers.

The suite runs on two workers (``-n 2`` in pyproject.toml). Every test module that reads
lesson runs goes to one worker, as one group (``lesson-runs``): that worker executes the runs
the first time a test asks for one, and its tests read them. The other modules go whole to
whichever worker is free, the longest first, so that the browser, grading and hub tests
overlap the lesson runs. With ``-n 0`` (no workers) the same hooks run the
tests one after another in their usual order.
"""

import json
import os
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest

from lesson_runs import KERNEL_SETS, RUN_ALONE, prefetch, run_key, run_lesson

# benchmarks/suite.py sets this to learn where the time went.
TIMES_ENV = "MLCOURSE_SUITE_TIMES"
LESSON_RUNS_GROUP = "lesson-runs"
# The modules whose tests read lesson runs (checked at collection).
LESSON_RUN_MODULES = ("test_lesson_[0-9][0-9]_*.py", "test_lesson_outputs.py", "test_notebooks.py")
# The groups that take longest (benchmarks/suite.py measures them): handed out first, so
# that no long group starts last. The others follow in collection order.
LONGEST_FIRST = (
    LESSON_RUNS_GROUP,
    "test_browser.py",
    "test_grading.py",
    "test_hub.py",
    "test_training_distributed.py",
    "test_train_cli.py",
)
# How long a worker waits for the timed lesson runs (lesson 05's take about 30 s).
QUIET_WAIT_S = 300
_NEEDED: set = set()  # the lesson runs the selected tests ask for
# What benchmarks/suite.py prints: the lesson runs, and when each group's tests ran
# (``{group: [first start, last end, worker]}``, Unix times).
_TIMES: dict = {"lesson_runs": {"runs": 0, "seconds": 0.0}, "groups": {}}


@pytest.fixture(scope="session")
def lesson_run(request):
    """``lesson_run("01_gradient_descent", "portable")`` -> executed lesson and its results.

    The first call executes every run the selected tests need, so that later calls only
    read them: first the lessons that measure time, one at a time, while the other workers
    wait (:func:`wait_for_quiet_runs`), then the rest, two at a time.
    """

    def run(stem: str, kernels: str = "pinned", **parameters):
        if _NEEDED and not _TIMES["lesson_runs"]["runs"]:
            start = time.perf_counter()
            try:
                prefetch(quiet_runs())  # one at a time, alone
            finally:
                if (marker := quiet_marker(request.config)) is not None:
                    marker.touch()  # the other workers may go on
            prefetch(_NEEDED)
            _TIMES["lesson_runs"] = {"runs": len(_NEEDED), "seconds": time.perf_counter() - start}
        return run_lesson(stem, kernels, **parameters)

    return run


def quiet_runs() -> set:
    """The runs of lessons that measure time (``RUN_ALONE``) among those the tests need."""
    return {key for key in _NEEDED if key[0] in RUN_ALONE}


def quiet_marker(config: pytest.Config) -> Path | None:
    """The file that tells xdist's workers that the timed lesson runs are over: in the
    temporary folder the workers' own folders share (None without workers)."""
    if not hasattr(config, "workerinput") or not config.option.basetemp:
        return None
    return Path(config.option.basetemp).parent / "timed-lesson-runs-done"


def wait_for_quiet_runs(config: pytest.Config) -> None:
    """In a worker without the lesson runs: wait until the timed runs are over, so that
    they run with nothing beside them (at most ``QUIET_WAIT_S``; then go on regardless)."""
    marker = quiet_marker(config)
    if marker is None or not quiet_runs() or _TIMES.get("waited") is not None:
        return
    start = time.monotonic()
    while not marker.exists() and time.monotonic() - start < QUIET_WAIT_S:
        time.sleep(0.2)
    _TIMES["waited"] = time.monotonic() - start


@pytest.fixture(scope="module", params=KERNEL_SETS)
def kernels(request):
    """Each kernel set in turn: a claim must hold with the pinned and the portable kernels."""
    return request.param


def reads_lesson_runs(item: pytest.Item) -> bool:
    return "lesson_run" in getattr(item, "fixturenames", ())


def run_key_of(item: pytest.Item):
    """The seed-0 run a test reads: its ``kernels`` parameter, with its lesson named by a
    ``stem`` parameter or a ``lesson`` marker; None for tests that name no such run."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    marker = item.get_closest_marker("lesson")
    stem = params.get("stem") or (marker.args[0] if marker else None)
    if "kernels" not in params or not stem:
        return None
    return run_key(stem, params["kernels"])


def group_of(module: str) -> str:
    """The group a test module's tests run in: ``lesson-runs`` for the modules that read
    lesson runs (:data:`LESSON_RUN_MODULES`), else the module's own file name."""
    name = module.rsplit("/", 1)[-1]
    return LESSON_RUNS_GROUP if any(fnmatch(name, p) for p in LESSON_RUN_MODULES) else name


def pytest_collection_modifyitems(config, items):
    """In an xdist worker, put the longest groups first (the workers hand their order to
    the scheduler below); refuse a module that reads lesson runs outside their group."""
    strays = sorted({
        i.path.name for i in items
        if reads_lesson_runs(i) and group_of(i.path.name) != LESSON_RUNS_GROUP
    })  # fmt: skip
    if strays:
        raise pytest.UsageError(
            f"{', '.join(strays)} read lesson runs but are not in LESSON_RUN_MODULES "
            f"({', '.join(LESSON_RUN_MODULES)}) in tests/conftest.py: add them, so that "
            "one worker executes the runs for all"
        )
    if hasattr(config, "workerinput"):
        rank = {group: index for index, group in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(group_of(item.path.name), len(rank)))  # stable


def pytest_collection_finish(session):
    """Note the lesson runs the selected tests need (after any deselection)."""
    _NEEDED.update(key for key in map(run_key_of, session.items) if key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole groups to a worker (see the module docstring), in the workers' order.

    xdist's own ``--dist loadgroup`` would do this from ``xdist_group`` marks, but it does
    not group with pytest 9.2's node IDs (pytest-xdist issue 1386), so the groups are made
    here from the module names that start every node ID.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid.split("::", 1)[0])

    return ModuleGroups(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    """Note when each group's tests ran, in this process (for benchmarks/suite.py); a
    worker without the lesson runs first waits for the timed ones to be over."""
    if group_of(item.path.name) != LESSON_RUNS_GROUP:
        wait_for_quiet_runs(item.config)
    start = time.time()
    try:
        return (yield)
    finally:
        span = _TIMES["groups"].setdefault(group_of(item.path.name), [start, start])
        span[1] = time.time()


def pytest_sessionfinish(session):
    """A worker hands its figures to the controller (pytest_testnodedown); the controller,
    or a run without workers, writes them where benchmarks/suite.py asked."""
    config = session.config
    if hasattr(config, "workeroutput"):
        worker = config.workerinput["workerid"]
        _TIMES["groups"] = {g: [*span, worker] for g, span in _TIMES["groups"].items()}
        config.workeroutput["mlcourse_times"] = json.dumps(_TIMES)
    elif os.environ.get(TIMES_ENV):
        with open(os.environ[TIMES_ENV], "w") as file:
            json.dump(_TIMES, file)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """In the xdist controller: gather a worker's figures as it ends."""
    figures = json.loads(getattr(node, "workeroutput", {}).get("mlcourse_times", "{}"))
    _TIMES["groups"].update(figures.get("groups", {}))
    if figures.get("waited"):
        _TIMES.setdefault("waits", {})[node.gateway.id] = figures["waited"]
    if figures.get("lesson_runs", {}).get("runs"):
        _TIMES["lesson_runs"] = figures["lesson_runs"]


def pytest_terminal_summary(terminalreporter):
    runs = _TIMES["lesson_runs"]
    if runs["runs"]:
        terminalreporter.write_line(
            f"lesson runs: {runs['runs']} ({len(KERNEL_SETS)} kernel sets), executed in "
            f"{runs['seconds']:.0f} s when the first test asked for one"
        )
