"""Test support for grading: synthetic and hostile submissions, and the sandbox check.

Example:
    >>> REQUIRE_SANDBOX_ENV
    'MLCOURSE_REQUIRE_SANDBOX'
"""

from __future__ import annotations

import os

import pytest

# Set by `course.py test` where it could install bubblewrap: the sandbox tests must run.
REQUIRE_SANDBOX_ENV = "MLCOURSE_REQUIRE_SANDBOX"


def skip_without_sandbox() -> None:
    """Skip the calling test when no sandbox can run here, or fail it when the test
    command promised one (``MLCOURSE_REQUIRE_SANDBOX=1``)."""
    from mlcourse.grading.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_SANDBOX_ENV) == "1":
        pytest.fail(f"the grading sandbox is required here but cannot run: {problem}")
    pytest.skip(f"no sandbox here: {problem}")
