"""The studies, run as a user would: files written, verdicts through mlpsim.claims, runs reused, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlpsim
from mlpsim import claims
from mlpsim.cli import main

FIGURES = ["fig1_histograms", "fig2_density", "fig3_surface", "fig4_variance", "fig5_per_layer",
           "fig6_normalized", "fig7_trajectories", "fig8_tails", "fig9_loss"]
TINY16 = ["--preset", "tiny", "--set", "train.instances=16"]  # as conftest.seed_study_output runs it


@pytest.fixture(scope="module")
def seed_study(seed_study_output):
    return seed_study_output[0]


def test_seed_study_writes_every_promised_file(seed_study):
    out = seed_study
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000, name
        assert (out / f"{name}.npz").stat().st_size > 0, name
    for name in ["summary.json", "summary.md", "meta.json"]:
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert [v["claim"] for v in summary["verdicts"]] == ["broadening", "longer_tails"]
    assert all(v["label"] == "tiny" and v["n_instances"] == 16 for v in summary["verdicts"])
    meta = json.loads((out / "meta.json").read_text())
    run_dir = Path(meta["runs"]["tiny"]["run_dir"])
    assert (out / "runs" / "tiny").resolve() == run_dir
    assert run_dir.parent == Path(os.environ["MLPSIM_RUNS"]).resolve()
    assert meta["runs"]["tiny"]["config"] == mlpsim.preset("tiny").with_values({"train.instances": 16}).to_dict()
    assert "numba" in meta["versions"]
    md = (out / "summary.md").read_text()
    assert "fig2_density.png" in md and "### broadening (tiny)" in md and "| W2 | variance |" in md
    # fig 1 shows what falls outside its bins: the counts beside each histogram equal the data's
    fig1 = np.load(out / "fig1_histograms.npz")
    run = mlpsim.load_run(run_dir)
    last = np.asarray(run.params[0, -1])
    assert fig1["below"][-1] == np.sum(last < -5) and fig1["above"][-1] == np.sum(last >= 5)
    assert fig1["counts"][-1].sum() + fig1["below"][-1] + fig1["above"][-1] == run.net.n_params


def test_the_study_reports_the_claims_engine_verdict(seed_study):
    """The study does not re-decide: its verdict is mlpsim.claims.evaluate on the same run."""
    summary = json.loads((seed_study / "summary.json").read_text())
    run = mlpsim.load_run((seed_study / "runs" / "tiny").resolve())
    for v in summary["verdicts"]:
        direct = claims.evaluate(v["claim"], run).to_dict()
        assert {k: x for k, x in v.items() if k != "label"} == {k: x for k, x in direct.items() if k != "label"}
    # and the numbers in its table are the run's
    W2 = run.net.view(np.asarray(run.params), "W2").reshape(16, run.params.shape[1], -1)
    row = next(r for r in summary["verdicts"][0]["layers"] if r["layer"] == "W2")
    assert row["initial"] == pytest.approx(np.median(W2[:, 0].var(axis=-1, ddof=1)), rel=1e-12)
    assert row["final"] == pytest.approx(np.median(W2[:, -1].var(axis=-1, ddof=1)), rel=1e-12)


def test_second_invocation_reuses_the_run(seed_study, capsys):
    stamp = (seed_study / "runs" / "tiny" / "params.npy").stat().st_mtime_ns
    assert main(["study", "seed", *TINY16, "--out", str(seed_study), "--no-progress"]) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert (seed_study / "runs" / "tiny" / "params.npy").stat().st_mtime_ns == stamp


def test_another_study_reuses_the_same_run(seed_study, tmp_path, capsys):
    """Runs are found by their configuration's hash: the rank study needs no training here."""
    assert main(["study", "rank", *TINY16, "--out", str(tmp_path / "rank"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "reusing the finished run" in text and "training into" not in text
    assert (tmp_path / "rank" / "runs" / "tiny").resolve() == (seed_study / "runs" / "tiny").resolve()
    assert "rank_decrease:" in text


def test_distribution_study_on_an_existing_run(seed_study, tmp_path):
    out = tmp_path / "dist"
    run_dir = (seed_study / "runs" / "tiny").resolve()
    assert main(["study", "distribution", "--run", str(run_dir), "--out", str(out)]) == 0
    assert (out / "fig8_tails.png").exists() and not (out / "fig1_histograms.png").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert [r["run_dir"] for r in meta["runs"].values()] == [str(run_dir)]


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
    assert main(["study", "seed", "--scale", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["study", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "distribution" in listing and "minutes" in listing


@pytest.mark.parametrize("args,message", [
    (["ensembles", "--preset", "tiny"], "compares a grid of its own runs (labelled 'small' and 'large'), got 'tiny'"),
    (["width-depth", "--preset", "tiny"], "labelled 'width N' and 'depth N'"),
    (["correlations", "--preset", "tiny", "--set", "train.instances=2"],
     "needs at least 3 instances per run; run 'tiny' has 2"),
    (["correlations", "--preset", "tiny", "--set", "train.checkpoint_every=200"],
     "needs at least 4 checkpoints per run; run 'tiny' has 2"),
    (["distribution", "--preset", "tiny", "--set", "model.widths=[1, 1, 1]"], "a weight matrix of at least 2 weights"),
    (["mesh", "--preset", "tiny", "--set", "model.widths=[1, 1]"], "needs a network with a hidden layer"),
    (["perturbation", "--preset", "tiny", "--set", "model.widths=[1, 1]"], "at least 3 trainable parameters"),
])
def test_studies_refuse_runs_they_cannot_use_before_training(tmp_path, capsys, monkeypatch, args, message):
    """Each once failed with a traceback (KeyError, ValueError) after the training."""
    monkeypatch.setenv("MLPSIM_RUNS", str(tmp_path / "runs"))
    assert main(["study", *args, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlpsim: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()  # nothing trained or written


def test_studies_refuse_existing_runs_they_cannot_use(seed_study, tmp_path, capsys):
    tiny = str((seed_study / "runs" / "tiny").resolve())
    for name in ("ensembles", "width-depth"):
        assert main(["study", name, "--run", tiny, "--out", str(tmp_path / "o")]) == 2
        assert "it cannot analyse a single --run" in capsys.readouterr().err
    one = mlpsim.train(mlpsim.preset("tiny").with_values({"train.instances": 1, "train.steps": 20}), tmp_path / "one",
                       progress=False)
    assert main(["study", "correlations", "--run", str(one.path), "--out", str(tmp_path / "o")]) == 2
    assert "needs at least 3 instances per run; run 'one' has 1: give a run with more instances" in capsys.readouterr().err
    deg = mlpsim.train(mlpsim.preset("tiny").with_values({"model.widths": [1, 1, 1], "train.steps": 20}),
                       tmp_path / "deg", progress=False)
    assert main(["study", "seed", "--run", str(deg.path), "--out", str(tmp_path / "o")]) == 2
    assert "run 'deg' is 1-1-1 relu, 4 parameters" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_broken_study_outputs_are_named_and_a_broken_sibling_does_not_fail_a_study(seed_study, tmp_path, capsys):
    folder = tmp_path / "out"
    for name, summary, meta in (("bad-json", "{oops", "{}"), ("not-an-object", "{}", "[]")):
        (folder / name).mkdir(parents=True)
        (folder / name / "summary.json").write_text(summary)
        (folder / name / "meta.json").write_text(meta)
    assert main(["report", "--out", str(tmp_path / "report"), str(folder / "bad-json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlpsim: error: {folder / 'bad-json' / 'summary.json'} is corrupt (not valid JSON")
    assert main(["verdict", "--table", str(folder / "bad-json")]) == 2
    assert "summary.json is corrupt (not valid JSON" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "report"), str(folder / "not-an-object")]) == 2
    assert "meta.json is corrupt (expected a JSON object, found list)" in capsys.readouterr().err
    # the report rebuilt after a study leaves the broken siblings out, says so, and the study succeeds
    run_dir = str((seed_study / "runs" / "tiny").resolve())
    assert main(["study", "distribution", "--run", run_dir, "--out", str(folder / "new")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in err] == [" the report leaves out " + str(folder / n)
                                                    for n in ("bad-json", "not-an-object")]
    assert "new" in (tmp_path / "out" / "report" / "index.html").read_text()


def test_study_runs_from_any_directory_with_the_installed_cli(tmp_path):
    """The installed console script finds the studies without the source tree on the path."""
    from test_cli import console_script
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([console_script(), "study", "--list"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "seed" in proc.stdout and "perturbation" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", "import mlpsim.study as s; "
                           "print(s.study_module('02_weight_distribution').NAME)"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "02_weight_distribution", proc.stderr


def test_studies_leave_out_diverged_instances(tmp_path, capsys):
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    thetas = np.stack([net.init(seed=s) for s in range(17)])
    thetas[1] *= 1e160  # diverges at once
    cfg = mlpsim.preset("tiny").with_values({"train.on_divergence": "continue", "train.instances": 17})
    mlpsim.train(cfg, tmp_path / "r", init_params=thetas, progress=False)
    assert main(["study", "distribution", "--run", str(tmp_path / "r"), "--out", str(tmp_path / "d")]) == 0
    assert "leaving out diverged instance(s) 1 of" in capsys.readouterr().out
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert all(v["n_instances"] == 16 for v in summary["verdicts"])
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["runs"]["r"]["instances"] == [0] + list(range(2, 17))


def test_verdict_table_from_study_outputs(seed_study, capsys):
    assert main(["verdict", "--table", str(seed_study)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| claim | on | status |") and "| broadening | tiny, seed |" in table
    readme = seed_study.parent / "README.md"
    readme.write_text("# x\n\n<!-- verdicts:start -->\nold\n<!-- verdicts:end -->\n\nrest\n")
    assert main(["verdict", "--table", str(seed_study), "--into", str(readme)]) == 0
    text = readme.read_text()
    assert table.strip() in text and "old" not in text and text.endswith("rest\n")
    assert main(["verdict", "--table", str(seed_study / "runs")]) == 2  # not a study output


@pytest.mark.slow
def test_full_seed_study(tmp_path):
    """The README's main job at full scale (a few minutes): every figure and the verdicts."""
    out = tmp_path / "seed"
    assert main(["study", "seed", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    status = {(v["claim"], v["label"]): v["status"] for v in summary["verdicts"]}
    assert status[("broadening", "float64")] == status[("broadening", "float32")] == "supported"
    assert all(v["n_instances"] == 20 for v in summary["verdicts"])


def test_summaries_speak_in_words_not_reprs(seed_study):
    md = (seed_study / "summary.md").read_text()
    assert "MLP(" not in md and "(16 instances, 1-8-8-8-1 relu, 169 parameters)" in md
    from mlpsim.study import _title_and_question, study_module
    _, question = _title_and_question(study_module("05_perturbation"))
    assert question.endswith("usually\".") and not question.endswith(":")
