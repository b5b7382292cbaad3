"""Grid ("mesh") networks: each neuron sees only its k nearest neighbours in the previous layer.

Hidden layers have equal width ``w`` and are laid out side by side, neuron
``j`` of every layer at position ``j``. A hidden neuron ``j`` takes input from
the ``k`` neurons of the previous hidden layer nearest to position ``j``::

    k = 3, no wrap (w = 5)          k = 2, wrap (w = 5)
    layer l     0 1 2 3 4           layer l     0 1 2 3 4
                |\\|/|\\|/|                       |/|/|/|/|/ (4 -> 0)
    layer l+1   0 1 2 3 4           layer l+1   0 1 2 3 4

* ``k = 3``: positions j - 1, j, j + 1; ``k = 2``: j and j + 1.
* ``wrap = True``: positions are taken modulo w (a ring), so every neuron has
  exactly k inputs.
* ``wrap = False``: the window is shifted inward at the edges (neuron 0 with
  k = 3 sees 0, 1, 2), so every neuron still has exactly k inputs.

The input layer feeds every neuron of the first hidden layer and every neuron
of the last hidden layer feeds the output (``dense_input``/``dense_output``);
set them False to apply the same neighbourhood rule there (needs the same
width). The masks plug into :class:`mlpsim.MLP`; masked weights start at 0
and stay exactly 0 through training.
"""
from __future__ import annotations

import numpy as np

from .model import MLP


def neighbourhood_mask(width_out: int, width_in: int, k: int, wrap: bool) -> np.ndarray:
    """0/1 mask (width_out, width_in): neuron j sees the k inputs nearest to position j."""
    if k not in (1, 2, 3) or k > width_in:
        raise ValueError(f"k must be 1, 2 or 3 and at most the layer width ({width_in}), got {k!r}")
    offsets = {1: [0], 2: [0, 1], 3: [-1, 0, 1]}[k]
    mask = np.zeros((width_out, width_in), dtype=np.uint8)
    for j in range(width_out):
        centre = round(j * (width_in - 1) / max(width_out - 1, 1)) if width_out != width_in else j
        cols = [centre + d for d in offsets]
        if wrap:
            cols = [c % width_in for c in cols]
        else:
            shift = max(0, -min(cols)) - max(0, max(cols) - (width_in - 1))
            cols = [c + shift for c in cols]
        mask[j, cols] = 1
    return mask


def mesh_masks(widths, k: int = 3, wrap: bool = False, dense_input: bool = True,
               dense_output: bool = True) -> list:
    """Per-layer masks for ``widths`` (``None`` for dense layers)."""
    L = len(widths) - 1
    masks = []
    for l in range(L):
        dense = (l == 0 and dense_input) or (l == L - 1 and dense_output)
        masks.append(None if dense else neighbourhood_mask(widths[l + 1], widths[l], k, wrap))
    return masks


def mesh_net(d_in: int, width: int, depth: int, d_out: int, k: int = 3, wrap: bool = False,
             activation: str = "relu", dense_input: bool = True, dense_output: bool = True) -> MLP:
    """An MLP with ``depth`` hidden layers of ``width`` wired as a mesh."""
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    widths = [d_in] + [width] * depth + [d_out]
    return MLP(widths, activation=activation, masks=mesh_masks(widths, k, wrap, dense_input, dense_output))
