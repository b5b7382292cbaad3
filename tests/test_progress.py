"""Progress in a log (no terminal): plain lines with step, loss and ETA; overall progress of studies and sweeps."""
import re
import subprocess
import sys

from mlpsim.progress import Progress


def _mlpsim(tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "mlpsim", *args], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**__import__("os").environ, "MLPSIM_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_train_in_a_pipe_prints_lines_with_step_loss_and_eta(tmp_path):
    log = _mlpsim(tmp_path, "train", "--preset", "tiny", "--set", "train.steps=2000", "--out", "r")
    lines = [l for l in log.splitlines() if l.startswith("training 3 net(s): step")]
    assert 10 <= len(lines) <= 21  # every 5 % at most (or every ~10 s)
    assert re.fullmatch(r"training 3 net\(s\): step 100/2000 \(5 %\), loss [0-9.e+-]+, elapsed \d+ s, ETA \d+ s",
                        lines[0]), lines[0]
    assert lines[-1].startswith("training 3 net(s): step 2000/2000 (100 %)") and "ETA" not in lines[-1]
    assert "\r" not in log  # no bar redrawn in a log
    assert "net(s): step" not in _mlpsim(tmp_path, "train", "--preset", "tiny", "--out", "q", "--quiet")


def test_sweep_shows_overall_progress(tmp_path):
    # (a study's overall progress, '[run i/n] label ready (elapsed, ETA)', is checked in the
    # output of the README's main job, tests/test_readme.py)
    (tmp_path / "s.toml").write_text('[base]\npreset = "tiny"\n"train.steps" = 50\n[grid]\n"train.seed" = [1, 2, 3]\n')
    log = _mlpsim(tmp_path, "sweep", "s.toml", "--out", "sw", "--workers", "1")
    assert re.search(r"\[1/3\] .* complete \(elapsed \d+ s, ETA \d+ s\)", log), log


def test_lines_every_five_percent_and_at_the_end(tmp_path):
    out = tmp_path / "log.txt"
    with open(out, "w") as fh:
        bar = Progress(1000, desc="work", progress="lines", every_seconds=1e9, stream=fh)
        for _ in range(100):
            bar.update(10, loss=0.5)
        bar.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 20 and lines[0].startswith("work: step 50/1000 (5 %), loss 0.5, elapsed")
    assert lines[-1].startswith("work: step 1000/1000 (100 %)")
