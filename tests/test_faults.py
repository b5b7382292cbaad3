"""The run store under faults: truncated and corrupt files, hand edits, two writers, full and
read-only disks, absurd inputs, interrupted and killed sweeps. Every fault a user (or a full
disk) can cause ends in one line "mlpsim: error: ..." with a documented exit status, and never
in a wrong result."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mlpsim
from mlpsim import store
from mlpsim.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_IO, EXIT_LOCKED, main

ARRAYS = ["params.npy", "loss.npy", "loss_steps.npy", "steps.npy", "test_loss.npy"]
FILES = ARRAYS + ["config.json", "manifest.json", "data.npz", "test.npz", "state.npz"]
TINY_TEST = mlpsim.preset("tiny").with_values({"data.n_test": 50})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A complete run and an interrupted one (half of its checkpoints), both with a test set."""
    base = tmp_path_factory.mktemp("faults")
    mlpsim.train(TINY_TEST, base / "complete", progress=False)
    mlpsim.train(TINY_TEST, base / "interrupted", progress=False)
    m = json.loads((base / "interrupted" / "manifest.json").read_text())
    m.update(status="interrupted", checkpoints_written=6, steps_done=100)
    (base / "interrupted" / "manifest.json").write_text(json.dumps(m))
    return base


def copy_of(runs, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(runs / name, dst)
    return dst


def cli(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_error_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlpsim: error: "), err
    return lines[0]


# ----------------------------------------------------------------- truncated arrays
@pytest.mark.parametrize("name", ARRAYS)
def test_a_truncated_array_is_refused_by_every_reader(runs, tmp_path, capsys, name):
    for kind in ("complete", "interrupted"):
        run = copy_of(runs, kind, tmp_path / kind)
        path = run / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(store.RunError, match=f"{name} is (truncated|corrupt)"):
            mlpsim.load_run(run, allow_incomplete=True)
        code, err = cli(["info", run], capsys)
        line = one_error_line(err)
        assert code == EXIT_BAD_INPUT and ("truncated" in line or "corrupt" in line)
        code, err = cli(["train", "--preset", "tiny", "--set", "data.n_test=50", "--out", run, "--resume",
                         "--quiet"], capsys)
        assert code == EXIT_BAD_INPUT and name in one_error_line(err)
        assert path.stat().st_size == len(data) // 2  # nothing resumed over the short file


def test_short_writes_are_errors_not_silence(tmp_path, monkeypatch):
    real = os.pwrite
    calls = {"n": 0}

    def short_pwrite(fd, data, offset):
        calls["n"] += 1
        if calls["n"] > 40:
            return 0  # the disk takes nothing more
        return real(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", short_pwrite)
    with pytest.raises(OSError) as info:
        mlpsim.train("tiny", tmp_path / "r", progress=False)
    assert info.value.errno == errno.ENOSPC


# ----------------------------------------------------------------- deleted and garbage files
@pytest.mark.parametrize("fault", ["deleted", "garbage"])
@pytest.mark.parametrize("name", FILES)
def test_every_file_deleted_or_garbage(runs, tmp_path, capsys, name, fault):
    """info, load_run, a study and --resume: a one-line error naming the file, never a traceback."""
    for kind in ("complete", "interrupted"):
        run = copy_of(runs, kind, tmp_path / kind)
        if fault == "deleted":
            (run / name).unlink()
        else:
            (run / name).write_bytes(b"\x89garbage\xff" * 7)
        commands = {"info": ["info", run],
                    "study": ["study", "distribution", "--run", run, "--out", tmp_path / "s", "--quiet"],
                    "resume": ["train", "--preset", "tiny", "--set", "data.n_test=50", "--out", run, "--resume",
                               "--quiet"]}
        for what, args in commands.items():
            code, err = cli(args, capsys)
            if name == "state.npz" and fault == "deleted" and (what == "info" or kind == "complete"):
                assert code == 0  # only resuming an unfinished run needs the resume point
                continue
            line = one_error_line(err)
            assert code == EXIT_BAD_INPUT, (args, line)
            if what == "study" and kind == "interrupted" and name == "state.npz" and fault == "deleted":
                assert "is interrupted" in line  # a study reads finished runs only
                continue
            assert name.split(".")[0] in line or "not an mlpsim run" in line, (args, line)


def test_hand_edits_are_refused(runs, tmp_path, capsys):
    for key, value in [("lr", 0.002), ("instances", 2), ("steps", 100), ("seed", 7)]:
        run = copy_of(runs, "complete", tmp_path / key)
        cfg = json.loads((run / "config.json").read_text())
        cfg["train"][key] = value
        (run / "config.json").write_text(json.dumps(cfg))
        code, err = cli(["info", run], capsys)
        assert code == EXIT_BAD_INPUT and "edited after training started" in one_error_line(err)
    run = copy_of(runs, "interrupted", tmp_path / "status")
    m = json.loads((run / "manifest.json").read_text())
    m["status"] = "complete"
    (run / "manifest.json").write_text(json.dumps(m))
    code, err = cli(["info", run], capsys)
    assert code == EXIT_BAD_INPUT and "says complete, but only 6 of 11" in one_error_line(err)
    code, err = cli(["train", "--preset", "tiny", "--set", "data.n_test=50", "--out", run, "--resume"], capsys)
    assert code == EXIT_BAD_INPUT


def test_info_on_a_file_that_is_not_a_run(tmp_path, capsys):
    f = tmp_path / "README.md"
    f.write_text("hello")
    code, err = cli(["info", f], capsys)
    assert code == EXIT_BAD_INPUT and "is a file, not a run directory" in one_error_line(err)


# ----------------------------------------------------------------- one writer
SLOW = ["--preset", "seed", "--set", "train.steps=200000", "--set", "train.instances=2", "--set", "data.n=500"]


def start_training(out, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "train", *SLOW, "--out", str(out), "--quiet",
                             "--commit-every", "0.2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "state.npz").exists():
        time.sleep(0.05)
    assert (out / "state.npz").exists(), proc.stderr.read() if proc.poll() is not None else "no state"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "r"
    proc = start_training(out)
    try:
        for extra in (["--resume"], ["--overwrite"]):
            code, err = cli(["train", *SLOW, "--out", out, *extra], capsys)
            assert code == EXIT_LOCKED and f"pid {proc.pid}" in one_error_line(err)
        assert main(["info", str(out)]) == 0
        assert f"running (written by process {proc.pid} now)" in capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait()
    assert main(["info", str(out)]) == 0
    assert "interrupted (no process holds the lock" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["checkpoints_written"] >= 1


def test_two_writers_in_one_process_are_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    with store.WriteLock(out):
        with pytest.raises(store.RunLocked, match=f"pid {os.getpid()}"):
            store.WriteLock(out).acquire()
    store.WriteLock(out).acquire().release()  # free again


# ----------------------------------------------------------------- half-created runs, monotonic count
def test_a_run_killed_before_its_first_commit_can_be_resumed_or_overwritten(tmp_path):
    for flag in ("resume", "overwrite"):
        out = tmp_path / flag
        out.mkdir()
        (out / "config.json.tmp").write_text("{")  # all that a kill during creation may leave
        run = mlpsim.train("tiny", out, progress=False, **{flag: True})
        assert run.complete and not (out / "config.json.tmp").exists()
        fresh = mlpsim.train("tiny", tmp_path / f"fresh-{flag}", progress=False)
        assert np.array_equal(run.params, fresh.params)


def test_the_checkpoint_count_never_goes_backwards(tmp_path):
    cfg = mlpsim.preset("tiny")
    net = mlpsim.MLP(cfg.model.widths)
    x = np.zeros((4, 1))
    out = tmp_path / "r"
    out.mkdir()
    w = store.RunWriter.create(out, cfg, net, x, x)
    w.commit(5)
    w.commit(3)  # a commit that knows of fewer checkpoints (e.g. a mid-interval Ctrl-C)
    assert json.loads((out / "manifest.json").read_text())["checkpoints_written"] == 6
    w.close()


# ----------------------------------------------------------------- full and read-only disks
def test_simulated_disk_full_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    real = os.pwrite

    def enospc(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", enospc)
    code, err = cli(["train", "--preset", "tiny", "--out", tmp_path / "r", "--quiet"], capsys)
    monkeypatch.setattr(os, "pwrite", real)
    assert code == EXIT_IO and "No space left on device" in one_error_line(err)
    assert not (tmp_path / "r").exists()  # nothing half-written looks like a run
    assert not list(tmp_path.rglob("*.tmp"))


def test_disk_space_is_checked_before_anything_is_written(tmp_path, capsys):
    code, err = cli(["train", "--preset", "tiny", "--set", "train.steps=1000000000000", "--set",
                     "train.checkpoint_every=1000000000000", "--out", tmp_path / "r"], capsys)
    line = one_error_line(err)
    assert code == EXIT_IO and "needs 21.8 TiB" in line and "free on the disk" in line  # 3 x 10^12 losses
    assert not (tmp_path / "r").exists()


def _mount_tmpfs(path, options):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (this test covers a real full / read-only disk)")
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")


def test_a_real_full_disk(tmp_path, capsys, monkeypatch):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=2m")
    try:
        # the up-front check refuses a run that cannot fit
        code, err = cli(["train", "--preset", "tiny", "--set", "train.steps=100000", "--out", disk / "r"], capsys)
        assert code == EXIT_IO and "free on the disk" in one_error_line(err)
        # and without it, the preallocation does: never a bus error, never a half run
        monkeypatch.setattr(sys.modules["mlpsim.training"], "check_disk", lambda folder, needed: None)
        code, err = cli(["train", "--preset", "tiny", "--set", "train.steps=100000", "--out", disk / "r"], capsys)
        assert code == EXIT_IO and "No space left" in one_error_line(err) or "no room" in err
        assert not (disk / "r").exists() and not list(disk.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)])


def test_a_read_only_destination(tmp_path, capsys):
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "size=1m,ro")
    try:
        code, err = cli(["train", "--preset", "tiny", "--out", disk / "r"], capsys)
        assert code == EXIT_IO and "Read-only file system" in one_error_line(err)
    finally:
        subprocess.run(["umount", str(disk)])


# ----------------------------------------------------------------- absurd inputs
@pytest.mark.parametrize("args,code,words", [
    (["--set", "model.widths=[1, 9223372036854775807, 1]"], EXIT_BAD_INPUT, "of memory"),
    (["--set", "model.widths=[1, 100000, 100000, 1]"], EXIT_BAD_INPUT, "of memory"),
    (["--set", "data.n=4611686018427387904"], EXIT_BAD_INPUT, "of memory"),
    (["--set", "data.n=1000000000"], EXIT_BAD_INPUT, "of memory"),
    (["--set", "train.instances=100000000"], EXIT_BAD_INPUT, "of memory"),
    (["--set", "data.x_range=[-1e308, 1e308]"], EXIT_BAD_INPUT, "finite width"),
    (["--preset", ""], EXIT_BAD_INPUT, "unknown preset ''"),
    (["--set", "model.widths=[1, 32, 1"], EXIT_BAD_INPUT, "not a valid TOML value"),
    (["--set", "train.lr=1e-3 junk"], EXIT_BAD_INPUT, "not a valid TOML value"),
    (["--set", ".lr=1"], EXIT_BAD_INPUT, "must be section.key"),
    (["--set", "data.path=x.npz"], EXIT_BAD_INPUT, 'used only with data.target = "file"'),
    (["--set", "data.teacher_seed=3"], EXIT_BAD_INPUT, 'used only with data.target = "teacher"'),
    (["--set", "model.widths=" + "[" * 5000 + "]" * 5000], EXIT_BAD_INPUT, "widths"),
])
def test_absurd_inputs_are_refused_at_once(tmp_path, capsys, args, code, words):
    for dry in (True, False):
        t0 = time.perf_counter()
        got, err = cli(["train", *args, "--out", tmp_path / "r"] + (["--dry-run"] if dry else []), capsys)
        assert time.perf_counter() - t0 < 5
        assert got == code and words in one_error_line(err), err
        assert not (tmp_path / "r").exists()


def test_bad_config_files(tmp_path, capsys):
    cases = {"binary.toml": b"\xff\xfe\x00garbage", "deep.toml": b"[model]\nwidths = " + b"[" * 5000 + b"]" * 5000}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        code, err = cli(["train", "--config", tmp_path / name, "--dry-run"], capsys)
        assert code == EXIT_BAD_INPUT and name in one_error_line(err)


@pytest.mark.parametrize("make,words", [
    (lambda p: np.savez(p), "must hold arrays named 'x' and 'y'"),
    (lambda p: np.savez(p, x=np.zeros((50, 1, 1)), y=np.zeros(50)), "do not match the network"),
    (lambda p: Path(p).write_bytes(b"PK\x03\x04 not a zip"), "cannot read data file"),
    (lambda p: np.savez(p, x=np.linspace(0, 1, 50) * 1j, y=np.zeros(50)), "complex"),
    (lambda p: np.savez(p, x=np.zeros((0, 1)), y=np.zeros((0, 1))), "no data points"),
])
def test_bad_data_files(tmp_path, capsys, make, words):
    path = tmp_path / "d.npz"
    make(str(path))
    code, err = cli(["train", "--preset", "tiny", "--set", "data.target=file", "--set", f"data.path={path}",
                     "--out", tmp_path / "r"], capsys)
    assert code == EXIT_BAD_INPUT and words in one_error_line(err)


def test_fuzzed_overrides_and_config_files(tmp_path):
    """Random --set values and TOML text: exit 0 or a documented code, never an exception."""
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings, strategies as st
    keys = ["model.widths", "model.activation", "data.n", "data.x_range", "train.lr", "train.steps",
            "train.instances", "train.checkpoint_every", "train.dtype", "model.mesh_k", "nonsense.key", "train"]
    values = st.one_of(st.integers(min_value=-2**70, max_value=2**70).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.text(max_size=30),
                       st.lists(st.integers(min_value=-5, max_value=2**40), max_size=6).map(str))

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(keys), values)
    def check(key, value):
        code = main(["train", "--preset", "tiny", "--set", f"{key}={value}", "--set", "train.steps=2",
                     "--dry-run"])
        assert code in (0, EXIT_BAD_INPUT, EXIT_IO)

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(max_size=200))
    def check_file(text):
        p = tmp_path / "fuzz.toml"
        p.write_text(text)
        assert main(["train", "--config", str(p), "--set", "train.steps=2", "--dry-run"]) in (0, EXIT_BAD_INPUT)
    check()
    check_file()


