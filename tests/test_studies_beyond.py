"""Smoke tests of the width/depth, ensembles, targets and correlation studies at tiny sizes."""
import json

import numpy as np

from mlpsim.study import STUDIES, run_study, study_module


def quiet(*args):
    pass


def run_small(name, tmp_path, configs):
    out = tmp_path / name
    result = run_study(name, out, configs=configs, progress=False, log=quiet)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["study"] == name and (out / "summary.md").exists() and (out / "meta.json").exists()
    return out, summary, result


def test_width_depth_smoke(tmp_path):
    m = study_module("06_width_depth")
    configs = m.configs(scale=0.02, widths=(4, 8, 16), depths=(1, 2))
    out, s, _ = run_small("width-depth", tmp_path, configs)
    assert (out / "fig_width_depth.png").stat().st_size > 1000
    assert s["verdicts"] == [] and any("exponent" in n for n in s["notes"])


def test_ensembles_smoke(tmp_path):
    m = study_module("07_ensembles_vs_single")
    out, s, _ = run_small("ensembles", tmp_path, m.configs(scale=40 / 15000))
    assert (out / "fig_ensembles_vs_single.png").stat().st_size > 1000
    assert "1352 vs 1376 parameters" in s["notes"][0]


def test_targets_smoke(tmp_path):
    m = study_module("08_targets")
    out, s, result = run_small("targets", tmp_path, m.configs(scale=40 / 15000, targets=("piecewise", "gaussian_2d")))
    assert (out / "fig_targets.png").stat().st_size > 1000
    assert s["notes"][0].startswith("broadening: ")
    per = m.analyse(result["runs"])["per_target"]
    for t in per.values():
        assert t["findings"]["broadening"] == bool(np.all(np.array(t["variance_ratio"]) > 1))


def test_correlations_smoke(tmp_path):
    m = study_module("04_correlations")
    configs = {f"depth {d}": m.depth_config(d, instances=20, steps=30) for d in (2, 3)}
    out, s, _ = run_small("correlations", tmp_path, configs)
    assert [v["claim"] for v in s["verdicts"]] == ["correlation_decay"] * 2
    assert [v["label"] for v in s["verdicts"]] == ["depth 2", "depth 3"]
    assert (out / "fig_corr_vs_distance.png").stat().st_size > 1000


def test_every_registered_study_follows_the_protocol():
    for info in STUDIES.values():
        for name in info.modules:
            mod = study_module(name)
            assert mod.NAME == name and mod.__doc__
            for fn in ("configs", "analyse", "plot"):
                assert callable(getattr(mod, fn)), (name, fn)
            assert mod.configs()  # its default runs are valid configurations
