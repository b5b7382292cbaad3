"""What verdicts cost: every claim of mlpsim.claims on data of the studies' sizes.

Baseline in the same process: the trajectory analyses of study 02
(``test_bench_analysis.py``); claims with permutation nulls should stay within
seconds so that studies and the atlas can judge every run.
Run: ``python -m pytest benchmarks/test_bench_claims.py --benchmark-enable``.
"""
import numpy as np
import pytest

import mlpsim
from mlpsim import claims

import planted


@pytest.fixture(scope="module")
def seed20():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    init = planted.initial(net, 20)
    return planted.trajectory(net, init, planted.heavier(net, planted.toward_rank_one(net, init, 1.0)))


@pytest.mark.benchmark(group="claims")
@pytest.mark.parametrize("name", ["broadening", "longer_tails", "rank_decrease"])
def test_per_layer_claims_on_20_seed_networks(benchmark, seed20, name):
    v = benchmark.pedantic(claims.evaluate, args=(name, seed20), rounds=3, iterations=1)
    assert v.n_instances == 20 and len(v.stability) >= 2


@pytest.mark.benchmark(group="claims")
def test_edit_robustness_on_20_seed_networks(benchmark):
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    init = planted.initial(net, 20)
    x = np.linspace(-3, 3, 5000)[:, None]
    y = ((x > 0) * 1.0)
    traj = planted.trajectory(net, init, init, x, y)
    v = benchmark.pedantic(claims.evaluate, args=("edit_robustness", traj), rounds=1, iterations=1)
    assert v.n_instances == 20


@pytest.mark.benchmark(group="claims")
def test_correlation_decay_on_64_networks_of_depth_8(benchmark):
    """Depth 8 when measuring; depth 2 when benchmarks only run as smoke tests (the default)."""
    net = mlpsim.MLP([1] + [8] * (2 if benchmark.disabled else 8) + [1])
    init = planted.initial(net, 64)
    traj = planted.trajectory(net, init, planted.fresh_draws(net, init, np.random.default_rng(0)))
    v = benchmark.pedantic(claims.evaluate, args=("correlation_decay", traj), rounds=1, iterations=1)
    assert v.n_instances == 64
