"""Targets, data files, held-out data and user target functions."""
import numpy as np
import pytest

import mlpsim
from mlpsim import data
from mlpsim.config import ConfigError, preset

SMALL = preset("seed").with_overrides(["data.n=300", "train.steps=20", "train.instances=2",
                                       "train.checkpoint_every=10"])


def test_targets_at_known_points():
    x = np.array([[-2.5], [-2.0], [-1.5], [-1.0], [-0.5], [0.0], [1.9], [2.0]])
    assert list(data.piecewise(x)[:, 0]) == [0, 1, 1, 0, 0, 1, 1, 0]
    assert list(data.step(np.array([[-0.1], [0.0]]))[:, 0]) == [0, 1]
    np.testing.assert_allclose(data.sinc(np.array([[0.0], [np.pi], [np.pi / 2]]))[:, 0], [1.0, 0.0, 2 / np.pi],
                               atol=1e-15)
    assert data.absolute(np.array([[-2.0]]))[0, 0] == 2.0
    np.testing.assert_allclose(data.sawtooth(np.array([[-0.25], [1.5]]))[:, 0], [0.75, 0.5])
    assert data.bump(np.array([[0.0]]))[0, 0] == 1.0
    assert data.polynomial(np.array([[3.0]]))[0, 0] == pytest.approx(3.0 - 1.5)
    assert data.gaussian_2d(np.array([[0.0, 0.0]]))[0, 0] == 1.0
    assert list(data.checkerboard(np.array([[0.5, 0.5], [1.5, 0.5], [-0.5, -0.5]]))[:, 0]) == [1, 0, 1]
    assert data.TARGETS["sinc"].x_range == (-32.0, 32.0)


def test_transcendental_targets_are_exactly_rounded():
    # sin(fl(pi)) = pi - fl(pi); sin(1e22) needs pi to 40 digits and more (a classic
    # test of argument reduction); exp(-x^2) with x^2 taken exactly, not rounded first.
    sin = data.sin(np.array([[np.pi], [np.pi / 2], [1e22], [-3.0], [0.0], [-0.0]]))[:, 0]
    assert list(sin[:4]) == [1.2246467991473532e-16, 1.0, -0.8522008497671888, -0.1411200080598672]
    assert sin[4] == 0 and np.signbit(sin[5])
    assert data.bump(np.array([[3.0], [0.5]]))[:, 0].tolist() == [0.00012340980408667956, 0.7788007830714049]
    # where NumPy's exp(-x**2) and sin are a unit off (exact values from 80- and
    # 120-digit decimals; on these near-ties glibc's sin is a unit off too)
    assert data.bump(np.array([[2.9], [1.7], [2.05]]))[:, 0].tolist() == [
        0.00022262985691888913, 0.05557621261148308, 0.0149581347005775]
    assert data.sin(np.array([[-0.5059815471583988], [2.3264532135454266]]))[:, 0].tolist() == [
        -0.48466623214605126, 0.7278212290436782]
    sinc = data.sinc(np.array([[0.0], [np.pi], [1e-200]]))[:, 0]
    assert sinc.tolist() == [1.0, 1.2246467991473532e-16 / np.pi, 1.0]
    # and near the C library elsewhere: sin within a unit in the last place; exp(-x^2)
    # within 8 on [-3, 3], where the C library's x * x, rounded, moves it by up to 4.5
    import math
    rng = np.random.default_rng(3)
    for target, reference, scale, units in ((data.sin, math.sin, 32, 1), (data.bump, lambda t: math.exp(-t * t), 3, 8)):
        x = rng.uniform(-scale, scale, 2000)
        got, want = target(x[:, None])[:, 0], np.array([reference(t) for t in x])
        assert np.all(np.abs(got - want) <= units * np.spacing(np.abs(want)))


def test_targets_have_the_same_bits_whatever_code_paths_numpy_and_the_c_library_take(tmp_path):
    # NumPy's sin and exp (and glibc's) take other code paths on other CPUs and give
    # other last bits (1 value in 10 to 1 in 1000): the targets must not. Here the
    # other paths are forced: NumPy without AVX2/AVX-512, glibc without FMA.
    import os
    import subprocess
    import sys
    script = ("import sys, numpy as np; from mlpsim import data\n"
              "x = np.random.default_rng(0).uniform(-3, 3, (2000, 2))\n"
              "np.save(sys.argv[1], np.hstack([data.TARGETS[t].fn(x) for t in ('sin', 'sinc', 'bump', 'gaussian_2d')]))")
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES="AVX512_ICL AVX512_SPR X86_V4 X86_V3",
               GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4,-AVX512F")
    for name, environment in (("here", None), ("other", env)):
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}.npy")], env=environment,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
    here, other = np.load(tmp_path / "here.npy"), np.load(tmp_path / "other.npy")
    np.testing.assert_array_equal(here.view(np.uint64), other.view(np.uint64))


