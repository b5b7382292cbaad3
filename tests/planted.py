"""Planted trajectories whose answer is known, for testing the claims engine.

Each function returns a :class:`mlpsim.claims.Trajectory` (initial and "trained"
parameters of E instances) built from Kaiming-normal initial networks, with
the trained parameters made by a known operation.
"""
import numpy as np

import mlpsim
from mlpsim import analysis, claims


def initial(net, E, seed=1):
    """E initial networks (Kaiming normal, zero biases), (E, P)."""
    return np.stack([mlpsim.init_params(net, seed=seed, instance=e) for e in range(E)])


def trajectory(net, init, final, x=None, y=None, init_scheme="kaiming_normal"):
    """The planted networks start from Kaiming-normal draws (see :func:`initial`); pass
    ``init_scheme=None`` for initial parameters of unknown distribution."""
    return claims.Trajectory(net, np.stack([init, final], axis=1), x, y, init_scheme=init_scheme)


def map_weights(net, thetas, fn):
    """A copy with every weight matrix (E, n) replaced by ``fn(W, entry)``; biases kept."""
    out = np.array(thetas, dtype=np.float64)
    for name, entry, idx in analysis.weight_layers(net):
        out[:, idx] = fn(out[:, idx], entry)
    return out


def rescaled(net, thetas, factor):
    """Pure rescaling of every weight: variance x factor**2, shape unchanged."""
    return map_weights(net, thetas, lambda W, e: W * factor)


def heavier(net, thetas, power=1.0):
    """Weights pushed toward a heavy-tailed shape (w * |w/s|**power), then rescaled to
    the same variance: longer tails at constant scale."""
    def push(W, e):
        s = W.std(axis=1, keepdims=True)
        H = W * np.abs(W / s) ** power
        return H / H.std(axis=1, keepdims=True) * s
    return map_weights(net, thetas, push)


def lighter(net, thetas, power=0.5):
    """Weights pushed toward a light-tailed shape (sign(w) |w|**power), same variance."""
    def pull(W, e):
        s = W.std(axis=1, keepdims=True)
        H = np.sign(W) * np.abs(W / s) ** power
        return H / H.std(axis=1, keepdims=True) * s
    return map_weights(net, thetas, pull)


def fresh_draws(net, thetas, rng):
    """The null of no change in distribution: every weight matrix replaced by a fresh
    draw with the same per-matrix standard deviation (Gaussian, like the init)."""
    def redraw(W, e):
        return rng.normal(size=W.shape) * W.std(axis=1, keepdims=True)
    return map_weights(net, thetas, redraw)


def toward_rank_one(net, thetas, strength=3.0):
    """Every matrix with >= 2 rows and columns gets its top singular direction amplified:
    W + strength * s1 u1 v1^T. Its effective rank falls; its entries stay spread."""
    out = np.array(thetas, dtype=np.float64)
    E = out.shape[0]
    for name, entry, idx in analysis.weight_layers(net):
        if min(entry.shape) < 2:
            continue
        W = out[:, entry.slice].reshape(E, *entry.shape)
        U, S, Vt = np.linalg.svd(W)
        W = W + strength * S[:, :1, None] * U[:, :, :1] * Vt[:, :1, :]
        out[:, entry.slice] = W.reshape(E, -1)
    return out


def shuffled(net, thetas, rng):
    """Every weight matrix's entries permuted at random (per instance)."""
    return map_weights(net, thetas, lambda W, e: rng.permuted(W, axis=1))


def low_rank_initial(net, E, rank=1, seed=1):
    """Initial networks whose square-ish matrices have rank ``rank`` (plus a tiny full-rank part)."""
    rng = np.random.default_rng(seed)
    thetas = initial(net, E, seed)
    for name, entry, idx in analysis.weight_layers(net):
        if min(entry.shape) < 2:
            continue
        o, i = entry.shape
        W = rng.normal(size=(E, o, rank)) @ rng.normal(size=(E, rank, i)) / np.sqrt(i)
        W += 0.01 * rng.normal(size=W.shape)
        thetas[:, entry.slice] = W.reshape(E, -1)
    return thetas


# ----------------------------------------------------------------- edit robustness
def redundant_network(E, critical=False, seed=0, n=200):
    """A 1-16-1 relu network computing y = relu(x) for x in [-3, 3].

    Robust version: all 16 hidden units compute relu(x) and share the output
    (weights 1/16), so moving one weight by 0.01 moves the output by at most
    0.01 * 3. Critical version: unit 0 alone carries the output with an
    input weight of 100 and an output weight of 0.01; moving that output weight
    by 0.01 doubles the output. Instances differ by tiny noise on unused weights.
    """
    net = mlpsim.MLP([1, 16, 1])
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, n)[:, None]
    y = np.maximum(x, 0.0)
    thetas = np.zeros((E, net.n_params))
    for e in range(E):
        th = np.zeros(net.n_params)
        W1, W2 = net.view(th, "W1"), net.view(th, "W2")
        if critical:
            W1[:, 0] = 1.0
            W1[0, 0] = 100.0
            W2[0, 1:] = 1e-4 * rng.normal(size=15)
            W2[0, 0] = 0.01
        else:
            W1[:, 0] = 1.0 + 1e-3 * rng.normal(size=16)
            W2[0, :] = 1.0 / (16 * W1[:, 0])
        thetas[e] = th
    return net, thetas, x, y
