"""A library of observables measured on a network at initialization and after training.

Each observable is a number per (instance, layer): per weight matrix (``W1``,
``W2``, ...), per pair of consecutive matrices (``W1-W2``), or for the whole
network (``all``). :func:`measure` returns tidy rows ``(instance, layer,
observable, init, final)``; the regularities atlas (:mod:`mlpsim.atlas`) tests
whether trained differs from untrained in the same direction across
conditions.

=====================  =======  ===========================================================
observable             on       definition (weights only; a matrix's present entries)
=====================  =======  ===========================================================
variance               W_l      var(W), ddof = 1
excess_kurtosis        W_l      m4 / m2^2 - 3 (matrices of >= 16 weights)
hill_index             W_l      Hill tail index of |W|, k = floor(sqrt(n)) (>= 16 weights)
effective_rank         W_l      exp(entropy of s / sum(s)) (Roy & Vetterli 2007), min(out, in) >= 2
stable_rank            W_l      ||W||_F^2 / ||W||_2^2, min(out, in) >= 2
spectral_norm          W_l      largest singular value
relative_distance      W_l      ||W - W_init||_F / ||W_init||_F (0 at initialization)
dead_fraction          W_l      share of the units W_l feeds (hidden, relu) that output 0 on every
                                training input (on up to 1000 of them)
alignment              W_l-W_l+1  |u_1(W_l) . v_1(W_l+1)|: the top output direction of one matrix
                                against the top input direction of the next
worst_edit_ratio       all      training MSE after the worst single-weight edit within 0.1 x the
                                matrix's weight std, over the MSE before (every weight at both
                                ends of its budget, the 32 worst searched finely; up to 1000 points)
hessian_top            all      the largest eigenvalue of the exact loss Hessian (networks of at
                                most 300 parameters, on 256 of the training points)
=====================  =======  ===========================================================

``OBSERVABLES`` says how a change is measured: ``log`` (log of final / init,
for positive scale-like quantities), ``diff`` (final - init), or ``final``
(the final value, for quantities that are 0 at initialization by definition),
and the smallest change that counts as one (e.g. 0.05 on a log scale: 5 %).
"""
from __future__ import annotations

import numpy as np

from ..model import MLP
from .distribution import excess_kurtosis, hill_estimator
from .selection import weight_layers
from .spectra import rank_measures

#: observable -> (where it is measured, how a change is measured, the smallest change that counts)
OBSERVABLES = {
    "variance": ("layer", "log", 0.05),
    "excess_kurtosis": ("layer", "diff", 0.25),
    "hill_index": ("layer", "log", 0.05),
    "effective_rank": ("layer", "log", 0.02),
    "stable_rank": ("layer", "log", 0.05),
    "spectral_norm": ("layer", "log", 0.05),
    "relative_distance": ("layer", "final", 0.01),
    "dead_fraction": ("layer", "diff", 0.02),
    "alignment": ("pair", "diff", 0.02),
    "worst_edit_ratio": ("network", "log", 0.05),
    "hessian_top": ("network", "log", 0.05),
}
MIN_SHAPE_WEIGHTS = 16
MAX_HESSIAN_PARAMS = 300


