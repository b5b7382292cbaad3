"""Smoke tests of the studies on the tiny preset, and their bad input."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlpsim
from mlpsim.cli import main

FIGURES = ["fig1_histograms", "fig2_density", "fig3_surface", "fig4_variance", "fig5_per_layer",
           "fig6_normalized", "fig7_trajectories", "fig8_tails", "fig9_loss"]
SUMMARY_FIELDS = ["variance_ratio", "variance_ratio_by_layer", "kurtosis_initial", "kurtosis_final",
                  "max_over_std_initial", "max_over_std_final", "verdict", "verdict_reason"]


@pytest.fixture(scope="module")
def seed_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "seed"
    assert main(["study", "seed", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    return out


def test_seed_study_writes_every_promised_file(seed_study):
    out = seed_study
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000, name
        assert (out / f"{name}.npz").stat().st_size > 0, name
    for name in ["summary.json", "summary.md", "meta.json"]:
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    for field in SUMMARY_FIELDS:
        assert field in summary, field
    assert summary["verdict"] in ("supported", "contradicted", "inconclusive")
    assert len(summary["variance_ratio"]) == 3 and len(summary["variance_ratio_by_layer"]) == 4
    assert all(len(v) == 3 for v in summary["variance_ratio_by_layer"])
    meta = json.loads((out / "meta.json").read_text())
    assert Path(meta["run_dir"]) == (out / "run").resolve()
    assert meta["config"] == mlpsim.preset("tiny").to_dict() and "numba" in meta["versions"]
    assert "fig2_density.png" in (out / "summary.md").read_text()


def test_summary_numbers_match_the_run(seed_study):
    summary = json.loads((seed_study / "summary.json").read_text())
    run = mlpsim.load_run(seed_study / "run")
    p = run.params
    ratio = p[:, -1].var(axis=-1, ddof=1) / p[:, 0].var(axis=-1, ddof=1)
    assert summary["variance_ratio"] == pytest.approx(list(ratio), rel=1e-12)
    w2 = run.net.view(p, "W2").reshape(3, p.shape[1], -1)
    assert summary["variance_ratio_by_layer"][1] == pytest.approx(
        list(w2[:, -1].var(axis=-1) / w2[:, 0].var(axis=-1)), rel=1e-12)


def test_second_invocation_reuses_the_run(seed_study, capsys):
    stamp = (seed_study / "run" / "params.npy").stat().st_mtime_ns
    assert main(["study", "seed", "--preset", "tiny", "--out", str(seed_study), "--no-progress"]) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert (seed_study / "run" / "params.npy").stat().st_mtime_ns == stamp


def test_distribution_study_on_an_existing_run(seed_study, tmp_path):
    out = tmp_path / "dist"
    assert main(["study", "distribution", "--run", str(seed_study / "run"), "--out", str(out)]) == 0
    assert (out / "fig8_tails.png").exists() and not (out / "fig1_histograms.png").exists()
    assert json.loads((out / "meta.json").read_text())["run_dir"] == str((seed_study / "run").resolve())


def test_study_bad_input(tmp_path, capsys):
    assert main(["study", "sed"]) == 2
    assert "Did you mean 'seed'" in capsys.readouterr().err
    assert main(["study", "distribution", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    mlpsim.train("tiny", tmp_path / "r", progress=False)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["status"] = "running"
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["study", "distribution", "--run", str(tmp_path / "r")]) == 2
    assert "running" in capsys.readouterr().err
    assert main(["study", "distribution", "--run", str(tmp_path / "r"), "--preset", "seed"]) == 2
    assert main(["study", "--list"]) == 0
    assert "distribution" in capsys.readouterr().out


def test_study_runs_from_any_directory_with_the_installed_cli(tmp_path):
    """The installed console script finds the studies without the source tree on the path."""
    exe = Path(sys.executable).parent / "mlpsim"
    exe = str(exe) if exe.exists() else shutil.which("mlpsim")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([exe, "study", "--list"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "seed" in proc.stdout and "02_weight_distribution" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", "import mlpsim.study as s; "
                           "print(s.study_module('02_weight_distribution').NAME)"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "02_weight_distribution", proc.stderr


@pytest.mark.slow
def test_full_seed_study(tmp_path):
    """The README's main job at full scale (about a minute): every figure and a verdict."""
    out = tmp_path / "seed"
    assert main(["study", "seed", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["variance_ratio"]) == 5 and summary["steps_final"] == 15000
    assert all(v > 1 for v in summary["variance_ratio"])  # the seed run broadens


def test_studies_leave_out_diverged_instances(tmp_path, capsys):
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    thetas = np.stack([net.init(seed=s) for s in range(3)])
    thetas[1] *= 1e160  # diverges at once
    cfg = mlpsim.preset("tiny").with_overrides(["train.on_divergence=continue"])
    mlpsim.train(cfg, tmp_path / "r", init_params=thetas, progress=False)
    assert main(["study", "distribution", "--run", str(tmp_path / "r"), "--out", str(tmp_path / "d")]) == 0
    assert "leaving out diverged instance(s) [1]" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "d" / "summary.json").read_text())["variance_ratio"]) == 2
