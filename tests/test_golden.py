"""The same bits on every machine: a short seed run's files against committed hashes.

These values are a promise: a run of this configuration gives these bytes on
any x86-64 (or other IEEE-754) CPU, for any thread count. They change only with
:data:`mlpsim.kernels.ENGINE_VERSION` (a documented change of the order of
operations, said why in its commit); a failure anywhere else means the engine's
results now depend on the machine, the thread count or an unintended change.
"""
import hashlib
import os
import subprocess
import sys

import pytest

import mlpsim
from mlpsim import kernels

GOLDEN = {  # engine version -> dtype -> file -> sha256
    1: {
        "float64": {"params.npy": "ad066c000ca497d0860982a823d4fcef224254841402471890675f35ae3c28a4",
                    "loss_steps.npy": "cef88ba1662a3ac0fc810a29d2cd690c8854a86bf482bbba3a8dce6597d24206"},
        "float32": {"params.npy": "54162d5a22f91c6aeabcce08ade3c45d8beaedc207832297c5fd40d36f220620",
                    "loss_steps.npy": "91e49981504a92489ca238209214fbdb1b4b351605788ffe9ee255bfd687954f"},
    },
    # 2: explicit SIMD vectors, every multiply-add fused (llvm.fma), sums over samples
    # in 2 x 64 bytes of lanes folded by halves, chunks of 32 x 64 bytes (256
    # float64 / 512 float32 samples); float32 entirely in float32.
    2: {
        "float64": {"params.npy": "af5574b10d8d9d57dc9b83800854ab6e1d381d3874cf9f3c223047220fb62f38",
                    "loss_steps.npy": "560078632090230f487eb1f5f985d20ac15ced8b535f691e33849ee5a4435683"},
        "float32": {"params.npy": "a0f54e6d6ee2acb4380503bfa9450268516dea67b3227b19ea6ed6773ef3ecf2",
                    "loss_steps.npy": "1e920322bc8155b02fa7a5e39aec85136fb89737bd519a00e18c461f10b503c8"},
    },
    # 3: tanh is mlpsim.simd.stanh (correctly rounded operations only), not the C
    # library's; relu runs keep version 2's bytes. tanh runs are the seed run with
    # model.activation = "tanh".
    3: {
        "float64": {"params.npy": "af5574b10d8d9d57dc9b83800854ab6e1d381d3874cf9f3c223047220fb62f38",
                    "loss_steps.npy": "560078632090230f487eb1f5f985d20ac15ced8b535f691e33849ee5a4435683"},
        "float32": {"params.npy": "a0f54e6d6ee2acb4380503bfa9450268516dea67b3227b19ea6ed6773ef3ecf2",
                    "loss_steps.npy": "1e920322bc8155b02fa7a5e39aec85136fb89737bd519a00e18c461f10b503c8"},
        "tanh float64": {"params.npy": "83945e88b1bea215d299be70539a97d7965727d3b796f99bab33022b5d4ca388",
                         "loss_steps.npy": "6df6d90b8b050646aef9aa9db505526131bdd309011e044d00939594d61aba39"},
        "tanh float32": {"params.npy": "ec92b4e1dc9cf5232358d522068fbe875e4a68fd3ffd81afe940a5e89727024a",
                         "loss_steps.npy": "b359fe4de764d17d21b70bb69e2d012d4ec46f0988f167365b1b1421c4a98b39"},
    },
    # 4: Adam's bias corrections correctly rounded (kernels.integer_power), not by
    # numba's repeated squaring; float32 runs keep version 3's bytes.
    4: {
        "float64": {"params.npy": "2c3a61d65f1441ee534ae28fe08d726dc1e78dfa80949a083652d3d73f85561d",
                    "loss_steps.npy": "919c832e4b8f8897f5f1f41638c295b8f4a6add0f9051358e02d83de9f0d41a3"},
        "float32": {"params.npy": "a0f54e6d6ee2acb4380503bfa9450268516dea67b3227b19ea6ed6773ef3ecf2",
                    "loss_steps.npy": "1e920322bc8155b02fa7a5e39aec85136fb89737bd519a00e18c461f10b503c8"},
        "tanh float64": {"params.npy": "ba134af1c2b184f46e12c6ab453efa22641145e4abc5c1a3f732cddf77ffc899",
                         "loss_steps.npy": "2a3a3afe645e72e35817e184d695ffcebfffa6f49c25e8d451cad0263a9a3219"},
        "tanh float32": {"params.npy": "ec92b4e1dc9cf5232358d522068fbe875e4a68fd3ffd81afe940a5e89727024a",
                         "loss_steps.npy": "b359fe4de764d17d21b70bb69e2d012d4ec46f0988f167365b1b1421c4a98b39"},
    },
}

