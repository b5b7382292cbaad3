"""The ``mlpsim`` command line.

    mlpsim train --preset seed --out runs/seed      # the notebook's experiment
    mlpsim train --config my.toml --set train.steps=2000 --out runs/short
    mlpsim train --preset seed --dry-run            # resolved config and disk space
    mlpsim info runs/seed                           # status, progress, final losses
    mlpsim study seed --out out/seed                # the seed study: figures and verdicts
    mlpsim study --list                             # the studies
    mlpsim verdict rank_decrease --run runs/x       # judge one claim on one run
    mlpsim verdict --list                           # the claims: measure, null, test, rule

Exit status: 0 success, 1 training failed (diverged), 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from .config import PRESETS, Config, ConfigError
from .errors import ClaimError, unknown_name_message
from .store import RunError, load_run


def _config_from_args(args) -> Config:
    from .config import preset
    if args.preset is not None and args.config is not None:
        raise ConfigError("give either --preset or --config, not both")
    if (getattr(args, "resume", False) and args.preset is None and args.config is None and not args.set
            and getattr(args, "out", None)):
        from .store import inspect_run
        return inspect_run(args.out, arrays=False)[1]  # `train --resume --out DIR`: the run's own configuration
    cfg = Config.from_toml(args.config) if args.config is not None else preset(
        "seed" if args.preset is None else args.preset)
    return cfg.with_overrides(args.set) if args.set else cfg


def cmd_train(args) -> int:
    from .store import check_memory, fmt_bytes
    from .training import (
        build_net,
        check_threads,
        estimate_seconds,
        initial_params,
        train,
        training_data,
    )
    cfg = _config_from_args(args)
    check_threads(args.threads)  # before a dry run prints anything
    if args.dry_run:
        need = check_memory(cfg, args.threads)  # refuses what cannot fit, before building anything
        net = build_net(cfg)
        initial_params(cfg, net)  # files named by the configuration are read before anything is printed
        training_data(cfg, net)
        print(cfg.to_toml())
        t = cfg.train
        print(f"# network: {net!r}")  # the checkpoint count is computed, not listed: steps may be absurd
        print(f"# {t.instances} instance(s) x {t.steps} steps, {need['checkpoints']} checkpoints "
              f"(steps 0 .. {t.steps})")
        print(f"# disk space: {fmt_bytes(need['disk'])}; memory: about {fmt_bytes(need['memory'])}")
        seconds, per_step = estimate_seconds(cfg, threads=args.threads)
        print(f"# time: about {_fmt_seconds(seconds)} on this machine ({per_step * 1e6:.0f} us per step for "
              f"all instances, measured now; compiling the kernels the first time adds about a minute)")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    run = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                progress=False if args.quiet else None, threads=args.threads,
                commit_seconds=args.commit_every)
    print(f"run complete: {run.path}")
    _print_losses(run)
    return 0


def _fmt_seconds(s: float) -> str:
    from .progress import fmt_seconds
    return fmt_seconds(s)


def _print_losses(run):
    loss = np.asarray(run.loss[:, -1])
    print(f"final loss per instance (step {int(run.steps[-1])}): "
          + ", ".join(f"{v:.4g}" for v in loss))


def cmd_info(args) -> int:
    from .store import lock_holder
    run = load_run(args.run, allow_incomplete=True)
    m, c = run.manifest, run.config
    status = m["status"]
    holder = lock_holder(run.path)
    if status == "running":
        status = (f"running (written by process {holder} now)" if holder else
                  "interrupted (no process holds the lock: the writer stopped without committing; "
                  "continue it with --resume)")
    elif holder:
        status += f" (process {holder} holds the lock)"
    print(f"run:         {run.path}")
    print(f"status:      {status}" + (f" ({m['reason']})" if m.get("reason") else ""))
    print(f"network:     {run.net!r}, init={c.model.init}")
    print(f"data:        target={c.data.target}, n={c.data.n}, x_range={list(c.data.x_range)}, "
          f"seed={c.data.seed}")
    t = c.train
    opt = t.optimizer + (f" ({t.adam_variant})" if t.optimizer == "adam" else "")
    print(f"training:    {t.instances} instance(s), {opt}, lr={t.lr}, dtype={t.dtype}, seed={t.seed}")
    print(f"progress:    {m['checkpoints_written']}/{m['checkpoints_total']} checkpoints, "
          f"step {m['steps_done']}/{m['steps_total']}")
    if m.get("diverged"):
        print("diverged:    " + "; ".join(f"instance {d.get('instance')} at step {d.get('step')}"
                                          for d in m["diverged"]))
    print("versions:    " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    if len(run.steps):
        _print_losses(run)
    return 0


def cmd_study(args) -> int:
    from .study import STUDIES, run_study
    if args.list or not args.name:
        from .study import speed_factor, trained_runs
        factor = speed_factor()
        print("study          ~minutes  runs trained  question")
        for name, info in STUDIES.items():
            done, total = trained_runs(name, args.runs)
            print(f"{name:14s} {float(info.minutes) * factor:8.0f}  {f'{done}/{total}':>12s}  {info.question}")
        print(f"(minutes: wall time on 2 cores with nothing trained yet, measured on the reference machine and "
              f"scaled by a seed step timed now: this machine trains {1 / factor:.2f}x as fast; "
              "trained runs are reused)")
        return 0
    if args.name not in STUDIES:
        raise ConfigError(unknown_name_message("study", args.name, STUDIES))
    out = Path(args.out or Path("out") / args.name)
    progress = False if args.quiet else None
    runs = configs = None
    if args.run:
        if args.preset or args.config or args.set:
            raise ConfigError("--run analyses an existing run; it takes no --preset, --config or --set")
        runs = {Path(args.run).name or "run": load_run(args.run)}
    elif args.preset or args.config:
        from .study import scaled
        label = args.preset or Path(args.config).stem
        configs = {label: scaled(_config_from_args(args), args.scale)}
    elif args.set:  # --set alone changes every run the study trains by default
        from .study import default_configs
        configs = {label: cfg.with_overrides(args.set)
                   for label, cfg in default_configs(args.name, args.scale).items()}
    result = run_study(args.name, out, runs=runs, configs=configs, scale=args.scale, runs_dir=args.runs,
                       progress=progress)
    for v in result["verdicts"]:
        print(v.headline() + (f"  [{v.label}]" if v.label else ""))
    print(f"figures ({len(result['paths'])} files) and data in {out}/; summary: {out / 'summary.md'}")
    for page in result.get("explorers", []):
        print(f"explorer: {page}")
    if not args.no_report:
        from .explore import build_report
        # another study's broken folder beside this one must not fail this study: say so and go on
        report = build_report(out.parent / "report", [out.parent], log=lambda *a: None,
                              skip=lambda folder, why: print(f"mlpsim: the report leaves out {folder}: {why}",
                                                             file=sys.stderr))
        print(f"report: {report['index']} (every study output under {out.parent}/)")
    return 0


def cmd_explore(args) -> int:
    from .explore import build_explorer
    info = build_explorer(args.run, args.out, max_mb=args.max_mb)
    print(f"explorer: {info['path']} ({info['bytes'] / 1e6:.1f} MB; {info['embedded']} of {info['checkpoints']} "
          f"checkpoints embedded; run {info['status']})")
    return 0


def cmd_report(args) -> int:
    from .explore import build_report
    report = build_report(args.out, args.sources or ["out"])
    print(f"report: {report['index']} ({len(report['outputs'])} study outputs); "
          f"the seed notebook walk-through: {report['notebook']}")
    return 0


def cmd_verdict(args) -> int:
    import json

    from . import claims
    if args.list or (not args.name and not args.table):
        for name in claims.claim_names():
            print(claims.describe(name))
            print()
        return 0
    if args.table:
        from .study import verdict_table_from_outputs, write_table_into
        table = verdict_table_from_outputs(args.table)
        if args.into:
            write_table_into(args.into, table)
            print(f"verdict table written into {args.into}")
        else:
            print(table)
        return 0
    if args.into:
        raise ConfigError("--into FILE.md writes a verdict table: use it with --table OUT...")
    if not args.run:
        raise ConfigError("--run DIR is required: the run directory to judge")
    claims.get_claim(args.name)  # an unknown claim is refused before the run is opened
    v = claims.evaluate(args.name, load_run(args.run), seed=args.seed)
    if args.json:
        print(json.dumps(v.to_dict(), indent=2))
    else:
        print(v.headline())
        print(v.reason)
    return 0


def cmd_sweep(args) -> int:

    from .sweep import expand, read_sweep, run_sweep
    base, grid = read_sweep(args.sweep)
    runs = expand(base, grid)  # validates every run's configuration before anything starts
    if args.dry_run:
        from .store import check_memory, fmt_bytes
        from .training import estimate_seconds
        disk = sum(check_memory(c, 1)["disk"] for _, c in runs)
        seconds, per_step = estimate_seconds(runs[0][1], threads=1)
        scale = sum(c.train.steps * c.train.instances for _, c in runs) / (
            runs[0][1].train.steps * runs[0][1].train.instances)
        workers = args.workers or os.cpu_count() or 1
        print(f"{len(runs)} runs over {', '.join(grid)}")
        print(f"disk space: {fmt_bytes(disk)}")
        print(f"time estimate: {_fmt_seconds(seconds * scale / workers)} on {workers} worker(s) "
              f"(calibrated on run 0: {per_step * 1e6:.0f} us per step; other sizes scale roughly with "
              "parameters x points)")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    rows = run_sweep(args.sweep, args.out, workers=args.workers, scheduler=args.scheduler,
                     dask_local=args.dask_local)
    failed = sorted(r["run"] for r in rows if r["status"].startswith("failed"))
    complete = sum(r["status"] == "complete" for r in rows)
    print(f"{len(rows)} runs, {complete} complete; summary: {Path(args.out) / 'summary.csv'}")
    if failed:  # the others are kept; the exit status must not say all went well
        print(f"mlpsim: {len(failed)} run(s) failed (diverged or stopped by an error; the reason is in "
              f"summary.csv): {', '.join(failed)}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def cmd_atlas(args) -> int:
    from .atlas import ANSWER_MARKERS, SIZES, answers_table, run_atlas
    from .store import fmt_bytes
    if args.answers:
        from .study import write_table_into
        table = answers_table(args.answers)
        if args.into:
            write_table_into(args.into, table, ANSWER_MARKERS)
            print(f"answers written into {args.into}")
        else:
            print(table)
        return 0
    if args.into:
        raise ConfigError("--into FILE.md writes the answers table: use it with --answers OUT")
    if not args.out and not args.dry_run:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    if args.size not in SIZES:
        raise ConfigError(unknown_name_message("atlas size", args.size, SIZES))
    from .atlas import CONDITION_KEYS
    from .config import preset
    fixed = [a.split("=", 1)[0].strip() for a in args.set if a.split("=", 1)[0].strip() in CONDITION_KEYS]
    if fixed:
        raise ConfigError(f"atlas --set {fixed[0]}: every condition of the atlas sets it (its factors and --size "
                          f"do); --set can change only the other keys of the seed configuration")
    base = preset("seed").with_overrides(args.set) if args.set else None
    result = run_atlas(args.out, size=args.size, only=args.only, workers=args.workers, scheduler=args.scheduler,
                       dask_local=args.dask_local, dry_run=args.dry_run, seed=args.seed, base=base)
    if args.dry_run:
        built, est = result["built"], result["estimate"]
        for c, cfg in built:
            levels = ", ".join(f"{k}={v}" for k, v in c.levels.items())
            print(f"{c.name:22s} {c.kind:13s} {levels}")
        size = SIZES[args.size]
        print(f"# {len(built)} conditions x {size.instances} instances, {size.steps} steps each "
              f"({args.size} size): {len(built)} run directories")
        print(f"# disk space: {fmt_bytes(est['disk'])}; time: about {_fmt_seconds(est['seconds'])} "
              f"(calibrated on this machine, training and analysis, on the executor's workers)")
        if est["compile_seconds"] > 5:
            print(f"# this dry run compiled the kernels first ({_fmt_seconds(est['compile_seconds'])}, once; "
                  "cached for the atlas itself)")
        return 0
    found = result["regularities"]
    print(f"{sum(r['label'] == 'generic' for r in found)} generic, {sum(r['label'] == 'common' for r in found)} "
          f"common, {sum(r['label'] == 'not generic' for r in found)} not generic regularities; "
          f"summary: {Path(args.out) / 'summary.md'}")
    if result["missing"]:
        print(f"conditions not measured (yet): {', '.join(result['missing'])}; run again to continue")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"need a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"need a whole number >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"need a whole number >= 0, got {text!r}")
    return value


def cmd_bench(args) -> int:
    from .bench import run
    run(seconds=args.seconds, rounds=args.rounds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="mlpsim", description="Reproducible small-network experiments.")
    p.add_argument("--version", action="version", version=f"mlpsim {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help="show the full Python traceback of an error (also: MLPSIM_TRACEBACK=1)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an ensemble and write a run directory")
    t.add_argument("--preset", help=f"named configuration: {', '.join(PRESETS)} (default: seed)")
    t.add_argument("--config", help="TOML configuration file")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one key; the value is parsed as TOML (repeatable)")
    t.add_argument("--out", help="run directory to write")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (with its own configuration unless "
                   "--preset, --config or --set is given)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and disk space")
    t.add_argument("--quiet", "--no-progress", action="store_true", dest="quiet",
                   help="no progress output (default: a bar on a terminal, plain lines in a log)")
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
                   help="override one key of the study's runs, or of --preset/--config (repeatable)")
    s.add_argument("--run", help="analyse this existing, complete run directory instead")
    s.add_argument("--quiet", "--no-progress", action="store_true", dest="quiet",
                   help="no progress output (default: a bar on a terminal, plain lines in a log)")
    s.add_argument("--scale", type=float, default=1.0,
                   help="multiply the training steps of the study's runs (e.g. 0.1 for a quick look)")
    s.add_argument("--runs", metavar="DIR",
                   help="where runs live (found by their configuration's hash; default $MLPSIM_RUNS "
                        "or ~/.cache/mlpsim/runs)")
    s.add_argument("--no-report", action="store_true",
                   help="do not rebuild the report site (OUT/../report) at the end")
    s.set_defaults(func=cmd_study)

    x = sub.add_parser("explore", help="write a run's explorer: one HTML page, offline, computed from its weights")
    x.add_argument("--run", required=True, help="a run directory (a running or failed one shows what it has)")
    x.add_argument("--out", required=True, help="the HTML file to write")
    x.add_argument("--max-mb", type=float, default=4.0,
                   help="size budget of the page (default 4): checkpoints are thinned evenly to fit")
    x.set_defaults(func=cmd_explore)

    r = sub.add_parser("report", help="one site of every study output under a folder, and the notebook walk-through")
    r.add_argument("--out", required=True, help="the report folder to write")
    r.add_argument("sources", nargs="*", help="folders to search for study outputs (default: out)")
    r.set_defaults(func=cmd_report)

    v = sub.add_parser("verdict", help="judge a claim on a run (see --list)")
    v.add_argument("name", nargs="?", help="claim name")
    v.add_argument("--run", help="a complete run directory")
    v.add_argument("--list", action="store_true", help="list the claims with their measure, null, test and rule")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.add_argument("--seed", type=_seed, default=0, help="seed of the randomized nulls (default 0)")
    v.add_argument("--table", nargs="+", metavar="OUT",
                   help="print a markdown table of the verdicts in these study output folders")
    v.add_argument("--into", metavar="FILE.md",
                   help="with --table: write the table between the verdict markers of this file (the README)")
    v.set_defaults(func=cmd_verdict)

    w = sub.add_parser("sweep", help="run a grid of configurations (each a run directory)")
    w.add_argument("sweep", help="sweep TOML file with [base] and [grid]")
    w.add_argument("--out", help="sweep folder (runs, summary.csv)")
    w.add_argument("--workers", type=int, help="parallel worker processes (default: one per core)")
    w.add_argument("--dry-run", action="store_true", help="number of runs, disk space, time estimate")
    w.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on a running Dask cluster")
    w.add_argument("--dask-local", type=int, metavar="N", help="start a Dask LocalCluster of N workers")
    w.set_defaults(func=cmd_sweep)

    a = sub.add_parser("atlas", help="which regularities are generic? many conditions, judged together")
    a.add_argument("--out", help="atlas folder (run directories, records, cells.csv, summary.md)")
    a.add_argument("--size", default="default", help="tiny (seconds) | default (about an hour) | large (a cluster)")
    a.add_argument("--only", action="append", metavar="FACTOR[=LEVEL,...]",
                   help="restrict the design to these factors (and levels); repeatable")
    a.add_argument("--seed", type=_seed, default=0, help="seed of the sampled combinations (default 0)")
    a.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change the seed configuration the factors vary around (repeatable)")
    a.add_argument("--dry-run", action="store_true", help="the conditions, runs, disk and a calibrated time estimate")
    a.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    a.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on a running Dask cluster")
    a.add_argument("--dask-local", type=int, metavar="N", help="start a Dask LocalCluster of N workers")
    a.add_argument("--answers", metavar="OUT", help="print the answers table of a finished atlas folder")
    a.add_argument("--into", metavar="FILE.md", help="with --answers: write it between the answers markers")
    a.set_defaults(func=cmd_atlas)

    b = sub.add_parser("bench", help="this machine's GEMM peak and mlpsim's speed as a share of it (< 1 min)")
    b.add_argument("--seconds", type=_positive_float, default=2.0,
                   help="time per seed-step figure, over all rounds (default 2)")
    b.add_argument("--rounds", type=_positive_int, default=3,
                   help="interleaved rounds of GEMM peak and seed steps; each figure is its best round (default 3)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="describe a run directory")
    i.add_argument("run", help="run directory")
    i.set_defaults(func=cmd_info)
    return p


#: Exit status of the command line (also in the README).
EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_IO, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for any tool whose reader left (`| head`)


def main(argv=None) -> int:
    """Run the command line; every error a user (or a full disk) can cause ends in one line
    ``mlpsim: error: ...`` and a documented exit status. ``--traceback`` (or the environment
    variable ``MLPSIM_TRACEBACK=1``) shows the full trace instead."""
    debug = os.environ.get("MLPSIM_TRACEBACK") == "1"
    args = None
    try:
        from .store import RunLocked
        from .training import TrainingDiverged
        args = build_parser().parse_args(argv)
        debug = debug or args.traceback
        return args.func(args)
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, RunLocked):
            code, text = EXIT_LOCKED, str(exc)
        elif isinstance(exc, (ConfigError, RunError, ClaimError)):
            code, text = EXIT_BAD_INPUT, str(exc)
        elif isinstance(exc, BrokenPipeError):  # the reader of our output left: nobody to tell
            try:  # and Python's own flush at exit must not fail on the closed pipe either
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            return EXIT_PIPE_CLOSED
        elif isinstance(exc, TrainingDiverged):
            print(f"mlpsim: {exc}", file=sys.stderr)
            return EXIT_DIVERGED
        elif isinstance(exc, OSError):
            where = f": {exc.filename}" if exc.filename else ""
            code, text = EXIT_IO, f"{exc.strerror or exc}{where}"
        elif isinstance(exc, MemoryError):
            code, text = EXIT_IO, "out of memory; use fewer instances, a smaller network or fewer data points"
        else:
            raise
        print(f"mlpsim: error: {text}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"mlpsim: interrupted; {_resume_hint(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _resume_hint(args) -> str:
    """The command that continues what was interrupted."""
    if args is None:
        return "nothing was done"
    argv = [a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")]
    if args.command == "train":
        if not getattr(args, "out", None):
            return "nothing was written"
        manifest = Path(args.out) / "manifest.json"
        try:
            saved = manifest.exists() and json.loads(manifest.read_text()).get("checkpoints_written", 0) > 0
        except (OSError, ValueError):
            saved = False
        if not saved:
            return "nothing was committed yet; run the same command again to start: mlpsim " + " ".join(argv)
        return "progress is saved; continue with: mlpsim " + " ".join(argv + ["--resume"])
    if args.command in ("study", "sweep", "atlas"):
        return "finished runs are kept; run the same command again to continue: mlpsim " + " ".join(argv)
    return "nothing was written"


if __name__ == "__main__":
    sys.exit(main())
