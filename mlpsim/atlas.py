"""The regularities atlas: which trained-vs-untrained regularities are generic?

The seed network's verdicts say what holds for one 1-8-8-8-1 ReLU net on one
target. The atlas asks the same questions over a designed set of *conditions*
around it, and answers with a table: each regularity, in how many conditions
it holds, how sure we are, and where it fails.

Design
------
Factors and levels (the seed's level first):

==============  ==========================================================
width           8 (seed), 4, 16, 32, 64: every hidden layer
depth           3 (seed), 1, 2, 4, 6: hidden layers
activation      relu (seed), tanh
target          piecewise (seed) and every other target of mlpsim.data
                (2-D targets get a 2-input network)
optimizer       adam_wolfram (seed), adam_kingma, gd, momentum
lr              mid (seed), low, high: 3 levels per optimizer (``LR``)
init            kaiming_normal (seed), glorot_uniform
weight_decay    0 (seed), 0.001
dtype           float64 (seed), float32
data_size       base (seed), small (n / 4), large (4 n)
==============  ==========================================================

Not the full product (about 48 000 conditions): every factor varied one at a
time around the seed configuration ("one at a time", OAT), plus a seeded
space-filling sample of combinations (each level of each factor used equally
often). ``--size`` sets the base training and the sample: ``tiny`` (seconds,
for tests), ``default`` (about an hour on 2 cores), ``large`` (for a cluster).
Every condition is an ordinary run directory; each trains ``instances`` (20)
networks, so that the claims of :mod:`mlpsim.claims` can be judged in it (each
half of their stability check then has 10, enough for the deepest networks).

What is measured, and how it is judged
--------------------------------------
In each condition, next to the data (in the worker), every observable of
:mod:`mlpsim.analysis.observables` at initialization and at the end, and the
per-matrix claims of :mod:`mlpsim.claims`. Then, for each observable:

1. per condition and layer, the exact sign test over instances of the change
   (log ratio, difference, or the final value, see ``OBSERVABLES``), Holm over
   the condition's layers, and a median change of at least the observable's
   smallest change that counts; the condition goes *up* (or *down*) when a
   majority of its layers do, else *none*;
2. across conditions, the dominant direction and the number N of the M
   conditions that follow it; the exact sign test of up against down
   conditions, Holm over all regularities (observables and claims);
3. *generic* when N >= 90 % of M and the adjusted p < 0.05; *common* when N >=
   50 % of M and the adjusted p < 0.05; else *not generic*. A claim counts a
   condition *up* when it is supported there and *down* when contradicted.

Outputs: ``cells.csv`` (one row per condition, instance, layer and observable
with the initial and final values), ``conditions.csv``, ``summary.md`` /
``summary.json`` (the regularities, most generic first, with the conditions
where each fails), heat maps (conditions x layers, colour = median effect,
marks = significance), and ``records/`` (each condition's measurements, so a
killed atlas restarts where it stopped).
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import stats
from .config import Config, ConfigError, preset
from .data import TARGETS
from .errors import unknown_name_message
from .kernels import ENGINE_VERSION
from .store import atomic_write_bytes, atomic_write_json, check_memory, check_output_folder, read_json

#: factor -> (levels, the seed's level)
FACTORS = {
    "width": ((8, 4, 16, 32, 64), 8),
    "depth": ((3, 1, 2, 4, 6), 3),
    "activation": (("relu", "tanh"), "relu"),
    "target": (tuple(TARGETS), "piecewise"),
    "optimizer": (("adam_wolfram", "adam_kingma", "gd", "momentum"), "adam_wolfram"),
    "lr": (("mid", "low", "high"), "mid"),
    "init": (("kaiming_normal", "glorot_uniform"), "kaiming_normal"),
    "weight_decay": ((0.0, 0.001), 0.0),
    "dtype": (("float64", "float32"), "float64"),
    "data_size": (("base", "small", "large"), "base"),
}
#: learning rates per optimizer: low, mid, high
LR = {"adam_wolfram": (3e-4, 1e-3, 3e-3), "adam_kingma": (3e-4, 1e-3, 3e-3),
      "gd": (0.01, 0.03, 0.1), "momentum": (0.001, 0.003, 0.01)}
DATA_SIZE = {"small": 0.25, "base": 1.0, "large": 4.0}


@dataclass(frozen=True)
class Size:
    """A size of atlas: the base training of every condition, and the design."""

    n: int
    steps: int
    instances: int
    sample: int             # space-filling combinations besides the one-at-a-time conditions
    factors: tuple = tuple(FACTORS)
    levels: dict = None     # factor -> levels kept (None: all)
    edits: bool = True      # measure worst_edit_ratio, and judge edit_robustness
    hessian: bool = True


SIZES = {
    "tiny": Size(n=256, steps=150, instances=20, sample=1, factors=("activation", "width"),
                 levels={"activation": ("relu", "tanh"), "width": (8, 16)}, edits=False),
    "default": Size(n=1000, steps=5000, instances=20, sample=16),
    "large": Size(n=5000, steps=15000, instances=20, sample=200),
}
CLAIMS = ("broadening", "longer_tails", "rank_decrease", "edit_robustness")
#: Bumped whenever what a record holds changes: older records are measured again (the runs are kept).
ANALYSIS_VERSION = 3
LEVEL = 0.05
GENERIC, COMMON = 0.9, 0.5


@dataclass(frozen=True)
class Condition:
    name: str
    levels: dict   # factor -> level (every factor, the seed's where not varied)
    kind: str      # "seed", "one at a time" or "combination"


# ----------------------------------------------------------------- the design
def parse_only(specs) -> dict:
    """``["width=4,16", "activation"]`` -> ``{"width": (4, 16), "activation": all levels}``; names checked."""
    out = {}
    for spec in specs or ():
        name, _, levels = str(spec).partition("=")
        name = name.strip()
        if name not in FACTORS:
            raise ConfigError(unknown_name_message("factor", name, FACTORS))
        allowed = FACTORS[name][0]
        if not levels:
            out[name] = allowed
            continue
        chosen = []
        for text in levels.split(","):
            text = text.strip()
            match = [a for a in allowed if str(a) == text or (_is_number(text) and _num_equal(a, text))]
            if not match:
                raise ConfigError(f"factor {name!r}: " + unknown_name_message("level", text, [str(a) for a in allowed]))
            chosen.append(match[0])
        out[name] = tuple(dict.fromkeys([FACTORS[name][1]] + chosen))  # the seed's level stays the reference
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _num_equal(a, text) -> bool:
    return isinstance(a, (int, float)) and float(a) == float(text)


def design(size: Size, only: dict = None, seed: int = 0) -> list:
    """The conditions: the seed configuration, each factor varied one at a time, and ``size.sample``
    seeded space-filling combinations (each factor's levels used equally often)."""
    factors = dict(only) if only else {f: (size.levels or {}).get(f, FACTORS[f][0]) for f in size.factors}
    seed_levels = {f: FACTORS[f][1] for f in FACTORS}
    conditions = [Condition("seed", dict(seed_levels), "seed")]
    seen = {_key(seed_levels)}
    for f, levels in factors.items():
        for level in levels:
            lv = dict(seed_levels, **{f: level})
            if _key(lv) not in seen:
                seen.add(_key(lv))
                conditions.append(Condition(f"{f}={level}", lv, "one at a time"))
    varied = [f for f, levels in factors.items() if len(levels) > 1]
    if size.sample and len(varied) >= 2:
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
        columns = {}
        for f in varied:  # a balanced column per factor: every level equally often, in random order
            levels = list(factors[f])
            reps = -(-size.sample * 4 // len(levels))
            columns[f] = [levels[i] for i in rng.permuted(np.tile(np.arange(len(levels)), reps))]
        k = 0
        for row in range(len(columns[varied[0]])):
            lv = dict(seed_levels, **{f: columns[f][row] for f in varied})
            if _key(lv) in seen:
                continue
            seen.add(_key(lv))
            k += 1
            conditions.append(Condition(f"mix-{k:02d}", lv, "combination"))
            if k == size.sample:
                break
    return conditions


def _key(levels: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in levels.items()))


#: The keys every condition sets (:func:`condition_config`): an atlas's ``--set`` of one of them would
#: be overwritten in every run, so it is refused (the factors and ``--size`` vary them). Kept equal
#: to what condition_config changes by tests/test_atlas.py.
CONDITION_KEYS = ("model.widths", "model.activation", "model.init", "data.target", "data.n", "train.optimizer",
                  "train.adam_variant", "train.lr", "train.weight_decay", "train.dtype", "train.steps",
                  "train.checkpoint_every", "train.instances", "train.on_divergence",
                  "data.x_range")  # (reset to the target's own range when a condition sets the target)


def condition_config(levels: dict, size: Size, base: Config = None) -> Config:
    """The run configuration of a condition."""
    base = base or preset("seed")
    target = levels["target"]
    d_in = (base.data.teacher_widths[0] if target == "teacher" else TARGETS[target].d_in) or 1
    widths = [d_in] + [int(levels["width"])] * int(levels["depth"]) + [1]
    opt = levels["optimizer"]
    lr = LR[opt][("low", "mid", "high").index(levels["lr"])]
    values = {
        "model.widths": widths, "model.activation": levels["activation"], "model.init": levels["init"],
        "data.target": target, "data.n": max(16, int(round(size.n * DATA_SIZE[levels["data_size"]]))),
        "train.optimizer": "adam" if opt.startswith("adam") else opt,
        "train.adam_variant": opt.split("_")[1] if opt.startswith("adam") else base.train.adam_variant,
        "train.lr": lr, "train.weight_decay": float(levels["weight_decay"]), "train.dtype": levels["dtype"],
        "train.steps": size.steps, "train.checkpoint_every": size.steps, "train.instances": size.instances,
        "train.on_divergence": "continue",
    }
    return base.with_values(values)


def build(size_name: str = "default", only=None, seed: int = 0, base: Config = None) -> list:
    """``[(Condition, Config)]`` of an atlas, every configuration validated (errors name the condition)."""
    from .training import build_net, training_data
    if size_name not in SIZES:
        raise ConfigError(unknown_name_message("atlas size", size_name, SIZES))
    size = SIZES[size_name]
    out = []
    for c in design(size, parse_only(only), seed):
        try:
            cfg = condition_config(c.levels, size, base)
            check_memory(cfg, threads=1)
            net = build_net(cfg)
            if cfg.data.target == "teacher" or cfg.data.target in TARGETS:
                training_data(cfg.with_values({"data.n": 16, "data.n_test": 0}), net)  # the target fits the net
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"condition {c.name!r} cannot train: {exc}") from None
        out.append((c, cfg))
    return out


