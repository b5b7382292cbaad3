"""LLVM IR for the arithmetic that must round the same way on every CPU.

The intrinsics of :mod:`mlpsim.simd` emit it, so that no result bit depends on the
CPU the kernels run on:

* a fused multiply-add ``a * b + c``, rounded once: one ``llvm.fma`` where the
  compile target has FMA instructions, else an exact emulation from adds and
  multiplies (:func:`fma_emitter`, :func:`emulated_fma`);
* tanh from + - * / and fused multiply-adds only (:func:`tanh_ir`), since the C
  library's tanh takes other code paths on other CPUs.

Every function takes an llvmlite ``IRBuilder`` and LLVM values (a double, a float,
or a vector of them) and returns LLVM values; none knows numba's types.
"""
import math
from decimal import Decimal, localcontext

import numpy as np
from llvmlite import ir
from numba.core import cgutils


def llvm_function(builder, name, ty, n_args):
    """The LLVM intrinsic ``llvm.<name>`` for the LLVM type ``ty`` (a double, a float,
    or a vector of them), taking ``n_args`` of that type."""
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    suffix = "f64" if isinstance(element, ir.DoubleType) else "f32"
    if isinstance(ty, ir.VectorType):
        suffix = f"v{ty.count}{suffix}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * n_args),
                                          f"llvm.{name}.{suffix}")


def fma_emitter(builder, ty, hardware: bool):
    """A function ``fma(a, b, c)`` that emits ``a * b + c`` rounded once, for LLVM
    values of type ``ty``: one ``llvm.fma`` where the target has FMA instructions
    (``hardware``: :data:`mlpsim.simd.HARDWARE_FMA`), else :func:`emulated_fma`."""
    llvm_fma = llvm_function(builder, "fma", ty, 3)
    if hardware:
        return lambda a, b, c: builder.call(llvm_fma, [a, b, c])
    return lambda a, b, c: emulated_fma(builder, llvm_fma, a, b, c)


# --------------------------------------------------------------- fma without FMA
# Without FMA instructions LLVM turns every llvm.fma into a call of the C library's
# fma per number, and glibc's is exact but slow in software: a float64 seed step
# took 230 ms instead of 0.14 with FMA (Intel Xeon model 207 compiled for Sandy
# Bridge, glibc's FMA code path switched off, as on a CPU without FMA). Emulated
# here instead (6.1 ms), with the same bits, from plain adds and multiplies (Boldo &
# Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using
# rounding to odd", IEEE Trans. Computers 57(4), 2008):
#   float64: a * b = uh + ul exactly (Dekker's product, Veltkamp's split), c + uh =
#            th + tl exactly (Knuth's two-sum); fma = RN(th + RO(tl + ul));
#   float32: a * b is exact in float64; fma = RN32(RO64(a * b + c)),
# where RO is rounding to odd: the sum rounded to nearest, moved one unit toward the
# exact sum when it was inexact and its last bit is even. Dekker's product is exact
# only away from overflow and underflow: a float64 vector with a lane outside that
# range (or not finite) takes llvm.fma, the C library's fma, instead: exact in glibc;
# other C libraries may not be (the MSVC runtime's software fma has been reported
# inexact), and there those rare vectors may differ. float32 needs no such guard: its
# product, sum and error are float64 numbers far from float64's limits, and inf and
# NaN pass through.

