"""The README, run: every command and code block, at small settings, in document order.

A block (or some of its commands) is left out only where the README says so, in
an HTML comment just above it: ``<!-- not run: "PREFIX", "PREFIX": REASON -->``
(a command starting with PREFIX; ``"COMMAND$"``: exactly that command).
A command that is neither run nor marked fails the test, so a new README line
cannot go untested by accident.

Small settings, the only changes made to what the README says: training lines
get ``--set train.steps=100``, studies ``--scale 0.01``, atlases ``--size tiny``;
in the Python blocks the substitutions in ``PYTHON_SMALL`` (each must match).
``[--flag]`` and ``a|b|c`` placeholders take their first choice.
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from test_cli import console_script

README = Path(__file__).resolve().parents[1] / "README.md"

PYTHON_SMALL = {
    'mlpsim.train("seed", out="runs/demo")': 'mlpsim.train("seed", out="runs/demo", overrides=["train.steps=100"])',
    '"train.steps=2000"': '"train.steps=100"',
}

SMALL_ARGS = {"train": ["--set", "train.steps=100"], "study": ["--scale", "0.01"]}


def blocks(text: str):
    """``(language, code, skipped prefixes, reason)`` of every fenced block, in order."""
    found = []
    pattern = re.compile(r"((?:<!--.*?-->\s*)*)```(\w*)\n(.*?)```", re.S)
    for m in pattern.finditer(text):
        prefixes, reason = [], ""
        for note in re.findall(r"<!-- not run: (.*?) -->", m.group(1), re.S):
            prefixes += re.findall(r'"([^"]+)"', note)
            reason += note
        found.append((m.group(2), m.group(3), prefixes, reason))
    return found


def commands(code: str, skipped: list):
    """The commands of a shell block to run (``&&`` chains split), and the ones the README skips."""
    run, left_out = [], []
    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        if not line:
            continue
        for part in (p.strip() for p in line.split("&&")):
            if any(part == prefix[:-1] if prefix.endswith("$") else part.startswith(prefix) for prefix in skipped):
                left_out.append(part)
                continue
            part = re.sub(r"^\.venv/bin/mlpsim\b", "mlpsim", part)
            assert part.startswith("mlpsim "), f"README command neither run nor marked 'not run': {part!r}"
            part = re.sub(r"\[(--[^\]]+)\]", r"\1", part)  # an optional flag: given
            part = re.sub(r"(\w+)(\|[\w.-]+)+", r"\1", part)  # a choice: the first
            run.append(shlex.split(part)[1:])
    return run, left_out


def small(args: list) -> list:
    args = list(args) + SMALL_ARGS.get(args[0], [])
    if args[0] == "atlas" and "--size" not in args:
        args += ["--size", "tiny"]
    return args


def test_every_block_is_run_or_marked(tmp_path):
    found = blocks(README.read_text())
    assert len(found) >= 8
    for lang, code, skipped, reason in found:
        if skipped:
            assert len(reason) > 40, f"a 'not run' note without a reason: {reason!r}"
        if lang == "":
            commands(code, skipped)  # raises on a command neither run nor marked
        else:
            assert lang in ("python", "toml"), f"a README block in {lang!r}: the test cannot run it"


def test_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPSIM_RUNS", str(tmp_path / "runs-cache"))
    env = {**os.environ, "MLPSIM_RUNS": str(tmp_path / "runs-cache")}
    found = blocks(README.read_text())
    for lang, code, _, _ in found:  # the files the commands read come first
        if lang == "toml" and code.startswith("[model]"):
            (tmp_path / "my.toml").write_text(code)
        elif lang == "toml" and code.startswith("[base]"):
            (tmp_path / "sweep.toml").write_text(code)
    assert (tmp_path / "my.toml").exists() and (tmp_path / "sweep.toml").exists()
    namespace = {}
    script = console_script()
    ran, left_out, done = 0, [], []
    for lang, code, skipped, _ in found:
        if lang == "python":
            for old, new in PYTHON_SMALL.items():
                code = code.replace(old, new)
            exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
            ran += 1
        elif lang == "":
            todo, out = commands(code, skipped)
            left_out += out
            for args in todo:
                if args in done:
                    continue  # the same command again (the README repeats the main job): run once
                done.append(args)
                t0 = __import__("time").perf_counter()
                proc = subprocess.run([script, *small(args)], capture_output=True, text=True, env=env,
                                      timeout=600)
                assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
                assert "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
                print(f"{__import__('time').perf_counter() - t0:6.1f} s  {' '.join(small(args))}")
                if args[:2] == ["study", "seed"]:  # a study's overall progress, in a log (not a terminal)
                    log = proc.stdout + proc.stderr
                    assert re.search(r"\[run 1/2\] \w+ ready \(elapsed \d+ s, ETA \d+ s\)", log), log[-3000:]
                    assert re.search(r"\[run 2/2\] \w+ ready \(elapsed \d+ s\)", log)
                    assert re.search(r"training 20 net\(s\): step \d+/150 \(\d+ %\), loss", log)
                ran += 1
    assert ran >= 21 and len(left_out) == 8, (ran, left_out)  # 5 install/test steps, 3 atlas lines
    # the blocks did what they say: a run, a study, an explorer, a sweep
    assert (tmp_path / "runs" / "demo" / "manifest.json").exists()
    assert (tmp_path / "out" / "seed" / "summary.md").exists()
    assert (tmp_path / "explorer.html").stat().st_size > 10_000
    assert (tmp_path / "out" / "sweep" / "summary.csv").read_text().count("\n") == 5
    assert namespace["H"].shape == (169, 169) and namespace["run"].params.shape == (5, 11, 169)


def test_a_readme_command_without_a_note_fails():
    with pytest.raises(AssertionError, match="neither run nor marked"):
        commands("pip install mlpsim\n", [])
    assert commands(".venv/bin/pip install . && .venv/bin/mlpsim info x  # c", [".venv/bin/pip"]) == (
        [["info", "x"]], [".venv/bin/pip install ."])
    assert commands("mlpsim atlas --size tiny|default [--dry-run]", [])[0] == [
        ["atlas", "--size", "tiny", "--dry-run"]]
    assert commands("mlpsim info a\nmlpsim info a --json  # c", ["mlpsim info a$"]) == (
        [["info", "a", "--json"]], ["mlpsim info a"])