# ----------------------------------------------------------------- in the workers
def _record_path(out: Path, name: str) -> Path:
    return out / "records" / f"{_slug(name)}.json"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def condition_task(job, stop=None) -> dict:
    """Train (or reuse) a condition's run and measure it, next to the data; return its small record."""
    from threadpoolctl import threadpool_limits

    from . import analysis, claims
    from .training import obtain_run
    name, cfg_dict, run_dir, record_path, options = job
    cfg = Config.from_dict(cfg_dict)
    record_path = Path(record_path)
    if record_path.exists():
        try:
            old = read_json(record_path)
            if (old.get("config_sha256") == cfg.sha256() and old.get("analysis_version") == ANALYSIS_VERSION
                    and old.get("engine_version") == ENGINE_VERSION):
                return old
        except Exception:  # noqa: BLE001 - a damaged record is measured again
            pass
    t0 = time.perf_counter()
    try:
        run = obtain_run(cfg, run_dir, progress=False, log=lambda *a: None, stop=stop)
    except KeyboardInterrupt:
        return {"condition": name, "status": "interrupted"}
    t1 = time.perf_counter()
    healthy = run.healthy_instances()
    record = {"condition": name, "status": "complete", "config_sha256": cfg.sha256(),
              "analysis_version": ANALYSIS_VERSION, "engine_version": ENGINE_VERSION, "run_dir": str(run.path),
              "instances": int(run.n_instances), "healthy": [int(i) for i in healthy], "cells": [], "claims": {}}
    if healthy.size >= 2:
        sub = run.select_instances(healthy) if healthy.size < run.n_instances else run
        x, y = sub.data()
        with threadpool_limits(limits=1):
            params = np.asarray(sub.params[:, [0, -1]], dtype=np.float64)
            rows = analysis.measure(sub.net, params, x, y, seed=0, edits=options["edits"],
                                    hessian=options["hessian"])
            record["cells"] = [[int(healthy[i]), layer, obs, a, b] for i, layer, obs, a, b in rows]
            for c in CLAIMS:
                if c == "edit_robustness" and not options["edits"]:
                    continue
                v = claims.evaluate(c, sub, max_points=1000) if c == "edit_robustness" else claims.evaluate(c, sub)
                record["claims"][c] = {"status": v.status, "effect": v.effect, "ci": list(v.ci),
                                       "p_value": v.p_value, "n_instances": v.n_instances,
                                       "reason": v.reason[:400]}
    record["seconds"] = {"train": t1 - t0, "analyse": time.perf_counter() - t1}
    atomic_write_json(record_path, record)
    return record


