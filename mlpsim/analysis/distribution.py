"""The distribution of parameter values over training: histograms, moments, tails.

All functions take a trajectory ``params`` (E, C, P) (a memmap is read block by
block of checkpoints, so trajectories larger than memory work) and the flat
indices ``idx`` of the parameters to pool (see :func:`mlpsim.analysis.select`).
"""
from __future__ import annotations

import numpy as np

#: The notebook's ``BinCounts[#, {-5, 5, .25}]``: half-open bins [a, a + 0.25) on [-5, 5).
BINCOUNT_EDGES = np.linspace(-5.0, 5.0, 41)

#: Quantile levels reported by :func:`moments`.
QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)

_BLOCK_BYTES = 64 * 2**20


def iter_blocks(params, idx):
    """Yield ``(c0, c1, values (E, c1 - c0, len(idx)) float64)`` over checkpoint blocks."""
    params_shape = np.shape(params)
    if len(params_shape) != 3:
        raise ValueError(f"params must be (instances, checkpoints, n_params), got shape {params_shape}")
    E, C, P = params_shape
    idx = np.asarray(idx)
    if idx.size == 0:
        raise ValueError("the selection is empty")
    per_checkpoint = max(1, E * P * 8)
    block = max(1, min(C, _BLOCK_BYTES // per_checkpoint))
    contiguous = np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size))
    for c0 in range(0, C, block):
        c1 = min(C, c0 + block)
        chunk = params[:, c0:c1]
        values = chunk[..., idx[0]:idx[0] + idx.size] if contiguous else np.asarray(chunk)[..., idx]
        yield c0, c1, np.asarray(values, dtype=np.float64)


def histograms(params, idx, edges=BINCOUNT_EDGES) -> dict:
    """Counts of values in half-open bins ``[edges[i], edges[i+1])`` at every checkpoint.

    Returns a dict with ``counts`` (E, C, bins) int64, ``below`` and ``above``
    (E, C): values outside ``[edges[0], edges[-1])``, which the notebook's
    ``BinCounts`` silently drops; ``nan`` (E, C); and ``edges``.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a strictly increasing 1-D array with at least 2 entries")
    E, C, _ = np.shape(params)
    nb = edges.size - 1
    counts = np.zeros((E, C, nb + 2), dtype=np.int64)
    nan = np.zeros((E, C), dtype=np.int64)
    for c0, c1, v in iter_blocks(params, idx):
        finite = ~np.isnan(v)
        nan[:, c0:c1] = (~finite).sum(axis=-1)
        # bin b + 1 holds edges[b] <= v < edges[b+1]; 0 is below, nb + 1 above
        b = np.searchsorted(edges, v, side="right")
        b[~finite] = 0
        rows = np.arange(E * (c1 - c0)).reshape(E, c1 - c0, 1)
        flat = np.bincount((rows * (nb + 2) + b)[finite], minlength=E * (c1 - c0) * (nb + 2))
        counts[:, c0:c1] = flat.reshape(E, c1 - c0, nb + 2)
    return {"counts": counts[..., 1:nb + 1], "below": counts[..., 0], "above": counts[..., nb + 1],
            "nan": nan, "edges": edges}


def moments(params, idx, sigma0=None) -> dict:
    """Moments and shape of the pooled values at every checkpoint.

    Returns (E, C) arrays ``mean``, ``var`` (ddof = 1, like Wolfram's
    ``Variance``), ``std``, ``skewness`` (g1 = m3 / m2**1.5), ``kurtosis``
    (excess, g2 = m4 / m2**2 - 3), ``max_abs``, ``max_over_std`` (a scale-free
    tail measure), ``frac_beyond_2sigma0`` and ``frac_beyond_3sigma0`` (share of
    |w| above 2 and 3 times ``sigma0``: by default each instance's std at the
    first checkpoint), and ``quantiles`` (E, C, len(QUANTILES)).
    """
    E, C, _ = np.shape(params)
    out = {k: np.empty((E, C)) for k in ("mean", "var", "std", "skewness", "kurtosis", "max_abs",
                                          "max_over_std", "frac_beyond_2sigma0", "frac_beyond_3sigma0")}
    out["quantiles"] = np.empty((E, C, len(QUANTILES)))
    for c0, c1, v in iter_blocks(params, idx):
        n = v.shape[-1]
        mean = v.mean(axis=-1)
        dev = v - mean[..., None]
        m2 = (dev ** 2).mean(axis=-1)
        m3 = (dev ** 3).mean(axis=-1)
        m4 = (dev ** 4).mean(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["skewness"][:, c0:c1] = m3 / m2 ** 1.5
            out["kurtosis"][:, c0:c1] = m4 / m2 ** 2 - 3.0
        out["mean"][:, c0:c1] = mean
        out["var"][:, c0:c1] = m2 * n / (n - 1) if n > 1 else np.nan
        out["max_abs"][:, c0:c1] = np.abs(v).max(axis=-1)
        out["quantiles"][:, c0:c1] = np.moveaxis(np.quantile(v, QUANTILES, axis=-1), 0, -1)
    out["std"] = np.sqrt(out["var"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["max_over_std"] = out["max_abs"] / out["std"]
    s0 = out["std"][:, 0] if sigma0 is None else np.broadcast_to(np.asarray(sigma0, float), (E,))
    for c0, c1, v in iter_blocks(params, idx):
        a = np.abs(v)
        out["frac_beyond_2sigma0"][:, c0:c1] = (a > 2 * s0[:, None, None]).mean(axis=-1)
        out["frac_beyond_3sigma0"][:, c0:c1] = (a > 3 * s0[:, None, None]).mean(axis=-1)
    return out


def excess_kurtosis(v) -> np.ndarray:
    """m4 / m2^2 - 3 along the last axis (the project's definition; population moments)."""
    v = np.asarray(v, dtype=np.float64)
    d = v - v.mean(axis=-1, keepdims=True)
    m2 = (d ** 2).mean(axis=-1)
    m4 = (d ** 4).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m4 / m2 ** 2 - 3.0


def default_hill_k(n: int) -> int:
    """The number of order statistics used by the Hill estimator: ``floor(sqrt(n))``, at least 2.

    A fixed rule (rather than an adaptive choice per sample) keeps the
    estimates comparable across checkpoints; sqrt(n) balances the estimator's
    bias (k too large reaches into the body) and variance (k too small).
    """
    return int(min(max(2, np.floor(np.sqrt(n))), n - 1))


def hill_estimator(x, k=None) -> np.ndarray:
    """Hill's tail index of ``|x|`` along the last axis.

    alpha = 1 / mean_{i <= k} log(X_(i) / X_(k+1)), with X_(1) >= X_(2) >= ...
    the order statistics of ``|x|`` (Hill 1975). A Pareto tail
    ``P(|X| > t) ~ t**-alpha`` gives alpha; smaller alpha is a heavier tail.
    """
    a = np.sort(np.abs(np.asarray(x, dtype=np.float64)), axis=-1)[..., ::-1]
    n = a.shape[-1]
    k = default_hill_k(n) if k is None else int(k)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} values, got {k}")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(a[..., :k]) - np.log(a[..., k:k + 1])
        return 1.0 / logs.mean(axis=-1)


