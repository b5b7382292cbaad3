"""Sweeps: a grid over configuration keys, expanded into ordinary run directories.

A sweep file has a ``[base]`` table (an optional ``preset`` name and any
``mlpsim train`` keys, dotted or as sub-tables) and a ``[grid]`` table mapping
dotted keys to lists of values::

    [base]
    preset = "seed"
    "train.steps" = 2000            # or: train = { steps = 2000 }
    [grid]
    "data.target" = ["piecewise", "sin"]
    "model.widths" = [[1, 8, 8, 8, 1], [1, 32, 32, 1]]
    "train.seed" = [1, 2, 3]

The grid's product (in the order the keys are written, last key fastest) gives
the runs, each in ``OUT/runs/NNNN-<sha8 of its config>``. Completed runs are
skipped and interrupted ones resumed, so a sweep can be stopped and restarted
at any time. ``OUT/summary.csv`` gets one row per finished run (its grid
values, final loss, variance ratio, kurtosis change, effective-rank change of
the largest hidden matrix, relative distance from initialization), rewritten
as runs finish. Runs execute in local processes, one single-threaded worker
per core (results do not depend on the thread count).
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, preset, read_toml_file
from .store import atomic_write_bytes, check_memory, check_output_folder

SUMMARY_COLUMNS = ("run", "status", "final_loss_mean", "variance_ratio_mean", "kurtosis_change_mean",
                   "effective_rank_change_mean", "relative_distance_mean")  # keys of run_metrics + _mean


def read_sweep(path) -> tuple:
    """``(base Config, grid dict)`` from a sweep file; errors name the key."""
    return parse_sweep(read_toml_file(path, "sweep file"))


def parse_sweep(d: dict) -> tuple:
    unknown = set(d) - {"base", "grid"}
    if unknown:
        raise ConfigError(f"unknown sweep table(s) {sorted(unknown)}; a sweep has [base] and [grid]")
    base = d.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError("[base] must be a table of configuration keys")
    base = dict(base)
    name = base.pop("preset", "seed")
    if not isinstance(name, str):
        raise ConfigError(f"[base] preset must be a preset name, got {name!r}")
    cfg = preset(name)
    # keys as sub-tables (train = { steps = 1000 }) or dotted ("train.steps" = 1000), alike
    flat = {}
    for key, value in base.items():
        if isinstance(value, dict) and "." not in key:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    if flat:
        cfg = cfg.with_values(flat)
    grid = d.get("grid", {})
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("the sweep needs a non-empty [grid] table of dotted keys and lists of values")
    for key, values in grid.items():
        if isinstance(values, dict) and "." not in key:  # TOML read train.seed = [...] as a table
            inner = next(iter(values), "key")
            raise ConfigError(f"grid key {key!r} is a table: quote dotted keys in [grid], "
                              f'"{key}.{inner}" = [...]')
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid key {key!r} must map to a non-empty list of values")
    return cfg, grid


def expand(base: Config, grid: dict) -> list:
    """Every run's ``(grid values dict, Config)``, validated before anything runs."""
    keys = list(grid)
    runs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        cfg = base.with_values(values)
        check_memory(cfg, threads=1)  # a run too large for this machine is refused before any starts
        runs.append((values, cfg))
    return runs


def run_dir_name(i: int, cfg: Config) -> str:
    return f"{i:04d}-{cfg.sha256()[:8]}"


def _train_one(job, stop=None):
    """Task: train (or skip / resume) one run; return its summary row."""
    out, cfg_dict, values = job
    from .training import obtain_run
    try:
        run = obtain_run(Config.from_dict(cfg_dict), Path(out), progress=False, log=lambda *a: None, stop=stop)
    except KeyboardInterrupt:
        return {"run": Path(out).name, "status": "interrupted"}
    return summary_row(run, values)


def summary_row(run, values: dict) -> dict:
    """The numbers a sweep's summary.csv keeps for one finished run (means over instances)."""
    from .analysis import run_metrics
    m = run_metrics(run)
    row = {"run": Path(run.path).name, "status": run.manifest["status"]}
    row.update({f"{k}_mean": float(np.mean(v)) for k, v in m.items()})
    row.update(grid_cells(values))
    return row


def grid_cells(values: dict) -> dict:
    """A run's grid values as summary.csv cells (lists and tables as JSON)."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in values.items()}


def write_summary_csv(path: Path, rows: list, grid_keys: list):
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS[:1]) + grid_keys + list(SUMMARY_COLUMNS[1:]))
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["run"]):
        writer.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode())


def run_sweep(path_or_dict, out, workers=None, log=print, scheduler=None, dask_local=None) -> list:
    """Run every run of a sweep (skipping complete ones); return the summary rows.

    Executors (see :mod:`mlpsim.executor`): local spawned processes (default,
    ``workers`` of them); or Dask distributed (the extra ``dask``):
    ``scheduler="tcp://HOST:PORT"`` uses a running cluster (for example one
    started by dask-jobqueue on Slurm: ``SLURMCluster(...).scheduler_address``),
    ``dask_local=N`` starts a ``LocalCluster`` of N single-threaded worker
    processes. Every worker needs mlpsim installed and the sweep folder on a
    shared file system. Results are bit-identical whichever executor runs them.
    Ctrl-C stops queued runs at once and leaves running ones ``interrupted``
    (resumable); running the sweep again continues it.
    """
    from .executor import Executor
    base, grid = read_sweep(path_or_dict) if not isinstance(path_or_dict, dict) else parse_sweep(path_or_dict)
    runs = expand(base, grid)
    executor = Executor(workers=workers, scheduler=scheduler, dask_local=dask_local)  # checks its options
    out = Path(out)
    check_output_folder(out, "sweep")
    jobs = [(str((out / "runs" / run_dir_name(i, cfg)).resolve()), cfg.to_dict(), values)
            for i, (values, cfg) in enumerate(runs)]
    rows = []
    with executor:  # connects (a scheduler that does not answer fails here, before anything is written)
        (out / "runs").mkdir(parents=True, exist_ok=True)
        manifest = {"grid": grid, "base": base.to_dict(), "runs": [Path(j[0]).name for j in jobs]}
        atomic_write_bytes(out / "sweep.json", (json.dumps(manifest, indent=2) + "\n").encode())

        def finished(job, result, progress):
            result = {"run": Path(job[0]).name, **grid_cells(job[2]), **result}  # a failed run's too
            rows.append(result)
            write_summary_csv(out / "summary.csv", rows, list(grid))
            log(f"[{len(rows)}/{len(jobs)}] {Path(job[0]).name} {result['status']}{progress}")

        executor.map(_train_one, jobs, finished, shared_dir=out)
    return rows
