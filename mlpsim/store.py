"""The run directory: every byte of the on-disk contract between training and everything else.

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
``.lock``              the writer's lock (see below); holds its pid
=====================  =======================================================

This module is the only code that writes or checks these files:

* **Writing** (:class:`RunWriter`). The arrays are preallocated once (with the
  file system's real allocation, so a full disk is reported then, not as a
  crash later), then filled with positional writes whose byte counts are
  checked; the process's memory does not grow with the number of checkpoints.
  A *commit* fsyncs the array files, then atomically replaces ``state.npz`` and
  then ``manifest.json`` (temporary file, fsync, ``os.replace``). A process
  killed at any moment leaves a manifest that describes only data already on
  disk, and a state from which the run continues bit-identically. The
  manifest's checkpoint count never goes backwards.
* **One writer** (:class:`WriteLock`). A process holds an advisory lock on
  ``.lock`` while it writes; the kernel releases it when the process dies,
  however it dies. A second writer is refused with the holder's pid.
* **Checking** (:func:`inspect_run`). Every reader goes through one
  validation: the JSON files parse; the configuration's hash equals the
  manifest's ``config_sha256`` (a hand edit is refused); the manifest agrees
  with the configuration; every array file is present, with the shape and
  dtype its header and the manifest imply, and exactly as many bytes (a
  truncated file is refused, never resumed over); the data and masks load.
  Every message names the file and what is wrong.
* **Sizes** (:func:`run_needs`): the disk and memory a configuration needs,
  computed from the configuration alone, so absurd ones are refused in
  milliseconds, before anything is allocated.
"""
from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import os
import platform
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from .config import Config, ConfigError
from .errors import file_read_problem

FORMAT_VERSION = 1
STATUSES = ("running", "complete", "failed", "interrupted")
LOCK_NAME = ".lock"
#: Names a run directory may hold; ``--overwrite`` deletes a folder only when it holds
#: nothing else (so it never deletes a folder of the user's).
RUN_FILES = ("config.json", "manifest.json", "params.npy", "loss.npy", "loss_steps.npy", "steps.npy",
             "data.npz", "test.npz", "test_loss.npy", "state.npz", "masks.npz", "init_params.npy", LOCK_NAME)


class RunError(RuntimeError):
    """A run directory is missing, incomplete, corrupt or inconsistent; the message says which file."""


class RunLocked(RunError):
    """Another process is writing this run directory."""


# ----------------------------------------------------------------- small I/O
def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import numba

    from . import __version__
    return {"mlpsim": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def host_info() -> dict:
    import numba
    return {"platform": platform.platform(), "machine": platform.machine(),
            "threads": numba.get_num_threads(), "python_executable": sys.executable}


def atomic_write_bytes(path: Path, data: bytes):
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    On failure (a full disk, say) the temporary file is removed and the old file stays.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_file():  # renaming over it would replace a folder's
        raise OSError(errno.EEXIST, "exists and is not a regular file; not replaced", str(path))  # link, a device
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            written = fh.write(data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(tmp))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
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


#: Output folders of the commands, by the file that marks each (checked in this order: an atlas
#: and a study both write summary.json).
OUTPUT_MARKERS = (("atlas", "atlas.json"), ("sweep", "sweep.json"), ("study", "meta.json"), ("study", "summary.json"),
                  ("report", "notebook.html"))


def output_kind(folder) -> str | None:
    """What ``folder`` holds: "run", "atlas", "sweep", "study", "report", or None (nothing of mlpsim's)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if is_run_dir(folder):
        return "run"
    return next((kind for kind, marker in OUTPUT_MARKERS if (folder / marker).exists()), None)


def check_output_folder(folder, kind: str, option: str = "--out"):
    """A ConfigError, before any work, unless ``folder`` can take a ``kind`` output: it must not be a
    file, nor hold another command's output (a study into a run directory or an atlas would mix
    their files, and the next reader would take one for the other)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {str(folder)!r} is a file; name a folder")
    found = output_kind(folder)
    if found is not None and found != kind:
        what = {"run": "a training run", "atlas": "an atlas", "sweep": "a sweep", "study": "a study's output",
                "report": "a report"}[found]
        raise ConfigError(f"{option} {str(folder)!r} holds {what}; write the {kind} into another folder")


