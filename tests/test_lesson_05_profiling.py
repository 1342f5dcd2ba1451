"""Claims of lesson 05 (profiling), asserted on lite runs with each kernel set.

Timings vary, so claims about them are relative and asserted with generous margins;
memory is counted in bytes of tensors and asserted exactly or tightly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from exercise_checks import assert_tests_judge_answers, read_lesson
from mlcourse import profiling_data

STEM = "05_profiling"


pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_first_call_is_slower_than_the_steady_state(results):
    assert results["first_call_ratio"] > 1.3


def test_our_timer_agrees_with_torch_benchmark(results):
    assert 1 / 3 < results["benchmark_agreement"] < 3


def test_profiler_finds_the_arithmetic_on_top_and_writes_a_trace(results):
    assert results["trace_valid"] is True
    # "the convolutions take the biggest share": ahead of every other family of operators
    assert results["arithmetic_share"] > results["largest_other_share"]


def test_per_item_transform_makes_the_loop_data_bound(results):
    assert results["data_wait_share"] > 0.5


def test_precomputing_removes_most_of_the_wait_but_not_all(results):
    assert results["precompute_speedup"] > 2.0, "several-fold faster per batch"
    # the memory-mapped file (its pages cached) costs about what the array in memory does
    assert 0.5 < results["memmap_speedup"] / results["precompute_speedup"] < 2.0
    # a part of each step is still spent waiting, more than with whole batches
    assert results["precomputed_wait_share"] > 0.1
    assert results["precomputed_wait_share"] > results["batched_wait_share"]


def test_whole_batches_make_the_loop_compute_bound_with_the_same_batches(results):
    assert results["batched_wait_share"] < 0.5, "most of the time is spent computing"
    assert results["batched_identical"] is True


def test_seeded_workers_are_reproducible(results):
    assert results["workers_reproducible"] is True


def test_activation_memory_is_linear_in_the_batch_size(results):
    assert results["activation_ratio_4x_batch"] == 4.0
    # per example: the 64-pixel input, the stem's output and 16 ReLU outputs of 128 floats
    assert results["activation_bytes_per_example"] == 4 * (64 + 128 + 16 * 128)


def test_checkpointing_saves_memory_and_costs_time(results):
    assert results["checkpoint_saved_saving"] > 0.5
    assert results["checkpoint_peak_saving"] > 0.2
    assert results["checkpoint_grads_identical"] is True
    assert results["checkpoint_time_ratio"] > 1.05, "recomputing the forward pass is not free"


def test_autocast_halves_activation_memory_roughly_and_is_slower_on_the_cpu(results):
    assert 0.5 <= results["amp_activation_ratio"] < 0.8
    assert results["amp_rel_error"] < 0.02
    assert results["amp_time_ratio"] > 1.0, "casts cost more than bf16 saves on layers this small"


def test_throughput_rises_then_flattens_past_the_balance_point(results):
    assert results["batch_throughput_ratio"] > 3
    assert results["first_4x_gain"] > 2.5, "the fixed cost dominates a step on a few examples"
    assert results["last_4x_gain"] < 1.6, "the per-example cost dominates a large batch"
    # the sweep reaches well past the balance point t0/t1 of the fitted model
    assert 0 < results["balance_batch"] < results["largest_batch"] / 4


def test_bigger_batch_hardly_helps_a_data_bound_loop(results):
    assert results["data_bound_batch_gain"] < 2.0
    assert results["data_bound_batch_gain"] < results["compute_bound_batch_gain"]


# --- the exercises' tests reject the unanswered copy and plausible wrong answers -------------

PRELUDE = """
import statistics
import time
import numpy as np
import torch
from torch import nn
from mlcourse.checks import expect_close, expect_equal, expect_true
"""

WRONG_ANSWERS = {
    "ex1_median_time": [
        "def median_time(fn, *, warmup=3, repeats=10, clock=time.perf_counter):\n"
        "    raise NotImplementedError()",
        # no warm-up
        "def median_time(fn, *, warmup=3, repeats=10, clock=time.perf_counter):\n"
        "    d = []\n"
        "    for _ in range(repeats):\n"
        "        s = clock(); fn(); d.append(clock() - s)\n"
        "    return statistics.median(d)",
        # the mean
        "def median_time(fn, *, warmup=3, repeats=10, clock=time.perf_counter):\n"
        "    for _ in range(warmup): fn()\n"
        "    d = []\n"
        "    for _ in range(repeats):\n"
        "        s = clock(); fn(); d.append(clock() - s)\n"
        "    return statistics.mean(d)",
        # one timing around all calls
        "def median_time(fn, *, warmup=3, repeats=10, clock=time.perf_counter):\n"
        "    for _ in range(warmup): fn()\n"
        "    s = clock()\n"
        "    for _ in range(repeats): fn()\n"
        "    return (clock() - s) / repeats",
    ],
    "ex2_knee_from_costs": [
        "def knee_from_costs(fixed_cost, per_example_cost, fraction=0.9):\n"
        "    raise NotImplementedError()",
        # linear thinking: the fraction times the balance point
        "def knee_from_costs(fixed_cost, per_example_cost, fraction=0.9):\n"
        "    return fraction * fixed_cost / per_example_cost",
        # the balance point, whatever the fraction
        "def knee_from_costs(fixed_cost, per_example_cost, fraction=0.9):\n"
        "    return fixed_cost / per_example_cost",
        # the odds inverted
        "def knee_from_costs(fixed_cost, per_example_cost, fraction=0.9):\n"
        "    return (1 - fraction) / fraction * fixed_cost / per_example_cost",
        # the two costs swapped
        "def knee_from_costs(fixed_cost, per_example_cost, fraction=0.9):\n"
        "    return fraction / (1 - fraction) * per_example_cost / fixed_cost",
    ],
    "ex3_mlp_activation_bytes": [
        "def mlp_activation_bytes(batch_size, widths, bytes_per_value=4):\n"
        "    raise NotImplementedError()",
        # forgets the input
        "def mlp_activation_bytes(batch_size, widths, bytes_per_value=4):\n"
        "    return bytes_per_value * batch_size * sum(widths[1:-1])",
        # counts every width, output included
        "def mlp_activation_bytes(batch_size, widths, bytes_per_value=4):\n"
        "    return bytes_per_value * batch_size * sum(widths)",
        # counts a Linear's input and the ReLU's output separately
        "def mlp_activation_bytes(batch_size, widths, bytes_per_value=4):\n"
        "    return bytes_per_value * batch_size * (widths[0] + 2 * sum(widths[1:-1]))",
    ],
}


def test_exercise_tests_reject_wrong_answers():
    notebook = read_lesson(STEM)
    # The solutions pass in the lesson runs (test_lesson_outputs.py: a failing test cell
    # is an error output), with the lesson's own measurements.
    assert_tests_judge_answers(
        notebook, WRONG_ANSWERS, prelude=PRELUDE, replace="definition", check_solution=False
    )


# --- mlcourse.profiling_data ---------------------------------------------------------------


def test_precomputed_and_memory_mapped_datasets_match_the_slow_one(tmp_path):
    images = np.random.default_rng(0).random((5, 8, 8), dtype=np.float32)
    labels = np.arange(5)
    prepared = profiling_data.precompute(images)
    mapped = profiling_data.save_memmap(prepared, tmp_path / "a.npy")
    assert np.array_equal(np.asarray(mapped), prepared)
    for dataset in (
        profiling_data.TransformedDigits(images, labels),
        profiling_data.PrecomputedDigits(prepared, labels),
        profiling_data.PrecomputedDigits(mapped, labels),
    ):
        np.random.seed(3)
        x, label = dataset[2]
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and label == 2
        np.random.seed(3)
        reference, _ = profiling_data.TransformedDigits(images, labels)[2]
        assert torch.equal(x, reference), type(dataset).__name__
    np.random.seed(3)
    xb, yb = profiling_data.BatchedDigits(mapped, labels)[[2]]
    assert xb.shape == (1, 1, 32, 32) and yb.tolist() == [2] and torch.equal(xb[0], reference)
    with pytest.raises(FileExistsError):
        profiling_data.save_memmap(prepared, tmp_path / "a.npy")
    with pytest.raises(ValueError, match="same length"):
        profiling_data.PrecomputedDigits(prepared, labels[:3])
    with pytest.raises(ValueError, match="zoom=0"):
        profiling_data.expensive_transform(images[0], zoom=0)


def loader_batches(dataset, batched: bool, count: int = 4) -> list:
    """The first ``count`` batches of 3 of a shuffled loader seeded like the lesson's."""
    generator = torch.Generator().manual_seed(7)
    if batched:
        sampler = BatchSampler(RandomSampler(dataset, generator=generator), 3, False)
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, generator=generator)
    else:
        loader = DataLoader(dataset, batch_size=3, shuffle=True, generator=generator)
    np.random.seed(11)
    return [batch for batch, _ in zip(loader, range(count), strict=False)]


