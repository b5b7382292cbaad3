"""Explicit SIMD vectors for the kernels: a numba type and a few intrinsics.

Why: LLVM's loop vectorizer picks vector width, unrolling and register use from
the CPU it believes it is compiling for, so the same kernel ran 1.8x apart on two
x86-64 machines (issue 11). Here a kernel states its vectors itself: a
:class:`Vec` is one LLVM vector of ``64 // itemsize`` numbers (8 float64 or 16
float32, one AVX-512 register or two AVX2 ones, four NEON ones), kept in
registers by LLVM's register allocator, and every multiply-add is an explicit,
correctly rounded ``llvm.fma`` (emulated exactly where the CPU has no FMA
instructions) and tanh is built from such operations: the IR of both is in
:mod:`mlpsim.simd_ir`. The arithmetic is therefore the same on every CPU; only
the instructions that carry it out differ.

Kernels use these functions only (no operators on vectors):

* ``vload(a, r, c)``: ``a[r, c : c + V]`` of a C-contiguous 2-D array;
  ``vstore(a, r, c, v)``: ``a[r, c : c + V] = v``
* ``vsplat(a, x)``: ``V`` copies of ``x`` (``a``, an array, names the dtype);
  ``vbcast(a, k)``: ``V`` copies of ``a[k]`` of a 1-D array, without numba's
  negative-index test
* ``vfma(a, b, c)``: ``a * b + c`` rounded once, lane by lane; ``sfma`` the same
  for scalars (short tails); ``vadd``, ``vsub``, ``vmul``: lane by lane
* ``vrelu(v)``: 0 where ``v < 0``, else ``v`` (NaN stays NaN); ``vmask(v, a)``:
  0 where ``a <= 0``, else ``v`` (relu's derivative); ``vmask_scale(v, a, k)``:
  ``v * k`` there instead (leaky relu's); ``vleaky(v, slope)``: leaky relu
* ``vsum(v)``: the lanes added by halves (see :func:`vsum`); ``vsums_store(g, j0,
  j1, (v0, ..., v7))``: the same sums of 2, 4 or 8 vectors at once, stored in two
  runs of ``g``; ``vlanes(a)``: ``V`` for the dtype of the array ``a``

No bounds are checked: the kernels' callers guarantee them.
"""
import os
import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from . import simd_ir

#: Bytes per vector: one AVX-512 register. Fixed (not the CPU's width), so that
#: the lanes, and with them the order of every sum, are the same on every CPU.
VECTOR_BYTES = 64


def _target_features() -> str:
    """The CPU features numba compiles for: ``NUMBA_CPU_FEATURES`` if set, else the host's."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    return config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()


def _wide_registers() -> bool:
    forced = os.environ.get("MLPSIM_REGISTERS", "")
    if forced in ("wide", "narrow"):
        return forced == "wide"
    return "+avx512f" in _target_features().split(",")


#: Whether the compile target holds 32 vectors in registers (AVX-512's 32 zmm),
#: rather than 8 (AVX2's 16 ymm, NEON's 32 q, two or four to a vector) or 4 (SSE).
#: Kernels block their loops by it: how a loop is blocked changes no sum, only
#: how many partial sums stay in registers at once. ``MLPSIM_REGISTERS=wide`` or
#: ``narrow`` forces either blocking, so that tests run both on one machine (with
#: their own ``NUMBA_CACHE_DIR``: the cache does not know the setting).
WIDE_REGISTERS = _wide_registers()


def _hardware_fma(features: str, machine: str | None = None) -> bool:
    """Whether code compiled for ``features`` has fused multiply-add instructions.

    x86: FMA3 (Intel since Haswell, AMD since Piledriver) or AMD's FMA4. Every
    other architecture numba compiles for (AArch64, POWER) has them in its base
    instruction set."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    present = features.split(",")
    return "+fma" in present or "+fma4" in present


