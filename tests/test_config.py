"""Configuration: defaults, validation messages, TOML, overrides, presets."""
import json

import numpy as np
import pytest

import mlpsim
from mlpsim.config import Config, ConfigError, preset


def test_defaults_are_the_seed_experiment():
    c = preset("seed")
    assert c.model.widths == (1, 8, 8, 8, 1) and c.model.init == "kaiming_normal"
    assert c.data.n == 5000 and c.data.seed == 23049829048 and c.data.x_range == (-3.0, 3.0)
    t = c.train
    assert (t.optimizer, t.adam_variant, t.lr, t.beta1, t.beta2, t.eps) == ("adam", "wolfram", 1e-3, .9, .999, 1e-5)
    assert t.steps == 15000 and t.instances == 5
    s = t.schedule()
    assert len(s) == 1501 and s[0] == 0 and s[-1] == 15000 and np.all(np.diff(s) == 10)


def test_schedule_rules():
    assert list(mlpsim.TrainConfig(steps=25, checkpoint_every=10).schedule()) == [0, 10, 20, 25]
    assert list(mlpsim.TrainConfig(steps=5, checkpoint_every=10).schedule()) == [0, 5]
    assert list(mlpsim.TrainConfig(steps=100, checkpoint_steps=(1, 10, 50)).schedule()) == [0, 1, 10, 50, 100]


def test_toml_round_trip(tmp_path):
    c = preset("seed").with_overrides(["model.widths=[1, 32, 32, 1]", "train.optimizer=gd", "train.lr=0.01"])
    p = tmp_path / "c.toml"
    p.write_text(c.to_toml())
    assert Config.from_toml(p) == c
    assert Config.from_dict(json.loads(c.to_json())) == c
    assert c.sha256() == Config.from_toml(p).sha256() != preset("seed").sha256()


@pytest.mark.parametrize("override,match", [
    ("train.lr=0", "train.lr"),
    ("train.lr=-1", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("train.lr=inf", "train.lr"),
    ("train.steps=0", "train.steps"),
    ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("train.optimizer=sgd", "'gd', 'momentum', 'adam'"),
    ("model.activation=sigmoid", "relu"),
    ("model.init=xavier", "kaiming_normal"),
    ("data.target=square", "piecewise"),
    ("model.widths=[1]", "two entries"),
    ("model.widths=[1, 0, 1]", "positive integers"),
    ("model.widths=[1, 2.5, 1]", "positive integers"),
    ("train.dtype=float16", "float64"),
    ("train.instances=0", "train.instances"),
    ("train.beta1=1.0", "train.beta1"),
    ("data.x_range=[1, -1]", "data.x_range"),
    ("train.checkpoint_steps=[5, 20000]", "checkpoint_steps"),
    ("train.stpes=3", "did you mean 'train.steps'"),
    ("trian.steps=3", "did you mean 'train'"),
    ("steps=3", "section.key"),
])
def test_bad_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        preset("seed").with_overrides([override])


def test_bad_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[model]\nwidths = [1, 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_toml(p)
    p.write_text("[model]\nwidht = [1, 2, 1]\n")
    with pytest.raises(ConfigError, match="'model.widht'; did you mean 'model.widths'"):
        Config.from_toml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_toml(tmp_path / "missing.toml")


def test_unknown_preset():
    with pytest.raises(ConfigError, match="'seed'"):
        preset("sed")


def test_configs_are_frozen():
    c = preset("seed")
    with pytest.raises(Exception):
        c.train.lr = 1.0


def test_numpy_values_are_stored_as_plain_python():
    cfg = preset("tiny").with_values({"train.steps": np.int64(20), "train.lr": np.float32(0.5),
                                      "model.widths": np.array([1, 4, 1])})
    plain = preset("tiny").with_values({"train.steps": 20, "train.lr": float(np.float32(0.5)),
                                        "model.widths": [1, 4, 1]})
    assert cfg.sha256() == plain.sha256() and json.loads(cfg.to_json()) == json.loads(plain.to_json())
    assert "np." not in cfg.to_toml()


def test_config_helpers_name_a_mistake():
    with pytest.raises(ConfigError, match="use with_overrides"):
        preset("tiny").with_values("train.steps=5")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset(["tiny"])
    for kwargs, message in [({"leaky_slope": "0.1"}, "leaky_slope must be a finite number"),
                            ({"masks": 5}, "masks must be a list with one mask"),
                            ({"masks": [[[1, 1], [1]], None]}, "mask of layer 1 must be a rectangular array")]:
        with pytest.raises(ValueError, match=message):
            mlpsim.MLP([2, 2, 1], **kwargs)
