"""Compiled kernels: forward pass, backward pass, loss and optimizer steps.

Contract
--------
Kernels take arrays and scalars only, write into preallocated outputs, read no
globals except the compile-time constants below, and validate nothing: the
Python API in :mod:`mlpsim.model` and :mod:`mlpsim.training` checks shapes and
dtypes before calling them.

Notation (shapes in comments)
-----------------------------
=========  ===============================================================
``L``      number of affine layers; ``widths`` has ``L + 1`` entries
``theta``  flat parameters ``(P,)``: per layer ``W`` (out x in, row-major),
           then ``b`` (out,); ``w_off[l]``/``b_off[l]`` are their offsets
``X``      inputs, feature-major ``(d_in, n)``; ``Y`` targets ``(d_out, n)``
``A``      activations of layers 1..L for one chunk of samples, stacked by
           unit: row ``r_off[l] + u`` holds unit ``u`` of layer ``l``
``D``      the loss gradient w.r.t. the pre-activation, same rows as ``A``
           (in training, the same array: the backward
           pass overwrites each layer's activations with its deltas)
``G``      gradient accumulator ``(P,)``
=========  ===============================================================

Activations are applied in place, and derivatives are written from the stored
*output* ``a = f(z)`` (as scikit-learn does): relu' = [a > 0] (so 0 at 0),
tanh' = 1 - a**2, leaky' = 1 if a > 0 else slope, identity' = 1. tanh itself is
:func:`mlpsim.simd.stanh` (and ``vtanh`` on whole vectors, the same bits): built
from correctly rounded operations only, within 2.5 units in the last place of
the exact tanh, 1.0 ns per float64 value instead of the C library's 19.6.

The order of operations (engine version 3)
------------------------------------------
This is the documented order every result follows, on every CPU and for any
thread count; changing any of it bumps :data:`ENGINE_VERSION`.

* Every multiply-add is fused (one rounding), in the parameters' dtype.
* A unit's pre-activation is ``b``, then ``+ w_k * x_k`` for inputs k = 0, 1, ...
  in order (:func:`dense_forward`); a backpropagated delta starts at -0.0 and adds
  ``w * d`` over the layer's outputs in order (:func:`dense_delta`).
* Samples are processed in chunks of 32 vectors (:data:`CHUNK_VECTORS`); a sum over a chunk's samples
  keeps ``LANES`` partial sums folded by a fixed tree (:data:`LANES`,
  :func:`fold`); chunks are added in chunk order per instance
  (:func:`reduce_chunks`). Each (instance, chunk) task writes its own partial,
  so the thread count changes nothing.
* No fastmath: nothing is reordered or contracted beyond what is stated here.

Performance notes
-----------------
The kernels state their vectors themselves (:mod:`mlpsim.simd`) instead of
leaving them to LLVM's loop vectorizer, whose choices (vector width, unrolling)
depend on the CPU LLVM believes it compiles for: engine version 1 ran 1.8x apart
on one Intel machine depending on that belief (issue 11). Each dense kernel keeps
a block of outputs for two vectors of samples in registers (register blocking),
broadcasts each weight once per block, and fuses every multiply-add. The block
size follows the register file (:data:`mlpsim.simd.WIDE_REGISTERS`): AVX-512
holds 32 vectors, AVX2 and NEON 8, so there the blocks are a quarter to a half
as large and a sum's two vectors of lanes are accumulated in two passes; the
sums, and so the bits, are the same. AVX-512 blocks on an AVX2 target spilled
accumulators to the stack (218 us per float64 seed step against 145 with the
narrow blocks, ``NUMBA_CPU_FEATURES`` AVX2-only); narrow blocks on AVX-512 took
118 us against 85. Work arrays are 64-byte aligned (:func:`mlpsim.simd.aligned_zeros`),
and in training a layer's deltas overwrite its activations (:func:`chunk_gradients`),
so that a chunk's work rows mostly stay in the L1 cache.

Measured on a 2-core Intel Xeon model 207 (AVX-512), seed network [1, 8, 8, 8, 1],
n = 5000, one Adam step (``mlpsim bench``, best of several runs on a noisy
virtual machine): float64 1 net / 1 thread 84-86 us = 64-65 % of the machine's
1-thread GEMM peak (engine 1: 270 us), 64 nets / 2 threads 43.5-45.9 us per
net-step = 62-64 % of the 2-thread peak (engine 1: 131); float32 45 / 23 us.
The same with AVX2 only (``NUMBA_CPU_NAME=generic``, AVX2 and FMA features):
143 us = 72 % of that target's GEMM peak, and 74.8 us = 71 % for 64 nets.

Rejected, with measurements (same machine):

* float64 chunks of 128 samples (16 vectors; activations and deltas of the seed
  network would fit the L1 cache): 105-114 us for 1 net, 68-75 for 64 nets,
  against 89-93 and 59-65 with 256 in the same session; measured again before
  the deltas overwrote the activations: 1 net 102.4 against 95.3 us.

* Vectors at each row's own alignment: the deltas took 2.8 us instead of 1.75
  when NumPy's 16-byte-aligned work arrays let vector loads straddle cache lines.
* Weights read as ``theta[k]`` inside the vector loops: numba's negative-index
  test costs four instructions per weight (forward 2.2 us, with
  :func:`mlpsim.simd.vbcast` 1.6 us).
* Engine version 1 (LLVM's loop vectorizer over 16 interleaved lanes, separate
  multiply and add): 270 us per seed step, and float32 no faster than float64.
"""
import numba
import numpy as np
from numba.extending import intrinsic

from . import simd
from ._jit import kernel, parallel_kernel
from .simd import WIDE_REGISTERS as WIDE
from .simd import (
    sfma,
    stanh,
    vadd,
    vbcast,
    vfma,
    vlanes,
    vleaky,
    vload,
    vmask,
    vmask_scale,
    vmul,
    vrelu,
    vsplat,
    vstore,
    vsub,
    vsum,
    vsums_store,
    vtanh,
)

#: Version of the documented order of operations. Any change that alters a
#: result bit (the order of a sum, a fused multiply-add, CHUNK, LANES) bumps it,
#: records new golden values in ``tests/test_golden.py`` and says why in the
#: commit; runs record it in their manifest, and resume refuses another version.
#: 3: tanh is :func:`mlpsim.simd.stanh` / ``vtanh`` (correctly rounded operations
#: only) instead of the C library's, whose bits depend on the CPU; relu, identity
#: and leaky relu runs keep version 2's bits.
#: 4: Adam's bias corrections take ``beta ** t`` from :func:`integer_power`
#: (correctly rounded, from multiplies and fused multiply-adds) instead of numba's
#: ``**``, which squared in plain float64 up to t = 65536 (0.9 ** 4 already one
#: unit off Python's, so not the value PyTorch uses) and called the C library's
#: ``pow`` beyond (whose last bit depends on the CPU). float64 Adam runs change;
#: float32 runs (their step is rounded to float32) and gd/momentum keep version
#: 3's bits.
ENGINE_VERSION = 4

