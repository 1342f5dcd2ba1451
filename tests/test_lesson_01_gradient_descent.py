"""Claims of lesson 01 (gradient descent), asserted on lite runs with each kernel set.

Every ``test_*(results)`` function is a claim: the suite asserts it on seed 0 with the pinned
and the portable kernels, and ``benchmarks/claims.py`` on seeds 0-4 with both.
"""

from __future__ import annotations

import math

import pytest

from exercise_checks import (
    assert_tests_judge_answers,
    exercises,
    read_lesson,
    replace_solution,
    run_exercise,
)

STEM = "01_gradient_descent"


pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


# --- Part 1: the quadratic --------------------------------------------------------------------


def test_measured_rate_matches_theory(results):
    # Over step sizes on both sides of 2/L, and at the best step size 2/(mu+L).
    assert results["rate_rel_error"] < 0.01
    assert results["rate_best_measured"] == pytest.approx(results["rate_best_theory"], rel=0.01)


def test_float32_overflow_happens_at_the_predicted_step(results):
    assert abs(results["overflow_step_measured"] - results["overflow_step_predicted"]) <= 1


def test_clipping_stops_the_overflow_but_not_the_overshoot(results):
    assert results["clip_max_diff"] < 1e-6  # our clipping is torch.nn.utils.clip_grad_norm_'s
    assert results["clipped_all_finite"] is True
    # "keeps jumping from wall to wall, far above what the right step size reaches"
    assert results["clipped_late_min_loss"] > 100 * results["best_step_loss"]


def test_iterations_scale_with_kappa_versus_sqrt_kappa(results):
    assert results["gd_iters_max_abs_diff_theory"] <= 1
    assert 0.9 < results["gd_iters_slope"] < 1.1
    assert 0.4 < results["heavy_ball_iters_slope"] < 0.62
    assert 0.4 < results["nesterov_iters_slope"] < 0.62


# --- Part 2: optimisers from scratch ----------------------------------------------------------


def test_from_scratch_optimisers_match_torch_optim(results):
    for name in ("sgd_max_diff", "momentum_max_diff", "adam_max_diff"):
        assert results[name] < 1e-6, name
    # The comparison has teeth: a plausible bug is caught by orders of magnitude.
    assert results["adam_bug_max_diff"] > 1e-2


# --- Part 3: a real model -----------------------------------------------------------------------


def test_gradient_noise_follows_one_over_batch_size(results):
    assert -1.15 < results["noise_slope"] < -0.9
    assert results["noise_max_rel_error"] < 0.15


def test_batch_size(results):
    assert results["val_acc_batch_16"] > 0.94
    assert results["val_acc_batch_64"] > 0.9
    # Per epoch, the full batch makes one update and is far behind.
    assert results["val_acc_full_batch"] < results["val_acc_batch_64"] - 0.1


def test_stacked_trainer_and_schedule_match_their_references(results):
    assert results["schedule_max_diff"] < 1e-12
    assert results["stacked_vs_single_max_diff"] < 1e-5


def test_schedules_are_compared_fairly(results):
    # The confound: at the schedules' shared peak, the constant step is unstable and ends
    # below its own tuned version on every seed.
    assert results["constant_at_peak_unstable"] is True
    assert results["constant_at_peak_seeds_below_tuned"] == results["n_seeds"] >= 5
    assert results["lr_constant_tuned"] < 0.5 and results["lr_warmup_cosine_tuned"] < 0.5
    # Tuned, the schedules still learn well, and the decay wins on validation by little.
    assert results["val_acc_warmup_cosine"] > 0.97
    assert results["test_acc_warmup_cosine"] > 0.94
    assert 0 < results["val_acc_warmup_cosine"] - results["val_acc_constant_tuned"] < 0.02
    # On test, the decay's effect is small, with an interval around it; the warmup's own
    # effect is smaller still and not established.
    assert abs(results["test_decay_effect"]) < 0.02
    assert (
        results["test_decay_ci_low"] < results["test_decay_effect"] < results["test_decay_ci_high"]
    )
    assert abs(results["test_warmup_effect"]) < abs(results["test_decay_effect"])
    assert results["test_warmup_ci_low"] < 0 < results["test_warmup_ci_high"]


