"""Smoke tests of the width/depth, ensembles and targets studies at tiny sizes."""
import json

import numpy as np

from mlpsim.study import STUDIES, study_module


def quiet(*args):
    pass


def check_outputs(out, figure, fields):
    assert (out / f"{figure}.png").stat().st_size > 1000 and (out / f"{figure}.npz").exists()
    s = json.loads((out / "summary.json").read_text())
    for f in fields:
        assert f in s, f
    assert (out / "summary.md").read_text().count("Verdict") == 1
    return s


def test_width_depth_smoke(tmp_path):
    m = study_module("06_width_depth")
    r = m.run_all(tmp_path, progress=False, log=quiet, widths=(4, 8, 16), depths=(1, 2), steps=40)
    m.plot(r, tmp_path)
    s = check_outputs(tmp_path, "fig_width_depth", ["exponents", "by_width", "by_depth", "verdict", "verdict_reason"])
    assert set(s["by_width"]) == {"4", "8", "16"} and len(s["by_width"]["4"]["relative_distance"]) == 3
    assert s["verdict"] in ("supported", "contradicted", "inconclusive")


def test_ensembles_smoke(tmp_path):
    m = study_module("07_ensembles_vs_single")
    r = m.run_all(tmp_path, progress=False, log=quiet, steps=40)
    m.plot(r, tmp_path)
    s = check_outputs(tmp_path, "fig_ensembles_vs_single", ["ensemble_grid_mse", "large_grid_mse", "verdict"])
    assert len(s["ensemble_grid_mse"]) == 3 and s["n_params"] == {"ensemble": 1352, "large": 1376}
    assert s["verdict"] in ("ensemble_better", "single_better", "similar")


def test_targets_smoke(tmp_path):
    m = study_module("08_targets")
    r = m.run_all(tmp_path, progress=False, log=quiet, targets=("piecewise", "gaussian_2d"), steps=40)
    m.plot(r, tmp_path)
    s = check_outputs(tmp_path, "fig_targets", ["generic_findings", "per_target", "verdict"])
    assert set(s["per_target"]) == {"piecewise", "gaussian_2d"}
    for t in s["per_target"].values():
        assert set(t["findings"]) == {"broadening", "rank_loss", "fragility"}
        assert t["findings"]["broadening"] == bool(np.all(np.array(t["variance_ratio"]) > 1))


def test_every_registered_study_imports():
    for modules, _ in STUDIES.values():
        for name in modules:
            mod = study_module(name)
            assert mod.NAME == name and callable(mod.plot) and mod.__doc__
