"""Optimizer steps and short training runs against the NumPy reference."""
import numpy as np
import pytest

import mlpsim
from mlpsim import kernels
import reference as ref

OPTIMIZERS = [("gd", "wolfram", "gd"), ("momentum", "wolfram", "momentum"),
              ("adam", "wolfram", "adam_wolfram"), ("adam", "kingma", "adam_kingma")]


@pytest.mark.parametrize("opt,variant,ref_name", OPTIMIZERS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_optimizer_update_matches_reference(opt, variant, ref_name, weight_decay):
    rng = np.random.default_rng(1)
    P = 37
    theta, g = rng.normal(size=(1, P)), rng.normal(size=(1, P))
    s1, s2 = rng.normal(size=(1, P)) * 0.1, rng.random((1, P)) * 0.1
    free = (rng.random(P) < 0.8).astype(np.uint8)
    cfg = mlpsim.TrainConfig(optimizer=opt, adam_variant=variant, lr=0.01, weight_decay=weight_decay)
    t = 7
    exp_theta, (exp_m, exp_v) = ref.optimizer_step(theta[0], g[0], (s1[0], s2[0]), t, ref_name, lr=0.01,
                                                   weight_decay=weight_decay, free=free)
    got, m, v = theta.copy(), s1.copy(), s2.copy()
    kernels.optimizer_update(got, g, m, v, free, np.ones(1, np.uint8), t, cfg.optimizer_code, cfg.hyper())
    np.testing.assert_allclose(got[0], exp_theta, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(m[0], exp_m, rtol=1e-14, atol=1e-15)
    if opt == "adam":
        np.testing.assert_allclose(v[0], exp_v, rtol=1e-14, atol=1e-15)
    assert np.array_equal(got[0][free == 0], theta[0][free == 0])


def test_kingma_equals_textbook_and_differs_from_wolfram():
    """The two Adam forms are different algorithms (eps enters differently)."""
    rng = np.random.default_rng(2)
    theta, g = rng.normal(size=(1, 5)), rng.normal(size=(1, 5)) * 1e-4
    out = {}
    for variant in ("wolfram", "kingma"):
        cfg = mlpsim.TrainConfig(adam_variant=variant, lr=0.1)
        th, m, v = theta.copy(), np.zeros((1, 5)), np.zeros((1, 5))
        kernels.optimizer_update(th, g, m, v, np.ones(5, np.uint8), np.ones(1, np.uint8), 1,
                                 cfg.optimizer_code, cfg.hyper())
        out[variant] = th
    assert not np.allclose(out["wolfram"], out["kingma"], rtol=1e-6)


def test_hand_worked_adam_update():
    """First Adam step (wolfram form): m = 0.1 g, v = 0.001 g^2, step = lr*sqrt(.001)/.1 * m/(sqrt(v)+eps)."""
    g = np.array([[0.5]])
    th, m, v = np.array([[1.0]]), np.zeros((1, 1)), np.zeros((1, 1))
    cfg = mlpsim.TrainConfig(lr=0.001)
    kernels.optimizer_update(th, g, m, v, np.ones(1, np.uint8), np.ones(1, np.uint8), 1,
                             cfg.optimizer_code, cfg.hyper())
    m1, v1 = 0.05, 0.001 * 0.25
    expected = 1.0 - 0.001 * np.sqrt(0.001) / 0.1 * m1 / (np.sqrt(v1) + 1e-5)
    assert m[0, 0] == pytest.approx(m1) and v[0, 0] == pytest.approx(v1)
    assert th[0, 0] == pytest.approx(expected, rel=1e-14)
    # approximately lr * sign(g), slightly less because of eps
    assert 1.0 - th[0, 0] == pytest.approx(0.001 * 0.0158114 / (0.0158114 + 1e-5), rel=1e-5)


@pytest.mark.parametrize("opt,variant,ref_name", OPTIMIZERS)
def test_training_matches_reference_loop(tmp_path, opt, variant, ref_name):
    cfg = mlpsim.Config(
        model=mlpsim.ModelConfig(widths=(1, 6, 5, 1), activation="tanh"),
        data=mlpsim.DataConfig(n=300),
        train=mlpsim.TrainConfig(optimizer=opt, adam_variant=variant, lr=0.01, steps=40,
                                 checkpoint_every=10, instances=2, weight_decay=0.001))
    run = mlpsim.train(cfg, tmp_path / "r", progress=False)
    x, y = run.data()
    for e in range(2):
        theta, losses = ref.train(run.params[e, 0], [1, 6, 5, 1], x, y, 40, ref_name, "tanh",
                                  lr=0.01, weight_decay=0.001)
        np.testing.assert_allclose(run.params[e, -1], theta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(run.loss_steps[e], losses, rtol=1e-9)
        np.testing.assert_allclose(run.loss[e, :-1], losses[::10], rtol=1e-9)


def _powers(b, ts):
    import numba

    @numba.njit
    def run(b, ts, out):
        for i in range(ts.size):
            out[i] = kernels.integer_power(b, ts[i])
    out = np.empty(ts.size)
    run(b, ts, out)
    return out


def test_bias_correction_powers_are_correctly_rounded():
    # Adam's beta ** t: numba's own ** squares in plain float64 (0.9 ** 4 is one unit
    # off) up to t = 65536 and calls the C library's pow beyond, whose last bit
    # depends on the CPU; kernels.integer_power is correctly rounded, from multiplies
    # and fused multiply-adds only.
    from decimal import Decimal, localcontext
    ts = np.concatenate([np.arange(0, 400), np.random.default_rng(0).integers(400, 300_000, 300)]).astype(np.int64)
    for b in (0.9, 0.999, 0.99, 0.9999, 0.5, 1.0):
        got = _powers(b, ts)
        with localcontext() as ctx:
            ctx.prec = 60
            exact = np.array([float(Decimal(b) ** int(t)) for t in ts])
        normal = exact >= 1e-290  # below, the double-double's low half underflows
        np.testing.assert_array_equal(got[normal], exact[normal], err_msg=str(b))
        assert np.all(np.abs(got[~normal] - exact[~normal]) <= 2 * np.spacing(exact[~normal]))


def test_an_adam_step_uses_the_correctly_rounded_bias_corrections():
    # at t = 4, 1 - 0.9 ** 4 by repeated squaring is one unit off the correctly rounded
    # one; theta starts at 0, so that the step is not rounded away
    g = np.array([[0.5]])
    th, m, v = np.array([[0.0]]), np.array([[0.2]]), np.array([[0.3]])
    cfg = mlpsim.TrainConfig(lr=0.001)
    kernels.optimizer_update(th, g, m, v, np.ones(1, np.uint8), np.ones(1, np.uint8), 4,
                             cfg.optimizer_code, cfg.hyper())
    m4 = 0.9 * 0.2 + (1 - 0.9) * 0.5  # the kernel's arithmetic, operation by operation
    v4 = 0.999 * 0.3 + (1 - 0.999) * (0.5 * 0.5)
    step = 0.001 * np.sqrt(1 - 0.999 ** 4) / (1 - 0.9 ** 4)  # Python floats: the C library's pow
    assert th[0, 0] == 0.0 - step * m4 / (np.sqrt(v4) + 1e-5)
