"""How fast is mlpsim on this machine, as a share of the machine's own peak?

    mlpsim bench

prints the CPU (and the one the kernels are compiled for, with the register
blocking that follows: :data:`mlpsim.simd.WIDE_REGISTERS`), the float64 GEMM
peak of this machine measured now with NumPy
(a 2048 x 2048 matmul, BLAS threads pinned to 1 and to 2; the 2-thread peak also
as a multiple of the 1-thread one, since a virtual machine's two threads may get
less than two cores), and mlpsim's seed
step (the notebook's 1-8-8-8-1 network, 5000 points, one full-batch Adam step)
for 1 network on 1 thread and 64 networks on 2 threads, in float64 and float32,
as GFLOP/s and as % of that peak; and one forward + backward pass of the wide
1-256-256-256-1 network against the BLAS matmuls of the same pass (:class:`WidePass`,
also behind ``benchmarks/test_bench_engine.py``). The benchmarks in ``benchmarks/`` report the
same ratios. Peaks and steps are measured in interleaved rounds and each figure
is its best round (:func:`run`); a figure whose repeats or rounds differ by more
than 30 % is marked noisy (another program, or another virtual machine on the
same host, is using the cores).

FLOPs are counted as a GEMM counts them: 2 per multiply-add of the forward
pass, the weight gradients and the backpropagated deltas
(:func:`flops_per_step`); activations, biases, the loss and the optimizer are
extra work not counted.
"""
from __future__ import annotations

import os
import platform
import sys
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
    if platform.system() == "Darwin":  # no /proc/cpuinfo; "Apple M1", "Intel(R) Core(TM) i7-..."
        import subprocess
        try:
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5, check=False).stdout.strip()
        except OSError:
            brand = ""
        name = brand or name
    if platform.machine().lower() in ("arm64", "aarch64"):
        vec = "NEON"
    else:
        vec = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
                    if flag in flags), "SSE")
    return f"{name} ({vec}, {os.cpu_count()} cores)"


def compile_target() -> str:
    """The CPU numba compiles the kernels for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``
    may name another than this one), the register blocking that follows from it,
    and whether its multiply-adds run in software (no FMA)."""
    from numba.core import config

    from . import simd
    if config.CPU_NAME is not None:
        name = config.CPU_NAME
    else:
        import llvmlite.binding as ll
        name = ll.get_host_cpu_name()
    if os.environ.get("NUMBA_CPU_FEATURES") is not None:
        features = ", features from NUMBA_CPU_FEATURES"
    elif config.CPU_FEATURES is not None:  # numba's default for NUMBA_CPU_NAME=generic: none
        features = ", no optional features (baseline instruction set)"
    else:
        features = ""
    blocking = "wide" if simd.WIDE_REGISTERS else "narrow"
    fma = "" if simd.HARDWARE_FMA else "; multiply-adds in software, no FMA (mlpsim.simd.HARDWARE_FMA)"
    return f"{name}{features}; {blocking} register blocking (mlpsim.simd.WIDE_REGISTERS){fma}"


def flops_per_step(widths, n: int) -> float:
    """GEMM-counted FLOPs of one forward + backward pass over ``n`` samples."""
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))   # forward; and again for dW
    deltas = sum(a * b for a, b in zip(widths[1:-1], widths[2:]))  # W^T d for every hidden layer
    return 2.0 * n * (2 * macs + deltas)


def spread(times) -> dict:
    """Best and worst of repeated timings, and whether they differ by more than :data:`NOISY`."""
    best, worst = min(times), max(times)
    return {"best": best, "worst": worst, "noisy": (worst - best) / best > NOISY}


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
    s = spread(times)
    return {"gflops": flops / s["best"] / 1e9, "slowest_gflops": flops / s["worst"] / 1e9,
            "noisy": s["noisy"], "threads": threads}


