"""Initialization: per-layer statistics, seeding, layout."""
import numpy as np
import pytest

import mlpsim
from mlpsim.init import init_params

WIDE = [400, 300, 300, 200]


@pytest.mark.parametrize("scheme,var_fn", [
    ("kaiming_normal", lambda l, fi, fo: (2.0 if l < 2 else 1.0) / fi),
    ("he_normal", lambda l, fi, fo: 2.0 / fi),
    ("he_uniform", lambda l, fi, fo: 2.0 / fi),
    ("glorot_uniform", lambda l, fi, fo: 2.0 / (fi + fo)),
    ("glorot_normal", lambda l, fi, fo: 2.0 / (fi + fo)),
    ("lecun_normal", lambda l, fi, fo: 1.0 / fi),
    ("orthogonal", lambda l, fi, fo: (2.0 if l < 2 else 1.0) / fi),
])
def test_per_layer_std_matches_formula(scheme, var_fn):
    net = mlpsim.MLP(WIDE, activation="relu")
    theta = net.init(seed=11, scheme=scheme)
    for l, W in enumerate(net.weights(theta)):
        fo, fi = W.shape
        expected = var_fn(l, fi, fo)
        # sample variance of N iid values has relative std sqrt(2/N) (normal); 5 sigma
        rel = abs(W.var() / expected - 1)
        assert rel < 5 * np.sqrt(2.0 / W.size), (scheme, l, W.var(), expected)
        assert abs(W.mean()) < 5 * np.sqrt(expected / W.size)
    for b in net.biases(theta):
        assert np.all(b == 0)


def test_uniform_schemes_are_bounded():
    net = mlpsim.MLP([100, 50, 1])
    theta = net.init(seed=1, scheme="glorot_uniform")
    W1 = net.view(theta, "W1")
    assert np.abs(W1).max() <= np.sqrt(6 / 150)
    assert np.abs(W1).max() > 0.95 * np.sqrt(6 / 150)


def test_orthogonal_square_layer():
    net = mlpsim.MLP([64, 64, 64, 1], activation="tanh")
    W = net.view(net.init(seed=0, scheme="orthogonal"), "W2")
    np.testing.assert_allclose(W @ W.T, np.eye(64) * (1.0 / 64) * 64, atol=1e-12)


def test_seed_preset_sigmas():
    """The seed README: sigma = 1.414, 0.5, 0.5, 0.354 for the four layers."""
    from mlpsim.init import weight_std
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    stds = [weight_std(net, l, "kaiming_normal") for l in range(4)]
    np.testing.assert_allclose(stds, [np.sqrt(2), 0.5, 0.5, np.sqrt(1 / 8)])


def test_instances_depend_on_seed_and_index_only():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    a = init_params(net, seed=5, instance=3)
    assert np.array_equal(a, init_params(net, seed=5, instance=3))
    assert not np.array_equal(a, init_params(net, seed=5, instance=2))
    assert not np.array_equal(a, init_params(net, seed=6, instance=3))
    # equals the 4th child of SeedSequence(5).spawn
    child = np.random.SeedSequence(5).spawn(4)[3]
    rng = np.random.default_rng(child)
    assert a[0] == rng.normal(0, np.sqrt(2.0), size=(8, 1))[0, 0]


def test_bias_inits():
    net = mlpsim.MLP([10, 20, 1])
    b = net.view(net.init(seed=0, bias_init="uniform", bias_scale=0.5), "b1")
    assert np.all(np.abs(b) <= 0.5) and np.any(b != 0)
    b = net.view(net.init(seed=0, bias_init="fan_in_uniform"), "b1")
    assert np.all(np.abs(b) <= 1 / np.sqrt(10))


def test_masked_weights_are_zero_and_other_draws_unchanged():
    mask = np.ones((8, 8), int)
    mask[::2, 1::2] = 0
    dense = mlpsim.MLP([1, 8, 8, 1])
    masked = mlpsim.MLP([1, 8, 8, 1], masks=[None, mask, None])
    a, b = dense.init(seed=3), masked.init(seed=3)
    W = masked.view(b, "W2")
    assert np.all(W[mask == 0] == 0)
    assert np.array_equal(W[mask == 1], dense.view(a, "W2")[mask == 1])


