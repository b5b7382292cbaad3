"""The mlpsim command line, run as a user would."""
import json
import subprocess
import sys

import pytest

from mlpsim.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlpsim", *args], capture_output=True, text=True,
                          timeout=300)


def test_train_and_info(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "run complete" in text and "final loss per instance" in text
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "status:      complete" in info and "11/11 checkpoints" in info and "step 200/200" in info


def test_dry_run_prints_resolved_config_and_disk_space(tmp_path, capsys):
    assert main(["train", "--dry-run", "--set", "model.widths=[1, 32, 32, 1]", "--set", "train.steps=100"]) == 0
    text = capsys.readouterr().out
    assert "widths = [1, 32, 32, 1]" in text and "steps = 100" in text
    assert "disk space" in text and "11 checkpoints" in text
    assert not any(tmp_path.iterdir())


def test_config_file_with_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nwidths = [1, 4, 1]\n[train]\nsteps = 30\ninstances = 2\n'
                   'checkpoint_every = 10\noptimizer = "gd"\n[data]\nn = 100\n')
    out = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--set", "train.lr=0.01", "--out", str(out),
                 "--no-progress"]) == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["train"]["lr"] == 0.01 and resolved["model"]["widths"] == [1, 4, 1]
    assert resolved["train"]["beta2"] == 0.999  # every default filled in


