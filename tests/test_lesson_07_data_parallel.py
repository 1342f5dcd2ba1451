"""Claims of lesson 07 (data-parallel training), asserted on lite runs with each kernel set;
benchmarks/claims.py asserts them on seeds 0-4 too."""

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

STEM = "07_data_parallel"
pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_the_workers_compute_with_the_kernel_s_numerics(results):
    assert results["same_numerics_on_workers"] is True


def test_ring_all_reduce_matches_torch_and_sends_the_optimal_amount(results):
    r = results
    # two ranks add the same two numbers on both sides: a + b == b + a, bit for bit
    assert r["ring_identical_to_torch"] is True and r["ring_max_abs_diff_vs_torch"] == 0
    assert r["ring_error_vs_exact"] <= r["ring_one_rounding"]
    assert r["ring_sent"] == r["ring_sent_formula"]


def test_one_step_matches_the_big_batch_within_the_derived_bound(results):
    r = results
    assert r["one_step_logits_identical"] is True, "the forward pass is per example"
    assert r["one_step_ranks_agree"] is True
    assert r["one_step_entries_within"] == r["one_step_entries"] == 650
    assert r["one_step_worst_ratio"] < 1
    assert 0 < r["one_step_max_grad_diff"] < 1e-6


def test_many_steps_stay_within_the_summed_budget(results):
    r = results
    assert r["lr"] <= r["stability_limit"], "the non-expansiveness argument needs lr <= 2/L"
    assert r["ddp_drift_within_budget_every_step"] is True
    assert r["ddp_drift"] <= r["ddp_budget"] < 1e-3
    assert r["ddp_drift"] < r["ddp_budget"] / 100, "orders of magnitude under the worst case"
    assert abs(r["ddp_val_accuracy"] - r["single_val_accuracy"]) <= 1 / 374  # one example
    assert r["ddp_val_accuracy"] > 0.8, "softmax regression learns the digits"


def test_gradient_accumulation_stays_within_its_bound(results):
    r = results
    assert r["accumulation_worst_ratio"] < 1
    assert r["accumulation_drift"] <= r["accumulation_budget"] < 1e-3


def test_distributed_sampler_shards_without_overlap_and_reshuffles_per_epoch(results):
    r = results
    # 1107 examples on 2 ranks: padded to 1108, so one example is on both ranks
    assert r["sampler_per_rank"] == 554
    assert (r["sampler_on_two_ranks"], r["sampler_on_none"]) == (1, 0)
    assert (r["sampler_drop_last_on_two_ranks"], r["sampler_drop_last_on_none"]) == (0, 1)
    assert r["reshuffled_with_set_epoch"] is True and r["same_order_without_set_epoch"] is True


def test_forgetting_set_epoch_repeats_the_batches_and_shows_in_the_loss(results):
    r = results
    assert r["repeated_batches_forgotten"] == r["steps_per_epoch"] == 17
    assert r["repeated_batches_set_epoch"] == 0
    assert r["loss_change_correlation_forgotten"] > 0.7
    assert r["loss_change_correlation_forgotten"] - r["loss_change_correlation_set_epoch"] > 0.3


def test_bucketing_counts_the_messages(results):
    r = results
    assert r["all_reduce_calls_per_tensor"] == 6  # three Linear layers: weight and bias each
    assert r["all_reduce_calls_flat"] == 1
    assert r["ddp_buckets_default"] == 1, "85 thousand weights fit in one 25 MB bucket"
    assert r["ddp_buckets_small"] >= 2


def test_world_size_changes_the_bits_not_the_result(results):
    r = results
    assert r["mlp_rerun_identical"] is True, "the same world size repeats every bit"
    assert r["mlp_first_difference_step"] == r["mlp_accumulated_first_difference_step"] == 1
    assert r["mlp_final_difference"] < 1e-3
    assert abs(r["mlp_test_accuracy_two_ranks"] - r["mlp_test_accuracy_one_process"]) <= 0.01
    assert abs(r["mlp_test_accuracy_two_ranks"] - r["mlp_test_accuracy_accumulated"]) <= 0.01
    assert r["mlp_test_accuracy_two_ranks"] > 0.75


def test_fsdp_holds_half_the_weights_and_steps_like_ddp(results):
    r = results
    assert r["fsdp_held"] * r["world_size"] == r["fsdp_total"]
    assert r["fsdp_max_difference"] <= 1e-6


# --- the exercises' tests reject the unanswered copy and plausible wrong answers -------------

PRELUDE = """
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from mlcourse.checks import expect_close, expect_equal, expect_true
"""

WRONG_ANSWERS = {
    "ex1_shard_indices": [
        "raise NotImplementedError()",
        # a contiguous block per rank, no shuffle
        "per = -(-n // world_size)\nreturn list(range(rank * per, min(n, (rank + 1) * per)))",
        # the epoch is forgotten in the seed
        "order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()\n"
        "total = -(-n // world_size) * world_size\n"
        "order += order[: total - n]\n"
        "return order[rank:total:world_size]",
        # no padding: ranks get different counts
        "order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()\n"
        "return order[rank::world_size]",
        # each rank shuffles on its own
        "g = torch.Generator().manual_seed(seed + epoch + rank)\n"
        "order = torch.randperm(n, generator=g).tolist()\n"
        "total = -(-n // world_size) * world_size\n"
        "order += order[: total - n]\n"
        "return order[rank:total:world_size]",
    ],
    "ex2_distinct_examples": [
        "raise NotImplementedError()",
        # set_epoch never called
        "sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, seed=seed)\n"
        "seen = set()\n"
        "for epoch in range(epochs):\n"
        "    seen.update(sampler)\n"
        "return len(seen)",
        # counted with repeats
        "sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, seed=seed)\n"
        "total = 0\n"
        "for epoch in range(epochs):\n"
        "    if call_set_epoch:\n"
        "        sampler.set_epoch(epoch)\n"
        "    total += len(list(sampler))\n"
        "return total",
        # set_epoch(0) every epoch
        "sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, seed=seed)\n"
        "seen = set()\n"
        "for epoch in range(epochs):\n"
        "    if call_set_epoch:\n"
        "        sampler.set_epoch(0)\n"
        "    seen.update(sampler)\n"
        "return len(seen)",
    ],
    "ex3_shard_loss": [
        "raise NotImplementedError()",
        # each rank's own mean
        "return F.cross_entropy(logits, labels)",
        # a sum, unscaled
        "return F.cross_entropy(logits, labels, reduction='sum')",
        # the global mean without DDP's division by the world size
        "return F.cross_entropy(logits, labels, reduction='sum') / global_batch",
    ],
}


def test_exercise_tests_reject_wrong_answers():
    assert_tests_judge_answers(read_lesson(STEM), WRONG_ANSWERS, prelude=PRELUDE)
