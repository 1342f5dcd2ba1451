"""Lesson 04 (LoRA): its claims, on lite runs with each kernel set, and its exercises.

Every ``test_*(results)`` function is a claim: the suite asserts it on seed 0 with both
kernel sets, and ``benchmarks/claims.py`` on seeds 0-4 with both.
"""

from __future__ import annotations

import re

import pytest

from exercise_checks import (
    assert_tests_judge_answers,
    exercises,
    read_lesson,
    replace_solution,
    run_exercise,
)

LESSON = "04_lora"
RANKS = (1, 2, 4, 8, 16)
WIDTH = 256
LAYERS = ((64, WIDTH), (WIDTH, WIDTH), (WIDTH, 10))  # (d_in, d_out) of the base model
N_BASE = sum(d_in * d_out + d_out for d_in, d_out in LAYERS)
LORA_PER_RANK = sum(d_in + d_out for d_in, d_out in LAYERS)
ADAM_STEP_BYTES = 4  # Adam's step counter: one float32 per parameter tensor
LR_MARGIN = 0.005  # the lesson's parameters
SWEEP = re.compile(r"sweep_(full|head|lora)_lr(.+)_val_accuracy")


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


def test_a_stack_of_runs_trains_like_the_runs_one_at_a_time(results):
    # float32 rounding, after 20 Adam steps: below a thousandth of one step (lr 0.02)
    assert results["stack_max_abs_diff"] < 2e-5


def test_merge_and_unmerge(results):
    assert results["merge_max_abs_diff_f64"] < 1e-10  # the maths: same outputs
    # float32: no larger than float32's own rounding, and tiny relative to the logits
    assert results["merge_max_abs_diff_f32"] <= 3 * results["f32_rounding_of_unmerged"]
    assert results["merge_max_rel_diff_f32"] < 1e-6
    assert results["merged_same_predictions"] is True
    assert results["merged_accuracy"] == results["unmerged_accuracy"]
    assert results["unmerge_max_abs_diff"] < 1e-6


def test_parameter_counts_and_optimizer_state(results):
    assert results["full_trainable"] == N_BASE
    # Adam: exp_avg and exp_avg_sq (float32) per parameter, plus a step counter per tensor
    assert results["full_optimizer_bytes"] == 8 * N_BASE + ADAM_STEP_BYTES * 2 * len(LAYERS)
    assert results["head_percent"] == pytest.approx(100 * (WIDTH * 10 + 10) / N_BASE)
    for r in RANKS:
        trainable = results[f"lora_r{r}_trainable"]
        assert trainable == r * LORA_PER_RANK
        assert results[f"lora_r{r}_percent"] == pytest.approx(100 * trainable / N_BASE)
        adapter_tensors = 2 * len(LAYERS)
        assert results[f"lora_r{r}_optimizer_bytes"] == 8 * trainable + 4 * adapter_tensors
    # one definition of the share: the chosen adapter's share is its rank's share
    assert results["chosen_percent"] == results[f"lora_r{results['chosen_rank']}_percent"]


def test_learning_rates_are_chosen_on_validation_by_the_stated_rule(results):
    grid: dict[str, dict[float, float]] = {}
    for key, value in results.items():
        match = SWEEP.fullmatch(key)
        if match:
            grid.setdefault(match.group(1), {})[float(match.group(2))] = value
    assert sorted(grid) == ["full", "head", "lora"] and all(len(g) == 3 for g in grid.values())
    for method, val_by_lr in grid.items():
        best = max(val_by_lr.values())
        expected = min(lr for lr, val in val_by_lr.items() if val >= best - LR_MARGIN)
        assert results[f"{method}_lr"] == pytest.approx(expected, rel=1e-9), method


def test_rank_is_chosen_on_validation_by_the_stated_rule(results):
    val = {r: results[f"lora_r{r}_val_accuracy"] for r in RANKS}
    threshold = results["full_val_accuracy"] - results["rank_margin"]
    assert results["rank_threshold"] == pytest.approx(threshold)
    qualifying = [r for r in RANKS if val[r] >= threshold]
    expected = qualifying[0] if qualifying else max(RANKS, key=val.get)
    assert results["chosen_rank"] == expected
    assert results["rank_rule_met"] is bool(qualifying)
    assert results["chosen_accuracy"] == results[f"lora_r{expected}_accuracy"]


def test_lora_comes_close_to_full_fine_tuning_at_a_fraction_of_the_cost(results):
    assert results["rank_rule_met"] is True  # some rank came within the margin on validation
    assert results["chosen_rank"] in (2, 4, 8)
    assert results["chosen_percent"] < 11
    assert 0 < results["chosen_gap"] <= 0.04  # on test: behind, by a few points at most
    assert results["adam_state_ratio"] >= 9


