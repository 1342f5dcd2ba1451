"""How the suite is shared between its two xdist workers (tests/conftest.py), and the table
benchmarks/suite.py prints."""

from __future__ import annotations

import doctest
import importlib.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path, name: str):
    """A module loaded from its file, apart from the copy pytest loaded (if any)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


suite_conftest = load(ROOT / "tests" / "conftest.py", "suite_conftest")


@dataclass
class FakeItem:
    """Just what the collection hook reads of a pytest item."""

    path: Path
    fixturenames: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def callspec(self):
        return type("CallSpec", (), {"params": self.params})()

    def get_closest_marker(self, name: str):
        return None


class FakeConfig:
    def __init__(self, worker: bool) -> None:
        if worker:
            self.workerinput = {"workerid": "gw0"}


def test_modules_that_read_lesson_runs_share_one_group():
    for name in ("test_lesson_03_attention.py", "test_lesson_outputs.py", "test_notebooks.py"):
        assert suite_conftest.group_of(f"tests/{name}") == suite_conftest.LESSON_RUNS_GROUP
    for name in ("test_browser.py", "test_lesson_runs_helper.py", "test_lint.py"):
        assert suite_conftest.group_of(f"tests/{name}") == name


def test_a_module_reading_lesson_runs_outside_the_group_stops_collection():
    items = [FakeItem(Path("tests/test_new_lesson_checks.py"), ("lesson_run",))]
    with pytest.raises(pytest.UsageError, match="test_new_lesson_checks.py read lesson runs"):
        suite_conftest.pytest_collection_modifyitems(FakeConfig(worker=False), items)


def test_a_worker_runs_the_longest_groups_first_and_keeps_the_rest_in_order():
    names = ["test_arguments.py", "test_hub.py", "test_lesson_01_x.py", "test_browser.py",
             "test_stats.py", "test_lesson_outputs.py"]  # fmt: skip
    items = [FakeItem(Path("tests") / name) for name in names]
    suite_conftest.pytest_collection_modifyitems(FakeConfig(worker=True), items)
    assert [item.path.name for item in items] == [
        "test_lesson_01_x.py", "test_lesson_outputs.py", "test_browser.py", "test_hub.py",
        "test_arguments.py", "test_stats.py",
    ]  # fmt: skip
    # Without workers the order is pytest's own.
    items = [FakeItem(Path("tests") / name) for name in names]
    suite_conftest.pytest_collection_modifyitems(FakeConfig(worker=False), items)
    assert [item.path.name for item in items] == names


def test_the_scheduler_groups_node_ids_by_module():
    pytest.importorskip("xdist")
    scheduler = suite_conftest.pytest_xdist_make_scheduler(config=_XdistConfig(), log=None)
    assert scheduler._split_scope("tests/test_lesson_04_lora.py::test_x[pinned]") == "lesson-runs"
    assert scheduler._split_scope("tests/test_hub.py::test_y") == "test_hub.py"


class _XdistConfig:
    """What xdist's scheduler reads of the configuration when it is made."""

    def getvalue(self, name: str) -> Any:
        return {"tx": ["popen"] * 2, "numprocesses": 2, "maxschedchunk": None}.get(name)

    class option:  # noqa: N801 - xdist reads config.option.<name>
        numprocesses = 2
        tx: list[str] = []
        loadscopereorder = False


def test_suite_table_examples():
    module = load(ROOT / "benchmarks" / "suite.py", "suite")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed


class WorkerConfig:
    """A worker's configuration, as far as the timed-runs handshake reads it."""

    def __init__(self, basetemp: Path | None) -> None:
        self.workerinput = {"workerid": "gw1"}
        self.option = type("Option", (), {"basetemp": str(basetemp) if basetemp else None})()


def test_the_other_worker_waits_for_the_timed_lesson_runs(tmp_path, monkeypatch):
    conftest = load(ROOT / "tests" / "conftest.py", "suite_conftest_handshake")
    config = WorkerConfig(tmp_path / "gw1")
    marker = conftest.quiet_marker(config)
    assert marker == tmp_path / "timed-lesson-runs-done"  # shared by the workers' folders
    conftest._NEEDED.add(("05_profiling", "pinned", ()))
    threading.Timer(0.5, marker.touch).start()
    conftest.wait_for_quiet_runs(config)
    assert 0.4 < conftest._TIMES["waited"] < 5
    # Only once per worker: the next test does not wait again.
    marker.unlink()
    started = time.monotonic()
    conftest.wait_for_quiet_runs(config)
    assert time.monotonic() - started < 0.1


def test_nobody_waits_without_timed_runs_or_without_workers(tmp_path, monkeypatch):
    conftest = load(ROOT / "tests" / "conftest.py", "suite_conftest_no_wait")
    monkeypatch.setattr(conftest, "QUIET_WAIT_S", 30)
    conftest._NEEDED.add(("01_gradient_descent", "pinned", ()))  # no timed lesson needed
    started = time.monotonic()
    conftest.wait_for_quiet_runs(WorkerConfig(tmp_path / "gw1"))
    assert conftest.quiet_marker(FakeConfig(worker=False)) is None
    assert time.monotonic() - started < 0.1
