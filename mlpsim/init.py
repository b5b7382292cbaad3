"""Initialization schemes with exact, documented formulas.

For a weight matrix ``W_l`` of shape ``(fan_out, fan_in)``:

================  ====================================================  =====================
scheme            distribution                                          source
================  ====================================================  =====================
kaiming_normal    N(0, g / fan_in); g = gain of the *next* layer's      He et al. 2015, as the
                  activation: 2 for relu, 2 / (1 + slope**2) for        seed README states it
                  leaky_relu, 1 for tanh, identity and the output
he_normal         N(0, 2 / fan_in) for every layer                      He et al. 2015
he_uniform        U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))               He et al. 2015
glorot_uniform    U(-sqrt(6 / (fan_in + fan_out)), +...)                Glorot & Bengio 2010
glorot_normal     N(0, 2 / (fan_in + fan_out))                          Glorot & Bengio 2010
lecun_normal      N(0, 1 / fan_in)                                      LeCun et al. 1998
orthogonal        Q of the QR decomposition of a Gaussian matrix,       Saxe et al. 2014
                  signs fixed by diag(R), scaled so the RMS entry
                  equals the kaiming_normal std (W W^T = g I if square)
================  ====================================================  =====================

Biases: ``zeros`` (default), ``normal`` (N(0, bias_scale**2)), ``uniform``
(U(-bias_scale, bias_scale)) or ``fan_in_uniform`` (U(+-1/sqrt(fan_in)), PyTorch's default).

Masked weights are set to 0 after drawing, so masking does not change the
random stream of the other weights. Draws happen layer by layer, weights then
biases, from one generator per instance.

Seeding: instance ``i`` of a run with seed ``s`` draws from
``np.random.SeedSequence(s, spawn_key=(i,))``, the ``i``-th child of
``SeedSequence(s).spawn``: it depends on ``(s, i)`` alone, so adding instances
never changes the existing ones.
"""
from __future__ import annotations

import numpy as np

from .errors import is_int, is_number, unknown_name_message
from .model import MLP

INIT_SCHEMES = ("kaiming_normal", "he_normal", "he_uniform", "glorot_uniform",
                "glorot_normal", "lecun_normal", "orthogonal")
BIAS_INITS = ("zeros", "normal", "uniform", "fan_in_uniform")


def instance_rng(seed: int, instance: int) -> np.random.Generator:
    """The generator of instance ``instance`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(instance),)))


def activation_gain(activation: str, leaky_slope: float = 0.01) -> float:
    """The variance gain ``g`` of Kaiming initialization for an activation."""
    if activation == "relu":
        return 2.0
    if activation == "leaky_relu":
        return 2.0 / (1.0 + leaky_slope ** 2)
    return 1.0


def weight_std(net: MLP, layer: int, scheme: str) -> float:
    """Standard deviation of the weights of ``layer`` (0-based) under ``scheme``."""
    fan_out, fan_in = net.layout[2 * layer].shape
    gain = activation_gain(net.activation, net.leaky_slope) if layer < net.n_layers - 1 else 1.0
    if scheme in ("kaiming_normal", "orthogonal"):
        return float(np.sqrt(gain / fan_in))
    if scheme in ("he_normal", "he_uniform"):
        return float(np.sqrt(2.0 / fan_in))
    if scheme in ("glorot_normal", "glorot_uniform"):
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    if scheme == "lecun_normal":
        return float(np.sqrt(1.0 / fan_in))
    raise ValueError(unknown_name_message("init scheme", scheme, INIT_SCHEMES))


def draw_weights(rng: np.random.Generator, shape: tuple, scheme: str, std: float) -> np.ndarray:
    """Draw one weight matrix of ``shape`` with standard deviation ``std``."""
    if scheme.endswith("_uniform"):
        limit = np.sqrt(3.0) * std  # U(-a, a) has std a / sqrt(3)
        return rng.uniform(-limit, limit, size=shape)
    if scheme == "orthogonal":
        rows, cols = shape
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))  # makes Q uniform (Haar) over orthogonal matrices
        q = q if rows >= cols else q.T
        # Entries of a matrix with orthonormal columns (or rows) have mean square
        # 1 / max(rows, cols); rescale so their RMS equals the Kaiming std. For a
        # square layer this gives W W^T = g * I.
        return q * (std * np.sqrt(max(rows, cols)))
    return rng.normal(0.0, std, size=shape)


def init_params(net: MLP, seed: int = 0, instance: int = 0, scheme: str = "kaiming_normal",
                bias_init: str = "zeros", bias_scale: float = 0.0, dtype=np.float64) -> np.ndarray:
    """Initial parameters ``(P,)`` of instance ``instance`` of a run seeded with ``seed``.

    Parameters
    ----------
    net : MLP
    seed, instance : int
        Together they select the random stream (see the module docstring).
    scheme : str
        One of :data:`INIT_SCHEMES`.
    bias_init : str
        One of :data:`BIAS_INITS`; ``bias_scale`` is the std (normal) or
        half-width (uniform) where it applies.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(unknown_name_message("init scheme", scheme, INIT_SCHEMES))
    if bias_init not in BIAS_INITS:
        raise ValueError(unknown_name_message("bias_init", bias_init, BIAS_INITS))
    for name, value in (("seed", seed), ("instance", instance)):  # 2.5 would quietly be seed 2
        if not (is_int(value) and value >= 0):
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    if not (is_number(bias_scale) and np.isfinite(bias_scale) and bias_scale >= 0):
        raise ValueError(f"bias_scale must be a finite number >= 0, got {bias_scale!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}") from None
    if dtype not in (np.float64, np.float32):  # an integer dtype would truncate every weight
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    rng = instance_rng(seed, instance)
    theta = np.zeros(net.n_params)
    for layer in range(net.n_layers):
        w_entry, b_entry = net.layout[2 * layer], net.layout[2 * layer + 1]
        W = draw_weights(rng, w_entry.shape, scheme, weight_std(net, layer, scheme))
        if net.masks[layer] is not None:
            W = W * net.masks[layer]
        theta[w_entry.slice] = W.reshape(-1)
        fan_in = w_entry.shape[1]
        if bias_init == "normal":
            theta[b_entry.slice] = rng.normal(0.0, bias_scale, size=b_entry.shape)
        elif bias_init == "uniform":
            theta[b_entry.slice] = rng.uniform(-bias_scale, bias_scale, size=b_entry.shape)
        elif bias_init == "fan_in_uniform":
            bound = 1.0 / np.sqrt(fan_in)
            theta[b_entry.slice] = rng.uniform(-bound, bound, size=b_entry.shape)
    return theta.astype(dtype)
