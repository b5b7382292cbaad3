"""Analysis functions against plain references and samples with known answers."""
import numpy as np
import pytest

import mlpsim
from mlpsim import analysis
from mlpsim.analysis import distribution


def naive_bincounts(v, edges):
    return np.array([np.sum((v >= a) & (v < b)) for a, b in zip(edges[:-1], edges[1:])])


def trajectory(E=3, C=7, seed=0):
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 1.5, (E, C, net.n_params))
    return net, p


def test_histograms_are_half_open_and_report_outside_values():
    v = np.array([-5.0, -4.75, -0.25, 0.0, 0.2499, 0.25, 4.75, 4.999, 5.0, 7.0, -5.01, np.nan])
    p = v.reshape(1, 1, -1)
    h = analysis.histograms(p, np.arange(v.size))
    edges = analysis.BINCOUNT_EDGES
    assert np.array_equal(h["counts"][0, 0], naive_bincounts(v[np.isfinite(v)], edges))
    assert h["counts"][0, 0, 0] == 1 and h["counts"][0, 0, 1] == 1  # -5 in [-5, -4.75), -4.75 in the next
    assert h["counts"][0, 0, 20] == 2 and h["counts"][0, 0, 21] == 1  # 0, .2499 | .25
    assert h["counts"][0, 0, 39] == 2                                 # 4.75, 4.999
    assert h["below"][0, 0] == 1 and h["above"][0, 0] == 2 and h["nan"][0, 0] == 1


def test_histograms_match_reference_on_a_trajectory():
    net, p = trajectory()
    idx = analysis.select(net, "W2")
    edges = np.linspace(-3, 3, 13)
    h = analysis.histograms(p, idx, edges)
    for e in range(p.shape[0]):
        for c in range(p.shape[1]):
            v = p[e, c, idx]
            assert np.array_equal(h["counts"][e, c], naive_bincounts(v, edges))
            assert h["below"][e, c] == np.sum(v < -3) and h["above"][e, c] == np.sum(v >= 3)


def test_moments_match_naive_formulas():
    net, p = trajectory()
    idx = analysis.select(net, "weights")
    m = analysis.moments(p, idx)
    v = p[1, 4, idx]
    n = v.size
    mean = sum(v) / n
    m2 = sum((x - mean) ** 2 for x in v) / n
    m3 = sum((x - mean) ** 3 for x in v) / n
    m4 = sum((x - mean) ** 4 for x in v) / n
    assert m["mean"][1, 4] == pytest.approx(mean)
    assert m["var"][1, 4] == pytest.approx(m2 * n / (n - 1))
    assert m["skewness"][1, 4] == pytest.approx(m3 / m2 ** 1.5)
    assert m["kurtosis"][1, 4] == pytest.approx(m4 / m2 ** 2 - 3)
    assert m["max_abs"][1, 4] == np.abs(v).max()
    assert m["max_over_std"][1, 4] == pytest.approx(np.abs(v).max() / np.sqrt(m2 * n / (n - 1)))
    np.testing.assert_allclose(m["quantiles"][1, 4], np.quantile(v, analysis.QUANTILES))
    s0 = m["std"][1, 0]
    assert m["frac_beyond_2sigma0"][1, 4] == np.mean(np.abs(v) > 2 * s0)


def test_moments_of_a_gaussian_sample():
    rng = np.random.default_rng(3)
    n = 200_000
    p = rng.normal(1.0, 2.0, (1, 1, n))
    m = analysis.moments(p, np.arange(n))
    assert m["var"][0, 0] == pytest.approx(4.0, rel=5 * np.sqrt(2 / n))
    assert abs(m["skewness"][0, 0]) < 5 * np.sqrt(6 / n)
    assert abs(m["kurtosis"][0, 0]) < 5 * np.sqrt(24 / n)
    # P(|x| > 2 sigma) for mean 1, sigma 2: P(z > 1.5) + P(z < -2.5) = 0.0668 + 0.0062
    assert m["frac_beyond_2sigma0"][0, 0] == pytest.approx(0.0730, abs=0.003)


def test_streaming_equals_whole(monkeypatch, tmp_path):
    net, p = trajectory(E=2, C=50)
    np.save(tmp_path / "p.npy", p)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    whole = analysis.moments(p, analysis.select(net, "all"))
    hist = analysis.histograms(p, analysis.select(net, "W3"))
    monkeypatch.setattr(distribution, "_BLOCK_BYTES", 3000)  # a few checkpoints per block
    blocked = analysis.moments(mm, analysis.select(net, "all"))
    hist_b = analysis.histograms(mm, analysis.select(net, "W3"))
    for k in whole:
        np.testing.assert_array_equal(whole[k], blocked[k])
    np.testing.assert_array_equal(hist["counts"], hist_b["counts"])