# ----------------------------------------------------------------- judging the regularities
def effect(observable: str, init: float, final: float) -> float:
    """The change of one observable, in its scale (see ``OBSERVABLES``)."""
    from .analysis.observables import OBSERVABLES
    scale = OBSERVABLES[observable][1]
    if scale == "final":
        return final
    if scale == "diff":
        return final - init
    if init > 0 and final > 0:
        return math.log(final / init)
    return math.nan


def condition_directions(cells, level: float = LEVEL) -> dict:
    from .analysis.observables import OBSERVABLES
    return _condition_directions(cells, level, OBSERVABLES)


def _condition_directions(cells, level, OBSERVABLES) -> dict:
    """``{(condition, observable): {"direction", "effect", "layers": {layer: (direction, median, p_holm)}}}``.

    ``cells``: rows ``(condition, instance, layer, observable, init, final)``.
    """
    groups = {}
    for cond, inst, layer, obs, a, b in cells:
        groups.setdefault((cond, obs), {}).setdefault(layer, []).append(effect(obs, a, b))
    out = {}
    for key, layers in groups.items():
        names = list(layers)
        tests = []
        for name in names:
            d = np.array(layers[name], dtype=float)
            d = d[np.isfinite(d)]
            up, down = stats.sign_test(d, "greater"), stats.sign_test(d, "less")
            tests.append((min(1.0, 2 * min(up["p"], down["p"])), "up" if up["p"] < down["p"] else "down",
                          float(np.median(d)) if d.size else math.nan))
        adjusted = stats.holm([t[0] for t in tests])
        smallest = OBSERVABLES[key[1]][2]
        per = {}
        for name, (p, direction, med), adj in zip(names, tests, adjusted):
            # significant, and the typical (median) change goes that way by at least the smallest change
            # that counts: the sign test drops zeros, so a majority of unchanged instances cannot pass
            big = np.isfinite(med) and abs(med) >= smallest and (med > 0) == (direction == "up")
            per[name] = (direction if adj < level and big else "none", med, float(adj))
        ups = sum(v[0] == "up" for v in per.values())
        downs = sum(v[0] == "down" for v in per.values())
        majority = len(per) // 2 + 1
        direction = "up" if ups >= majority else "down" if downs >= majority else "none"
        medians = [v[1] for v in per.values() if np.isfinite(v[1])]
        out[key] = {"direction": direction, "effect": float(np.median(medians)) if medians else math.nan,
                    "layers": per}
    return out