# ----------------------------------------------------------------- interrupts
def _has_loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_sigint_during_start_up_is_quiet(tmp_path):
    """Ctrl-C while mlpsim imports numpy and numba. The signal waits until numpy's compiled
    module is mapped (the command line is loading): earlier, CPython itself is still
    starting, and its own first milliseconds (a traceback from importlib, or death by the
    default SIGINT action) are not mlpsim's to handle. A few milliseconds after the mapping,
    numpy's module init imports ``datetime``; a KeyboardInterrupt there came out as an
    ImportError, so the delays probe that window too."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see where the process is")
    for extra in (0.0, 0.002, 0.003, 0.004, 0.005, 0.006, 0.25):
        proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "train", "--preset", "tiny", "--out",
                                 str(tmp_path / f"r{extra}")], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not _has_loaded(proc.pid, "_multiarray_umath"):
            time.sleep(0.001)
        time.sleep(extra)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, EXIT_INTERRUPTED), err


SWEEP = """
[base]
preset = "tiny"
train = {{ steps = {steps}, checkpoint_every = 50 }}
[grid]
"train.seed" = {seeds}
"""


@pytest.mark.parametrize("executor", [["--workers", "2"],
                                      pytest.param(["--dask-local", "2"], marks=pytest.mark.slow)])
def test_sweep_ctrl_c_stops_at_once_without_tracebacks_and_resumes(tmp_path, executor):
    if executor[0] == "--dask-local":
        pytest.importorskip("dask.distributed")
    path = tmp_path / "s.toml"
    # Three runs on two workers, each about 3 s of training on a 2-core Xeon (tiny's 60000 steps):
    # the Ctrl-C, 0.5 s after two have started, finds two running and one queued.
    path.write_text(SWEEP.format(steps=60000, seeds=[1, 2, 3]))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "sweep", str(path), "--out", str(out), *executor],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/*/state.npz"))) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 30
    assert proc.returncode == EXIT_INTERRUPTED and "Traceback" not in err, err
    assert "run the same command again to continue" in err
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("runs/*/manifest.json")]
    assert len(statuses) == 2 and set(statuses) == {"interrupted"}  # the queued runs never started
    assert not list(out.glob(".stop-*"))
    rerun = subprocess.run([sys.executable, "-m", "mlpsim", "sweep", str(path), "--out", str(out), *executor],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("runs/*/manifest.json")]
    assert len(statuses) == 3 and set(statuses) == {"complete"}


def test_sweep_driver_killed_leaves_no_worker(tmp_path):
    psutil = pytest.importorskip("psutil")
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(steps=400000, seeds=[1, 2, 3, 4, 5, 6]))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "sweep", str(path), "--out", str(out), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/*/state.npz"))) < 2:
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2
    proc.kill()  # SIGKILL of the driver alone
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]


def test_unreachable_scheduler_fails_fast_with_its_address(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(steps=40, seeds=[1, 2, 3, 4, 5, 6]))
    t0 = time.perf_counter()
    code, err = cli(["sweep", path, "--out", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9"], capsys)
    assert time.perf_counter() - t0 < 10
    assert code == EXIT_IO and "tcp://127.0.0.1:9" in one_error_line(err)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- kill storm (slow)
@pytest.mark.slow
def test_kill_storm_then_resume_is_bit_identical(tmp_path):
    """40 SIGKILL / SIGINT at random moments, thread counts switching; the end result equals
    the uninterrupted run bit for bit."""
    rng = np.random.default_rng(0)
    args = ["--preset", "seed", "--set", "train.steps=150000", "--set", "train.instances=3", "--set", "data.n=800"]
    ref = tmp_path / "ref"
    assert subprocess.run([sys.executable, "-m", "mlpsim", "train", *args, "--out", str(ref), "--quiet"]).returncode == 0
    out = tmp_path / "storm"
    for i in range(40):
        flag = ["--resume"] if out.exists() else []
        env = dict(os.environ, NUMBA_NUM_THREADS=str(1 + i % 2))
        proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "train", *args, "--out", str(out), "--quiet",
                                 "--commit-every", "0.05", *flag], env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(float(rng.uniform(0.4, 1.6)))
        proc.send_signal(signal.SIGKILL if i % 3 else signal.SIGINT)
        _, err = proc.communicate()
        assert "Traceback" not in err
        if out.exists() and (out / "manifest.json").exists() and \
                json.loads((out / "manifest.json").read_text())["status"] == "complete":
            break
    subprocess.run([sys.executable, "-m", "mlpsim", "train", *args, "--out", str(out), "--quiet", "--resume"],
                   check=True)
    assert i >= 19  # the storm really hit the run, many times
    for name in ("params.npy", "loss.npy", "loss_steps.npy"):
        assert np.array_equal(np.load(ref / name), np.load(out / name)), name
