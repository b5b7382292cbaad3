"""``mlpsim bench``: what it counts, when it calls a figure noisy, and what it prints."""
import subprocess
import sys

import pytest

from mlpsim import bench


def test_flops_are_counted_as_gemm_counts_them():
    # seed network 1-8-8-8-1: forward 8 + 64 + 64 + 8 = 144 multiply-adds per sample, weight
    # gradients 144 again, deltas into the hidden layers 64 + 64 + 8 = 136; 2 FLOPs each
    assert bench.flops_per_step((1, 8, 8, 8, 1), 5000) == 2 * 5000 * (144 + 144 + 136)
    assert bench.flops_per_step((3, 2), 10) == 2 * 10 * (6 + 6)  # one layer: no delta


def test_spread_is_noisy_beyond_30_percent():
    assert bench.spread([1.0, 1.25, 1.1]) == {"best": 1.0, "worst": 1.25, "noisy": False}
    assert bench.spread([2.0, 2.61])["noisy"] and not bench.spread([2.0, 2.59])["noisy"]


class FakeStep:
    """Seed steps whose timings are given: 1 net 100 us, 64 nets 64 x 50 us, float32 twice as
    fast; the 64-net float64 figure drifts by 50 % between rounds."""

    def __init__(self, instances, threads, dtype):
        self.case = (instances, threads, dtype)
        self.flops = 1e6 * instances
        per_net = (100e-6 if instances == 1 else 50e-6) / (2 if dtype == "float32" else 1)
        drift = [1.0, 1.5, 1.2] if (instances, dtype) == (64, "float64") else [1.1, 1.0, 1.05]
        self.times = [per_net * instances * d for d in drift]

    def time(self, seconds):
        return self.times.pop(0)


class FakeWide:
    """A wide pass of 45, 42, 60 ms in the three rounds, against BLAS matmuls of 40 ms."""

    def __init__(self, threads):
        self.times = [(0.045, 0.040), (0.042, 0.041), (0.060, 0.040)]

    def time(self, seconds):
        return self.times.pop(0)


def test_each_figure_is_its_best_round_and_a_drifting_one_is_marked(monkeypatch):
    peaks = iter([50.0, 100.0, 40.0, 90.0, 52.0, 60.0])  # GFLOP/s: 1 thread, 2 threads, per round

    def gemm(threads, repeats=5):
        g = next(peaks)
        return {"gflops": g, "slowest_gflops": g * 0.95, "noisy": False, "threads": threads}
    monkeypatch.setattr(bench, "gemm_peak", gemm)
    monkeypatch.setattr(bench, "SeedStep", FakeStep)
    monkeypatch.setattr(bench, "WidePass", FakeWide)
    lines, said = [], []
    monkeypatch.setattr(bench, "compile_notice", lambda: None)
    out = bench.run(seconds=0.3, rounds=3, log=lines.append, cores=2, say=said.append)
    assert said == ["measuring: round 1/3", "measuring: round 2/3", "measuring: round 3/3"]
    assert out["peaks"][1]["gflops"] == 52.0 and not out["peaks"][1]["noisy"]
    assert out["peaks"][2]["gflops"] == 100.0 and out["peaks"][2]["noisy"]  # 100 vs 60: 67 % apart
    by = {(r["instances"], r["dtype"]): r for r in out["results"]}
    assert by[(1, "float64")]["seconds_per_step"] == pytest.approx(100e-6)
    assert by[(1, "float64")]["share_of_peak"] == pytest.approx(1e6 / 100e-6 / 1e9 / 52.0)
    assert by[(64, "float64")]["noisy"] and not by[(64, "float32")]["noisy"]
    text = "\n".join(lines)
    assert "float64 GEMM peak, 1 thread(s): 52.0 GFLOP/s\n" in text + "\n"
    assert "float64 GEMM peak, 2 thread(s): 100.0 GFLOP/s = 1.92x 1 thread  (NOISY" in text
    assert "64 net(s), 2 thread(s), float64:     50.0 us per net-step" in text
    assert "NOISY: slowest round 75.0 us" in text
    assert "float32 / float64 throughput, 64 net(s): 2.00x" in text
    # the wide pass: best of each, as a multiple of BLAS (42 / 40 ms); 60 vs 42 ms is noisy
    assert out["wide"]["ratio"] == pytest.approx(0.042 / 0.040) and out["wide"]["noisy"]
    assert ("wide net 1-256-256-256-1, forward + backward, 2 thread(s), float64: 42.0 ms; NumPy's BLAS matmuls "
            "of the same pass: 40.0 ms (1.05x)  (NOISY)") in text


def test_a_cold_start_names_what_it_compiles(monkeypatch):
    from mlpsim import _jit
    monkeypatch.setattr(_jit, "cached", lambda *d, dtype=None: dtype == "float64")  # float32 not yet
    assert bench.compile_notice() == (f"compiling kernels, once: ~{_jit.TRAINING_COMPILE_SECONDS} s "
                                      "(float32; cached for every later run)")
    monkeypatch.setattr(_jit, "cached", lambda *d, dtype=None: False)
    assert "~34 s (float64 and float32;" in bench.compile_notice()
    monkeypatch.setattr(_jit, "cached", lambda *d, dtype=None: True)
    assert bench.compile_notice() is None