def test_the_gap_verdict_is_computed_from_the_paired_test(results):
    low, high, p = (results[k] for k in ("chosen_gap_ci_low", "chosen_gap_ci_high",
                                         "chosen_gap_p_value"))  # fmt: skip
    significant = p < 0.05 and (low > 0 or high < 0)
    assert results["chosen_gap_significant"] is significant
    assert results["chosen_gap_verdict"].startswith(
        "significant" if significant else "not significant"
    )
    assert low <= results["chosen_gap"] <= high


def test_the_last_layer_alone_is_clearly_worse(results):
    assert results["head_accuracy"] <= results["full_accuracy"] - 0.03
    assert results["head_gap_significant"] is True
    assert results["head_gap_p_value"] < 0.01


def test_rank_one_is_too_little_and_accuracy_levels_off(results):
    threshold = results["rank_threshold"]
    assert results["lora_r1_val_accuracy"] < threshold
    assert results["lora_r1_accuracy"] < results["chosen_accuracy"] - 0.02
    assert results["lora_r16_accuracy"] - results["lora_r4_accuracy"] < 0.03  # levels off
    assert results["full_update_energy_top16"] > 0.5


def test_adapter_artifact_reproduces_the_adapted_model(results):
    assert results["parent_sha256_matches"] is True
    assert results["reloaded_accuracy_equal"] is True
    assert results["reloaded_logits_equal"] is True
    assert results["tamper_detected"] is True


def test_int8_storage_is_within_half_a_step_in_a_quarter_of_the_memory(results):
    # half a step, plus the float32 rounding of w / s and of q * s (each at most 2^-24 of a
    # value up to 127 s, measured in half steps s / 2): 2 * 254 * 2^-24 ~ 3.0e-5. Seed 1 with
    # the portable kernels reached 1 + 1.1e-5.
    assert results["int8_worst_half_step_fraction"] <= 1 + 2 * 254 * 2**-24
    weights = sum(d_in * d_out for d_in, d_out in LAYERS)
    rows = sum(d_out for _, d_out in LAYERS)
    # one byte per weight, a float32 scale and a float32 bias per output row
    assert results["int8_bytes"] == weights + 4 * rows + 4 * rows
    assert results["fp32_base_kib"] == pytest.approx(4 * N_BASE / 1024)
    assert 3.5 < results["int8_memory_ratio"] < 4


def test_int8_base_keeps_its_accuracy_and_adapters_train_on_it(results):
    assert abs(results["int8_accuracy_a"] - results["base_accuracy_a"]) <= 0.01
    assert results["int8_agreement_a"] >= 0.98
    assert abs(results["int8_gap"]) <= 0.015
    assert results["int8_lora_accuracy"] >= results["full_accuracy"] - 0.05
    significant = results["int8_gap_p_value"] < 0.05 and (
        results["int8_gap_ci_low"] > 0 or results["int8_gap_ci_high"] < 0
    )
    assert results["int8_gap_significant"] is significant
    assert results["int8_merge_refused"] is True  # no float weight to merge into


# --- the committed notebook and its exercises (no execution of the lesson needed) ---


@pytest.fixture(scope="module")
def notebook():
    return read_lesson(LESSON)


# How this lesson's outputs are compared on another CPU (mlcourse.lesson_outputs), and why.
DECLARED_TOLERANCES = {
    # Accuracies, gaps and their standard deviations are means over the adapter seeds.
    # Another kernel set acts like another draw of the seed noise. The standard deviation of
    # such a mean is below 0.008 here (the printed seed standard deviations, divided by the
    # square root of the number of seeds), and seed 0's pinned and portable runs differ by
    # 0.006 at most: 0.015 is about two of those standard deviations, and a result that
    # moves by a few points still fails.
    "atol": 0.015,
    # SHA-256 digests of trained weights depend on every bit (the lesson explains why).
    "bit_dependent": ["sha256:? [0-9a-f]+"],
    "lines": {
        # float64 rounding of the merge
        "^float64|_f64 =": {"atol": 1e-12},
        # the largest logit of one run, and a float32 rounding error relative to it
        "logits reach|_rel_diff": {"rtol": 0.1, "atol": 1e-5},
        # float32 rounding: merge, unmerge, stacked runs against single runs
        "max difference|max \\||stacked|largest difference|_diff =|rounding": {"atol": 5e-5},
    },
    "numbers": {
        # A p-value is a steep function of the gap it tests: when the seed-averaged accuracies
        # move by a few tenths of a point, p may move by its own size (0.31 on an AMD EPYC,
        # 0.49 on an Intel Xeon for the int8 gap). The verdict it leads to is words, compared
        # exactly, so a conclusion that flips still fails.
        "(p-value: |_p_value = )$": {"atol": 0.05, "rtol": 1.0},
        # A standard deviation over 3 seeds is itself uncertain by about half its value, and
        # at the edge of the stable rates one seed's worse run sets it (0.021 on an AMD EPYC,
        # 0.001 with the portable kernels on an Intel Xeon, for rank 4 at lr 6e-2).
        "± $": {"atol": 0.025},
    },
}


def test_the_lesson_declares_these_output_tolerances(notebook):
    assert notebook.metadata["mlcourse"]["compare"] == DECLARED_TOLERANCES