def regularities(cells, claim_statuses=None, level: float = LEVEL) -> list:
    """Every observable and claim as a regularity: its direction, N of M conditions, the sign test,
    Holm, the label (generic / common / not generic) and the conditions where it fails.

    ``claim_statuses``: ``{(condition, claim): status}``.
    """
    per = condition_directions(cells, level)
    items = {}
    for (cond, obs), d in per.items():
        items.setdefault(("observable", obs), {})[cond] = d["direction"]
    for (cond, claim), status in (claim_statuses or {}).items():
        items.setdefault(("claim", claim), {})[cond] = {"supported": "up", "contradicted": "down"}.get(status, "none")
    found = []
    for (kind, name), by_cond in items.items():
        M = len(by_cond)
        up = sum(v == "up" for v in by_cond.values())
        down = sum(v == "down" for v in by_cond.values())
        direction = "up" if up >= down else "down"
        N = max(up, down)
        p = min(1.0, 2 * stats.binomial_tail(N, up + down, 0.5)) if up + down else 1.0
        fails = {c: v for c, v in by_cond.items() if v != direction}
        found.append({"kind": kind, "name": name, "direction": direction, "N": N, "M": M, "up": up, "down": down,
                      "p": p, "fails": fails})
    for r, adj in zip(found, stats.holm([r["p"] for r in found])):
        r["p_holm"] = float(adj)
        share = r["N"] / r["M"] if r["M"] else 0.0
        r["share"] = share
        r["label"] = ("generic" if share >= GENERIC and adj < level else
                      "common" if share >= COMMON and adj < level else "not generic")
    found.sort(key=lambda r: (-r["share"], r["p_holm"], r["name"]))
    return found


