"""The regularities atlas: design, bad input, the judgement on planted data, a tiny atlas end to end,
kill and restart, Dask (a real scheduler and two workers) equal to local, the time estimate."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import mlpsim
from mlpsim import atlas, kernels
from mlpsim.cli import EXIT_BAD_INPUT, EXIT_IO, main


def quiet(*a):
    pass


def test_design_varies_every_factor_once_and_samples_balanced_combinations():
    size = atlas.SIZES["default"]
    conds = atlas.design(size)
    assert conds[0].name == "seed" and conds[0].kind == "seed"
    oat = [c for c in conds if c.kind == "one at a time"]
    assert len(oat) == sum(len(levels) - 1 for levels, _ in atlas.FACTORS.values())
    for c in oat:  # exactly one factor differs from the seed
        assert sum(c.levels[f] != atlas.FACTORS[f][1] for f in atlas.FACTORS) == 1
    mix = [c for c in conds if c.kind == "combination"]
    assert len(mix) == size.sample and len({c.name for c in conds}) == len(conds)
    assert atlas.design(size) == conds and atlas.design(size, seed=1) != conds  # seeded
    used = Counter(c.levels["activation"] for c in mix)
    assert abs(used["relu"] - used["tanh"]) <= 2  # space-filling: levels used about equally


def test_two_dimensional_targets_get_a_two_input_network():
    cfg = atlas.condition_config(dict(atlas.design(atlas.SIZES["tiny"])[0].levels, target="checkerboard"),
                                 atlas.SIZES["tiny"])
    assert cfg.model.widths[0] == 2 and cfg.data.target == "checkerboard"


@pytest.mark.parametrize("only,words", [
    (["widht"], "unknown factor 'widht'; allowed: 'width'"),
    (["width=5"], "factor 'width': unknown level '5'"),
    (["activation=relus"], "Did you mean 'relu'"),
])
def test_unknown_factors_and_levels_list_the_allowed_ones(capsys, only, words):
    args = ["atlas", "--size", "tiny", "--dry-run"] + sum((["--only", o] for o in only), [])
    assert main(args) == EXIT_BAD_INPUT
    assert words in capsys.readouterr().err


def test_a_condition_that_cannot_train_is_refused_at_dry_run(capsys, tmp_path):
    args = ["atlas", "--size", "tiny", "--only", "depth=1", "--set", "model.mesh_k=3", "--dry-run"]
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "condition 'depth=1' cannot train" in err and "mesh" in err


def test_unreachable_scheduler_fails_fast_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    t0 = time.perf_counter()
    code = main(["atlas", "--size", "tiny", "--out", str(tmp_path / "a"), "--scheduler", "tcp://127.0.0.1:9"])
    assert time.perf_counter() - t0 < 10
    assert code == EXIT_IO and "tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------------- the judgement, on planted cells
def planted_cells(n_cond=12, E=16, seed=0):
    """relative_distance: > 0 everywhere (planted generic); variance: x2 everywhere (generic);
    excess_kurtosis: pure noise (not generic); spectral_norm: up in half the conditions, down in
    the other half (not generic)."""
    rng = np.random.default_rng(seed)
    cells = []
    for c in range(n_cond):
        for e in range(E):
            for layer in ("W1", "W2", "W3"):
                cells.append((f"c{c}", e, layer, "relative_distance", 0.0, rng.uniform(0.1, 1.0)))
                v0 = rng.uniform(0.5, 2)
                cells.append((f"c{c}", e, layer, "variance", v0, 2 * v0 * rng.uniform(0.9, 1.1)))
                cells.append((f"c{c}", e, layer, "excess_kurtosis", rng.normal(), rng.normal()))
                s0 = rng.uniform(1, 2)
                cells.append((f"c{c}", e, layer, "spectral_norm", s0, s0 * (1.5 if c % 2 else 0.6)))
    return cells


def test_planted_regularities_come_out_as_planted():
    found = {r["name"]: r for r in atlas.regularities(planted_cells())}
    for name in ("relative_distance", "variance"):
        r = found[name]
        assert r["label"] == "generic" and r["N"] == r["M"] == 12 and r["direction"] == "up" and not r["fails"]
        assert r["p_holm"] == pytest.approx(min(1, 4 * 2 * 0.5 ** 12))  # Holm over the 4 regularities
    assert found["excess_kurtosis"]["label"] == "not generic"
    assert found["excess_kurtosis"]["N"] <= 2
    mixed = found["spectral_norm"]
    assert mixed["label"] == "not generic" and mixed["up"] == 6 and mixed["down"] == 6
    assert len(mixed["fails"]) == 6 and all(v == "down" for v in mixed["fails"].values())


def test_random_observables_are_rarely_generic():
    """Over 200 seeded atlases of pure noise, no observable is ever called generic or common."""
    wrong = 0
    for rep in range(200):
        rng = np.random.default_rng(rep)
        cells = [(f"c{c}", e, l, "excess_kurtosis", rng.normal(), rng.normal())
                 for c in range(12) for e in range(16) for l in ("W1", "W2")]
        wrong += atlas.regularities(cells)[0]["label"] != "not generic"
    assert wrong / 200 <= 0.05


def test_claims_count_as_regularities():
    statuses = {(f"c{c}", "broadening"): "supported" for c in range(10)}
    statuses[("c10", "broadening")] = "inconclusive"
    (r,) = atlas.regularities([], statuses)
    assert r["kind"] == "claim" and r["N"] == 10 and r["M"] == 11 and r["label"] == "generic"
    assert r["fails"] == {"c10": "none"}


# ----------------------------------------------------------------- a tiny atlas, end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas") / "tiny"
    # As a user does: the dry run first (on a fresh machine it compiles the
    # kernels into numba's cache), then the atlas it estimated.
    estimate = atlas.run_atlas(None, size="tiny", workers=2, dry_run=True)["estimate"]
    t0 = time.perf_counter()
    result = atlas.run_atlas(out, size="tiny", workers=2, log=quiet)
    return out, result, (time.perf_counter() - t0, estimate)


def test_tiny_atlas_writes_its_tables_and_they_are_the_runs(tiny):
    out, result, _ = tiny
    with open(out / "cells.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["condition", "run_dir", "instance", "layer", "observable", "init", "final"]
    with open(out / "conditions.csv") as fh:
        conds = list(csv.DictReader(fh))
    assert [c["condition"] for c in conds] == ["seed", "activation=tanh", "width=16", "mix-01"]
    assert all(c["status"] == "complete" and c["instances"] == "20" for c in conds)
    # anyone can redo any number from the run directories
    row = next(r for r in rows if r["condition"] == "width=16" and r["layer"] == "W2"
               and r["observable"] == "variance" and r["instance"] == "3")
    run = mlpsim.load_run(row["run_dir"])
    W = run.net.view(np.asarray(run.params[3]), "W2").reshape(run.params.shape[1], -1)
    assert float(row["init"]) == pytest.approx(W[0].var(ddof=1), rel=1e-13)  # the same numbers, to rounding
    assert float(row["final"]) == pytest.approx(W[-1].var(ddof=1), rel=1e-13)
    found = {r["name"]: r for r in result["regularities"]}
    assert found["relative_distance"]["N"] == found["relative_distance"]["M"] == 4  # moved, in every condition
    summary = (out / "summary.md").read_text()
    assert "## Regularities, most generic first" in summary and "relative_distance" in summary
    for name in ("atlas_overview.png", "atlas_heatmaps.png"):
        assert (out / name).stat().st_size > 5000
    assert json.loads((out / "summary.json").read_text())["performance"]["runs_per_minute"] > 0


def test_a_finished_atlas_is_reused(tiny):
    out, _, _ = tiny
    t0 = time.perf_counter()
    again = atlas.run_atlas(out, size="tiny", workers=2, log=quiet)
    assert time.perf_counter() - t0 < 15 and again["missing"] == []


def test_a_record_of_another_engine_version_is_measured_again(tiny):
    # its numbers come from runs whose last bits another engine computed
    out, _, _ = tiny
    record = sorted(out.glob("records/*.json"))[0]
    old = json.loads(record.read_text())
    assert old["engine_version"] == kernels.ENGINE_VERSION
    old["engine_version"] -= 1
    old["claims"] = "stale"
    record.write_text(json.dumps(old))
    atlas.run_atlas(out, size="tiny", workers=2, log=quiet)
    new = json.loads(record.read_text())
    assert new["engine_version"] == kernels.ENGINE_VERSION and new["claims"] != "stale"


def test_dry_run_estimate_is_within_a_factor_two(tiny):
    _, _, (seconds, est) = tiny
    assert est["conditions"] == 4 and 0.5 <= seconds / est["seconds"] <= 2, (seconds, est)


def test_killed_then_restarted_equals_uninterrupted(tiny, tmp_path):
    ref, _, _ = tiny
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mlpsim", "atlas", "--size", "tiny", "--out", str(out),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("records/*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(out.glob("records/*.json"))) < 4
    atlas.run_atlas(out, size="tiny", workers=2, log=quiet)
    assert strip_run_dirs(out / "cells.csv") == strip_run_dirs(ref / "cells.csv")


def strip_run_dirs(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "run_dir"} for r in csv.DictReader(fh)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_with_a_real_scheduler_and_two_workers_equals_local(tiny, tmp_path):
    pytest.importorskip("dask.distributed")
    dask = Path(sys.executable).parent / "dask"
    if not dask.exists():
        pytest.skip("the dask command is not installed beside this Python")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        from dask.distributed import Client
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "dask"
        atlas.run_atlas(out, size="tiny", scheduler=address, log=quiet)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            p.wait(timeout=30)
    ref, _, _ = tiny
    assert strip_run_dirs(out / "cells.csv") == strip_run_dirs(ref / "cells.csv")
    for name in ("summary.json",):
        a = json.loads((out / name).read_text())["regularities"]
        b = json.loads((ref / name).read_text())["regularities"]
        assert a == b


def test_answers_of_a_folder_that_is_not_an_atlas(tmp_path, capsys):
    """A study's output folder (summary.json without regularities) was a KeyError; a missing
    folder was called an incomplete run directory."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "summary.json").write_text('{"study": "seed", "verdicts": []}')
    (study / "meta.json").write_text('{"study": "seed"}')
    assert main(["atlas", "--answers", str(study)]) == EXIT_BAD_INPUT
    assert f"mlpsim: error: '{study}' is not an atlas output folder (it has no atlas.json)" in capsys.readouterr().err
    assert main(["atlas", "--answers", str(tmp_path / "nowhere")]) == EXIT_BAD_INPUT
    assert f"'{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err


def test_every_key_a_condition_changes_is_one_atlas_set_refuses():
    from mlpsim.config import preset
    base = preset("seed").to_dict()
    changed = set()
    for size in ("tiny", "default"):
        for c in atlas.design(atlas.SIZES[size]):
            cfg = atlas.condition_config(c.levels, atlas.SIZES[size]).to_dict()
            changed |= {f"{s}.{k}" for s, d in cfg.items() for k, v in d.items() if base[s][k] != v}
    assert changed <= set(atlas.CONDITION_KEYS), changed - set(atlas.CONDITION_KEYS)
    assert len(changed) >= 10  # the design varies most of them
