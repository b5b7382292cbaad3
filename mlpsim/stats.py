"""Tests, intervals and multiple-comparison corrections used by the claims engine.

Every function is small, pure and exact where an exact answer exists; the
claims in :mod:`mlpsim.claims` combine them. Conventions:

* a *one-sided* p-value is for the named ``alternative`` ("greater": the
  statistic is larger than under the null, "less": smaller);
* Monte Carlo p-values count the observed value as one of the draws,
  ``(1 + #{null at least as extreme}) / (N + 1)``, which makes them valid
  (P(p <= a) <= a under the null) for any number of draws N (Phipson & Smyth
  2010, "Permutation p-values should never be zero");
* intervals are two-sided with coverage ``level``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

ALTERNATIVES = ("greater", "less")


def _check_alternative(alternative: str):
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")


def binomial_tail(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): the exact one-sided p-value of k successes."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(stats.binom.sf(k - 1, n, p0))


def sign_test(d, alternative: str) -> dict:
    """Exact sign test of "a nonzero ``d`` is as likely positive as negative" against ``alternative``.

    Zeros are dropped (they carry no sign), so a statistic that never moves
    gives ``n = 0`` and p = 1. Under the null each nonzero value is positive
    with probability 1/2, whatever its distribution, so the level is exact.
    This is a test of P(d > 0) = P(d < 0), not of "the median is 0": with
    many zeros the median can be 0 while the test rejects, so callers that
    mean a typical change also look at the median (the claims' effect sizes).
    Returns ``p``, ``n`` (nonzero values) and ``k`` (values in the direction).
    """
    _check_alternative(alternative)
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[np.isfinite(d) & (d != 0)]
    k = int(np.sum(d > 0) if alternative == "greater" else np.sum(d < 0))
    return {"p": binomial_tail(k, d.size, 0.5), "n": int(d.size), "k": k}


def count_test(p_values, alpha_instance: float) -> dict:
    """Are more instances individually significant than chance allows?

    ``p_values`` are valid one-sided p-values, one per instance (e.g. Monte
    Carlo p-values against a permutation null). Under the global null each is
    below ``alpha_instance`` with probability at most ``alpha_instance``, so
    the count of such instances is stochastically at most Binomial(n,
    alpha_instance): the p-value is that binomial's upper tail. Unlike Fisher's
    method, one extreme instance cannot decide the result on its own.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    k = int(np.sum(p < alpha_instance))
    return {"p": binomial_tail(k, p.size, alpha_instance), "n": int(p.size), "k": k}


def mc_p_value(observed, null, alternative: str) -> np.ndarray:
    """Monte Carlo p-values of ``observed`` (...,) against draws ``null`` (..., N).

    ``greater``: (1 + #{null >= observed}) / (N + 1); ``less`` with <=.
    """
    _check_alternative(alternative)
    obs = np.asarray(observed, dtype=np.float64)[..., None]
    null = np.asarray(null, dtype=np.float64)
    hits = (null >= obs) if alternative == "greater" else (null <= obs)
    return (1.0 + hits.sum(axis=-1)) / (null.shape[-1] + 1.0)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979): controls the family-wise error rate.

    The i-th smallest p-value of m is multiplied by (m - i + 1), then a running
    maximum keeps the order; NaN entries are left out of the family and stay NaN.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out[order] = np.maximum.accumulate(adjusted)
    return out


def median_ci(x, level: float = 0.95) -> tuple:
    """Distribution-free interval for the median from order statistics.

    The largest symmetric pair (x_(j), x_(n+1-j)) whose binomial coverage is
    at least ``level`` (Conover, "Practical nonparametric statistics", 3.2).
    With too few values for that coverage the interval is the whole range and
    its real coverage, 1 - 2^(1-n), is below ``level``.
    """
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return (math.nan, math.nan)
    best = 0
    for j in range(1, n // 2 + 1):  # 1-based rank of the lower bound
        coverage = 1.0 - 2.0 * stats.binom.cdf(j - 1, n, 0.5)
        if coverage >= level:
            best = j
    j = max(best, 1)
    return (float(v[j - 1]), float(v[n - j]))


def bootstrap_ci(x, statistic, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                 batched=None) -> tuple:
    """Percentile bootstrap interval of ``statistic(sample)`` over resampled rows of ``x``.

    ``batched``, if given, computes the statistic of every resample at once: it
    receives the stack ``(n_boot, n, ...)`` of resamples and returns ``(n_boot,)``
    values, each equal to ``statistic`` of its resample (same resamples, same
    interval; one NumPy call instead of ``n_boot``).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    picks = rng.integers(0, n, size=(int(n_boot), n))
    if batched is not None:
        values = np.asarray(batched(x[picks]), dtype=np.float64).reshape(int(n_boot))
    else:
        values = np.array([statistic(x[p]) for p in picks], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [q, 1.0 - q])
    return (float(lo), float(hi))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple:
    """Exact binomial interval for a proportion k / n (Clopper & Pearson 1934)."""
    if n == 0:
        return (math.nan, math.nan)
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))
    return (lo, hi)


def smallest_sign_test_p(n: int) -> float:
    """The smallest one-sided p-value a sign test on n values can give: 2^-n."""
    return 0.5 ** n


def vuong_test(loglik_a, loglik_b) -> dict:
    """Normalized log-likelihood ratio of two non-nested models (Vuong 1989).

    ``loglik_a``, ``loglik_b``: pointwise log-likelihoods of the same data.
    ``R`` = sum of differences (> 0 favours a); ``p`` is the two-sided
    probability of an |R| at least this large if both models were equally
    good (Clauset, Shalizi & Newman 2009, eq. C.6). Equal pointwise
    likelihoods give p = 1.
    """
    d = np.asarray(loglik_a, dtype=np.float64) - np.asarray(loglik_b, dtype=np.float64)
    n = d.size
    R = float(d.sum())
    sd = float(d.std())
    if n < 2 or (sd == 0.0 and R == 0.0):
        return {"R": R, "p": 1.0, "z": 0.0}
    if sd == 0.0:  # one model is better by the same amount at every point
        return {"R": R, "p": 0.0, "z": math.copysign(math.inf, R)}
    z = R / (sd * math.sqrt(n))
    return {"R": R, "p": float(special.erfc(abs(z) / math.sqrt(2.0))), "z": z}
