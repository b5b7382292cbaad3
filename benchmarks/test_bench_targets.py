"""``mlpsim bench`` with the kernels compiled for other CPUs than this one.

Issue 11 began with kernels whose speed depended on the CPU LLVM believed it was
tuning for (1.8x between two tunings of one machine). The kernels now state their
vectors themselves (``mlpsim/simd.py``); this benchmark checks that the share of
the peak holds whatever LLVM is told: other tunings with this CPU's features, an
AVX2-only target (``NUMBA_CPU_NAME=generic`` and AVX2 + FMA features, the issue's
stand-in for an older CPU), and an AVX target without FMA (Sandy Bridge), whose
multiply-adds are emulated (``simd.HARDWARE_FMA``). Each target compiles from
scratch in a cache of its own (about 40 s) and runs ``mlpsim bench`` (about 20 s),
with OpenBLAS told the same CPU class (``OPENBLAS_CORETYPE``), so that each share
is of the peak such a CPU would have. Slow, so marked ``slow``::

    python -m pytest benchmarks/test_bench_targets.py -m slow --benchmark-enable -s
"""
import os
import re
import subprocess
import sys

import pytest
from test_golden import AVX2_ONLY

AVX_NO_FMA = {"NUMBA_CPU_NAME": "sandybridge",
              "NUMBA_CPU_FEATURES": "+64bit,+avx,+cmov,+cx16,+fxsr,+mmx,+popcnt,+sse,+sse2,+sse3,+sse4.1,"
                                    "+sse4.2,+ssse3,+xsave",
              "OPENBLAS_CORETYPE": "Sandybridge"}

TARGETS = {
    "this CPU": {},
    "znver4 tuning": {"NUMBA_CPU_NAME": "znver4"},
    "skylake-avx512 tuning": {"NUMBA_CPU_NAME": "skylake-avx512"},
    "AVX2 + FMA, generic tuning": {**AVX2_ONLY, "OPENBLAS_CORETYPE": "Haswell"},
    "AVX2 + FMA, znver3 tuning": {**AVX2_ONLY, "NUMBA_CPU_NAME": "znver3", "OPENBLAS_CORETYPE": "Haswell"},
    "AVX without FMA (emulated)": AVX_NO_FMA,
}

FIGURE = re.compile(r"seed step, +(\d+) net\(s\), \d thread\(s\), (float\d\d): +([\d.]+) us per net-step, +[\d.]+ "
                    r"GFLOP/s, +([\d.]+) % of")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
                    reason="the targets are x86-64 CPUs")
@pytest.mark.parametrize("target", list(TARGETS))
def test_share_of_peak_whatever_llvm_is_told(benchmark, tmp_path, target):
    env = {**os.environ, **TARGETS[target], "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    if "sandybridge" in env.get("NUMBA_CPU_NAME", ""):  # the C library too, as on a CPU without FMA
        env["GLIBC_TUNABLES"] = "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4,-AVX512F"
    exe = os.path.join(os.path.dirname(sys.executable), "mlpsim")
    proc = subprocess.run([exe, "bench"], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = {(int(n), dtype): (float(us), float(share)) for n, dtype, us, share in FIGURE.findall(proc.stdout)}
    assert len(figures) == 4, proc.stdout
    benchmark.extra_info.update({f"{n} nets {dtype} % of peak": share for (n, dtype), (_, share) in figures.items()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n{target}:\n" + "\n".join(line for line in proc.stdout.splitlines()
                                      if line.startswith(("kernels", "float64 GEMM", "seed step", "float32 /"))))
