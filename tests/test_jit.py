"""numba set-up: the compile notice, the cache lock, the spin count of idle OpenMP threads."""
import importlib.util
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import mlpsim
from mlpsim import _jit, kernels

SOURCE = '''
from mlpsim._jit import kernel

@kernel
def twice(x):
    return 2.0 * x
'''


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notice_until_compiled_then_silent(tmp_path):
    # numba caches beside the source file (in __pycache__), here a fresh folder
    path = tmp_path / "fresh_kernel.py"
    path.write_text(SOURCE)
    fresh = _load(path)
    notice = _jit.compile_notice(fresh.twice, seconds=12)
    assert notice == "compiling kernels, once: ~12 s (cached for every later run)"
    assert fresh.twice(1.5) == 3.0  # compiles, and writes the cache
    assert _jit.compile_notice(fresh.twice) is None
    # a new process reads the same cache: still silent
    code = (f"import importlib.util, sys; sys.path.insert(0, {str(tmp_path)!r}); import fresh_kernel;"
            "from mlpsim._jit import cached; print(cached(fresh_kernel.twice))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    # an edited source makes the cached code stale: the notice comes back
    path.write_text(SOURCE.replace("2.0 * x", "2.0 * x + 0.0"))
    assert _jit.compile_notice(_load(path).twice) is not None


SCALE = '''
from mlpsim._jit import kernel

@kernel
def scale(a):
    for i in range(a.shape[0]):
        a[i] *= 2.0
'''


def test_the_cache_counts_per_dtype_and_per_cpu_target(tmp_path):
    path = tmp_path / "scale_kernel.py"
    path.write_text(SCALE)
    fresh = _load(path)
    fresh.scale(np.ones(3))  # float64 machine code, cached
    assert _jit.cached(fresh.scale) and _jit.cached(fresh.scale, dtype="float64")
    assert not _jit.cached(fresh.scale, dtype="float32")  # float32 training would still compile
    assert _jit.compile_notice(fresh.scale, seconds=5, dtypes=("float64", "float32")) == (
        "compiling kernels, once: ~5 s (float32; cached for every later run)")
    fresh.scale(np.ones(3, dtype=np.float32))
    assert _jit.cached(fresh.scale, dtype="float32")
    # machine code for another CPU target does not count here
    other = tmp_path / "other"
    other.mkdir()
    (other / "scale_kernel.py").write_text(SCALE)
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(other)!r}); import scale_kernel;"
            "scale_kernel.scale(np.ones(3))")
    env = dict(os.environ, NUMBA_CPU_NAME="generic")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not _jit.cached(_load(other / "scale_kernel.py").scale)