#: Whether every ``llvm.fma`` of the kernels is one instruction. The compile target
#: may have no FMA: x86 CPUs from before 2013 and Atom-class ones, virtual machines
#: with a conservative CPU model (QEMU's qemu64, Proxmox's x86-64-v2), or
#: ``NUMBA_CPU_NAME=generic`` without ``NUMBA_CPU_FEATURES`` (numba's setting for
#: portable caches). There the kernels emulate each fused multiply-add exactly from
#: adds and multiplies (:func:`mlpsim.simd_ir.emulated_fma`): the bits stay those of
#: every other CPU, and a training step takes about 40 times as long as with FMA (float64 seed step,
#: Intel Xeon model 207 compiled for Sandy Bridge: 6.1 ms, against 0.14 ms compiled
#: for AVX2 with FMA; left to LLVM, the C library's software fma took 230 ms).
#: :func:`fma_warning` tells the user. ``MLPSIM_FMA=software`` forces the emulation,
#: so that tests run it on any machine (with their own ``NUMBA_CACHE_DIR``: the cache
#: does not know the setting).
HARDWARE_FMA = os.environ.get("MLPSIM_FMA") != "software" and _hardware_fma(_target_features())


def _translated() -> bool:
    """Whether this process is x86 code translated by Rosetta 2 on an Apple silicon Mac
    (an x86-64 Python there: its x86 CPU has no FMA)."""
    if platform.system() != "Darwin":
        return False
    import subprocess
    try:
        answer = subprocess.run(["sysctl", "-in", "sysctl.proc_translated"], capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return answer == "1"


def fma_warning(target: str | None = None, host: str | None = None, machine: str | None = None,
                translated: bool | None = None) -> str | None:
    """What to tell the user when the kernels' multiply-adds run in software, else None.

    ``target``, ``host``: the feature strings numba compiles for and this CPU's
    (default: the real ones); ``machine``: as :func:`platform.machine`;
    ``translated``: whether Rosetta 2 runs this process (default: asked of macOS)."""
    from numba.core.codegen import get_host_cpu_features
    cost = ("every multiply-add is emulated from adds and multiplies: the same bits as on any "
            "other CPU, but a training step takes about 40 times as long as with FMA")
    if target is None and os.environ.get("MLPSIM_FMA") == "software":
        return "mlpsim: MLPSIM_FMA=software: " + cost + "."
    target = _target_features() if target is None else target
    if _hardware_fma(target, machine):
        return None
    host = get_host_cpu_features() if host is None else host
    if _hardware_fma(host, machine):
        return ("mlpsim: the kernels are compiled without this CPU's FMA instructions "
                "(NUMBA_CPU_NAME / NUMBA_CPU_FEATURES): " + cost + ". Unset NUMBA_CPU_NAME, or add "
                "+fma (and +avx2) to NUMBA_CPU_FEATURES.")
    if _translated() if translated is None else translated:
        return ("mlpsim: this Python is x86 code translated by Rosetta 2, whose CPU has no FMA instructions: "
                + cost + ". A native arm64 Python (python.org's installer, Miniforge) runs the kernels with FMA.")
    return "mlpsim: this CPU has no FMA instructions: " + cost + "."


class Vec(types.Type):
    """An LLVM vector of ``lanes`` numbers of numba type ``dtype``."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        be_type = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, be_type)


def _element_pointer(context, builder, sig, args):
    """Pointer to ``a[r, c]`` of a C-contiguous 2-D array, cast to a vector pointer."""
    arrty = sig.args[0]
    ary = context.make_array(arrty)(context, builder, args[0])
    index = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:3], sig.args[1:3])]
    ptr = cgutils.get_item_pointer(context, builder, arrty, ary, index)
    vecty = context.get_value_type(Vec(arrty.dtype))
    return builder.bitcast(ptr, vecty.as_pointer())


def _check_dtype(a):
    if not (isinstance(a, types.Array) and a.dtype in (types.float64, types.float32)):
        raise TypeError(f"simd: need a float32/float64 array, got {a}")


def _check_array(a):
    _check_dtype(a)
    if not (a.ndim == 2 and a.layout == "C"):
        raise TypeError(f"simd: need a 2-D C-contiguous array, got {a}")


@intrinsic
def vload(typingctx, a, r, c):
    _check_array(a)
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        return builder.load(ptr, align=a.dtype.bitwidth // 8)
    return vt(a, r, c), codegen


@intrinsic
def vstore(typingctx, a, r, c, v):
    _check_array(a)
    if not (isinstance(v, Vec) and v.dtype == a.dtype):
        raise TypeError(f"simd.vstore: vector {v} does not match array {a}")

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        builder.store(args[3], ptr, align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, r, c, v), codegen


def _splat(context, builder, vt, x):
    """The LLVM vector of type ``vt`` with ``x`` in every lane."""
    return _splat_ir(builder, context.get_value_type(vt), x)


def _splat_ir(builder, vecty, x):
    """The LLVM vector of LLVM type ``vecty`` with ``x`` in every lane."""
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vecty.count), [0] * vecty.count)
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), mask)


def _fma_emitter(builder, ty, hardware=None):
    """:func:`mlpsim.simd_ir.fma_emitter` for this compile target (:data:`HARDWARE_FMA`),
    unless ``hardware`` says otherwise."""
    return simd_ir.fma_emitter(builder, ty, HARDWARE_FMA if hardware is None else hardware)


@intrinsic
def vsplat(typingctx, a, x):
    _check_dtype(a)
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        return _splat(context, builder, vt, context.cast(builder, args[1], sig.args[1], vt.dtype))
    return vt(a, x), codegen


@intrinsic
def vlanes(typingctx, a):
    _check_dtype(a)
    lanes = Vec(a.dtype).lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(a), codegen


def _check_vecs(*vs):
    if not all(isinstance(v, Vec) for v in vs) or len({v.dtype for v in vs}) != 1:
        raise TypeError(f"simd: need vectors of one dtype, got {vs}")


@intrinsic
def vfma(typingctx, a, b, c):
    _check_vecs(a, b, c)

    def codegen(context, builder, sig, args):
        return _fma_emitter(builder, context.get_value_type(sig.return_type))(*args)
    return a(a, b, c), codegen


def _lane_by_lane(name: str, instruction: str):
    """An intrinsic applying the IR ``instruction`` (``fadd``, ...) to two vectors."""
    def typer(typingctx, a, b):
        _check_vecs(a, b)

        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(args[0], args[1])
        return a(a, b), codegen
    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


vadd = _lane_by_lane("vadd", "fadd")
vsub = _lane_by_lane("vsub", "fsub")
vmul = _lane_by_lane("vmul", "fmul")


@intrinsic
def vrelu(typingctx, v):
    _check_vecs(v)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        negative = builder.fcmp_ordered("<", args[0], zero)
        return builder.select(negative, zero, args[0])
    return v(v), codegen


@intrinsic
def vmask(typingctx, v, a):
    _check_vecs(v, a)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        off = builder.fcmp_ordered("<=", args[1], zero)
        return builder.select(off, zero, args[0])
    return v(v, a), codegen


@intrinsic
def vmask_scale(typingctx, v, a, k):
    """``v * k`` where ``a <= 0``, else ``v`` (leaky relu's derivative, ``k`` its slope)."""
    _check_vecs(v, a, k)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        off = builder.fcmp_ordered("<=", args[1], zero)
        return builder.select(off, builder.fmul(args[0], args[2]), args[0])
    return v(v, a, k), codegen


@intrinsic
def vleaky(typingctx, v, slope):
    """Leaky relu: ``slope * v`` where ``v < 0``, else ``v``; ``slope`` a float64. The
    product is taken in float64 and then rounded to ``v``'s dtype, as numba's scalar
    ``z[s] = slope * z[s]`` does on a float32 array."""
    _check_vecs(v)
    if slope != types.float64:
        raise TypeError(f"simd.vleaky: the slope must be a float64, got {slope}")

    def codegen(context, builder, sig, args):
        x = args[0]
        wide = ir.VectorType(ir.DoubleType(), sig.args[0].lanes)
        k = _splat_ir(builder, wide, args[1])
        if sig.args[0].dtype == types.float64:
            product = builder.fmul(x, k)
        else:
            product = builder.fptrunc(builder.fmul(builder.fpext(x, wide), k), x.type)
        negative = builder.fcmp_ordered("<", x, ir.Constant(x.type, None))
        return builder.select(negative, product, x)
    return v(v, slope), codegen


@intrinsic
def vsum(typingctx, v):
    """The lanes of ``v`` added by halves: ``u = v[:V/2] + v[V/2:]``, then the same for
    ``u``, down to one number. For 8 lanes: ``((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7))``."""
    _check_vecs(v)

    def codegen(context, builder, sig, args):
        u = args[0]
        n = sig.args[0].lanes
        while n > 1:
            h = n // 2
            lo = builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(h))))
            hi = builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(ir.IntType(32), h),
                                                          list(range(h, n))))
            u = builder.fadd(lo, hi)
            n = h
        return builder.extract_element(u, ir.Constant(ir.IntType(32), 0))
    return v.dtype(v), codegen