# What exercise 3's test cell reads from the lesson, made small: a stand-in base model and
# mirrored images, so that the exercise tests run on their own.
PRELUDE = """
import copy
import math

import torch
from torch import nn

torch.manual_seed(0)
base = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def mirror(x):
    return x.view(-1, 8, 8).flip(-1).reshape(-1, 64)


@torch.no_grad()
def accuracy(model, x, y):
    return (model(x).argmax(1) == y).float().mean().item()


x_test = torch.rand(60, 64)
x_test_b, x_train_b = mirror(x_test), mirror(torch.rand(80, 64))
with torch.no_grad():
    y_test = base(x_test).argmax(1)
base_acc_a = accuracy(base, x_test, y_test)
chosen_rank = 4
"""

WRONG_ANSWERS = {
    "ex1_lora_factors": [
        "raise NotImplementedError()",
        # the classic mistake: nn.Linear.weight is (d_out, d_in), unpacked the other way
        "d_in, d_out = layer.weight.shape\n"
        "return torch.randn(rank, d_in) / math.sqrt(d_in), torch.zeros(d_out, rank)",
        # A transposed
        "d_out, d_in = layer.weight.shape\n"
        "return torch.randn(d_in, rank) / math.sqrt(d_in), torch.zeros(d_out, rank)",
        # B random: the adapted layer no longer starts at the base layer
        "d_out, d_in = layer.weight.shape\n"
        "return torch.randn(rank, d_in) / math.sqrt(d_in), torch.randn(d_out, rank)",
        # both zero: no gradient reaches either
        "d_out, d_in = layer.weight.shape\nreturn torch.zeros(rank, d_in), torch.zeros(d_out, rank)",
        # roles swapped: A zero, B random
        "d_out, d_in = layer.weight.shape\nreturn torch.zeros(rank, d_in), torch.randn(d_out, rank)",
        # the layer's sizes read from the wrong attributes (a full-size A)
        "d_out, d_in = layer.weight.shape\n"
        "return torch.randn(d_out, d_in) / math.sqrt(d_in), torch.zeros(d_out, rank)",
    ],
    "ex2_merge_lora_weight": [
        "raise NotImplementedError()",
        "return W + B @ A",  # no scale
        "return W + alpha * (B @ A)",  # alpha, not alpha / r
        "return W + (A.shape[0] / alpha) * (B @ A)",  # inverted scale
        "return W + (alpha / A.shape[1]) * (B @ A)",  # rank read from the wrong axis
        "W += (alpha / A.shape[0]) * (B @ A)\nreturn W",  # modifies W in place
    ],
    "ex3_mirror_first_layer": [
        "raise NotImplementedError()",
        "return W.flip(1)",  # reverses all 64 pixels: a rotation by 180 degrees
        "return W.flip(0)",  # reorders the output units
        "return W.reshape(-1, 8, 8).flip(-2).reshape(W.shape)",  # upside down, not mirrored
        "return W.reshape(-1, 8, 8).transpose(-1, -2).reshape(W.shape)",  # transposed image
        "W[:] = W.reshape(-1, 8, 8).flip(-1).reshape(W.shape)\nreturn W",  # in place
        "return W",  # no fix at all
    ],
}


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise(notebook):
    assert_tests_judge_answers(notebook, WRONG_ANSWERS, prelude=PRELUDE)


def test_the_visible_tests_alone_reject_every_wrong_answer(notebook):
    """A learner sees only the visible tests, so they must catch each classic mistake."""
    for grade_id, (solution, test) in exercises(notebook).items():
        visible = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", test, flags=re.S)
        assert visible != test, grade_id
        for answer in WRONG_ANSWERS[grade_id]:
            with pytest.raises((AssertionError, NotImplementedError)):
                run_exercise(replace_solution(solution, answer), visible, PRELUDE)


def test_the_classic_mistakes_get_messages_that_name_them(notebook):
    """The first failing check of a visible test names the mistake the answer makes."""
    found = exercises(notebook)
    expected = {
        ("ex1_lora_factors", 1): "unpacking it as `d_in, d_out` swaps them",
        ("ex1_lora_factors", 3): "B must start at zero",
        ("ex1_lora_factors", 5): "B must start at zero",
        ("ex1_lora_factors", 4): "A must start random",
        ("ex2_merge_lora_weight", 2): "alpha / r",
        ("ex2_merge_lora_weight", 5): "changed W in place",
        ("ex3_mirror_first_layer", 1): "rotation by 180 degrees",
        ("ex3_mirror_first_layer", 2): "reorders the output units",
        ("ex3_mirror_first_layer", 5): "changed W in place",
    }
    for (grade_id, index), phrase in expected.items():
        solution, test = found[grade_id]
        wrong = replace_solution(solution, WRONG_ANSWERS[grade_id][index])
        with pytest.raises(AssertionError, match=re.escape(phrase)):
            run_exercise(wrong, test, PRELUDE)
