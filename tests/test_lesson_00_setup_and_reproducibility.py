"""Claims of lesson 00, asserted on lite runs with each kernel set.

Every ``test_*(results)`` function is a claim: the suite asserts it on seed 0 with the pinned
and the portable kernels, and ``benchmarks/claims.py`` on seeds 0-4 with both.
"""

import math

import pytest

STEM = "00_setup_and_reproducibility"
pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_environment_and_resources(results):
    assert results["environment_matches_lock"] is True
    # lite is what the config says; only an unset lite defaults by device.
    assert results["lite_unset_on_cpu"] is True
    assert results["lite_unset_on_gpu"] is False


def test_same_seed_same_bits_but_seeds_spread(results):
    assert results["same_seed_bit_identical"] is True
    # Seeds really change the result, by an amount comparable to the test-set noise.
    assert results["accuracy_spread"] > 0.01
    assert 0.6 < results["accuracy_mean"] < 0.98
    assert 0.02 < results["bootstrap_ci_width"] < 0.2
    assert 0.2 < results["accuracy_spread"] / results["bootstrap_ci_width"] < 5


def test_hash_split_is_stable_and_its_sizes_are_binomial(results):
    assert results["builtin_hash_stable"] is False
    assert results["hash_split_stable"] is True
    assert results["split_sizes"] == "1481/316"
    n_ids = 1481 + 316
    assert results["split_test_expected"] == pytest.approx(0.2 * n_ids)
    assert results["split_test_sd"] == pytest.approx(math.sqrt(0.2 * 0.8 * n_ids))
    # Other salts scatter as the binomial says (200 salts: the mean within 4 standard errors,
    # the standard deviation within 20%) ...
    standard_error = results["split_test_sd"] / math.sqrt(200)
    assert abs(results["split_salts_mean"] - results["split_test_expected"]) < 4 * standard_error
    assert results["split_salts_sd"] == pytest.approx(results["split_test_sd"], rel=0.2)
    # ... and the default salt drew an unusually low test count, as the lesson says.
    assert results["split_z"] < -2
    assert results["split_salts_share_as_low"] < 0.05