def test_train_says_it_compiles_unless_quiet(tmp_path, monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(_jit, "cached", lambda *d, dtype=None: asked.extend([*d, dtype]) or False)  # as on a cold machine
    mlpsim.train(mlpsim.preset("tiny"), tmp_path / "a", overrides=["train.steps=2", "train.dtype=float32"],
                 progress="lines")
    assert "compiling kernels, once: ~" in capsys.readouterr().err
    assert asked == [kernels.train_steps, "float32"]  # the kernel train() calls first, for the run's dtype
    mlpsim.train(mlpsim.preset("tiny"), tmp_path / "b", overrides=["train.steps=2"], progress=False)
    assert "compiling" not in capsys.readouterr().err


COMPILE_ONCE = '''
import numba
import numpy as np
import pytest
from mlpsim import kernels
from mlpsim.training import Ensemble, build_net, initial_params, training_data
import mlpsim
cfg = mlpsim.preset("tiny").with_values({"train.instances": 2})
net = build_net(cfg)
x, y, _, _ = training_data(cfg, net)
Ensemble(net, cfg.train, x[:300], y[:300], initial_params(cfg, net)).run(1)  # one whole chunk and a short one
from mlpsim import simd
names = ("chunk_gradient", "forward_chunk", "backward_chunk", "layer_grads", "dense_forward", "dense_delta",
         "grads_1x4", "bias_grads_4", "update_instance", "reduce_chunks")
names += (("grads_4x1", "grads_2x4") if simd.WIDE_REGISTERS else
          ("grads_2x1_narrow", "grads_2x2_narrow", "half_grads_2x2", "half_grads_2x1", "half_grads_1x4",
           "half_bias_4"))
print(" ".join(f"{n}={len(getattr(kernels, n).signatures)}" for n in names))
'''


def test_the_training_kernels_compile_once_per_dtype(tmp_path):
    # Numba compiles a kernel again for every new combination of argument types, and
    # a literal 0 has its own type: passing one where other calls pass an int64
    # doubled the cold start (29.6 s instead of 17). An empty cache makes it compile.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", COMPILE_ONCE], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    counts = dict(item.split("=") for item in out.stdout.split())
    assert counts and all(c == "1" for c in counts.values()), out.stdout


def test_two_processes_saving_one_kernel_at_once_keep_index_and_machine_code_together(tmp_path, monkeypatch):
    """numba's own cache files let a float64 entry name float32 machine code when two
    processes save at once; mlpsim's lock keeps them consistent.

    Two writers (threads with their own lock descriptors, as two processes would
    have) are steered into the interleaving that corrupts: both read the index
    before either writes it, the second writes index and data, the first its data
    last. With the lock the second waits instead, and both entries survive.
    """
    import threading

    from numba.core import caching
    stamp = "source-stamp"
    files = [_jit._LockedCacheFile(str(tmp_path), "kernel", stamp) for _ in range(2)]
    a_loaded, b_loaded, a_index_saved, b_done = (threading.Event() for _ in range(4))
    wait = 1.0  # each step waits at most this long for the other writer (it cannot come under the lock)
    original_load, original_save_index, original_save_data = (
        caching.IndexDataCacheFile._load_index, caching.IndexDataCacheFile._save_index,
        caching.IndexDataCacheFile._save_data)

    def load_index(self):
        index = original_load(self)
        if self is files[0]:
            a_loaded.set()
            b_loaded.wait(wait)
        else:
            b_loaded.set()
            a_index_saved.wait(wait)
        return index

    def save_index(self, overloads):
        original_save_index(self, overloads)
        if self is files[0]:
            a_index_saved.set()

    def save_data(self, name, data):
        if self is files[0]:
            b_done.wait(wait)
        original_save_data(self, name, data)

    monkeypatch.setattr(caching.IndexDataCacheFile, "_load_index", load_index)
    monkeypatch.setattr(caching.IndexDataCacheFile, "_save_index", save_index)
    monkeypatch.setattr(caching.IndexDataCacheFile, "_save_data", save_data)
    first = threading.Thread(target=files[0].save, args=("float64", "float64 machine code"))
    first.start()
    assert a_loaded.wait(5)
    files[1].save("float32", "float32 machine code")
    b_done.set()
    first.join()
    monkeypatch.undo()
    reader = caching.IndexDataCacheFile(str(tmp_path), "kernel", stamp)
    assert reader.load("float32") == "float32 machine code"  # numba's: float64 code, run on float32 arrays
    assert reader.load("float64") == "float64 machine code"


def test_the_kernels_use_the_locked_cache():
    assert type(kernels.train_steps._cache._cache_file) is _jit._LockedCacheFile
    assert type(kernels.chunk_gradients._cache._cache_file) is _jit._LockedCacheFile


def _libgomp_spin_count(tmp_path, **env_vars):
    """The spin count libgomp reports it loaded with, in a training process (None: not GNU OpenMP)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(OMP_DISPLAY_ENV="verbose", **env_vars)
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    proc = subprocess.run([sys.executable, "-m", "mlpsim", "train", "--preset", "tiny", "--set", "train.steps=2",
                           "--threads", "2", "--quiet", "--out", str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip().startswith("GOMP_SPINCOUNT")]
    return lines[0].split("=")[1].strip().strip("'") if lines else None


def test_idle_openmp_threads_spin_briefly_unless_the_user_chose(tmp_path):
    # two processes whose waiting threads spin on each other's cores run 38x slower (see _jit.OMP_SPIN)
    if numba.config.THREADING_LAYER not in ("default", "omp", "safe", "threadsafe"):
        pytest.skip(f"numba's threading layer is {numba.config.THREADING_LAYER}")
    spin = _libgomp_spin_count(tmp_path)
    if spin is None:
        pytest.skip("numba's OpenMP is not GNU libgomp")
    assert spin == _jit.OMP_SPIN
    assert _libgomp_spin_count(tmp_path, GOMP_SPINCOUNT="5000") == "5000"
    assert _libgomp_spin_count(tmp_path, OMP_WAIT_POLICY="active") != _jit.OMP_SPIN
