"""Running studies: the registry, their runs, and how what they found is written down.

A study is a script ``studies/NN_topic.py`` (installed as ``mlpsim.studies``)
that reads like a lab notebook. It holds only its question:

===========================  ==================================================
``configs(scale=1.0)``       ``{label: Config}``: the runs it needs by default
``analyse(runs)``            ``runs`` is ``{label: Run}`` (in that order);
                             returns the results (a dict)
``verdicts(results)``        ``[Verdict]`` from :mod:`mlpsim.claims` (or none)
``plot(results, out)``       writes figures and the data behind them; returns
                             the paths
``notes(results)``           (optional) findings in words, markdown lines
===========================  ==================================================

Everything else lives here: the registry behind ``mlpsim study NAME``; the
run store lookup (a run lives in the runs folder under its configuration's
hash and the engine version, so every study that needs the seed run finds the one
already trained);
``meta.json``; one writer for ``summary.md`` / ``summary.json``; links from
the study's folder to the runs it used.

The runs folder: ``--runs DIR`` on the command line, else the environment
variable ``MLPSIM_RUNS``, else ``$XDG_CACHE_HOME/mlpsim/runs`` (by default
``~/.cache/mlpsim/runs``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config import Config, ConfigError
from .errors import unknown_name_message
from .store import (atomic_write_bytes, atomic_write_json, check_output_folder, n_checkpoints, now,
                    to_jsonable, versions)
from .training import build_net, obtain_run


@dataclass(frozen=True)
class StudyInfo:
    """A registered study: its modules (run in order), its question, how long it takes, and what
    its runs must be (checked by :func:`run_study` before anything is trained or analysed: a run
    that does not fit would otherwise fail deep in the analysis, after the training)."""

    modules: tuple
    question: str
    minutes: str  # wall time on 2 cores with nothing trained yet (measured; see the README)
    #: A study that compares a grid of its own runs: each pattern must match a run's label, and
    #: each label a pattern; a single --run, --preset or --config cannot stand in for the grid.
    grid: tuple = ()
    #: Instances each run needs (correlations across instances need at least 3).
    min_instances: int = 1
    #: Checkpoints each run needs (correlations of updates across time need 3 updates).
    min_checkpoints: int = 1
    #: ``(what the network needs, in words; test on the MLP)``.
    network: tuple = ()


def _has_hidden_layer(net) -> bool:
    return net.n_layers >= 2


def _has_weight_matrix_of_two(net) -> bool:
    return any(net.layout[2 * l].size >= 2 for l in range(net.n_layers))


#: What the studies' analyses need of a network (``StudyInfo.network``).
HIDDEN_LAYER = ("a hidden layer", _has_hidden_layer)
MATRIX_OF_TWO = ("a weight matrix of at least 2 weights (weights are standardized within each matrix)",
                 _has_weight_matrix_of_two)
THREE_PARAMETERS = ("at least 3 trainable parameters (the greedy edits change 3)",
                    lambda net: int(net.free.sum()) >= 3)


#: The ``minutes`` of :data:`STUDIES` were measured on a 2-core Intel Xeon (model 207,
#: AVX-512), whose seed step (1 net, 1 thread, float64) took this long; ``study
#: --list`` scales them by the same step timed on the machine it runs on.
REFERENCE_STEP_SECONDS = 272e-6


def speed_factor() -> float:
    """How much slower than the reference machine this one trains (a seed step timed now)."""
    from .bench import seed_step
    return seed_step(1, 1, seconds=0.3)["seconds_per_step"] / REFERENCE_STEP_SECONDS


def trained_runs(name: str, runs_dir=None) -> tuple:
    """``(complete, total)``: how many of study ``name``'s default runs the runs folder holds, finished."""
    from .store import RunError, read_json
    configs = default_configs(name)
    done = 0
    for cfg in configs.values():
        manifest = run_path(cfg, runs_dir) / "manifest.json"
        try:
            done += read_json(manifest).get("status") == "complete"
        except (OSError, RunError):
            pass  # not trained, or not finished
    return done, len(configs)


