"""Rank measures on matrices with known spectra; power-law fit; controls; the rank study."""
import json

import numpy as np
import pytest

import mlpsim
from mlpsim import analysis
from mlpsim.cli import main


def test_rank_measures_of_known_spectra():
    eye = analysis.rank_measures(np.ones(6), (6, 6))
    for m in analysis.RANK_MEASURES:
        assert eye[m] == pytest.approx(6.0), m
    # rank-2 product: two equal singular values, the rest (numerically) zero
    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 2))
    W = A @ A.T
    s = np.linalg.svd(W, compute_uv=False)
    r = analysis.rank_measures(s, W.shape)
    assert r["numerical_rank"] == 2 and r["galanti_rank"] == 2
    assert 1 < r["effective_rank"] <= 2 and 1 <= r["stable_rank"] <= 2
    # diagonal matrix with s = (4, 2, 1): every measure by hand
    s = np.array([4.0, 2.0, 1.0])
    r = analysis.rank_measures(s, (3, 3))
    p = s / 7
    assert r["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert r["stable_rank"] == pytest.approx(21 / 16)
    assert r["participation_ratio"] == pytest.approx(21 ** 2 / (256 + 16 + 1))
    # Galanti: 1e-3 of the Frobenius norm
    r = analysis.rank_measures(np.array([1.0, 1e-2, 1e-4]), (3, 3))
    assert r["galanti_rank"] == 2 and r["numerical_rank"] == 3


def test_orthogonal_matrix_has_full_rank_everywhere():
    net = mlpsim.MLP([32, 32, 32, 1], activation="tanh")
    theta = net.init(seed=1, scheme="orthogonal")
    s = analysis.singular_values(theta[None, None], net, 2)
    np.testing.assert_allclose(s, 1.0, rtol=1e-12)  # W W^T = g I with g = 1 for tanh
    r = analysis.rank_measures(s, (32, 32))
    for m in analysis.RANK_MEASURES:
        assert r[m][0, 0] == pytest.approx(32.0), m


def test_singular_values_match_numpy_per_matrix():
    net = mlpsim.MLP([3, 5, 4, 1])
    rng = np.random.default_rng(2)
    p = rng.normal(size=(2, 3, net.n_params))
    s = analysis.singular_values(p, net, 2, block=2)
    for e in range(2):
        for c in range(3):
            np.testing.assert_allclose(s[e, c], np.linalg.svd(net.view(p[e, c], "W2"), compute_uv=False))


def test_powerlaw_fit_recovers_pareto_alpha():
    rng = np.random.default_rng(4)
    for alpha in (2.0, 3.5):
        x = (rng.pareto(alpha - 1, size=2000) + 1.0) * 0.5  # density ~ x**-alpha above xmin = 0.5
        fit = analysis.powerlaw_fit(x)
        assert abs(fit["alpha"] - alpha) < 3 * fit["alpha_se"] + 0.05, (alpha, fit)


def test_powerlaw_fit_refuses_small_layers():
    with pytest.raises(ValueError, match="at least 50"):
        analysis.powerlaw_fit(np.arange(1, 9.0))
    with pytest.raises(ValueError, match="at least 50"):
        analysis.spectral_stats(np.eye(8))


def test_controls_keep_values_or_variance_and_differ():
    net = mlpsim.MLP([1, 16, 16, 1])
    p = np.stack([net.init(seed=i) for i in range(3)])[:, None, :]
    p = p[:, [0, 0]]  # a non-contiguous (E, 2, P) array, like a fancy-indexed memmap
    p = np.asfortranarray(p)
    sh = analysis.shuffle_within_layers(p, net, seed=0)
    assert not np.array_equal(sh, p)
    for e in net.layout:
        np.testing.assert_array_equal(np.sort(sh[..., e.slice], axis=-1), np.sort(p[..., e.slice], axis=-1))
    assert np.array_equal(sh, analysis.shuffle_within_layers(p, net, seed=0))
    mr = analysis.matched_random(p, net, seed=1)
    W = net.view(mr, "W2")
    assert not np.array_equal(W, net.view(p, "W2"))
    assert W.std() == pytest.approx(net.view(p, "W2").std(), rel=0.2)


def test_hidden_activations_match_forward():
    net = mlpsim.MLP([2, 6, 5, 3], activation="tanh")
    theta = net.init(seed=0)
    x = np.random.default_rng(0).normal(size=(20, 2))
    acts = analysis.hidden_activations(net, theta, x)
    assert [a.shape for a in acts] == [(20, 6), (20, 5)]
    W3, b3 = net.view(theta, "W3"), net.view(theta, "b3")
    np.testing.assert_allclose(acts[-1] @ W3.T + b3, net.forward(theta, x), rtol=1e-12, atol=1e-12)


def test_rank_study_smoke(tmp_path):
    out = tmp_path / "rank"
    assert main(["study", "rank", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    (v,) = s["verdicts"]
    assert v["claim"] == "rank_decrease" and v["status"] == "inconclusive" and "needs at least 16" in v["reason"]
    for name in ("fig_rank_measures", "fig_spectra", "fig_representation_rank"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.npz").exists()
    run = mlpsim.load_run(out / "runs" / "tiny")
    data = np.load(out / "fig_rank_measures.npz")
    W2 = run.net.view(run.params[1, -1], "W2")
    sv = np.linalg.svd(W2, compute_uv=False)
    p = sv / sv.sum()
    assert data["W2_trained_effective_rank"][1, -1] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
