"""Analysis benchmarks on a seed-shaped trajectory (5 x 1501 x 169).

The issue's target: all analyses of the seed trajectory together in under 2 s.
``test_all_seed_analyses`` is that total (study 02's ``analyse``, which also
computes the per-layer, normalized and bootstrap tail analyses); the others
break it down. ``test_moments_numpy_baseline`` is the plain-NumPy cost of the
same moments on the whole array at once, as a ratio in the same process.
"""

import numpy as np
import pytest

import mlpsim
from mlpsim import analysis
from mlpsim.study import study_module


class FakeRun:
    def __init__(self, params, net):
        self.params, self.net = params, net
        self.steps = np.arange(params.shape[1]) * 10
        self.path = "synthetic"


@pytest.fixture(scope="module")
def seed_trajectory():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    rng = np.random.default_rng(0)
    theta0 = np.stack([net.init(seed=i) for i in range(5)])
    drift = rng.normal(0, 0.002, (5, 1501, net.n_params)).cumsum(axis=1)
    return net, theta0[:, None, :] * (1 + np.linspace(0, 2, 1501))[None, :, None] + drift


@pytest.mark.benchmark(group="analysis")
def test_all_seed_analyses(benchmark, seed_trajectory):
    net, p = seed_trajectory
    study = study_module("02_weight_distribution")
    r = benchmark.pedantic(study.analyse, args=({"seed": FakeRun(p, net)},), rounds=3, iterations=1)
    assert r["layer_var_w"].shape == (5, 1501, 4) and r["hill"]["alpha"].shape == (5, 101)


@pytest.mark.benchmark(group="analysis")
def test_histograms(benchmark, seed_trajectory):
    net, p = seed_trajectory
    benchmark(analysis.histograms, p, analysis.select(net, "all"))


@pytest.mark.benchmark(group="analysis")
def test_moments(benchmark, seed_trajectory):
    net, p = seed_trajectory
    benchmark(analysis.moments, p, analysis.select(net, "all"))


@pytest.mark.benchmark(group="analysis")
def test_moments_numpy_baseline(benchmark, seed_trajectory):
    _, p = seed_trajectory

    def naive():
        mean = p.mean(-1, keepdims=True)
        d = p - mean
        return (d ** 2).mean(-1), (d ** 3).mean(-1), (d ** 4).mean(-1), np.quantile(p, [0.01, 0.5, 0.99], axis=-1)
    benchmark(naive)


@pytest.mark.benchmark(group="analysis")
def test_hill_with_bootstrap(benchmark, seed_trajectory):
    net, p = seed_trajectory
    benchmark(analysis.hill_over_training, p, analysis.select(net, "all"))


@pytest.mark.benchmark(group="analysis")
def test_distance_from_init(benchmark, seed_trajectory):
    net, p = seed_trajectory
    benchmark(analysis.distance_from_init, p, net)


@pytest.mark.benchmark(group="spectra")
def test_singular_values_of_a_128_wide_trajectory(benchmark, tmp_path_factory):
    """The issue's target: singular values of 64 instances x 1501 checkpoints of a
    128-wide network in under a minute. Measured on 64 x 1501 / 32 checkpoints of
    [1, 128, 128, 1] (W2 is 128 x 128) from a float32 memmap; multiply by 32."""
    net = mlpsim.MLP([1, 128, 128, 1])
    path = tmp_path_factory.mktemp("traj") / "p.npy"
    C = 1501 // 32
    p = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(64, C, net.n_params))
    rng = np.random.default_rng(0)
    for e in range(64):
        p[e] = rng.normal(0, 0.1, (C, net.n_params))
    p.flush()
    mm = np.load(path, mmap_mode="r")
    benchmark.extra_info.update(checkpoints=C, instances=64, scale_to_full=32)
    s = benchmark.pedantic(analysis.singular_values, args=(mm, net, 2), rounds=1, iterations=1)  # W2, 128 x 128
    assert s.shape == (64, C, 128)


@pytest.mark.benchmark(group="spectra")
def test_singular_values_seed_trajectory(benchmark, seed_trajectory):
    """5 x 1501 x 4 matrices of the seed network: well under a second."""
    net, p = seed_trajectory
    benchmark(lambda: [analysis.singular_values(p, net, l) for l in range(1, 5)])
