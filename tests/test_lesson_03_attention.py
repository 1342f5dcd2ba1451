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


def test_stacked_members_compute_what_the_models_compute(results):
    assert results["stack_max_error"] < 1e-5


def test_without_warmup_post_ln_attention_collapses_in_the_first_steps(results):
    # after 10 steps every seed's first-layer entropy is far below ln 8 = 2.08 without
    # warmup, and every seed's stays high with warmup
    assert results["post_no_warmup_entropy_step10_max"] < 0.8
    assert results["post_warmup_entropy_step10_min"] > 1.5
    # the pre-LN model's attention collapses early too: the collapse alone is not the failure
    assert results["pre_no_warmup_entropy_step10_max"] < 0.8


def test_warmup_rescues_post_ln_over_seeds(results):
    # without warmup no seed learns the task: stuck near the loss of a uniform guess
    assert results["post_no_warmup_accuracy"] < 0.1
    assert results["post_no_warmup_final_loss"] > 0.5 * math.log(10)
    assert results["post_no_warmup_mirror_mass"] < 0.5  # its heads look elsewhere
    # with warmup seeds do, and the heads find the mirror positions: paired over seeds
    # (same initial weights, same mini-batches), a 95% t interval that excludes zero
    assert results["post_warmup_trained"] > results["post_no_warmup_trained"]
    assert results["warmup_gain"] > 0
    assert results["mirror_mass_gain_ci_low"] > 0


def test_pre_ln_trains_without_warmup(results):
    assert results["pre_no_warmup_accuracy"] >= 0.9
    assert results["pre_ln_gain_ci_low"] > 0  # pre-LN beats post-LN, both without warmup


# --- the committed notebook and its exercises (no execution of the lesson needed) ---


@pytest.fixture(scope="module")
def notebook():
    return read_lesson(LESSON)


def _ablation(body: str) -> str:
    return (
        "attn = model.blocks[layer - 1].attn\n"
        "d_head = attn.out_proj.in_features // attn.n_heads\n"
        f"{body}"
    )


def _hooked(features: str, block: str = "layer - 1") -> str:
    return (
        f"attn = model.blocks[{block}].attn\n"
        "d_head = attn.out_proj.in_features // attn.n_heads\n"
        "def silence(module, inputs):\n"
        "    (h,) = inputs\n"
        "    h = h.clone()\n"
        f"    h[..., {features}] = 0.0\n"
        "    return (h,)\n"
        "handle = attn.out_proj.register_forward_pre_hook(silence)\n"
        "try:\n"
        "    with torch.no_grad():\n"
        "        return model(x)[0]\n"
        "finally:\n"
        "    handle.remove()"
    )


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
    "ex3_head_ablation": [
        "raise NotImplementedError()",
        "with torch.no_grad():\n    return model(x)[0]",  # nothing silenced
        _hooked("head * d_head : (head + 1) * d_head"),  # heads counted from 0
        _hooked("(head - 1) * d_head : head * d_head", block="layer"),  # layers from 0
        _hooked("head - 1 :: attn.n_heads"),  # interleaved features
        # zeroes the rows (output features) of out_proj, and for good measure never restores
        _ablation(
            "with torch.no_grad():\n"
            "    attn.out_proj.weight[(head - 1) * d_head : head * d_head, :] = 0.0\n"
            "    return model(x)[0]"
        ),
        # the right columns, but the model is left changed
        _ablation(
            "with torch.no_grad():\n"
            "    attn.out_proj.weight[:, (head - 1) * d_head : head * d_head] = 0.0\n"
            "    return model(x)[0]"
        ),
    ],
}

# What the exercises' tests need from the lesson besides the learner's answer: the model.
MODEL_CELLS = ("def scaled_dot_product_attention", "class MultiHeadAttention", "class Block")


def lesson_prelude(notebook) -> str:
    imports = "import copy\nimport math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
    cells = [
        c.source
        for c in notebook.cells
        if c.cell_type == "code" and any(c.source.startswith(m) for m in MODEL_CELLS)
    ]
    assert len(cells) == len(MODEL_CELLS), "the lesson's model cells were not found"
    return imports + "\n".join(cells)


def test_exercise_tests_pass_for_the_solution_and_fail_otherwise(notebook):
    assert_tests_judge_answers(notebook, WRONG_ANSWERS, prelude=lesson_prelude(notebook))