def hill_over_training(params, idx, checkpoints=None, k=None, n_boot=200, seed=0, level=0.95) -> dict:
    """Hill tail index per instance at chosen checkpoints, with bootstrap intervals.

    Parameters
    ----------
    checkpoints : int array, optional
        Checkpoint indices; default up to 101 evenly spaced ones.
    n_boot : int
        Bootstrap resamples (values drawn with replacement); the same resampling
        pattern, from ``np.random.default_rng(seed)``, is used at every checkpoint.
    level : float
        Coverage of the percentile interval.

    Returns
    -------
    dict with ``checkpoints``, ``alpha``, ``lo``, ``hi`` (E, len(checkpoints)) and ``k``.
    """
    E, C, _ = np.shape(params)
    if checkpoints is None:
        from .selection import pick_checkpoints
        checkpoints = pick_checkpoints(C, 101)
    checkpoints = np.asarray(checkpoints, dtype=np.int64)
    if checkpoints.size and (checkpoints.min() < 0 or checkpoints.max() >= C):
        raise ValueError(f"checkpoint indices must lie in [0, {C - 1}]")
    idx = np.asarray(idx)
    n = idx.size
    k = default_hill_k(n) if k is None else int(k)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    resample = rng.integers(0, n, size=(int(n_boot), n))
    alpha = np.empty((E, checkpoints.size))
    lo = np.empty_like(alpha)
    hi = np.empty_like(alpha)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    for j, c in enumerate(checkpoints):
        v = np.asarray(params[:, c], dtype=np.float64)[:, idx]  # (E, n)
        alpha[:, j] = hill_estimator(v, k)
        boots = hill_estimator(v[:, resample], k)  # (E, n_boot)
        lo[:, j], hi[:, j] = np.nanquantile(boots, q, axis=-1)
    return {"checkpoints": checkpoints, "alpha": alpha, "lo": lo, "hi": hi, "k": k}
