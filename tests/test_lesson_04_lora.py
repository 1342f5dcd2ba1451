"""Lesson 04 (LoRA): its claims, on lite runs with each kernel set, and its exercises."""

from __future__ import annotations

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

LESSON = "04_lora"
RANKS = (1, 2, 4, 8, 16)
N_BASE = (64 * 384 + 384) + (384 * 384 + 384) + (384 * 10 + 10)
LORA_PER_RANK = (64 + 384) + (384 + 384) + (384 + 10)


pytestmark = pytest.mark.lesson(LESSON)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(LESSON, kernels).results


def test_task_b_is_a_real_shift(results):
    assert results["base_accuracy_a"] >= 0.93
    assert results["base_accuracy_b"] < 0.6
    assert results["full_accuracy"] >= 0.95


def test_lora_starts_exactly_at_the_base_model(results):
    assert results["init_max_abs_diff"] == 0.0


def test_merge_and_unmerge(results):
    assert results["merge_max_abs_diff_f64"] < 1e-6  # the maths: same outputs
    # float32: no larger than float32's own rounding, and tiny relative to the logits
    assert results["merge_max_abs_diff_f32"] <= 3 * results["f32_rounding_of_unmerged"]
    assert results["merge_max_rel_diff_f32"] < 1e-6
    assert results["merged_accuracy"] == results["chosen_accuracy"]
    assert results["unmerge_max_abs_diff"] < 1e-6


def test_parameter_counts_and_optimizer_state(results):
    assert results["full_trainable"] == N_BASE
    # Adam: exp_avg and exp_avg_sq (float32) per parameter, plus a step counter per tensor
    assert results["full_optimizer_bytes"] == 8 * N_BASE + 4 * 6
    for r in RANKS:
        trainable = results[f"lora_r{r}_trainable"]
        assert trainable == r * LORA_PER_RANK
        assert results[f"lora_r{r}_percent"] == pytest.approx(100 * trainable / N_BASE)
        assert results[f"lora_r{r}_optimizer_bytes"] == 8 * trainable + 4 * 6


def test_small_rank_lora_comes_within_two_points_of_full_fine_tuning(results):
    full = results["full_accuracy"]
    qualifying = [
        r
        for r in RANKS
        if results[f"lora_r{r}_percent"] < 10 and results[f"lora_r{r}_accuracy"] >= full - 0.02
    ]
    assert qualifying, {r: results[f"lora_r{r}_accuracy"] for r in RANKS}
    assert results["chosen_rank"] == qualifying[0]
    assert results["chosen_percent"] < 10
    assert results["chosen_gap_points"] <= 2.0
    chosen_bytes = results[f"lora_r{results['chosen_rank']}_optimizer_bytes"]
    assert results["full_optimizer_bytes"] >= 10 * chosen_bytes


def test_head_only_is_clearly_worse_and_rank_one_is_too_little(results):
    assert results["head_accuracy"] <= results["full_accuracy"] - 0.02
    assert results["lora_r1_accuracy"] < results["lora_r4_accuracy"]
    assert results["full_update_energy_top16"] > 0.5


def test_adapter_artifact_reproduces_the_adapted_model(results):
    assert results["parent_sha256_matches"] is True
    assert results["reloaded_accuracy_equal"] is True
    assert results["reloaded_logits_equal"] is True
    assert results["tamper_detected"] is True


# --- the committed notebook and its exercises (no execution of the lesson needed) ---


@pytest.fixture(scope="module")
def notebook():
    return read_lesson(LESSON)


WRONG_ANSWERS = {
    "ex1_lora_parameter_count": [
        "raise NotImplementedError()",
        "return sum(rank * d_out * d_in for d_out, d_in in shapes)",  # a full matrix per rank
        "return sum(rank * d_in for d_out, d_in in shapes)",  # only A
        "return sum(rank * (d_out + d_in) + d_out for d_out, d_in in shapes)",  # adds biases
        "d_out, d_in = shapes[-1]\nreturn rank * (d_out + d_in)",  # only one layer
    ],
    "ex2_merge_lora_weight": [
        "raise NotImplementedError()",
        "return W + B @ A",  # no scale
        "return W + alpha * (B @ A)",  # alpha, not alpha / r
        "return W + (A.shape[0] / alpha) * (B @ A)",  # inverted scale
        "return W + (alpha / A.shape[1]) * (B @ A)",  # rank read from the wrong axis
        "W += (alpha / A.shape[0]) * (B @ A)\nreturn W",  # modifies W in place
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise(notebook):
    assert_tests_judge_answers(notebook, WRONG_ANSWERS, prelude="import math\nimport torch")