def describe_regularity(r: dict) -> str:
    """One line of prose for a regularity."""
    words = {("observable", "up"): "grows", ("observable", "down"): "falls",
             ("claim", "up"): "is supported", ("claim", "down"): "is contradicted"}[(r["kind"], r["direction"])]
    fails = ", ".join(f"{c} ({v})" for c, v in sorted(r["fails"].items())[:8])
    more = f" and {len(r['fails']) - 8} more" if len(r["fails"]) > 8 else ""
    return (f"{r['name']} {words} in {r['N']} of {r['M']} conditions ({r['label']}; sign test of {r['up']} up vs "
            f"{r['down']} down, Holm-adjusted p = {r['p_holm']:.2g})"
            + (f"; fails in {fails}{more}" if r["fails"] else "; it never fails"))


# ----------------------------------------------------------------- the driver
def estimate(built, workers: int = 2, edits: bool = True, hessian: bool = True) -> dict:
    """Disk, and wall time on ``workers`` processes, calibrated on this machine.

    Training: each distinct network and data size trains a few steps. Analysis:
    a model of its parts (per-matrix claims and observables, the exact Hessian,
    the edit searches) whose constants are timed now on the seed network.
    """
    from .analysis.observables import MAX_HESSIAN_PARAMS
    from .store import run_needs
    from .training import estimate_seconds
    unit = _analysis_units()
    per_shape = {}
    compile_train = 0.0
    total = 0.0
    disk = 0
    for c, cfg in built:
        key = (tuple(cfg.model.widths), cfg.data.n, cfg.train.dtype, cfg.model.activation)
        if key not in per_shape:
            t0 = time.perf_counter()
            per_shape[key] = estimate_seconds(cfg.with_values({"train.instances": 1}), threads=1, steps=10)[1]
            compile_train += max(0.0, time.perf_counter() - t0 - 11 * per_shape[key] - 0.05)
        E, n = cfg.train.instances, min(cfg.data.n, 1000)
        P = run_needs(cfg)["n_params"]
        L = len(cfg.model.widths) - 1
        analyse = unit["fixed"] + E * L * unit["per_matrix"] * (1 + P / (50 * L))
        if hessian and P <= MAX_HESSIAN_PARAMS:
            analyse += 2 * E * unit["hessian"] * (P / 169) ** 2
        if edits:  # the edit claim screens every weight and refines 64 per matrix; the ratio, at init and end
            width = max(cfg.model.widths[1:-1] or [1])
            evals = E * ((2 * P + 64 * 20 * L) + 2 * (2 * P + 32 * 20))
            analyse += evals * unit["edit_eval"] * (width / 8) * (n / 1000)
        total += per_shape[key] * cfg.train.steps * E + analyse
        disk += run_needs(cfg, threads=1)["disk"]
    startup = 4.0  # spawning a worker and loading the compiled kernels
    # The estimate is for the run after this dry run: the calibration above has
    # just compiled every kernel into numba's cache (on a cold machine that is
    # "compile", reported apart), so the workers only load them.
    return {"seconds": total / max(1, min(workers, len(built))) + startup, "disk": disk,
            "conditions": len(built), "compile_seconds": unit["compile"] + compile_train}


