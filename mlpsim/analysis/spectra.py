"""Singular values, rank measures and spectral tail statistics of weight matrices.

Rank measures of a matrix W with singular values s_1 >= s_2 >= ... >= 0:

=====================  ================================================  ==========================
name                   definition                                        source
=====================  ================================================  ==========================
numerical_rank         #{s_i > s_1 * max(m, n) * eps}                    NumPy ``matrix_rank``
galanti_rank           #{s_i / ||W||_F > 1e-3}                           Galanti et al. 2023, "SGD
                                                                         and weight decay secretly
                                                                         minimize the rank"
effective_rank         exp(H(p)), p_i = s_i / sum(s), H the entropy      Roy & Vetterli 2007
stable_rank            ||W||_F^2 / ||W||_2^2 = sum(s^2) / s_1^2          Rudelson & Vershynin 2007
participation_ratio    (sum s^2)^2 / sum(s^4), eigenvalues of W^T W      Gao et al. 2017 (PR of a
                                                                         spectrum)
=====================  ================================================  ==========================

Spectral tail statistics in the manner of WeightWatcher (Martin & Mahoney 2021):
the power-law exponent alpha of the eigenvalues lambda = s**2 of W^T W, fitted
by the Clauset-Shalizi-Newman method (xmin minimizing the Kolmogorov-Smirnov
distance, alpha by maximum likelihood, standard error (alpha - 1) / sqrt(n_tail)),
log10 of the spectral norm lambda_max, log10 of the Frobenius norm sum(lambda),
and alpha * log10(lambda_max).
"""
from __future__ import annotations

import numpy as np

from ..model import MLP

RANK_MEASURES = ("numerical_rank", "galanti_rank", "effective_rank", "stable_rank", "participation_ratio")

#: Fewest eigenvalues for which :func:`powerlaw_fit` fits at all (WeightWatcher needs about 50).
MIN_EIGENVALUES = 50


