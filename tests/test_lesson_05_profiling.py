"""Claims of lesson 05 (profiling), asserted on lite runs with each kernel set.

Timings vary, so claims about them are relative and asserted with generous margins;
memory is counted in bytes of tensors and asserted exactly or tightly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


def test_profiler_finds_the_arithmetic_and_writes_a_trace(results):
    assert results["trace_valid"] is True
    assert results["arithmetic_share"] > 0.2


def test_data_bound_loop_and_its_fixes(results):
    assert results["data_wait_share"] > 0.5, "the per-item transform makes the loop data-bound"
    assert results["precompute_speedup"] > 2.0
    assert results["memmap_speedup"] > 2.0
    assert results["workers_reproducible"] is True
    assert results["workers_speedup"] > 0  # measured and published; not a claim on 2 cores


def test_activation_memory_is_linear_in_the_batch_size(results):
    assert results["activation_ratio_4x_batch"] == 4.0
    # per example: the 64-pixel input, the stem's output and 16 ReLU outputs of 128 floats
    assert results["activation_bytes_per_example"] == 4 * (64 + 128 + 16 * 128)


def test_checkpointing_saves_memory_and_costs_time(results):
    assert results["checkpoint_saved_saving"] > 0.5
    assert results["checkpoint_peak_saving"] > 0.2
    assert results["checkpoint_grads_identical"] is True
    assert results["checkpoint_time_ratio"] > 1.05, "recomputing the forward pass is not free"


def test_autocast_halves_activation_memory_roughly(results):
    assert 0.5 <= results["amp_activation_ratio"] < 0.8
    assert results["amp_rel_error"] < 0.02


def test_batch_size_sweep(results):
    assert results["batch_throughput_ratio"] > 3
    assert results["knee_batch_size"] in (16, 64, 256, 1024)
    # 16x the batch hardly speeds up a loop that waits for per-image preparation
    assert results["data_bound_batch_gain"] < 2.0
    assert results["compute_bound_batch_gain"] > 0  # measured and shown for contrast


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
    "ex2_knee_batch_size": [
        "def knee_batch_size(batch_sizes, throughputs, fraction=0.9):\n"
        "    raise NotImplementedError()",
        # the best batch size
        "def knee_batch_size(batch_sizes, throughputs, fraction=0.9):\n"
        "    return batch_sizes[throughputs.index(max(throughputs))]",
        # relative to the last measurement instead of the best
        "def knee_batch_size(batch_sizes, throughputs, fraction=0.9):\n"
        "    return min(b for b, t in zip(batch_sizes, throughputs) if t >= fraction * throughputs[-1])",
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
    with pytest.raises(FileExistsError):
        profiling_data.save_memmap(prepared, tmp_path / "a.npy")
    with pytest.raises(ValueError, match="same length"):
        profiling_data.PrecomputedDigits(prepared, labels[:3])
    with pytest.raises(ValueError, match="zoom=0"):
        profiling_data.expensive_transform(images[0], zoom=0)