def _n_params(cfg: Config) -> int:
    from .store import n_params
    return n_params(cfg.model.widths)


def _analysis_units() -> dict:
    """Seconds of the analysis's parts on this machine, timed on the seed network."""
    from . import analysis
    from .perturb import Budget, Evaluator, hessian
    from .training import training_data
    net = analysis.observables.MLP([1, 8, 8, 8, 1])
    cfg = preset("seed").with_values({"data.n": 1000})
    x, y, _, _ = training_data(cfg, net)
    theta = np.stack([net.init(seed=s) for s in range(2)])
    params = np.stack([theta, theta * 1.1], axis=1)
    ev = Evaluator(net, theta[0], x, y, grid=x[::10])
    parts = {"fixed": lambda: analysis.measure(net, params, x, y, edits=False, hessian=False),
             "hessian": lambda: hessian(net, theta[0], x[:256], y[:256]),
             "edit": lambda: ev.exhaustive_single(Budget("layer_std", 0.1), n_values=16, n_refine=4,
                                                  candidates=np.arange(16, 80))}
    seconds, warm_up = {}, 0.0
    for name, part in parts.items():
        t0 = time.perf_counter()
        part()  # the first call compiles (cold cache) or loads the kernels: timed apart
        t1 = time.perf_counter()
        part()
        t2 = time.perf_counter()
        seconds[name] = t2 - t1
        warm_up += max(0.0, (t1 - t0) - (t2 - t1))
    return {"fixed": 0.5 + seconds["fixed"], "per_matrix": 0.01, "hessian": seconds["hessian"],
            "edit_eval": seconds["edit"] / (64 * 21), "compile": warm_up}


