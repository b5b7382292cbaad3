"""The ``mlpsim`` command line.

    mlpsim train --preset seed --out runs/seed      # the notebook's experiment
    mlpsim train --config my.toml --set train.steps=2000 --out runs/short
    mlpsim train --preset seed --dry-run            # resolved config and disk space
    mlpsim info runs/seed                           # status, progress, final losses
    mlpsim study seed --out out/seed                # the seed study: figures and verdict
    mlpsim study --list                             # the studies

Exit status: 0 success, 1 training failed (diverged), 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .config import PRESETS, Config, ConfigError
from .store import RunError, load_run


def toml_value(v) -> str:
    """One value as TOML text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def toml_dumps(d: dict) -> str:
    """TOML text for the flat, two-level dicts that configs are (None values are left out)."""
    lines = []
    for section, table in d.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _config_from_args(args) -> Config:
    from .config import preset
    if args.preset and args.config:
        raise ConfigError("give either --preset or --config, not both")
    cfg = Config.from_toml(args.config) if args.config else preset(args.preset or "seed")
    return cfg.with_overrides(args.set) if args.set else cfg


def cmd_train(args) -> int:
    from .train import build_net, disk_bytes, train
    cfg = _config_from_args(args)
    if args.dry_run:
        net = build_net(cfg)
        print(toml_dumps(cfg.to_dict()))
        t = cfg.train
        print(f"# network: {net!r}")
        print(f"# {t.instances} instance(s) x {t.steps} steps, {len(t.schedule())} checkpoints "
              f"(steps {t.schedule()[0]} .. {t.schedule()[-1]})")
        print(f"# disk space: {disk_bytes(cfg, net) / 2**20:.1f} MiB")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    run = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                progress=False if args.no_progress else None, threads=args.threads,
                commit_seconds=args.commit_every)
    print(f"run complete: {run.path}")
    _print_losses(run)
    return 0


def _print_losses(run):
    loss = np.asarray(run.loss[:, -1])
    print(f"final loss per instance (step {int(run.steps[-1])}): "
          + ", ".join(f"{v:.4g}" for v in loss))


