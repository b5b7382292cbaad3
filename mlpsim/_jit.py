"""The one place where numba compilation flags are set.

Every kernel in :mod:`mlpsim.kernels` is compiled with these options so that the
training path is bit-reproducible:

* ``fastmath=False``: no reassociation of sums and no fused multiply-add
  contraction, so a sum is computed in exactly the order the code states.
* ``cache=True``: compiled machine code is stored next to the module, so a second
  process starts training in about a second instead of recompiling. Numba
  invalidates a cache entry only when the function's *own* file changes: after
  editing ``kernels.py``, delete ``mlpsim/__pycache__/kernels_eval*.nb*`` too
  (its kernels inline ``kernels.forward_chunk``), or run with
  ``NUMBA_CACHE_DIR`` pointing to an empty folder.
* ``boundscheck=False``: kernels are only called by the validating Python API,
  which guarantees shapes.
* ``error_model="numpy"``: division by zero gives inf/nan instead of raising, so a
  diverging run is reported by the training loop (with instance and step) rather
  than by an obscure exception inside compiled code.
"""
import numba

JIT_OPTIONS = dict(cache=True, fastmath=False, boundscheck=False, error_model="numpy", nogil=True)

#: Decorator for serial kernels.
kernel = numba.njit(**JIT_OPTIONS)

#: Decorator for kernels that use ``prange``. Only used where the parallel loop
#: writes disjoint outputs, so results do not depend on the thread count.
parallel_kernel = numba.njit(parallel=True, **JIT_OPTIONS)
