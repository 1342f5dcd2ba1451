"""Shared fixtures of the test suite, and the lesson runs the selected tests need."""

import json
import os
import time

import pytest

from lesson_runs import KERNEL_SETS, prefetch, run_key, run_lesson

# benchmarks/suite.py sets this to learn how long the lesson runs took before the tests.
TIMES_ENV = "MLCOURSE_SUITE_TIMES"
_PREFETCH = {"runs": 0, "seconds": 0.0}


@pytest.fixture(scope="session")
def lesson_run():
    """``lesson_run("01_gradient_descent", "portable")`` -> executed lesson and its results."""
    return run_lesson


@pytest.fixture(scope="module", params=KERNEL_SETS)
def kernels(request):
    """Each kernel set in turn: a claim must hold with the pinned and the portable kernels."""
    return request.param


def pytest_collection_finish(session):
    """Execute every lesson run the selected tests will ask for, before they start.

    A test asks for one by taking the ``kernels`` fixture (or a ``kernels`` parameter)
    with its lesson named by a ``stem`` parameter or a ``lesson`` marker.
    """
    keys = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "kernels" not in params:
            continue
        marker = item.get_closest_marker("lesson")
        stem = params.get("stem") or (marker.args[0] if marker else None)
        if stem:
            keys.add(run_key(stem, params["kernels"]))
    if keys:
        start = time.perf_counter()
        prefetch(keys)
        _PREFETCH.update(runs=len(keys), seconds=time.perf_counter() - start)


def pytest_terminal_summary(terminalreporter):
    if _PREFETCH["runs"]:
        terminalreporter.write_line(
            f"lesson runs: {_PREFETCH['runs']} ({len(KERNEL_SETS)} kernel sets) executed "
            f"before the tests in {_PREFETCH['seconds']:.0f} s"
        )
    if os.environ.get(TIMES_ENV):
        with open(os.environ[TIMES_ENV], "w") as file:
            json.dump(_PREFETCH, file)
