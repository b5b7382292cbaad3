"""Training an ensemble: the Python loop around the compiled step kernel.

Each instance of a run is trained on the same full batch. The loop runs one
jitted call per checkpoint interval; between calls Python writes the
checkpoint, updates the progress bar, checks for divergence, commits to disk
now and then, and reacts to Ctrl-C. See :mod:`mlpsim.store` for the files.
"""
from __future__ import annotations

import os
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
from .errors import file_read_problem, is_int
from .init import init_params as draw_init_params
from .model import MLP
from .progress import Progress, resolve_mode
from .store import (Run, RunError, RunWriter, WriteLock, available_memory, check_disk, check_memory, clear_run_dir,
                    fmt_bytes, inspect_run, is_run_dir, load_npz, load_run, load_xy, read_json)


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
        try:
            return MLP(m.widths, activation=m.activation, masks=masks, leaky_slope=m.leaky_slope)
        except ValueError as exc:  # the file's masks do not fit the network
            raise ConfigError(f"model.masks: {m.masks!r}: {exc}") from None
    if m.mesh_k:
        if masks is not None:
            raise ConfigError("model.mesh_k builds the masks; do not pass masks as well")
        from .mesh import mesh_masks
        masks = mesh_masks(m.widths, m.mesh_k, m.mesh_wrap)
    return MLP(m.widths, activation=m.activation, masks=masks, leaky_slope=m.leaky_slope)


def load_masks(path, n_layers: int) -> list:
    """Read ``mask_1 ... mask_L`` from an ``.npz``; absent names mean dense layers."""
    try:
        z = np.load(path)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ConfigError(f"model.masks: {str(path)!r} holds one array; it must be an .npz file with "
                              f"arrays named mask_1 ... mask_{n_layers} (numpy.savez)")
        with z:
            unknown = sorted(set(z.files) - {f"mask_{l + 1}" for l in range(n_layers)})
            if unknown:
                raise ConfigError(f"model.masks: {path!r} has unexpected arrays {unknown}; "
                                  f"expected names mask_1 ... mask_{n_layers}")
            return [z[f"mask_{l + 1}"] if f"mask_{l + 1}" in z.files else None for l in range(n_layers)]
    except (FileNotFoundError, OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model.masks: cannot read {str(path)!r}: {file_read_problem(exc)}") from None


def initial_params(config: Config, net: MLP, explicit=None) -> np.ndarray:
    """Initial parameters ``(instances, P)`` from the scheme, or from ``explicit``."""
    E = config.train.instances
    dtype = np.dtype(config.train.dtype)
    if explicit is None and config.model.init_params:
        try:
            explicit = np.load(config.model.init_params)
            if isinstance(explicit, np.lib.npyio.NpzFile):
                explicit.close()
                raise ConfigError(f"model.init_params: {config.model.init_params!r} holds several arrays; it "
                                  f"must be an .npy file of shape ({net.n_params},) or "
                                  f"({E}, {net.n_params}) (numpy.save)")
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.init_params: cannot read {config.model.init_params!r}: "
                              f"{file_read_problem(exc)}") from None
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
        loaded = {}
        for key, path in (("data.path", d.path), ("data.test_path", d.test_path)):
            try:
                loaded[key] = load_data_file(path, d_in, d_out) if path else (None, None)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        return (*loaded["data.path"], *loaded["data.test_path"])
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
    out = fn(x.copy())  # a target that writes into its argument (x -= 1) must not change the inputs
    if np.iscomplexobj(out):
        raise ValueError("the target gives complex numbers; mlpsim trains on real data")
    y = np.array(out, dtype=np.float64)  # (a copy: the target may return its argument or keep it)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape != (x.shape[0], d_out):
        raise ValueError(f"the target gives output shape {y.shape}, expected ({x.shape[0]}, {d_out}) "
                         f"(output dimension {y.shape[-1] if y.ndim == 2 else '?'})")
    if not np.all(np.isfinite(y)):
        raise ValueError("the target gives NaN or Inf")
    return y