def _const(ty, value):
    """An LLVM constant of type ``ty`` (scalar or vector) with ``value`` in every lane."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [value] * ty.count)
    return ir.Constant(ty, value)


def _with_element(ty, element):
    """``ty`` (a scalar or vector type) with its element type replaced by ``element``."""
    return ir.VectorType(element, ty.count) if isinstance(ty, ir.VectorType) else element


def _two_sum(builder, x, y):
    """``(s, e)``: ``s = RN(x + y)`` and its exact error ``e`` (Knuth, no branch)."""
    s = builder.fadd(x, y)
    yv = builder.fsub(s, x)
    xv = builder.fsub(s, yv)
    return s, builder.fadd(builder.fsub(x, xv), builder.fsub(y, yv))


def _round_to_odd_sum(builder, x, y):
    """``RO(x + y)``: the sum itself when it is exact, else, of the two floats around
    it, the one whose last bit is odd. An infinite or NaN sum is left as it is (its
    two-sum error is NaN: ``inf - inf``)."""
    s, e = _two_sum(builder, x, y)
    element = s.type.element if isinstance(s.type, ir.VectorType) else s.type
    ity = _with_element(s.type, ir.IntType(64 if isinstance(element, ir.DoubleType) else 32))
    bits = builder.bitcast(s, ity)
    even = builder.icmp_signed("==", builder.and_(bits, _const(ity, 1)), _const(ity, 0))
    inexact = builder.fcmp_ordered("!=", e, _const(s.type, 0.0))  # false for a NaN error
    # One unit away from zero (bits + 1) when the error has the sum's sign, else toward it.
    same_sign = builder.icmp_signed(">=", builder.xor(bits, builder.bitcast(e, ity)), _const(ity, 0))
    step = builder.select(same_sign, _const(ity, 1), _const(ity, -1))
    return builder.bitcast(builder.select(builder.and_(even, inexact), builder.add(bits, step), bits), s.type)


def emulated_fma(builder, llvm_fma, a, b, c):
    """``a * b + c`` rounded once, the same bits as ``llvm.fma``, from adds and multiplies."""
    element = a.type.element if isinstance(a.type, ir.VectorType) else a.type
    if isinstance(element, ir.FloatType):
        wide = _with_element(a.type, ir.DoubleType())
        p = builder.fmul(builder.fpext(a, wide), builder.fpext(b, wide))  # exact: 24 + 24 bits
        return builder.fptrunc(_round_to_odd_sum(builder, p, builder.fpext(c, wide)), a.type)
    ty = a.type

    def k(value):
        return _const(ty, value)
    fabs = llvm_function(builder, "fabs", ty, 1)

    def split(x):  # Veltkamp: x = hi + lo, each of at most 26 significant bits
        t = builder.fmul(k(134217729.0), x)  # 2**27 + 1
        hi = builder.fsub(t, builder.fsub(t, x))
        return hi, builder.fsub(x, hi)
    ah, al = split(a)
    bh, bl = split(b)
    uh = builder.fmul(a, b)
    ul = builder.fsub(builder.fmul(ah, bh), uh)
    ul = builder.fadd(builder.fadd(builder.fadd(ul, builder.fmul(ah, bl)), builder.fmul(al, bh)),
                      builder.fmul(al, bl))
    th, tl = _two_sum(builder, c, uh)
    v = _round_to_odd_sum(builder, tl, ul)
    # v == 0: th is exact, and keeps the sign of zero that fma gives. Computed before
    # the guard's branch, so also where the fallback then replaces it: cheaper than a
    # second block.
    fast = builder.select(builder.fcmp_ordered("==", v, k(0.0)), th, builder.fadd(th, v))

    # Where Dekker's product is exact: |a|, |b| below the split's overflow, the product
    # exactly zero or far from underflow and overflow, c far from overflow; all finite
    # (a comparison with NaN is false).
    def at_most(x, limit):
        return builder.fcmp_ordered("<=", builder.call(fabs, [x]), k(limit))
    zero_product = builder.or_(builder.fcmp_ordered("==", a, k(0.0)), builder.fcmp_ordered("==", b, k(0.0)))
    product_ok = builder.and_(builder.fcmp_ordered(">=", builder.call(fabs, [uh]), k(2.0 ** -900)),
                              at_most(uh, 2.0 ** 900))
    ok = builder.and_(builder.and_(at_most(a, 2.0 ** 995), at_most(b, 2.0 ** 995)),
                      builder.and_(at_most(c, 2.0 ** 900), builder.or_(zero_product, product_ok)))
    if isinstance(ty, ir.VectorType):  # one test for the whole vector
        ok = builder.icmp_unsigned("==", builder.bitcast(ok, ir.IntType(ty.count)), ir.Constant(ir.IntType(ty.count), -1))
    with builder.if_else(ok, likely=True) as (then, otherwise):
        with then:
            fast_block = builder.basic_block
        with otherwise:
            exact = builder.call(llvm_fma, [a, b, c])
            slow_block = builder.basic_block
    result = builder.phi(ty)
    result.add_incoming(fast, fast_block)
    result.add_incoming(exact, slow_block)
    return result


# ----------------------------------------------------------------------------- tanh
# tanh from + - * / and fused multiply-adds only, each correctly rounded, so the same
# bits on every CPU (the C library's tanh is not: glibc picks another code path on a
# CPU without FMA) and a vector of them at once:
#   tanh(|x|) = t / (t + 2) with t = expm1(2|x|) (no cancellation near 0);
#   expm1(y) = 2^k (1 + e) - 1 with y = k ln2 + r, |r| <= ln2 / 2, e = expm1(r) by
#   its Taylor series (to r^13 / 13! in float64, r^8 / 8! in float32: the first
#   term left out is below a tenth of a unit in the last place);
#   |x| above 22 (float64) or 10 (float32) gives 1 exactly, as the series would.
_TANH = {  # bits: where tanh is 1, the rounding constant 1.5 * 2^mantissa, exponent bias and
    # position, the highest power of the Taylor series
    64: {"clamp": 22.0, "magic": 1.5 * 2.0 ** 52, "bias": 1023, "shift": 52, "terms": 13},
    32: {"clamp": 10.0, "magic": 1.5 * 2.0 ** 23, "bias": 127, "shift": 23, "terms": 8},
}
_LN2 = "0.6931471805599453094172321214581765680755001343602552541206800094933936"


def tanh_ir(builder, x, bits, lanes, hardware_fma: bool):
    """IR for tanh of ``x`` (a float of ``bits`` or a vector of ``lanes`` of them), its
    multiply-adds as :func:`fma_emitter` emits them for ``hardware_fma``."""
    c = _TANH[bits]
    fty = ir.DoubleType() if bits == 64 else ir.FloatType()
    ity = ir.IntType(bits)
    vf = fty if lanes is None else ir.VectorType(fty, lanes)
    vi = ity if lanes is None else ir.VectorType(ity, lanes)
    ftype = np.float64 if bits == 64 else np.float32

    def k(value):  # a constant, rounded to the dtype once, here
        v = float(ftype(value))
        return ir.Constant(vf, v) if lanes is None else ir.Constant(vf, [v] * lanes)

    def ki(value):
        return ir.Constant(vi, value) if lanes is None else ir.Constant(vi, [value] * lanes)

    fma = fma_emitter(builder, vf, hardware_fma)
    zero = k(0.0)
    negative = builder.fcmp_ordered("<", x, zero)
    a = builder.select(negative, builder.fsub(zero, x), x)  # |x| (NaN and -0.0 are fixed at the end)
    a = builder.select(builder.fcmp_ordered("<", a, k(c["clamp"])), a, k(c["clamp"]))
    y = builder.fadd(a, a)
    with localcontext() as ctx:  # ln2 to 60 digits, split into the dtype's nearest and the rest
        ctx.prec = 60
        ln2_hi = float(ftype(float(Decimal(_LN2))))
        ln2_lo = float(ftype(float(Decimal(_LN2) - Decimal(ln2_hi))))
        inv_ln2 = float(1 / Decimal(_LN2))
    kf = fma(y, k(inv_ln2), k(c["magic"]))  # round(y / ln2), in the low bits
    kn = builder.fsub(kf, k(c["magic"]))
    minus_k = builder.fsub(zero, kn)
    r = fma(minus_k, k(ln2_hi), y)
    r = fma(minus_k, k(ln2_lo), r)
    q = k(1 / math.factorial(c["terms"]))
    for n in range(c["terms"] - 1, 1, -1):
        q = fma(q, r, k(1 / math.factorial(n)))
    e = fma(builder.fmul(r, r), q, r)  # expm1(r) = r + r^2 (1/2 + r/6 + ...)
    kint = builder.sub(builder.bitcast(kf, vi), builder.bitcast(k(c["magic"]), vi))
    scale = builder.bitcast(builder.shl(builder.add(kint, ki(c["bias"])), ki(c["shift"])), vf)  # 2^k
    t = fma(scale, e, builder.fsub(scale, k(1.0)))  # expm1(y)
    th = builder.fdiv(t, builder.fadd(t, k(2.0)))
    th = builder.select(negative, builder.fsub(zero, th), th)
    th = builder.select(builder.fcmp_ordered("==", x, zero), x, th)  # tanh(+-0) = +-0
    return builder.select(builder.fcmp_unordered("uno", x, x), x, th)  # NaN stays NaN
