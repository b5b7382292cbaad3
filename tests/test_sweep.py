"""Sweeps: expansion, validation, skipping, resume after a kill, equality with plain runs."""
import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mlpsim
from mlpsim.config import ConfigError
from mlpsim.sweep import expand, parse_sweep, run_sweep

SWEEP = """
[base]
preset = "tiny"
train = { steps = 60, checkpoint_every = 20 }
[grid]
"data.target" = ["piecewise", "sin"]
"model.widths" = [[1, 8, 8, 8, 1], [1, 16, 1]]
"train.seed" = [1, 2]
"""


def test_expansion_order_and_configs():
    import tomllib
    base, grid = parse_sweep(tomllib.loads(SWEEP))
    runs = expand(base, grid)
    assert len(runs) == 8
    assert runs[0][0] == {"data.target": "piecewise", "model.widths": [1, 8, 8, 8, 1], "train.seed": 1}
    assert runs[1][0]["train.seed"] == 2 and runs[2][0]["model.widths"] == [1, 16, 1]
    assert runs[5][1].data.target == "sin" and runs[5][1].train.steps == 60
    assert runs[5][1].model.widths == (1, 8, 8, 8, 1) and runs[5][1].train.seed == 2


@pytest.mark.parametrize("text,match", [
    ('[grid]\n"train.stpes" = [1]\n', "did you mean 'train.steps'"),
    ('[grid]\n"train.lr" = [0.1, -1]\n', "train.lr"),
    ('[grid]\n"train.lr" = 3\n', "non-empty list"),
    ('[base]\npreset = "nope"\n[grid]\n"train.lr" = [1]\n', "preset"),
    ('[bas]\n[grid]\n"train.lr" = [1]\n', "unknown sweep table"),
    ('[base]\n', "non-empty"),
    ('[grid]\ntrain.seed = [1, 2]\n', 'quote dotted keys in \\[grid\\], "train.seed" = '),
])
def test_bad_sweeps_fail_before_any_run(tmp_path, text, match):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        run_sweep(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sweep_runs_skips_and_matches_plain_runs(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    rows = run_sweep(path, tmp_path / "out", workers=2, log=lambda *a: None)
    assert len(rows) == 8 and all(r["status"] == "complete" for r in rows)
    table = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert len(table) == 8 and {"data.target", "final_loss_mean", "variance_ratio_mean"} <= set(table[0])
    names = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    stamps = {n: (tmp_path / "out" / "runs" / n / "params.npy").stat().st_mtime_ns for n in names}
    run_sweep(path, tmp_path / "out", workers=2, log=lambda *a: None)
    assert stamps == {n: (tmp_path / "out" / "runs" / n / "params.npy").stat().st_mtime_ns for n in names}
    # a sweep's run is bit-identical to the same run trained alone, in this process
    import tomllib
    base, grid = parse_sweep(tomllib.loads(SWEEP))
    values, cfg = expand(base, grid)[5]
    alone = mlpsim.train(cfg, tmp_path / "alone", progress=False)
    assert np.array_equal(mlpsim.load_run(tmp_path / "out" / "runs" / names[5]).params, alone.params)


def test_sweep_killed_midway_then_restarted(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.replace("steps = 60", "steps = 6000").replace("checkpoint_every = 20",
                                                                          "checkpoint_every = 100"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "sweep", str(path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("runs/*/state.npz")):
        time.sleep(0.05)
    time.sleep(0.5)
    import os
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
    proc.wait()
    manifests = [json.loads(p.read_text()) for p in out.glob("runs/*/manifest.json")]
    assert manifests and (not all(m["status"] == "complete" for m in manifests) or len(manifests) < 8)
    rows = run_sweep(path, out, workers=2, log=lambda *a: None)
    assert len(rows) == 8 and all(r["status"] == "complete" for r in rows)
    run_sweep(path, tmp_path / "fresh", workers=2, log=lambda *a: None)
    for a, b in zip(sorted(out.glob("runs/*/params.npy")), sorted((tmp_path / "fresh").glob("runs/*/params.npy"))):
        assert a.parent.name == b.parent.name and np.array_equal(np.load(a), np.load(b))


def test_dask_local_cluster_gives_the_same_bits(tmp_path):
    pytest.importorskip("dask.distributed")
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    local = run_sweep(path, tmp_path / "local", workers=2, log=lambda *a: None)
    dask_rows = run_sweep(path, tmp_path / "dask", dask_local=2, log=lambda *a: None)
    assert len(dask_rows) == len(local) == 8 and all(r["status"] == "complete" for r in dask_rows)
    for a, b in zip(sorted((tmp_path / "local").glob("runs/*/params.npy")),
                    sorted((tmp_path / "dask").glob("runs/*/params.npy"))):
        assert a.parent.name == b.parent.name and np.array_equal(np.load(a), np.load(b))
    with pytest.raises(ConfigError, match="not both"):
        run_sweep(path, tmp_path / "x", scheduler="tcp://127.0.0.1:1", dask_local=1)


def test_a_failed_run_keeps_its_grid_values_and_the_exit_status_says_so(tmp_path, capsys):
    from mlpsim.cli import EXIT_DIVERGED, main
    path = tmp_path / "div.toml"
    path.write_text('[base]\npreset = "tiny"\n"train.optimizer" = "gd"\n"train.steps" = 20\n'
                    '[grid]\n"train.lr" = [1e6, 0.001]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--workers", "1"]) == EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and "0000-" in err
    with open(tmp_path / "s" / "summary.csv") as fh:
        rows = {r["train.lr"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"1000000.0", "0.001"}
    assert rows["1000000.0"]["status"].startswith("failed: TrainingDiverged")
    assert rows["0.001"]["status"] == "complete"


def test_a_sweep_file_that_is_not_text(tmp_path, capsys):
    from mlpsim.cli import main
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[grid]\n")
    assert main(["sweep", str(tmp_path / "bin.toml"), "--dry-run"]) == 2
    assert "is not text (TOML files are UTF-8)" in capsys.readouterr().err
