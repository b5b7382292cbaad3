"""Correlations between weights, made meaningful by aligning hidden units first.

Hidden units can be permuted without changing the function, so weight ``i`` of
one network and weight ``i`` of another are comparable only after the units are
matched. :func:`align` matches each instance to a reference instance layer by
layer with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
and permutes incoming rows, biases and outgoing columns consistently.

Network distance between two weights: each weight is an edge between a unit of
layer ``l`` and a unit of layer ``l + 1``; the distance of two edges is their
distance in the line graph (1 when they share a unit, 2 when one unit lies
between them, ...). For a dense layered network that is
``1 + min`` over the four endpoint pairs of the unit distance, where units in
layers ``a != b`` are ``|a - b|`` apart and distinct units of one layer 2 apart.
"""
from __future__ import annotations

import numpy as np

from ..model import MLP
from .fits import fit_decay  # noqa: F401  (re-exported: correlations are what it fits)


def permute_hidden(theta, net: MLP, perms) -> np.ndarray:
    """Reorder hidden units: ``perms[l]`` lists, for hidden layer ``l + 1``, the old unit of each new unit.

    Rows of ``W_l`` and ``b_l`` and columns of ``W_{l+1}`` move together, so
    the network computes the same function. Masked networks are refused: their
    wiring is not symmetric under permutations of hidden units.
    """
    if any(m is not None for m in net.masks):
        raise ValueError("hidden units of a masked network cannot be permuted: the masks fix their positions")
    if len(perms) != net.n_layers - 1:
        raise ValueError(f"need one permutation per hidden layer ({net.n_layers - 1}), got {len(perms)}")
    out = np.array(theta, dtype=np.float64, order="C")
    for l, perm in enumerate(perms):
        perm = np.asarray(perm)
        if not np.array_equal(np.sort(perm), np.arange(net.widths[l + 1])):
            raise ValueError(f"perms[{l}] is not a permutation of 0..{net.widths[l + 1] - 1}")
        W, b, W_next = net.view(out, f"W{l + 1}"), net.view(out, f"b{l + 1}"), net.view(out, f"W{l + 2}")
        W[...] = W[..., perm, :]
        b[...] = b[..., perm]
        W_next[...] = W_next[..., :, perm]
    return out


