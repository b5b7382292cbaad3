"""Two mlpsim processes at once on the same cores: the spin count of idle OpenMP threads.

Each process trains the seed preset's 5 nets on 2 threads, and both run at the
same time on a 2-core machine (two trainings, a study beside a sweep). The
baseline, measured in the same run, is one process on 1 thread alone: the share
of the machine each of the two gets. With libgomp's default spin count (300000)
the waiting thread of each process spins on the core the other needs, and every
parallel region waits for a scheduler time slice; mlpsim's spin count
(:data:`mlpsim._jit.OMP_SPIN`) lets it sleep soon. The figure is each setting's
time per step as a multiple of the baseline.

    python -m pytest benchmarks/test_bench_contention.py --benchmark-enable -s
"""
import os
import subprocess
import sys

import pytest

from mlpsim._jit import OMP_SPIN

STEP_SCRIPT = """
import sys, time, numba, mlpsim
from mlpsim.training import Ensemble, build_net, initial_params, training_data
threads, steps = int(sys.argv[1]), int(sys.argv[2])
numba.set_num_threads(threads)
cfg = mlpsim.preset("seed")
net = build_net(cfg)
x, y, _, _ = training_data(cfg, net)
ens = Ensemble(net, cfg.train, x, y, initial_params(cfg, net))
ens.run(5)
t0 = time.perf_counter()
ens.run(steps)
print((time.perf_counter() - t0) / steps)
"""


def _per_step(threads, steps, spin, copies=1) -> list:
    """Seconds per step of ``copies`` processes started together."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["GOMP_SPINCOUNT"] = spin
    procs = [subprocess.Popen([sys.executable, "-c", STEP_SCRIPT, str(threads), str(steps)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    out = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [float(o) for o in out]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_two_processes_at_once(benchmark):
    _per_step(1, 5, OMP_SPIN)  # loads numba's cache once, outside the timing
    alone = min(_per_step(1, 300, OMP_SPIN)[0] for _ in range(2))
    ours = max(_per_step(2, 100, OMP_SPIN, copies=2))
    default = max(_per_step(2, 20, "300000", copies=2))
    benchmark.extra_info.update(alone_1_thread_us=alone * 1e6, two_processes_us=ours * 1e6,
                                two_processes_libgomp_default_us=default * 1e6)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\nseed step, 5 nets: 1 process alone on 1 thread {alone * 1e6:.0f} us; two processes at once, "
          f"2 threads each: {ours * 1e6:.0f} us with GOMP_SPINCOUNT={OMP_SPIN} ({ours / alone:.2f}x), "
          f"{default * 1e6:.0f} us with libgomp's default ({default / alone:.1f}x)")
