"""The perturbation lab: edits, exact batched effects, searches, Hessian, recovery."""
import numpy as np
import pytest

import mlpsim
from mlpsim import perturb


@pytest.fixture(scope="module")
def trained():
    run = mlpsim.train("tiny", None, progress=False)
    x, y = run.data()
    return run.net, np.array(run.params[0, -1]), x, y


def test_edits_return_new_arrays_and_never_touch_the_input(trained):
    net, theta, _, _ = trained
    before = theta.copy()
    for op, value in [("set", 2.0), ("add", 0.5), ("multiply", 3.0), ("zero", None), ("flip_sign", None)]:
        out = perturb.edit(net, theta, [3, 20], op, value)
        assert np.array_equal(theta, before) and not np.shares_memory(out, theta)
    np.testing.assert_array_equal(perturb.edit(net, theta, [3], "set", 2.0)[3], 2.0)
    assert perturb.edit(net, theta, [3], "add", 0.5)[3] == theta[3] + 0.5
    assert perturb.edit(net, theta, [3], "multiply", 3.0)[3] == theta[3] * 3
    assert perturb.edit(net, theta, [3], "flip_sign")[3] == -theta[3]
    r1 = perturb.edit(net, theta, [3, 20], "redraw", seed=1)
    assert np.array_equal(r1, perturb.edit(net, theta, [3, 20], "redraw", seed=1)) and r1[3] != theta[3]
    ens = np.stack([theta, theta])
    assert perturb.edit(net, ens, [5], "zero").shape == (2, 169)
    traj = np.stack([ens, ens], axis=1)
    assert np.all(perturb.edit(net, traj, [5], "zero")[..., 5] == 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(indices=[169], op="zero"), "out of range"),
    (dict(indices=[-1], op="zero"), "out of range"),
    (dict(indices=[0], op="scale"), "flip_sign"),
    (dict(indices=[0], op="set"), "needs a value"),
    (dict(indices=[0], op="redraw"), "needs a seed"),
])
def test_bad_edits(trained, kwargs, match):
    net, theta, _, _ = trained
    with pytest.raises(ValueError, match=match):
        perturb.edit(net, theta, **kwargs)


def test_bad_budgets_and_k(trained):
    net, theta, x, y = trained
    with pytest.raises(ValueError, match="eps"):
        perturb.Budget("absolute", -1.0)
    with pytest.raises(ValueError, match="layer_std"):
        perturb.Budget("percent", 1.0)
    ev = perturb.Evaluator(net, theta, x, y)
    with pytest.raises(ValueError, match="k must be"):
        ev.greedy(perturb.Budget(), 170)
    with pytest.raises(ValueError, match="k must be"):
        ev.random_edits(perturb.Budget(), 0, 10, seed=0)


def test_budget_intervals(trained):
    net, theta, _, _ = trained
    lo, hi = perturb.Budget("absolute", 0.1).interval(net, theta)
    np.testing.assert_allclose(hi - theta, 0.1)
    lo, hi = perturb.Budget("relative", 0.5).interval(net, theta)
    np.testing.assert_allclose(hi - theta, 0.5 * np.abs(theta))
    lo, hi = perturb.Budget("layer_std", 2.0).interval(net, theta)
    assert hi[20] - theta[20] == pytest.approx(2.0 * net.view(theta, "W2").std())
    lo, hi = perturb.Budget("unbounded", value_range=(-3, 3)).interval(net, theta)
    assert np.all(lo == -3) and np.all(hi == 3)


