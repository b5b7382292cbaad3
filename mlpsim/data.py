"""Targets and training data.

The seed's target is ``piecewise``: 1 on [-2, -1) and on [0, 2), 0 elsewhere.
Inputs are drawn uniformly from ``x_range`` by a generator seeded with the
data seed alone, so the data do not depend on the initialization seed.
"""
from __future__ import annotations

import numpy as np

from .model import unknown_name_message


def piecewise(x: np.ndarray) -> np.ndarray:
    """The seed notebook's target: 1 on [-2, -1) and [0, 2), else 0."""
    x = x[:, 0]
    return (((x >= -2) & (x < -1)) | ((x >= 0) & (x < 2))).astype(np.float64)[:, None]


def step(x: np.ndarray) -> np.ndarray:
    """A single step: 1 for x >= 0, else 0."""
    return (x[:, :1] >= 0).astype(np.float64)


def sin(x: np.ndarray) -> np.ndarray:
    """sin(x)."""
    return np.sin(x[:, :1])


#: name -> (function of x (n, d_in) returning (n, d_out), input dimension)
TARGETS = {
    "piecewise": (piecewise, 1),
    "step": (step, 1),
    "sin": (sin, 1),
}


def make_data(target: str, n: int, x_range, seed: int):
    """Draw ``n`` inputs uniformly from ``x_range`` and evaluate ``target``.

    Returns ``(x, y)`` with shapes ``(n, d_in)`` and ``(n, d_out)``, float64.
    """
    if target not in TARGETS:
        raise ValueError(unknown_name_message("target", target, TARGETS))
    fn, d_in = TARGETS[target]
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    lo, hi = x_range
    x = rng.uniform(lo, hi, size=(int(n), d_in))
    return x, fn(x)