#: Vectors of samples per task (a chunk): 32 vectors of 64 bytes, so 256 float64
#: or 512 float32 samples (:func:`chunk_len`), and every work row is 2 KB whatever
#: the dtype. Changing it changes the order of floating-point sums, and so the
#: last bits of every result: it is recorded in each run's manifest. Measured
#: (Intel Xeon model 207, seed network, us per net-step, 1 net on 1 thread / 64
#: on 2): float64 chunks of 256 samples 104 / 60, of 512 112 / 64; float32 chunks
#: of 256 68 / 39, of 512 54 / 30 (its per-chunk work, folding lane sums and
#: calling the layer kernels, weighs half as much per sample).
CHUNK_VECTORS = 32

#: Samples per float64 chunk (float32: twice as many).
CHUNK = CHUNK_VECTORS * simd.VECTOR_BYTES // 8

#: Work rows are ``chunk_len + ROW_PAD`` long: rows a multiple of 4 KB apart
#: would all fall into the same L1 cache sets (measured on the 8 x 8 layer, 512
#: float64 samples: forward 1.69 us unpadded, 1.15 padded).
ROW_PAD = 16


def chunk_samples(dtype) -> int:
    """Samples per chunk for parameters of ``dtype`` (the Python side of :func:`chunk_len`)."""
    return CHUNK_VECTORS * simd.VECTOR_BYTES // np.dtype(dtype).itemsize

#: Activation codes used inside kernels (see :data:`mlpsim.model.ACTIVATIONS`).
IDENTITY, RELU, TANH, LEAKY_RELU = 0, 1, 2, 3

#: Optimizer codes (see :data:`mlpsim.config.OPTIMIZERS`).
GD, MOMENTUM, ADAM_WOLFRAM, ADAM_KINGMA = 0, 1, 2, 3

#: Positions in the ``hyper`` array passed to the optimizer kernels.
H_LR, H_BETA1, H_BETA2, H_EPS, H_MOMENTUM, H_WEIGHT_DECAY = 0, 1, 2, 3, 4, 5

#: ``finish`` codes of the dense kernels: nothing, relu of the result, the result
#: zeroed where the stored activation ``a <= 0`` (relu's derivative), times
#: ``1 - a * a`` (tanh's), or times the slope where ``a <= 0`` (leaky relu's; see
#: :func:`finish_delta`).
NO_FINISH, CLAMP, MASK, TANH_DERIVATIVE, LEAKY_DERIVATIVE = 0, 1, 2, 3, 4

#: Every sum over the samples of a chunk keeps ``LANES`` partial sums: partial
#: sum ``j`` adds the products of samples ``j, j + LANES, j + 2 * LANES, ...`` in
#: that order, each by one fused multiply-add (starting from -0.0), and the
#: partial sums are then combined by :func:`fold`. ``LANES`` is two vectors of
#: :data:`mlpsim.simd.VECTOR_BYTES`: 16 for float64, 32 for float32.
LANES = 2 * simd.VECTOR_BYTES // 8


@kernel
def fold(lo, hi):
    """The ``LANES`` partial sums (vectors ``lo`` = 0..V-1, ``hi`` = V..2V-1) as one number:
    ``u = lo + hi`` lane by lane, then :func:`mlpsim.simd.vsum` (halves)."""
    return vsum(vadd(lo, hi))


@intrinsic
def chunk_len(typingctx, a):
    """Samples per chunk for the dtype of array ``a``, as a constant in the caller's code.

    An intrinsic, not a jitted function: LLVM saw the result of a call as a
    constant too late to specialise the dense kernels on it. Measured on the seed
    network (Intel Xeon model 207, min of 400 interleaved rounds): the forward
    pass of a whole float64 chunk 1.52 us instead of 1.72; ``forward_batch`` on
    5000 samples 32.7 us instead of 36.0 (float64, 1 net) and 132 instead of 147
    (float32, 8 nets). A training step is unchanged (its backward pass dominates)."""
    n = CHUNK_VECTORS * simd.Vec(a.dtype).lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(numba.types.intp, n)
    return numba.types.intp(a), codegen


@kernel
def dense_forward(theta, w0, b0, n_in, n_out, S, rs, c0, Z, rz, n, finish):
    """``Z[rz + o, :n] = b[o] + W[o, 0] * S[rs, c0:c0+n] + ... + W[o, n_in-1] * S[rs+n_in-1, ...]``

    with ``W[o, i] = theta[w0 + o * n_in + i]``, ``b[o] = theta[b0 + o]``; the sum
    starts at ``b[o]`` and adds one term at a time by a fused multiply-add, in
    input order. ``finish`` = CLAMP applies relu.

    Register blocking: four outputs for two vectors of samples at a time, so each
    loaded input vector feeds eight multiply-adds and the partial sums never leave
    registers (11 vector registers, of AVX-512's 32). A target with room for 8
    vectors (:data:`mlpsim.simd.WIDE_REGISTERS` false: AVX2, NEON) takes four
    outputs for one vector at a time (6 registers), as does a short chunk's last
    single vector after its pairs. Samples past the last whole vector take the
    scalar loop: the same arithmetic per sample on every path.
    """
    V = vlanes(Z)
    nv = n - n % (2 * V) if WIDE else 0  # samples done in pairs of vectors
    n1 = n - n % V  # then single vectors up to n1
    relu = finish == CLAMP
    o = 0
    while o < n_out:
        if o + 4 <= n_out:
            wa = w0 + o * n_in
            for s in range(0, nv, 2 * V):
                c = c0 + s
                p0 = vbcast(theta, b0 + o)
                p1 = vbcast(theta, b0 + o + 1)
                p2 = vbcast(theta, b0 + o + 2)
                p3 = vbcast(theta, b0 + o + 3)
                a0, b0_, a1, b1, a2, b2, a3, b3 = p0, p0, p1, p1, p2, p2, p3, p3
                for i in range(n_in):
                    x = vload(S, rs + i, c)
                    y = vload(S, rs + i, c + V)
                    u = vbcast(theta, wa + i)
                    a0 = vfma(u, x, a0)
                    b0_ = vfma(u, y, b0_)
                    u = vbcast(theta, wa + n_in + i)
                    a1 = vfma(u, x, a1)
                    b1 = vfma(u, y, b1)
                    u = vbcast(theta, wa + 2 * n_in + i)
                    a2 = vfma(u, x, a2)
                    b2 = vfma(u, y, b2)
                    u = vbcast(theta, wa + 3 * n_in + i)
                    a3 = vfma(u, x, a3)
                    b3 = vfma(u, y, b3)
                if relu:
                    a0, b0_, a1, b1 = vrelu(a0), vrelu(b0_), vrelu(a1), vrelu(b1)
                    a2, b2, a3, b3 = vrelu(a2), vrelu(b2), vrelu(a3), vrelu(b3)
                vstore(Z, rz + o, s, a0)
                vstore(Z, rz + o, s + V, b0_)
                vstore(Z, rz + o + 1, s, a1)
                vstore(Z, rz + o + 1, s + V, b1)
                vstore(Z, rz + o + 2, s, a2)
                vstore(Z, rz + o + 2, s + V, b2)
                vstore(Z, rz + o + 3, s, a3)
                vstore(Z, rz + o + 3, s + V, b3)
            for s in range(nv, n1, V):
                a0, a1 = vbcast(theta, b0 + o), vbcast(theta, b0 + o + 1)
                a2, a3 = vbcast(theta, b0 + o + 2), vbcast(theta, b0 + o + 3)
                for i in range(n_in):
                    x = vload(S, rs + i, c0 + s)
                    a0 = vfma(vbcast(theta, wa + i), x, a0)
                    a1 = vfma(vbcast(theta, wa + n_in + i), x, a1)
                    a2 = vfma(vbcast(theta, wa + 2 * n_in + i), x, a2)
                    a3 = vfma(vbcast(theta, wa + 3 * n_in + i), x, a3)
                if relu:
                    a0, a1, a2, a3 = vrelu(a0), vrelu(a1), vrelu(a2), vrelu(a3)
                vstore(Z, rz + o, s, a0)
                vstore(Z, rz + o + 1, s, a1)
                vstore(Z, rz + o + 2, s, a2)
                vstore(Z, rz + o + 3, s, a3)
            count = 4
        else:  # the last n_out % 4 outputs, one at a time
            wa = w0 + o * n_in
            for s in range(0, nv, 2 * V):
                c = c0 + s
                a0 = vbcast(theta, b0 + o)
                b0_ = a0
                for i in range(n_in):
                    u = vbcast(theta, wa + i)
                    a0 = vfma(u, vload(S, rs + i, c), a0)
                    b0_ = vfma(u, vload(S, rs + i, c + V), b0_)
                if relu:
                    a0, b0_ = vrelu(a0), vrelu(b0_)
                vstore(Z, rz + o, s, a0)
                vstore(Z, rz + o, s + V, b0_)
            for s in range(nv, n1, V):
                a0 = vbcast(theta, b0 + o)
                for i in range(n_in):
                    a0 = vfma(vbcast(theta, wa + i), vload(S, rs + i, c0 + s), a0)
                if relu:
                    a0 = vrelu(a0)
                vstore(Z, rz + o, s, a0)
            count = 1
        zero = Z.dtype.type(0.0)
        for k in range(o, o + count):  # the scalar tail
            wa = w0 + k * n_in
            for s in range(n1, n):
                v = theta[b0 + k]
                for i in range(n_in):
                    v = sfma(theta[wa + i], S[rs + i, c0 + s], v)
                if relu and v < zero:
                    v = zero
                Z[rz + k, s] = v
        o += count


