"""The run store: flat memory in the number of checkpoints, and the files' contract."""
import subprocess
import sys

import numpy as np
import pytest

import mlpsim
from mlpsim.store import NpyRows, RunError

SCRIPT = """
import resource, mlpsim
cfg = mlpsim.preset("seed").with_overrides([
    "model.widths=[1, 32, 32, 1]", "data.n=64", "train.steps=2000", "train.instances=8",
    "train.dtype='float32'", "train.checkpoint_every={every}"])
mlpsim.train(cfg, {out!r}, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(out, every):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(out=str(out), every=every)],
                          capture_output=True, text=True, timeout=300, check=True)
    return int(proc.stdout.split()[-1])


def test_memory_stays_flat_in_the_number_of_checkpoints(tmp_path):
    few = peak_rss_kib(tmp_path / "few", 2000)      # 2 checkpoints
    many = peak_rss_kib(tmp_path / "many", 1)       # 2001 checkpoints, 74 MB of parameters
    size = (tmp_path / "many" / "params.npy").stat().st_size
    assert size > 70e6
    assert (many - few) * 1024 < 0.15 * size, (few, many, size)


def test_npy_rows_round_trip(tmp_path):
    f = NpyRows(tmp_path / "a.npy", (3, 4, 5), np.float32)
    f.write((1, 2), np.arange(5))
    f.write((2,), np.ones((4, 5)))
    f.sync()
    f.close()
    a = np.load(tmp_path / "a.npy")
    assert np.array_equal(a[1, 2], np.arange(5)) and np.all(a[2] == 1) and np.all(a[0] == 0)
    with pytest.raises(RunError, match="expected"):
        NpyRows(tmp_path / "a.npy", (3, 4), np.float32, create=False)


def test_load_run_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        mlpsim.load_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not an mlpsim run directory"):
        mlpsim.load_run(tmp_path / "empty")
