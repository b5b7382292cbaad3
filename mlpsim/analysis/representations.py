"""Hidden representations: the activations of each hidden layer over a set of inputs."""
from __future__ import annotations

import numpy as np

from ..model import MLP, numpy_activation


def hidden_activations(net: MLP, theta, x) -> list:
    """Activations of every hidden layer, ``[(n, h_1), ..., (n, h_{L-1})]``.

    A plain NumPy forward pass (BLAS matmuls): analysis code, not the training path.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    theta = np.asarray(theta, dtype=np.float64)
    out = []
    for l, (W, b) in enumerate(zip(net.weights(theta), net.biases(theta))):
        a = a @ W.T + b
        if l < net.n_layers - 1:
            a = numpy_activation(a, net.activation, net.leaky_slope)
            out.append(a)
    return out


def representation_ranks(net: MLP, params, x, checkpoints) -> np.ndarray:
    """Roy-Vetterli effective rank of each hidden layer's activation matrix (n, h).

    Returns (E, len(checkpoints), L - 1).
    """
    from .spectra import rank_measures
    E = np.shape(params)[0]
    out = np.empty((E, len(checkpoints), net.n_layers - 1))
    for e in range(E):
        for j, c in enumerate(checkpoints):
            for l, A in enumerate(hidden_activations(net, params[e, c], x)):
                s = np.linalg.svd(A, compute_uv=False)
                out[e, j, l] = rank_measures(s, A.shape)["effective_rank"] if s[0] > 0 else 0.0
    return out