def test_batched_effects_equal_one_by_one_and_the_forward_pass(trained):
    net, theta, x, y = trained
    ev = perturb.Evaluator(net, theta, x, y)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 169, (40, 3))
    vals = theta[idx] + rng.normal(0, 1, idx.shape)
    batch = ev.effects(idx, vals)
    for k in range(0, 40, 7):
        one = ev.effects(idx[k:k + 1], vals[k:k + 1])
        for key in batch:
            assert batch[key][k] == one[key][0], key  # bit for bit
        edited = theta.copy()
        edited[idx[k]] = vals[k]
        yhat = net.forward(edited, x)
        assert batch["train_mse"][k] == pytest.approx(np.mean((yhat - y) ** 2), rel=1e-12)
        g = np.linspace(-3.5, 3.5, 2001)[:, None]
        change = net.forward(edited, g) - net.forward(theta, g)
        assert batch["max_change"][k] == pytest.approx(np.abs(change).max(), rel=1e-12, abs=1e-15)
        assert batch["grid_mse_change"][k] == pytest.approx(np.mean(change ** 2), rel=1e-10, abs=1e-20)
        flips = np.mean((net.forward(edited, g) > 0.5) != (net.forward(theta, g) > 0.5))
        assert batch["flip_fraction"][k] == flips
    # the incremental single-edit path agrees with full recomputation
    single = ev.single_effects(idx[:, 0], vals[:, 0])
    full = ev.effects(idx[:, :1], vals[:, :1])
    for key in ("train_mse", "grid_mse_change", "max_change"):
        np.testing.assert_allclose(single[key], full[key], rtol=1e-9, atol=1e-12)
    assert np.array_equal(single["flip_fraction"], full["flip_fraction"])
    no_edit = ev.effects(np.array([[-1]]), np.array([[0.0]]))
    assert no_edit["mse_ratio"][0] == pytest.approx(1.0) and no_edit["max_change"][0] == 0


def test_exhaustive_search_finds_a_planted_critical_weight():
    """1 -> 3 -> 1 relu net where only hidden unit 1 is active: its output weight is critical."""
    net = mlpsim.MLP([1, 3, 1])
    # W1 = [1, 1, 1], b1 = [-10, 0, -10] (units 0, 2 dead on [0, 1]); W2 = [1, 5, 1]; b2 = 0
    theta = np.array([1.0, 1.0, 1.0, -10.0, 0.0, -10.0, 1.0, 5.0, 1.0, 0.0])
    x = np.linspace(0, 1, 200)[:, None]
    y = net.forward(theta, x)
    ev = perturb.Evaluator(net, theta, x, y, grid=x)
    table = ev.exhaustive_single(perturb.Budget("absolute", 1.0), n_values=21)
    # b1[1] (index 4) shifts the only live unit by up to 1, which the output multiplies by 5:
    # MSE 25; W1[1] gives 25 x^2 on average (25/3); b2 shifts the output by 1 (MSE 1);
    # W2[1] changes it by x (1/3)
    order = table["index"][np.argsort(table["train_mse"])[::-1]]
    assert list(order[:4]) == [4, 1, 9, 7]
    assert table["train_mse"][np.argmax(table["train_mse"])] == pytest.approx(25.0, rel=1e-6)
    dead = [0, 2, 3, 5, 6, 8]  # weights into and out of the dead units barely matter
    assert np.all(table["train_mse"][np.isin(table["index"], dead)] < 1e-20)


def test_greedy_with_k1_equals_exhaustive(trained):
    net, theta, x, y = trained
    ev = perturb.Evaluator(net, theta, x, y)
    b = perturb.Budget("layer_std", 0.5)
    table = ev.exhaustive_single(b, n_values=16)
    g = ev.greedy(b, 1, n_values=16)
    j = int(np.argmax(table["train_mse"]))
    assert g["indices"] == [int(table["index"][j])] and g["values"][0] == table["value"][j]
    g2 = ev.greedy(b, 3, n_values=16)
    mses = [e["train_mse"] for e in g2["effects"]]
    assert len(set(g2["indices"])) == 3 and mses[0] == g["effects"][0]["train_mse"]


def test_random_edits_are_seeded(trained):
    net, theta, x, y = trained
    ev = perturb.Evaluator(net, theta, x, y)
    a = ev.random_edits(perturb.Budget(), 3, 20, seed=4)
    b = ev.random_edits(perturb.Budget(), 3, 20, seed=4)
    assert np.array_equal(a["idx"], b["idx"]) and np.array_equal(a["train_mse"], b["train_mse"])
    assert all(len(set(row)) == 3 for row in a["idx"])


@pytest.mark.parametrize("widths,activation", [([1, 8, 8, 8, 1], "relu"), ([2, 5, 4, 3], "tanh"),
                                               ([3, 4, 2], "leaky_relu")])
