"""The run directory: the on-disk contract between training and everything else.

=====================  =======================================================
file                   contents
=====================  =======================================================
``config.json``        the fully resolved :class:`mlpsim.config.Config`
``manifest.json``      format version, status (running / complete / failed /
                       interrupted) and reason, checkpoints written, versions,
                       threads, platform, times, sha256 of the config
``params.npy``         (instances, checkpoints, n_params) in the run's dtype
``loss.npy``           (instances, checkpoints) float64, loss at each checkpoint
``loss_steps.npy``     (instances, steps) float64, loss before each update
``steps.npy``          (checkpoints,) int64 step numbers of the checkpoints
``data.npz``           ``x`` (n, d_in) and ``y`` (n, d_out) actually used
``test.npz``           (with a test set) the held-out ``x`` and ``y``
``test_loss.npy``      (with a test set) (instances, checkpoints) float64
``state.npz``          what resuming needs: parameters and optimizer state at
                       the last committed checkpoint
``masks.npz``          (if the network is masked) ``mask_1 ... mask_L``
``init_params.npy``    (if given) the explicit initial parameters
=====================  =======================================================

Durability: the arrays are preallocated once, then filled with positional
writes (so the process's memory does not grow with the number of
checkpoints). A *commit* first fsyncs the array files, then atomically
replaces ``state.npz`` and then ``manifest.json`` (temporary file, fsync,
``os.replace``). A process killed at any moment therefore leaves a manifest
that describes only data already on disk, and a state from which the run
continues bit-identically.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
STATUSES = ("running", "complete", "failed", "interrupted")


class RunError(RuntimeError):
    """A run directory is missing, incomplete, or inconsistent."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import numba

    from . import __version__
    return {"mlpsim": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def atomic_write_bytes(path: Path, data: bytes):
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def to_jsonable(obj):
    """Plain JSON types from numpy scalars and arrays, tuples, and non-finite floats (None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: Path, obj):
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npz(path: Path, **arrays):
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: Path, array):
    import io
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NpyRows:
    """A preallocated ``.npy`` file written with positional writes.

    Rows are never held in memory by this object, and the file is never
    memory-mapped for writing, so resident memory stays flat however large the
    file grows.
    """

    def __init__(self, path: Path, shape: tuple, dtype, fill=None, create=True):
        self.path = path
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        if create:
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
            if fill is not None:
                mm[...] = fill
            mm.flush()
            del mm
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape_, _, dtype_ = read_header(fh)
            self.offset = fh.tell()
        if tuple(shape_) != self.shape or np.dtype(dtype_) != self.dtype:
            raise RunError(f"{path} has shape {shape_} and dtype {dtype_}, "
                           f"expected {self.shape} and {self.dtype}")
        self.fd = os.open(path, os.O_RDWR)

    def write(self, index: tuple, values: np.ndarray):
        """Write a C-contiguous block starting at ``index`` (a leading-axes position)."""
        flat = np.ravel_multi_index(tuple(index) + (0,) * (len(self.shape) - len(index)), self.shape)
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        os.pwrite(self.fd, data, self.offset + int(flat) * self.dtype.itemsize)

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunError(f"{path.parent} is not an mlpsim run directory ({path.name} is missing)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is corrupt: {exc}") from None


class Run:
    """A run directory opened for reading; arrays are memory-mapped, read lazily.

    Attributes
    ----------
    path : Path
    config : mlpsim.Config
    manifest : dict
    net : mlpsim.MLP
    steps : (checkpoints,) int64
    params : (instances, checkpoints, n_params), memory-mapped
    loss : (instances, checkpoints) float64
    loss_steps : (instances, steps) float64
    """

    def __init__(self, path, allow_incomplete: bool = False):
        from .config import Config
        from .model import MLP
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunError(f"run directory {str(self.path)!r} does not exist")
        self.manifest = read_json(self.path / "manifest.json")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise RunError(f"{self.path}: unsupported run format {self.manifest.get('format_version')!r}")
        self.config = Config.from_dict(read_json(self.path / "config.json"))
        status = self.manifest["status"]
        if status != "complete" and not allow_incomplete:
            reason = self.manifest.get("reason") or ""
            raise RunError(
                f"run {str(self.path)!r} is {status}"
                + (f" ({reason})" if reason else "")
                + f": {self.manifest['checkpoints_written']} of {self.manifest['checkpoints_total']} "
                  "checkpoints written. Resume it with `mlpsim train --resume`, or pass "
                  "allow_incomplete=True to read the completed prefix.")
        masks = None
        if (self.path / "masks.npz").exists():
            with np.load(self.path / "masks.npz") as z:
                L = len(self.config.model.widths) - 1
                masks = [z[f"mask_{l + 1}"] if f"mask_{l + 1}" in z else None for l in range(L)]
        m = self.config.model
        self.net = MLP(m.widths, activation=m.activation, masks=masks, leaky_slope=m.leaky_slope)
        k = int(self.manifest["checkpoints_written"])
        self.steps = np.load(self.path / "steps.npy")[:k]
        self.params = np.load(self.path / "params.npy", mmap_mode="r")[:, :k]
        self.loss = np.load(self.path / "loss.npy", mmap_mode="r")[:, :k]
        n_steps = int(self.steps[-1]) if k else 0
        self.loss_steps = np.load(self.path / "loss_steps.npy", mmap_mode="r")[:, :n_steps]
        test = self.path / "test_loss.npy"
        self.test_loss = np.load(test, mmap_mode="r")[:, :k] if test.exists() else None

    @property
    def complete(self) -> bool:
        return self.manifest["status"] == "complete"

    @property
    def n_instances(self) -> int:
        return self.params.shape[0]

    def data(self):
        """The training data ``(x, y)`` used by the run."""
        with np.load(self.path / "data.npz") as z:
            return z["x"], z["y"]

    def test_data(self):
        """The held-out data ``(x, y)``, or None when the run has none."""
        if not (self.path / "test.npz").exists():
            return None
        with np.load(self.path / "test.npz") as z:
            return z["x"], z["y"]

    def healthy_instances(self) -> np.ndarray:
        """Indices of the instances that did not diverge (see ``on_divergence``)."""
        bad = {d["instance"] for d in self.manifest.get("diverged", [])}
        return np.array([e for e in range(self.n_instances) if e not in bad], dtype=np.int64)

    def select_instances(self, instances) -> "Run":
        """A view of this run restricted to ``instances`` (arrays are copied into memory)."""
        import copy
        idx = np.asarray(instances, dtype=np.int64)
        if idx.size == 0:
            raise RunError(f"run {str(self.path)!r}: no instances selected")
        sub = copy.copy(self)
        # the selection's own instance numbers; the manifest's "diverged" list refers to the
        # run's numbering, so the copy keeps only the entries of the selected instances
        sub.instance_ids = np.asarray(getattr(self, "instance_ids", np.arange(self.n_instances)))[idx]
        sub.manifest = dict(self.manifest, diverged=[
            dict(d, instance=int(np.flatnonzero(idx == d["instance"])[0]))
            for d in self.manifest.get("diverged", []) if d["instance"] in set(idx.tolist())])
        sub.params = np.asarray(self.params[idx])
        sub.loss = np.asarray(self.loss[idx])
        sub.loss_steps = np.asarray(self.loss_steps[idx])
        sub.test_loss = None if self.test_loss is None else np.asarray(self.test_loss[idx])
        return sub

    def final_loss(self) -> np.ndarray:
        """Loss at the last written checkpoint, per instance."""
        return np.asarray(self.loss[:, -1])

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, status={self.manifest['status']!r}, "
                f"params={self.params.shape}, net={self.net!r})")


def load_run(path, allow_incomplete: bool = False) -> Run:
    """Open a run directory written by :func:`mlpsim.train`.

    Parameters
    ----------
    path : str or Path
    allow_incomplete : bool
        A run whose manifest is not ``complete`` raises :class:`RunError`
        unless this is True; then the arrays hold the committed prefix only.
    """
    return Run(path, allow_incomplete=allow_incomplete)


def host_info() -> dict:
    import numba
    return {"platform": platform.platform(), "machine": platform.machine(),
            "threads": numba.get_num_threads(), "python_executable": sys.executable}
