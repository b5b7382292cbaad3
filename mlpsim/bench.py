"""How fast is mlpsim on this machine, as a share of the machine's own peak?

    mlpsim bench

prints the CPU, the float64 GEMM peak of this machine measured now with NumPy
(a 2048 x 2048 matmul, BLAS threads pinned to 1 and to 2), and mlpsim's seed
step (the notebook's 1-8-8-8-1 network, 5000 points, one full-batch Adam step)
for 1 network on 1 thread and 64 networks on 2 threads, in float64 and float32,
as GFLOP/s and as % of that peak. The benchmarks in ``benchmarks/`` report the
same ratios. A GEMM measurement whose fastest and slowest repeats differ by
more than 30 % is marked noisy (another program is using the cores).

FLOPs are counted as a GEMM counts them: 2 per multiply-add of the forward
pass, the weight gradients and the backpropagated deltas
(:func:`flops_per_step`); activations, biases, the loss and the optimizer are
extra work not counted.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np

NOISY = 0.30


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), and its widest vector instructions."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "NEON" if platform.machine() in (
        "arm64", "aarch64") else "SSE"
    return f"{name} ({vec}, {os.cpu_count()} cores)"


def flops_per_step(widths, n: int) -> float:
    """GEMM-counted FLOPs of one forward + backward pass over ``n`` samples."""
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))   # forward; and again for dW
    deltas = sum(a * b for a, b in zip(widths[1:-1], widths[2:]))  # W^T d for every hidden layer
    return 2.0 * n * (2 * macs + deltas)


def gemm_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """float64 GEMM GFLOP/s with ``threads`` BLAS threads: best of ``repeats``, and the spread."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)), rng.random((n, n))
    times = []
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b  # warm up
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"gflops": flops / min(times) / 1e9, "slowest_gflops": flops / max(times) / 1e9,
            "noisy": (max(times) - min(times)) / min(times) > NOISY, "threads": threads}


def seed_step(instances: int, threads: int, dtype: str = "float64", seconds: float = 1.0) -> dict:
    """Time full-batch Adam steps of ``instances`` seed networks on ``threads`` threads."""
    import numba

    from .config import preset
    from .training import Ensemble, build_net, initial_params, training_data
    cfg = preset("seed").with_values({"train.instances": instances, "train.dtype": dtype})
    net = build_net(cfg)
    x, y, _, _ = training_data(cfg, net)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        ens = Ensemble(net, cfg.train, x, y, initial_params(cfg, net))
        ens.run(2)  # load the compiled kernels outside the timing
        steps, best = 1, float("inf")
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            ens.run(steps)
            dt = (time.perf_counter() - t0) / steps
            best = min(best, dt)
            steps = min(steps * 2, 64)
    finally:
        numba.set_num_threads(before)
    flops = flops_per_step(net.widths, x.shape[0]) * instances
    return {"instances": instances, "threads": threads, "dtype": dtype, "seconds_per_step": best,
            "gflops": flops / best / 1e9}


def run(seconds: float = 1.0, log=print) -> dict:
    """Measure and print everything (about 20-40 s)."""
    import numba
    cores = min(2, numba.config.NUMBA_NUM_THREADS)
    log(f"CPU: {cpu_name()}")
    peaks = {t: gemm_peak(t) for t in sorted({1, cores})}
    for t, p in peaks.items():
        log(f"float64 GEMM peak, {t} thread(s): {p['gflops']:.1f} GFLOP/s"
            + (f"  (NOISY: slowest repeat {p['slowest_gflops']:.1f}; another program is using the cores, "
               "so the ratios below are uncertain)" if p["noisy"] else ""))
    results = []
    for instances, threads in ((1, 1), (64, cores)):
        for dtype in ("float64", "float32"):
            r = seed_step(instances, threads, dtype, seconds)
            r["share_of_peak"] = r["gflops"] / peaks[threads]["gflops"]
            results.append(r)
            log(f"seed step, {instances:2d} net(s), {threads} thread(s), {dtype}: "
                f"{r['seconds_per_step'] * 1e6 / instances:8.1f} us per net-step, {r['gflops']:6.1f} GFLOP/s, "
                f"{100 * r['share_of_peak']:5.1f} % of the {threads}-thread float64 GEMM peak")
    by = {(r["instances"], r["dtype"]): r for r in results}
    for instances in (1, 64):
        ratio = by[(instances, "float32")]["gflops"] / by[(instances, "float64")]["gflops"]
        log(f"float32 / float64 throughput, {instances} net(s): {ratio:.2f}x")
    return {"cpu": cpu_name(), "peaks": peaks, "results": results}