def test_hessian_matches_finite_differences_of_the_gradient(widths, activation):
    net = mlpsim.MLP(widths, activation=activation)
    rng = np.random.default_rng(0)
    theta = net.init(seed=1, bias_init="normal", bias_scale=0.3)
    x = rng.uniform(-2, 2, (300, widths[0]))
    y = rng.normal(size=(300, widths[-1]))
    H = perturb.hessian(net, theta, x, y)
    assert np.abs(H - H.T).max() < 1e-12 * np.abs(H).max()
    h = 1e-5
    fd = np.empty_like(H)
    for j in range(net.n_params):
        e = np.zeros(net.n_params)
        e[j] = h
        fd[:, j] = (net.loss_and_grad(theta + e, x, y)[1] - net.loss_and_grad(theta - e, x, y)[1]) / (2 * h)
    assert np.abs(H - fd).max() < 1e-8 * np.abs(fd).max()


def test_predictions_and_layer_reinit(trained):
    net, theta, x, y = trained
    p = perturb.predicted_effects(net, theta, x, y, perturb.Budget("absolute", 0.1))
    _, g = net.loss_and_grad(theta, x, y)
    np.testing.assert_allclose(p["first_order"], 0.1 * np.abs(g), rtol=1e-12)  # |g| * eps, both ways equal
    init = np.zeros_like(theta)
    out = perturb.reinitialize_layer(net, theta, 2, initial=init)  # layer 2 is W2, b2: 1-based as MLP.indices
    assert np.all(net.view(out, "W2") == 0) and np.array_equal(net.view(out, "W3"), net.view(theta, "W3"))
    assert np.array_equal(net.view(out, "W1"), net.view(theta, "W1"))
    r = perturb.reinitialize_layer(net, theta, 3, seed=3)
    assert np.all(net.view(r, "b3") == 0) and not np.array_equal(net.view(r, "W3"), net.view(theta, "W3"))
    for bad in (0, net.n_layers + 1, True):
        with pytest.raises(ValueError, match=rf"layer must be in \[1, {net.n_layers}\]"):
            perturb.reinitialize_layer(net, theta, bad, seed=0)


def test_second_order_prediction_matches_small_exact_edits():
    """For tiny moves the second-order prediction equals the exact loss increase to O(eps^3)."""
    net = mlpsim.MLP([1, 6, 6, 1], activation="tanh")
    theta = net.init(seed=3, bias_init="normal", bias_scale=0.3)
    x = np.linspace(-2, 2, 300)[:, None]
    y = np.sin(2 * x)
    eps = 1e-3
    p = perturb.predicted_effects(net, theta, x, y, perturb.Budget("absolute", eps))
    base = net.loss(theta, x, y)
    exact = np.empty(net.n_params)
    for j in range(net.n_params):
        moved = np.stack([theta, theta])
        moved[0, j] += eps
        moved[1, j] -= eps
        exact[j] = net.loss(moved, x, y).max() - base
    np.testing.assert_allclose(p["second_order"], exact, rtol=2e-3, atol=1e-12)
    assert not np.allclose(p["first_order"], exact, rtol=2e-3)  # first order misses the curvature


def test_continue_training_recovers_from_a_small_edit(tmp_path):
    cfg = mlpsim.preset("tiny").with_values({"train.steps": 1500, "train.instances": 1, "train.lr": 0.01})
    run = mlpsim.train(cfg, tmp_path / "r", progress=False)
    net, theta = run.net, np.array(run.params[0, -1])
    x, y = run.data()
    out_w = net.entry("W4").offset + int(np.argmax(np.abs(net.view(theta, "W4"))))
    edited = perturb.edit(net, theta, [out_w], "multiply", 1.5)  # the largest output weight, 50 % larger
    r = perturb.continue_training(net, run.config.train, x, y, edited, theta, steps=300)
    assert r["loss_edited"].shape == (301,) and r["loss_unedited"].shape == (301,)
    assert r["loss_edited"][0] > 2 * r["loss_unedited"][0]  # the edit did hurt
    assert r["recovery_step"] is not None and r["recovery_step"] > 0
    assert r["loss_edited"][-1] <= 1.1 * r["loss_unedited"][-1]  # and training repaired it
    same = perturb.continue_training(net, run.config.train, x, y, theta, theta, steps=5)
    assert same["recovery_step"] == 0 and same["weight_distance"] == 0