def test_bad_init_names():
    net = mlpsim.MLP([1, 2, 1])
    with pytest.raises(ValueError, match="kaiming_normal"):
        net.init(scheme="kaiming")
    with pytest.raises(ValueError, match="zeros"):
        net.init(bias_init="zero")


def test_layout_matches_seed_readme():
    net = mlpsim.MLP([1, 8, 8, 8, 1])
    table = {e["name"]: (e["offset"], e["offset"] + e["size"] - 1) for e in net.layout_table()}
    assert table == {"W1": (0, 7), "b1": (8, 15), "W2": (16, 79), "b2": (80, 87),
                     "W3": (88, 151), "b3": (152, 159), "W4": (160, 167), "b4": (168, 168)}
    theta = np.arange(169.0)
    W2 = net.view(theta, "W2")
    assert W2[1, 2] == 16 + 8 + 2 and np.shares_memory(W2, theta)
    traj = np.zeros((5, 3, 169))
    assert net.view(traj, "W3").shape == (5, 3, 8, 8)
    assert np.array_equal(net.indices(kind="bias"), np.r_[8:16, 80:88, 152:160, 168])
    assert np.array_equal(net.indices(layer=4, kind="weight"), np.arange(160, 168))  # W4
    assert np.array_equal(net.indices(layer=1), np.arange(16))  # W1 and b1
    assert [(e["name"], e["layer"]) for e in net.layout_table()][:3] == [("W1", 1), ("b1", 1), ("W2", 2)]
    for bad in (0, 5):
        with pytest.raises(ValueError, match="layer must be an integer in 1..4"):
            net.indices(layer=bad)
    with pytest.raises(KeyError, match="W5"):
        net.view(theta, "W5")
    assert "169 parameters" in repr(net)


@pytest.mark.parametrize("widths", [[1], [], [1, 0, 1], [1, 2.5, 1], [1, -3], "abc", [True, 2]])
def test_bad_widths(widths):
    with pytest.raises(ValueError, match="widths"):
        mlpsim.MLP(widths)


def test_bad_masks_and_activation():
    with pytest.raises(ValueError, match="shape"):
        mlpsim.MLP([1, 4, 1], masks=[np.ones((4, 2)), None])
    with pytest.raises(ValueError, match="0 and 1"):
        mlpsim.MLP([1, 4, 1], masks=[np.full((4, 1), 2), None])
    with pytest.raises(ValueError, match="one entry per layer"):
        mlpsim.MLP([1, 4, 1], masks=[None])
    with pytest.raises(ValueError, match="relu"):
        mlpsim.MLP([1, 4, 1], activation="rel")


def test_bad_forward_inputs():
    net = mlpsim.MLP([2, 4, 1])
    theta = net.init()
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        net.forward(theta, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        net.forward(theta, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="length 17"):
        net.forward(theta[:-1], np.zeros((5, 2)))
    with pytest.raises(ValueError, match="targets"):
        net.loss_and_grad(theta, np.zeros((5, 2)), np.zeros((4, 1)))


def test_init_refuses_what_it_would_quietly_change():
    net = mlpsim.MLP([1, 8, 1])
    for kwargs, message in [({"seed": 2.5}, "seed must be a whole number"), ({"seed": "7"}, "seed must"),
                            ({"seed": True}, "seed must"), ({"seed": -1}, "seed must"),
                            ({"dtype": np.int32}, "dtype must be float64 or float32"),
                            ({"dtype": complex}, "dtype must be"), ({"dtype": "floaty"}, "dtype must be"),
                            ({"bias_init": "normal", "bias_scale": np.nan}, "bias_scale must be a finite number"),
                            ({"bias_init": "uniform", "bias_scale": -1}, "bias_scale must")]:
        with pytest.raises(ValueError, match=message):
            net.init(**kwargs)
    assert net.init(seed=np.int64(3)).tobytes() == net.init(seed=3).tobytes()