def measure(net: MLP, params, x=None, y=None, seed: int = 0, edits: bool = True, hessian: bool = True,
            observables=None) -> list:
    """Every observable of every instance, at initialization and at the end.

    Parameters
    ----------
    net : MLP
    params : (E, 2, P) initial and final parameters
    x, y : training data (needed for dead_fraction, worst_edit_ratio, hessian_top)
    seed : seeds the subsets of weights and data points (results are deterministic)
    edits, hessian : measure the two network-level observables (the costly ones)
    observables : names to measure (default: all that apply)

    Returns
    -------
    list of tuples ``(instance, layer, observable, init, final)``.
    """
    params = np.asarray(params, dtype=np.float64)
    E = params.shape[0]
    want = set(OBSERVABLES if observables is None else observables)
    unknown = want - set(OBSERVABLES)
    if unknown:
        from ..errors import unknown_name_message
        raise ValueError(unknown_name_message("observable", sorted(unknown)[0], OBSERVABLES))
    rows = []
    layers = weight_layers(net)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    pick = None
    if x is not None and x.shape[0] > 1000:
        pick = np.sort(rng.choice(x.shape[0], 1000, replace=False))
    xs = x if pick is None else x[pick]
    ys = y if (pick is None or y is None) else y[pick]
    tops = {}  # (instance, c, layer index) -> (u1, v1)
    for j, (name, entry, idx) in enumerate(layers):
        W = params[:, :, entry.slice].reshape(E, 2, *entry.shape)
        vals = params[:, :, idx]  # (E, 2, n)
        n = idx.size
        if "variance" in want and n >= 2:
            v = vals.var(axis=-1, ddof=1)
            rows += _rows(name, "variance", v)
        if "excess_kurtosis" in want and n >= MIN_SHAPE_WEIGHTS:
            rows += _rows(name, "excess_kurtosis", excess_kurtosis(vals))
        if "hill_index" in want and n >= MIN_SHAPE_WEIGHTS:
            rows += _rows(name, "hill_index", hill_estimator(vals))
        U, s, Vt = np.linalg.svd(W)  # (E, 2, out, out), (E, 2, k), (E, 2, in, in)
        for e in range(E):
            for c in range(2):
                tops[(e, c, j)] = (U[e, c, :, 0], Vt[e, c, 0, :])
        if min(entry.shape) >= 2:
            r = rank_measures(s, entry.shape)
            if "effective_rank" in want:
                rows += _rows(name, "effective_rank", r["effective_rank"])
            if "stable_rank" in want:
                rows += _rows(name, "stable_rank", r["stable_rank"])
        if "spectral_norm" in want:
            rows += _rows(name, "spectral_norm", s[..., 0])
        if "relative_distance" in want:
            d0 = np.linalg.norm(vals[:, 0], axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.linalg.norm(vals[:, 1] - vals[:, 0], axis=-1) / d0
            rows += _rows(name, "relative_distance", np.stack([np.zeros(E), rel], axis=1))
    if "alignment" in want:
        for j in range(len(layers) - 1):
            label = f"{layers[j][0]}-{layers[j + 1][0]}"
            a = np.array([[abs(float(tops[(e, c, j)][0] @ tops[(e, c, j + 1)][1])) for c in range(2)]
                          for e in range(E)])
            rows += _rows(label, "alignment", a)
    if "dead_fraction" in want and xs is not None and net.activation == "relu" and net.n_layers > 1:
        from .representations import hidden_activations
        dead = np.empty((E, 2, net.n_layers - 1))
        for e in range(E):
            for c in range(2):
                for l, A in enumerate(hidden_activations(net, params[e, c], xs)):
                    dead[e, c, l] = float(np.mean(np.all(A <= 0.0, axis=0)))
        for l in range(net.n_layers - 1):
            rows += _rows(layers[l][0], "dead_fraction", dead[:, :, l])
    if "worst_edit_ratio" in want and edits and xs is not None:
        rows += _rows("all", "worst_edit_ratio", _worst_edit_ratio(net, params, xs, ys, rng))
    if "hessian_top" in want and hessian and xs is not None and net.n_params <= MAX_HESSIAN_PARAMS:
        from ..perturb import hessian as exact_hessian
        hx, hy = xs[:256], ys[:256]
        top = np.array([[float(np.linalg.eigvalsh(exact_hessian(net, params[e, c], hx, hy))[-1])
                         for c in range(2)] for e in range(E)])
        rows += _rows("all", "hessian_top", top)
    return rows


def _rows(layer: str, observable: str, values) -> list:
    """Tidy rows from (E, 2) init/final values."""
    values = np.asarray(values, dtype=np.float64)
    return [(e, layer, observable, float(values[e, 0]), float(values[e, 1])) for e in range(values.shape[0])]


def _worst_edit_ratio(net: MLP, params, x, y, rng) -> np.ndarray:
    from ..claims import worst_single_edits
    from ..perturb import Budget, Evaluator
    free = net.indices(kind="weight")
    free = free[net.free[free] == 1]
    grid = x[:: max(1, x.shape[0] // 200)]
    out = np.empty((params.shape[0], 2))
    for e in range(params.shape[0]):
        for c in range(2):
            ev = Evaluator(net, params[e, c], x, y, grid=grid)
            base = ev.base_mse if ev.base_mse > 0 else np.finfo(float).tiny
            out[e, c] = worst_single_edits(ev, net, params[e, c], free, Budget("layer_std", 0.1), refine=32) / base
    return out