def _halves_of_groups(groups, width, lanes_from, second=0):
    """Shuffle indices of the low (then high) half of each of ``groups`` groups of
    ``width`` lanes, from a vector whose lanes start at ``lanes_from``; ``second``
    offsets the high halves."""
    h = width // 2
    return [lanes_from + g * width + j + second for g in range(groups) for j in range(h)]


def _transposed_sums(builder, vecs, lanes):
    """``len(vecs)`` sums, one per vector, each added by halves exactly as :func:`vsum`
    adds it, as one LLVM vector of ``len(vecs)`` lanes in the order of ``vecs``.

    Pairs of vectors are combined first: the low halves of both in one vector, the
    high halves in another, one add; so a level's shuffles and adds serve two
    vectors at once. Once one vector is left, it holds one group of lanes per sum,
    and the groups are halved in place down to one lane each."""
    i32 = ir.IntType(32)

    def shuffle(x, y, idx):
        return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, len(idx)), idx))

    groups, width = 1, lanes
    while len(vecs) > 1:
        h = width // 2
        nxt = []
        for x, y in zip(vecs[0::2], vecs[1::2]):
            lo = _halves_of_groups(groups, width, 0) + _halves_of_groups(groups, width, lanes)
            hi = _halves_of_groups(groups, width, 0, h) + _halves_of_groups(groups, width, lanes, h)
            nxt.append(builder.fadd(shuffle(x, y, lo), shuffle(x, y, hi)))
        vecs, groups, width = nxt, groups * 2, h
    v = vecs[0]
    while width > 1:
        h = width // 2
        v = builder.fadd(shuffle(v, v, _halves_of_groups(groups, width, 0)),
                         shuffle(v, v, _halves_of_groups(groups, width, 0, h)))
        width = h
    return v


