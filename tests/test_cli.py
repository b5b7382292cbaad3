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
