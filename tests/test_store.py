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


def test_atomic_write_keeps_the_old_file_when_the_replace_fails(tmp_path, monkeypatch):
    import os

    from mlpsim import store
    path = tmp_path / "manifest.json"
    store.atomic_write_json(path, {"status": "running", "n": 1})
    def broken_replace(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        store.atomic_write_json(path, {"status": "complete", "n": 2})
    assert store.read_json(path) == {"status": "running", "n": 1}  # never a half-written file


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(RunError, match="not an mlpsim run"):
        mlpsim.train("tiny", precious, overwrite=True, progress=False)
    assert (precious / "thesis.tex").exists()


def test_resume_with_other_masks_is_refused(tmp_path):
    import json
    mask = np.eye(8, dtype=int)
    mlpsim.train("tiny", tmp_path / "r", masks=[None, mask, None, None], progress=False)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    m["status"] = "interrupted"
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RunError, match="mask of layer 2"):
        mlpsim.train("tiny", tmp_path / "r", resume=True, progress=False)
    with pytest.raises(RunError, match="mask of layer 2"):
        mlpsim.train("tiny", tmp_path / "r", masks=[None, 1 - mask, None, None], resume=True, progress=False)


def test_select_instances_takes_numbers_or_a_mask_and_nothing_else(tmp_path):
    run = mlpsim.train("tiny", tmp_path / "r", overrides=["train.steps=20", "train.instances=4"], progress=False)
    mask = np.array([True, False, True, False])
    sub = run.select_instances(mask)  # a mask, not the instances 1, 0, 1, 0
    assert list(sub.instance_ids) == [0, 2] and np.array_equal(sub.params, np.asarray(run.params)[[0, 2]])
    assert list(run.select_instances([3, 1]).instance_ids) == [3, 1]
    for bad, message in [([True, False], r"boolean mask of instances must have shape \(4,\)"),
                         ([0, 0], "distinct numbers in \\[0, 3\\]"), ([-1], "distinct numbers"), ([4], "distinct"),
                         (1, "list of instance numbers or a boolean mask"), ([0.5], "list of instance numbers")]:
        with pytest.raises(ValueError, match=message):
            run.select_instances(bad)