@kernel
def finish_delta(v, A, r, s, finish, k):
    """A backpropagated delta vector ``v`` times the activation's derivative, written from
    the stored activations ``a = A[r, s : s + V]``: 0 where ``a <= 0`` (``finish`` =
    MASK, relu), ``v * (1 - a * a)`` rounded after each operation (TANH_DERIVATIVE),
    or ``v * k`` where ``a <= 0`` (LEAKY_DERIVATIVE; ``k``, the slope in the dtype)."""
    a = vload(A, r, s)
    if finish == MASK:
        return vmask(v, a)
    if finish == LEAKY_DERIVATIVE:
        return vmask_scale(v, a, k)
    return vmul(v, vsub(vsplat(A, 1.0), vmul(a, a)))


@kernel
def dense_delta(theta, w0, n_in, n_out, D, rd, rp, A, finish, slope, m):
    """Backpropagate deltas through one layer, for the first ``m`` samples of a chunk:

    ``D[rp + i, :] = W[0, i] * D[rd, :] + ... + W[n_out-1, i] * D[rd+n_out-1, :]``
    (``W[o, i] = theta[w0 + o * n_in + i]``; the sum starts at -0.0 and adds one
    term at a time by a fused multiply-add, in output order), then, with
    ``finish`` = MASK, zeroed where ``A[rp + i] <= 0``, with TANH_DERIVATIVE
    times ``1 - A[rp + i] ** 2``, with LEAKY_DERIVATIVE times ``slope`` where
    ``A[rp + i] <= 0`` (:func:`finish_delta`). Blocked as
    :func:`dense_forward` (four rows, two vectors of samples, or one vector where
    registers are narrow). ``D`` may be ``A`` itself: each ``A[rp + i, s]`` is read
    for the derivative before ``D[rp + i, s]`` is written, and rows ``rd ..`` are
    not ``rp ..`` (see :func:`chunk_gradients`).
    """
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    k = vsplat(D, slope)  # rounded to the dtype once
    mv = m if WIDE else 0  # samples done in pairs of vectors, then single vectors up to m
    i = 0
    while i < n_in:
        if i + 4 <= n_in:
            for s in range(0, mv, 2 * V):
                a0, b0_, a1, b1, a2, b2, a3, b3 = nz, nz, nz, nz, nz, nz, nz, nz
                for o in range(n_out):
                    x = vload(D, rd + o, s)
                    y = vload(D, rd + o, s + V)
                    wa = w0 + o * n_in + i
                    u = vbcast(theta, wa)
                    a0 = vfma(u, x, a0)
                    b0_ = vfma(u, y, b0_)
                    u = vbcast(theta, wa + 1)
                    a1 = vfma(u, x, a1)
                    b1 = vfma(u, y, b1)
                    u = vbcast(theta, wa + 2)
                    a2 = vfma(u, x, a2)
                    b2 = vfma(u, y, b2)
                    u = vbcast(theta, wa + 3)
                    a3 = vfma(u, x, a3)
                    b3 = vfma(u, y, b3)
                if finish != NO_FINISH:
                    a0 = finish_delta(a0, A, rp + i, s, finish, k)
                    b0_ = finish_delta(b0_, A, rp + i, s + V, finish, k)
                    a1 = finish_delta(a1, A, rp + i + 1, s, finish, k)
                    b1 = finish_delta(b1, A, rp + i + 1, s + V, finish, k)
                    a2 = finish_delta(a2, A, rp + i + 2, s, finish, k)
                    b2 = finish_delta(b2, A, rp + i + 2, s + V, finish, k)
                    a3 = finish_delta(a3, A, rp + i + 3, s, finish, k)
                    b3 = finish_delta(b3, A, rp + i + 3, s + V, finish, k)
                vstore(D, rp + i, s, a0)
                vstore(D, rp + i, s + V, b0_)
                vstore(D, rp + i + 1, s, a1)
                vstore(D, rp + i + 1, s + V, b1)
                vstore(D, rp + i + 2, s, a2)
                vstore(D, rp + i + 2, s + V, b2)
                vstore(D, rp + i + 3, s, a3)
                vstore(D, rp + i + 3, s + V, b3)
            for s in range(mv, m, V):
                a0, a1, a2, a3 = nz, nz, nz, nz
                for o in range(n_out):
                    x = vload(D, rd + o, s)
                    wa = w0 + o * n_in + i
                    a0 = vfma(vbcast(theta, wa), x, a0)
                    a1 = vfma(vbcast(theta, wa + 1), x, a1)
                    a2 = vfma(vbcast(theta, wa + 2), x, a2)
                    a3 = vfma(vbcast(theta, wa + 3), x, a3)
                if finish != NO_FINISH:
                    a0 = finish_delta(a0, A, rp + i, s, finish, k)
                    a1 = finish_delta(a1, A, rp + i + 1, s, finish, k)
                    a2 = finish_delta(a2, A, rp + i + 2, s, finish, k)
                    a3 = finish_delta(a3, A, rp + i + 3, s, finish, k)
                vstore(D, rp + i, s, a0)
                vstore(D, rp + i + 1, s, a1)
                vstore(D, rp + i + 2, s, a2)
                vstore(D, rp + i + 3, s, a3)
            i += 4
        else:
            for s in range(0, mv, 2 * V):
                a0, b0_ = nz, nz
                for o in range(n_out):
                    u = vbcast(theta, w0 + o * n_in + i)
                    a0 = vfma(u, vload(D, rd + o, s), a0)
                    b0_ = vfma(u, vload(D, rd + o, s + V), b0_)
                if finish != NO_FINISH:
                    a0 = finish_delta(a0, A, rp + i, s, finish, k)
                    b0_ = finish_delta(b0_, A, rp + i, s + V, finish, k)
                vstore(D, rp + i, s, a0)
                vstore(D, rp + i, s + V, b0_)
            for s in range(mv, m, V):
                a0 = nz
                for o in range(n_out):
                    a0 = vfma(vbcast(theta, w0 + o * n_in + i), vload(D, rd + o, s), a0)
                if finish != NO_FINISH:
                    a0 = finish_delta(a0, A, rp + i, s, finish, k)
                vstore(D, rp + i, s, a0)
            i += 1


