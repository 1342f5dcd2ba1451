"""Claims of lesson 02 (regularisation), asserted on lite runs with each kernel set, and its
exercises.

Each ``test_*(results)`` function is a claim the lesson's text makes; benchmarks/claims.py
also checks it on seeds 0-4 with both kernel sets (docs/claims.md).
"""

from __future__ import annotations

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

STEM = "02_regularization"
NAMES = {
    "l2": "L2 (Adam weight_decay)",
    "adamw": "AdamW",
    "dropout": "dropout",
    "early_loss": "early stop, val loss",
    "early_acc": "early stop, val accuracy",
    "augment": "augmentation",
}
REMEDIES = tuple(NAMES)
TUNED = ("l2", "adamw", "dropout", "augment")
ALPHA = 0.05


pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_hash_split_only_approximates_the_fraction(results):
    # 100 ids, each in the training split with probability 0.2: the count is binomial with
    # mean 20 and standard deviation 4, so it lands within three standard deviations.
    assert 20 - 12 <= results["n_train_points"] <= 20 + 12
    assert results["train_share"] == results["n_train_points"] / 100


def test_polynomial_validation_error_is_u_shaped(results):
    assert results["train_mse_monotone"] is True
    assert 2 <= results["best_degree"] <= 8
    best = results["val_mse_best_degree"]
    assert results["val_mse_degree_1"] > 2 * best  # underfitting
    assert results["val_mse_degree_15"] > 2 * best  # overfitting


def test_bias_falls_and_variance_rises(results):
    # closed forms for the fixed design: bias^2 falls by orders of magnitude...
    assert results["bias2_degree_15"] < 1e-6 * results["bias2_degree_1"]
    assert results["bias2_best_degree"] < 0.1 * results["bias2_degree_1"]
    # ...variance never falls with the degree and ends far above where it started...
    assert results["variance_nondecreasing"] is True
    assert results["variance_degree_15"] > 10 * results["variance_degree_1"]
    # ...and the best expected error sits where validation finds the best degree.
    assert 2 <= results["best_degree_bias_variance"] <= 8
    assert abs(results["best_degree_bias_variance"] - results["best_degree"]) <= 3


def test_simulation_gets_the_variance_but_its_plugin_bias_is_noise(results):
    assert results["variance_mc_max_rel_error"] < 0.2
    # The plug-in bias^2 at the highest degree is Monte Carlo noise: far above the truth.
    assert results["bias2_plugin_degree_15"] > 1e3 * results["bias2_degree_15"]
    assert results["bias2_plugin_degree_15"] > 1e-9


def test_ridge_matches_reference_and_has_an_interior_optimum(results):
    assert results["ridge_max_diff"] < 1e-9
    assert 1e-8 < results["best_lambda"] < 1e2
    assert results["ridge_val_best"] < 0.5 * results["ridge_val_smallest_lambda"]
    assert results["ridge_val_best"] < 0.5 * results["ridge_val_largest_lambda"]


def test_baseline_network_overfits(results):
    assert results["stack_grad_diff"] < 1e-6  # the stacked seeds are ordinary networks
    assert results["baseline_train_acc"] == 1.0
    assert results["baseline_test_acc"] < 0.9
    assert results["baseline_min_val_loss_step"] < 50  # validation loss turns up early...
    # ...while validation accuracy keeps creeping up (over-confidence, not worse guesses)
    assert results["baseline_val_acc_final"] > results["baseline_val_acc_at_min_loss"]
    assert results["early_loss_mean_step"] < results["early_acc_mean_step"]


def test_weight_decay_equivalences_and_adamw_difference(results):
    assert results["sgd_l2_vs_weight_decay"] < 1e-6
    assert results["adam_l2_vs_weight_decay"] < 1e-6
    assert results["adam_l2_vs_adamw"] > 1e-2
    # the training loop's per-member penalties are torch's Adam(weight_decay) and AdamW
    assert results["l2_vs_torch"] < 1e-5  # float32 round-off over ten steps
    assert results["decay_vs_torch"] < 1e-5
    # AdamW shrinks both weights alike; Adam + L2 hits the small-gradient weight far harder.
    assert results["adamw_kept_small_grad"] == pytest.approx(
        results["adamw_kept_large_grad"], abs=0.01
    )
    assert results["adam_l2_kept_small_grad"] < 0.5 * results["adam_l2_kept_large_grad"]


def test_dropout_keeps_the_expected_activation(results):
    assert results["dropout_zeroed_error"] < 0.01
    assert results["dropout_mean_error"] < 0.02


def test_strengths_are_tuned_on_validation_over_a_wide_enough_grid(results):
    for key in TUNED:
        # the strongest setting of every grid is past the best one: the grid brackets it
        assert results[f"{key}_strongest_val_acc"] < results[f"{key}_picked_val_acc"], key
    assert results["l2_lambda"] in (1e-4, 1e-3, 1e-2, 1e-1)
    assert results["adamw_decay"] in (0.1, 1.0, 3.0, 10.0)
    assert results["dropout_p"] in (0.1, 0.25, 0.5, 0.75)
    assert results["augment_strength"] in (0.5, 1.0, 2.0)


def test_augmentation_gives_the_largest_gain_with_intervals_excluding_zero(results):
    assert results["largest_gain"] == "augmentation"
    assert results["augment_diff"] > 0.02
    # both uncorrected 95% intervals exclude zero; whether it survives Holm's correction
    # with five seeds is printed, not claimed (the verdicts test checks it is computed right)
    assert results["augment_seed_ci_low"] > 0
    assert results["augment_image_ci_low"] > 0
    assert results["augment_uncorrected"] == "real"


