"""The perturbation lab: edit a few weights, measure exactly what changes.

Edits never modify their input; they return new parameter arrays.

Effects of an edit (all relative to the unedited network; see :class:`Effects`):

* ``train_mse`` on the training data, and ``mse_ratio`` = train_mse / unedited;
* on a dense grid of inputs (default 2001 points on [-3.5, 3.5]):
  ``grid_mse_change`` = mean (f_edited - f)^2, ``max_change`` = max |f_edited - f|,
  ``flip_fraction`` = share of grid outputs whose side of 0.5 changes (for 0/1
  targets: the thresholded prediction flips).

"The result is affected" (:class:`AffectedRule`, configurable): the
thresholded output flips on more than 1 % of the grid, or the training MSE at
least doubles.

Searches: random k-weight edits, the exhaustive single-weight search (the
table of critical weights), greedy adversarial k-weight edits, first-order
(gradient) and second-order (exact Hessian) predictions, layer
re-initialization, and edit-then-keep-training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import kernels, kernels_eval
from .errors import is_int, unknown_name_message
from .model import MLP, numpy_activation

OPERATIONS = ("set", "add", "multiply", "zero", "flip_sign", "redraw")
BUDGETS = ("absolute", "relative", "layer_std", "unbounded")


# --------------------------------------------------------------------- edits
def _check_indices(net: MLP, indices) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(indices))
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D array of integers, got {indices!r}")
    if idx.size and (idx.min() < 0 or idx.max() >= net.n_params):
        bad = idx[(idx < 0) | (idx >= net.n_params)][0]
        raise ValueError(f"parameter index {int(bad)} is out of range [0, {net.n_params - 1}] for {net!r}")
    if np.any(net.free[idx] == 0):
        raise ValueError("cannot edit a masked (structurally absent) weight")
    return idx.astype(np.int64)


def edit(net: MLP, theta, indices, op: str, value=None, seed=None, scheme: str = "kaiming_normal"):
    """A copy of ``theta`` ((P,), (E, P) or (E, C, P)) with parameters ``indices`` edited.

    ``op``: ``set`` (to ``value``), ``add`` (``value``), ``multiply`` (by
    ``value``), ``zero``, ``flip_sign``, or ``redraw`` (a fresh draw from the
    initialization distribution of the parameter's layer, from
    ``np.random.default_rng(seed)``; biases redraw to 0 under zero bias init).
    """
    from .init import draw_weights, weight_std
    if op not in OPERATIONS:
        raise ValueError(unknown_name_message("edit operation", op, OPERATIONS))
    if op in ("set", "add", "multiply") and value is None:
        raise ValueError(f"edit operation {op!r} needs a value")
    if value is not None:
        try:
            finite = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
        except (TypeError, ValueError):
            raise ValueError(f"edit value must be a number or an array of numbers, got {value!r}") from None
        if not finite:
            raise ValueError(f"edit value must be finite, got {value!r}")
    if op == "redraw" and seed is None:
        raise ValueError("edit operation 'redraw' needs a seed")
    idx = _check_indices(net, indices)
    out = np.array(theta, dtype=np.float64)
    net._check_param_axis(out)
    sel = out[..., idx]
    if value is not None and np.ndim(value) and np.shape(value)[-1] not in (1, idx.size):
        raise ValueError(f"edit value must be one number or one per edited parameter ({idx.size}), "
                         f"got shape {np.shape(value)}")
    if op == "set":
        new = np.broadcast_to(np.asarray(value, dtype=np.float64), sel.shape)
    elif op == "add":
        new = sel + value
    elif op == "multiply":
        new = sel * value
    elif op == "zero":
        new = np.zeros_like(sel)
    elif op == "flip_sign":
        new = -sel
    else:
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        new = np.empty_like(sel)
        for j, p in enumerate(idx):
            entry = next(e for e in net.layout if e.offset <= p < e.offset + e.size)
            if entry.kind == "bias":
                new[..., j] = 0.0
            else:
                std = weight_std(net, entry.layer, scheme)
                new[..., j] = draw_weights(rng, sel.shape[:-1] or (1,), scheme if scheme != "orthogonal"
                                           else "kaiming_normal", std).reshape(sel.shape[:-1])
    out[..., idx] = new
    return out


@dataclass(frozen=True)
class Budget:
    """How far an edit may move a parameter.

    ``absolute``: |delta| <= eps; ``relative``: |delta| <= eps * |w|;
    ``layer_std``: |delta| <= eps * std(weights of the parameter's layer);
    ``unbounded``: any new value in ``value_range``.
    """

    kind: str = "layer_std"
    eps: float = 1.0
    value_range: tuple = (-10.0, 10.0)

    def __post_init__(self):
        if self.kind not in BUDGETS:
            raise ValueError(unknown_name_message("budget", self.kind, BUDGETS))
        if not (np.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"budget eps must be a finite number >= 0, got {self.eps!r}")
        lo, hi = self.value_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"budget value_range must be finite with low < high, got {self.value_range!r}")

    def interval(self, net: MLP, theta) -> tuple:
        """(low, high) arrays (P,): the values each parameter may take."""
        theta = np.asarray(theta, dtype=np.float64)
        if self.kind == "unbounded":
            return np.full(theta.shape, self.value_range[0]), np.full(theta.shape, self.value_range[1])
        if self.kind == "absolute":
            delta = np.full(theta.shape, self.eps)
        elif self.kind == "relative":
            delta = self.eps * np.abs(theta)
        else:
            delta = np.empty_like(theta)
            for l in range(net.n_layers):
                W = net.view(theta, f"W{l + 1}")
                s = float(W.std()) if W.size > 1 else float(abs(W).mean())
                delta[net.indices(layer=l + 1)] = self.eps * s
        return theta - delta, theta + delta


@dataclass(frozen=True)
class AffectedRule:
    """When "the result is affected": flips on more than ``flip_fraction`` of the
    grid, or the training MSE grows by at least the factor ``mse_ratio``."""

    flip_fraction: float = 0.01
    mse_ratio: float = 2.0

    def __call__(self, effects) -> np.ndarray:
        return (effects["flip_fraction"] > self.flip_fraction) | (effects["mse_ratio"] >= self.mse_ratio)


# --------------------------------------------------------------------- effects
class Evaluator:
    """Exact effects of edits to one network, batched in a compiled kernel.

    Parameters
    ----------
    net : MLP
    theta : (P,) the unedited parameters
    x, y : training data
    grid : (G, d_in) inputs for the function-change measures; default 2001
        points on [-3.5, 3.5] (1-D input networks)
    threshold : the decision threshold for flips (0.5 for 0/1 targets)
    """

    def __init__(self, net: MLP, theta, x, y, grid=None, threshold: float = 0.5):
        self.net = net
        self.theta = net.check_params(theta, dtype=np.float64).copy()
        if self.theta.ndim != 1:
            raise ValueError(f"the evaluator takes one network (P,), got shape {self.theta.shape}")
        self.X = net.check_inputs(x)
        self.Y = net.check_targets(y, self.X.shape[1])
        if grid is None:
            if net.widths[0] != 1:
                raise ValueError("give a grid of inputs for networks with more than one input")
            grid = np.linspace(-3.5, 3.5, 2001)[:, None]
        self.G = net.check_inputs(grid)
        self.threshold = float(threshold)
        self.ref_train = net.forward(self.theta, x).T.copy()
        self.ref_grid = net.forward(self.theta, grid).T.copy()
        self.base_mse = float(np.mean((self.ref_train - self.Y) ** 2))
        threads = numba.config.NUMBA_NUM_THREADS
        self._scratch_theta = np.empty((threads, net.n_params))
        self._scratch_A = net.scratch(np.float64)
        self._scratch_pair = np.empty((threads, 2, max(net.widths[1:]), kernels.CHUNK))
        self._layer_of, self._unit_of, self._input_of = _parameter_roles(net)

    def _rows(self, theta, X):
        """Pre-activations and activations (R, n) of every layer, as the kernels stack them."""
        net = self.net
        Z = np.empty((net._rows, X.shape[1]))
        A = np.empty_like(Z)
        a = X
        for l, (W, b) in enumerate(zip(net.weights(theta), net.biases(theta))):
            z = W @ a + b[:, None]
            a = _act_derivatives(net)[0](z) if l < net.n_layers - 1 else z
            rows = slice(net._r_off[l + 1], net._r_off[l + 1] + net.widths[l + 1])
            Z[rows], A[rows] = z, a
        return Z, A

    def single_effects(self, idx, vals, base=None, grid: bool = True) -> dict:
        """Effects of single-parameter edits (K,), (K,), recomputing only from the edited layer on.

        Equal to :meth:`effects` up to rounding (the edited unit and the next
        layer are updated, not recomputed); about ten times faster on the seed network.
        ``grid=False`` skips the grid measures (they come out NaN).
        """
        base = self.theta if base is None else np.ascontiguousarray(base, dtype=np.float64)
        idx = np.ascontiguousarray(idx, dtype=np.int64).ravel()
        vals = np.ascontiguousarray(vals, dtype=np.float64).ravel()
        _check_indices(self.net, idx)
        if not np.all(np.isfinite(vals)):
            raise ValueError("edited values must be finite")
        K = idx.size
        train, on_grid = np.empty((K, 4)), np.full((K, 4), np.nan)
        layout = self.net._kernel_layout()
        passes = [(self.X, self.Y, self.ref_train, train)]
        if grid:
            passes.append((self.G, self.ref_grid, self.ref_grid, on_grid))
        for X, Y, ref, out in passes:
            Zb, Ab = self._rows(base, X)
            kernels_eval.evaluate_single_edits(base, idx, vals, self._layer_of, self._unit_of, self._input_of,
                                               *layout, X, Y, ref, Zb, Ab, self.threshold,
                                               self._scratch_pair, out)
        return self._effects_from_sums(train, on_grid)

    def _effects_from_sums(self, train, grid) -> dict:
        d_out = self.net.widths[-1]
        n, g = self.X.shape[1] * d_out, self.G.shape[1] * d_out
        mse = train[:, kernels_eval.SQ_ERR] / n
        with np.errstate(divide="ignore", invalid="ignore"):  # a perfect fit has ratio inf (or 1)
            ratio = np.where(mse == self.base_mse, 1.0, mse / self.base_mse)
        return {"train_mse": mse, "mse_ratio": ratio,
                "grid_mse_change": grid[:, kernels_eval.SQ_DIFF] / g,
                "max_change": grid[:, kernels_eval.MAX_DIFF],
                "flip_fraction": grid[:, kernels_eval.FLIPS] / g}

    def effects(self, idx, vals, base=None) -> dict:
        """Effects of candidates: ``idx``, ``vals`` (K, m): set ``theta[idx] = vals`` (-1: no edit).

        Edits apply to ``base`` (default: the unedited parameters); effects are
        always relative to the unedited network.
        """
        base = self.theta if base is None else np.ascontiguousarray(base, dtype=np.float64)
        idx = np.ascontiguousarray(np.atleast_2d(idx), dtype=np.int64)
        vals = np.ascontiguousarray(np.atleast_2d(vals), dtype=np.float64)
        if idx.shape != vals.shape:
            raise ValueError(f"idx and vals must have the same shape, got {idx.shape} and {vals.shape}")
        if idx.size and (idx.max() >= self.net.n_params or idx.min() < -1):
            raise ValueError(f"parameter indices must lie in [0, {self.net.n_params - 1}] (or -1 for none)")
        if np.any(self.net.free[idx[idx >= 0]] == 0):
            raise ValueError("cannot edit a masked (structurally absent) weight")
        if base is not self.theta:
            base = self.net.check_params(base, dtype=np.float64)
        if not np.all(np.isfinite(vals)):
            raise ValueError("edited values must be finite")
        K = idx.shape[0]
        train, grid = np.empty((K, 4)), np.empty((K, 4))
        layout = self.net._kernel_layout()
        for X, Y, ref, out in ((self.X, self.Y, self.ref_train, train),
                               (self.G, self.ref_grid, self.ref_grid, grid)):
            kernels_eval.evaluate_candidates(base, idx, vals, *layout, X, Y, ref, self.threshold,
                                             self._scratch_A, self._scratch_theta, out)
        return self._effects_from_sums(train, grid)

    # ------------------------------------------------------------------ searches
    def exhaustive_single(self, budget: Budget, n_values: int = 64, n_refine: int = 16,
                          measure: str = "train_mse", candidates=None, base=None) -> dict:
        """For every parameter, the worst single edit within ``budget``.

        ``n_values`` evenly spaced values over the allowed interval, then
        ``n_refine`` more between the worst one's neighbours; the worst of all
        is kept. Returns per parameter ``index``, ``value`` (new), ``delta``
        and every effect of that edit. The budget is always measured from the
        unedited parameters; edits apply on top of ``base`` (default: unedited).
        """
        if measure not in ("train_mse", "mse_ratio", "grid_mse_change", "max_change", "flip_fraction"):
            raise ValueError(unknown_name_message("effect measure", measure,
                                                  ("train_mse", "mse_ratio", "grid_mse_change",
                                                   "max_change", "flip_fraction")))
        idx_all = self.net.indices() if candidates is None else _check_indices(self.net, candidates)
        idx_all = idx_all[self.net.free[idx_all] == 1]
        lo, hi = budget.interval(self.net, self.theta)
        grid = np.linspace(0.0, 1.0, n_values)
        vals = lo[idx_all, None] + (hi - lo)[idx_all, None] * grid[None, :]  # (P', V)
        scan_grid = measure not in ("train_mse", "mse_ratio")
        eff = self.single_effects(np.repeat(idx_all, n_values), vals.ravel(), base, grid=scan_grid)
        score = eff[measure].reshape(idx_all.size, n_values)
        best = np.argmax(score, axis=1)
        step = (hi - lo)[idx_all] / max(n_values - 1, 1)
        centre = vals[np.arange(idx_all.size), best]
        fine = np.linspace(-1.0, 1.0, n_refine)
        rvals = np.clip(centre[:, None] + step[:, None] * fine[None, :], lo[idx_all, None], hi[idx_all, None])
        eff2 = self.single_effects(np.repeat(idx_all, n_refine), rvals.ravel(), base, grid=scan_grid)
        score2 = eff2[measure].reshape(idx_all.size, n_refine)
        best2 = np.argmax(score2, axis=1)
        use_fine = score2[np.arange(idx_all.size), best2] > score[np.arange(idx_all.size), best]
        value = np.where(use_fine, rvals[np.arange(idx_all.size), best2], centre)
        final = self.single_effects(idx_all, value, base)
        return {"index": idx_all, "value": value, "delta": value - self.theta[idx_all], **final}

    def greedy(self, budget: Budget, k: int, n_values: int = 64, measure: str = "train_mse") -> dict:
        """Greedy adversarial edits: at each step keep the worst remaining single edit."""
        if not (isinstance(k, (int, np.integer)) and 1 <= k <= int(self.net.free.sum())):
            raise ValueError(f"k must be an integer in [1, {int(self.net.free.sum())}] (the trainable "
                             f"parameters), got {k!r}")
        chosen, values, history = [], [], []
        base = self.theta.copy()
        free = self.net.indices()[self.net.free == 1]
        for _ in range(k):
            remaining = np.setdiff1d(free, chosen)
            table = self.exhaustive_single(budget, n_values=n_values, measure=measure,
                                           candidates=remaining, base=base)
            j = int(np.argmax(table[measure]))
            chosen.append(int(table["index"][j]))
            values.append(float(table["value"][j]))
            base[chosen[-1]] = values[-1]
            history.append({key: float(v[j]) for key, v in table.items() if key not in ("index", "value", "delta")})
        return {"indices": chosen, "values": values, "effects": history}

    def random_edits(self, budget: Budget, k: int, n_draws: int, seed: int) -> dict:
        """``n_draws`` random edits of ``k`` distinct parameters, each to a uniform value in its budget."""
        free = self.net.indices()[self.net.free == 1]
        if not (isinstance(k, (int, np.integer)) and 1 <= k <= free.size):
            raise ValueError(f"k must be an integer in [1, {free.size}], got {k!r}")
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        lo, hi = budget.interval(self.net, self.theta)
        idx = np.stack([rng.choice(free, size=k, replace=False) for _ in range(int(n_draws))])
        vals = lo[idx] + (hi - lo)[idx] * rng.random(idx.shape)
        return {"idx": idx, "vals": vals, **self.effects(idx, vals)}


def _parameter_roles(net: MLP):
    """Per parameter: its layer, the unit it feeds, and its input unit (-1 for a bias)."""
    layer = np.empty(net.n_params, dtype=np.int64)
    unit = np.empty(net.n_params, dtype=np.int64)
    inp = np.full(net.n_params, -1, dtype=np.int64)
    for e in net.layout:
        layer[e.slice] = e.layer
        if e.kind == "weight":
            o, i = np.meshgrid(np.arange(e.shape[0]), np.arange(e.shape[1]), indexing="ij")
            unit[e.slice], inp[e.slice] = o.ravel(), i.ravel()
        else:
            unit[e.slice] = np.arange(e.size)
    return layer, unit, inp


# --------------------------------------------------------------------- curvature
def hessian(net: MLP, theta, x, y, max_bytes: int = 2 * 2**30) -> np.ndarray:
    """The exact Hessian of the mean-squared-error loss, (P, P).

    Pearlmutter's R-operator: the forward-mode derivative of the backward pass,
    taken along all P basis directions at once (every R-quantity has a leading
    axis of size P). A basis direction touches one weight W_l[o, i] (or bias
    b_l[o]), so its direct terms are written in by indexing instead of
    multiplying by mostly-zero tangent matrices; the rest are 2-D BLAS
    matmuls. relu'' = 0 almost everywhere; tanh'' = -2 tanh (1 - tanh^2).
    Masked weights get zero rows and columns. Memory grows as P x n x
    (sum of widths); above ``max_bytes`` it raises instead (use fewer points).
    """
    theta = net.check_params(theta, dtype=np.float64)
    if theta.ndim != 1:
        raise ValueError(f"the Hessian is of one network: theta must have shape ({net.n_params},), got {theta.shape}")
    need = 8 * net.n_params * np.shape(x)[0] * (2 * sum(net.widths) + max(net.widths))
    if need > max_bytes:
        raise ValueError(f"the exact Hessian would need about {need / 2**30:.1f} GiB for {net.n_params} "
                         f"parameters and {np.shape(x)[0]} points (limit {max_bytes / 2**30:.1f} GiB); "
                         "pass a subsample of the data or raise max_bytes")
    X = net.check_inputs(x).T  # (n, d_in)
    Y = net.check_targets(y, X.shape[0]).T
    n, d_out = Y.shape
    L, P = net.n_layers, net.n_params
    Ws, bs = net.weights(theta), net.biases(theta)
    f, f1, f2 = _act_derivatives(net)
    layer_of, unit_of, input_of = _parameter_roles(net)
    acts, zs, Racts, Rzs = [X], [], [np.zeros((P, n, X.shape[1]))], []
    for l in range(L):
        n_out, n_in = Ws[l].shape
        z = acts[-1] @ Ws[l].T + bs[l]
        Rz = (Racts[-1].reshape(P * n, n_in) @ Ws[l].T).reshape(P, n, n_out)
        own = np.flatnonzero(layer_of == l)  # directions that move this layer's parameters
        w_dirs = own[input_of[own] >= 0]
        b_dirs = own[input_of[own] < 0]
        Rz[w_dirs, :, unit_of[w_dirs]] += acts[-1][:, input_of[w_dirs]].T
        Rz[b_dirs, :, unit_of[b_dirs]] += 1.0
        zs.append(z)
        Rzs.append(Rz)
        if l < L - 1:
            acts.append(f(z))
            Racts.append(f1(z) * Rz)
        else:
            acts.append(z)
            Racts.append(Rz)
    scale = 2.0 / (n * d_out)
    delta = scale * (acts[-1] - Y)     # (n, out): dL/dz_L
    Rdelta = scale * Racts[-1]         # (P, n, out)
    H = np.empty((P, P))
    for l in range(L - 1, -1, -1):
        n_out, n_in = Ws[l].shape
        a_prev, Ra_prev = acts[l], Racts[l]
        RdW = (Rdelta.transpose(0, 2, 1).reshape(P * n_out, n) @ a_prev).reshape(P, n_out, n_in)
        RdW += np.tensordot(delta, Ra_prev, axes=([0], [1])).transpose(1, 0, 2)
        H[:, net.layout[2 * l].slice] = RdW.reshape(P, -1)
        H[:, net.layout[2 * l + 1].slice] = Rdelta.sum(axis=1)
        if l > 0:
            back = delta @ Ws[l]                                                   # (n, in)
            Rback = (Rdelta.reshape(P * n, n_out) @ Ws[l]).reshape(P, n, n_in)
            own = np.flatnonzero((layer_of == l) & (input_of >= 0))
            Rback[own, :, input_of[own]] += delta[:, unit_of[own]].T              # delta @ V_l
            z = zs[l - 1]
            Rdelta = f2(z) * Rzs[l - 1] * back + f1(z) * Rback
            delta = f1(z) * back
    free = net.free.astype(bool)
    H[~free, :] = 0.0
    H[:, ~free] = 0.0
    return H


def _act_derivatives(net: MLP):
    """(f, f', f'') of the network's activation, as NumPy functions of z."""
    slope = net.leaky_slope
    f = lambda z: numpy_activation(z, net.activation, slope)
    if net.activation == "relu":
        return f, lambda z: (z > 0).astype(float), np.zeros_like
    if net.activation == "tanh":
        return f, lambda z: 1.0 - np.tanh(z) ** 2, lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2)
    if net.activation == "leaky_relu":
        return f, lambda z: np.where(z > 0, 1.0, slope), np.zeros_like
    return f, np.ones_like, np.zeros_like


def predicted_effects(net: MLP, theta, x, y, budget: Budget, H=None) -> dict:
    """First- and second-order predictions of the worst loss increase per parameter.

    For each parameter the two extreme moves the budget allows, delta in
    {lo - theta, hi - theta}: first order max |g_j delta|; second order the max
    of g_j delta + H_jj delta^2 / 2. Pass ``H`` full of NaN to skip the Hessian.
    """
    theta = np.asarray(theta, dtype=np.float64)
    loss, g = net.loss_and_grad(theta, x, y)
    lo, hi = budget.interval(net, theta)
    down, up = lo - theta, hi - theta
    if H is None:
        H = hessian(net, theta, x, y)
    h = np.diag(H)
    first = np.maximum(np.abs(g * down), np.abs(g * up))
    second = np.maximum(g * down + 0.5 * h * down ** 2, g * up + 0.5 * h * up ** 2)
    return {"loss": loss, "gradient": g, "hessian_diag": h, "first_order": first, "second_order": second}


# --------------------------------------------------------------------- layer resets
def reinitialize_layer(net: MLP, theta, layer: int, initial=None, seed=None,
                       scheme: str = "kaiming_normal") -> np.ndarray:
    """A copy of ``theta`` with layer ``layer`` (W``layer`` and b``layer``: 1-based, as
    :meth:`MLP.indices` counts) reset to ``initial`` (the run's initial parameters) or, if
    ``initial`` is None, re-drawn from ``scheme`` with ``seed`` (biases to 0) — Zhang,
    Bengio & Singer 2019."""
    if not (is_int(layer) and 1 <= layer <= net.n_layers):
        raise ValueError(f"layer must be in [1, {net.n_layers}] (W1 .. W{net.n_layers}), got {layer!r}")
    layer = int(layer) - 1  # 0-based below: the layout's entries and the masks
    out = np.array(theta, dtype=np.float64)
    sl = np.concatenate([np.arange(net.layout[2 * layer].offset, net.layout[2 * layer].offset
                                   + net.layout[2 * layer].size),
                         np.arange(net.layout[2 * layer + 1].offset, net.layout[2 * layer + 1].offset
                                   + net.layout[2 * layer + 1].size)])
    if initial is not None:
        out[..., sl] = np.asarray(initial, dtype=np.float64)[..., sl]
    else:
        if seed is None:
            raise ValueError("re-drawing a layer needs a seed (or pass initial parameters)")
        from .init import draw_weights, weight_std
        rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
        entry = net.layout[2 * layer]
        W = draw_weights(rng, entry.shape, scheme, weight_std(net, layer, scheme))
        if net.masks[layer] is not None:
            W = W * net.masks[layer]
        out[..., entry.slice] = W.reshape(-1)
        out[..., net.layout[2 * layer + 1].slice] = 0.0
    return out


# --------------------------------------------------------------------- recovery
def continue_training(net: MLP, train_config, x, y, theta_edited, theta_unedited, steps: int) -> dict:
    """Train an edited and the unedited network on from the same checkpoint.

    Optimizer-state policy: both continuations start with fresh optimizer
    state (zero moments, step counter 0), because a checkpoint stores only
    parameters; the unedited continuation is the fair baseline for that policy.
    Returns both loss curves, the first step at which the edited loss is within
    10 % of the unedited one (``recovery_step``, None if never), and the final
    distance in weights and in function (grid MSE) between the two.
    """
    from .training import Ensemble
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    ens = Ensemble(net, train_config, x, y, np.stack([theta_edited, theta_unedited]))
    losses = ens.run(int(steps))
    final_loss = ens.loss()
    curve_e = np.append(losses[0], final_loss[0])
    curve_u = np.append(losses[1], final_loss[1])
    ok = np.flatnonzero(curve_e <= 1.1 * curve_u)
    grid = np.linspace(-3.5, 3.5, 2001)[:, None] if net.widths[0] == 1 else np.asarray(x)
    fe, fu = net.forward(ens.thetas[0], grid), net.forward(ens.thetas[1], grid)
    return {"loss_edited": curve_e, "loss_unedited": curve_u,
            "recovery_step": int(ok[0]) if ok.size else None,
            "weight_distance": float(np.linalg.norm(ens.thetas[0] - ens.thetas[1])),
            "function_distance": float(np.mean((fe - fu) ** 2))}
