"""Sweep throughput: many small runs (seed network, 2000 steps each) on both cores.

The issue's measurement: 200 such runs, reported as runs per minute and the
overhead per run against training alone (``test_one_run_alone``, the same run
in this process). The 200-run version is marked slow (about a minute on
2 cores); ``-m slow --benchmark-enable`` runs it. The default run does 8.
"""
import pytest

import mlpsim
from mlpsim.sweep import run_sweep

STEPS = 2000


def sweep_dict(n_runs):
    return {"base": {"preset": "seed", "train": {"steps": STEPS, "checkpoint_every": 100}},
            "grid": {"train.seed": list(range(n_runs))}}


@pytest.mark.parametrize("threads", [1, 2])
def test_one_run_alone(benchmark, tmp_path, threads):
    """One run in this process; with 1 thread it is what each sweep worker does."""
    cfg = mlpsim.preset("seed").with_overrides([f"train.steps={STEPS}", "train.checkpoint_every=100"])
    mlpsim.train(cfg, tmp_path / "warm", progress=False)
    counter = iter(range(10**6))
    try:
        benchmark.pedantic(lambda: mlpsim.train(cfg, tmp_path / f"r{next(counter)}", progress=False,
                                                threads=threads), rounds=3, iterations=1)
    finally:
        import numba
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("n_runs", [4, pytest.param(200, marks=pytest.mark.slow)])
def test_sweep_throughput(benchmark, tmp_path, n_runs):
    counter = iter(range(10**6))
    rows = benchmark.pedantic(lambda: run_sweep(sweep_dict(n_runs), tmp_path / f"s{next(counter)}",
                                                log=lambda *a: None), rounds=1, iterations=1)
    assert len(rows) == n_runs and all(r["status"] == "complete" for r in rows)
    benchmark.extra_info["runs"] = n_runs
    if benchmark.stats is not None:
        benchmark.extra_info["runs_per_minute"] = n_runs / benchmark.stats.stats.mean * 60
