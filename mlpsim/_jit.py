"""The one place where numba compilation flags are set.

Every kernel in :mod:`mlpsim.kernels` is compiled with these options so that the
training path is bit-reproducible:

* ``fastmath=False``: no reassociation of sums and no fused multiply-add
  contraction, so a sum is computed in exactly the order the code states.
* ``cache=True``: compiled machine code is stored next to the module, so a second
  process starts training in about a second instead of recompiling. Numba
  invalidates a cache entry only when the function's *own* file changes: after
  editing ``kernels.py``, delete ``mlpsim/__pycache__/kernels_eval*.nb*`` too
  (its kernels inline ``kernels.forward_chunk``); after editing ``simd.py`` or
  ``simd_ir.py``, every ``mlpsim/__pycache__/*.nb*`` (their IR is compiled into
  every kernel); or run with ``NUMBA_CACHE_DIR`` pointing to an empty folder.
  A fresh install starts with an empty cache. Several processes may fill one
  cache at once (a sweep's workers on a fresh install): see :class:`_LockedCacheFile`.
* ``boundscheck=False``: kernels are only called by the validating Python API,
  which guarantees shapes.
* ``error_model="numpy"``: division by zero gives inf/nan instead of raising, so a
  diverging run is reported by the training loop (with instance and step) rather
  than by an obscure exception inside compiled code.

It also sets how long idle OpenMP threads spin (:data:`OMP_SPIN`), before numba
starts its threads.
"""
import contextlib
import os

import numba
import numpy as np
from numba.core import caching

#: GNU OpenMP's spin count for a parallel kernel's idle threads, unless the user chose one
#: (``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` set). libgomp's default, 300000 spins, is
#: harmless while one mlpsim process has the cores, and a disaster when two do (two
#: trainings, a study beside a sweep): each process's waiting thread spins on the core the
#: other process's working thread needs, and every parallel region (two per training
#: step) then waits for a scheduler time slice. Measured on the Xeon model 207 (2 cores,
#: seed step, 5 nets, 2 threads each, two processes at once): 15.6 ms per step with the
#: default, 0.50-0.83 ms with 1000 spins, 0.42 ms with one thread each. Alone, 1000 spins
#: cost 0-5 % (64 nets, interleaved rounds: 2.97-3.06 ms per step against 2.83-2.98; 5
#: nets: within the VM's noise, 241-253 us against 234-248), while sleeping at once
#: (``OMP_WAIT_POLICY=passive``) costs 40 %, and 300 spins 50 % (5 nets).
#: ``benchmarks/test_bench_contention.py`` measures it. Read by libgomp when it loads,
#: at numba's first parallel call: so this must run before that (mlpsim imports this
#: module before any kernel runs; in a process that ran a numba parallel function
#: before importing mlpsim it has no effect). Importing numba does not load it.
OMP_SPIN = "1000"
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = OMP_SPIN

#: Seconds a cold start spends compiling the training kernels (measured: a
#: 10-step seed run with an empty cache took 16.9-17.8 s in all, 2-core Intel Xeon
#: model 207, numba 0.68; 29.6 s before the kernels stopped passing literal 0s,
#: see :func:`mlpsim.kernels.chunk_gradient`): the "~N s" of the notice below.
TRAINING_COMPILE_SECONDS = 17

JIT_OPTIONS = dict(cache=True, fastmath=False, boundscheck=False, error_model="numpy", nogil=True)

#: The lock file beside numba's cache files (one per cache folder).
CACHE_LOCK_NAME = "mlpsim-numba-cache.lock"


class _LockedCacheFile(caching.IndexDataCacheFile):
    """numba's cache files of one kernel (an index, and one data file per entry), under a lock.

    numba's cache is not safe when two processes save one kernel for different
    argument types at once (numba issues #4807 and #10128): both read the index,
    both take data file 1, and the index can end up naming float32 machine code
    for float64 arrays, which every later process then runs. A sweep or an atlas
    starts several workers on a fresh install's empty cache, with both dtypes. So
    a save holds an exclusive lock from reading the index to writing its data, and
    a load a shared one (a load between the index and the data would read a
    stale data file). Where no lock can be had (no ``fcntl``, a read-only
    folder) it is numba's behaviour.
    """

    def save(self, key, data):
        with _cache_lock(self._cache_path, exclusive=True):
            super().save(key, data)

    def load(self, key):
        with _cache_lock(self._cache_path, exclusive=False):
            return super().load(key)


@contextlib.contextmanager
def _cache_lock(folder: str, exclusive: bool):
    try:
        import fcntl
        fd = os.open(os.path.join(folder, CACHE_LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):  # Windows, or a folder we cannot write: nobody else can either
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _locked(dispatcher):
    files = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if type(files) is caching.IndexDataCacheFile:  # numba's layout as we know it; else leave it alone
        files.__class__ = _LockedCacheFile
    return dispatcher


def kernel(fn):
    """Decorator for serial kernels."""
    return _locked(numba.njit(**JIT_OPTIONS)(fn))


def parallel_kernel(fn):
    """Decorator for kernels that use ``prange``. Only used where the parallel loop
    writes disjoint outputs, so results do not depend on the thread count."""
    return _locked(numba.njit(parallel=True, **JIT_OPTIONS)(fn))


def cached(*dispatchers, dtype=None) -> bool:
    """Whether numba's on-disk cache holds machine code for every one of ``dispatchers``.

    Reads the cache index the way numba does on a call: an entry counts only if it
    was written for this source code and this CPU target (an index written for an
    older version of the source counts as missing). With ``dtype``, only entries
    whose first argument is an array of that dtype count: float32 training needs
    its own machine code even where float64's is cached. Any surprise in numba's
    internals answers True: the only use is to decide whether to announce a
    compilation, and a missing notice is better than a wrong one.
    """
    try:
        return all(_cached_one(d, dtype) for d in dispatchers)
    except Exception:  # noqa: BLE001 - numba internals changed: say nothing
        return True


def _cached_one(dispatcher, dtype) -> bool:
    cache = dispatcher._cache
    codegen = dispatcher.targetctx.codegen()
    for key in cache._cache_file._load_index():
        sig = key[0]
        if cache._index_key(sig, codegen) != key:  # another CPU target, or older source
            continue
        if dtype is None or (sig and getattr(sig[0], "dtype", None) == numba.from_dtype(np.dtype(dtype))):
            return True
    return False


def compile_notice(*dispatchers, seconds: float = TRAINING_COMPILE_SECONDS, dtypes=(None,)):
    """The line to print before a first call that will compile, or None if the cache is warm.

    With ``dtypes``, each one not cached yet (see :func:`cached`) is named and adds
    ``seconds``.
    """
    missing = [dtype for dtype in dtypes if not cached(*dispatchers, dtype=dtype)]
    if not missing:
        return None
    names = " and ".join(str(d) for d in missing if d is not None)
    return (f"compiling kernels, once: ~{seconds * len(missing):.0f} s "
            f"({names + '; ' if names else ''}cached for every later run)")
