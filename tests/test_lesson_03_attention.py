"""Lesson 03 (attention): its claims, on lite runs with each kernel set, and its exercises."""

from __future__ import annotations

import math

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

LESSON = "03_attention"


pytestmark = pytest.mark.lesson(LESSON)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(LESSON, kernels).results


def test_attention_matches_pytorch(results):
    # no mask, causal mask and padding mask vs F.scaled_dot_product_attention
    assert results["sdpa_max_abs_error"] < 1e-6
    # multi-head attention with copied weights vs nn.MultiheadAttention
    assert results["mha_max_abs_error"] < 1e-6


def test_sqrt_d_keeps_score_variance_and_entropy(results):
    assert results["scaled_logit_var_max_rel_error"] < 0.10  # Var(q.k / sqrt(d)) ~ 1 for all d
    assert results["raw_logit_var_rel_error_d1024"] < 0.10  # Var(q.k) ~ d
    assert results["entropy_scaled_d1024"] > 2.0  # ln 16 = 2.77: weights stay spread out
    assert results["entropy_raw_d1024"] < 0.5  # unscaled: nearly one-hot
    assert results["entropy_raw_d2"] - results["entropy_raw_d1024"] > 1.5


def test_transformer_reverses_held_out_sequences(results):
    assert results["seq_accuracy"] >= 0.99
    assert results["token_accuracy"] >= 0.99


def test_attention_map_shows_the_mirror_pattern(results):
    assert results["mirror_mass_best_head"] > 0.9
    assert results["mirror_argmax_rate"] > 0.99
    assert results["mirror_mass_best_layer"] == 1


def test_without_positions_the_model_fails(results):
    assert results["no_pos_equivariance_error"] < 1e-5
    assert results["no_pos_seq_accuracy"] < 0.01
    assert results["no_pos_token_accuracy"] < 0.5
    assert results["seq_accuracy"] - results["no_pos_seq_accuracy"] > 0.9


def test_warmup_rescues_training_at_a_high_learning_rate(results):
    assert results["warmup_seq_accuracy"] >= 0.9
    assert results["no_warmup_seq_accuracy"] <= 0.05
    # without warmup the first layer's attention collapses within 10 steps...
    assert results["no_warmup_entropy_step10"] < 0.5
    assert results["warmup_entropy_step10"] > 1.5
    # ...onto the wrong positions, and the loss stays near ln 10
    assert results["no_warmup_mirror_mass"] < 0.5
    assert results["warmup_mirror_mass"] > 0.7
    assert results["no_warmup_final_loss"] > 0.5 * math.log(10)


# --- the committed notebook and its exercises (no execution of the lesson needed) ---


@pytest.fixture(scope="module")
def notebook():
    return read_lesson(LESSON)


WRONG_ANSWERS = {
    "ex1_causal_mask": [
        "raise NotImplementedError()",
        "return torch.triu(torch.ones(n, n, dtype=torch.bool))",  # sees the future
        "return torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)",  # not itself
        "return torch.ones(n, n).tril()",  # float, not bool
        "return torch.ones(n, n, dtype=torch.bool)",  # no mask at all
    ],
    "ex2_attention_head": [
        "raise NotImplementedError()",
        "q, k, v = x @ w_q, x @ w_k, x @ w_v\nreturn torch.softmax(q @ k.T, dim=-1) @ v",  # unscaled
        "q, k, v = x @ w_q, x @ w_k, x @ w_v\n"
        "return torch.softmax(q @ k.T / math.sqrt(x.shape[-1]), dim=-1) @ v",  # sqrt(d_model)
        "q, k, v = x @ w_q, x @ w_k, x @ w_v\n"
        "return torch.softmax(q @ k.T / math.sqrt(k.shape[-1]), dim=0) @ v",  # softmax over queries
        "q, k = x @ w_q, x @ w_k\nreturn torch.softmax(q @ k.T / math.sqrt(k.shape[-1]), dim=-1)",
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise(notebook):
    assert_tests_judge_answers(notebook, WRONG_ANSWERS, prelude="import math\nimport torch")