def _match(cost) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(cost.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def align(thetas, net: MLP, reference: int = 0, method: str = "weights", x=None):
    """Align every instance's hidden units to those of instance ``reference``.

    Parameters
    ----------
    thetas : (E, P)
    method : {"weights", "activations"}
        Match units by their incoming weights and bias (after the previous
        layer is aligned), or by the correlation of their activations over
        inputs ``x``.

    Returns
    -------
    aligned : (E, P), and perms: for each instance, the list of per-layer permutations.
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    if any(m is not None for m in net.masks):
        raise ValueError("alignment needs a dense network: a masked network's units are not interchangeable")
    if method not in ("weights", "activations"):
        raise ValueError(f"method must be 'weights' or 'activations', got {method!r}")
    if method == "activations" and x is None:
        raise ValueError("method='activations' needs inputs x")
    from .representations import hidden_activations
    ref = thetas[reference]
    ref_acts = hidden_activations(net, ref, x) if method == "activations" else None
    aligned, all_perms = np.empty_like(thetas), []
    for e, theta in enumerate(thetas):
        perms, current = [], theta.copy()
        for l in range(net.n_layers - 1):
            if method == "weights":
                a = np.hstack([net.view(ref, f"W{l + 1}"), net.view(ref, f"b{l + 1}")[:, None]])
                b = np.hstack([net.view(current, f"W{l + 1}"), net.view(current, f"b{l + 1}")[:, None]])
                cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
            else:
                A = _standardize(ref_acts[l])
                B = _standardize(hidden_activations(net, current, x)[l])
                cost = -(A.T @ B) / A.shape[0]
            perm = _match(cost)
            full = [np.arange(w) for w in net.widths[1:-1]]
            full[l] = perm
            current = permute_hidden(current, net, full)
            perms.append(perm)
        aligned[e] = current
        all_perms.append(perms)
    return aligned, all_perms


def _standardize(A):
    A = A - A.mean(axis=0)
    s = A.std(axis=0)
    return A / np.where(s > 0, s, 1.0)


def edge_table(net: MLP):
    """For every weight: (flat index, layer, out unit, in unit), as four int arrays."""
    idx, layer, out, inp = [], [], [], []
    for l in range(net.n_layers):
        e = net.layout[2 * l]
        n_out, n_in = e.shape
        o, i = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
        idx.append(e.offset + np.arange(e.size))
        layer.append(np.full(e.size, l))
        out.append(o.ravel())
        inp.append(i.ravel())
    return tuple(np.concatenate(a) for a in (idx, layer, out, inp))


def edge_distances(net: MLP) -> np.ndarray:
    """Line-graph distance between every pair of weights, (n_weights, n_weights) int."""
    _, layer, out, inp = edge_table(net)
    # endpoints: unit `inp` of layer `layer`, unit `out` of layer `layer + 1`
    ends = [(layer, inp), (layer + 1, out)]
    best = None
    for la, ua in ends:
        for lb, ub in ends:
            dl = np.abs(la[:, None] - lb[None, :])
            same_unit = (dl == 0) & (ua[:, None] == ub[None, :])
            d = np.where(dl > 0, dl, np.where(same_unit, 0, 2))
            best = d if best is None else np.minimum(best, d)
    dist = best + 1
    np.fill_diagonal(dist, 0)
    return dist


#: Names of the pair categories of :func:`pair_categories`; codes 5 + k mean "k layers apart".
PAIR_CATEGORIES = ("same weight", "same output unit", "same input unit", "in series", "same layer, no shared unit")


def pair_categories(net: MLP) -> np.ndarray:
    """A category code for every pair of weights, (n_weights, n_weights) int.

    0 the same weight; 1 same layer and output unit; 2 same layer and input
    unit; 3 in series (one ends at the unit where the other starts); 4 same
    layer, no shared unit; 4 + k: k >= 1 layers apart and not in series.
    """
    _, layer, out, inp = edge_table(net)
    la, lb = layer[:, None], layer[None, :]
    same_layer = la == lb
    series = ((lb == la + 1) & (inp[None, :] == out[:, None])) | ((la == lb + 1) & (inp[:, None] == out[None, :]))
    code = np.where(same_layer, 4, 4 + np.abs(la - lb))
    code = np.where(series, 3, code)
    code = np.where(same_layer & (inp[:, None] == inp[None, :]), 2, code)
    code = np.where(same_layer & (out[:, None] == out[None, :]), 1, code)
    np.fill_diagonal(code, 0)
    return code


def category_names(codes) -> list:
    return [PAIR_CATEGORIES[c] if c < len(PAIR_CATEGORIES) else f"{c - 4} layer(s) apart" for c in codes]


def _correlations(samples):
    """Pearson correlations of the columns of ``samples`` (N, V) that vary: (R, kept columns, N)."""
    X = np.asarray(samples, dtype=np.float64)
    N = X.shape[0]
    if N < 3:
        raise ValueError(f"correlations need at least 3 observations, got {N}")
    Xs = X - X.mean(axis=0)
    sd = Xs.std(axis=0)
    keep = sd > 0
    Xs = Xs[:, keep] / sd[keep]
    return (Xs.T @ Xs) / N, keep, N


def mean_r2_by_category(samples, categories) -> dict:
    """Mean squared correlation minus its null 1/(N-1) for each pair category present."""
    R, keep, N = _correlations(samples)
    C = np.asarray(categories)[np.ix_(keep, keep)]
    iu = np.triu_indices_from(C, k=1)
    r2, c = R[iu] ** 2, C[iu]
    codes = np.unique(c)
    return {"code": codes, "name": category_names(codes),
            "excess_r2": np.array([r2[c == k].mean() - 1.0 / (N - 1) for k in codes]),
            "n_pairs": np.array([np.sum(c == k) for k in codes])}


def correlation_by_distance(samples, dist, max_distance=None) -> dict:
    """Mean squared correlation of pairs of variables at each distance.

    ``samples`` (N, V): N observations (instances, or time steps) of V
    variables; ``dist`` (V, V). Returns ``distance``, ``mean_r2``, ``null_r2``
    (1 / (N - 1), the expectation for independent Gaussian variables),
    ``excess_r2`` = mean_r2 - null_r2, and ``n_pairs``.
    """
    R, keep, N = _correlations(samples)
    D = np.asarray(dist)[np.ix_(keep, keep)]
    iu = np.triu_indices_from(D, k=1)
    r2, d = R[iu] ** 2, D[iu]
    top = int(d.max()) if max_distance is None else int(max_distance)
    ds = np.arange(1, top + 1)
    mean_r2 = np.array([r2[d == k].mean() if np.any(d == k) else np.nan for k in ds])
    null = 1.0 / (N - 1)
    n_pairs = np.array([np.sum(d == k) for k in ds])
    # Under independence r^2 has standard deviation about sqrt(2) / (N - 1); pairs are not
    # independent of each other, so this standard error of the mean is a lower bound.
    se = np.sqrt(2.0) / (N - 1) / np.sqrt(np.maximum(n_pairs, 1))
    return {"distance": ds, "mean_r2": mean_r2, "null_r2": null, "excess_r2": mean_r2 - null,
            "null_se": se, "above_noise": (mean_r2 - null) > 3 * se, "n_pairs": n_pairs}


def input_pair_correlation(net: MLP, theta, xa, xb) -> np.ndarray:
    """The correlation map of Schoenholz et al. (2017, "Deep information propagation").

    Per hidden layer ``l``: c_l = q_ab / sqrt(q_aa q_bb), where q_ab is the mean
    over units of h_l(x_a) * h_l(x_b) (the activations the next layer sees),
    averaged over the input pairs (rows of ``xa``, ``xb``). Returns (L - 1,).
    """
    from .representations import hidden_activations
    ha = hidden_activations(net, theta, xa)
    hb = hidden_activations(net, theta, xb)
    out = np.empty(len(ha))
    for l, (a, b) in enumerate(zip(ha, hb)):
        qab = (a * b).mean(axis=1)
        qaa = (a * a).mean(axis=1)
        qbb = (b * b).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = qab / np.sqrt(qaa * qbb)
        # a pair whose units are all dead (q = 0) has no correlation: skip it
        out[l] = np.nanmean(c) if np.any(np.isfinite(c)) else np.nan
    return out
