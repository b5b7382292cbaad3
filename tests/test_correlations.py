"""Alignment, network distances, correlation-vs-distance fits, and the correlation study."""

import numpy as np
import pytest

import mlpsim
from mlpsim import analysis


def permuted_copy(net, theta, seed):
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(w) for w in net.widths[1:-1]]
    return analysis.permute_hidden(theta, net, perms)


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_alignment_undoes_a_random_permutation(method):
    net = mlpsim.MLP([2, 7, 6, 5, 1], activation="tanh")
    theta = net.init(seed=0, bias_init="normal", bias_scale=0.2)
    others = [permuted_copy(net, theta, s) for s in range(3)]
    x = np.random.default_rng(1).normal(size=(64, 2))
    for p in others:
        assert not np.array_equal(p, theta)
        np.testing.assert_allclose(net.forward(p, x), net.forward(theta, x), rtol=1e-13, atol=1e-13)
    aligned, perms = analysis.align(np.stack([theta, *others]), net, method=method, x=x)
    for row in aligned:
        assert np.array_equal(row, theta)
    assert len(perms) == 4 and all(len(p) == 3 for p in perms)


def test_aligned_networks_compute_the_same_function():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    thetas = np.stack([net.init(seed=s) for s in range(4)])
    aligned, _ = analysis.align(thetas, net)
    x = np.linspace(-3, 3, 101)[:, None]
    for a, t in zip(aligned, thetas):
        np.testing.assert_allclose(net.forward(a, x), net.forward(t, x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs inputs"):
        analysis.align(thetas, net, method="activations")


def test_edge_distances_by_hand():
    net = mlpsim.MLP([1, 2, 2, 1])
    idx, layer, out, inp = analysis.edge_table(net)
    assert list(idx) == [0, 1, 4, 5, 6, 7, 10, 11]
    D = analysis.edge_distances(net)
    name = {(l, o, i): k for k, (l, o, i) in enumerate(zip(layer, out, inp))}
    assert D[name[0, 0, 0], name[0, 1, 0]] == 1   # share the input unit
    assert D[name[0, 0, 0], name[1, 1, 0]] == 1   # the first ends where the second starts
    assert D[name[0, 0, 0], name[1, 0, 1]] == 2   # one unit in between
    assert D[name[1, 0, 0], name[1, 1, 1]] == 2   # same layer, no shared unit
    assert D[name[0, 1, 0], name[2, 0, 0]] == 2
    assert D[name[0, 0, 0], name[2, 0, 1]] == 2
    assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)


def test_planted_exponential_decay_is_recovered():
    rng = np.random.default_rng(0)
    rho, V, N = 0.6, 12, 40000
    x = np.empty((N, V))
    x[:, 0] = rng.normal(size=N)
    for k in range(1, V):  # AR(1) chain: corr(x_i, x_j) = rho**|i - j|
        x[:, k] = rho * x[:, k - 1] + np.sqrt(1 - rho ** 2) * rng.normal(size=N)
    dist = np.abs(np.arange(V)[:, None] - np.arange(V)[None, :])
    c = analysis.correlation_by_distance(x, dist)
    expected_xi = -1.0 / np.log(rho ** 2)  # r^2 = exp(-d / xi)
    keep = c["above_noise"]
    assert keep[:4].all()
    fit = analysis.fit_decay(c["distance"][keep], c["excess_r2"][keep], seed=0)
    assert fit["best"] == "exponential"
    assert fit["exponential"]["xi"] == pytest.approx(expected_xi, rel=0.1)
    lo, hi = fit["exponential"]["xi_ci"]
    assert lo <= expected_xi <= hi


def test_planted_power_law_is_preferred():
    d = np.arange(1, 10.0)
    fit = analysis.fit_decay(d, 0.5 * d ** -2.0)
    assert fit["best"] == "power_law" and fit["power_law"]["beta"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 3"):
        analysis.fit_decay([1, 2], [0.1, 0.01])


def test_input_pair_correlation_of_identical_inputs_is_one():
    net = mlpsim.MLP([1, 16, 16, 1], activation="tanh")
    theta = net.init(seed=0)
    x = np.linspace(-2, 2, 20)[:, None]
    np.testing.assert_allclose(analysis.input_pair_correlation(net, theta, x, x), 1.0)


def test_pair_categories_by_hand():
    net = mlpsim.MLP([1, 2, 2, 2, 1])
    _, layer, out, inp = analysis.edge_table(net)
    k = {(l, o, i): j for j, (l, o, i) in enumerate(zip(layer, out, inp))}
    C = analysis.pair_categories(net)
    assert C[k[1, 0, 0], k[1, 0, 1]] == 1   # same output unit
    assert C[k[1, 0, 0], k[1, 1, 0]] == 2   # same input unit
    assert C[k[1, 1, 0], k[2, 0, 1]] == 3   # in series through unit 1 of layer 2
    assert C[k[1, 0, 0], k[1, 1, 1]] == 4   # same layer, nothing shared
    assert C[k[1, 0, 0], k[2, 0, 1]] == 5   # adjacent layers, not in series
    assert C[k[0, 0, 0], k[3, 0, 0]] == 7   # three layers apart
    names = analysis.correlations.category_names([1, 3, 6])
    assert names == ["same output unit", "in series", "2 layer(s) apart"]
    rng = np.random.default_rng(0)
    r = analysis.mean_r2_by_category(rng.normal(size=(500, C.shape[0])), C)
    assert np.all(np.abs(r["excess_r2"]) < 0.01)


def test_permutations_and_masks_are_validated():
    net = mlpsim.MLP([1, 4, 4, 1])
    theta = net.init(seed=0)
    with pytest.raises(ValueError, match="not a permutation"):
        analysis.permute_hidden(theta, net, [np.array([0, 0, 0, 0]), np.arange(4)])
    with pytest.raises(ValueError, match="one permutation per hidden layer"):
        analysis.permute_hidden(theta, net, [np.arange(4)])
    masked = mlpsim.MLP([1, 4, 4, 1], masks=[None, np.eye(4), None])
    with pytest.raises(ValueError, match="masked"):
        analysis.align(np.stack([masked.init(seed=0)] * 3), masked)
    t = np.stack([masked.init(seed=s) for s in range(3)])[:, None]
    for control in (analysis.shuffle_within_layers(t, masked, 0), analysis.matched_random(t, masked, 0)):
        assert np.all(control[..., masked.free == 0] == 0)