@pytest.mark.parametrize("args,message", [
    (["train", "--set", "train.lr=0", "--out", "X"], "train.lr"),
    (["train", "--set", "model.activaton=relu", "--out", "X"], "did you mean 'model.activation'"),
    (["train", "--preset", "sed", "--out", "X"], "Did you mean 'seed'"),
    (["train", "--preset", "seed"], "--out"),
    (["info", "nowhere"], "does not exist"),
    (["train", "--preset", "tiny", "--threads", "0", "--dry-run"], "--threads"),
    (["explore", "--run", "nowhere", "--out", "X", "--max-mb", "0"], "--max-mb must be a number >= 0.5"),
    (["explore", "--run", "nowhere", "--out", "X", "--max-mb", "nan"], "--max-mb must be a number >= 0.5"),
    (["explore", "--run", "nowhere", "--out", ""], "--out must name a file, got ''"),
    (["verdict", "broadening", "--run", "nowhere", "--into", "X"], "use it with --table"),
    (["atlas", "--size", "tiny", "--dry-run", "--into", "X"], "use it with --answers"),
    (["atlas", "--size", "tiny", "--dry-run", "--set", "train.instances=1"],
     "atlas --set train.instances: every condition of the atlas sets it"),
    (["train", "--preset", "tiny", "--set", 'data.target="teacher"', "--set", "data.teacher_widths=[1, 10000000000, 1]",
      "--dry-run"], "the teacher network data.teacher_widths = [1, 10000000000, 1] needs about"),
])
def test_bad_input_exit_code_2_and_message(tmp_path, capsys, args, message):
    args = [a.replace("X", str(tmp_path / "x")) for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_existing_out_and_resume_with_other_config(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--preset", "tiny", "--out", out, "--no-progress"]) == 0
    assert main(["train", "--preset", "tiny", "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--set", "train.steps=300", "--out", out, "--resume"]) == 2
    assert "train.steps: run has 200, requested 300" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--out", out, "--resume", "--no-progress"]) == 0


def test_bad_toml_file(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nsteps = = 3\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_divergence_exit_code_1(tmp_path):
    proc = run_cli("train", "--preset", "tiny", "--set", "train.optimizer=gd", "--set", "train.lr=100",
                   "--out", str(tmp_path / "d"), "--no-progress")
    assert proc.returncode == 1 and "diverged" in proc.stderr and "instance" in proc.stderr


def console_script() -> str:
    """The ``mlpsim`` script installed beside the interpreter running the tests.

    The venv is never activated by the README's test command, so PATH may hold
    no ``mlpsim`` (or another one): look next to ``sys.executable`` instead.
    """
    from pathlib import Path
    folder = Path(sys.executable).parent
    for name in ("mlpsim", "mlpsim.exe"):
        if (folder / name).exists():
            return str(folder / name)
    pytest.fail(f"no mlpsim console script beside {sys.executable}: is mlpsim installed in this environment?")


def test_console_script_installed():
    proc = subprocess.run([console_script(), "--version"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.startswith("mlpsim ")


def test_config_and_preset_flags_are_distinct(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "my_config.tml"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--commit-every", "0", "--out", str(tmp_path / "r")]) == 2
    assert "commit" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_study_list_scales_its_times_to_this_machine(tmp_path, capsys, monkeypatch):
    from mlpsim import study
    monkeypatch.setattr(study, "speed_factor", lambda: 2.0)  # a machine half as fast as the reference
    assert main(["study", "--list", "--runs", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert rows["seed"][1] == str(2 * int(study.STUDIES["seed"].minutes)) and rows["seed"][2] == "0/2"
    cfg = study.default_configs("mesh")["mesh"]
    study.run_path(cfg, tmp_path).mkdir(parents=True)
    (study.run_path(cfg, tmp_path) / "manifest.json").write_text('{"status": "complete"}')
    assert main(["study", "--list", "--runs", str(tmp_path)]) == 0
    assert "0.50x as fast" in (text := capsys.readouterr().out) and " 1/1 " in text.splitlines()[-2]


def test_a_dry_run_prints_nothing_before_an_error(capsys):
    assert main(["train", "--preset", "tiny", "--threads", "0", "--dry-run"]) == 2
    assert capsys.readouterr().out == ""


def test_a_negative_seed_is_refused_by_the_parser(capsys):
    for args in (["verdict", "broadening", "--run", "nowhere", "--seed", "-1"],
                 ["atlas", "--size", "tiny", "--dry-run", "--seed", "-1"]):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2 and "--seed: need a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_explore_never_replaces_a_folder_or_a_device(tmp_path, capsys):
    import os
    import stat
    pipe = tmp_path / "pipe"  # a stand-in for /dev/null: renaming a page over it would replace it
    os.mkfifo(pipe)
    assert main(["explore", "--run", "nowhere", "--out", str(pipe)]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert main(["explore", "--run", "nowhere", "--out", str(tmp_path)]) == 2
    assert "is a folder; name a file to write" in capsys.readouterr().err
    from mlpsim.store import atomic_write_bytes  # every other writer too
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_bytes(pipe, b"page")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and not (tmp_path / "pipe.tmp").exists()


def test_a_dry_run_of_absurdly_many_steps_counts_checkpoints_without_listing_them(capsys, monkeypatch):
    from mlpsim.config import TrainConfig

    def listed(self):  # a list of 5e10 steps would take the machine's memory
        raise AssertionError("the dry run listed every checkpoint step")
    monkeypatch.setattr(TrainConfig, "schedule", listed)
    assert main(["train", "--preset", "tiny", "--set", "train.steps=1000000000000", "--dry-run"]) == 0
    assert "50000000001 checkpoints (steps 0 .. 1000000000000)" in capsys.readouterr().out


def test_masks_files_that_do_not_fit(tmp_path, capsys):
    import numpy as np
    np.savez(tmp_path / "shape.npz", mask_1=np.ones((3, 3)))
    np.savez(tmp_path / "values.npz", mask_1=np.full((8, 1), 2.0))
    np.save(tmp_path / "one.npy", np.ones((8, 1)))
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    for name, message in [("shape.npz", "mask of layer 1 must have the weight shape (8, 1), got (3, 3)"),
                          ("values.npz", "mask of layer 1 must contain only 0 and 1"),
                          ("one.npy", "holds one array; it must be an .npz file"),
                          ("garbage.npz", "not a NumPy .npy or .npz file")]:
        path = tmp_path / name
        assert main(["train", "--preset", "tiny", "--dry-run", "--set", f'model.masks="{path}"']) == 2
        err = capsys.readouterr().err
        assert "model.masks" in err and message in err, err


def test_dry_run_reads_the_files_it_names_before_printing(tmp_path, capsys):
    import numpy as np
    np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.zeros(3))
    (tmp_path / "garbage.npy").write_bytes(b"garbage")
    np.save(tmp_path / "ok.npy", np.ones((20, 2)))
    for sets, message in [(["model.init_params=\"TWO\""], "model.init_params: 'TWO' holds several arrays"),
                          (['data.target="file"', 'data.path="OK"', 'data.test_path="GARBAGE"'],
                           "data.test_path: cannot read data file 'GARBAGE': not a NumPy .npy or .npz file")]:
        names = {"TWO": str(tmp_path / "two.npz"), "OK": str(tmp_path / "ok.npy"),
                 "GARBAGE": str(tmp_path / "garbage.npy")}
        for key, path in names.items():
            sets = [a.replace(key, path) for a in sets]
            message = message.replace(key, path)
        assert main(["train", "--preset", "tiny", "--dry-run"] + [x for a in sets for x in ("--set", a)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err, captured.err


def test_an_unfinished_run_says_how_to_continue_it_and_resume_needs_no_preset(tmp_path, capsys):
    import os

    import mlpsim
    from mlpsim.store import WriteLock
    from mlpsim.training import Interrupted
    out = tmp_path / "r"
    checks = iter(range(100))
    with pytest.raises(Interrupted):  # stopped at its 4th checkpoint, as a Ctrl-C would
        mlpsim.train("tiny", out, overrides=["data.n=50"], progress=False, stop=lambda: next(checks) == 3)
    assert main(["verdict", "broadening", "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"Continue it with `mlpsim train --resume --out {out}`" in err and "allow_incomplete=True" in err
    lock = WriteLock(out).acquire()  # a writer at work: wait for it, do not resume
    try:
        assert main(["verdict", "broadening", "--run", str(out)]) == 2
        assert f"Process {os.getpid()} is training it now: wait until it finishes" in capsys.readouterr().err
    finally:
        lock.release()
    # the command the message gives, as written (no --preset), continues with the run's own configuration
    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    assert mlpsim.load_run(out).config.data.n == 50


def test_a_reader_that_leaves_early_gets_no_error_message(monkeypatch, capsys):
    from mlpsim.cli import EXIT_PIPE_CLOSED

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["verdict", "--list"]) == EXIT_PIPE_CLOSED
    assert capsys.readouterr().err == ""


def test_an_output_folder_of_another_command_is_refused_before_any_work(tmp_path, capsys):
    import mlpsim
    run = tmp_path / "run"
    mlpsim.train("tiny", run, overrides=["train.steps=20"], progress=False)
    before = sorted(p.name for p in run.iterdir())
    sweep = tmp_path / "s.toml"
    sweep.write_text('[base]\npreset = "tiny"\n[grid]\n"train.seed" = [1]\n')
    for args, kind in [(["study", "seed", "--run", str(run), "--out", str(run)], "study"),
                       (["atlas", "--size", "tiny", "--out", str(run)], "atlas"),
                       (["sweep", str(sweep), "--out", str(run)], "sweep")]:
        assert main(args) == 2
        assert f"holds a training run; write the {kind} into another folder" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    study = tmp_path / "study"
    study.mkdir()
    (study / "meta.json").write_text("{}")
    assert main(["atlas", "--size", "tiny", "--out", str(study)]) == 2
    assert "holds a study's output; write the atlas into another folder" in capsys.readouterr().err


def test_a_study_that_fails_leaves_no_earlier_summary_looking_current(tmp_path, monkeypatch):
    import mlpsim
    from mlpsim import study
    run = mlpsim.train("tiny", tmp_path / "run", overrides=["train.steps=20"], progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"study": "distribution", "verdicts": []}')
    (out / "meta.json").write_text("{}")

    class Broken:
        NAME = "broken"

        @staticmethod
        def analyse(runs):
            raise RuntimeError("the analysis failed")
    monkeypatch.setattr(study, "study_module", lambda name: Broken)
    with pytest.raises(RuntimeError, match="the analysis failed"):
        study.run_study("distribution", out, runs={"r": run}, log=lambda *a: None)
    assert not (out / "summary.json").exists() and not (out / "meta.json").exists()


def test_a_scale_too_large_for_any_machine(capsys):
    assert main(["study", "seed", "--scale", "1e300", "--out", "nowhere"]) == 2
    assert "--scale 1e+300 makes 1.5e+304 training steps" in capsys.readouterr().err


def test_a_verdict_table_into_a_file_without_a_proper_block(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "summary.json").write_text('{"study": "distribution", "verdicts": []}')
    (out / "meta.json").write_text("{}")
    cases = {"reversed.md": "<!-- verdicts:end -->\n<!-- verdicts:start -->\n".encode(),
             "latin1.md": "caf\xe9 <!-- verdicts:start --> <!-- verdicts:end -->".encode("latin-1")}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    for name, message in [("reversed.md", "has no <!-- verdicts:start --> ... <!-- verdicts:end --> block"),
                          ("latin1.md", "is not a UTF-8 text file"), ("missing.md", "does not exist")]:
        assert main(["verdict", "--table", str(out), "--into", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "reversed.md").read_bytes() == cases["reversed.md"]
