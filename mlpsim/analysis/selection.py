"""Choosing what to analyse: parameters through the layout (all, weights, biases, a layer, a
block), and evenly spread checkpoints."""
from __future__ import annotations

import numpy as np

from ..model import MLP


def selection_names(net: MLP) -> list:
    """Every selection name :func:`select` accepts for ``net``."""
    names = ["all", "weights", "biases"]
    names += [f"layer{l + 1}" for l in range(net.n_layers)]
    names += [e.name for e in net.layout]
    return names


def select(net: MLP, which="all") -> np.ndarray:
    """Flat parameter indices for a selection.

    ``which`` is ``"all"``, ``"weights"``, ``"biases"``, ``"layerK"`` (weights
    and biases of layer K, 1-based), a layout name (``"W2"``, ``"b3"``), or an
    explicit integer index array.
    """
    if not isinstance(which, str):
        idx = np.asarray(which)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"an explicit selection must be a 1-D integer array, got {idx!r}")
        if idx.size and (idx.min() < 0 or idx.max() >= net.n_params):
            raise ValueError(f"selection indices must lie in [0, {net.n_params - 1}]")
        return idx.astype(np.int64)
    if which == "all":
        return net.indices()
    if which == "weights":
        return net.indices(kind="weight")
    if which == "biases":
        return net.indices(kind="bias")
    if which.startswith("layer") and which[5:].isdigit():
        layer = int(which[5:])
        if not 1 <= layer <= net.n_layers:
            raise ValueError(f"selection {which!r} names a layer that does not exist; "
                             f"this network has layers 1..{net.n_layers}")
        return net.indices(layer=layer)
    names = [e.name for e in net.layout]
    if which in names:
        return np.arange(net.entry(which).offset, net.entry(which).offset + net.entry(which).size)
    from ..errors import unknown_name_message
    raise ValueError(unknown_name_message("selection", which, selection_names(net)))


def pick_checkpoints(n_checkpoints: int, n: int) -> np.ndarray:
    """Up to ``n`` checkpoint indices spread evenly from the first to the last (both included)."""
    if n_checkpoints < 1 or n < 1:
        raise ValueError(f"need at least one checkpoint and one pick, got {n_checkpoints} and {n}")
    return np.unique(np.linspace(0, n_checkpoints - 1, min(n_checkpoints, n)).round().astype(np.int64))


def weight_layers(net: MLP) -> list:
    """``(name, layout entry, flat indices of the present weights)`` for each weight matrix."""
    out = []
    for e in net.layout:
        if e.kind == "weight":
            present = np.flatnonzero(net.free[e.slice]) + e.offset
            out.append((e.name, e, present))
    return out