def test_perturbation_study_smoke(tmp_path):
    """The study's protocol at a small size: descriptive analyses on 2 instances, the verdict on 16."""
    import json

    from mlpsim.study import study_module, write_summary
    m = study_module("05_perturbation")
    run = mlpsim.train(mlpsim.preset("tiny").with_values({"train.instances": 16}), tmp_path / "r", progress=False)
    results = m.analyse({"tiny": run}, n_random=20, recovery_steps=50, max_instances=2)
    (v,) = m.verdicts(results)
    assert v.claim == "edit_robustness" and v.n_instances == 16 and v.label == "tiny"
    assert "Per instance, the worst single-weight edit" in v.reason and "[" not in v.reason
    notes = m.notes(results)
    assert "2 of 16 instances" in notes[0] and "'affected' here" in notes[0]
    assert len([n for n in notes if "the worst single edit (budget" in n]) == 2
    out = tmp_path / "p"
    paths = m.plot(results, out)
    write_summary(out, "perturbation", "t", "q", [v], notes, paths)
    assert json.loads((out / "summary.json").read_text())["verdicts"][0]["claim"] == "edit_robustness"
    x, y = run.data()
    data = np.load(out / "fig_critical_weights.npz")
    edited = np.array(run.params[0, -1])
    j = int(np.argmax(data["mse_ratio"]))
    edited[data["index"][j]] = data["value"][j]
    base = run.net.loss(np.array(run.params[0, -1]), x, y)
    assert data["mse_ratio"][j] == pytest.approx(run.net.loss(edited, x, y) / base, rel=1e-9)
    for name in ("fig_effect_vs_k", "fig_over_training", "fig_critical_weights", "fig_recovery"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.npz").exists()


def test_masked_edits_and_unbounded_predictions():
    net = mlpsim.MLP([1, 3, 1], masks=[np.array([[1], [0], [1]]), None])
    theta = net.init(seed=0, bias_init="normal", bias_scale=0.1)
    x = np.linspace(-1, 1, 50)[:, None]
    ev = perturb.Evaluator(net, theta, x, np.sin(x))
    with pytest.raises(ValueError, match="masked"):
        ev.effects(np.array([[1]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="masked"):
        perturb.edit(net, theta, [1], "set", 1.0)
    b = perturb.Budget("unbounded", value_range=(-2.0, 2.0))
    p = perturb.predicted_effects(net, theta, x, np.sin(x), b)
    _, g = net.loss_and_grad(theta, x, np.sin(x))
    expected = np.maximum(np.abs(g * (-2 - theta)), np.abs(g * (2 - theta)))
    np.testing.assert_allclose(p["first_order"], expected)


def test_hessian_memory_guard():
    net = mlpsim.MLP([1, 64, 64, 1])
    with pytest.raises(ValueError, match="GiB"):
        perturb.hessian(net, net.init(), np.zeros((5000, 1)), np.zeros((5000, 1)), max_bytes=2**20)


def test_perturbation_study_without_hessian(tmp_path):
    """Wide nets skip the exact Hessian; the figures must still be written."""
    from mlpsim.study import study_module
    m = study_module("05_perturbation")
    run = mlpsim.train(mlpsim.preset("tiny").with_overrides(["model.widths=[1, 40, 40, 1]", "train.instances=2"]),
                       tmp_path / "r", progress=False)
    assert run.net.n_params > 1000
    r = m.analyse_run(run, n_random=20, recovery_steps=20)
    assert np.all(np.isnan(r["per_instance"][0]["heuristics"]["hessian_diag"]))
    m.plot_run(r, tmp_path / "out")
    assert (tmp_path / "out" / "fig_critical_weights.png").stat().st_size > 1000


def test_an_edit_to_nan_or_inf_is_refused(trained):
    net, theta, _, _ = trained
    for op, value in (("set", np.nan), ("add", np.inf), ("multiply", [1.0, np.nan])):
        with pytest.raises(ValueError, match="edit value must be finite"):
            perturb.edit(net, theta, [0, 1], op, value)


def test_bad_shapes_are_named(trained):
    net, theta, x, y = trained
    with pytest.raises(ValueError, match="one number or one per edited parameter"):
        perturb.edit(net, theta, [0, 1], "set", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="the Hessian is of one network"):
        perturb.hessian(net, np.stack([theta, theta]), x, y)
