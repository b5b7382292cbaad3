"""Perturbation-lab benchmarks on a seed network (169 parameters, 5000 training points).

Targets: the exhaustive single-weight search (169 x 64 candidate values, then
refinement) under 1 s; the exact Hessian under 0.5 s. Baselines in the same
process: evaluating the same candidates one at a time through ``net.loss`` (on
a 1/16 sample of them: multiply by 16), and the Hessian by central differences
of the exact gradient.
"""
import numpy as np
import pytest

import mlpsim
from mlpsim import perturb


@pytest.fixture(scope="module")
def seed_net():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (5000, 1))
    y = mlpsim.data.piecewise(x)
    theta = net.init(seed=3)
    ev = perturb.Evaluator(net, theta, x, y)
    ev.exhaustive_single(perturb.Budget(), n_values=4)  # compile outside the timing
    return net, theta, x, y, ev


@pytest.mark.benchmark(group="perturb-exhaustive")
def test_exhaustive_single_weight_search(benchmark, seed_net):
    net, theta, x, y, ev = seed_net
    table = benchmark(ev.exhaustive_single, perturb.Budget("layer_std", 1.0), 64)
    assert table["index"].size == 169


@pytest.mark.benchmark(group="perturb-exhaustive")
def test_one_at_a_time_baseline_sixteenth(benchmark, seed_net):
    """169 x 64 / 16 candidates through net.loss, one by one (x16 for the same work)."""
    net, theta, x, y, _ = seed_net
    lo, hi = perturb.Budget("layer_std", 1.0).interval(net, theta)
    cands = [(p, v) for p in range(169) for v in np.linspace(lo[p], hi[p], 64)][::16]

    def one_by_one():
        for p, v in cands:
            t = theta.copy()
            t[p] = v
            net.loss(t, x, y)
    benchmark.pedantic(one_by_one, rounds=1, iterations=1)


@pytest.mark.benchmark(group="perturb-hessian")
def test_exact_hessian(benchmark, seed_net):
    net, theta, x, y, _ = seed_net
    H = benchmark(perturb.hessian, net, theta, x, y)
    assert H.shape == (169, 169)


@pytest.mark.benchmark(group="perturb-hessian")
def test_hessian_by_gradient_differences_baseline(benchmark, seed_net):
    net, theta, x, y, _ = seed_net

    def fd():
        H = np.empty((169, 169))
        for j in range(169):
            e = np.zeros(169)
            e[j] = 1e-5
            H[:, j] = (net.loss_and_grad(theta + e, x, y)[1] - net.loss_and_grad(theta - e, x, y)[1]) / 2e-5
        return H
    benchmark.pedantic(fd, rounds=1, iterations=1)
