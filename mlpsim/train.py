"""Training an ensemble: the Python loop around the compiled step kernel.

Each instance of a run is trained on the same full batch. The loop runs one
jitted call per checkpoint interval; between calls Python writes the
checkpoint, updates the progress bar, checks for divergence, commits to disk
now and then, and reacts to Ctrl-C. See :mod:`mlpsim.store` for the files.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from . import kernels
from .config import PRESETS, Config, ConfigError, preset
from .data import draw_inputs, load_data_file, target_function
from .init import init_params as draw_init_params
from .model import MLP
from .store import (FORMAT_VERSION, NpyRows, Run, RunError, atomic_save_npy, atomic_save_npz,
                    atomic_write_json,
                    host_info, load_run, now, read_json, versions)


class TrainingDiverged(RuntimeError):
    """The loss or a parameter became NaN/Inf; the message names instance and step."""


def resolve_config(config=None, overrides=()) -> Config:
    """Turn a Config, preset name, TOML path or dict (None: the seed preset) into a Config."""
    if config is None:
        cfg = preset("seed")
    elif isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    elif isinstance(config, str) and config in PRESETS:
        cfg = preset(config)
    elif isinstance(config, (str, Path)) and (str(config).endswith(".toml") or Path(config).is_file()):
        cfg = Config.from_toml(config)
    elif isinstance(config, str):
        cfg = preset(config)
    else:
        raise ConfigError(f"config must be a Config, a preset name, a TOML path or a dict, got {config!r}")
    return cfg.with_overrides(overrides) if overrides else cfg


def build_net(config: Config, masks=None) -> MLP:
    """The network described by ``config.model``, with ``masks`` or the masks file."""
    m = config.model
    if masks is None and m.masks:
        masks = load_masks(m.masks, len(m.widths) - 1)
    if m.mesh_k:
        if masks is not None:
            raise ConfigError("model.mesh_k builds the masks; do not pass masks as well")
        from .mesh import mesh_masks
        masks = mesh_masks(m.widths, m.mesh_k, m.mesh_wrap)
    return MLP(m.widths, activation=m.activation, masks=masks, leaky_slope=m.leaky_slope)


def load_masks(path, n_layers: int) -> list:
    """Read ``mask_1 ... mask_L`` from an ``.npz``; absent names mean dense layers."""
    try:
        with np.load(path) as z:
            unknown = sorted(set(z.files) - {f"mask_{l + 1}" for l in range(n_layers)})
            if unknown:
                raise ConfigError(f"model.masks: {path!r} has unexpected arrays {unknown}; "
                                  f"expected names mask_1 ... mask_{n_layers}")
            return [z[f"mask_{l + 1}"] if f"mask_{l + 1}" in z.files else None for l in range(n_layers)]
    except (FileNotFoundError, OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model.masks: cannot read {str(path)!r}: {exc}") from None


def initial_params(config: Config, net: MLP, explicit=None) -> np.ndarray:
    """Initial parameters ``(instances, P)`` from the scheme, or from ``explicit``."""
    E = config.train.instances
    dtype = np.dtype(config.train.dtype)
    if explicit is None and config.model.init_params:
        try:
            explicit = np.load(config.model.init_params)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.init_params: cannot read {config.model.init_params!r}: {exc}") from None
    if explicit is not None:
        explicit = np.asarray(explicit)
        if explicit.shape not in ((net.n_params,), (E, net.n_params)):
            raise ConfigError(f"explicit initial parameters must have shape ({net.n_params},) or "
                              f"({E}, {net.n_params}) for {net!r} and {E} instances, got {explicit.shape}")
        try:
            explicit = net.check_params(explicit, dtype=dtype)
        except ValueError as exc:
            raise ConfigError(f"explicit initial parameters: {exc}") from None
        return np.ascontiguousarray(np.broadcast_to(explicit, (E, net.n_params)))
    m = config.model
    return np.stack([draw_init_params(net, seed=config.train.seed, instance=i, scheme=m.init,
                                      bias_init=m.bias_init, bias_scale=m.bias_scale, dtype=dtype)
                     for i in range(E)])


def training_data(config: Config, net: MLP, target=None):
    """``(x, y, x_test, y_test)`` for the run (test arrays None without a test set).

    ``target``: a Python callable ``f(x (n, d_in)) -> y (n, d_out)`` used when
    ``data.target = "callable"``. Shapes are checked against the network; a
    problem raises ConfigError before anything is written.
    """
    d = config.data
    d_in, d_out = net.widths[0], net.widths[-1]
    if d.target == "file":
        try:
            x, y = load_data_file(d.path, d_in, d_out)
            xt, yt = load_data_file(d.test_path, d_in, d_out) if d.test_path else (None, None)
        except ValueError as exc:
            raise ConfigError(f"data.path: {exc}") from None
        return x, y, xt, yt
    if d.target == "callable":
        if not callable(target):
            raise ConfigError('data.target = "callable" needs a Python function: train(..., target=f)')
        fn, fn_d_in = target, d_in
    else:
        if target is not None:
            raise ConfigError('a target function was given; set data.target = "callable" (train does '
                              "this when config is not given explicitly)")
        fn, fn_d_in = target_function(d)
    if fn_d_in != d_in:
        raise ConfigError(f"data.target {d.target!r} has input dimension {fn_d_in}, but model.widths = "
                          f"{list(net.widths)} expects {d_in}")
    x = draw_inputs(d.n, d_in, d.x_range, d.seed)
    xt = draw_inputs(d.n_test, d_in, d.x_range, d.seed, stream=1) if d.n_test else None
    try:
        y = _call_target(fn, x, d_out)
        yt = _call_target(fn, xt, d_out) if xt is not None else None
    except ValueError as exc:
        raise ConfigError(f"data.target {d.target!r}: {exc}; model.widths = {list(net.widths)}") from None
    return x, y, xt, yt


def _call_target(fn, x, d_out):
    y = np.asarray(fn(x), dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape != (x.shape[0], d_out):
        raise ValueError(f"the target gives output shape {y.shape}, expected ({x.shape[0]}, {d_out}) "
                         f"(output dimension {y.shape[-1] if y.ndim == 2 else '?'})")
    if not np.all(np.isfinite(y)):
        raise ValueError("the target gives NaN or Inf")
    return y


def disk_bytes(config: Config, net: MLP) -> int:
    """Approximate size of the run directory in bytes."""
    t = config.train
    E, C, P = t.instances, len(t.schedule()), net.n_params
    item = np.dtype(t.dtype).itemsize
    d_in, d_out = net.widths[0], net.widths[-1]
    return (E * C * P * item + E * C * 8 + E * t.steps * 8 + C * 8
            + config.data.n * (d_in + d_out) * 8 + 3 * E * P * item + 8192)


class Ensemble:
    """Networks trained together in memory: parameters, optimizer state, data.

    This is the engine without the run directory: :func:`train` uses it, and so
    can experiments that branch off a checkpoint (edit, then keep training).

    Parameters
    ----------
    net : MLP
    train_config : TrainConfig
        Optimizer and its hyperparameters, and the dtype.
    x, y : arrays (n, d_in), (n, d_out)
    thetas : array (E, P)
        Initial parameters (copied).
    step : int
        Updates already done (for Adam's bias correction when continuing).
    """

    def __init__(self, net: MLP, train_config, x, y, thetas, step: int = 0):
        self.net, self.config = net, train_config
        self.dtype = np.dtype(train_config.dtype)
        self.X = net.check_inputs(x, dtype=self.dtype)
        self.Y = net.check_targets(y, self.X.shape[1], dtype=self.dtype)
        self.thetas = net.check_params(np.atleast_2d(thetas), dtype=self.dtype).copy()
        E, P = self.thetas.shape
        self.state1 = np.zeros_like(self.thetas)
        self.state2 = np.zeros_like(self.thetas)
        self.active = np.ones(E, dtype=np.uint8)
        self.step = int(step)
        self.buffers = net.work_buffers(E, self.X.shape[1], self.dtype)
        self.G = np.empty((E, P))
        self.loss_now = np.empty(E)
        self.hyper = train_config.hyper()

    def run(self, n_steps: int) -> np.ndarray:
        """Do ``n_steps`` updates; return the loss before each, ``(E, n_steps)``.

        Inactive (diverged) instances are skipped and get NaN losses.
        """
        losses = np.empty((self.thetas.shape[0], n_steps))
        kernels.train_steps(self.thetas, self.state1, self.state2, self.net.free, self.active,
                            self.step, n_steps, self.config.optimizer_code, self.hyper,
                            *self.net._kernel_layout(), self.X, self.Y, *self.buffers,
                            self.G, self.loss_now, losses)
        self.step += n_steps
        losses[self.active == 0] = np.nan
        return losses

    def loss(self) -> np.ndarray:
        """Loss of the current parameters, ``(E,)`` (NaN for inactive instances)."""
        kernels.loss_grad_batch(self.thetas, *self.net._kernel_layout(), self.X, self.Y, self.active,
                                *self.buffers, self.G, self.loss_now)
        loss = self.loss_now.copy()
        loss[self.active == 0] = np.nan
        return loss


class _Trainer:
    """State of one training process over one run directory."""

    def __init__(self, config: Config, net: MLP, out: Path, x, y, thetas0, x_test=None, y_test=None):
        self.config, self.net, self.out = config, net, out
        self.x_test, self.y_test = x_test, y_test
        t = config.train
        self.dtype = np.dtype(t.dtype)
        self.schedule = t.schedule()
        self.E, self.P, self.C = t.instances, net.n_params, len(self.schedule)
        self.ens = Ensemble(net, t, x, y, thetas0)
        self.diverged = []
        self.checkpoint = 0  # index of the last checkpoint whose parameters are in ens.thetas
        self.loss_known = 0  # index of the last checkpoint whose loss has been written

    # -------------------------------------------------------------- files
    def create_files(self, masks_used, explicit):
        out, cfg = self.out, self.config
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
        x, y = self.ens.X.T.astype(np.float64), self.ens.Y.T.astype(np.float64)
        atomic_save_npz(out / "data.npz", x=x, y=y)
        if masks_used:
            atomic_save_npz(out / "masks.npz", **{f"mask_{l + 1}": m for l, m in enumerate(self.net.masks)
                                                  if m is not None})
        if explicit:
            atomic_save_npy(out / "init_params.npy", self.ens.thetas)
        if self.x_test is not None:
            atomic_save_npz(out / "test.npz", x=self.x_test, y=self.y_test)
        atomic_save_npy(out / "steps.npy", self.schedule)
        self.manifest = {
            "format_version": FORMAT_VERSION, "status": "running", "reason": "",
            "checkpoints_written": 0, "checkpoints_total": self.C,
            "steps_done": 0, "steps_total": cfg.train.steps,
            "instances": self.E, "n_params": self.P, "dtype": cfg.train.dtype,
            "config_sha256": cfg.sha256(), "versions": versions(), "host": host_info(),
            "engine": {"chunk": kernels.CHUNK, "lanes": kernels.LANES}, "diverged": [],
            "started": now(), "updated": now(), "finished": None,
        }
        atomic_write_json(out / "manifest.json", self.manifest)
        self.open_arrays(create=True)

    def open_arrays(self, create: bool):
        E, C, P, S = self.E, self.C, self.P, self.config.train.steps
        self.params_f = NpyRows(self.out / "params.npy", (E, C, P), self.dtype, create=create)
        self.loss_f = NpyRows(self.out / "loss.npy", (E, C), np.float64, fill=np.nan, create=create)
        self.loss_steps_f = NpyRows(self.out / "loss_steps.npy", (E, S), np.float64, fill=np.nan,
                                    create=create)
        self.test_loss_f = (NpyRows(self.out / "test_loss.npy", (E, C), np.float64, fill=np.nan, create=create)
                            if self.x_test is not None else None)

    def _files(self):
        return [f for f in (self.params_f, self.loss_f, self.loss_steps_f, self.test_loss_f) if f is not None]

    def close(self):
        for f in self._files():
            f.close()

    def resume_from_disk(self):
        self.manifest = read_json(self.out / "manifest.json")
        ens = self.ens
        with np.load(self.out / "state.npz") as z:
            ens.thetas[...] = z["thetas"]
            ens.state1[...] = z["state1"]
            ens.state2[...] = z["state2"]
            ens.active[...] = z["active"]
            self.checkpoint = int(z["checkpoint"])
        self.loss_known = self.checkpoint  # a saved state's checkpoint loss was filled in by its commit
        ens.step = int(self.schedule[self.checkpoint])
        self.diverged = list(self.manifest.get("diverged", []))
        self.open_arrays(create=False)

    def commit(self, status="running", reason="", save_state=True, include_last=True):
        """Make checkpoints up to ``self.checkpoint`` durable, then record them.

        With ``save_state`` the parameters and optimizer state are saved as the
        resume point; that is only correct when ``self.thetas`` are exactly the
        parameters of ``self.checkpoint`` (not mid-interval, not diverged).
        ``include_last=False`` records only checkpoints whose loss is written
        (the newest one's loss is known once the next interval has run, or once
        a commit filled it in).
        """
        for f in self._files():
            f.sync()
        if save_state:
            ens = self.ens
            atomic_save_npz(self.out / "state.npz", thetas=ens.thetas, state1=ens.state1,
                            state2=ens.state2, active=ens.active, checkpoint=np.int64(self.checkpoint))
        last = self.checkpoint if include_last else min(self.checkpoint, self.loss_known)
        self.manifest.update(status=status, reason=reason, checkpoints_written=last + 1,
                             steps_done=int(self.schedule[last]), diverged=self.diverged,
                             updated=now(), host=host_info())
        if status != "running":
            self.manifest["finished"] = now()
        atomic_write_json(self.out / "manifest.json", self.manifest)

    # -------------------------------------------------------------- compute
    def write_checkpoint(self, c: int, loss: np.ndarray):
        rows = self.ens.thetas.copy()
        rows[self.ens.active == 0] = np.nan
        for e in range(self.E):
            self.params_f.write((e, c), rows[e])
            self.loss_f.write((e, c), loss[e:e + 1])
        if self.test_loss_f is not None:
            test = np.full(self.E, np.nan)
            live = self.ens.active == 1
            if live.any():
                yhat = self.net.forward(self.ens.thetas[live], self.x_test)  # (E', n_test, d_out)
                test[live] = np.mean((yhat - self.y_test) ** 2, axis=(1, 2))
            for e in range(self.E):
                self.test_loss_f.write((e, c), test[e:e + 1])
        self.checkpoint = c

    def find_divergence(self, c: int, losses: np.ndarray, was_active: np.ndarray) -> list:
        """``(instance, step, loss)`` for each instance that became non-finite in interval c."""
        s0 = int(self.schedule[c - 1])
        found = []
        for e in np.flatnonzero(was_active):
            bad = np.flatnonzero(~np.isfinite(losses[e]))
            if bad.size:
                found.append((int(e), s0 + int(bad[0]), float(losses[e, bad[0]])))
            elif not np.all(np.isfinite(self.ens.thetas[e])):
                found.append((int(e), int(self.schedule[c]), float("nan")))
        return found


def train(config=None, out=None, *, overrides=(), masks=None, init_params=None, target=None,
          resume: bool = False, overwrite: bool = False, progress=None, threads=None,
          commit_seconds: float = 2.0) -> Run:
    """Train an ensemble of networks and store the trajectory in a run directory.

    Parameters
    ----------
    config : Config, str, Path or dict, optional
        A :class:`Config`, a preset name (``"seed"``, ``"tiny"``), a TOML file or
        a dict. Default: the seed preset.
    out : str or Path, optional
        The run directory. Default: a new temporary directory.
    overrides : sequence of str
        ``"section.key=value"`` assignments applied to ``config``.
    masks : list of arrays, optional
        Per-layer 0/1 connectivity masks (see :class:`MLP`); copied into the run.
    init_params : array, optional
        Explicit initial parameters, ``(P,)`` for all instances or ``(instances, P)``.
    target : callable, optional
        A target function ``f(x (n, d_in)) -> y (n, d_out)``; sets
        ``data.target = "callable"`` (inputs are drawn as for named targets).
        A resumed run checks that it gives the stored data.
    resume : bool
        Continue an interrupted run in ``out`` with the same configuration.
    overwrite : bool
        Delete an existing ``out`` first.
    progress : bool, optional
        Show a tqdm progress bar; default: when stderr is a terminal.
    threads : int, optional
        Numba threads to use; results do not depend on it.
    commit_seconds : float
        How often progress is made durable; a killed run loses at most this
        much work (never data that a commit recorded).

    Returns
    -------
    Run
        The finished run, opened with :func:`load_run`.

    Raises
    ------
    ConfigError
        Invalid configuration or inputs, before anything is written.
    RunError
        ``out`` exists and neither ``resume`` nor ``overwrite`` was given, or
        ``resume`` was asked with a different configuration.
    TrainingDiverged
        A loss or parameter became NaN/Inf (``train.on_divergence = "stop"``).
    """
    cfg = resolve_config(config, overrides)
    if target is not None and cfg.data.target != "callable":
        cfg = cfg.replace(data={"target": "callable"})
    net = build_net(cfg, masks)
    thetas0 = initial_params(cfg, net, init_params)
    x, y, x_test, y_test = training_data(cfg, net, target)
    if threads is not None:
        if not (isinstance(threads, int) and not isinstance(threads, bool)
                and 1 <= threads <= numba.config.NUMBA_NUM_THREADS):
            raise ConfigError(f"threads must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}], "
                              f"got {threads!r}")
        numba.set_num_threads(threads)
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other")
    if not (isinstance(commit_seconds, (int, float)) and np.isfinite(commit_seconds) and commit_seconds > 0):
        raise ConfigError(f"commit_seconds (--commit-every) must be a finite number > 0, got {commit_seconds!r}")
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="mlpsim-run-"))
    existing = out.exists() and any(out.iterdir())
    if existing and not (resume or overwrite):
        raise RunError(f"output directory {str(out)!r} exists and is not empty; "
                       "pass --resume to continue it or --overwrite to replace it")
    if resume and existing:
        _check_resumable(out, cfg)
        _check_same_data(out, x, y)
        _check_same_masks(out, net)
    masks_used = any(m is not None for m in net.masks)
    explicit = init_params is not None or bool(cfg.model.init_params)

    trainer = _Trainer(cfg, net, out, x, y, thetas0, x_test, y_test)
    if resume and existing:
        manifest = read_json(out / "manifest.json")
        if manifest["status"] == "complete":
            return load_run(out)
        if not (out / "state.npz").exists():  # killed before the first commit
            resume = False
    if overwrite and existing:
        if not ((out / "manifest.json").exists() or (out / "config.json").exists()):
            raise RunError(f"--overwrite refuses to delete {str(out)!r}: it is not an mlpsim run directory")
        shutil.rmtree(out)
    if resume and existing:
        trainer.resume_from_disk()
    else:
        trainer.create_files(masks_used, explicit)
        trainer.write_checkpoint(0, trainer.ens.loss())
        trainer.commit()
    try:
        _loop(trainer, progress, commit_seconds)
    finally:
        trainer.close()
    return load_run(out)


def _check_same_masks(out: Path, net: MLP):
    stored = [None] * net.n_layers
    if (out / "masks.npz").exists():
        with np.load(out / "masks.npz") as z:
            stored = [z[f"mask_{l + 1}"] if f"mask_{l + 1}" in z.files else None for l in range(net.n_layers)]
    for l, (a, b) in enumerate(zip(stored, net.masks)):
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            raise RunError(f"cannot resume {str(out)!r}: the connectivity mask of layer {l + 1} differs "
                           "from the run's masks.npz")


def _check_same_data(out: Path, x, y):
    with np.load(out / "data.npz") as z:
        if not (np.array_equal(z["x"], x) and np.array_equal(z["y"], y)):
            raise RunError(f"cannot resume {str(out)!r}: the training data differ from the run's data.npz "
                           "(a different target function or data file?)")


def _check_resumable(out: Path, cfg: Config):
    old = Config.from_dict(read_json(out / "config.json")).to_dict()
    manifest = read_json(out / "manifest.json")
    if old != cfg.to_dict():
        new = cfg.to_dict()
        diffs = [f"{s}.{k}: run has {old.get(s, {}).get(k)!r}, requested {new[s][k]!r}"
                 for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k]]
        raise RunError(f"cannot resume {str(out)!r} with a different configuration: " + "; ".join(diffs))
    if manifest["status"] == "failed":
        raise RunError(f"run {str(out)!r} failed ({manifest.get('reason')}); "
                       "resuming would fail again; use --overwrite to start over")


def _loop(tr: _Trainer, progress, commit_seconds: float):
    from tqdm.auto import tqdm
    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(total=int(tr.schedule[-1]), initial=int(tr.schedule[tr.checkpoint]), unit="step",
               disable=not progress, desc=f"training {tr.E} net(s)", file=sys.stderr)
    last_commit = time.monotonic()
    at_checkpoint = True  # are tr.thetas exactly the parameters of tr.checkpoint?
    try:
        for c in range(tr.checkpoint + 1, tr.C):
            was_active = tr.ens.active.copy()
            at_checkpoint = False
            s0 = int(tr.schedule[c - 1])
            losses = tr.ens.run(int(tr.schedule[c]) - s0)
            for e in range(tr.E):
                tr.loss_steps_f.write((e, s0), losses[e])
                # The first loss of an interval is the loss at the previous checkpoint.
                tr.loss_f.write((e, c - 1), losses[e, :1])
            tr.loss_known = c - 1
            bad = tr.find_divergence(c, losses, was_active)
            if bad:
                _handle_divergence(tr, bad)
            tr.write_checkpoint(c, tr.ens.loss() if c == tr.C - 1 else np.full(tr.E, np.nan))
            at_checkpoint = True
            bar.update(int(tr.schedule[c]) - s0)
            if time.monotonic() - last_commit >= commit_seconds and c < tr.C - 1:
                _commit_with_loss(tr)
                last_commit = time.monotonic()
        tr.commit(status="complete")
    except KeyboardInterrupt:
        reason = "interrupted by the user; resume with --resume"
        if at_checkpoint:
            _commit_with_loss(tr, status="interrupted", reason=reason)
        else:  # mid-interval: keep the last saved resume point; the newest loss is unknown
            tr.commit(status="interrupted", reason=reason, save_state=False, include_last=False)
        raise
    finally:
        bar.close()


def _handle_divergence(tr: _Trainer, bad: list):
    """Stop the run (or, with on_divergence = "continue", freeze the diverged instances)."""
    tr.diverged.extend({"instance": e, "step": s, "loss": l} for e, s, l in bad)
    for e, _, _ in bad:
        tr.ens.active[e] = 0
    if tr.config.train.on_divergence == "stop" or not tr.ens.active.any():
        what = "; ".join(f"instance {e} at step {s} (loss {l})" for e, s, l in bad)
        reason = f"diverged: {what}"
        tr.commit(status="failed", reason=reason, save_state=False)
        raise TrainingDiverged(f"training stopped, {reason}; checkpoints up to step "
                               f"{int(tr.schedule[tr.checkpoint])} are kept in {tr.out}")


def _commit_with_loss(tr: _Trainer, status="running", reason=""):
    """Commit; first fill in the loss of the newest checkpoint (the next interval would give it)."""
    loss = tr.ens.loss()
    for e in range(tr.E):
        tr.loss_f.write((e, tr.checkpoint), loss[e:e + 1])
    tr.loss_known = tr.checkpoint
    tr.commit(status=status, reason=reason)
