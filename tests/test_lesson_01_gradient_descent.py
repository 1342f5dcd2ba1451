"""Claims of lesson 01 (gradient descent), asserted on lite runs with each kernel set."""

from __future__ import annotations

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

STEM = "01_gradient_descent"


pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_measured_rate_matches_theory(results):
    # Over step sizes on both sides of 2/L, and at the best step size 2/(mu+L).
    assert results["rate_rel_error"] < 0.01
    assert results["rate_best_measured"] == pytest.approx(results["rate_best_theory"], rel=0.01)


def test_float32_overflow_happens_at_the_predicted_step(results):
    assert abs(results["overflow_step_measured"] - results["overflow_step_predicted"]) <= 1


def test_iterations_scale_with_kappa_versus_sqrt_kappa(results):
    assert results["gd_iters_max_abs_diff_theory"] <= 1
    assert 0.9 < results["gd_iters_slope"] < 1.1
    assert 0.4 < results["heavy_ball_iters_slope"] < 0.62
    assert 0.4 < results["nesterov_iters_slope"] < 0.62


def test_from_scratch_optimisers_match_torch_optim(results):
    for name in ("sgd_max_diff", "momentum_max_diff", "adam_max_diff"):
        assert results[name] < 1e-6, name
    # The comparison has teeth: a plausible bug is caught by orders of magnitude.
    assert results["adam_bug_max_diff"] > 1e-2


def test_gradient_noise_follows_one_over_batch_size(results):
    assert -1.15 < results["noise_slope"] < -0.9
    assert results["noise_max_rel_error"] < 0.15


def test_batch_size_and_schedule(results):
    assert results["val_acc_batch_16"] > 0.94
    assert results["val_acc_batch_64"] > 0.9
    # Per epoch, the full batch makes one update and is far behind.
    assert results["val_acc_full_batch"] < results["val_acc_batch_64"] - 0.1
    assert results["schedule_max_diff"] < 1e-12
    warm, cosine, constant = (
        results["val_acc_warmup_cosine"],
        results["val_acc_no_warmup"],
        results["val_acc_constant_lr"],
    )
    assert warm > 0.95
    assert warm > constant + 0.03
    # The lesson says the decay matters more than the warmup for this small network.
    assert abs(warm - cosine) < warm - constant
    assert results["test_acc_warmup_cosine"] > 0.9


# --- the exercises' tests accept the solution and reject wrong answers ----------------------

WRONG_ANSWERS = {
    "ex1_momentum_step": [
        "raise NotImplementedError()",
        "v_new = beta * v + lr * grad\nreturn x - v_new, v_new",  # lr inside the velocity
        "v_new = beta * v + grad\nreturn x - lr * v, v_new",  # steps with the old velocity
        "v_new = beta * v + (1 - beta) * grad\nreturn x - lr * v_new, v_new",  # EMA, not torch's
        "return x - lr * grad, v",  # no momentum at all
    ],
    "ex2_best_step_size": [
        "raise NotImplementedError()",
        "return 1.0 / np.linalg.eigvalsh(H).max()",  # 1/L: safe but not the best
        "d = np.diag(H)\nreturn 2.0 / (d.min() + d.max())",  # diagonal entries, not eigenvalues
        "e = np.linalg.eigvalsh(H)\nreturn 2.0 / e.max()",  # 2/L: on the edge of divergence
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise():
    prelude = "import math\nimport numpy as np\nimport torch"
    assert_tests_judge_answers(read_lesson(STEM), WRONG_ANSWERS, prelude=prelude)