#: ``mlpsim study NAME`` -> what it runs.
STUDIES = {
    "seed": StudyInfo(("01_seed_notebook", "02_weight_distribution"),
                      "the notebook's figures; does the weight distribution broaden, and do its tails grow? "
                      "(seed network, 20 instances, float64 and float32)", "4", network=(MATRIX_OF_TWO,)),
    "distribution": StudyInfo(("02_weight_distribution",),
                              "per-layer, normalized, trajectory and tail analyses of any run, with the verdicts "
                              "on broadening and longer tails", "3", network=(MATRIX_OF_TWO,)),
    "rank": StudyInfo(("03_rank",), "does the rank of the weight matrices fall during training? "
                      "(seed and wide networks)", "7"),
    "correlations": StudyInfo(("04_correlations",), "are weight correlations exponentially damped with network "
                              "distance? (depths 2-8, 64 aligned networks each)", "3", min_instances=3,
                              min_checkpoints=4, network=(HIDDEN_LAYER,)),
    "perturbation": StudyInfo(("05_perturbation",), "does adversarially editing a few weights change what the "
                              "network computes? (seed and wide networks)", "10", network=(THREE_PARAMETERS,)),
    "width-depth": StudyInfo(("06_width_depth",), "how do weight changes scale with width and depth? "
                             "(lazy regime?)", "2", grid=(r"width \d+", r"depth \d+")),
    "ensembles": StudyInfo(("07_ensembles_vs_single",), "at a fixed parameter budget: an ensemble of 8 small "
                           "nets or one larger?", "2", grid=("small", "large")),
    "targets": StudyInfo(("08_targets",), "which findings (broadening, rank loss, fragility) hold for every "
                         "target?", "2"),
    "mesh": StudyInfo(("09_mesh",), "grid networks: can one visually see training? (mesh preset)", "1",
                      network=(HIDDEN_LAYER,)),
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


# ----------------------------------------------------------------- the run store
def default_runs_dir() -> Path:
    """Where runs live unless told otherwise (see the module docstring)."""
    if os.environ.get("MLPSIM_RUNS"):
        return Path(os.environ["MLPSIM_RUNS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mlpsim" / "runs"


def run_path(config: Config, runs_dir=None) -> Path:
    """The folder of ``config``'s run in the runs folder: named by its configuration's
    hash and the engine version (a new version trains anew: its last bits differ)."""
    from .kernels import ENGINE_VERSION
    return Path(runs_dir or default_runs_dir()) / f"{config.sha256()[:16]}-engine{ENGINE_VERSION}"


def find_or_train(config: Config, runs_dir=None, progress=None, log=print):
    """:func:`obtain_run` in the runs folder, at the place named by ``config``'s hash."""
    return obtain_run(config, run_path(config, runs_dir), progress=progress, log=log)


# ----------------------------------------------------------------- running a study
#: Studies of at most this many runs get an explorer page per run (``explorer-<label>.html``).
MAX_EXPLORERS = 4


def run_study(name: str, out, *, runs=None, configs=None, scale: float = 1.0, runs_dir=None,
              progress=None, log=print, explore: bool = True) -> dict:
    """Run study ``name`` into the folder ``out``.

    ``runs`` (``{label: Run}``) analyses existing runs; else ``configs``
    (``{label: Config}``), else the study's own :func:`configs` at ``scale``,
    are found in the runs folder or trained (every configuration is validated
    before any training starts). Returns ``{"verdicts", "paths", "runs"}``.
    """
    if name not in STUDIES:
        raise ConfigError(unknown_name_message("study", name, STUDIES))
    if not (isinstance(scale, (int, float)) and scale > 0 and np.isfinite(scale)):
        raise ConfigError(f"--scale must be a number > 0, got {scale!r}")
    info = STUDIES[name]
    modules = [study_module(m) for m in info.modules]
    out = Path(out)
    check_output_folder(out, "study")
    given = runs is not None
    if runs is None:
        configs = default_configs(name, scale) if configs is None else configs
        _validate(configs)
        check_fit(name, {label: (build_net(cfg), cfg.train.instances, n_checkpoints(cfg.train))
                         for label, cfg in configs.items()})
        from .executor import BatchEta
        from .store import n_params
        runs = {}
        labels = list(configs)  # overall progress: an ETA weighted by each run's arithmetic
        eta = BatchEta(labels, [c.train.steps * c.train.instances * c.data.n * n_params(c.model.widths)
                            for c in configs.values()])
        for i, (label, cfg) in enumerate(configs.items()):
            log(f"[run {i + 1}/{len(configs)}] {label}")
            runs[label] = find_or_train(cfg, runs_dir, progress=progress, log=log)
            log(f"[run {i + 1}/{len(configs)}] {label} ready{eta.tick(label)}")
    else:
        check_fit(name, {label: (run.net, run.n_instances, len(run.steps)) for label, run in runs.items()}, given=True)
    runs = {label: _healthy(run, log) for label, run in runs.items()}
    # diverged instances left out may leave too few
    check_fit(name, {label: (run.net, run.n_instances, len(run.steps)) for label, run in runs.items()}, given,
              healthy=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "summary.md", "meta.json"):  # a failure below must not leave
        (out / stale).unlink(missing_ok=True)                   # an earlier study's summary looking current
    link_runs(out, runs)
    verdicts, paths, notes = [], [], []
    for m in modules:
        t0 = time.perf_counter()
        results = m.analyse(runs)
        verdicts += list(m.verdicts(results)) if hasattr(m, "verdicts") else []
        paths += list(m.plot(results, out))
        notes += list(m.notes(results)) if hasattr(m, "notes") else []
        log(f"{m.NAME}: done in {time.perf_counter() - t0:.1f} s")
    title, question = _title_and_question(modules[-1])
    write_summary(out, name, title, question, verdicts, notes, paths, runs)
    write_meta(out, name, runs, [m.NAME for m in modules])
    explorers = []
    if explore and len(runs) <= MAX_EXPLORERS:
        from .explore import build_explorer
        for label, run in runs.items():
            explorers.append(build_explorer(run.path, out / f"explorer-{_slug(label)}.html")["path"])
    return {"verdicts": verdicts, "paths": paths, "runs": runs, "explorers": explorers}


def default_configs(name: str, scale: float = 1.0) -> dict:
    """``{label: Config}``: the runs study ``name`` trains by default (its modules' ``configs``)."""
    configs = {}
    for m in STUDIES[name].modules:
        configs.update(study_module(m).configs(scale))
    return configs


def check_fit(name: str, runs: dict, given: bool = False, healthy: bool = False):
    """A ConfigError unless the runs ``{label: (net, instances, checkpoints)}`` fit study ``name``
    (:class:`StudyInfo`); ``given``: existing runs (nothing more can be trained into them),
    ``healthy``: the instances counted are those left after the diverged ones."""
    info = STUDIES[name]
    labels = [str(label) for label in runs]
    matches = [[re.fullmatch(p, label) is not None for p in info.grid] for label in labels]  # (labels, patterns)
    if info.grid and not (all(map(any, matches)) and all(map(any, zip(*matches)))):
        wanted = " and ".join(repr(p.replace(r"\d+", "N")) for p in info.grid)
        raise ConfigError(
            f"study {name!r} compares a grid of its own runs (labelled {wanted}), got "
            f"{', '.join(map(repr, labels))}: it cannot analyse a single --run, --preset or --config; "
            "change its runs with --set SECTION.KEY=VALUE or --scale instead")
    for label, (net, instances, checkpoints) in runs.items():
        if instances < info.min_instances:
            left = " healthy (not diverged)" if healthy else ""
            fix = ("give a run with more instances" if given else
                   f"train more, e.g. --set train.instances={max(info.min_instances, VERDICT_INSTANCES)}")
            raise ConfigError(f"study {name!r} needs at least {info.min_instances} instances per run; run "
                              f"{label!r} has {instances}{left}: {fix}")
        if checkpoints < info.min_checkpoints:
            fix = ("give a run with more checkpoints" if given else
                   "keep more, with a smaller --set train.checkpoint_every=N")
            raise ConfigError(f"study {name!r} needs at least {info.min_checkpoints} checkpoints per run; run "
                              f"{label!r} has {checkpoints}: {fix}")
        for need, test in info.network:
            if not test(net):
                fix = "give a run of a larger network" if given else "use a larger network (--set model.widths=...)"
                raise ConfigError(f"study {name!r} needs a network with {need}; run {label!r} is "
                                  f"{describe_net(net)}: {fix}")


def _validate(configs: dict):
    from .store import check_memory
    if not configs:
        raise ConfigError("the study has no runs to analyse")
    for label, cfg in configs.items():
        if not isinstance(cfg, Config):
            raise ConfigError(f"run {label!r}: expected a Config, got {type(cfg).__name__}")
        check_memory(cfg)
        build_net(cfg)


def _healthy(run, log):
    healthy = run.healthy_instances()
    if healthy.size < run.n_instances:
        dropped = sorted(set(range(run.n_instances)) - set(healthy.tolist()))
        log(f"leaving out diverged instance(s) {', '.join(map(str, dropped))} of {run.path}")
        return run.select_instances(healthy)
    return run


def link_runs(out: Path, runs: dict):
    """``out/runs/<label>``: a symbolic link to each run used (where the system allows one)."""
    folder = Path(out) / "runs"
    folder.mkdir(exist_ok=True)
    for label, run in runs.items():
        link = folder / _slug(label)
        target = Path(run.path).resolve()
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            if link.is_symlink():
                link.unlink()
            else:
                continue  # a real folder of the user's: leave it
        try:
            link.symlink_to(target, target_is_directory=True)
        except OSError:
            pass  # no symlinks here (some file systems): meta.json still names the run


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(label)) or "run"


def _title_and_question(module) -> tuple:
    doc = (module.__doc__ or "").strip()
    first, _, rest = doc.partition("\n")
    title = first.split(":", 1)[-1].strip() if ":" in first else first
    title = title[:1].upper() + title[1:]
    question = rest.strip().split("\n\n")[0].replace("\n", " ") if rest else ""
    if question.endswith(":"):  # a sentence that introduces the docstring's list: not part of the question
        question = question[:question.rfind(". ") + 1] if ". " in question else ""
    return title, question


def describe_net(net) -> str:
    """A network in words and numbers, e.g. ``1-8-8-8-1 relu, 169 parameters``."""
    masked = sum(m is not None for m in net.masks)
    return (f"{'-'.join(map(str, net.widths))} {net.activation}, {net.n_params} parameters"
            + (f", {masked} masked layers" if masked else ""))


#: Instances that studies ending in a verdict train by default (see mlpsim.claims: each
#: half of the stability check needs about 8 to reach significance after Holm).
VERDICT_INSTANCES = 20


def scaled(config: Config, scale: float) -> Config:
    """``config`` with its steps multiplied by ``scale`` (at least 1; checkpoints thinned to match)."""
    if scale == 1.0:
        return config
    t = config.train
    if not t.steps * scale < 2 ** 62:  # (int() of inf or of 1e300 steps)
        raise ConfigError(f"--scale {scale:g} makes {t.steps * scale:.3g} training steps; give a smaller --scale")
    steps = max(1, int(round(t.steps * scale)))
    return config.with_values({"train.steps": steps, "train.checkpoint_every": max(1, min(t.checkpoint_every, steps)),
                               "train.checkpoint_steps": [s for s in t.checkpoint_steps if s <= steps]})


def plot_each(results, out, plot_run) -> list:
    """``plot_run(r, out, prefix)`` for each run's results in ``results["per_run"]``; files are
    prefixed with the run's label when there is more than one run."""
    paths = []
    many = len(results["per_run"]) > 1
    for label, r in results["per_run"].items():
        paths += plot_run(r, out, f"{label}_" if many else "")
    return paths


def primary(runs: dict):
    """The first run of a study's ``runs``: the one single-run analyses look at."""
    return next(iter(runs.values()))


# ----------------------------------------------------------------- writing down
def write_meta(out, study: str, runs: dict, modules=()):
    """``meta.json``: the study, each run it analysed (folder, config, seeds), versions."""
    meta = {"study": study, "modules": list(modules), "created": now(), "versions": versions(),
            "runs": {label: {"run_dir": str(Path(r.path).resolve()), "config": r.config.to_dict(),
                             "config_sha256": r.manifest["config_sha256"],
                             "instances": [int(i) for i in getattr(r, "instance_ids", range(r.n_instances))],
                             "seeds": {"train": r.config.train.seed, "data": r.config.data.seed}}
                     for label, r in runs.items()}}
    atomic_write_json(Path(out) / "meta.json", to_jsonable(meta))


def write_summary(out, study: str, title: str, question: str, verdicts, notes=(), paths=(), runs=None):
    """``summary.json`` and ``summary.md``: the verdicts with their evidence, the notes, the figures."""
    from .claims import fmt, fmt_p
    out = Path(out)
    runs = runs or {}
    figures = sorted({Path(p).name for p in paths if str(p).endswith(".png")})
    write_json(out / "summary.json", {
        "study": study, "title": title, "question": question,
        "verdicts": [v.to_dict() for v in verdicts], "notes": list(notes), "figures": figures,
        "runs": {label: str(Path(r.path).resolve()) for label, r in runs.items()}})
    lines = [f"# {title}", "", question, ""]
    if runs:
        lines += ["Runs: " + "; ".join(f"{label}: `{Path(r.path)}` ({r.n_instances} instances, "
                                       f"{describe_net(r.net)})" for label, r in runs.items()), ""]
    if verdicts:
        lines += ["## Verdicts", "", verdict_table(verdicts), ""]
        for v in verdicts:
            lines += [f"### {v.claim}" + (f" ({v.label})" if v.label else ""), "",
                      f"Claim: *{v.statement}*.", "", f"**{v.status}.** {v.reason}", ""]
            rows = [r for r in v.layers if r.get("status") != "not judged" or r.get("note")]
            if rows:
                lines += ["| layer | measure | initial | end | effect [95 % CI] | p (Holm) | status |",
                          "| --- | --- | --- | --- | --- | --- | --- |"]
                for r in rows:
                    ci = (f" [{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]"
                          if r.get("ci_low") is not None and np.isfinite(r.get("ci_low", np.nan)) else "")
                    lines.append(f"| {r['layer']} | {r['measure']} | {fmt(r.get('initial'))} | "
                                 f"{fmt(r.get('final'))} | {fmt(r.get('effect'))}{ci} | {fmt_p(r.get('p_holm'))} | "
                                 f"{r.get('status', '')}{' (' + r['note'] + ')' if r.get('note') else ''} |")
                lines.append("")
    if notes:
        lines += ["## Findings", ""] + [f"- {n}" for n in notes] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f[:-4]}]({f})" for f in figures] + [""]
    atomic_write_bytes(out / "summary.md", "\n".join(lines).encode())