#: An x86-64 CPU with AVX2 and FMA but no AVX-512, as LLVM sees it.
AVX2_ONLY = {"NUMBA_CPU_NAME": "generic",
             "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+cmov,+cx16,+f16c,+fma,+fxsr,+mmx,+popcnt,+sse,+sse2,"
                                   "+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"}

#: An x86-64 CPU without FMA or AVX (SSE4.2, about 2008): every fused multiply-add
#: is emulated exactly (``mlpsim.simd_ir.emulated_fma``), so the same bits.
SSE_ONLY = {"NUMBA_CPU_NAME": "generic",
            "NUMBA_CPU_FEATURES": "+64bit,+cmov,+cx16,+fxsr,+mmx,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3"}

SCRIPT = """
import hashlib, json, sys
from pathlib import Path
import mlpsim
out, dtype, threads, activation = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
mlpsim.train(mlpsim.preset("seed"), out, overrides=["train.steps=200", f"train.dtype='{dtype}'",
                                                   f"model.activation='{activation}'"],
             progress=False, threads=threads)
print(json.dumps({f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in ("params.npy", "loss_steps.npy")}))
print(json.dumps(mlpsim.simd.HARDWARE_FMA))
"""


def _hashes(tmp_path, dtype, threads, env=None, activation="relu", hardware_fma=None):
    """The sha256 of a 200-step seed run's files, trained in another process (with
    ``hardware_fma``: also checks whether its kernels had FMA instructions)."""
    out = tmp_path / f"{activation}-{dtype}-{threads}"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), dtype, str(threads), activation],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    hashes, fma = (__import__("json").loads(line) for line in proc.stdout.splitlines())
    assert hardware_fma is None or fma == hardware_fma
    return hashes


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_short_seed_run_gives_the_golden_bytes(tmp_path, dtype):
    run = mlpsim.train(mlpsim.preset("seed"), tmp_path / "run", overrides=["train.steps=200", f"train.dtype='{dtype}'"],
                       progress=False, threads=2)
    got = {f: hashlib.sha256((run.path / f).read_bytes()).hexdigest() for f in ("params.npy", "loss_steps.npy")}
    assert run.manifest["engine"]["version"] == kernels.ENGINE_VERSION
    assert got == GOLDEN[kernels.ENGINE_VERSION][dtype]
    assert _hashes(tmp_path, dtype, 1) == got  # another process, one thread


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_short_tanh_run_gives_the_golden_bytes(tmp_path, dtype):
    # tanh is mlpsim's own (simd.stanh), not the C library's, whose bits change with the CPU
    got = _hashes(tmp_path, dtype, 2, activation="tanh")
    assert got == GOLDEN[kernels.ENGINE_VERSION][f"tanh {dtype}"]
    assert _hashes(tmp_path, dtype, 1, activation="tanh") == got


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("cpu", ["avx2", "sse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_golden_bytes_on_older_cpus(tmp_path, dtype, cpu, activation):
    # compiles from scratch for the other CPU (about 30 s), in a cache of its own
    env = {**{"avx2": AVX2_ONLY, "sse": SSE_ONLY}[cpu], "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    key = dtype if activation == "relu" else f"tanh {dtype}"
    got = _hashes(tmp_path, dtype, 2, env, activation, hardware_fma=cpu == "avx2")
    assert got == GOLDEN[kernels.ENGINE_VERSION][key]
