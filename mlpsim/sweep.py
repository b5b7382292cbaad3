"""Sweeps: a grid over configuration keys, expanded into ordinary run directories.

A sweep file has a ``[base]`` table (an optional ``preset`` name and any
``mlpsim train`` keys as sub-tables) and a ``[grid]`` table mapping dotted keys
to lists of values::

    [base]
    preset = "seed"
    train = { steps = 2000 }
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
import os
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, preset
from .store import RunError, atomic_write_bytes

SUMMARY_COLUMNS = ("run", "status", "final_loss_mean", "variance_ratio_mean", "kurtosis_change_mean",
                   "effective_rank_change_mean", "relative_distance_mean")  # keys of run_metrics + _mean


def read_sweep(path) -> tuple:
    """``(base Config, grid dict)`` from a sweep file; errors name the key."""
    try:
        with open(path, "rb") as fh:
            d = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"sweep file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep file {str(path)!r} is not valid TOML: {exc}") from None
    return parse_sweep(d)


def parse_sweep(d: dict) -> tuple:
    unknown = set(d) - {"base", "grid"}
    if unknown:
        raise ConfigError(f"unknown sweep table(s) {sorted(unknown)}; a sweep has [base] and [grid]")
    base = dict(d.get("base", {}))
    name = base.pop("preset", "seed")
    cfg = preset(name)
    if base:
        cfg = cfg.replace(**base)
    grid = d.get("grid", {})
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("the sweep needs a non-empty [grid] table of dotted keys and lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid key {key!r} must map to a non-empty list of values")
    return cfg, grid


def expand(base: Config, grid: dict) -> list:
    """Every run's ``(grid values dict, Config)``, validated before anything runs."""
    keys = list(grid)
    runs = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        runs.append((values, base.with_values(values)))
    return runs


def run_dir_name(i: int, cfg: Config) -> str:
    return f"{i:04d}-{cfg.sha256()[:8]}"


def _train_one(args):
    """Worker: train (or skip / resume) one run; return its summary row."""
    import numba
    numba.set_num_threads(1)
    out, cfg_dict, values = args
    from .study import obtain_run
    run = obtain_run(Config.from_dict(cfg_dict), Path(out), progress=False, log=lambda *a: None)
    return summary_row(run, values)


def summary_row(run, values: dict) -> dict:
    """The numbers a sweep's summary.csv keeps for one finished run (means over instances)."""
    from .analysis import run_metrics
    m = run_metrics(run)
    row = {"run": Path(run.path).name, "status": run.manifest["status"]}
    row.update({f"{k}_mean": float(np.mean(v)) for k, v in m.items()})
    row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in values.items()})
    return row


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

    Executors: local spawned processes (default, ``workers`` of them); or Dask
    distributed (the extra ``mlpsim[dask]``): ``scheduler="tcp://HOST:PORT"``
    uses a running cluster (for example one started by dask-jobqueue on Slurm:
    ``SLURMCluster(...).scheduler_address``), ``dask_local=N`` starts a
    ``LocalCluster`` of N single-threaded worker processes. Every worker needs
    mlpsim installed and the sweep folder on a shared file system. Results are
    bit-identical whichever executor runs them.
    """
    base, grid = read_sweep(path_or_dict) if not isinstance(path_or_dict, dict) else parse_sweep(path_or_dict)
    runs = expand(base, grid)
    if scheduler is not None and dask_local is not None:
        raise ConfigError("give either a Dask scheduler address or a local cluster size, not both")
    if dask_local is not None and not (isinstance(dask_local, int) and dask_local >= 1):
        raise ConfigError(f"--dask-local must be a number of workers >= 1, got {dask_local!r}")
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    manifest = {"grid": grid, "base": base.to_dict(), "runs": [run_dir_name(i, c) for i, (_, c) in enumerate(runs)]}
    atomic_write_bytes(out / "sweep.json", (json.dumps(manifest, indent=2) + "\n").encode())
    jobs = [(str((out / "runs" / run_dir_name(i, cfg)).resolve()), cfg.to_dict(), values)
            for i, (values, cfg) in enumerate(runs)]
    rows = []

    def finished(job, result):
        rows.append(result)
        write_summary_csv(out / "summary.csv", rows, list(grid))
        log(f"[{len(rows)}/{len(jobs)}] {Path(job[0]).name} {result['status']}")

    if scheduler is not None or dask_local is not None:
        _run_with_dask(jobs, scheduler, dask_local, finished)
        return rows
    # spawn, not fork: forking a process whose OpenMP threads (numba's) are running is unsafe
    import multiprocessing
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, job): job for job in jobs}
        for fut in as_completed(futures):
            finished(futures[fut], _result_or_failure(fut, futures[fut]))
    return rows


def _result_or_failure(fut, job) -> dict:
    try:
        return fut.result()
    except (RunError, RuntimeError, ValueError) as exc:
        return {"run": Path(job[0]).name, "status": f"failed: {exc}"}


def _run_with_dask(jobs, scheduler, dask_local, finished):
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        raise ConfigError("the Dask executor needs the extra: pip install 'mlpsim[dask]'") from None
    cluster = None
    if dask_local is not None:
        cluster = LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        futures = client.map(_train_one, jobs, pure=False)
        by_key = {f.key: job for f, job in zip(futures, jobs)}
        for fut in dask_completed(futures):
            finished(by_key[fut.key], _result_or_failure(fut, by_key[fut.key]))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
