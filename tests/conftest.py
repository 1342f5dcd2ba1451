"""Shared fixtures of the test suite."""

import pytest

from lesson_runs import run_lesson


@pytest.fixture(scope="session")
def lesson_run():
    """``lesson_run("01_gradient_descent", seed=1)`` -> executed lesson and its results."""
    return run_lesson