def cmd_info(args) -> int:
    run = load_run(args.run, allow_incomplete=True)
    m, c = run.manifest, run.config
    print(f"run:         {run.path}")
    print(f"status:      {m['status']}" + (f" ({m['reason']})" if m.get("reason") else ""))
    print(f"network:     {run.net!r}, init={c.model.init}")
    print(f"data:        target={c.data.target}, n={c.data.n}, x_range={list(c.data.x_range)}, "
          f"seed={c.data.seed}")
    t = c.train
    opt = t.optimizer + (f" ({t.adam_variant})" if t.optimizer == "adam" else "")
    print(f"training:    {t.instances} instance(s), {opt}, lr={t.lr}, dtype={t.dtype}, seed={t.seed}")
    print(f"progress:    {m['checkpoints_written']}/{m['checkpoints_total']} checkpoints, "
          f"step {m['steps_done']}/{m['steps_total']}")
    if m.get("diverged"):
        print("diverged:    " + "; ".join(f"instance {d['instance']} at step {d['step']}"
                                          for d in m["diverged"]))
    print(f"versions:    " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    if len(run.steps):
        _print_losses(run)
    return 0


def cmd_study(args) -> int:
    from pathlib import Path

    from .study import STUDIES, obtain_run, study_module
    if args.list or not args.name:
        for name, (modules, what) in STUDIES.items():
            print(f"{name:14s} {what}  [{', '.join(modules)}]")
        return 0
    if args.name not in STUDIES:
        from .model import unknown_name_message
        raise ConfigError(unknown_name_message("study", args.name, STUDIES))
    modules = [study_module(m) for m in STUDIES[args.name][0]]
    out = Path(args.out or Path("out") / args.name)
    progress = False if args.no_progress else None
    if args.run:
        if args.preset or args.config or args.set:
            raise ConfigError("--run analyses an existing run; it takes no --preset, --config or --set")
        _study_one(args.name, modules, load_run(args.run), out)
        return 0
    if hasattr(modules[0], "run_all") and not (args.preset or args.config or args.set):
        return _study_many(args.name, modules[0], out, progress, args.scale)
    defaults = getattr(modules[0], "DEFAULT_PRESETS", None)
    if defaults and len(defaults) > 1 and not (args.preset or args.config or args.set):
        from .train import resolve_config
        verdicts = {}
        for name in defaults:  # validate every config before training any
            resolve_config(name)
        for name in defaults:
            run = obtain_run(resolve_config(name), out / name / "run", progress=progress)
            verdicts[name] = _study_one(args.name, modules, run, out / name)
        _write_comparison(out, args.name, verdicts)
        return 0
    if defaults and not (args.preset or args.config):
        args.preset = defaults[0]
    cfg = _config_from_args(args)
    if args.scale != 1.0:
        if not args.scale > 0:
            raise ConfigError(f"--scale must be a number > 0, got {args.scale!r}")
        cfg = cfg.with_overrides([f"train.steps={max(1, int(round(cfg.train.steps * args.scale)))}"])
    run = obtain_run(cfg, out / "run", progress=progress)
    _study_one(args.name, modules, run, out)
    return 0


def _study_many(name, module, out, progress, scale=1.0):
    """A study over several runs of its own making (e.g. one ensemble per depth)."""
    import time

    from .study import write_meta
    if not (scale > 0 and scale == scale):
        raise ConfigError(f"--scale must be a number > 0, got {scale!r}")
    out.mkdir(parents=True, exist_ok=True)
    results = module.run_all(out, progress=progress, scale=scale)
    t0 = time.perf_counter()
    written = module.plot(results, out)
    runs = results["runs"]
    write_meta(out, runs[-1], name, {"modules": [module.NAME],
                                      "run_dirs": [str(r.path.resolve()) for r in runs]})
    print(f"{module.NAME}: figures in {time.perf_counter() - t0:.1f} s; {len(written)} files in {out}/")
    print(f"summary: {out / 'summary.md'}  (verdict: {results['summary']['verdict']})")
    return 0


def _study_one(name, modules, run, out):
    """Run the study modules on one run; return the verdict (if any)."""
    import json
    import time

    from .study import write_meta
    out.mkdir(parents=True, exist_ok=True)
    healthy = run.healthy_instances()
    if healthy.size < run.n_instances:
        dropped = sorted(set(range(run.n_instances)) - set(healthy.tolist()))
        print(f"leaving out diverged instance(s) {dropped} of {run.path}")
        run = run.select_instances(healthy)
    written = []
    for module in modules:
        t0 = time.perf_counter()
        results = module.analyse(run) if hasattr(module, "analyse") else module.analyse_runs({run.net.n_layers - 1: run})
        written += module.plot(results, out)
        print(f"{module.NAME}: done in {time.perf_counter() - t0:.1f} s")
    write_meta(out, run, name, {"modules": [m.NAME for m in modules]})
    print(f"figures ({len(written)} files) and data in {out}/")
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        print(f"summary: {out / 'summary.md'}  (verdict: {summary.get('verdict')})")
        return summary
    return None


def _write_comparison(out, name, summaries):
    """A top-level summary.md/json naming each preset's verdict, for studies run on several presets."""
    from .study import write_json
    write_json(out / "summary.json", {name: {"verdict": s.get("verdict"), "verdict_reason": s.get("verdict_reason"),
                                             "summary": f"{name}/summary.md"}
                                      for name, s in summaries.items() if s})
    lines = [f"# Study {name}: verdicts per preset", ""]
    for preset_name, s in summaries.items():
        if s:
            lines += [f"## {preset_name} (`{preset_name}/summary.md`)", "",
                      f"**{s.get('verdict')}**: {s.get('verdict_reason')}", ""]
    verdicts = {s.get("verdict") for s in summaries.values() if s}
    lines.append("The presets agree." if len(verdicts) == 1 else
                 "The presets disagree: the answer depends on the network (see each summary).")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"comparison: {out / 'summary.md'}")