@kernel
def layer_grads(D, rd, n_out, S, rs, c0, n_in, g, w0, b0, m):
    """One layer's gradient over the first ``m`` samples of a chunk (see :func:`backward_chunk`):

    ``g[w0 + o * n_in + i] = sum_s D[rd + o, s] * S[rs + i, c0 + s]`` and
    ``g[b0 + o] = sum_s D[rd + o, s]``, each as ``LANES`` partial sums (see
    :data:`LANES`) combined by :func:`fold`.

    Blocked two outputs by four inputs (:func:`grads_2x4`: sixteen vector
    accumulators, six loads of two vectors per sixteen multiply-adds); a layer
    with one input four outputs at a time with their biases (:func:`grads_4x1`);
    an odd last output four inputs at a time (:func:`grads_1x4`); the biases four
    outputs at a time (:func:`bias_grads_4`). Where registers are narrow, two
    outputs by two inputs (:func:`grads_2x2_narrow`) and two outputs of a layer
    with one input (:func:`grads_2x1_narrow`). How the weights are blocked changes
    no sum: each one has its own accumulators. Each block folds its sums together
    (:func:`mlpsim.simd.vsums_store`) into runs of ``g``, which is why the blocks
    run along the inputs: a weight's neighbours in ``g`` are its row's.
    Measured (Intel Xeon model 207, float64 seed step, min of 100 interleaved
    rounds, both orders): 64 nets on 2 threads 44.5-44.6 us per net-step against
    46.6-46.7 with four outputs by two inputs and one fold per sum; 1 net
    unchanged (85.9 vs 86.0 us). An 8 x 8 layer's weight gradients alone: 629 ns
    per chunk instead of 670.
    """
    o = 0
    biased = 0  # outputs whose bias a block already summed
    if n_in == 1:
        step = 4 if WIDE else 2
        while o + step <= n_out:
            if WIDE:
                grads_4x1(D, rd + o, S, rs, c0, g, w0 + o, b0 + o, m)
            else:
                grads_2x1_narrow(D, rd + o, S, rs, c0, g, w0 + o, b0 + o, m)
            o += step
        biased = o
    else:
        while o + 2 <= n_out:
            if WIDE:
                grads_2x4(D, rd + o, S, rs, c0, n_in, g, w0 + o * n_in, m)
            else:
                grads_2x2_narrow(D, rd + o, S, rs, c0, n_in, g, w0 + o * n_in, m)
            o += 2
    while o < n_out:
        grads_1x4(D, rd + o, S, rs, c0, n_in, g, w0 + o * n_in, m)
        o += 1
    while biased + 4 <= n_out:
        bias_grads_4(D, rd + biased, g, b0 + biased, m)
        biased += 4
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    for o in range(biased, n_out):
        a0, b0_ = nz, nz
        for s in range(0, m, 2 * V):
            a0 = vadd(a0, vload(D, rd + o, s))
            b0_ = vadd(b0_, vload(D, rd + o, s + V))
        g[b0 + o] = fold(a0, b0_)


@kernel
def bias_grads_4(D, rd, g, b0, m):
    """:func:`layer_grads`' bias sums for the four outputs ``rd .. rd + 3``: eight
    independent chains of adds, where one output at a time left two, each add
    waiting on the one before."""
    V = vlanes(D)
    if not WIDE:
        lo = half_bias_4(D, rd, np.int64(0), m)
        hi = half_bias_4(D, rd, V, m)
        vsums_store(g, b0, b0 + 2, (vadd(lo[0], hi[0]), vadd(lo[1], hi[1]), vadd(lo[2], hi[2]),
                                    vadd(lo[3], hi[3])))
        return
    nz = vsplat(D, -0.0)
    a0, b0_, a1, b1, a2, b2, a3, b3 = nz, nz, nz, nz, nz, nz, nz, nz
    for s in range(0, m, 2 * V):
        a0 = vadd(a0, vload(D, rd, s))
        b0_ = vadd(b0_, vload(D, rd, s + V))
        a1 = vadd(a1, vload(D, rd + 1, s))
        b1 = vadd(b1, vload(D, rd + 1, s + V))
        a2 = vadd(a2, vload(D, rd + 2, s))
        b2 = vadd(b2, vload(D, rd + 2, s + V))
        a3 = vadd(a3, vload(D, rd + 3, s))
        b3 = vadd(b3, vload(D, rd + 3, s + V))
    vsums_store(g, b0, b0 + 2, (vadd(a0, b0_), vadd(a1, b1), vadd(a2, b2), vadd(a3, b3)))