def test_whole_batch_loading_gives_the_per_example_batches_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    prepared = rng.random((10, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, size=10)
    mapped = profiling_data.save_memmap(prepared, tmp_path / "p.npy")
    reference = loader_batches(profiling_data.PrecomputedDigits(prepared, labels), batched=False)
    for source in (prepared, mapped):
        batches = loader_batches(profiling_data.BatchedDigits(source, labels), batched=True)
        assert len(batches) == len(reference) == 4
        for (x, y), (x_ref, y_ref) in zip(batches, reference, strict=True):
            assert x.dtype == x_ref.dtype == torch.float32 and y.dtype == y_ref.dtype
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    # the shifts really move the images, and max_shift=0 leaves them alone
    everything = list(range(10))
    still, _ = profiling_data.BatchedDigits(prepared, labels, max_shift=0)[everything]
    assert torch.equal(still[:, 0], torch.from_numpy(prepared))
    np.random.seed(0)
    moved, _ = profiling_data.BatchedDigits(prepared, labels)[everything]
    assert not torch.equal(moved[:, 0], torch.from_numpy(prepared))


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (3, TypeError, "index it with a list of indices"),
        ("3", TypeError, "index it with a list of indices"),
        ([], TypeError, "non-empty list of integers"),
        ([0.5, 1.0], TypeError, "non-empty list of integers"),
        ([[0, 1]], TypeError, "non-empty list of integers"),
        ([0, 10], IndexError, "index 10 is out of range for 10 images"),
        ([-1], IndexError, "index -1 is out of range"),
    ],
)
def test_whole_batch_dataset_refuses_bad_indices(bad, error, message):
    dataset = profiling_data.BatchedDigits(np.zeros((10, 32, 32), np.float32), np.arange(10))
    with pytest.raises(error, match=message):
        dataset[bad]


def test_whole_batch_dataset_checks_its_inputs():
    with pytest.raises(ValueError, match="same length"):
        profiling_data.BatchedDigits(np.zeros((4, 32, 32), np.float32), np.arange(3))
    with pytest.raises(ValueError, match="max_shift"):
        profiling_data.BatchedDigits(np.zeros((4, 32, 32), np.float32), np.arange(4), max_shift=-1)
