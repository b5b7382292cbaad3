"""Fitted laws: exponential vs power-law decay, and power-law scaling exponents."""
from __future__ import annotations

import numpy as np


def fit_decay(distance, values, n_boot: int = 200, seed: int = 0) -> dict:
    """Fit ``A exp(-d / xi)`` and ``A d**-beta`` to positive values by least squares in log space.

    Returns both fits with their residual sums of squares, the better one
    (``best``) and by how much (``rss_ratio`` = worse / better), and a bootstrap
    95 % interval of ``xi`` from resampling the (distance, value) points.
    """
    d = np.asarray(distance, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    d, v = d[ok], v[ok]
    if d.size < 3:
        raise ValueError(f"a decay fit needs at least 3 positive points, got {d.size}")
    y = np.log(v)

    def exp_fit(dd, yy):
        slope, icpt = np.polyfit(dd, yy, 1)
        return -1.0 / slope if slope < 0 else np.inf, icpt, slope

    def pow_fit(dd, yy):
        slope, icpt = np.polyfit(np.log(dd), yy, 1)
        return -slope, icpt

    xi, a_exp, slope = exp_fit(d, y)
    beta, a_pow = pow_fit(d, y)
    rss_exp = float(np.sum((y - (a_exp + slope * d)) ** 2))
    rss_pow = float(np.sum((y - (a_pow - beta * np.log(d))) ** 2))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    boots = []
    for _ in range(int(n_boot)):
        pick = rng.integers(0, d.size, d.size)
        if np.unique(d[pick]).size >= 2:
            boots.append(exp_fit(d[pick], y[pick])[0])
    boots = np.array(boots)
    finite = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(finite, [0.025, 0.975]) if finite.size else (np.nan, np.nan))
    best = "exponential" if rss_exp <= rss_pow else "power_law"
    ratio = max(rss_exp, rss_pow) / max(min(rss_exp, rss_pow), 1e-300)
    return {"exponential": {"xi": xi, "amplitude": float(np.exp(a_exp)), "rss": rss_exp,
                            "xi_ci": [float(lo), float(hi)]},
            "power_law": {"beta": beta, "amplitude": float(np.exp(a_pow)), "rss": rss_pow},
            "best": best, "rss_ratio": float(ratio), "n_points": int(d.size)}


def fit_power(x, y, n_boot: int = 500, seed: int = 0) -> dict:
    """Least-squares slope of log y against log x (y ~ x**slope), with a 95 % interval
    from resampling the points (seeded). Points with y <= 0 are left out."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if np.unique(lx).size < 2:
        return {"slope": None, "ci": [None, None], "n": int(ok.sum())}
    slope = float(np.polyfit(lx, ly, 1)[0])
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, lx.size, lx.size)
        if np.unique(lx[pick]).size >= 2:
            boots.append(np.polyfit(lx[pick], ly[pick], 1)[0])
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"slope": slope, "ci": [float(lo), float(hi)], "n": int(ok.sum())}
