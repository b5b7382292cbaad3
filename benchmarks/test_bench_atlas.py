"""Atlas throughput: conditions per minute on the local executor, against training alone.

Baseline in the same process: training the tiny atlas's conditions one after the other,
single-threaded, with nothing else (no analysis, no worker processes). With 2 workers the atlas
should take about (training + analysis) / 2 plus a few seconds of worker start-up.
Run: ``python -m pytest benchmarks/test_bench_atlas.py --benchmark-enable -m slow``.
"""
import time

import numba
import pytest

from mlpsim import atlas, training


@pytest.mark.slow
@pytest.mark.benchmark(group="atlas")
def test_tiny_atlas_throughput(benchmark, tmp_path):
    built = atlas.build("tiny")
    numba.set_num_threads(1)
    t0 = time.perf_counter()
    for i, (c, cfg) in enumerate(built):
        training.train(cfg, tmp_path / f"alone{i}", progress=False)
    alone = time.perf_counter() - t0
    counter = iter(range(100))
    result = benchmark.pedantic(lambda: atlas.run_atlas(tmp_path / f"atlas{next(counter)}", size="tiny", workers=2,
                                                       log=lambda *a: None), rounds=2, iterations=1)
    perf = result["performance"]
    benchmark.extra_info.update(training_alone_seconds=alone, runs_per_minute=perf["runs_per_minute"],
                                overhead_per_run_seconds=perf["overhead_per_run_seconds"])
    assert perf["conditions"] == len(built)