@kernel
def grads_4x1(D, rd, S, rs, c0, g, w0, b0, m):
    """:func:`layer_grads` of a layer with one input, for the four outputs ``rd .. rd + 3``,
    biases included: each loaded delta feeds its weight's multiply-add and its bias's add
    (rather than pairing the input with itself and summing the biases in a separate pass).
    With one input, the four weights are neighbours in ``g``, and so are the biases."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    a0, b0_, a1, b1, a2, b2, a3, b3 = nz, nz, nz, nz, nz, nz, nz, nz
    c0_, d0, c1, d1, c2, d2, c3, d3 = nz, nz, nz, nz, nz, nz, nz, nz
    for s in range(0, m, 2 * V):
        x = vload(S, rs, c0 + s)
        y = vload(S, rs, c0 + s + V)
        d = vload(D, rd, s)
        e = vload(D, rd, s + V)
        a0, b0_, c0_, d0 = vfma(d, x, a0), vfma(e, y, b0_), vadd(c0_, d), vadd(d0, e)
        d = vload(D, rd + 1, s)
        e = vload(D, rd + 1, s + V)
        a1, b1, c1, d1 = vfma(d, x, a1), vfma(e, y, b1), vadd(c1, d), vadd(d1, e)
        d = vload(D, rd + 2, s)
        e = vload(D, rd + 2, s + V)
        a2, b2, c2, d2 = vfma(d, x, a2), vfma(e, y, b2), vadd(c2, d), vadd(d2, e)
        d = vload(D, rd + 3, s)
        e = vload(D, rd + 3, s + V)
        a3, b3, c3, d3 = vfma(d, x, a3), vfma(e, y, b3), vadd(c3, d), vadd(d3, e)
    vsums_store(g, w0, b0, (vadd(a0, b0_), vadd(a1, b1), vadd(a2, b2), vadd(a3, b3),
                            vadd(c0_, d0), vadd(c1, d1), vadd(c2, d2), vadd(c3, d3)))


@kernel
def grads_2x4(D, rd, S, rs, c0, n_in, g, w0, m):
    """:func:`layer_grads` for the two outputs ``rd, rd + 1``, four inputs at a time.
    Past the last input, the last one is repeated and its duplicate results dropped."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    last = n_in - 1
    for i in range(0, n_in, 4):
        i1, i2, i3 = min(i + 1, last), min(i + 2, last), min(i + 3, last)
        a00, b00, a01, b01, a02, b02, a03, b03 = nz, nz, nz, nz, nz, nz, nz, nz
        a10, b10, a11, b11, a12, b12, a13, b13 = nz, nz, nz, nz, nz, nz, nz, nz
        for s in range(0, m, 2 * V):
            x0 = vload(S, rs + i, c0 + s)
            y0 = vload(S, rs + i, c0 + s + V)
            x1 = vload(S, rs + i1, c0 + s)
            y1 = vload(S, rs + i1, c0 + s + V)
            d = vload(D, rd, s)
            e = vload(D, rd, s + V)
            f = vload(D, rd + 1, s)
            h = vload(D, rd + 1, s + V)
            a00 = vfma(d, x0, a00)
            b00 = vfma(e, y0, b00)
            a01 = vfma(d, x1, a01)
            b01 = vfma(e, y1, b01)
            a10 = vfma(f, x0, a10)
            b10 = vfma(h, y0, b10)
            a11 = vfma(f, x1, a11)
            b11 = vfma(h, y1, b11)
            x0 = vload(S, rs + i2, c0 + s)
            y0 = vload(S, rs + i2, c0 + s + V)
            x1 = vload(S, rs + i3, c0 + s)
            y1 = vload(S, rs + i3, c0 + s + V)
            a02 = vfma(d, x0, a02)
            b02 = vfma(e, y0, b02)
            a03 = vfma(d, x1, a03)
            b03 = vfma(e, y1, b03)
            a12 = vfma(f, x0, a12)
            b12 = vfma(h, y0, b12)
            a13 = vfma(f, x1, a13)
            b13 = vfma(h, y1, b13)
        if i + 4 <= n_in:
            vsums_store(g, w0 + i, w0 + n_in + i,
                        (vadd(a00, b00), vadd(a01, b01), vadd(a02, b02), vadd(a03, b03),
                         vadd(a10, b10), vadd(a11, b11), vadd(a12, b12), vadd(a13, b13)))
        else:
            g[w0 + i] = fold(a00, b00)
            g[w0 + n_in + i] = fold(a10, b10)
            if i1 > i:
                g[w0 + i1] = fold(a01, b01)
                g[w0 + n_in + i1] = fold(a11, b11)
            if i2 > i1:
                g[w0 + i2] = fold(a02, b02)
                g[w0 + n_in + i2] = fold(a12, b12)


@kernel
def grads_2x2_narrow(D, rd, S, rs, c0, n_in, g, w0, m):
    """:func:`grads_2x4` where registers are narrow (:data:`mlpsim.simd.WIDE_REGISTERS`
    false): two outputs by two inputs, and each sum's two vectors of lanes in two
    passes over the samples (:func:`half_grads_2x2`), so that four accumulators
    live at a time, not sixteen. Each lane adds the same samples in the same order.
    An odd last input is paired with itself and its duplicate results dropped."""
    V = vlanes(D)
    last = n_in - 1
    for i in range(0, n_in, 2):
        i1 = min(i + 1, last)
        lo = half_grads_2x2(D, rd, S, rs, c0, i, i1, np.int64(0), m)
        hi = half_grads_2x2(D, rd, S, rs, c0, i, i1, V, m)
        if i1 > i:
            vsums_store(g, w0 + i, w0 + n_in + i, (vadd(lo[0], hi[0]), vadd(lo[1], hi[1]),
                                                   vadd(lo[2], hi[2]), vadd(lo[3], hi[3])))
        else:
            g[w0 + i] = fold(lo[0], hi[0])
            g[w0 + n_in + i] = fold(lo[2], hi[2])


@kernel
def half_grads_2x2(D, rd, S, rs, c0, i, i1, start, m):
    """One vector of lane sums (samples ``start + 2 V k + j``) of the weights
    (rd, i), (rd, i1), (rd + 1, i), (rd + 1, i1), in that order."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    a00, a01, a10, a11 = nz, nz, nz, nz
    for s in range(start, m, 2 * V):
        x0 = vload(S, rs + i, c0 + s)
        x1 = vload(S, rs + i1, c0 + s)
        d = vload(D, rd, s)
        f = vload(D, rd + 1, s)
        a00 = vfma(d, x0, a00)
        a01 = vfma(d, x1, a01)
        a10 = vfma(f, x0, a10)
        a11 = vfma(f, x1, a11)
    return a00, a01, a10, a11


@kernel
def grads_2x1_narrow(D, rd, S, rs, c0, g, w0, b0, m):
    """:func:`grads_4x1` where registers are narrow: two outputs, weights and biases,
    each sum's two vectors of lanes in two passes (:func:`half_grads_2x1`)."""
    V = vlanes(D)
    lo = half_grads_2x1(D, rd, S, rs, c0, np.int64(0), m)
    hi = half_grads_2x1(D, rd, S, rs, c0, V, m)
    vsums_store(g, w0, b0, (vadd(lo[0], hi[0]), vadd(lo[1], hi[1]), vadd(lo[2], hi[2]),
                            vadd(lo[3], hi[3])))


@kernel
def half_grads_2x1(D, rd, S, rs, c0, start, m):
    """One vector of lane sums of the weights, then the biases, of outputs rd, rd + 1
    of a layer with one input (see :func:`half_grads_2x2`)."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    a0, a1, c0_, c1 = nz, nz, nz, nz
    for s in range(start, m, 2 * V):
        x = vload(S, rs, c0 + s)
        d = vload(D, rd, s)
        f = vload(D, rd + 1, s)
        a0, c0_ = vfma(d, x, a0), vadd(c0_, d)
        a1, c1 = vfma(f, x, a1), vadd(c1, f)
    return a0, a1, c0_, c1


@kernel
def half_grads_1x4(D, rd, S, rs, c0, i, i1, i2, i3, start, m):
    """One vector of lane sums of the weights (rd, i), (rd, i1), (rd, i2), (rd, i3)
    (see :func:`half_grads_2x2`)."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    a0, a1, a2, a3 = nz, nz, nz, nz
    for s in range(start, m, 2 * V):
        d = vload(D, rd, s)
        a0 = vfma(d, vload(S, rs + i, c0 + s), a0)
        a1 = vfma(d, vload(S, rs + i1, c0 + s), a1)
        a2 = vfma(d, vload(S, rs + i2, c0 + s), a2)
        a3 = vfma(d, vload(S, rs + i3, c0 + s), a3)
    return a0, a1, a2, a3