# --- Part 4: normalization ----------------------------------------------------------------------


def test_normalization_layers_match_pytorch(results):
    assert results["batchnorm_max_diff"] < 1e-5  # relative, float32 round-off
    assert results["layernorm_max_diff"] < 1e-5
    # The check has teeth: averaging the biased variance is caught in evaluation mode.
    assert results["batchnorm_bug_eval_diff"] > 1e-2
    # BatchNorm computes something else in evaluation mode; LayerNorm does not.
    assert results["batchnorm_mode_gap"] > 0.1
    assert results["layernorm_mode_gap"] == 0


def test_signal_by_layer_at_initialisation(results):
    # PyTorch's default init shrinks the signal layer by layer and starves the gradients; He
    # init keeps the scale; normalization makes it exactly 1.
    assert results["signal_std_last_pytorch_init"] < 0.5 * results["signal_std_first_pytorch_init"]
    assert results["signal_std_last_he_init"] > 0.4
    assert results["weight_grad_first_pytorch_init"] < results["weight_grad_first_he_init"] / 10
    assert results["signal_std_max_dev_normalized"] < 1e-3


def test_normalization_makes_the_output_ignore_the_weight_scale(results):
    # Doubling six weight matrices multiplies a plain ReLU network's output by nearly 2**6.
    assert 30 < results["output_growth_plain"] <= 64
    assert results["output_growth_batchnorm"] == pytest.approx(1, abs=1e-3)
    assert results["output_growth_layernorm"] == pytest.approx(1, abs=0.1)


def test_normalization_and_clipping_widen_the_stable_step_sizes(results):
    plain, batch_norm = results["largest_stable_lr_plain"], results["largest_stable_lr_batchnorm"]
    layer_norm, clipped = (
        results["largest_stable_lr_layernorm"],
        results["largest_stable_lr_clipped"],
    )
    assert 0 < plain <= 0.3  # "a step a few times larger than the best one already fails"
    assert batch_norm >= 10 * plain  # "at step sizes many times larger"
    assert plain <= layer_norm < batch_norm  # "LayerNorm helps less here"
    assert plain < clipped < batch_norm  # "trains at larger steps than without", "far narrower"
    assert results["plain_nan_at_largest_lr"] is True
    assert results["clipped_any_nan"] is False


# --- the exercises' tests accept the solution and reject wrong answers ------------------------