def run_atlas(out, size: str = "default", only=None, workers=None, scheduler=None, dask_local=None,
              dry_run: bool = False, seed: int = 0, base: Config = None, log=print) -> dict:
    """Build, run (resumably) and judge an atlas into ``out``; see the module docstring.

    ``base`` replaces the seed configuration the factors vary around (the CLI's ``--set``).
    """
    from .executor import Executor
    built = build(size, only, seed, base)
    executor = Executor(workers=workers, scheduler=scheduler, dask_local=dask_local)
    if dry_run:
        est = estimate(built, executor.n_workers if executor.kind == "local" else (dask_local or 2),
                       edits=SIZES[size].edits, hessian=SIZES[size].hessian)
        return {"built": built, "estimate": est}
    out = Path(out)
    check_output_folder(out, "atlas")
    opts = {"edits": SIZES[size].edits, "hessian": SIZES[size].hessian}
    records = {}
    with executor:  # a scheduler that does not answer fails here, before anything is written
        (out / "records").mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "atlas.json", {
            "size": size, "only": only or [], "seed": seed, "factors": {f: list(map(str, v[0])) for f, v in FACTORS.items()},
            "conditions": [{"name": c.name, "kind": c.kind, "levels": {k: str(v) for k, v in c.levels.items()},
                            "config_sha256": cfg.sha256()} for c, cfg in built]})
        jobs = []
        for c, cfg in built:
            run_dir = out / "runs" / f"{_slug(c.name)}-{cfg.sha256()[:8]}-engine{ENGINE_VERSION}"
            jobs.append((c.name, cfg.to_dict(), str(run_dir.resolve()), str(_record_path(out, c.name).resolve()), opts))
        # the costliest conditions first, so that no long one starts last and keeps a core alone at the end
        cost = {c.name: cfg.train.instances * cfg.train.steps * cfg.data.n * _n_params(cfg) for c, cfg in built}
        jobs.sort(key=lambda j: -cost[j[0]])
        t0 = time.perf_counter()

        def finished(job, record, progress):
            records[job[0]] = record
            status = record.get("status", "?")
            sec = record.get("seconds", {})
            log(f"[{len(records)}/{len(jobs)}] {job[0]}: {status}"
                + (f" (train {sec.get('train', 0):.1f} s, analyse {sec.get('analyse', 0):.1f} s)" if sec else "")
                + progress)

        executor.map(condition_task, jobs, finished, shared_dir=out, costs=[cost[j[0]] + 1e9 for j in jobs])
        wall = time.perf_counter() - t0
    return write_outputs(out, built, records, wall, executor.n_workers if executor.kind == "local" else None)


def write_outputs(out: Path, built, records: dict, wall: float = None, workers=None) -> dict:
    """cells.csv, conditions.csv, summary.md/json and the heat maps, from the records."""
    from . import plots
    names = [c.name for c, _ in built]
    cells, claim_statuses = [], {}
    for c, cfg in built:
        rec = records.get(c.name) or {}
        for inst, layer, obs, a, b in rec.get("cells", []):
            cells.append((c.name, inst, layer, obs, a, b))
        for claim, v in rec.get("claims", {}).items():
            claim_statuses[(c.name, claim)] = v["status"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["condition", "run_dir", "instance", "layer", "observable", "init", "final"])
    for cond, inst, layer, obs, a, b in cells:
        w.writerow([cond, records[cond]["run_dir"], inst, layer, obs, repr(float(a)), repr(float(b))])
    atomic_write_bytes(out / "cells.csv", buf.getvalue().encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["condition", "kind", *FACTORS, "run_dir", "instances", "healthy", "status", "config_sha256"])
    for c, cfg in built:
        rec = records.get(c.name) or {}
        w.writerow([c.name, c.kind, *[c.levels[f] for f in FACTORS], rec.get("run_dir", ""), rec.get("instances", ""),
                    len(rec.get("healthy", [])), rec.get("status", "missing"), cfg.sha256()])
    atomic_write_bytes(out / "conditions.csv", buf.getvalue().encode())
    found = regularities(cells, claim_statuses)
    per = condition_directions(cells)
    missing = [n for n in names if (records.get(n) or {}).get("status") != "complete"]
    secs = [r.get("seconds", {}) for r in records.values() if r.get("seconds")]
    perf = None
    if wall and secs:
        train = sum(s.get("train", 0) for s in secs)
        analyse = sum(s.get("analyse", 0) for s in secs)
        perf = {"wall_seconds": wall, "conditions": len(secs), "runs_per_minute": 60 * len(secs) / wall,
                "train_seconds": train, "analyse_seconds": analyse, "workers": workers,
                "overhead_per_run_seconds": (wall * (workers or 1) - train - analyse) / len(secs)}
    paths = plots.atlas_heatmaps(out, names, per, found, claim_statuses)
    summary = {"regularities": found, "conditions": len(names), "missing": missing, "performance": perf,
               "figures": [Path(p).name for p in paths if str(p).endswith(".png")]}
    atomic_write_json(out / "summary.json", summary)
    lines = ["# The regularities atlas", "",
             f"{len(names)} conditions ({sum(c.kind == 'one at a time' for c, _ in built)} one at a time around the "
             f"seed configuration, {sum(c.kind == 'combination' for c, _ in built)} combinations), each an ordinary run "
             "directory (`conditions.csv`); every number below comes from `cells.csv`.", ""]
    if missing:
        lines += [f"Not measured (yet): {', '.join(missing)}; run the same command again to continue.", ""]
    lines += ["## Regularities, most generic first", "",
              "A condition counts *up* (*down*) when the change from initialization goes that way significantly "
              "in a majority of its layers (sign test over instances, Holm over layers); a claim counts up when "
              f"supported. Generic: in >= {GENERIC:.0%} of the conditions with a Holm-adjusted sign-test p < "
              f"{LEVEL}; common: >= {COMMON:.0%}. The conditions are a designed set around one seed "
              "configuration, not a random sample of all networks: N of M says how far a regularity reaches "
              "across the factors varied here, and the sign test how unlikely so one-sided a count would be by "
              "chance. relative_distance (weights move during training) is the control that must be generic.", "",
              "| regularity | direction | conditions | label | p (Holm) | fails where |", "| --- | --- | --- | --- | --- | --- |"]
    for r in found:
        fails = ", ".join(f"{c} ({v})" for c, v in sorted(r["fails"].items())[:6]) + (
            f" +{len(r['fails']) - 6}" if len(r["fails"]) > 6 else "")
        lines.append(f"| {r['kind']} **{r['name']}** | {r['direction']} | {r['N']} of {r['M']} | {r['label']} | "
                     f"{r['p_holm']:.2g} | {fails or 'none'} |")
    lines += ["", "## In words", ""] + [f"- {describe_regularity(r)}." for r in found] + [""]
    if perf:
        lines += ["## Performance", "",
                  f"{perf['conditions']} conditions in {perf['wall_seconds']:.0f} s on {perf['workers'] or 'Dask'} "
                  f"worker(s): {perf['runs_per_minute']:.2f} runs/min; training {perf['train_seconds']:.0f} s and "
                  f"analysis {perf['analyse_seconds']:.0f} s of worker time; overhead per run "
                  f"{perf['overhead_per_run_seconds']:.1f} s.", ""]
    lines += ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in paths if str(p).endswith(".png")]
    atomic_write_bytes(out / "summary.md", ("\n".join(lines) + "\n").encode())
    return {"regularities": found, "missing": missing, "performance": perf, "paths": paths}