@kernel
def half_bias_4(D, rd, start, m):
    """One vector of lane sums of the deltas of outputs rd .. rd + 3 (see
    :func:`half_grads_2x2`)."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    a0, a1, a2, a3 = nz, nz, nz, nz
    for s in range(start, m, 2 * V):
        a0 = vadd(a0, vload(D, rd, s))
        a1 = vadd(a1, vload(D, rd + 1, s))
        a2 = vadd(a2, vload(D, rd + 2, s))
        a3 = vadd(a3, vload(D, rd + 3, s))
    return a0, a1, a2, a3


@kernel
def grads_1x4(D, rd, S, rs, c0, n_in, g, w0, m):
    """:func:`layer_grads` for the one output ``rd``, four inputs at a time (eight
    accumulators: enough independent multiply-adds to hide their latency, which two
    inputs at a time, four accumulators, did not).
    Past the last input, the last one is repeated and its duplicate results dropped."""
    V = vlanes(D)
    nz = vsplat(D, -0.0)
    last = n_in - 1
    for i in range(0, n_in, 4):
        i1, i2, i3 = min(i + 1, last), min(i + 2, last), min(i + 3, last)
        if WIDE:
            a0, b0_, a1, b1, a2, b2, a3, b3 = nz, nz, nz, nz, nz, nz, nz, nz
        else:
            a0, a1, a2, a3 = half_grads_1x4(D, rd, S, rs, c0, i, i1, i2, i3, np.int64(0), m)
            b0_, b1, b2, b3 = half_grads_1x4(D, rd, S, rs, c0, i, i1, i2, i3, V, m)
        for s in range(0, m if WIDE else 0, 2 * V):
            d = vload(D, rd, s)
            e = vload(D, rd, s + V)
            a0 = vfma(d, vload(S, rs + i, c0 + s), a0)
            b0_ = vfma(e, vload(S, rs + i, c0 + s + V), b0_)
            a1 = vfma(d, vload(S, rs + i1, c0 + s), a1)
            b1 = vfma(e, vload(S, rs + i1, c0 + s + V), b1)
            a2 = vfma(d, vload(S, rs + i2, c0 + s), a2)
            b2 = vfma(e, vload(S, rs + i2, c0 + s + V), b2)
            a3 = vfma(d, vload(S, rs + i3, c0 + s), a3)
            b3 = vfma(e, vload(S, rs + i3, c0 + s + V), b3)
        if i + 4 <= n_in:
            vsums_store(g, w0 + i, w0 + i + 2, (vadd(a0, b0_), vadd(a1, b1), vadd(a2, b2), vadd(a3, b3)))
        else:
            g[w0 + i] = fold(a0, b0_)
            if i1 > i:
                g[w0 + i1] = fold(a1, b1)
            if i2 > i1:
                g[w0 + i2] = fold(a2, b2)


@kernel
def activate(z, n, act, slope):
    """Apply the activation ``act`` to ``z[:n]`` in place (relu is fused into
    :func:`dense_forward` instead)."""
    if act == RELU:
        for s in range(n):
            if z[s] < 0.0:
                z[s] = 0.0
    elif act == TANH:
        for s in range(n):
            z[s] = stanh(z[s])
    elif act == LEAKY_RELU:
        for s in range(n):
            if z[s] < 0.0:
                z[s] = slope * z[s]


@kernel
def forward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, s0, s1, A):
    """Forward pass of samples ``s0:s1``; writes every layer's output into ``A``
    (see :func:`dense_forward` for the order of each sum)."""
    L = widths.shape[0] - 1
    n = s1 - s0
    C = chunk_len(A)
    zero = np.int64(0)  # not a literal 0: see ``chunk_gradient``
    for l in range(L):
        finish = CLAMP if act == RELU and l < L - 1 else NO_FINISH
        # A whole chunk passes C as a constant: LLVM then drops the scalar
        # tail and knows the trip count (forward pass of the seed network 1.53 us
        # per chunk instead of 1.68).
        if l == 0:  # the source rows: inputs, or the previous layer's outputs
            if n == C:
                dense_forward(theta, w_off[0], b_off[0], widths[0], widths[1], X, zero, s0,
                              A, r_off[1], C, finish)
            else:
                dense_forward(theta, w_off[0], b_off[0], widths[0], widths[1], X, zero, s0,
                              A, r_off[1], n, finish)
        else:
            if n == C:
                dense_forward(theta, w_off[l], b_off[l], widths[l], widths[l + 1], A, r_off[l], zero,
                              A, r_off[l + 1], C, finish)
            else:
                dense_forward(theta, w_off[l], b_off[l], widths[l], widths[l + 1], A, r_off[l], zero,
                              A, r_off[l + 1], n, finish)
        if l < L - 1 and (act == TANH or act == LEAKY_RELU):  # whole vectors: the rows
            V = vlanes(A)  # are chunk_len + ROW_PAD long
            for r in range(r_off[l + 1], r_off[l + 1] + widths[l + 1]):
                for s in range(0, n, V):
                    x = vload(A, r, s)
                    vstore(A, r, s, vtanh(x) if act == TANH else vleaky(x, slope))


@kernel
def output_delta_chunk(widths, r_off, Y, s0, s1, A, D):
    """Write ``yhat - y`` into the output rows of ``D``; return the sum of squares.

    Samples ``s1 - s0 .. chunk_len - 1`` of a short chunk get ``d = 0`` (padding).
    The sum has ``LANES`` partial sums (see :data:`LANES`), per output row; the
    rows' sums are added in float64, in row order. ``D`` may be ``A`` itself.
    """
    V = vlanes(D)
    C = chunk_len(D)
    L = widths.shape[0] - 1
    n = s1 - s0
    nz = vsplat(D, -0.0)
    total = 0.0
    for o in range(widths[L]):
        r = r_off[L] + o
        if n == C:
            for s in range(0, C, V):
                vstore(D, r, s, vsub(vload(A, r, s), vload(Y, o, s0 + s)))
        else:
            for s in range(n):
                D[r, s] = A[r, s] - Y[o, s0 + s]
            for s in range(n, C):
                D[r, s] = 0.0
        a0, b0_ = nz, nz
        for s in range(0, C, 2 * V):
            x = vload(D, r, s)
            y = vload(D, r, s + V)
            a0 = vfma(x, x, a0)
            b0_ = vfma(y, y, b0_)
        total += fold(a0, b0_)
    return total


@kernel
def backward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, c0, A, D, g, m):
    """Backpropagate ``D`` (output rows filled) and write the chunk's gradient into ``g``.

    ``g`` receives the sums over the chunk's first ``m`` samples of ``d * x`` (weights)
    and ``d`` (biases), unscaled; the caller applies the loss's ``2 / (n * d_out)``.
    ``m`` is ``chunk_len``, or for a short chunk its sample count rounded up to
    whole pairs of vectors (:func:`chunk_gradient` pads those samples with zeros).
    Every entry of ``g`` is assigned exactly once, so ``g`` need not be zeroed.
    Layer 1's inputs are ``X[:, c0:c0 + m]``. ``D``
    may be ``A`` itself: a layer's gradients read its inputs before its deltas
    overwrite them (see :func:`chunk_gradients`).
    """
    L = widths.shape[0] - 1
    zero = np.int64(0)  # not a literal 0: see ``chunk_gradient``
    for l in range(L - 1, -1, -1):
        n_in = widths[l]
        n_out = widths[l + 1]
        rd = r_off[l + 1]
        if l == 0:
            layer_grads(D, rd, n_out, X, zero, c0, n_in, g, w_off[0], b_off[0], m)
        else:
            layer_grads(D, rd, n_out, A, r_off[l], zero, n_in, g, w_off[l], b_off[l], m)
            finish = (MASK if act == RELU else TANH_DERIVATIVE if act == TANH else
                      LEAKY_DERIVATIVE if act == LEAKY_RELU else NO_FINISH)
            dense_delta(theta, w_off[l], n_in, n_out, D, rd, r_off[l], A, finish, slope, m)


@kernel
def chunk_gradient(theta, widths, w_off, b_off, r_off, act, slope, X, Y, s0, s1, A, D, g, Xp):
    """Forward and backward pass of samples ``s0:s1``: writes ``g``, returns the sum of squares.

    A short last chunk is padded with zero inputs, activations and deltas up to
    whole pairs of vectors (``m`` samples, below), so that both passes run whole
    vectors: a padded sample adds a product ``0 * 0`` to each partial sum, which
    changes no gradient (for finite weights). Its loss still sums the squares of
    all ``chunk_len`` deltas, the padded ones 0. ``Xp`` is (d_in, >= chunk_len)
    work space for the padded inputs.

    Compile time: offsets are passed as ``np.int64(0)``, never a literal ``0``:
    numba types a literal as its own type and compiles a second copy of every
    kernel it reaches. And the padded inputs are copied by a loop, not by an
    array-to-array slice assignment, whose shape check compiles the formatting
    of its error message. Together they took float64 ``train_steps`` from 33 s of
    compilation to 15 s (Intel Xeon model 207), with the same machine code speed.
    """
    n = s1 - s0
    C = chunk_len(A)
    if n == C:
        forward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, s0, s1, A)
        total = output_delta_chunk(widths, r_off, Y, s0, s1, A, D)
        backward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, s0, A, D, g, np.int64(C))
        return total
    # A short chunk runs whole pairs of vectors on its inputs padded with zeros,
    # up to m samples, both ways. Forward: each sample's arithmetic is the same in
    # any lane, so its outputs have the same bits, and the padded lanes cost less
    # than the scalar loop a short forward pass would end with, whose
    # multiply-adds wait on each other. Backward: a padded sample adds 0 * 0 to a
    # lane's partial sum, and samples m..C - 1 would only add more of them. Left
    # out, they can only turn a partial sum of +0.0 into -0.0, and the chunks'
    # sum in reduce_chunks starts from +0.0, where +0.0 + -0.0 = +0.0: the
    # gradient keeps its bits (tests/test_kernels.py checks that sum's start).
    # Seed network, the last chunk (Intel Xeon model 207, min of 400 interleaved):
    # float64, 136 samples, 3.5 us instead of 6.6-6.8 for a whole chunk's work;
    # float32, 392 samples, 4.75 instead of 6.7. A whole chunk: 5.0 and 5.3 us.
    V2 = 2 * vlanes(A)
    m = np.int64((n + V2 - 1) // V2 * V2)
    zero = np.int64(0)
    for i in range(X.shape[0]):
        for s in range(n):
            Xp[i, s] = X[i, s0 + s]
    Xp[:, n:m] = 0.0
    forward_chunk(theta, widths, w_off, b_off, r_off, act, slope, Xp, zero, m, A)
    A[:, n:m] = 0.0
    total = output_delta_chunk(widths, r_off, Y, s0, s1, A, D)
    backward_chunk(theta, widths, w_off, b_off, r_off, act, slope, Xp, zero, A, D, g, m)
    return total


@parallel_kernel
def chunk_gradients(thetas, widths, w_off, b_off, r_off, act, slope, X, Y, active,
                    scratch, partial_G, partial_loss):
    """Every (instance, chunk) task's gradient into ``partial_G``, loss into ``partial_loss``.

    The backward pass writes each layer's deltas over its activations (``D`` is
    ``A``, both ``scratch``): every activation is read for the last time, by
    the layer's weight gradients and its delta's derivative (:func:`finish_delta`),
    before its delta is written in its place. A chunk's work rows then take half the memory
    and, for the seed network (about 54 KB instead of 108), mostly stay in a 48 KB
    L1 cache: float64 seed step 86.2 us instead of 94.2 (1 net), 45.2 instead of
    50.6 per net-step (64 nets, 2 threads; Intel Xeon model 207, min of 300 and
    100 interleaved rounds). Same bits: only where the numbers are kept changes.
    """
    E = thetas.shape[0]
    n = X.shape[1]
    C = chunk_len(X)
    n_chunks = (n + C - 1) // C
    # Per-thread work space, allocated once per call rather than once per task.
    n_threads = scratch.shape[0]
    Xp = np.empty((n_threads, X.shape[0], C + ROW_PAD), dtype=X.dtype)
    for task in numba.prange(E * n_chunks):
        e = task // n_chunks
        if active[e] == 0:
            continue
        c = task % n_chunks
        s0 = c * C
        s1 = min(n, s0 + C)
        tid = numba.get_thread_id()
        A = scratch[tid]
        partial_loss[e, c] = chunk_gradient(thetas[e], widths, w_off, b_off, r_off, act, slope, X, Y,
                                            s0, s1, A, A, partial_G[task], Xp[tid])


@kernel
def reduce_chunks(partial_G, partial_loss, e, n_chunks, scale, G, loss):
    """Instance ``e``'s loss and gradient: its chunks' partials added in chunk order."""
    total = 0.0
    for c in range(n_chunks):
        total += partial_loss[e, c]
    loss[e] = total * scale
    g = G[e]
    P = g.shape[0]
    for j in range(P):
        g[j] = 0.0
    for c in range(n_chunks):  # loop over j innermost: vectorizes, same order per j
        pg = partial_G[e * n_chunks + c]
        for j in range(P):
            g[j] += pg[j]
    k = g.dtype.type(2.0 * scale)
    for j in range(P):
        g[j] = k * g[j]


@parallel_kernel
def reduce_all(partial_G, partial_loss, active, n_chunks, scale, G, loss):
    """:func:`reduce_chunks` for every active instance."""
    for e in numba.prange(G.shape[0]):
        if active[e] == 0:
            continue
        reduce_chunks(partial_G, partial_loss, np.int64(e), n_chunks, scale, G, loss)  # as in reduce_and_update


@parallel_kernel
def forward_batch(thetas, widths, w_off, b_off, r_off, act, slope, X, scratch_A, out):
    """Network outputs for every instance: ``out`` (E, d_out, n)."""
    E = thetas.shape[0]
    L = widths.shape[0] - 1
    n = X.shape[1]
    C = chunk_len(X)
    n_chunks = (n + C - 1) // C
    for task in numba.prange(E * n_chunks):
        e = task // n_chunks
        c = task % n_chunks
        s0 = c * C
        s1 = min(n, s0 + C)
        A = scratch_A[numba.get_thread_id()]
        forward_chunk(thetas[e], widths, w_off, b_off, r_off, act, slope, X, s0, s1, A)
        for o in range(widths[L]):
            row = A[r_off[L] + o]
            for s in range(s1 - s0):
                out[e, o, s0 + s] = row[s]


@kernel
def times_double_double(ah, al, bh, bl):
    """``(ah + al) * (bh + bl)`` in double-double arithmetic: ``(h, l)`` with ``h + l``
    the product to about 104 bits (``ah * bh`` exactly by one fused multiply-add)."""
    p = ah * bh
    e = sfma(ah, bh, -p) + (ah * bl + al * bh)
    h = p + e
    return h, e - (h - p)


@kernel
def integer_power(b, t):
    """``b ** t`` for a float64 ``b`` and an integer ``t >= 0``, by squaring in
    double-double arithmetic and rounding once: correctly rounded but for a value
    within about 1e-29 of a midpoint between floats, or below about 1e-290 (where
    the low half underflows; tests/test_optim.py checks six bases against exact
    decimal powers, t up to 300 000). Not numba's ``b ** t``: it squares in plain
    float64 (up to t = 65536; 0.9 ** 4 is already one unit off) and beyond calls the
    C library's ``pow``, whose last bit depends on the CPU (glibc's gives other
    bits with and without FMA for 175 of the exponents 1 to 250 000 of 0.999)."""
    rh, rl = 1.0, 0.0
    bh, bl = b, 0.0
    n = t
    while n > 0:
        if n & 1:
            rh, rl = times_double_double(rh, rl, bh, bl)
        n >>= 1
        if n > 0:
            bh, bl = times_double_double(bh, bl, bh, bl)
    return rh + rl


@kernel
def update_instance(thetas, G, state1, state2, free, e, t, optimizer, hyper):
    """One optimizer step of instance ``e`` (see :func:`optimizer_update`)."""
    P = thetas.shape[1]
    # Every number below has the parameters' dtype, so a float32 run does its
    # optimizer arithmetic in float32; the bias corrections are formed in float64
    # and rounded once, as PyTorch forms them in Python floats.
    dt = thetas.dtype.type
    one = dt(1.0)
    lr = dt(hyper[H_LR])
    b1 = dt(hyper[H_BETA1])
    b2 = dt(hyper[H_BETA2])
    eps = dt(hyper[H_EPS])
    mu = dt(hyper[H_MOMENTUM])
    wd = dt(hyper[H_WEIGHT_DECAY])
    bc1 = 1.0 - integer_power(hyper[H_BETA1], t)
    bc2 = 1.0 - integer_power(hyper[H_BETA2], t)
    wolfram_step = dt(hyper[H_LR] * np.sqrt(bc2) / bc1)
    kingma_step = dt(hyper[H_LR] / bc1)
    sqrt_bc2 = dt(np.sqrt(bc2))
    th = thetas[e]
    m = state1[e]
    v = state2[e]
    g_e = G[e]
    for j in range(P):
        if free[j] == 0:
            continue
        g = g_e[j]
        if wd != 0:
            g = g + wd * th[j]
        if optimizer == GD:
            th[j] = th[j] - lr * g
        elif optimizer == MOMENTUM:
            m[j] = mu * m[j] + g
            th[j] = th[j] - lr * m[j]
        else:
            m[j] = b1 * m[j] + (one - b1) * g
            v[j] = b2 * v[j] + (one - b2) * (g * g)
            if optimizer == ADAM_WOLFRAM:
                th[j] = th[j] - wolfram_step * m[j] / (np.sqrt(v[j]) + eps)
            else:
                th[j] = th[j] - kingma_step * m[j] / (np.sqrt(v[j]) / sqrt_bc2 + eps)


@parallel_kernel
def optimizer_update(thetas, G, state1, state2, free, active, t, optimizer, hyper):
    """Apply one optimizer step to every active instance, in place.

    ``t`` is the 1-based number of this update. ``state1``/``state2`` have the
    shape of ``thetas``: the velocity (momentum), or the first and second moment
    estimates (Adam). Parameters with ``free[j] == 0`` are never touched, so a
    masked weight that starts at 0 stays exactly 0. Weight decay is the coupled
    L2 form: ``g += weight_decay * theta`` before the step.

    gd:           theta -= lr * g
    momentum:     v = mu * v + g;  theta -= lr * v                  (heavy ball)
    adam_wolfram: m, v as Adam;    theta -= lr * sqrt(1 - b2**t) / (1 - b1**t)
                                            * m / (sqrt(v) + eps)
    adam_kingma:  theta -= (lr / (1 - b1**t)) * m
                           / (sqrt(v) / sqrt(1 - b2**t) + eps)    (PyTorch's form)
    """
    for e in numba.prange(thetas.shape[0]):
        if active[e] == 0:
            continue
        update_instance(thetas, G, state1, state2, free, e, t, optimizer, hyper)


@parallel_kernel
def reduce_and_update(thetas, G, state1, state2, free, active, t, optimizer, hyper,
                      partial_G, partial_loss, n_chunks, scale, loss):
    """:func:`reduce_chunks` then :func:`update_instance` per instance: one parallel
    region per step instead of two."""
    for e in numba.prange(thetas.shape[0]):
        if active[e] == 0:
            continue
        i = np.int64(e)  # one type for the index in both of numba's typing passes: one compile
        reduce_chunks(partial_G, partial_loss, i, n_chunks, scale, G, loss)
        update_instance(thetas, G, state1, state2, free, i, t, optimizer, hyper)


@kernel
def train_steps(thetas, state1, state2, free, active, t0, n_steps, optimizer, hyper,
                widths, w_off, b_off, r_off, act, slope, X, Y,
                scratch, partial_G, partial_loss, G, loss, loss_out):
    """Run ``n_steps`` full-batch updates on every active instance, in place.

    Parameters
    ----------
    thetas : (E, P) parameters; state1, state2 : (E, P) optimizer state (see
        :func:`optimizer_update`); free : (P,) 0 where a parameter is masked
    active : (E,) uint8; instances with 0 are skipped (their outputs untouched)
    t0 : the number of updates done before
    X : (d_in, n); Y : (d_out, n), of the parameters' dtype
    scratch : (n_threads, R, chunk_len + ROW_PAD) per-thread work space
    partial_G : (E * chunks, P), the parameters' dtype; partial_loss : (E, chunks) float64
    G : (E, P) the gradient of the last step; loss : (E,) float64 its loss
    loss_out : (E, n_steps) float64, the loss of the parameters *before* each update

    The loss is ``mean((yhat - y)**2)`` over samples and outputs. With
    ``n_steps == 0`` nothing is updated: ``G`` and ``loss`` receive the gradient
    and loss of the current parameters (so that training needs one compiled
    kernel, not two: a second costs 0.35 s to load and ~10 s to compile).
    """
    n = X.shape[1]
    C = chunk_len(X)
    n_chunks = (n + C - 1) // C
    scale = 1.0 / (n * Y.shape[0])
    for k in range(n_steps):
        chunk_gradients(thetas, widths, w_off, b_off, r_off, act, slope, X, Y, active,
                        scratch, partial_G, partial_loss)
        reduce_and_update(thetas, G, state1, state2, free, active, t0 + k + 1, optimizer, hyper,
                          partial_G, partial_loss, n_chunks, scale, loss)
        for e in range(thetas.shape[0]):
            loss_out[e, k] = loss[e]
    if n_steps == 0:
        chunk_gradients(thetas, widths, w_off, b_off, r_off, act, slope, X, Y, active,
                        scratch, partial_G, partial_loss)
        reduce_all(partial_G, partial_loss, active, n_chunks, scale, G, loss)