WRONG_ANSWERS = {
    "ex1_momentum_step": [
        "raise NotImplementedError()",
        "v_new = beta * v + lr * grad\nreturn x - v_new, v_new",  # lr inside the velocity
        "v_new = beta * v + grad\nreturn x - lr * v, v_new",  # steps with the old velocity
        "v_new = beta * v + (1 - beta) * grad\nreturn x - lr * v_new, v_new",  # damped form
        "return x - lr * grad, v",  # no momentum at all
    ],
    "ex2_best_step_size": [
        "raise NotImplementedError()",
        "return 1.0 / np.linalg.eigvalsh(H).max()",  # 1/L: safe but not the best
        "d = np.diag(H)\nreturn 2.0 / (d.min() + d.max())",  # diagonal entries, not eigenvalues
        "e = np.linalg.eigvalsh(H)\nreturn 2.0 / e.max()",  # 2/L: on the edge of divergence
    ],
    "ex3a_predict": [
        "raise NotImplementedError()",
        "return c",  # what a layer without normalization does
        "return 1.0",  # "the loss does not change, so neither does its gradient"
        "return 1.0 / c**2",  # the relative step, not the gradient
    ],
    "ex3b_measure": [
        "raise NotImplementedError()",
        # fixed (evaluation-mode) statistics: not scale-invariant
        "g = torch.Generator().manual_seed(seed)\n"
        "X, W = torch.randn(32, 8, generator=g), torch.randn(8, 4, generator=g)\n"
        "target = torch.randn(32, 4, generator=g)\n"
        "def gradient_norm(weights):\n"
        "    weights = weights.clone().requires_grad_()\n"
        "    bn = torch.nn.BatchNorm1d(4, affine=False).eval()\n"
        "    (bn(X @ weights) * target).sum().backward()\n"
        "    return weights.grad.norm()\n"
        "return (gradient_norm(c * W) / gradient_norm(W)).item()",
        # the gradient with respect to the input instead of the weights
        "g = torch.Generator().manual_seed(seed)\n"
        "X, W = torch.randn(32, 8, generator=g), torch.randn(8, 4, generator=g)\n"
        "target = torch.randn(32, 4, generator=g)\n"
        "def gradient_norm(weights):\n"
        "    inputs = X.clone().requires_grad_()\n"
        "    h = torch.nn.functional.batch_norm(inputs @ weights, None, None, training=True)\n"
        "    (h * target).sum().backward()\n"
        "    return inputs.grad.norm()\n"
        "return (gradient_norm(c * W) / gradient_norm(W)).item()",
    ],
    "ex3c_interpret": [
        "raise NotImplementedError()",
        "return 1.0 / c",  # counts the smaller gradient but not the larger weights
        "return 1.0",
        "return c",
    ],
}
# The classic mistakes above, with a word the hint of the VISIBLE test must contain: the learner
# sees the visible tests, so they alone must reject each mistake and name it.
MISTAKE_HINTS = {
    ("ex1_momentum_step", 2): "old velocity",
    ("ex1_momentum_step", 1): "step size belongs in the x update",
    ("ex1_momentum_step", 3): "damped form",
    ("ex2_best_step_size", 1): "1/L",
    ("ex2_best_step_size", 2): "diagonal entries",
    ("ex2_best_step_size", 3): "edge of divergence",
    ("ex3a_predict", 1): "without normalization",
    ("ex3a_predict", 2): "another point",
    ("ex3b_measure", 1): "training=True",
    ("ex3b_measure", 2): "with respect to the weights",
    ("ex3c_interpret", 1): "only one of them",
}
PRELUDE = "import math\nimport numpy as np\nimport torch"


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise():
    assert_tests_judge_answers(read_lesson(STEM), WRONG_ANSWERS, prelude=PRELUDE)


@pytest.mark.parametrize("grade_id,index", sorted(MISTAKE_HINTS))
def test_visible_tests_alone_reject_the_classic_mistake_and_name_it(grade_id, index):
    solution, test = exercises(read_lesson(STEM))[grade_id]
    visible = test.split("### BEGIN HIDDEN TESTS")[0]
    run_exercise(solution, visible, PRELUDE)  # the solution passes the visible tests
    wrong = replace_solution(solution, WRONG_ANSWERS[grade_id][index])
    with pytest.raises(AssertionError) as failure:
        run_exercise(wrong, visible, PRELUDE)
    assert MISTAKE_HINTS[grade_id, index] in str(failure.value)


def test_exercise_3_numbers_are_consistent():
    """The three parts of exercise 3 agree with each other: the measured factor is the
    predicted one, and the relative step is its square."""
    found = exercises(read_lesson(STEM))
    namespace: dict = {}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
    for grade_id in ("ex3a_predict", "ex3b_measure", "ex3c_interpret"):
        exec(compile(found[grade_id][0], grade_id, "exec"), namespace)
    for c in (0.25, 2.0, 7.0):
        predicted = namespace["predicted_gradient_factor"](c)
        assert namespace["measured_gradient_factor"](c, seed=4) == pytest.approx(
            predicted, rel=1e-3
        )
        assert namespace["relative_step_factor"](c) == pytest.approx(predicted**2)
        assert math.isclose(predicted, 1 / c)