def test_hill_recovers_pareto_index_within_its_interval():
    rng = np.random.default_rng(7)
    alpha = 2.0
    n = 20_000
    x = rng.pareto(alpha, size=n) + 1.0  # P(X > t) = t**-alpha, t >= 1
    est = analysis.hill_estimator(x, k=500)
    assert est == pytest.approx(alpha, rel=0.15)
    p = np.stack([x, -x])[:, None, :]  # sign does not matter: |w|
    h = analysis.hill_over_training(p, np.arange(n), k=500, n_boot=100, seed=1)
    assert np.all(h["lo"] <= alpha) and np.all(alpha <= h["hi"])
    assert h["alpha"][0, 0] == pytest.approx(est, rel=1e-12)
    assert h["alpha"][1, 0] == pytest.approx(est, rel=1e-12)
    # a lighter (larger alpha) tail gives a larger estimate
    assert analysis.hill_estimator(rng.pareto(5.0, size=n) + 1, k=500) > 4


def test_hill_is_reproducible_and_validates_k():
    net, p = trajectory()
    a = analysis.hill_over_training(p, analysis.select(net, "all"), seed=3, n_boot=50)
    b = analysis.hill_over_training(p, analysis.select(net, "all"), seed=3, n_boot=50)
    assert np.array_equal(a["lo"], b["lo"])
    with pytest.raises(ValueError, match="k must be"):
        analysis.hill_estimator(np.ones(10), k=10)


def test_normalizations():
    net, p = trajectory()
    t = analysis.normalize(p, net, "total_norm")
    np.testing.assert_allclose(np.linalg.norm(t, axis=-1), 1.0)
    ln = analysis.normalize(p, net, "layer_norm")
    for l in range(net.n_layers):
        idx = analysis.select(net, f"layer{l + 1}")
        np.testing.assert_allclose(np.linalg.norm(ln[..., idx], axis=-1), 1.0)
    s = analysis.normalize(p, net, "init_std")
    w2 = analysis.select(net, "W2")
    np.testing.assert_allclose(s[:, 0, w2].std(axis=-1), 1.0)
    assert np.array_equal(analysis.normalize(p, net, "raw"), p)
    with pytest.raises(ValueError, match="total_norm"):
        analysis.normalize(p, net, "totalnorm")


def test_distance_from_init_and_relative_change():
    net, p = trajectory()
    d = analysis.distance_from_init(p, net)
    assert np.all(d["total"][:, 0] == 0)
    np.testing.assert_allclose(d["total"][2, 5], np.linalg.norm(p[2, 5] - p[2, 0]))
    idx = analysis.select(net, "layer3")
    np.testing.assert_allclose(d["per_layer"][1, 3, 2], np.linalg.norm(p[1, 3, idx] - p[1, 0, idx]))
    np.testing.assert_allclose((d["per_layer"] ** 2).sum(-1), d["total"] ** 2)
    p[0, :, 5] = [0.0, 1, 2, 3, 4, 5, 6]
    rc = analysis.relative_change(p)
    assert np.isnan(rc[0, 3, 5])
    np.testing.assert_allclose(rc[1, 2, 7], (p[1, 2, 7] - p[1, 0, 7]) / abs(p[1, 0, 7]))


def test_ensemble_stats():
    s = analysis.ensemble_stats(np.array([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(s["mean"], [2, 4])
    np.testing.assert_allclose(s["std"], [np.sqrt(2), np.sqrt(8)])


def test_selection():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    assert analysis.select(net, "all").size == 169
    assert analysis.select(net, "weights").size == 8 + 64 + 64 + 8
    assert np.array_equal(analysis.select(net, "layer2"), np.arange(16, 88))
    assert np.array_equal(analysis.select(net, "b3"), np.arange(152, 160))
    with pytest.raises(ValueError, match="does not exist.*layers 1..4"):
        analysis.select(net, "layer5")
    with pytest.raises(ValueError, match="W9"):
        analysis.select(net, "W9")
    with pytest.raises(ValueError, match="lie in"):
        analysis.select(net, np.array([0, 169]))


def test_trajectory_measures_refuse_parameters_of_another_network():
    net = mlpsim.MLP([1, 4, 1])
    params = np.zeros((2, 3, net.n_params + 5))
    with pytest.raises(ValueError, match=rf"shape \(instances, checkpoints, {net.n_params}\)"):
        analysis.distance_from_init(params, net)
    with pytest.raises(ValueError, match="instances, checkpoints"):
        analysis.singular_values(params[:, :, :net.n_params][0], net, 1)


def test_singular_values_of_a_diverged_trajectory_say_so():
    net = mlpsim.MLP([1, 4, 1])
    params = np.ones((2, 3, net.n_params))
    params[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="W1 holds NaN or Inf"):
        analysis.singular_values(params, net, 1)