class SeedStep:
    """Full-batch Adam steps of ``instances`` seed networks on ``threads`` threads, ready to time."""

    def __init__(self, instances: int, threads: int, dtype: str = "float64"):
        from .config import preset
        from .training import Ensemble, build_net, initial_params, training_data
        cfg = preset("seed").with_values({"train.instances": instances, "train.dtype": dtype})
        net = build_net(cfg)
        x, y, _, _ = training_data(cfg, net)
        self.instances, self.threads, self.dtype = instances, threads, dtype
        self.flops = flops_per_step(net.widths, x.shape[0]) * instances
        self.ens = Ensemble(net, cfg.train, x, y, initial_params(cfg, net))
        self.time(0.0)  # load the compiled kernels outside the timing

    def time(self, seconds: float) -> float:
        """Best seconds per step over about ``seconds`` of steps (at least two calls)."""
        import numba
        before = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            steps, best, calls = 1, float("inf"), 0
            t_end = time.perf_counter() + seconds
            while calls < 2 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                self.ens.run(steps)
                best = min(best, (time.perf_counter() - t0) / steps)
                steps, calls = min(steps * 2, 64), calls + 1
        finally:
            numba.set_num_threads(before)
        return best


#: The wide network of issue 11: its layers are BLAS-sized, so NumPy's matmuls of
#: the same pass are the yardstick (``benchmarks/test_bench_engine.py``, group "wide").
WIDE = (1, 256, 256, 256, 1)


class WidePass:
    """One float64 forward + backward pass of the wide network over 5000 samples, and the
    matmuls NumPy's BLAS needs for the same pass (nothing else), ready to time on
    ``threads`` threads."""

    def __init__(self, threads: int):
        from .model import MLP
        self.threads = threads
        self.net = MLP(list(WIDE))
        rng = np.random.default_rng(1)
        self.x = rng.uniform(-3, 3, (5000, 1))
        self.y = np.sin(self.x)
        self.theta = self.net.init(seed=0)
        self.Ws = [np.ascontiguousarray(W) for W in self.net.weights(self.theta)]
        self.acts = [self.x]
        for W in self.Ws:
            self.acts.append(self.acts[-1] @ W.T)
        self.deltas = [np.ones_like(a) for a in self.acts[1:]]
        self.time(0.0)

    def blas_matmuls(self):
        """The matmuls of the pass, nothing else: the BLAS floor."""
        a = self.x
        for W in self.Ws:  # forward
            a = a @ W.T
        for layer in range(len(self.Ws) - 1, -1, -1):  # weight gradients and deltas
            self.deltas[layer].T @ self.acts[layer]
            if layer > 0:
                self.deltas[layer] @ self.Ws[layer]

    def time(self, seconds: float) -> tuple[float, float]:
        """Best seconds of mlpsim's pass and of the BLAS matmuls, alternated for about
        ``seconds`` (at least two of each)."""
        import numba
        from threadpoolctl import threadpool_limits
        before = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        ours = blas = float("inf")
        try:
            with threadpool_limits(limits=self.threads, user_api="blas"):
                t_end, calls = time.perf_counter() + seconds, 0
                while calls < 2 or time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    self.net.loss_and_grad(self.theta, self.x, self.y)
                    t1 = time.perf_counter()
                    self.blas_matmuls()
                    ours, blas = min(ours, t1 - t0), min(blas, time.perf_counter() - t1)
                    calls += 1
        finally:
            numba.set_num_threads(before)
        return ours, blas


def seed_step(instances: int, threads: int, dtype: str = "float64", seconds: float = 1.0) -> dict:
    """Time full-batch Adam steps of ``instances`` seed networks on ``threads`` threads."""
    step = SeedStep(instances, threads, dtype)
    best = step.time(seconds)
    return {"instances": instances, "threads": threads, "dtype": dtype, "seconds_per_step": best,
            "gflops": step.flops / best / 1e9}


def _to_stderr(message: str):
    print(message, file=sys.stderr, flush=True)


def compile_notice() -> str | None:
    """What a cold start will compile before the first figure (None when both dtypes are cached)."""
    from . import _jit, kernels
    return _jit.compile_notice(kernels.train_steps, dtypes=("float64", "float32"))