def test_verdicts_follow_from_the_corrected_p_values(results):
    for key in REMEDIES:
        diff = results[f"{key}_diff"]
        low, high = results[f"{key}_image_ci_low"], results[f"{key}_image_ci_high"]
        assert low <= diff <= high, key
        assert results[f"{key}_seed_ci_low"] <= diff <= results[f"{key}_seed_ci_high"], key
        raw = (results[f"{key}_seed_p"], results[f"{key}_image_p"])
        holm = (results[f"{key}_seed_p_holm"], results[f"{key}_image_p_holm"])
        assert holm[0] >= raw[0] and holm[1] >= raw[1], key  # a correction never helps
        direction = "real" if diff > 0 else "harmful"
        expected = direction if max(holm) < ALPHA else "not established"
        assert results[f"{key}_verdict"] == expected, key
        uncorrected = direction if max(raw) < ALPHA else "not established"
        assert results[f"{key}_uncorrected"] == uncorrected, key
    assert results["n_real_improvements"] == sum(
        results[f"{key}_verdict"] == "real" for key in REMEDIES
    )
    real = [key for key in REMEDIES if results[f"{key}_verdict"] == "real"]
    best = max(real, key=lambda key: results[f"{key}_diff"]) if real else None
    assert results["best_real_improvement"] == (NAMES[best] if best else "none")


def test_random_split_random_seed_misleads(results):
    n = results["n_experiments"]
    # identical configurations land several points apart
    assert results["antipattern_same_config_max_gap"] > 0.02
    assert results["antipattern_l2_min_gap"] < 0 < results["antipattern_l2_max_gap"]
    assert 0 < results["antipattern_l2_sign_flips"] < n


# --- the exercises' tests accept the solution and reject wrong answers ----------------------


def _ridge(penalty: str) -> str:
    return (
        "p = Phi.shape[1]\n"
        f"penalty = {penalty}\n"
        "return np.linalg.solve(Phi.T @ Phi + penalty, Phi.T @ y)"
    )


def _early_stopping(improves: str, stops: str = "waited == patience") -> str:
    return (
        "best, waited = 0, 0\n"
        "for e in range(1, len(val_losses)):\n"
        f"    if {improves}:\n"
        "        best, waited = e, 0\n"
        "    else:\n"
        "        waited += 1\n"
        f"        if {stops}:\n"
        "            return best, e\n"
        "return best, len(val_losses) - 1"
    )


def _familywise(
    rejections: str, p_values: str = "scipy.stats.ttest_1samp(d, 0.0, axis=-1).pvalue"
) -> str:
    return (
        "d = rng.standard_normal((n_trials, n_tests, n_seeds))\n"
        f"p = {p_values}\n"
        "if holm:\n"
        "    p = np.array([holm_adjust(row) for row in p])\n"
        f"return float({rejections})"
    )


WRONG_ANSWERS = {
    "ex1_ridge_fit": [
        "raise NotImplementedError()",
        _ridge("lam * np.eye(p)"),  # ordinary ridge: shrinks the intercept too
        _ridge("lam * np.ones((p, p))"),  # lam added to every entry
        _ridge("lam**2 * np.diag(np.r_[0.0, np.ones(p - 1)])"),  # lam squared
        _ridge("lam * np.diag(np.r_[np.ones(p - 1), 0.0])"),  # the last weight left alone
        "return np.linalg.lstsq(Phi, y, rcond=None)[0]",  # no penalty at all
    ],
    "ex2_early_stopping": [
        "raise NotImplementedError()",
        _early_stopping("val_losses[e] <= val_losses[best]"),  # a tie counts as improvement
        _early_stopping("val_losses[e] < val_losses[e - 1]"),  # compares with the last epoch
        _early_stopping("val_losses[e] < val_losses[best]", "waited > patience"),  # one late
    ],
    "ex3_familywise_error": [
        "raise NotImplementedError()",
        _familywise("np.mean(p < 0.05)"),  # the rate of single tests, not of any in a family
        _familywise("np.mean((p < 0.05).all(axis=1))"),  # all six instead of any
        # a normal (z) test on five differences: too many rejections
        _familywise(
            "np.mean((p < 0.05).any(axis=1))",
            "2 * scipy.stats.norm.sf(abs(d.mean(-1) / (d.std(-1, ddof=1) / np.sqrt(n_seeds))))",
        ),
        # a t statistic with the population standard deviation (ddof=0): too many rejections
        _familywise(
            "np.mean((p < 0.05).any(axis=1))",
            "2 * scipy.stats.t.sf(abs(d.mean(-1) / (d.std(-1) / np.sqrt(n_seeds))), n_seeds - 1)",
        ),
        # Holm "applied" by dividing the p-values
        "d = rng.standard_normal((n_trials, n_tests, n_seeds))\n"
        "p = scipy.stats.ttest_1samp(d, 0.0, axis=-1).pvalue\n"
        "if holm:\n"
        "    p = p / n_tests\n"
        "return float(np.mean((p < 0.05).any(axis=1)))",
        # holm ignored
        "d = rng.standard_normal((n_trials, n_tests, n_seeds))\n"
        "p = scipy.stats.ttest_1samp(d, 0.0, axis=-1).pvalue\n"
        "return float(np.mean((p < 0.05).any(axis=1)))",
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise():
    prelude = "import math\nimport numpy as np\nimport scipy.linalg\nimport torch"
    assert_tests_judge_answers(read_lesson(STEM), WRONG_ANSWERS, prelude=prelude)
