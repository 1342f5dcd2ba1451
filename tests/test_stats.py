import numpy as np
import pytest
from scipy import stats

from mlcourse.stats import (
    bootstrap_ci,
    compare_paired,
    holm_adjust,
    paired_bootstrap,
    paired_t_test,
)


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(0.80, 0.02, 12)
    b = a - rng.normal(0.01, 0.01, 12)
    ours = paired_t_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert ours.t_statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.df == 11
    ref_ci = ref.confidence_interval(0.95)
    assert (ours.ci.low, ours.ci.high) == pytest.approx((ref_ci.low, ref_ci.high), rel=1e-10)


def test_t_test_textbook_value():
    # Student's sleep data (Cushny & Peebles), the classic paired example: t = -4.06, df = 9.
    a = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    b = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    result = paired_t_test(a, b)
    assert result.t_statistic == pytest.approx(-4.0621, abs=1e-4)
    assert result.p_value == pytest.approx(0.002833, abs=1e-6)


def test_bootstrap_ci_agrees_with_scipy_percentile():
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.85, 400).astype(float)
    ours = bootstrap_ci(x, n_resamples=20_000, seed=0)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
    assert ours.estimate == pytest.approx(x.mean())
    assert ours.low == pytest.approx(ref.low, abs=0.004)
    assert ours.high == pytest.approx(ref.high, abs=0.004)
    # and with the normal approximation p +- 1.96 sqrt(p(1-p)/n)
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert ours.high - ours.low == pytest.approx(2 * half, rel=0.06)


def test_bootstrap_is_reproducible_and_seed_dependent():
    x = np.arange(50, dtype=float)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3).low != bootstrap_ci(x, seed=4).low


def test_custom_statistic():
    x = np.array([1.0, 2.0, 3.0, 100.0])
    ci = bootstrap_ci(x, lambda s: np.median(s, axis=-1), n_resamples=500)
    assert ci.estimate == 2.5


def test_paired_bootstrap_detects_real_difference_and_not_noise():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, 500)
    a = (difficulty < 0.90).astype(float)
    b = (difficulty < 0.85).astype(float)  # b is strictly worse on 5% of items
    ci, p = paired_bootstrap(a, b, n_resamples=5000)
    assert ci.low > 0 and p < 0.01
    same = (difficulty < 0.9).astype(float)
    noisy = same.copy()  # as many new errors as new successes: no real difference
    flip = np.concatenate([np.flatnonzero(same == 1)[:6], np.flatnonzero(same == 0)[:6]])
    noisy[flip] = 1 - noisy[flip]
    ci, p = paired_bootstrap(same, noisy, n_resamples=5000)
    assert ci.contains(0.0) and p > 0.05


def test_pairing_matters_compared_to_unpaired():
    rng = np.random.default_rng(3)
    base = rng.normal(0.8, 0.05, 8)  # big seed-to-seed variation shared by both models
    a, b = base + 0.01, base
    assert compare_paired(a, b, n_resamples=2000).significant()
    assert stats.ttest_ind(a, b).pvalue > 0.05  # unpaired test misses it


def test_degenerate_differences():
    same = paired_t_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert np.isnan(same.t_statistic) and np.isnan(same.p_value)
    shifted = paired_t_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.t_statistic == np.inf and shifted.p_value == 0.0
    _, p = paired_bootstrap([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], n_resamples=999)
    assert p == pytest.approx(2 / 1000)  # never exactly zero


def test_holm_textbook_example():
    # Four hypotheses with p = 0.01, 0.04, 0.03, 0.005 at alpha = 0.05 (the worked example of
    # Holm's procedure): sorted thresholds 0.05/4, 0.05/3, 0.05/2, 0.05/1 reject H4 (0.005)
    # and H1 (0.01), then stop at H3 (0.03 > 0.025), so H2 and H3 stand.
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert (adjusted < 0.05).tolist() == [True, False, False, True]


def test_holm_by_hand_with_ties_and_the_cap():
    # m = 3: 3 * 0.02 = 0.06, 2 * 0.02 = 0.04 -> raised to 0.06 (non-decreasing), 1 * 0.5 = 0.5.
    assert holm_adjust([0.5, 0.02, 0.02]) == pytest.approx([0.5, 0.06, 0.06], abs=1e-15)
    assert holm_adjust([0.4, 0.6]).tolist() == [0.8, 0.8]  # 2 * 0.4, then max(0.6, 0.8)
    assert holm_adjust([0.3, 0.9, 0.5]).max() == 1.0  # 3 * 0.3 = 0.9, then capped at 1
    assert holm_adjust([0.2]).tolist() == [0.2]  # one test: nothing to correct


def test_holm_sits_between_no_correction_and_bonferroni():
    p = np.random.default_rng(4).uniform(0, 0.2, 12)
    adjusted = holm_adjust(p)
    assert np.all(adjusted >= p) and np.all(adjusted <= np.minimum(1, 12 * p) + 1e-15)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)  # keeps the order of the raw p-values


def test_holm_controls_the_familywise_error_rate():
    # Six true null hypotheses, independent: uncorrected, at least one p < 0.05 happens in
    # 1 - 0.95**6 = 26.5% of families; Holm keeps it at 1 - (1 - 0.05/6)**6 = 4.9%.
    p = np.random.default_rng(5).uniform(size=(20_000, 6))
    uncorrected = np.mean((p < 0.05).any(axis=1))
    corrected = np.mean([(holm_adjust(row) < 0.05).any() for row in p])
    assert uncorrected == pytest.approx(1 - 0.95**6, abs=0.01)
    assert corrected == pytest.approx(1 - (1 - 0.05 / 6) ** 6, abs=0.005)


@pytest.mark.parametrize(
    ("p_values", "error", "message"),
    [
        ([], ValueError, "non-empty one-dimensional"),
        ([[0.1, 0.2]], ValueError, "non-empty one-dimensional"),
        ([0.1, 1.5], ValueError, r"must lie in \[0, 1\]; got 1.5"),
        ([0.1, -0.01], ValueError, r"got -0.01"),
        ([0.1, float("nan")], ValueError, "got nan"),
        (["a"], TypeError, "sequence of numbers"),
    ],
)
def test_holm_rejects_bad_p_values(p_values, error, message):
    with pytest.raises(error, match=message):
        holm_adjust(p_values)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_ci([1.0]), "at least 2 numbers"),
        (lambda: bootstrap_ci([[1.0, 2.0]]), "one-dimensional"),
        (lambda: bootstrap_ci([1.0, float("nan")]), "finite"),
        (lambda: bootstrap_ci([1.0, 2.0], confidence=1.0), r"confidence=1.0 is out of range"),
        (lambda: bootstrap_ci([1.0, 2.0], n_resamples=10), "n_resamples=10 is out of range"),
        (lambda: paired_t_test([1.0, 2.0], [1.0, 2.0, 3.0]), "same length"),
        (lambda: bootstrap_ci(["a", "b"]), "sequence of numbers"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_summaries_are_readable():
    comparison = compare_paired([0.9, 0.92, 0.91], [0.88, 0.9, 0.9], n_resamples=500)
    text = str(comparison)
    assert "mean difference +0.0167" in text and "paired t-test" in text