def check_threads(threads):
    """A ConfigError unless ``threads`` is None or a thread count numba can use on this machine."""
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool)
                                    and 1 <= threads <= numba.config.NUMBA_NUM_THREADS):
        raise ConfigError(f"threads (--threads) must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}], "
                          f"got {threads!r}")


def estimate_seconds(config: Config, threads=None, steps: int = 20) -> tuple:
    """``(seconds, per_step)``: the training time of ``config`` on this machine, measured now.

    Runs ``steps`` full-batch steps of the real network and data (after a
    warm-up step that loads or compiles the kernels), scaled to the whole run.
    The checkpoint writes are not included (they are small next to the steps).
    """
    import numba as _numba
    check_threads(threads)
    net = build_net(config)
    x, y, _, _ = training_data(config, net)
    before = _numba.get_num_threads()
    if threads is not None:
        _numba.set_num_threads(threads)
    try:
        ens = Ensemble(net, config.train, x, y, initial_params(config, net))
        ens.run(1)
        t0 = time.perf_counter()
        ens.run(steps)
        per_step = (time.perf_counter() - t0) / steps
    finally:
        _numba.set_num_threads(before)
    return per_step * config.train.steps, per_step


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
        from .config import TrainConfig
        if isinstance(train_config, Config):
            raise TypeError("Ensemble needs the train section of a configuration: pass config.train, not config")
        if not isinstance(train_config, TrainConfig):
            raise TypeError(f"train_config must be a TrainConfig (config.train), got {type(train_config).__name__}")
        self.net, self.config = net, train_config
        self.dtype = np.dtype(train_config.dtype)
        self.X = net.check_inputs(x, dtype=self.dtype)
        self.Y = net.check_targets(y, self.X.shape[1], dtype=self.dtype)
        self.thetas = net.check_params(np.atleast_2d(thetas), dtype=self.dtype).copy()
        E, P = self.thetas.shape
        self.state1 = np.zeros_like(self.thetas)
        self.state2 = np.zeros_like(self.thetas)
        self.active = np.ones(E, dtype=np.uint8)
        if not (is_int(step) and step >= 0):
            raise ValueError(f"step (updates already done) must be a whole number >= 0, got {step!r}")
        self.step = int(step)
        self.buffers = net.work_buffers(E, self.X.shape[1], self.dtype)
        self.G = np.empty((E, P), dtype=self.dtype)
        self.loss_now = np.empty(E)
        self.hyper = train_config.hyper()

    def run(self, n_steps: int) -> np.ndarray:
        """Do ``n_steps`` updates; return the loss before each, ``(E, n_steps)``.

        Inactive (diverged) instances are skipped and get NaN losses.
        """
        if not (is_int(n_steps) and n_steps >= 0):
            raise ValueError(f"n_steps must be a whole number >= 0, got {n_steps!r}")
        need, avail = 8 * self.thetas.shape[0] * int(n_steps), available_memory()
        if avail is not None and need > avail:  # the losses returned: run a long training in pieces
            raise ValueError(f"run({n_steps}) would return {fmt_bytes(need)} of losses and {fmt_bytes(avail)} "
                             "is available: run fewer steps per call")
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
        kernels.train_steps(self.thetas, self.state1, self.state2, self.net.free, self.active,
                            self.step, 0, self.config.optimizer_code, self.hyper,
                            *self.net._kernel_layout(), self.X, self.Y, *self.buffers,
                            self.G, self.loss_now, np.empty((self.thetas.shape[0], 0)))
        loss = self.loss_now.copy()
        loss[self.active == 0] = np.nan
        return loss