def verdict_table(verdicts) -> str:
    """A markdown table, one row per verdict: claim, run, status, effect [CI], p, n."""
    from .claims import fmt, fmt_p
    lines = ["| claim | on | status | effect [95 % CI] | p | instances |", "| --- | --- | --- | --- | --- | --- |"]
    for v in verdicts:
        d = v if isinstance(v, dict) else v.to_dict()
        ci = d.get("ci") or [None, None]
        ci_text = f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci[0] is not None else ""
        lines.append(f"| {d['claim']} | {d.get('label') or ''} | **{d['status']}** | {d['effect_name']} "
                     f"{fmt(d['effect'])}{ci_text} | {fmt_p(d['p_value'])} | {d['n_instances']} |")
    return "\n".join(lines)


def verdict_table_from_outputs(folders) -> str:
    """The verdict table of every study output folder given (their ``summary.json``)."""
    verdicts = []
    for folder in folders:
        path = Path(folder) / "summary.json"
        if not path.exists():
            raise ConfigError(f"{str(folder)!r} holds no study output (summary.json is missing)")
        s = load_json(path)
        study = s.get("study") or Path(folder).name
        for v in s.get("verdicts", []):
            verdicts.append({**v, "label": (v.get("label") or "") + (f" ({study})" if not v.get("label")
                                                                      else f", {study}")})
    return verdict_table(verdicts)