def cmd_sweep(args) -> int:
    import time

    from .sweep import expand, read_sweep, run_sweep
    base, grid = read_sweep(args.sweep)
    runs = expand(base, grid)  # validates every run's configuration before anything starts
    if args.dry_run:
        from .train import Ensemble, build_net, disk_bytes, initial_params, training_data
        cfg = runs[0][1]
        net = build_net(cfg)
        x, y, _, _ = training_data(cfg, net)
        ens = Ensemble(net, cfg.train, x, y, initial_params(cfg, net))
        ens.run(2)  # compile / load the cache outside the timing
        t0 = time.perf_counter()
        ens.run(50)
        per_step = (time.perf_counter() - t0) / 50
        total_steps = sum(c.train.steps * c.train.instances / cfg.train.instances for _, c in runs)
        workers = args.workers or os.cpu_count() or 1
        disk = sum(disk_bytes(c, build_net(c)) for _, c in runs)
        print(f"{len(runs)} runs over {', '.join(grid)}")
        print(f"disk space: {disk / 2**20:.1f} MiB")
        print(f"time estimate: {total_steps * per_step / workers / 60:.1f} min on {workers} worker(s) "
              f"(calibrated on run 0: {per_step * 1e6:.0f} us per step; other sizes scale roughly with "
              "parameters x points)")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    rows = run_sweep(args.sweep, args.out, workers=args.workers, scheduler=args.scheduler,
                     dask_local=args.dask_local)
    print(f"{len(rows)} runs; summary: {Path(args.out) / 'summary.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="mlpsim", description="Reproducible small-network experiments.")
    p.add_argument("--version", action="version", version=f"mlpsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an ensemble and write a run directory")
    t.add_argument("--preset", help=f"named configuration: {', '.join(PRESETS)} (default: seed)")
    t.add_argument("--config", help="TOML configuration file")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one key; the value is parsed as TOML (repeatable)")
    t.add_argument("--out", help="run directory to write")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and disk space")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--threads", type=int, help="numba threads (results do not depend on it)")
    t.add_argument("--commit-every", type=float, default=2.0, metavar="SECONDS",
                   help="how often progress is made durable (default 2)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("study", help="run a study: train or reuse its run, write figures and a summary")
    s.add_argument("name", nargs="?", help="study name (see --list)")
    s.add_argument("--list", action="store_true", help="list the studies")
    s.add_argument("--out", help="output folder (default out/NAME); the run goes to OUT/run")
    s.add_argument("--preset", help="configuration preset (default: seed)")
    s.add_argument("--config", help="TOML configuration file")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one key (repeatable)")
    s.add_argument("--run", help="analyse this existing, complete run directory instead")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--scale", type=float, default=1.0,
                   help="for studies that train many runs: multiply their size (steps, instances)")
    s.set_defaults(func=cmd_study)

    w = sub.add_parser("sweep", help="run a grid of configurations (each a run directory)")
    w.add_argument("sweep", help="sweep TOML file with [base] and [grid]")
    w.add_argument("--out", help="sweep folder (runs, summary.csv)")
    w.add_argument("--workers", type=int, help="parallel worker processes (default: one per core)")
    w.add_argument("--dry-run", action="store_true", help="number of runs, disk space, time estimate")
    w.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on a running Dask cluster")
    w.add_argument("--dask-local", type=int, metavar="N", help="start a Dask LocalCluster of N workers")
    w.set_defaults(func=cmd_sweep)

    i = sub.add_parser("info", help="describe a run directory")
    i.add_argument("run", help="run directory")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    from .train import TrainingDiverged
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, RunError) as exc:
        print(f"mlpsim: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"mlpsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlpsim: interrupted; progress is saved, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