def check_output_file(path, option: str) -> Path:
    """``path`` as a file to (re)write, or a ConfigError naming ``option``: it must have a name and
    must not be an existing folder, device or other non-regular file (checked before any work)."""
    raw = str(path)
    path = Path(path)
    if not raw.strip() or not path.name:
        raise ConfigError(f"{option} must name a file, got {raw!r}")
    if os.path.lexists(path) and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, a link or a pipe)"
        raise ConfigError(f"{option} {str(path)!r} is {kind}; name a file to write")
    return path


def atomic_write_json(path: Path, obj):
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npz(path: Path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: Path, array):
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


def read_json(path: Path, missing: str | None = None) -> dict:
    """A JSON object from ``path``; a missing, unreadable or malformed file is a RunError naming it
    (``missing``: the message for a file that does not exist; by default, a run directory's)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise RunError(missing or f"{path.parent} is not a complete mlpsim run directory ({path.name} is missing)"
                       ) from None
    except IsADirectoryError:
        raise RunError(f"{path} is a directory, not a file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RunError(f"{path} is corrupt (not valid JSON: {str(exc)[:120]})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path} is corrupt (expected a JSON object, found {type(obj).__name__})")
    return obj


# ----------------------------------------------------------------- the lock
class WriteLock:
    """The advisory lock a writer holds on a run directory (``flock`` on ``DIR/.lock``).

    The kernel releases it when the process exits or is killed, so a stale lock
    file never blocks anyone. Where ``fcntl`` does not exist (Windows) locking
    is skipped.
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self.fd = None

    def acquire(self) -> "WriteLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = _read_pid(self.path)
            raise RunLocked(f"run directory {str(self.path.parent)!r} is being written by another process"
                            + (f" (pid {pid})" if pid else "") + "; wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_pid(path: Path):
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def lock_holder(folder):
    """The pid of the process writing ``folder`` now, or None when no process holds its lock."""
    path = Path(folder) / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ----------------------------------------------------------------- sizes
def n_checkpoints(train) -> int:
    """Number of checkpoints of a TrainConfig's schedule, without building it."""
    if train.checkpoint_steps:
        return len(set(train.checkpoint_steps) | {0, train.steps})
    return train.steps // train.checkpoint_every + 1 + (1 if train.steps % train.checkpoint_every else 0)


def n_params(widths) -> int:
    """Parameters of a network with these widths (weights and biases), without building it."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(widths[:-1], widths[1:]))


def run_needs(config: Config, threads: int = None) -> dict:
    """The disk (bytes) and memory (bytes, approximate peak) a run of ``config`` needs.

    Computed with Python integers from the configuration alone: nothing is
    allocated, so an absurd configuration is measured in microseconds.
    """
    import numba
    t, m, d = config.train, config.model, config.data
    E, P, S, C = t.instances, n_params(m.widths), t.steps, n_checkpoints(t)
    item = 8 if t.dtype == "float64" else 4
    d_in, d_out = m.widths[0], m.widths[-1]
    n = d.n if d.target != "file" else 0
    n_test = d.n_test if d.target != "file" else 0
    disk = (E * C * P * item + E * C * 8 + E * S * 8 + C * 8 + (n + n_test) * (d_in + d_out) * 8
            + (E * C * 8 if n_test else 0) + 3 * E * P * item + E * P * 8 + 65536)
    threads = threads or numba.config.NUMBA_NUM_THREADS
    chunk = 256
    n_chunks = -(-max(n, 1) // chunk)
    rows = sum(m.widths[1:])
    interval = max(1, min(S, 65536, t.checkpoint_every if not t.checkpoint_steps else S))  # train.MAX_PIECE
    memory = (E * P * (8 + 3 * item + 8 + 8)          # initial draw, thetas + 2 optimizer states, G, a copy
              + E * n_chunks * P * 8                   # per-chunk partial gradients
              + 2 * threads * rows * chunk * item      # per-thread activations and deltas
              + (n + n_test) * (d_in + d_out) * (8 + item) * 2
              + E * interval * 8                       # losses of one checkpoint interval
              + P * 64 + 64 * 2**20)                   # layout arrays, and the interpreter's own
    teacher = 0
    if d.target == "teacher":  # its parameters, and two layers of its activations over every point
        tw = d.teacher_widths
        teacher = n_params(tw) * 8 + 2 * (n + n_test) * max(tw) * 8
    return {"disk": disk, "memory": memory + teacher, "teacher_memory": teacher, "instances": E, "n_params": P,
            "checkpoints": C}


def available_memory() -> int:
    """Memory available to a new allocation (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(b) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{int(b)} B"


def check_memory(config: Config, threads: int = None):
    """Refuse (ConfigError, with the numbers) a configuration that cannot fit in memory."""
    need = run_needs(config, threads)
    avail = available_memory()
    if avail is not None and need["memory"] > avail and need["teacher_memory"] > need["memory"] / 2:
        raise ConfigError(
            f"the teacher network data.teacher_widths = {list(config.data.teacher_widths)} needs about "
            f"{fmt_bytes(need['teacher_memory'])} of memory and {fmt_bytes(avail)} is available: use a "
            "smaller teacher")
    if avail is not None and need["memory"] > avail:
        raise ConfigError(
            f"this run needs about {fmt_bytes(need['memory'])} of memory ({need['instances']} instance(s) x "
            f"{need['n_params']} parameters, {config.data.n} data points) and {fmt_bytes(avail)} is available: "
            "use fewer instances, a smaller network or fewer data points")
    return need


def check_disk(folder, needed: int):
    """Refuse (OSError ENOSPC, with the numbers) a run that cannot fit on the disk of ``folder``."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"the run needs {fmt_bytes(needed)} and {fmt_bytes(free)} is free on the disk "
                                    f"of {str(probe)!r}", str(folder))


# ----------------------------------------------------------------- array files
def _npy_header(path: Path):
    """``(shape, dtype, data offset, file size)`` of an .npy file; RunError if it is not one."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing from {str(path.parent)!r}") from None
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise RunError(f"{path} is corrupt (not a valid .npy file: {str(exc)[:120]})") from None
    if fortran:
        raise RunError(f"{path} is corrupt (Fortran order; mlpsim writes C order)")
    return tuple(shape), np.dtype(dtype), offset, size


def check_npy(path: Path, shape: tuple, dtype) -> int:
    """Check an .npy file's header and size against ``shape`` and ``dtype``; return its data offset."""
    shape_, dtype_, offset, size = _npy_header(Path(path))
    if shape_ != tuple(shape) or dtype_ != np.dtype(dtype):
        raise RunError(f"{path} has shape {shape_} and dtype {dtype_}, expected {tuple(shape)} and "
                       f"{np.dtype(dtype)} (the run's configuration says so)")
    expected = offset + int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    if size != expected:
        raise RunError(f"{path} is {'truncated' if size < expected else 'too long'}: {size} bytes, expected "
                       f"{expected} ({offset} header + {'x'.join(map(str, shape))} {np.dtype(dtype)})")
    return offset


class NpyRows:
    """A preallocated ``.npy`` file written with positional writes.

    Rows are never held in memory by this object, and the file is never
    memory-mapped for writing, so resident memory stays flat however large the
    file grows. Creation allocates the whole file (``posix_fallocate`` where the
    system has it), so a disk that cannot hold it is an ``OSError`` now, not a
    crash when a page is first touched. Every write checks its byte count.
    """

    def __init__(self, path: Path, shape: tuple, dtype, fill=None, create=True):
        self.path = Path(path)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.fd = None
        nbytes = int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize
        if create:
            header = io.BytesIO()  # magic string and header, as np.save writes them
            np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                          "fortran_order": False, "shape": self.shape})
            head = header.getvalue()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, head, 0, self.path)
                if hasattr(os, "posix_fallocate"):
                    try:
                        os.posix_fallocate(fd, len(head), max(nbytes, 1))
                    except OSError as exc:
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                            raise OSError(exc.errno, f"no room for {fmt_bytes(nbytes)}", str(self.path)) from None
                        os.ftruncate(fd, len(head) + nbytes)  # a file system without fallocate
                else:  # pragma: no cover
                    os.ftruncate(fd, len(head) + nbytes)
                os.ftruncate(fd, len(head) + nbytes)
                if fill is not None:
                    block = np.full(min(max(nbytes // self.dtype.itemsize, 1), 2**20), fill, self.dtype).tobytes()
                    pos = 0
                    while pos < nbytes:
                        piece = block[:min(len(block), nbytes - pos)]
                        _write_all(fd, piece, len(head) + pos, self.path)
                        pos += len(piece)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        self.offset = check_npy(self.path, self.shape, self.dtype)
        self.fd = os.open(self.path, os.O_RDWR)

    def write(self, index: tuple, values: np.ndarray):
        """Write a C-contiguous block starting at ``index`` (a leading-axes position)."""
        flat = np.ravel_multi_index(tuple(index) + (0,) * (len(self.shape) - len(index)), self.shape)
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        _write_all(self.fd, data, self.offset + int(flat) * self.dtype.itemsize, self.path)

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _write_all(fd: int, data: bytes, offset: int, path):
    """``pwrite`` all of ``data`` at ``offset``; a short write that makes no progress is ENOSPC."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write: no space left on device", str(path))
        view = view[n:]
        offset += n


# ----------------------------------------------------------------- checking a run directory
MANIFEST_FIELDS = {"format_version": int, "status": str, "reason": str, "checkpoints_written": int,
                   "checkpoints_total": int, "steps_done": int, "steps_total": int, "instances": int,
                   "n_params": int, "dtype": str, "config_sha256": str, "diverged": list}


def is_run_dir(folder) -> bool:
    """Does ``folder`` look like a run directory (possibly half-created): only mlpsim's files in it?"""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    ours = {n for n in names if n in RUN_FILES or (n.endswith(".tmp") and n[:-4] in RUN_FILES)}
    return bool(ours & {"config.json", "config.json.tmp", "manifest.json", "manifest.json.tmp", LOCK_NAME}) \
        and names == ours


def inspect_run(path, arrays: bool = True) -> tuple:
    """Validate a run directory; return ``(manifest, config)``.

    Checks everything described in the module docstring; ``arrays=False``
    skips the array files (for a quick status). Raises RunError naming the
    file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise RunError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise RunError(f"{str(path)!r} is a file, not a run directory (a run directory holds manifest.json, "
                       "config.json, params.npy, ...)")
    if not (path / "manifest.json").exists() and not (path / "config.json").exists():
        raise RunError(f"{str(path)!r} is not an mlpsim run directory (no manifest.json or config.json)")
    manifest = read_json(path / "manifest.json")
    for key, kind in MANIFEST_FIELDS.items():
        if key not in manifest:
            raise RunError(f"{path / 'manifest.json'} is corrupt: the field {key!r} is missing")
        if not isinstance(manifest[key], kind) or (kind is int and isinstance(manifest[key], bool)):
            raise RunError(f"{path / 'manifest.json'} is corrupt: {key} must be a {kind.__name__}, "
                           f"found {manifest[key]!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise RunError(f"{path}: unsupported run format {manifest['format_version']!r} "
                       f"(this mlpsim reads format {FORMAT_VERSION})")
    if manifest["status"] not in STATUSES:
        raise RunError(f"{path / 'manifest.json'} is corrupt: status {manifest['status']!r} is none of "
                       f"{', '.join(STATUSES)}")
    raw = read_json(path / "config.json")
    try:
        config = Config.from_dict(raw)
    except (ConfigError, TypeError, ValueError) as exc:
        raise RunError(f"{path / 'config.json'} is not a valid configuration: {exc}") from None
    if config.sha256() != manifest["config_sha256"]:
        raise RunError(f"{path / 'config.json'} does not match the run: its hash differs from the manifest's "
                       "config_sha256, so it was edited after training started. Restore it, or train again "
                       "with --overwrite")
    t = config.train
    expect = {"instances": t.instances, "steps_total": t.steps, "dtype": t.dtype,
              "checkpoints_total": n_checkpoints(t), "n_params": n_params(config.model.widths)}
    for key, value in expect.items():
        if manifest[key] != value:
            raise RunError(f"{path / 'manifest.json'} is inconsistent: {key} is {manifest[key]!r}, but the "
                           f"configuration implies {value!r}")
    C, k = manifest["checkpoints_total"], manifest["checkpoints_written"]
    if not 0 <= k <= C:
        raise RunError(f"{path / 'manifest.json'} is corrupt: {k} of {C} checkpoints written")
    if manifest["status"] == "complete" and k != C:
        raise RunError(f"{path / 'manifest.json'} says complete, but only {k} of {C} checkpoints are written")
    if arrays:
        check_arrays(path, manifest, config)
    return manifest, config


def check_arrays(path: Path, manifest: dict, config: Config):
    """Every array file of a run: present, of the right shape, dtype and byte size; data loadable."""
    t = config.train
    E, C, P, S = t.instances, manifest["checkpoints_total"], manifest["n_params"], t.steps
    check_npy(path / "params.npy", (E, C, P), t.dtype)
    check_npy(path / "loss.npy", (E, C), np.float64)
    check_npy(path / "loss_steps.npy", (E, S), np.float64)
    check_npy(path / "steps.npy", (C,), np.int64)
    if not np.array_equal(np.load(path / "steps.npy"), t.schedule()):
        raise RunError(f"{path / 'steps.npy'} does not hold the configuration's checkpoint schedule")
    d_in, d_out = config.model.widths[0], config.model.widths[-1]
    load_xy(path / "data.npz", d_in, d_out)
    has_test = (path / "test.npz").exists() or (path / "test_loss.npy").exists()
    if has_test:
        load_xy(path / "test.npz", d_in, d_out)
        check_npy(path / "test_loss.npy", (E, C), np.float64)
    if (path / "masks.npz").exists():
        load_npz(path / "masks.npz")
    if (path / "state.npz").exists():
        state = load_npz(path / "state.npz")
        for key in ("thetas", "state1", "state2"):
            if key not in state or state[key].shape != (E, P):
                raise RunError(f"{path / 'state.npz'} is corrupt: {key} should be ({E}, {P})")
        if "active" not in state or "checkpoint" not in state or not 0 <= int(state["checkpoint"]) < C:
            raise RunError(f"{path / 'state.npz'} is corrupt: active or checkpoint missing or out of range")


def load_npz(path: Path) -> dict:
    """Every array of an .npz file, or a RunError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RunError(f"{Path(path).name} is missing from {str(Path(path).parent)!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise RunError(f"{path} is corrupt ({file_read_problem(exc)})") from None


def load_xy(path: Path, d_in: int, d_out: int):
    """``x`` (n, d_in) and ``y`` (n, d_out) from a run's data file, checked."""
    z = load_npz(path)
    x, y = z.get("x"), z.get("y")
    if x is None or y is None or x.ndim != 2 or y.ndim != 2 or x.shape[1] != d_in or y.shape[1] != d_out \
            or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise RunError(f"{path} is corrupt: expected x (n, {d_in}) and y (n, {d_out}), found "
                       f"{None if x is None else x.shape} and {None if y is None else y.shape}")
    return x, y


# ----------------------------------------------------------------- writing a run directory
class RunWriter:
    """The files of one run directory, open for writing by the process that holds its lock.

    ``create`` writes a new run; ``reopen`` continues one that :func:`inspect_run`
    accepted. The training loop hands over rows and losses; :meth:`commit`
    makes them durable.
    """

    def __init__(self, out: Path, config: Config, n_params_: int, has_test: bool, manifest: dict):
        self.out, self.config, self.manifest = Path(out), config, manifest
        t = config.train
        self.E, self.P, self.schedule = t.instances, n_params_, t.schedule()
        self.C = len(self.schedule)
        self.dtype = np.dtype(t.dtype)
        self.has_test = has_test
        self.files = []

    @classmethod
    def create(cls, out, config: Config, net, x, y, x_test=None, y_test=None, init_params=None) -> "RunWriter":
        out = Path(out)
        manifest = {
            "format_version": FORMAT_VERSION, "status": "running", "reason": "",
            "checkpoints_written": 0, "checkpoints_total": n_checkpoints(config.train),
            "steps_done": 0, "steps_total": config.train.steps,
            "instances": config.train.instances, "n_params": net.n_params, "dtype": config.train.dtype,
            "config_sha256": config.sha256(), "versions": versions(), "host": host_info(),
            "engine": engine_info(), "diverged": [], "started": now(), "updated": now(), "finished": None,
        }
        w = cls(out, config, net.n_params, x_test is not None, manifest)
        atomic_write_json(out / "config.json", config.to_dict())
        atomic_save_npz(out / "data.npz", x=np.asarray(x, np.float64), y=np.asarray(y, np.float64))
        if any(m is not None for m in net.masks):
            atomic_save_npz(out / "masks.npz", **{f"mask_{l + 1}": m for l, m in enumerate(net.masks)
                                                  if m is not None})
        if init_params is not None:
            atomic_save_npy(out / "init_params.npy", init_params)
        if x_test is not None:
            atomic_save_npz(out / "test.npz", x=x_test, y=y_test)
        atomic_save_npy(out / "steps.npy", w.schedule)
        w.open_arrays(create=True)
        atomic_write_json(out / "manifest.json", manifest)  # last: the run exists from here on
        return w

    @classmethod
    def reopen(cls, out, config: Config, n_params_: int) -> tuple:
        """``(writer, state)``: an existing run's files, and its resume point (state.npz)."""
        out = Path(out)
        manifest, _ = inspect_run(out)
        if not (out / "state.npz").exists():
            raise RunError(f"{out / 'state.npz'} is missing: the run cannot be resumed; start it again "
                           "with --overwrite")
        w = cls(out, config, n_params_, (out / "test.npz").exists(), manifest)
        w.open_arrays(create=False)
        return w, load_npz(out / "state.npz")

    def open_arrays(self, create: bool):
        E, C, P, S = self.E, self.C, self.P, self.config.train.steps
        self.params_f = NpyRows(self.out / "params.npy", (E, C, P), self.dtype, create=create)
        self.loss_f = NpyRows(self.out / "loss.npy", (E, C), np.float64, fill=np.nan, create=create)
        self.loss_steps_f = NpyRows(self.out / "loss_steps.npy", (E, S), np.float64, fill=np.nan, create=create)
        self.test_loss_f = (NpyRows(self.out / "test_loss.npy", (E, C), np.float64, fill=np.nan, create=create)
                            if self.has_test else None)
        self.files = [f for f in (self.params_f, self.loss_f, self.loss_steps_f, self.test_loss_f) if f is not None]

    def write_params(self, c: int, rows: np.ndarray):
        for e in range(self.E):
            self.params_f.write((e, c), rows[e])

    def write_loss(self, c: int, loss: np.ndarray, test: bool = False):
        f = self.test_loss_f if test else self.loss_f
        for e in range(self.E):
            f.write((e, c), loss[e:e + 1])

    def write_loss_steps(self, s0: int, losses: np.ndarray):
        for e in range(self.E):
            self.loss_steps_f.write((e, s0), losses[e])

    def commit(self, last: int, status="running", reason="", state=None, diverged=()):
        """Make checkpoints ``0 .. last`` durable and record them (never fewer than before).

        ``state`` (a dict of arrays) is the new resume point; it must describe
        exactly checkpoint ``state["checkpoint"]``.
        """
        for f in self.files:
            f.sync()
        if state is not None:
            atomic_save_npz(self.out / "state.npz", **state)
        last = max(last, self.manifest["checkpoints_written"] - 1)
        self.manifest.update(status=status, reason=reason, checkpoints_written=last + 1,
                             steps_done=int(self.schedule[last]), diverged=list(diverged),
                             updated=now(), host=host_info())
        if status != "running":
            self.manifest["finished"] = now()
        atomic_write_json(self.out / "manifest.json", self.manifest)

    def close(self):
        for f in self.files:
            f.close()


def engine_info() -> dict:
    """What fixes the order of every floating-point operation of training (see :mod:`mlpsim.kernels`).

    ``chunk`` and ``lanes`` are float64's counts; float32 has twice as many of each."""
    from . import kernels, simd
    return {"version": kernels.ENGINE_VERSION, "chunk": kernels.CHUNK, "lanes": kernels.LANES,
            "vector_bytes": simd.VECTOR_BYTES, "chunk_vectors": kernels.CHUNK_VECTORS}


def clear_run_dir(out: Path):
    """Delete everything in a run directory except its lock file (whose lock the caller holds)."""
    for p in Path(out).iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# ----------------------------------------------------------------- reading
class Run:
    """A run directory opened for reading; arrays are memory-mapped, read lazily.

    Opening validates the whole directory (:func:`inspect_run`).

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
        from .model import MLP
        self.path = Path(path)
        self.manifest, self.config = inspect_run(self.path)
        status = self.manifest["status"]
        if status != "complete" and not allow_incomplete:
            reason = self.manifest.get("reason") or ""
            pid = lock_holder(self.path)
            read = "(in Python, load_run(..., allow_incomplete=True) reads the checkpoints written so far)"
            if pid is not None:
                hint = (f"Process {pid} is training it now: wait until it finishes {read}."
                        if pid > 0 else f"Another process is training it now: wait until it finishes {read}.")
            elif status != "failed":
                hint = f"Continue it with `mlpsim train --resume --out {self.path}` {read}."
            else:
                hint = f"It cannot be continued (it diverged) {read}."
            raise RunError(
                f"run {str(self.path)!r} is {status}" + (f" ({reason})" if reason else "")
                + f": {self.manifest['checkpoints_written']} of {self.manifest['checkpoints_total']} "
                  "checkpoints written. " + hint)
        masks = None
        if (self.path / "masks.npz").exists():
            z = load_npz(self.path / "masks.npz")
            L = len(self.config.model.widths) - 1
            masks = [z.get(f"mask_{l + 1}") for l in range(L)]
        m = self.config.model
        try:
            self.net = MLP(m.widths, activation=m.activation, masks=masks, leaky_slope=m.leaky_slope)
        except ValueError as exc:
            raise RunError(f"{self.path / 'masks.npz'} is corrupt: {exc}") from None
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
        m = self.config.model
        return load_xy(self.path / "data.npz", m.widths[0], m.widths[-1])

    def test_data(self):
        """The held-out data ``(x, y)``, or None when the run has none."""
        if not (self.path / "test.npz").exists():
            return None
        m = self.config.model
        return load_xy(self.path / "test.npz", m.widths[0], m.widths[-1])

    def healthy_instances(self) -> np.ndarray:
        """Indices of the instances that did not diverge (see ``on_divergence``)."""
        bad = {d.get("instance") for d in self.manifest.get("diverged", []) if isinstance(d, dict)}
        return np.array([e for e in range(self.n_instances) if e not in bad], dtype=np.int64)

    def select_instances(self, instances) -> "Run":
        """A view of this run restricted to ``instances`` (arrays are copied into memory).

        ``instances``: instance numbers (distinct, in ``0 .. n_instances - 1``) or a boolean mask of
        length ``n_instances`` (e.g. ``run.final_loss() < 0.1``).
        """
        import copy
        raw = np.asarray(instances)
        E = self.n_instances
        if raw.dtype == bool:  # a mask, not the numbers 0 and 1
            if raw.shape != (E,):
                raise ValueError(f"a boolean mask of instances must have shape ({E},), got {raw.shape}")
            idx = np.flatnonzero(raw)
        elif raw.ndim == 1 and np.issubdtype(raw.dtype, np.integer):
            idx = raw.astype(np.int64)
            if np.any((idx < 0) | (idx >= E)) or np.unique(idx).size != idx.size:
                raise ValueError(f"instances must be distinct numbers in [0, {E - 1}], got {idx.tolist()}")
        else:
            raise ValueError(f"instances must be a list of instance numbers or a boolean mask of length {E}, "
                             f"got {instances!r}")
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
    """Open a run directory written by :func:`mlpsim.train` (validated, see :func:`inspect_run`).

    Parameters
    ----------
    path : str or Path
    allow_incomplete : bool
        A run whose manifest is not ``complete`` raises :class:`RunError`
        unless this is True; then the arrays hold the committed prefix only.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a run directory (a str or Path), got {path!r}")
    return Run(path, allow_incomplete=allow_incomplete)
