"""Summary numbers of a finished run, per instance: what sweeps and studies tabulate."""
from __future__ import annotations

import numpy as np

from .distribution import moments
from .selection import select
from .spectra import rank_measures, singular_values


def run_metrics(run) -> dict:
    """Per instance: final loss, variance ratio and kurtosis change (all parameters), the
    effective-rank change of the largest weight matrix, and ||theta_T - theta_0|| / ||theta_0||."""
    P = run.params
    idx = select(run.net, "all")
    m0 = moments(P[:, :1], idx)
    m1 = moments(P[:, -1:], idx)
    layer = max(range(run.net.n_layers), key=lambda l: min(run.net.layout[2 * l].shape))
    shape = run.net.layout[2 * layer].shape
    s = singular_values(np.asarray(P[:, [0, P.shape[1] - 1]]), run.net, layer + 1, workers=1)
    er = rank_measures(s, shape)["effective_rank"]
    first, last = np.asarray(P[:, 0], dtype=np.float64), np.asarray(P[:, -1], dtype=np.float64)
    return {"final_loss": np.asarray(run.loss[:, -1], dtype=np.float64),
            "variance_ratio": m1["var"][:, 0] / m0["var"][:, 0],
            "kurtosis_change": m1["kurtosis"][:, 0] - m0["kurtosis"][:, 0],
            "effective_rank_change": er[:, 1] - er[:, 0],
            "relative_distance": np.linalg.norm(last - first, axis=-1) / np.linalg.norm(first, axis=-1)}
