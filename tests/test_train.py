"""Training runs: reproducibility, resume after SIGKILL, bad input, divergence, masks."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mlpsim
from mlpsim.config import ConfigError, preset
from mlpsim.store import RunError

SMALL = preset("seed").with_overrides(["data.n=600", "train.steps=60", "train.instances=3",
                                       "train.checkpoint_every=10"])


def cli(*args, env=None, check=True):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "mlpsim", *args], capture_output=True, text=True,
                          env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlpsim {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def arrays(path):
    return {name: np.load(path / f"{name}.npy") for name in ("params", "loss", "loss_steps", "steps")}


def assert_runs_equal(a, b):
    A, B = arrays(a), arrays(b)
    for name in A:
        assert np.array_equal(A[name], B[name], equal_nan=True), name


def test_run_directory_contents(tmp_path):
    run = mlpsim.train(SMALL, tmp_path / "r", progress=False)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "manifest.json", "params.npy", "loss.npy", "loss_steps.npy", "steps.npy",
            "data.npz", "state.npz"} <= files
    assert run.params.shape == (3, 7, 169) and run.loss.shape == (3, 7)
    assert run.loss_steps.shape == (3, 60) and list(run.steps) == list(range(0, 61, 10))
    assert isinstance(run.params, np.memmap)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == "complete" and m["checkpoints_written"] == 7
    assert m["config_sha256"] == SMALL.sha256()
    assert {"mlpsim", "numpy", "numba", "python"} <= set(m["versions"])
    assert mlpsim.Config.from_dict(json.loads((tmp_path / "r" / "config.json").read_text())) == SMALL
    # the checkpoint loss is the loss of the checkpoint's parameters
    x, y = run.data()
    for c in (0, 3, 6):
        assert run.loss[1, c] == pytest.approx(run.net.loss(run.params[1, c], x, y), rel=1e-12)
    assert np.array_equal(run.loss[:, :-1], run.loss_steps[:, ::10])
    # the first checkpoint holds the initialization
    assert np.array_equal(run.params[2, 0], mlpsim.init_params(run.net, seed=SMALL.train.seed, instance=2))


def test_same_seed_same_bits_across_processes_and_thread_counts(tmp_path):
    args = ["train", "--preset", "tiny", "--no-progress"]
    cli(*args, "--out", str(tmp_path / "t1"), env={"NUMBA_NUM_THREADS": "1"})
    cli(*args, "--out", str(tmp_path / "t2"), env={"NUMBA_NUM_THREADS": "2"})
    cli(*args, "--out", str(tmp_path / "t2b"), "--threads", "1")
    assert_runs_equal(tmp_path / "t1", tmp_path / "t2")
    assert_runs_equal(tmp_path / "t1", tmp_path / "t2b")


def test_more_instances_do_not_change_existing_ones(tmp_path):
    a = mlpsim.train(SMALL, tmp_path / "a", progress=False)
    b = mlpsim.train(SMALL.with_overrides(["train.instances=5"]), tmp_path / "b", progress=False)
    assert np.array_equal(a.params, b.params[:3])
    assert np.array_equal(a.loss_steps, b.loss_steps[:3])


# 3001 checkpoints, about 2 s of training: the test stops it after 150 (about 0.1 s in).
KILL_ARGS = ["train", "--preset", "seed", "--set", "data.n=1000", "--set", "train.steps=30000",
             "--set", "train.instances=2", "--no-progress", "--commit-every", "0.05"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    cli(*KILL_ARGS, "--out", str(out))
    return out


@pytest.mark.parametrize("sig,status", [(signal.SIGKILL, "running"), (signal.SIGINT, "interrupted")])
def test_killed_then_resumed_equals_uninterrupted(tmp_path, uninterrupted, sig, status):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", *KILL_ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.json"
    deadline = time.time() + 300
    written = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            written = json.loads(manifest.read_text())["checkpoints_written"]
        except (OSError, ValueError):
            pass
        if written >= 150:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait()
    expected_rc = -signal.SIGKILL if sig == signal.SIGKILL else 130
    err = proc.stderr.read().decode()
    assert proc.returncode == expected_rc, (f"exit {proc.returncode}: the run was not stopped (signal sent "
                                            f"after {written} checkpoints were seen); stderr: {err}")
    m = json.loads(manifest.read_text())
    assert m["status"] == status and 150 <= m["checkpoints_written"] < 3001
    before = np.load(out / "params.npy")[:, :m["checkpoints_written"]].copy()
    # an unfinished run is refused unless the prefix is asked for
    with pytest.raises(RunError, match=status):
        mlpsim.load_run(out)
    prefix = mlpsim.load_run(out, allow_incomplete=True)
    assert prefix.params.shape[1] == m["checkpoints_written"]
    assert np.all(np.isfinite(prefix.loss))
    cli(*KILL_ARGS, "--out", str(out), "--resume")
    assert_runs_equal(out, uninterrupted)
    assert np.array_equal(np.load(out / "params.npy")[:, :before.shape[1]], before)


def test_resume_of_complete_run_is_a_no_op(tmp_path):
    mlpsim.train(SMALL, tmp_path / "r", progress=False)
    stamp = (tmp_path / "r" / "params.npy").stat().st_mtime_ns
    run = mlpsim.train(SMALL, tmp_path / "r", resume=True, progress=False)
    assert run.complete and (tmp_path / "r" / "params.npy").stat().st_mtime_ns == stamp


def test_existing_out_is_refused_and_resume_checks_config(tmp_path):
    mlpsim.train(SMALL, tmp_path / "r", progress=False)
    with pytest.raises(RunError, match="--resume"):
        mlpsim.train(SMALL, tmp_path / "r", progress=False)
    with pytest.raises(RunError, match="train.lr: run has 0.001, requested 0.002"):
        mlpsim.train(SMALL.with_overrides(["train.lr=0.002"]), tmp_path / "r", resume=True, progress=False)
    run = mlpsim.train(SMALL.with_overrides(["train.lr=0.002"]), tmp_path / "r", overwrite=True,
                       progress=False)
    assert run.config.train.lr == 0.002


@pytest.mark.parametrize("kwargs,match", [
    (dict(overrides=["model.widths=[2, 8, 1]"]), "input dimension 1"),
    (dict(overrides=["model.widths=[1, 8, 2]"]), "output dimension 1"),
    (dict(init_params=np.zeros(10)), r"shape \(169,\)"),
    (dict(init_params=np.full(169, np.nan)), "NaN"),
    (dict(masks=[np.ones((8, 2)), None, None, None]), "mask of layer 1"),
    (dict(overrides=["train.lr=-1"]), "train.lr"),
    (dict(threads=99), "threads"),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, kwargs, match):
    out = tmp_path / "never"
    with pytest.raises((ConfigError, ValueError), match=match):
        mlpsim.train(SMALL, out, progress=False, **kwargs)
    assert not out.exists()


def test_masked_weights_stay_exactly_zero(tmp_path):
    rng = np.random.default_rng(0)
    masks = [None, (rng.random((8, 8)) < 0.5).astype(int), (rng.random((8, 8)) < 0.5).astype(int), None]
    for opt in ("adam", "momentum", "gd"):
        cfg = SMALL.with_overrides([f"train.optimizer={opt}", "train.weight_decay=0.01", "train.lr=0.01"])
        run = mlpsim.train(cfg, tmp_path / opt, masks=masks, progress=False)
        free = run.net.free
        assert np.all(run.params[:, :, free == 0] == 0)
        # (a dead relu unit's bias can stay at 0, so ask for most, not all)
        assert np.mean(run.params[:, -1, free == 1] != run.params[:, 0, free == 1]) > 0.8
        assert run.net.masks[1] is not None and np.array_equal(run.net.masks[1], masks[1])


def test_masks_from_file_via_config(tmp_path):
    mask = np.eye(8, dtype=int)
    np.savez(tmp_path / "m.npz", mask_2=mask)
    run = mlpsim.train(SMALL.with_overrides([f"model.masks='{tmp_path / 'm.npz'}'"]), tmp_path / "r",
                       progress=False)
    assert np.all(run.net.view(run.params, "W2")[..., mask == 0] == 0)
    np.savez(tmp_path / "bad.npz", mask_9=mask)
    with pytest.raises(ConfigError, match="mask_9"):
        mlpsim.train(SMALL.with_overrides([f"model.masks='{tmp_path / 'bad.npz'}'"]), tmp_path / "x")


def test_explicit_initial_parameters(tmp_path):
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    theta = net.init(seed=99, scheme="glorot_uniform")
    run = mlpsim.train(SMALL, tmp_path / "a", init_params=theta, progress=False)
    assert all(np.array_equal(run.params[e, 0], theta) for e in range(3))
    np.save(tmp_path / "theta.npy", np.stack([theta] * 3))
    run2 = mlpsim.train(SMALL.with_overrides([f"model.init_params='{tmp_path / 'theta.npy'}'"]),
                        tmp_path / "b", progress=False)
    assert np.array_equal(run.params, run2.params)


def test_divergence_stops_with_instance_and_step(tmp_path):
    cfg = SMALL.with_overrides(["train.optimizer=gd", "train.lr=50", "train.steps=200"])
    with pytest.raises(mlpsim.TrainingDiverged, match=r"instance \d+ at step \d+"):
        mlpsim.train(cfg, tmp_path / "d", progress=False)
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["status"] == "failed" and "diverged" in m["reason"]
    run = mlpsim.load_run(tmp_path / "d", allow_incomplete=True)
    first = min(d["step"] for d in m["diverged"])
    assert run.steps[-1] < first and np.all(np.isfinite(run.params))
    with pytest.raises(RunError, match="failed"):
        mlpsim.load_run(tmp_path / "d")
    with pytest.raises(RunError, match="failed"):
        mlpsim.train(cfg, tmp_path / "d", resume=True, progress=False)


def test_divergence_continue_freezes_only_the_bad_instance(tmp_path):
    # explicit init: instance 1 starts huge and diverges; the others are fine
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    thetas = np.stack([net.init(seed=s) for s in range(3)])
    thetas[1] *= 1e160  # the output overflows to inf at once
    cfg = SMALL.with_overrides(["train.optimizer=gd", "train.lr=0.05", "train.on_divergence=continue"])
    run = mlpsim.train(cfg, tmp_path / "c", init_params=thetas, progress=False)
    assert run.complete
    bad = {d["instance"] for d in run.manifest["diverged"]}
    assert bad == {1}
    assert np.all(np.isfinite(run.params[[0, 2]])) and np.isnan(run.params[1, -1]).all()
    # the healthy instances are unaffected by their neighbour's divergence
    alone = mlpsim.train(cfg.with_overrides(["train.instances=1"]), tmp_path / "alone",
                         init_params=thetas[0], progress=False)
    assert np.array_equal(alone.params[0], run.params[0])


def test_float32_run(tmp_path):
    run = mlpsim.train(SMALL.with_overrides(["train.dtype=float32"]), tmp_path / "f", progress=False)
    run64 = mlpsim.train(SMALL, tmp_path / "d", progress=False)
    assert run.params.dtype == np.float32
    np.testing.assert_allclose(run.params[:, -1], run64.params[:, -1], rtol=1e-3, atol=1e-4)


def test_log_spaced_checkpoints(tmp_path):
    cfg = SMALL.with_overrides(["train.checkpoint_steps=[1, 2, 4, 8, 16, 32]"])
    run = mlpsim.train(cfg, tmp_path / "l", progress=False)
    assert list(run.steps) == [0, 1, 2, 4, 8, 16, 32, 60]
    ref = mlpsim.train(SMALL, tmp_path / "r", progress=False)
    assert np.array_equal(run.params[:, -1], ref.params[:, -1])


@pytest.mark.slow
def test_seed_preset_trains_below_constant_predictor(tmp_path):
    """15000 Adam steps: every instance well below the best constant's MSE (0.25).

    Slow (14 s); its smoke tests are the short seed runs of tests/test_golden.py
    (fixed bytes) and tests/test_readme.py."""
    run = mlpsim.train("seed", tmp_path / "seed", progress=False)
    assert run.params.shape == (5, 1501, 169)
    final = run.final_loss()
    assert np.all(final < 0.05), final


def test_resume_refuses_a_run_of_another_engine_version(tmp_path):
    from mlpsim.training import Interrupted
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        mlpsim.train(preset("tiny"), out, overrides=["train.steps=200"], progress=False, stop=lambda: True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["version"] == mlpsim.kernels.ENGINE_VERSION and manifest["status"] == "interrupted"
    manifest["engine"]["version"] -= 1  # as written by an older mlpsim, whose sums ran in another order
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="engine version"):
        mlpsim.train(preset("tiny"), out, overrides=["train.steps=200"], resume=True, progress=False)
    manifest["engine"]["version"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert mlpsim.train(preset("tiny"), out, overrides=["train.steps=200"], resume=True,
                        progress=False).manifest["status"] == "complete"


def test_software_multiply_adds_are_reported_once_even_when_quiet(tmp_path, monkeypatch, capsys):
    # Without FMA instructions a step takes ~40 times as long: the user hears why, once
    # per process, also with progress off (it is a warning, not progress).
    from mlpsim import simd, training
    monkeypatch.setattr(training, "_fma_warned", False)
    monkeypatch.setattr(simd, "fma_warning", lambda: "mlpsim: this CPU has no FMA instructions: ...")
    mlpsim.train(SMALL, tmp_path / "a", progress=False)
    mlpsim.train(SMALL, tmp_path / "b", progress=False)
    assert capsys.readouterr().err.count("this CPU has no FMA instructions") == 1
    monkeypatch.setattr(training, "_fma_warned", False)
    monkeypatch.setattr(simd, "fma_warning", lambda: None)
    mlpsim.train(SMALL, tmp_path / "c", progress=False)
    assert "FMA" not in capsys.readouterr().err


def test_a_finished_run_of_another_engine_version_is_not_reused(tmp_path, monkeypatch):
    # Its last bits are another engine's: studies and atlases must not take it for
    # this mlpsim's result. The runs folder of studies names the engine version, so a
    # new version trains anew there; anywhere else the user is told.
    from mlpsim import study
    from mlpsim.training import obtain_run
    cfg = preset("tiny").with_overrides(["train.steps=20"])
    out = tmp_path / "run"
    mlpsim.train(cfg, out, progress=False)
    said = []
    assert obtain_run(cfg, out, log=said.append).manifest["status"] == "complete"
    assert "reusing the finished run" in said[0]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["engine"]["version"] -= 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match=r"trained by engine version \d+, and this mlpsim trains with version"):
        obtain_run(cfg, out, log=said.append)
    here = study.run_path(cfg, tmp_path)
    monkeypatch.setattr(mlpsim.kernels, "ENGINE_VERSION", mlpsim.kernels.ENGINE_VERSION + 1)
    assert study.run_path(cfg, tmp_path) != here and study.run_path(cfg, tmp_path).parent == here.parent


def test_a_target_cannot_change_the_inputs_or_hand_over_complex_numbers(tmp_path):
    def in_place(x):
        x -= 1.0  # writes into its argument
        return np.sin(x)
    run = mlpsim.train("tiny", tmp_path / "a", overrides=["train.steps=20"], target=in_place, progress=False)
    x, y = run.data()
    np.testing.assert_array_equal(y, np.sin(x - 1.0))  # x is the drawn inputs, untouched
    with pytest.raises(ConfigError, match="complex numbers"):
        mlpsim.train("tiny", tmp_path / "b", overrides=["train.steps=20"], target=lambda x: x + 1j, progress=False)
    assert not (tmp_path / "b").exists()


def test_bad_arguments_to_train_are_refused_before_the_run_directory_exists(tmp_path):
    for kwargs, message in [({"overwrite": "no"}, "overwrite must be True or False"),
                            ({"resume": 1}, "resume must be True or False"),
                            ({"stop": 5}, "stop must be a function"), ({"progress": "yes"}, "progress must be"),
                            ({"out": 5}, "out must be a folder")]:
        with pytest.raises(ConfigError, match=message):
            mlpsim.train("tiny", **{"out": tmp_path / "r", "overrides": ["train.steps=20"], **kwargs})
        assert not (tmp_path / "r").exists()
    with pytest.raises(TypeError, match="path must be a run directory"):
        mlpsim.load_run(5)


def test_ensemble_steps_are_whole_numbers(tmp_path):
    from mlpsim.training import build_net, initial_params, training_data
    cfg = preset("tiny")
    net = build_net(cfg)
    x, y, _, _ = training_data(cfg, net)
    thetas = initial_params(cfg, net)
    for step in (-5, 2.7, True):
        with pytest.raises(ValueError, match="step"):
            mlpsim.Ensemble(net, cfg.train, x, y, thetas, step=step)
    ens = mlpsim.Ensemble(net, cfg.train, x, y, thetas)
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n_steps must be a whole number"):
            ens.run(n)
    with pytest.raises(ValueError, match="run fewer steps per call"):
        ens.run(10 ** 15)
    assert ens.run(np.int64(2)).shape == (cfg.train.instances, 2)


def test_inputs_and_targets_are_real_numbers(tmp_path):
    net = mlpsim.MLP([1, 4, 1])
    theta = net.init(seed=1)
    x = np.linspace(-1, 1, 8)[:, None]
    with pytest.raises(ValueError, match="inputs are complex numbers"):
        net.forward(theta, x + 1j)
    with pytest.raises(ValueError, match="targets are complex numbers"):
        net.loss(theta, x, x + 1j)
    with pytest.raises(ValueError, match="inputs must be numbers, got dtype <U1"):
        net.forward(theta, np.array(list("abcdefgh"))[:, None])
    assert net.loss(theta, x, x > 0) == net.loss(theta, x, (x > 0) * 1.0)  # a boolean target is 0 and 1


def test_an_ensemble_is_given_the_train_section_and_overrides_may_be_one_string():
    from mlpsim.training import build_net, initial_params, training_data
    cfg = preset("tiny")
    net = build_net(cfg)
    x, y, _, _ = training_data(cfg, net)
    with pytest.raises(TypeError, match="pass config.train, not config"):
        mlpsim.Ensemble(net, cfg, x, y, initial_params(cfg, net))
    assert cfg.with_overrides("train.steps=5").train.steps == 5
    assert cfg.with_overrides(None) == cfg
    with pytest.raises(ConfigError, match="use Config.with_values"):
        cfg.with_overrides({"train.steps": 5})
