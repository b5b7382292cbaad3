"""Trajectories of parameters: normalizations, distance from initialization, ensemble statistics.

Notation: ``params`` (E, C, P); ``theta_t`` one row; ``theta_0`` the first
checkpoint of the same instance; a *layer* is its weights and biases together.
"""
from __future__ import annotations

import numpy as np

from ..model import MLP
from .distribution import iter_blocks

NORMALIZATIONS = ("raw", "total_norm", "layer_norm", "init_std")


def _layer_slices(net: MLP):
    """Per layer, the slice covering its weights and biases (contiguous in the layout)."""
    return [slice(net.layout[2 * l].offset, net.layout[2 * l + 1].offset + net.layout[2 * l + 1].size)
            for l in range(net.n_layers)]


def normalize(params, net: MLP, mode: str = "raw") -> np.ndarray:
    """Parameters rescaled to tell a change of shape from a change of scale.

    ``raw``: unchanged. ``total_norm``: theta_t / ||theta_t||. ``layer_norm``:
    each layer's block divided by its own norm at the same checkpoint.
    ``init_std``: each layer's block in units of the standard deviation of that
    layer's *weights* at the first checkpoint (biases start at 0, so their own
    initial spread is no unit).

    Returns a new float64 array of the shape of ``params``.
    """
    if mode not in NORMALIZATIONS:
        from ..errors import unknown_name_message
        raise ValueError(unknown_name_message("normalization", mode, NORMALIZATIONS))
    p = np.array(params, dtype=np.float64)
    if p.ndim != 3 or p.shape[-1] != net.n_params:
        raise ValueError(f"params must be (instances, checkpoints, {net.n_params}), got {p.shape}")
    if mode == "total_norm":
        p /= np.linalg.norm(p, axis=-1, keepdims=True)
    elif mode == "layer_norm":
        for s in _layer_slices(net):
            p[..., s] /= np.linalg.norm(p[..., s], axis=-1, keepdims=True)
    elif mode == "init_std":
        for l, s in enumerate(_layer_slices(net)):
            w = net.layout[2 * l].slice
            p[..., s] /= p[:, :1, w].std(axis=-1, keepdims=True)
    return p


def distance_from_init(params, net: MLP) -> dict:
    """``||theta_t - theta_0||``: ``total`` (E, C) and ``per_layer`` (E, C, L),
    and ``relative`` = total / ||theta_0|| (E, C)."""
    net.check_trajectory(params)
    E, C, P = np.shape(params)
    theta0 = np.asarray(params[:, 0], dtype=np.float64)
    slices = _layer_slices(net)
    total = np.empty((E, C))
    per_layer = np.empty((E, C, net.n_layers))
    for c0, c1, v in iter_blocks(params, np.arange(P)):
        d = v - theta0[:, None, :]
        total[:, c0:c1] = np.linalg.norm(d, axis=-1)
        for l, s in enumerate(slices):
            per_layer[:, c0:c1, l] = np.linalg.norm(d[..., s], axis=-1)
    return {"total": total, "per_layer": per_layer,
            "relative": total / np.linalg.norm(theta0, axis=-1)[:, None]}


def relative_change(params) -> np.ndarray:
    """Per weight ``(theta_t - theta_0) / |theta_0|`` (E, C, P); NaN where ``theta_0 == 0``."""
    p = np.asarray(params, dtype=np.float64)
    theta0 = p[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(theta0 != 0, (p - theta0) / np.abs(theta0), np.nan)


def ensemble_stats(values, axis: int = 0) -> dict:
    """Mean, standard deviation (ddof = 1), min and max across instances (NaN-aware)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    return {"mean": np.nanmean(v, axis=axis),
            "std": np.nanstd(v, axis=axis, ddof=1) if n > 1 else np.zeros(np.delete(v.shape, axis)),
            "min": np.nanmin(v, axis=axis), "max": np.nanmax(v, axis=axis), "n": n}
