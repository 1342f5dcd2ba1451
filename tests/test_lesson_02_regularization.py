"""Claims of lesson 02 (regularisation), asserted on lite runs with each kernel set."""

from __future__ import annotations

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

STEM = "02_regularization"
REMEDIES = ("l2", "adamw", "dropout", "early_loss", "early_acc", "augment")


pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_polynomial_validation_error_is_u_shaped(results):
    assert results["train_mse_monotone"] is True
    assert 2 <= results["best_degree"] <= 8
    best = results["val_mse_best_degree"]
    assert results["val_mse_degree_1"] > 2 * best  # underfitting
    assert results["val_mse_degree_15"] > 2 * best  # overfitting
    assert abs(results["best_degree_bias_variance"] - results["best_degree"]) <= 3


def test_ridge_matches_reference_and_has_an_interior_optimum(results):
    assert results["ridge_max_diff"] < 1e-9
    assert 1e-8 < results["best_lambda"] < 1e2
    assert results["ridge_val_best"] < 0.5 * results["ridge_val_smallest_lambda"]
    assert results["ridge_val_best"] < 0.5 * results["ridge_val_largest_lambda"]


def test_baseline_network_overfits(results):
    assert results["stack_grad_diff"] < 1e-6  # the stacked seeds are ordinary networks
    assert results["baseline_train_acc"] == 1.0
    assert results["baseline_test_acc"] < 0.9
    assert results["baseline_min_val_loss_step"] < 50  # validation loss turns up early


def test_weight_decay_equivalences_and_adamw_difference(results):
    assert results["sgd_l2_vs_weight_decay"] < 1e-6
    assert results["adam_l2_vs_weight_decay"] < 1e-6
    assert results["adam_l2_vs_adamw"] > 1e-2
    # AdamW shrinks both weights alike; Adam + L2 hits the small-gradient weight far harder.
    assert results["adamw_kept_small_grad"] == pytest.approx(
        results["adamw_kept_large_grad"], abs=0.01
    )
    assert results["adam_l2_kept_small_grad"] < 0.5 * results["adam_l2_kept_large_grad"]


def test_regularised_model_beats_the_overfit_one_with_an_interval_excluding_zero(results):
    assert results["augment_verdict"] == "real"
    assert results["augment_diff"] > 0.01
    assert results["augment_seed_ci_low"] > 0
    assert results["augment_image_ci_low"] > 0
    assert results["best_real_improvement"] == "augmentation"
    # The lesson states that early stopping on the validation loss lowers test accuracy.
    assert results["early_loss_diff"] < 0


def test_verdicts_follow_from_the_intervals(results):
    for key in REMEDIES:
        verdict = results[f"{key}_verdict"]
        low, high = results[f"{key}_image_ci_low"], results[f"{key}_image_ci_high"]
        assert low <= results[f"{key}_diff"] <= high, key
        if verdict == "real":
            assert low > 0 and results[f"{key}_seed_ci_low"] > 0, key
        elif verdict == "harmful":
            assert high < 0, key
        else:
            assert verdict == "not established", key
    assert results["n_real_improvements"] == sum(
        results[f"{key}_verdict"] == "real" for key in REMEDIES
    )


def test_random_split_random_seed_misleads(results):
    n = results["n_experiments"]
    assert (
        results["antipattern_same_config_max_gap"] > 0.02
    )  # identical configs, several points apart
    assert results["antipattern_l2_min_gap"] < 0 < results["antipattern_l2_max_gap"]
    assert 0 < results["antipattern_l2_sign_flips"] < n


# --- the exercises' tests accept the solution and reject wrong answers ----------------------

WRONG_ANSWERS = {
    "ex1_ridge_fit": [
        "raise NotImplementedError()",
        "return np.linalg.solve(Phi.T @ Phi + lam**2 * np.eye(Phi.shape[1]), Phi.T @ y)",  # lam²
        "return np.linalg.lstsq(Phi, y, rcond=None)[0]",  # no penalty
        "return np.linalg.solve(Phi.T @ Phi + lam, Phi.T @ y)",  # lam added everywhere
    ],
    "ex2_early_stopping": [
        "raise NotImplementedError()",
        # a tie counts as an improvement
        "best, waited = 0, 0\n"
        "for e in range(1, len(val_losses)):\n"
        "    if val_losses[e] <= val_losses[best]:\n"
        "        best, waited = e, 0\n"
        "    else:\n"
        "        waited += 1\n"
        "        if waited == patience:\n"
        "            return best, e\n"
        "return best, len(val_losses) - 1",
        # compares with the previous epoch instead of the best so far
        "best, waited = 0, 0\n"
        "for e in range(1, len(val_losses)):\n"
        "    if val_losses[e] < val_losses[e - 1]:\n"
        "        best, waited = e, 0\n"
        "    else:\n"
        "        waited += 1\n"
        "        if waited == patience:\n"
        "            return best, e\n"
        "return best, len(val_losses) - 1",
    ],
    "ex3_paired_t": [
        "raise NotImplementedError()",
        # ddof=0
        "d = np.asarray(a, float) - np.asarray(b, float)\n"
        "return float(d.mean() / (d.std() / math.sqrt(len(d))))",
        # unpaired difference of means over pooled spread
        "a, b = np.asarray(a, float), np.asarray(b, float)\n"
        "return float((a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))",
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise():
    prelude = "import math\nimport numpy as np\nimport scipy.linalg\nimport torch"
    assert_tests_judge_answers(read_lesson(STEM), WRONG_ANSWERS, prelude=prelude)
