"""Claims of lesson 06, asserted on lite runs with each kernel set."""

import pytest

from exercise_checks import assert_tests_judge_answers, read_lesson

STEM = "06_experiments_and_artifacts"
pytestmark = pytest.mark.lesson(STEM)


@pytest.fixture(scope="module")
def results(lesson_run, kernels):
    """The lesson's published results, once per kernel set (seed 0, lite mode)."""
    return lesson_run(STEM, kernels).results


def test_every_run_of_the_sweep_is_tracked(results):
    r = results
    assert r["runs"] == 4 * r["seeds"]
    assert r["runs_tracked_in_mlflow"] == r["runs"]


def test_sweep_finds_a_good_learning_rate_and_brackets_it(results):
    r = results
    assert r["best_val_accuracy_mean"] > 0.95
    assert r["best_test_accuracy_mean"] > 0.93
    assert r["best_lr"] in (0.1, 0.3) and r["runner_up_lr"] in (0.1, 0.3)
    assert r["runner_up_val_accuracy_mean"] <= r["best_val_accuracy_mean"]
    assert r["worst_lr"] == 3.0, "the largest learning rate is the worst"


def test_validation_lead_is_a_fraction_of_a_point(results):
    # the lesson: "a validation lead of a fraction of a point, from three seeds"
    assert 0 <= results["val_lead"] < 0.01
    assert 0 <= results["seeds_agreeing_with_mean"] <= results["seeds"]


def test_a_learning_rate_ten_times_too_large_collapses_the_network(results):
    # (nearly) every hidden unit dead and chance-level accuracy, on every seed: over seeds
    # 0-9 at lr 3.0, one unit of 64 survived in two seeds, and one of those predicted 2 classes
    assert results["worst_collapsed"] is True
    assert results["worst_max_active_units"] <= 2
    assert results["worst_max_test_accuracy"] <= 0.2


def test_paired_comparisons(results):
    r = results
    # the top two are close (a point or so)
    assert abs(r["best_minus_runner_up_test"]) < 0.03
    for key in ("verdict_across_seeds", "verdict_across_examples"):
        assert r[key] in ("better", "worse", "undecided")
    assert 0 < r["p_value_across_seeds"] <= 1 and 0 < r["p_value_across_examples"] <= 1
    # "better"/"worse" is only claimed when the tests reject "no difference", and in the
    # direction of the difference
    for key, p in (("verdict_across_examples", "p_value_across_examples"),
                   ("verdict_across_seeds", "p_value_across_seeds")):  # fmt: skip
        if r[key] != "undecided":
            assert r[p] < 0.05
            assert (r[key] == "better") == (r["best_minus_runner_up_test"] > 0)


def test_artifacts_are_verified_and_traceable(results):
    r = results
    assert r["reloaded_accuracy_matches"] is True
    assert r["corruption_detected"] is True
    assert r["data_checksums_match"] is True
    assert r["code_version_matches"] is True
    assert r["retrained_identical"] is True


def test_run_folders_hold_no_machine_paths(results):
    assert results["files_with_private_paths"] == 0


# --- the exercises' tests reject the unanswered copy and plausible wrong answers -------------

PRELUDE = """
import tempfile
from pathlib import Path
from mlcourse.checks import expect_close, expect_equal, expect_true
from mlcourse.integrity import parse_sums, sha256_file, write_sums
from scipy.stats import norm, t
from mlcourse.training.config import TrainConfig
"""

WRONG_ANSWERS = {
    "ex1_flatten_params": [
        "def flatten_params(nested, prefix=''):\n    raise NotImplementedError()",
        # one level only
        "def flatten_params(nested, prefix=''):\n"
        "    out = {}\n"
        "    for k, v in nested.items():\n"
        "        if isinstance(v, dict):\n"
        "            out.update({f'{k}.{k2}': v2 for k2, v2 in v.items()})\n"
        "        else:\n"
        "            out[k] = v\n"
        "    return out",
        # another separator
        "def flatten_params(nested, prefix=''):\n"
        "    out = {}\n"
        "    for k, v in nested.items():\n"
        "        if isinstance(v, dict):\n"
        "            out.update(flatten_params(v, f'{prefix}{k}/'))\n"
        "        else:\n"
        "            out[f'{prefix}{k}'] = v\n"
        "    return out",
    ],
    "ex2_best_config": [
        "def best_config(rows):\n    raise NotImplementedError()",
        # the single luckiest run
        "def best_config(rows):\n    return max(rows, key=lambda r: r['val_accuracy'])['config']",
        # the median instead of the mean
        "import statistics\n"
        "def best_config(rows):\n"
        "    names = {r['config'] for r in rows}\n"
        "    return max(names, key=lambda n: statistics.median("
        "r['val_accuracy'] for r in rows if r['config'] == n))",
    ],
    "ex3_damaged_files": [
        "def damaged_files(folder):\n    raise NotImplementedError()",
        # sizes instead of checksums: a changed byte keeps the size
        "def damaged_files(folder):\n"
        "    return sorted(n for n in parse_sums((Path(folder) / 'SHA256SUMS').read_text())"
        " if not (Path(folder) / n).is_file())",
        # everything listed
        "def damaged_files(folder):\n"
        "    return sorted(parse_sums((Path(folder) / 'SHA256SUMS').read_text()))",
    ],
    "ex4_seeds_needed": [
        "def seeds_needed(mean_difference, sd_difference, alpha=0.05):\n"
        "    raise NotImplementedError()",
        # the normal quantile, whatever the number of seeds
        "def seeds_needed(mean_difference, sd_difference, alpha=0.05):\n"
        "    n = 2\n"
        "    while abs(mean_difference) / (sd_difference / n**0.5) < norm.ppf(1 - alpha / 2):\n"
        "        n += 1\n"
        "    return n",
        # a one-sided quantile
        "def seeds_needed(mean_difference, sd_difference, alpha=0.05):\n"
        "    n = 2\n"
        "    while abs(mean_difference) / (sd_difference / n**0.5) < t.ppf(1 - alpha, n - 1):\n"
        "        n += 1\n"
        "    return n",
        # the standard error as sd / n
        "def seeds_needed(mean_difference, sd_difference, alpha=0.05):\n"
        "    n = 2\n"
        "    while abs(mean_difference) / (sd_difference / n) < t.ppf(1 - alpha / 2, n - 1):\n"
        "        n += 1\n"
        "    return n",
        # the largest n that fails instead of the smallest that passes
        "def seeds_needed(mean_difference, sd_difference, alpha=0.05):\n"
        "    n = 2\n"
        "    while abs(mean_difference) / (sd_difference / n**0.5) < t.ppf(1 - alpha / 2, n - 1):\n"
        "        n += 1\n"
        "    return n - 1",
    ],
}


def test_exercise_tests_reject_wrong_answers():
    notebook = read_lesson(STEM)
    # The solutions pass in the lesson runs (test_lesson_outputs.py: a failing test cell
    # is an error output), with the lesson's own measurements.
    assert_tests_judge_answers(
        notebook, WRONG_ANSWERS, prelude=PRELUDE, replace="definition", check_solution=False
    )