def test_default_range_follows_the_target():
    assert mlpsim.DataConfig(target="sinc").x_range == (-32.0, 32.0)
    assert mlpsim.DataConfig(target="gaussian_2d").x_range == (-2.0, 2.0)
    assert mlpsim.DataConfig(target="sinc", x_range=(-1, 1)).x_range == (-1.0, 1.0)


def test_two_dimensional_target_and_teacher(tmp_path):
    run = mlpsim.train(SMALL.with_overrides(["data.target=gaussian_2d", "model.widths=[2, 8, 1]"]),
                       tmp_path / "g", progress=False)
    x, y = run.data()
    assert x.shape == (300, 2) and np.all(np.abs(x) <= 2)
    np.testing.assert_allclose(y[:, 0], np.exp(-(x ** 2).sum(1) / 2))
    cfg = SMALL.with_overrides(["data.target=teacher", "data.teacher_widths=[1, 5, 1]", "model.widths=[1, 8, 1]"])
    a = mlpsim.train(cfg, tmp_path / "t1", progress=False)
    b = mlpsim.train(cfg.with_overrides(["train.seed=9"]), tmp_path / "t2", progress=False)
    assert np.array_equal(a.data()[1], b.data()[1])  # the teacher depends on its own seed only
    c = mlpsim.train(cfg.with_overrides(["data.teacher_seed=1"]), tmp_path / "t3", progress=False)
    assert not np.array_equal(a.data()[1], c.data()[1])
    with pytest.raises(ConfigError, match="input dimension 2"):
        mlpsim.train(SMALL.with_overrides(["data.target=checkerboard"]), tmp_path / "bad")


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".csv", "_header.csv"])
def test_data_files_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (50, 1))
    y = np.sin(x)
    path = tmp_path / f"d{suffix}"
    if suffix == ".npz":
        np.savez(path, x=x, y=y)
    elif suffix == ".npy":
        np.save(path, np.hstack([x, y]))
    else:
        header = "x,y\n" if "header" in suffix else ""
        path.write_text(header + "\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(x[:, 0], y[:, 0])) + "\n")
    run = mlpsim.train(SMALL.with_overrides(["data.target=file", f"data.path='{path}'"]), tmp_path / "r",
                       progress=False)
    rx, ry = run.data()
    assert np.array_equal(rx, x) and np.array_equal(ry, y)


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    ("1,2,3\n4,5,6\n", "2 columns"),
    ("1,nan\n2,3\n", "NaN"),
])
def test_bad_data_files(tmp_path, content, match):
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        mlpsim.train(SMALL.with_overrides(["data.target=file", f"data.path='{path}'"]), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="required"):
        SMALL.with_overrides(["data.target=file"])
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ConfigError, match=".npz, .npy or .csv"):
        mlpsim.train(SMALL.with_overrides(["data.target=file", f"data.path='{tmp_path / 'd.txt'}'"]), tmp_path / "r")


def test_held_out_loss_is_recorded(tmp_path):
    run = mlpsim.train(SMALL.with_overrides(["data.n_test=200"]), tmp_path / "h", progress=False)
    xt, yt = run.test_data()
    assert xt.shape == (200, 1) and run.test_loss.shape == (2, 3)
    x, _ = run.data()
    assert not np.any(np.isin(xt, x))  # an independent stream
    for c in range(3):
        assert run.test_loss[1, c] == pytest.approx(np.mean((run.net.forward(run.params[1, c], xt) - yt) ** 2))
    plain = mlpsim.train(SMALL, tmp_path / "p", progress=False)
    assert np.array_equal(plain.params, run.params) and plain.test_loss is None


def test_callable_target_and_resume_check(tmp_path):
    run = mlpsim.train(SMALL, tmp_path / "c", target=lambda x: np.cos(x), progress=False)
    x, y = run.data()
    np.testing.assert_allclose(y, np.cos(x))
    assert run.config.data.target == "callable"
    with pytest.raises(mlpsim.RunError, match="data differ"):
        mlpsim.train(SMALL, tmp_path / "c", target=lambda x: np.sin(x), resume=True, progress=False)
    with pytest.raises(ConfigError, match="output shape"):
        mlpsim.train(SMALL, tmp_path / "bad", target=lambda x: np.hstack([x, x]), progress=False)
    with pytest.raises(ConfigError, match="needs a Python function"):
        mlpsim.train(SMALL.with_overrides(["data.target=callable"]), tmp_path / "bad2")
