"""The compile notice: said before a cold start compiles, silent once numba's cache holds the code."""
import importlib.util
import subprocess
import sys

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


def test_train_says_it_compiles_unless_quiet(tmp_path, monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(_jit, "cached", lambda *d: asked.extend(d) or False)  # as on a cold machine
    mlpsim.train(mlpsim.preset("tiny"), tmp_path / "a", overrides=["train.steps=2"], progress="lines")
    assert "compiling kernels, once: ~" in capsys.readouterr().err
    assert kernels.train_steps in asked  # the kernel train() calls first is the one checked
    mlpsim.train(mlpsim.preset("tiny"), tmp_path / "b", overrides=["train.steps=2"], progress=False)
    assert "compiling" not in capsys.readouterr().err
