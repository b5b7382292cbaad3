"""Running studies: finding or training their run, and recording how they were made.

A study is a script ``studies/NN_topic.py`` (installed as ``mlpsim.studies``)
with ``run(config) -> results`` and ``plot(results, out)``. This module holds
what they share: the registry behind ``mlpsim study NAME``, reusing a finished
run, and ``meta.json``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from .config import Config
from .store import RunError, atomic_write_json, load_run, now, read_json, versions

#: ``mlpsim study NAME`` -> the study modules it runs, in order, and what it is for.
STUDIES = {
    "seed": (("01_seed_notebook", "02_weight_distribution"),
             "the notebook's figures and the verdict on 'the weight distribution broadens' (seed preset)"),
    "distribution": (("02_weight_distribution",),
                     "per-layer, normalized, trajectory and tail analyses of any run"),
    "rank": (("03_rank",), "does the rank of the weight matrices fall during training? (seed and wide presets)"),
    "perturbation": (("05_perturbation",),
                     "does editing a few weights change the network's function? (seed and wide presets)"),
    "mesh": (("09_mesh",), "grid networks: can one visually see training? (mesh preset)"),
    "width-depth": (("06_width_depth",), "how do weight changes scale with width and depth? (lazy regime?)"),
    "ensembles": (("07_ensembles_vs_single",), "at a fixed parameter budget: an ensemble of 8 small nets or one larger?"),
    "targets": (("08_targets",), "which findings (broadening, rank loss, fragility) hold for every target?"),
    "correlations": (("04_correlations",),
                     "are weight correlations exponentially damped with network distance? (depths 2-8)"),
}


def study_module(name: str):
    """Import ``mlpsim.studies.<name>`` (the top-level ``studies/`` folder).

    An installed mlpsim carries the folder as the subpackage ``mlpsim.studies``
    (``package_dir`` in setup.cfg). Run from a source checkout without
    installing, the folder sits beside the package instead; it is then
    registered under the same name.
    """
    try:
        importlib.import_module("mlpsim.studies")
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent / "studies"
        spec = importlib.util.spec_from_file_location(
            "mlpsim.studies", folder / "__init__.py", submodule_search_locations=[str(folder)])
        if spec is None or not (folder / "__init__.py").exists():
            raise RuntimeError(f"the studies are not installed and {folder} does not exist") from None
        module = importlib.util.module_from_spec(spec)
        sys.modules["mlpsim.studies"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"mlpsim.studies.{name}")


def obtain_run(config: Config, run_dir, progress=None, log=print):
    """The finished run of ``config`` in ``run_dir``: reused, resumed or trained.

    A complete run with the same configuration is reused (and said so); an
    unfinished one is resumed; a run with another configuration is an error.
    """
    from .train import train
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / "manifest.json").exists():
        raise RunError(f"{str(run_dir)!r} exists but holds no mlpsim run; delete it or choose another --out")
    if (run_dir / "manifest.json").exists():
        old = Config.from_dict(read_json(run_dir / "config.json")).to_dict()
        if old != config.to_dict():
            raise RunError(f"{str(run_dir)!r} holds a run with a different configuration; "
                           "choose another --out, or pass --run to analyse that run as it is")
        manifest = read_json(run_dir / "manifest.json")
        if manifest["status"] == "complete":
            log(f"reusing the finished run in {run_dir} (same configuration; nothing trained)")
            return load_run(run_dir)
        if manifest["status"] == "failed":
            raise RunError(f"the run in {str(run_dir)!r} failed ({manifest.get('reason')}); delete it to "
                           "train again, or choose another --out")
        log(f"resuming the unfinished run in {run_dir}")
        return train(config, run_dir, resume=True, progress=progress)
    log(f"training into {run_dir}")
    return train(config, run_dir, progress=progress)


def write_meta(out, run, study: str, extra=None):
    """``meta.json``: the study, the run it analysed, its config and seeds, versions."""
    meta = {"study": study, "run_dir": str(Path(run.path).resolve()), "created": now(),
            "config": run.config.to_dict(), "config_sha256": run.manifest["config_sha256"],
            "seeds": {"train": run.config.train.seed, "data": run.config.data.seed},
            "versions": versions()}
    meta.update(extra or {})
    atomic_write_json(Path(out) / "meta.json", meta)


def save_data(out, name: str, **arrays):
    """The numbers behind a figure, as ``out/name.npz``."""
    np.savez_compressed(Path(out) / f"{name}.npz", **arrays)


def to_jsonable(obj):
    """Numpy scalars and arrays to plain JSON types."""
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path, obj):
    atomic_write_json(Path(path), to_jsonable(obj))


def load_json(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def fit_power(x, y, n_boot: int = 500, seed: int = 0) -> dict:
    """Least-squares slope of log y against log x (y ~ x**slope), with a 95 % interval
    from resampling the points (seeded). Points with y <= 0 are left out."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if np.unique(lx).size < 2:
        return {"slope": None, "ci": [None, None], "n": int(ok.sum())}
    slope = float(np.polyfit(lx, ly, 1)[0])
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, lx.size, lx.size)
        if np.unique(lx[pick]).size >= 2:
            boots.append(np.polyfit(lx[pick], ly[pick], 1)[0])
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"slope": slope, "ci": [float(lo), float(hi)], "n": int(ok.sum())}
