"""Compiled kernels for evaluating many edited networks at once.

Contract as in :mod:`mlpsim.kernels`: arrays and scalars in, preallocated
outputs, no validation. A *candidate* is the base parameters with ``m`` entries
replaced: ``theta[idx[k, j]] = vals[k, j]`` (an index of -1 is no edit).

Each candidate is evaluated by one thread from start to end, and its sums over
samples run in sample order, so results do not depend on the thread count, and
a candidate gives the same numbers whether it is evaluated alone or in a batch.
"""
import numba
import numpy as np

from ._jit import kernel, parallel_kernel
from .kernels import CHUNK, activate, chunk_len, forward_chunk

#: Columns of the ``out`` array of :func:`evaluate_candidates`.
SQ_ERR, SQ_DIFF, MAX_DIFF, FLIPS = 0, 1, 2, 3


@kernel
def accumulate_chunk(A, row0, d_out, Y, ref, s0, s1, threshold, acc):
    """Add one chunk's squared error, squared change, max |change| and flips to ``acc``."""
    for o in range(d_out):
        yhat = A[row0 + o]
        for s in range(s1 - s0):
            v = yhat[s]
            e = v - Y[o, s0 + s]
            d = v - ref[o, s0 + s]
            acc[SQ_ERR] += e * e
            acc[SQ_DIFF] += d * d
            if abs(d) > acc[MAX_DIFF]:
                acc[MAX_DIFF] = abs(d)
            if (v > threshold) != (ref[o, s0 + s] > threshold):
                acc[FLIPS] += 1.0


@parallel_kernel
def evaluate_candidates(theta, idx, vals, widths, w_off, b_off, r_off, act, slope, X, Y, ref,
                        threshold, scratch_A, scratch_theta, out):
    """Effect sums of every candidate on inputs ``X`` (d_in, n).

    ``Y`` (d_out, n) are the targets, ``ref`` (d_out, n) the unedited network's
    outputs; ``out`` (K, 4) receives, per candidate, the sum of squared errors,
    the sum of squared changes of the output, the largest |change| and the
    number of outputs whose side of ``threshold`` flips.
    """
    K, m = idx.shape
    L = widths.shape[0] - 1
    n = X.shape[1]
    d_out = widths[L]
    for k in numba.prange(K):
        tid = numba.get_thread_id()
        th = scratch_theta[tid]
        A = scratch_A[tid]
        th[:] = theta
        for j in range(m):
            if idx[k, j] >= 0:
                th[idx[k, j]] = vals[k, j]
        acc = out[k]
        acc[:] = 0.0
        C = chunk_len(X)
        for s0 in range(0, n, C):
            s1 = min(n, s0 + C)
            forward_chunk(th, widths, w_off, b_off, r_off, act, slope, X, s0, s1, A)
            accumulate_chunk(A, r_off[L], d_out, Y, ref, s0, s1, threshold, acc)


@kernel
def dense_layer(theta, w0, b0, n_in, n_out, A_in, A_out, n, act, slope, hidden):
    """``A_out[:n_out, :n] = f(W A_in + b)`` for one chunk, sums in input order."""
    for o in range(n_out):
        z = A_out[o]
        bo = theta[b0 + o]
        for s in range(n):
            z[s] = bo
        for i in range(n_in):
            w = theta[w0 + o * n_in + i]
            a = A_in[i]
            for s in range(n):
                z[s] += w * a[s]
        if hidden:
            activate(z, n, act, slope)


@parallel_kernel
def evaluate_single_edits(theta, idx, vals, layer_of, unit_of, input_of, widths, w_off, b_off, r_off,
                          act, slope, X, Y, ref, Zb, Ab, threshold, scratch, out):
    """Effect sums of single-parameter edits, recomputing only what an edit changes.

    Candidate ``k`` sets parameter ``idx[k]`` (of layer ``layer_of``, feeding
    unit ``unit_of``; ``input_of`` is the input unit of a weight, -1 for a
    bias) to ``vals[k]``. ``Zb``/``Ab`` (R, n) are the unedited network's
    pre-activations and activations (rows as in :mod:`mlpsim.kernels`). The
    edit changes one unit of layer l + 1 (an update of one row); the next layer
    changes by a rank-one update; only the layers after that are recomputed.
    ``scratch`` (threads, 2, max_width, CHUNK) holds two layers of one chunk.
    ``out`` (K, 4) as in :func:`evaluate_candidates`.
    """
    K = idx.shape[0]
    L = widths.shape[0] - 1
    n = X.shape[1]
    for k in numba.prange(K):
        buf = scratch[numba.get_thread_id()]
        p = idx[k]
        l = layer_of[p]
        o = unit_of[p]
        i = input_of[p]
        delta = vals[k] - theta[p]
        acc = out[k]
        acc[:] = 0.0
        for s0 in range(0, n, CHUNK):
            s1 = min(n, s0 + CHUNK)
            m = s1 - s0
            # layer l + 1: only unit o changes
            cur = buf[0]
            n_cur = widths[l + 1]
            row = r_off[l + 1]
            for u in range(n_cur):
                for s in range(m):
                    cur[u, s] = Ab[row + u, s0 + s]
            for s in range(m):
                x = 1.0 if i < 0 else (X[i, s0 + s] if l == 0 else Ab[r_off[l] + i, s0 + s])
                cur[o, s] = Zb[row + o, s0 + s] + delta * x
            if l + 1 < L:
                activate(cur[o], m, act, slope)
                # layer l + 2: a rank-one update of the unedited pre-activations
                nxt = buf[1]
                n_next = widths[l + 2]
                row2 = r_off[l + 2]
                for u in range(n_next):
                    w = theta[w_off[l + 1] + u * n_cur + o]
                    z = nxt[u]
                    for s in range(m):
                        z[s] = Zb[row2 + u, s0 + s] + w * (cur[o, s] - Ab[row + o, s0 + s])
                    if l + 2 < L:
                        activate(z, m, act, slope)
                # the remaining layers, recomputed in full
                a_in, a_out = nxt, cur
                for j in range(l + 2, L):
                    dense_layer(theta, w_off[j], b_off[j], widths[j], widths[j + 1], a_in, a_out, m,
                                act, slope, j < L - 1)
                    a_in, a_out = a_out, a_in
                final = a_in
            else:
                final = cur
            # np.int64(0), not a literal 0: one compiled accumulate_chunk (see kernels.chunk_gradient)
            accumulate_chunk(final, np.int64(0), widths[L], Y, ref, s0, s1, threshold, acc)
