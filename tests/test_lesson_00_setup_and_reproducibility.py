"""Claims of lesson 00, asserted on lite runs with each kernel set."""

import pytest

STEM = "00_setup_and_reproducibility"
pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_lesson_00_claims(results):
    assert results["environment_matches_lock"] is True
    assert results["same_seed_bit_identical"] is True
    assert results["builtin_hash_stable"] is False
    assert results["hash_split_stable"] is True
    assert results["split_sizes"] == "1481/316"
    # Seeds really change the result, by an amount comparable to the test-set noise.
    assert results["accuracy_spread"] > 0.01
    assert 0.6 < results["accuracy_mean"] < 0.98
    assert 0.02 < results["bootstrap_ci_width"] < 0.2