README_MARKERS = ("<!-- verdicts:start -->", "<!-- verdicts:end -->")


def write_table_into(path, table: str, markers=README_MARKERS):
    """Replace the text between two markers of a markdown file (e.g. the README) by ``table``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--into {str(path)!r} is not a UTF-8 text file") from None
    except FileNotFoundError:
        raise ConfigError(f"--into {str(path)!r} does not exist (the table goes between two markers in it)") from None
    start, end = markers
    if start not in text or end not in text.split(start, 1)[1]:
        raise ConfigError(f"{str(path)!r} has no {start} ... {end} block to fill (the start marker, then the end)")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_bytes(path, (head + start + "\n" + table + "\n" + end + tail).encode())


def save_data(out, name: str, **arrays):
    """The numbers behind a figure, as ``out/name.npz``."""
    np.savez_compressed(Path(out) / f"{name}.npz", **arrays)


def write_json(path, obj):
    atomic_write_json(Path(path), to_jsonable(obj))


def load_json(path) -> dict:
    """The JSON object in a study output's file ``path``; a missing, unreadable or malformed
    file (not JSON, or JSON that is not an object) is a RunError naming it."""
    from .explore.report import read_output_json
    return read_output_json(path)


def label_verdicts(verdicts, label: str) -> list:
    """The verdicts with ``label`` (the run or condition they judge) set."""
    return [replace(v, label=label) for v in verdicts]