@intrinsic
def vsums_store(typingctx, g, j0, j1, vs):
    """``g[j0 + k] = vsum(vs[k])`` for the first half of the tuple ``vs`` of 2, 4 or 8
    vectors, ``g[j1 + k] = vsum(vs[half + k])`` for the second: the same numbers as
    :func:`vsum` of each, at a third of its shuffles and adds (:func:`_transposed_sums`)."""
    if not (isinstance(g, types.Array) and g.ndim == 1 and g.dtype in (types.float64, types.float32)):
        raise TypeError(f"simd.vsums_store: need a 1-D float32/float64 array, got {g}")
    if not (isinstance(vs, types.UniTuple) and isinstance(vs.dtype, Vec) and vs.dtype.dtype == g.dtype
            and vs.count in (2, 4, 8)):
        raise TypeError(f"simd.vsums_store: need a tuple of 2, 4 or 8 vectors of {g.dtype}, got {vs}")
    k, lanes = vs.count, vs.dtype.lanes

    def codegen(context, builder, sig, args):
        vecs = [builder.extract_value(args[3], i) for i in range(k)]
        sums = _transposed_sums(builder, vecs, lanes)
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i32 = ir.IntType(32)
        half_ty = ir.VectorType(context.get_value_type(g.dtype), k // 2)
        for start, (jv, jt) in zip((0, k // 2), ((args[1], sig.args[1]), (args[2], sig.args[2]))):
            part = builder.shuffle_vector(sums, sums, ir.Constant(ir.VectorType(i32, k // 2),
                                                                  list(range(start, start + k // 2))))
            j = context.cast(builder, jv, jt, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [j])
            builder.store(part, builder.bitcast(ptr, half_ty.as_pointer()), align=g.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(g, j0, j1, vs), codegen


@intrinsic
def sfma(typingctx, a, b, c):
    """Scalar ``a * b + c`` rounded once: the same arithmetic as one lane of :func:`vfma`."""
    if not (a == b == c and a in (types.float64, types.float32)):
        raise TypeError(f"simd.sfma: need three float64 or three float32, got {a}, {b}, {c}")

    def codegen(context, builder, sig, args):
        return _fma_emitter(builder, context.get_value_type(sig.return_type))(*args)
    return a(a, b, c), codegen


def _emulated(name, vector):
    """A test's handle on :func:`mlpsim.simd_ir.emulated_fma`: ``vfma``/``sfma``
    computed without FMA instructions whatever the target."""
    def typer(typingctx, a, b, c):
        if vector:
            _check_vecs(a, b, c)
        elif not (a == b == c and a in (types.float64, types.float32)):
            raise TypeError(f"simd.{name}: need three float64 or three float32, got {a}, {b}, {c}")

        def codegen(context, builder, sig, args):
            return _fma_emitter(builder, context.get_value_type(sig.return_type), hardware=False)(*args)
        return a(a, b, c), codegen
    typer.__name__ = name
    return intrinsic(typer)


vfma_emulated = _emulated("vfma_emulated", vector=True)
sfma_emulated = _emulated("sfma_emulated", vector=False)


@intrinsic
def vtanh(typingctx, v):
    """tanh lane by lane, the same bits as :func:`stanh` of each lane (see
    :func:`mlpsim.simd_ir.tanh_ir`)."""
    _check_vecs(v)

    def codegen(context, builder, sig, args):
        return simd_ir.tanh_ir(builder, args[0], sig.args[0].dtype.bitwidth, sig.args[0].lanes, HARDWARE_FMA)
    return v(v), codegen


@intrinsic
def stanh(typingctx, x):
    """tanh of a float64 or float32 from correctly rounded operations only: the same
    bits on every CPU, unlike the C library's (see :func:`mlpsim.simd_ir.tanh_ir`)."""
    if x not in (types.float64, types.float32):
        raise TypeError(f"simd.stanh: need a float64 or float32, got {x}")

    def codegen(context, builder, sig, args):
        return simd_ir.tanh_ir(builder, args[0], sig.args[0].bitwidth, None, HARDWARE_FMA)
    return x(x), codegen


@intrinsic
def vbcast(typingctx, a, k):
    """A vector of ``V`` copies of ``a[k]`` (1-D array, ``k >= 0``): unlike ``vsplat(z,
    a[k])`` no test for a negative index, which would cost four instructions per weight."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.dtype in (types.float64, types.float32)):
        raise TypeError(f"simd.vbcast: need a 1-D float32/float64 array, got {a}")
    vt = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        k = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [k])
        return _splat(context, builder, vt, builder.load(ptr))
    return vt(a, k), codegen


def aligned_zeros(shape, dtype=np.float64) -> np.ndarray:
    """A C-contiguous array of zeros whose first element sits on a ``VECTOR_BYTES`` boundary.

    NumPy aligns to 16 bytes only; a 64-byte vector load that straddles two cache
    lines costs two. Measured on the seed network's chunk (Intel Xeon model 207,
    float64): the backward deltas took 2.8 us on unaligned rows, 1.75 on aligned
    ones. Rows stay aligned when their length in bytes is a multiple of 64 (every
    work array holds CHUNK samples per row).
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(count * dtype.itemsize + VECTOR_BYTES, dtype=np.uint8)
    start = -raw.ctypes.data % VECTOR_BYTES
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def aligned_copy(a, dtype=None) -> np.ndarray:
    """``a`` as a C-contiguous, ``VECTOR_BYTES``-aligned array of ``dtype``."""
    a = np.asarray(a)
    out = aligned_zeros(a.shape, a.dtype if dtype is None else dtype)
    out[...] = a
    return out