def run(seconds: float = 2.0, rounds: int = 3, log=print, cores=None, say=_to_stderr) -> dict:
    """Measure and print everything (about 20 s with the defaults).

    The GEMM peaks and the seed steps are measured in ``rounds`` interleaved rounds
    (each seed figure gets ``seconds / rounds`` per round), and each figure is its
    best round: a virtual machine's speed drifts by tens of percent over seconds,
    and a peak measured in a fast moment against a step timed in a slow one (or
    the reverse) would make the ratio say more about the neighbours than about
    mlpsim. A figure whose rounds differ by more than 30 % is marked noisy.
    ``cores``: the thread count of the ensemble figures (default 2, or fewer on a
    smaller machine). ``log`` receives the figures, ``say`` the progress (a
    cold start's compile notice, then each round): standard output and standard
    error by default.
    """
    import numba
    if cores is None:
        cores = min(2, numba.config.NUMBA_NUM_THREADS)
    log(f"CPU: {cpu_name()}")
    log(f"kernels compiled for: {compile_target()}")
    from .simd import fma_warning
    warning = fma_warning()
    if warning:
        log(warning)
    threads = sorted({1, cores})
    cases = [(instances, t, dtype) for instances, t in ((1, 1), (64, cores)) for dtype in ("float64", "float32")]
    notice = compile_notice()
    if notice:
        say(notice)
    steps = {case: SeedStep(*case) for case in cases}
    wide = WidePass(cores)
    peak_rounds = {t: [] for t in threads}
    step_rounds = {case: [] for case in cases}
    wide_rounds = []
    for k in range(rounds):
        say(f"measuring: round {k + 1}/{rounds}")
        for t in threads:
            peak_rounds[t].append(gemm_peak(t, repeats=3))
            for case in cases:
                if case[1] == t:
                    step_rounds[case].append(steps[case].time(seconds / rounds))
        wide_rounds.append(wide.time(seconds / rounds / 2))
    peaks = {}
    for t in threads:
        best = max(peak_rounds[t], key=lambda p: p["gflops"])
        slowest = min(p["slowest_gflops"] for p in peak_rounds[t])
        noisy = any(p["noisy"] for p in peak_rounds[t]) or spread([1 / p["gflops"] for p in peak_rounds[t]])["noisy"]
        peaks[t] = {"gflops": best["gflops"], "slowest_gflops": slowest, "noisy": noisy, "threads": t}
        # How many cores' worth the threads got: on a shared virtual machine two
        # threads often get 1.6-1.9 cores, which caps every multi-thread figure.
        scaling = f" = {best['gflops'] / peaks[1]['gflops']:.2f}x 1 thread" if t > 1 and 1 in peaks else ""
        log(f"float64 GEMM peak, {t} thread(s): {best['gflops']:.1f} GFLOP/s{scaling}"
            + (f"  (NOISY: slowest {slowest:.1f}; another program is using the cores, "
               "so the ratios below are uncertain)" if noisy else ""))
    results = []
    for case in cases:
        instances, t, dtype = case
        s = spread(step_rounds[case])
        gflops = steps[case].flops / s["best"] / 1e9
        r = {"instances": instances, "threads": t, "dtype": dtype, "seconds_per_step": s["best"],
             "gflops": gflops, "share_of_peak": gflops / peaks[t]["gflops"], "noisy": s["noisy"],
             "rounds": step_rounds[case]}
        results.append(r)
        log(f"seed step, {instances:2d} net(s), {t} thread(s), {dtype}: "
            f"{s['best'] * 1e6 / instances:8.1f} us per net-step, {gflops:6.1f} GFLOP/s, "
            f"{100 * r['share_of_peak']:5.1f} % of the {t}-thread float64 GEMM peak"
            + (f"  (NOISY: slowest round {s['worst'] * 1e6 / instances:.1f} us)" if s["noisy"] else ""))
    by = {(r["instances"], r["dtype"]): r for r in results}
    for instances in (1, 64):
        ratio = by[(instances, "float32")]["gflops"] / by[(instances, "float64")]["gflops"]
        log(f"float32 / float64 throughput, {instances} net(s): {ratio:.2f}x")
    ours, blas = min(r[0] for r in wide_rounds), min(r[1] for r in wide_rounds)
    wide_result = {"threads": cores, "seconds": ours, "blas_seconds": blas, "ratio": ours / blas,
                   "noisy": spread([r[0] for r in wide_rounds])["noisy"] or spread([r[1] for r in wide_rounds])["noisy"]}
    log(f"wide net {'-'.join(map(str, WIDE))}, forward + backward, {cores} thread(s), float64: "
        f"{ours * 1e3:.1f} ms; NumPy's BLAS matmuls of the same pass: {blas * 1e3:.1f} ms ({ours / blas:.2f}x)"
        + ("  (NOISY)" if wide_result["noisy"] else ""))
    return {"cpu": cpu_name(), "peaks": peaks, "results": results, "wide": wide_result}