def singular_values(params, net: MLP, layer: int, block=None, workers=None) -> np.ndarray:
    """Singular values of weight matrix ``layer`` (from 1: W1 is layer 1) at every checkpoint.

    Returns (E, C, min(out, in)), descending. Blocks of ``block`` checkpoints
    are read one at a time (memmaps stream) and decomposed on ``workers`` threads
    (default: all cores), each with single-threaded BLAS: for small matrices
    OpenBLAS's own threading is far slower (measured 27 ms vs. 0.6 ms per
    128 x 128 SVD on this 2-core machine).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits
    net.check_trajectory(params)
    if not (isinstance(layer, (int, np.integer)) and 1 <= layer <= net.n_layers):
        raise ValueError(f"layer must be an integer in 1..{net.n_layers} (layer k is Wk), got {layer!r}")
    E, C, _ = np.shape(params)
    entry = net.layout[2 * (layer - 1)]
    out = np.empty((E, C, min(entry.shape)))

    def work(c0):
        c1 = min(C, c0 + block)
        W = np.asarray(params[:, c0:c1, entry.slice], dtype=np.float64).reshape((E, c1 - c0) + entry.shape)
        if not np.all(np.isfinite(W)):  # (numpy's "SVD did not converge" names nothing)
            raise ValueError(f"W{layer} holds NaN or Inf between checkpoints {c0} and {c1 - 1}: leave out the "
                             "diverged instances (Run.healthy_instances)")
        out[:, c0:c1] = np.linalg.svd(W, compute_uv=False)

    workers = workers or os.cpu_count() or 1
    if block is None:  # enough blocks to keep every worker busy, few enough to amortize reads
        block = max(1, min(256, -(-C // (4 * workers))))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(0, C, block)))
    return out


def rank_measures(s, shape) -> dict:
    """Every rank measure of :data:`RANK_MEASURES` from singular values ``s`` (..., k).

    ``shape`` is the matrix shape (for the numerical-rank tolerance).
    """
    s = np.asarray(s, dtype=np.float64)
    smax = s[..., :1]
    tol = smax * max(shape) * np.finfo(np.float64).eps
    fro = np.sqrt((s ** 2).sum(axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / s.sum(axis=-1, keepdims=True)
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
        lam = s ** 2
        return {
            "numerical_rank": (s > tol).sum(axis=-1).astype(float),
            "galanti_rank": (s / fro > 1e-3).sum(axis=-1).astype(float),
            "effective_rank": np.exp(entropy),
            "stable_rank": lam.sum(axis=-1) / lam[..., 0],
            "participation_ratio": lam.sum(axis=-1) ** 2 / (lam ** 2).sum(axis=-1),
        }


def powerlaw_fit(eigenvalues, min_tail: int = 10) -> dict:
    """Clauset-Shalizi-Newman power-law fit of the eigenvalue distribution.

    For each candidate ``xmin`` (every eigenvalue leaving at least ``min_tail``
    above it), alpha = 1 + n / sum(log(x / xmin)) over the tail, and the KS
    distance between the tail's empirical CDF and the fitted Pareto CDF; the
    xmin with the smallest distance wins.

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_EIGENVALUES` positive eigenvalues: such a fit
        means nothing (the seed's 8 x 8 layers have 8).
    """
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    x = x[x > 0]
    if x.size < MIN_EIGENVALUES:
        raise ValueError(f"a power-law fit needs at least {MIN_EIGENVALUES} positive eigenvalues, "
                         f"got {x.size}; use a wider layer")
    best = None
    for i in range(0, x.size - min_tail + 1):
        tail = x[i:]
        xmin = tail[0]
        n = tail.size
        logs = np.log(tail / xmin).sum()
        if logs <= 0:
            continue
        alpha = 1.0 + n / logs
        model = 1.0 - (tail / xmin) ** (1.0 - alpha)
        # the empirical CDF jumps from i/n to (i+1)/n at the i-th point: check both sides
        ks = max(np.max(np.abs(np.arange(n) / n - model)), np.max(np.abs(np.arange(1, n + 1) / n - model)))
        if best is None or ks < best["ks"]:
            best = {"alpha": alpha, "xmin": xmin, "ks": ks, "n_tail": n,
                    "alpha_se": (alpha - 1.0) / np.sqrt(n)}
    if best is None:
        raise ValueError("no power-law tail could be fitted (all eigenvalues equal)")
    return best


#: Significance level of the likelihood-ratio comparisons in :func:`compare_tail_models`
#: (Clauset, Shalizi & Newman 2009 use 0.1).
TAIL_MODEL_LEVEL = 0.1
#: Fewest tail points for which the tail models are compared at all: below, the normal
#: approximation of Vuong's statistic is poor and the answer is "undecided".
MIN_TAIL_COMPARE = 50


def _tail_logliks(tail, xmin, alpha) -> dict:
    """Pointwise log-likelihoods of the tail ``x >= xmin`` under the three fitted models."""
    from scipy import optimize, special
    logx = np.log(tail)
    ll = {"power_law": np.log(alpha - 1.0) - np.log(xmin) - alpha * (logx - np.log(xmin))}
    lam = 1.0 / max(float(np.mean(tail - xmin)), 1e-300)
    ll["exponential"] = np.log(lam) - lam * (tail - xmin)

    def lognormal(p):  # log-normal truncated to x >= xmin
        mu, log_sigma = p
        sigma = np.exp(log_sigma)
        norm = special.log_ndtr(-(np.log(xmin) - mu) / sigma)  # log P(X >= xmin)
        return -logx - np.log(sigma) - 0.5 * np.log(2 * np.pi) - (logx - mu) ** 2 / (2 * sigma ** 2) - norm

    start = [float(logx.mean()), float(np.log(max(logx.std(), 1e-3)))]
    res = optimize.minimize(lambda p: -np.sum(lognormal(p)), start, method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    ll["lognormal"] = lognormal(res.x) if res.success else None
    return ll


def compare_tail_models(eigenvalues, fit=None) -> dict:
    """Is the eigenvalue tail a power law, or do an exponential or a log-normal fit as well?

    Clauset, Shalizi & Newman (2009), section 5: on the tail above the power
    law's ``xmin``, the normalized log-likelihood ratio of the power law
    against each alternative (exponential and log-normal, both truncated at
    ``xmin`` and fitted by maximum likelihood), with Vuong's two-sided p-value.

    Returns the power-law ``fit`` (see :func:`powerlaw_fit`), ``vs_exponential``
    and ``vs_lognormal`` (``R`` > 0 favours the power law, ``p``; with fewer than
    :data:`MIN_TAIL_COMPARE` tail points nothing is compared: "undecided"), and
    ``preferred``: ``"power_law"`` when it beats the exponential at level
    :data:`TAIL_MODEL_LEVEL` and the log-normal does not beat it at that level
    (a log-normal with a large variance mimics a power law over any finite
    range, so on a few hundred points the two are rarely told apart: CSN's
    "moderate" support; ``lognormal_excluded`` says whether it was ruled out);
    the alternative when one beats the power law at that level; else
    ``"undecided"``. A Gaussian (Marchenko-Pastur) bulk is typically not a
    power law: its fitted alpha must not be read as a tail exponent unless
    ``preferred == "power_law"``.
    """
    from ..stats import vuong_test
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    x = x[x > 0]
    fit = powerlaw_fit(x) if fit is None else fit
    tail = x[x >= fit["xmin"]]
    out = {"fit": fit, "n_tail": int(tail.size)}
    if tail.size < MIN_TAIL_COMPARE:  # Vuong's normal approximation needs a real sample
        undecided = {"R": 0.0, "p": 1.0, "z": 0.0}
        out.update(vs_exponential=undecided, vs_lognormal=undecided, lognormal_excluded=False,
                   preferred="undecided")
        return out
    ll = _tail_logliks(tail, fit["xmin"], fit["alpha"])
    for alt in ("exponential", "lognormal"):
        out[f"vs_{alt}"] = (vuong_test(ll["power_law"], ll[alt]) if ll[alt] is not None
                            else {"R": 0.0, "p": 1.0, "z": 0.0})  # the log-normal fit did not converge
    def beats(a):
        return out[f"vs_{a}"]["R"] > 0 and out[f"vs_{a}"]["p"] < TAIL_MODEL_LEVEL

    losses = {a: out[f"vs_{a}"]["R"] for a in ("exponential", "lognormal")
              if out[f"vs_{a}"]["R"] < 0 and out[f"vs_{a}"]["p"] < TAIL_MODEL_LEVEL}
    out["lognormal_excluded"] = beats("lognormal")
    if beats("exponential") and not losses:
        out["preferred"] = "power_law"
    elif losses:
        out["preferred"] = min(losses, key=losses.get)  # the alternative that beats it most clearly
    else:
        out["preferred"] = "undecided"
    return out


def spectral_stats(W) -> dict:
    """WeightWatcher-style statistics of one weight matrix (needs a wide layer).

    Besides the power-law fit, ``preferred`` says whether a power law describes
    the tail better than an exponential and a log-normal
    (:func:`compare_tail_models`); ``alpha`` is a tail exponent only then.
    """
    s = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)
    lam = s ** 2
    fit = powerlaw_fit(lam)
    cmp = compare_tail_models(lam, fit)
    lam_max = lam.max()
    return {**fit, "preferred": cmp["preferred"], "lognormal_excluded": cmp["lognormal_excluded"],
            "lr_vs_exponential": cmp["vs_exponential"],
            "lr_vs_lognormal": cmp["vs_lognormal"], "log_spectral_norm": float(np.log10(lam_max)),
            "log_frobenius_norm": float(np.log10(lam.sum())),
            "alpha_weighted": float(fit["alpha"] * np.log10(lam_max))}


def _redraw_weights(theta, net: MLP, seed: int, draw) -> np.ndarray:
    """A copy of ``theta`` (..., P) with every weight matrix's present entries replaced by
    ``draw(rng, values)``, row by row, from one seeded generator; masked weights stay 0."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    out = np.array(theta, dtype=np.float64, order="C")  # C order: the reshape below must be a view
    for row in out.reshape(-1, net.n_params):
        for e in net.layout:
            if e.kind == "weight":
                present = np.flatnonzero(net.free[e.slice]) + e.offset
                row[present] = draw(rng, row[present])
    return out


def shuffle_within_layers(theta, net: MLP, seed: int) -> np.ndarray:
    """Control: each weight matrix's entries permuted at random (biases kept).

    Keeps each layer's value distribution and destroys its structure.
    ``theta`` is (..., P); every row gets its own permutation from one seeded
    generator.
    """
    return _redraw_weights(theta, net, seed, lambda rng, w: rng.permutation(w))


def matched_random(theta, net: MLP, seed: int) -> np.ndarray:
    """Control: fresh Gaussian weights with each layer's variance (and mean) matched to ``theta``."""
    return _redraw_weights(theta, net, seed, lambda rng, w: rng.normal(w.mean(), w.std(), size=w.size))