ANSWER_MARKERS = ("<!-- answers:start -->", "<!-- answers:end -->")


def answers_table(out) -> str:
    """The README's "Answers": the atlas's regularities as a short table."""
    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"{str(out)!r} " + ("is not a folder" if out.exists() else "does not exist")
                          + ": give the folder an atlas wrote (mlpsim atlas --out DIR)")
    if not (out / "atlas.json").is_file():  # e.g. a study's output folder, which also has a summary.json
        raise ConfigError(f"{str(out)!r} is not an atlas output folder (it has no atlas.json): give the folder "
                          "an atlas wrote (mlpsim atlas --out DIR)")
    s = read_json(out / "summary.json", missing=f"the atlas in {str(out)!r} has not finished (summary.json is "
                  f"missing): run mlpsim atlas --out {out} again to continue it")
    if not isinstance(s.get("regularities"), list):
        raise ConfigError(f"{out / 'summary.json'} holds no list of regularities: it is not an atlas summary; "
                          f"run mlpsim atlas --out {out} again to rewrite it")
    lines = ["| regularity | direction | conditions | label | p (Holm) |", "| --- | --- | --- | --- | --- |"]
    for r in s["regularities"]:
        lines.append(f"| {r['kind']} {r['name']} | {r['direction']} | {r['N']} of {r['M']} | {r['label']} | "
                     f"{r['p_holm']:.2g} |")
    return "\n".join(lines)


__all__ = ["FACTORS", "SIZES", "LR", "Condition", "design", "build", "condition_config", "run_atlas",
           "regularities", "condition_directions", "answers_table"]
