"""Claims of lesson 00, checked on a run with another seed."""

from lesson_runs import ANOTHER_SEED


def test_lesson_00_claims(lesson_run):
    results = lesson_run("00_setup_and_reproducibility", seed=ANOTHER_SEED).results
    assert results["environment_matches_lock"] is True
    assert results["same_seed_bit_identical"] is True
    assert results["builtin_hash_stable"] is False
    assert results["hash_split_stable"] is True
    assert results["split_sizes"] == "1481/316"
    # Seeds really change the result, by an amount comparable to the test-set noise.
    assert results["accuracy_spread"] > 0.01
    assert 0.6 < results["accuracy_mean"] < 0.98
    assert 0.02 < results["bootstrap_ci_width"] < 0.2
