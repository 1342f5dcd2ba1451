"""Is a difference real or noise? Bootstrap intervals and paired comparisons.

- :func:`bootstrap_ci`: a percentile-bootstrap confidence interval for any statistic of
  one sample (e.g. accuracy from per-example 0/1 correctness).
- :func:`paired_bootstrap` and :func:`paired_t_test`: compare two models scored on the
  *same* examples (or the same seeds), using the per-item differences.
- :func:`compare_paired`: both at once, with a readable summary.
- :func:`holm_adjust`: Holm's correction when several comparisons are made at once, so
  that the chance of *any* false "real" stays at the chosen level.

Example:
    >>> a = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1]
    >>> print(bootstrap_ci(a, n_resamples=2000, seed=0))
    0.800 [0.500, 1.000] (95% percentile bootstrap, n=10)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlcourse.arguments import check_float, check_int

Statistic = Callable[[np.ndarray], np.ndarray]
_CHUNK = 1000


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a two-sided interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return (
            f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({self.confidence:.0%} {self.method}, n={self.n})"
        )


@dataclass(frozen=True)
class TTestResult:
    """A paired t-test on differences ``a - b``."""

    mean_difference: float
    t_statistic: float
    df: int
    p_value: float
    ci: ConfidenceInterval


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same items: the mean difference ``a - b`` and two tests of it."""

    mean_difference: float
    bootstrap_ci: ConfidenceInterval
    bootstrap_p_value: float
    t_test: TTestResult

    def significant(self, alpha: float = 0.05) -> bool:
        """True when both tests reject "no difference" at level ``alpha``."""
        return self.bootstrap_p_value < alpha and self.t_test.p_value < alpha

    def __str__(self) -> str:
        ci = self.bootstrap_ci
        return (
            f"mean difference {self.mean_difference:+.4f}, "
            f"{ci.confidence:.0%} CI [{ci.low:+.4f}, {ci.high:+.4f}] (paired bootstrap, "
            f"p={self.bootstrap_p_value:.3g}); paired t-test t={self.t_test.t_statistic:.2f}, "
            f"df={self.t_test.df}, p={self.t_test.p_value:.3g}"
        )


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Statistic | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile-bootstrap confidence interval for ``statistic`` of one sample.

    Args:
        values: one number per independent item, e.g. 1/0 for correct/incorrect.
        statistic: maps an array of shape ``(resamples, n)`` to ``(resamples,)``;
            defaults to the mean along the last axis.
        confidence: interval coverage, strictly between 0 and 1.
        n_resamples: number of bootstrap resamples (at least 100).
        seed: seeds the resampling, so the interval is reproducible.
    """
    x = _as_sample("values", values)
    statistic = statistic or _mean
    confidence, n_resamples, seed = _check_common(confidence, n_resamples, seed)
    estimate = float(statistic(x[None, :])[0])
    replicates = _resample(x, statistic, n_resamples, seed)
    low, high = _percentiles(replicates, confidence)
    return ConfidenceInterval(estimate, low, high, confidence, "percentile bootstrap", x.size)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[ConfidenceInterval, float]:
    """Bootstrap the mean of paired differences ``a - b``.

    Items are resampled *together* for both models, which keeps the pairing and removes
    the variation shared by both models (how hard each item is).

    Returns:
        The interval for the mean difference and a two-sided p-value for "no difference"
        (twice the smaller share of resampled means on either side of zero, counted
        add-one so that it is never reported as exactly 0).
    """
    diff = _differences(a, b)
    confidence, n_resamples, seed = _check_common(confidence, n_resamples, seed)
    replicates = _resample(diff, _mean, n_resamples, seed)
    low, high = _percentiles(replicates, confidence)
    # Add-one Monte Carlo p-value: never exactly 0 from a finite number of resamples.
    tail = min(int(np.sum(replicates <= 0)), int(np.sum(replicates >= 0)))
    p_value = min(1.0, 2 * (tail + 1) / (n_resamples + 1))
    ci = ConfidenceInterval(
        float(diff.mean()), low, high, confidence, "paired percentile bootstrap", diff.size
    )
    return ci, p_value


def paired_t_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
) -> TTestResult:
    """Student's paired t-test on ``a - b`` (equivalent to ``scipy.stats.ttest_rel``).

    ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1`` degrees of freedom. With zero
    spread in the differences, ``t`` is infinite (or undefined if they are all zero).
    """
    diff = _differences(a, b)
    confidence = _check_confidence(confidence)
    n = diff.size
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}.")
    mean = float(diff.mean())
    se = float(diff.std(ddof=1)) / math.sqrt(n)
    df = n - 1
    if se == 0.0:
        t = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
        p = math.nan if mean == 0.0 else 0.0
        low = high = mean
    else:
        from scipy.stats import t as student_t  # imported here: scipy.stats costs ~60 MB

        t = mean / se
        p = float(2 * student_t.sf(abs(t), df))
        half = float(student_t.ppf(0.5 + confidence / 2, df)) * se
        low, high = mean - half, mean + half
    ci = ConfidenceInterval(mean, low, high, confidence, "paired t interval", n)
    return TTestResult(mean_difference=mean, t_statistic=t, df=df, p_value=p, ci=ci)


def compare_paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap and paired t-test of ``a - b`` in one call.

    Example:
        >>> better = [0.91, 0.93, 0.92, 0.94, 0.92]
        >>> worse = [0.88, 0.90, 0.90, 0.91, 0.89]
        >>> compare_paired(better, worse, n_resamples=2000).significant()
        True
    """
    ci, p = paired_bootstrap(a, b, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return PairedComparison(
        mean_difference=ci.estimate,
        bootstrap_ci=ci,
        bootstrap_p_value=p,
        t_test=paired_t_test(a, b, confidence=confidence),
    )


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of ``m`` p-values tested together (Holm, 1979).

    Sort the p-values, multiply the ``k``-th smallest by ``m - k + 1``, then make the
    sequence non-decreasing and cap it at 1. Rejecting every hypothesis whose adjusted
    p-value is below ``alpha`` keeps the family-wise error rate (the chance of rejecting
    at least one true null hypothesis) at most ``alpha``, whatever the dependence between
    the tests. It never rejects fewer hypotheses than Bonferroni (``m * p``).

    Args:
        p_values: one p-value per test, each in [0, 1].

    Returns:
        The adjusted p-values, in the order given.

    Example:
        >>> holm_adjust([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    p = _as_floats("p_values", p_values)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(
            f"p_values must be a non-empty one-dimensional sequence, got shape {p.shape}."
        )
    bad = p[~((p >= 0.0) & (p <= 1.0))]  # also catches NaN
    if bad.size:
        raise ValueError(f"p_values must lie in [0, 1]; got {float(bad[0])!r}.")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def _mean(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=-1)


def _as_floats(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a sequence of numbers, got {type(values).__name__}."
        ) from None


def _as_sample(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = _as_floats(name, values)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}.")
    if x.size < 2:
        raise ValueError(f"{name} must hold at least 2 numbers, got {x.size}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; it holds NaN or infinity.")
    return x


def _differences(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    xa, xb = _as_sample("a", a), _as_sample("b", b)
    if xa.shape != xb.shape:
        raise ValueError(
            f"a and b must be paired (same length), got {xa.size} and {xb.size} values."
        )
    return xa - xb


def _check_confidence(confidence: float) -> float:
    return check_float(
        "confidence",
        confidence,
        min_value=0.0,
        max_value=1.0,
        min_inclusive=False,
        max_inclusive=False,
    )


def _check_common(confidence: float, n_resamples: int, seed: int) -> tuple[float, int, int]:
    confidence = _check_confidence(confidence)
    n_resamples = check_int("n_resamples", n_resamples, min_value=100)
    seed = check_int("seed", seed, min_value=0)
    return confidence, n_resamples, seed


def _resample(x: np.ndarray, statistic: Statistic, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = statistic(x[idx])
    return out


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