class _Trainer:
    """One training process over one run directory: the ensemble, the schedule, and where it is.

    The files are written by :class:`mlpsim.store.RunWriter`; this class only
    decides what to write when.
    """

    def __init__(self, config: Config, net: MLP, writer: RunWriter, x, y, thetas0, x_test=None, y_test=None):
        self.config, self.net, self.writer = config, net, writer
        self.out = writer.out
        self.x_test, self.y_test = x_test, y_test
        self.schedule = writer.schedule
        self.E, self.P, self.C = config.train.instances, net.n_params, len(self.schedule)
        self.ens = Ensemble(net, config.train, x, y, thetas0)
        self.diverged = []
        self.checkpoint = 0  # index of the last checkpoint whose parameters are in ens.thetas
        self.loss_known = 0  # index of the last checkpoint whose loss has been written

    def resume_from(self, state: dict):
        ens = self.ens
        ens.thetas[...] = state["thetas"]
        ens.state1[...] = state["state1"]
        ens.state2[...] = state["state2"]
        ens.active[...] = state["active"]
        self.checkpoint = int(state["checkpoint"])
        self.loss_known = self.checkpoint  # a saved state's checkpoint loss was filled in by its commit
        ens.step = int(self.schedule[self.checkpoint])
        self.diverged = list(self.writer.manifest.get("diverged", []))

    def commit(self, status="running", reason="", save_state=True, include_last=True):
        """Make checkpoints up to ``self.checkpoint`` durable, then record them.

        With ``save_state`` the parameters and optimizer state are saved as the
        resume point; that is only correct when ``self.thetas`` are exactly the
        parameters of ``self.checkpoint`` (not mid-interval, not diverged).
        ``include_last=False`` records only checkpoints whose loss is written
        (the newest one's loss is known once the next interval has run, or once
        a commit filled it in).
        """
        ens = self.ens
        state = (dict(thetas=ens.thetas, state1=ens.state1, state2=ens.state2, active=ens.active,
                      checkpoint=np.int64(self.checkpoint)) if save_state else None)
        last = self.checkpoint if include_last else min(self.checkpoint, self.loss_known)
        self.writer.commit(last, status=status, reason=reason, state=state, diverged=self.diverged)

    def write_checkpoint(self, c: int, loss: np.ndarray):
        rows = self.ens.thetas.copy()
        rows[self.ens.active == 0] = np.nan
        self.writer.write_params(c, rows)
        self.writer.write_loss(c, loss)
        if self.x_test is not None:
            test = np.full(self.E, np.nan)
            live = self.ens.active == 1
            if live.any():
                yhat = self.net.forward(self.ens.thetas[live], self.x_test)  # (E', n_test, d_out)
                test[live] = np.mean((yhat - self.y_test) ** 2, axis=(1, 2))
            self.writer.write_loss(c, test, test=True)
        self.checkpoint = c

    def find_divergence(self, c: int, losses: np.ndarray, was_active: np.ndarray, s0: int) -> list:
        """``(instance, step, loss)`` for each instance that became non-finite in the piece of
        interval ``c`` that starts at step ``s0`` (``losses`` are that piece's)."""
        found = []
        for e in np.flatnonzero(was_active & (self.ens.active == 1)):
            bad = np.flatnonzero(~np.isfinite(losses[e]))
            if bad.size:
                found.append((int(e), s0 + int(bad[0]), float(losses[e, bad[0]])))
            elif not np.all(np.isfinite(self.ens.thetas[e])):
                found.append((int(e), s0 + losses.shape[1], float("nan")))
        return found


#: Steps run by one call of the compiled kernel at most: a longer checkpoint interval is run in
#: pieces, so that the losses it returns, (instances, steps), stay small.
MAX_PIECE = 65536


class Interrupted(KeyboardInterrupt):
    """Training was asked to stop (Ctrl-C, or a sweep's stop request); progress is committed."""


