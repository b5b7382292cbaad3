"""Mesh (grid) networks: exact in-degree, sparsity kept through training."""
import numpy as np
import pytest

import mlpsim
from mlpsim.config import ConfigError, preset
from mlpsim.mesh import mesh_masks, mesh_net, neighbourhood_mask


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("width", [3, 5, 8])
def test_every_neuron_has_exactly_k_inputs(k, wrap, width):
    m = neighbourhood_mask(width, width, k, wrap)
    assert np.all(m.sum(axis=1) == k)
    for j in range(width):
        cols = set(np.flatnonzero(m[j]))
        if wrap:
            expected = {(j + d) % width for d in {1: [0], 2: [0, 1], 3: [-1, 0, 1]}[k]}
            assert cols == expected
        else:  # the nearest k positions, within reach of one step
            assert max(abs(c - j) for c in cols) <= 2 and j in cols


def test_mesh_net_layers():
    net = mesh_net(1, 6, 4, 1, k=3)
    assert net.widths == (1, 6, 6, 6, 6, 1)
    assert net.masks[0] is None and net.masks[-1] is None
    assert all(m.sum() == 6 * 3 for m in net.masks[1:-1])
    with pytest.raises(ValueError, match="k must be"):
        neighbourhood_mask(4, 4, 5, False)


def test_mesh_stays_sparse_through_training(tmp_path):
    cfg = preset("tiny").with_overrides(["model.widths=[1, 8, 8, 8, 1]", "model.mesh_k=2", "model.mesh_wrap=true"])
    run = mlpsim.train(cfg, tmp_path / "m", progress=False)
    masks = mesh_masks(cfg.model.widths, 2, True)
    for l in (1, 2):
        W = run.net.view(run.params, f"W{l + 1}")
        assert np.all(W[..., masks[l] == 0] == 0)
        assert np.all(W[:, -1][..., masks[l] == 1] != 0)
        assert np.array_equal(run.net.masks[l], masks[l])


@pytest.mark.parametrize("override,match", [
    ("model.mesh_k=4", "mesh_k"),
    ("model.mesh_k=-1", "mesh_k"),
])
def test_bad_mesh_configs(override, match):
    with pytest.raises(ConfigError, match=match):
        preset("seed").with_overrides([override])
    with pytest.raises(ConfigError, match="equal width"):
        preset("seed").with_overrides(["model.widths=[1, 8, 4, 1]", "model.mesh_k=2"])


def test_mesh_study_smoke(tmp_path):
    import json

    from mlpsim.cli import main
    out = tmp_path / "mesh"
    assert main(["study", "mesh", "--set", "train.steps=100", "--set", "train.checkpoint_every=10",
                 "--set", "data.n=300", "--out", str(out), "--no-progress"]) == 0
    for name in ("fig_mesh_frames", "fig_mesh_change", "fig_mesh_activations", "fig_mesh_where"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert (out / "mesh_training.gif").stat().st_size > 1000
    s = json.loads((out / "summary.json").read_text())
    assert s["verdicts"] == [] and "mesh k = 3" in s["notes"][0] and "% of the weights" in s["notes"][0]
    run = mlpsim.load_run(out / "runs" / "mesh")
    assert run.net.masks[2] is not None and np.all(run.net.view(run.params, "W3")[..., run.net.masks[2] == 0] == 0)
    # where change concentrates: the 1-neuron output layer has no positions 2..8 (blank, not "no change")
    where = np.load(out / "fig_mesh_where.npz")["per_position"]
    assert np.all(np.isnan(where[:, :, -1, 1:])) and np.all(np.isfinite(where[:, :, :-1, :]))
    from PIL import Image
    gif = Image.open(out / "mesh_training.gif")
    assert gif.n_frames >= 5 and gif.size[0] > 600  # every frame: the network and its colour bar