def test_the_command_prints_every_figure():
    proc = subprocess.run([sys.executable, "-m", "mlpsim", "bench", "--seconds", "0.1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "cores)" in lines[0]
    assert lines[1].startswith("kernels compiled for: ") and "register blocking" in lines[1]
    assert sum("GEMM peak" in line for line in lines) >= 1
    assert sum("% of the" in line and "GFLOP/s" in line for line in lines) == 4
    assert sum("float32 / float64 throughput" in line for line in lines) == 2
    assert sum(line.startswith("wide net 1-256-256-256-1, forward + backward") and "BLAS" in line for line in lines) == 1


@pytest.mark.parametrize("args,message", [(["--seconds", "0"], "--seconds: need a number > 0"),
                                          (["--rounds", "two"], "--rounds: need a whole number >= 1")])
def test_bad_arguments_are_refused(args, message):
    proc = subprocess.run([sys.executable, "-m", "mlpsim", "bench", *args], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_compile_target_names_the_blocking(monkeypatch):
    from numba.core import config

    from mlpsim import simd
    monkeypatch.setattr(config, "CPU_NAME", "generic")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma")
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,+fma")
    monkeypatch.setattr(simd, "WIDE_REGISTERS", False)
    monkeypatch.setattr(simd, "HARDWARE_FMA", True)
    assert bench.compile_target() == ("generic, features from NUMBA_CPU_FEATURES; narrow register blocking "
                                      "(mlpsim.simd.WIDE_REGISTERS)")
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setattr(simd, "WIDE_REGISTERS", True)
    assert bench.compile_target() == "generic; wide register blocking (mlpsim.simd.WIDE_REGISTERS)"
    # NUMBA_CPU_NAME=generic alone: numba compiles for the baseline, without FMA
    monkeypatch.setattr(config, "CPU_FEATURES", "")
    monkeypatch.setattr(simd, "WIDE_REGISTERS", False)
    monkeypatch.setattr(simd, "HARDWARE_FMA", False)
    assert bench.compile_target() == ("generic, no optional features (baseline instruction set); narrow register "
                                      "blocking (mlpsim.simd.WIDE_REGISTERS); multiply-adds in software, no FMA "
                                      "(mlpsim.simd.HARDWARE_FMA)")


def _run_faked(monkeypatch, warning):
    """The lines ``bench.run`` prints with fake peaks and steps, and ``warning`` as the FMA warning."""
    from mlpsim import simd
    monkeypatch.setattr(bench, "gemm_peak", lambda threads, repeats=5: {
        "gflops": 50.0 * threads, "slowest_gflops": 45.0 * threads, "noisy": False, "threads": threads})
    monkeypatch.setattr(bench, "SeedStep", FakeStep)
    monkeypatch.setattr(bench, "WidePass", FakeWide)
    monkeypatch.setattr(bench, "compile_notice", lambda: None)
    monkeypatch.setattr(simd, "fma_warning", lambda: warning)
    lines = []
    bench.run(seconds=0.3, rounds=3, log=lines.append, cores=2, say=lambda message: None)
    return lines


def test_bench_says_when_the_kernels_multiply_add_in_software(monkeypatch):
    lines = _run_faked(monkeypatch, warning="mlpsim: this CPU has no FMA instructions: ...")
    assert lines[2] == "mlpsim: this CPU has no FMA instructions: ..."  # beside the compile target
    assert not any("FMA instructions" in line for line in _run_faked(monkeypatch, warning=None))


@pytest.mark.parametrize("system,machine,cpuinfo,sysctl,expected", [
    ("Linux", "x86_64", "model name\t: Intel(R) Xeon(R) E5-2670\nflags\t: fpu sse2 avx\n", None, "Intel(R) Xeon(R) E5-2670 (AVX,"),
    ("Linux", "x86_64", "model name\t: AMD EPYC 7B13\nflags\t: avx avx2 fma\n", None, "AMD EPYC 7B13 (AVX2,"),
    ("Linux", "x86_64", "model name\t: Intel Atom\nflags\t: sse2 sse4_2\n", None, "Intel Atom (SSE,"),
    ("Darwin", "arm64", None, "Apple M1\n", "Apple M1 (NEON,"),
])
def test_the_cpu_is_named_with_its_widest_vectors(monkeypatch, system, machine, cpuinfo, sysctl, expected):
    import builtins
    import io
    import platform
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            if cpuinfo is None:
                raise FileNotFoundError(path)
            return io.StringIO(cpuinfo)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=sysctl or ""))
    assert bench.cpu_name().startswith(expected)


def test_the_wide_pass_times_mlpsim_and_the_blas_matmuls_of_the_same_pass():
    wide = bench.WidePass(threads=1)
    shapes = [a.shape for a in wide.acts]
    assert shapes == [(5000, 1), (5000, 256), (5000, 256), (5000, 256), (5000, 1)]
    ours, blas = wide.time(0.0)
    assert 0 < ours < 10 and 0 < blas < 10