def train(config=None, out=None, *, overrides=(), masks=None, init_params=None, target=None,
          resume: bool = False, overwrite: bool = False, progress=None, threads=None,
          commit_seconds: float = 2.0, stop=None) -> Run:
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
        Continue an interrupted run in ``out`` with the same configuration (a
        run killed before its first commit starts again from scratch).
    overwrite : bool
        Replace an existing run in ``out`` (only a folder that holds nothing
        but a run's files is deleted).
    progress : bool or str, optional
        True: a progress bar; False: nothing; None (default): a bar on a
        terminal, plain lines every ~10 s elsewhere (see :mod:`mlpsim.progress`).
    threads : int, optional
        Numba threads to use; results do not depend on it.
    commit_seconds : float
        How often progress is made durable; a killed run loses at most this
        much work (never data that a commit recorded).
    stop : callable, optional
        Called at every checkpoint; when it returns True the run stops as if
        interrupted (status ``interrupted``, resumable). Sweeps use it, so it
        must be cheap (an event or a file's existence).

    Returns
    -------
    Run
        The finished run, opened with :func:`load_run`.

    Raises
    ------
    ConfigError
        Invalid configuration or inputs, or a run too large for this machine's
        memory, before anything is written.
    RunError
        ``out`` exists and neither ``resume`` nor ``overwrite`` was given; the
        existing run is invalid or has another configuration;
        :class:`mlpsim.store.RunLocked` when another process writes it.
    OSError
        The disk cannot hold the run (checked before anything is written),
        or another I/O failure.
    TrainingDiverged
        A loss or parameter became NaN/Inf (``train.on_divergence = "stop"``).
    """
    cfg = resolve_config(config, overrides)
    if target is not None and cfg.data.target != "callable":
        cfg = cfg.with_values({"data.target": "callable"})
    check_threads(threads)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"out must be a folder (a str or Path) or None, got {out!r}")
    for name, flag in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(flag, (bool, np.bool_)):  # overwrite="no" is truthy: it would delete a run
            raise ConfigError(f"{name} must be True or False, got {flag!r}")
    if stop is not None and not callable(stop):
        raise ConfigError(f"stop must be a function returning True to stop, or None; got {stop!r}")
    try:
        resolve_mode(progress)  # before the run directory is created
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other")
    if not (isinstance(commit_seconds, (int, float)) and np.isfinite(commit_seconds) and commit_seconds > 0):
        raise ConfigError(f"commit_seconds (--commit-every) must be a finite number > 0, got {commit_seconds!r}")
    need = check_memory(cfg, threads)  # before anything large is allocated
    net = build_net(cfg, masks)
    thetas0 = initial_params(cfg, net, init_params)
    x, y, x_test, y_test = training_data(cfg, net, target)
    if threads is not None:
        numba.set_num_threads(threads)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="mlpsim-run-"))
    if out.exists() and not out.is_dir():
        raise RunError(f"{str(out)!r} is a file; a run needs a directory")
    existing = out.exists() and any(out.iterdir())
    if existing and not (resume or overwrite):
        raise RunError(f"output directory {str(out)!r} exists and is not empty; "
                       "pass --resume to continue it or --overwrite to replace it")
    if existing and not is_run_dir(out):
        raise RunError(f"{'--overwrite' if overwrite else '--resume'} refuses {str(out)!r}: it holds files "
                       "that are not an mlpsim run's")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = WriteLock(out).acquire()  # a second writer is refused from here on
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        opened = _open_run(out, cfg, net, x, y, resume and existing, need)
        if opened == "complete":
            lock.release()
            return load_run(out)
        if opened == "new":
            explicit = init_params is not None or bool(cfg.model.init_params)
            writer, state = RunWriter.create(out, cfg, net, x, y, x_test, y_test, thetas0 if explicit else None), None
        else:
            writer, state = opened
        _announce_compile(progress, cfg.train.dtype)
        trainer = _Trainer(cfg, net, writer, x, y, thetas0, x_test, y_test)
        try:
            if state is not None:
                trainer.resume_from(state)
            else:
                trainer.write_checkpoint(0, trainer.ens.loss())
                trainer.commit()
            _loop(trainer, progress, commit_seconds, stop)
        finally:
            writer.close()
    except BaseException:
        lock.release()
        if created and not (out / "manifest.json").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left to look like a run
        raise
    lock.release()
    return load_run(out)


def _open_run(out: Path, cfg: Config, net: MLP, x, y, resume: bool, need: dict):
    """``(writer, state)`` to continue a run; ``"new"`` when the caller creates it (the folder is
    then empty but for the lock, and the disk has room); ``"complete"`` when nothing is left to do."""
    # killed before its first commit: no manifest and no resume point yet, or a manifest that
    # records no checkpoint (a missing manifest beside a state.npz is damage, not a young run)
    half_created = resume and ((not (out / "manifest.json").exists() and not (out / "state.npz").exists())
                               or ((out / "manifest.json").exists()
                                   and read_json(out / "manifest.json").get("checkpoints_written") == 0))
    if resume and not half_created:
        manifest, old = inspect_run(out)
        _check_same_config(out, old, cfg)
        if manifest["status"] == "failed":
            raise RunError(f"run {str(out)!r} failed ({manifest.get('reason')}); resuming would fail again; "
                           "use --overwrite to start over")
        _check_same_data(out, x, y, net)
        _check_same_masks(out, net)
        if manifest["status"] == "complete":
            return "complete"
        _check_same_engine(out, manifest)
        return RunWriter.reopen(out, cfg, net.n_params)
    clear_run_dir(out)  # --overwrite, a half-created run, or a new folder (empty but for the lock)
    check_disk(out, need["disk"])
    return "new"


def _check_same_engine(out: Path, manifest: dict):
    """Refuse to continue a run whose sums were taken in another order (an older engine)."""
    from .store import engine_info
    then, now = manifest.get("engine", {}), engine_info()
    if then.get("version", 1) != now["version"] or then.get("chunk") != now["chunk"] \
            or then.get("lanes") != now["lanes"]:
        raise RunError(f"cannot resume {str(out)!r}: it was trained by engine version {then.get('version', 1)} "
                       f"(chunk {then.get('chunk')}, lanes {then.get('lanes')}), this mlpsim is engine version "
                       f"{now['version']}; the two take sums in different orders, so the continued run would "
                       "match neither; train it again with --overwrite")


def _check_same_masks(out: Path, net: MLP):
    stored = [None] * net.n_layers
    if (out / "masks.npz").exists():
        z = load_npz(out / "masks.npz")
        stored = [z.get(f"mask_{l + 1}") for l in range(net.n_layers)]
    for l, (a, b) in enumerate(zip(stored, net.masks)):
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            raise RunError(f"cannot resume {str(out)!r}: the connectivity mask of layer {l + 1} differs "
                           "from the run's masks.npz")


def _check_same_data(out: Path, x, y, net: MLP):
    sx, sy = load_xy(out / "data.npz", net.widths[0], net.widths[-1])
    if not (np.array_equal(sx, x) and np.array_equal(sy, y)):
        raise RunError(f"cannot resume {str(out)!r}: the training data differ from the run's data.npz "
                       "(a different target function or data file? Or a run made before mlpsim computed the sin, "
                       "sinc, bump and gaussian_2d targets exactly rounded?)")


def _check_same_config(out: Path, old: Config, cfg: Config):
    if old.to_dict() != cfg.to_dict():
        a, b = old.to_dict(), cfg.to_dict()
        diffs = [f"{s}.{k}: run has {a[s][k]!r}, requested {b[s][k]!r}"
                 for s in b for k in b[s] if a[s][k] != b[s][k]]
        raise RunError(f"cannot resume {str(out)!r} with a different configuration: " + "; ".join(diffs))


_fma_warned = False


def _announce_compile(progress, dtype):
    """Say so before a cold start compiles, instead of pausing in silence; and, once
    per process and even when quiet, when the kernels will run without FMA
    instructions (:func:`mlpsim.simd.fma_warning`): a step takes about 40 times as long."""
    global _fma_warned
    from ._jit import compile_notice
    from .simd import fma_warning
    warning = None if _fma_warned else fma_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)
        _fma_warned = True
    notice = compile_notice(kernels.train_steps, dtypes=(dtype,))
    if notice and resolve_mode(progress) != "quiet":
        print(notice, file=sys.stderr, flush=True)


def _loop(tr: _Trainer, progress, commit_seconds: float, stop=None):
    bar = Progress(int(tr.schedule[-1]), int(tr.schedule[tr.checkpoint]), desc=f"training {tr.E} net(s)",
                   progress=progress)
    last_commit = time.monotonic()
    at_checkpoint = True  # are tr.thetas exactly the parameters of tr.checkpoint?
    try:
        for c in range(tr.checkpoint + 1, tr.C):
            was_active = tr.ens.active.copy()
            at_checkpoint = False
            s0, s1 = int(tr.schedule[c - 1]), int(tr.schedule[c])
            for a in range(s0, s1, MAX_PIECE):  # long intervals in pieces: the losses stay small
                b = min(s1, a + MAX_PIECE)
                losses = tr.ens.run(b - a)
                tr.writer.write_loss_steps(a, losses)
                if a == s0:  # the first loss of an interval is the loss at the previous checkpoint
                    tr.writer.write_loss(c - 1, losses[:, 0])
                    tr.loss_known = c - 1
                bad = tr.find_divergence(c, losses, was_active, a)
                if bad:
                    _handle_divergence(tr, bad)
                bar.update(b - a, loss=float(np.nanmedian(losses[:, -1]))
                           if np.any(np.isfinite(losses[:, -1])) else float("nan"))
            tr.write_checkpoint(c, tr.ens.loss() if c == tr.C - 1 else np.full(tr.E, np.nan))
            at_checkpoint = True
            if stop is not None and c < tr.C - 1 and stop():  # checked at every checkpoint: cheap
                raise Interrupted("stop requested")  # committed below, as a Ctrl-C is
            if time.monotonic() - last_commit >= commit_seconds and c < tr.C - 1:
                _commit_with_loss(tr)
                last_commit = time.monotonic()
        tr.commit(status="complete")
    except KeyboardInterrupt:
        reason = "interrupted; continue it with the same command and --resume (train) or again (study, sweep)"
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
    tr.writer.write_loss(tr.checkpoint, tr.ens.loss())
    tr.loss_known = tr.checkpoint
    tr.commit(status=status, reason=reason)


def obtain_run(config: Config, run_dir, progress=None, log=print, stop=None):
    """The finished run of ``config`` in ``run_dir``: reused, resumed or trained.

    A complete run with the same configuration is reused (and said so); an
    unfinished or half-created one is resumed; a run with another configuration,
    one trained by another engine version (whose results differ in their last
    bits: :data:`mlpsim.kernels.ENGINE_VERSION`) or a corrupt one is an error
    naming the problem. ``stop`` is passed to :func:`mlpsim.train`.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not is_run_dir(run_dir):
        raise RunError(f"{str(run_dir)!r} exists but holds no mlpsim run; delete it or choose another folder")
    if (run_dir / "manifest.json").exists():
        manifest, old = inspect_run(run_dir, arrays=False)
        if old.to_dict() != config.to_dict():
            raise RunError(f"{str(run_dir)!r} holds a run with a different configuration; "
                           "choose another folder, or pass --run to analyse that run as it is")
        engine = manifest.get("engine", {}).get("version")
        if manifest["status"] == "complete" and engine != kernels.ENGINE_VERSION:
            raise RunError(f"{str(run_dir)!r} holds a run trained by engine version {engine}, and this mlpsim "
                           f"trains with version {kernels.ENGINE_VERSION} (other last bits): delete it to train "
                           "it again, or pass --run to analyse that run as it is")
        if manifest["status"] == "complete":
            log(f"reusing the finished run in {run_dir} (same configuration; nothing trained)")
            return load_run(run_dir)
        if manifest["status"] == "failed":
            raise RunError(f"the run in {str(run_dir)!r} failed ({manifest.get('reason')}); delete it to "
                           "train again")
        log(f"resuming the unfinished run in {run_dir}")
        return train(config, run_dir, resume=True, progress=progress, stop=stop)
    log(f"training into {run_dir}")
    return train(config, run_dir, resume=run_dir.exists(), progress=progress, stop=stop)
