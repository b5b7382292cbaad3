"""The SIMD layer the kernels are built on, against plain NumPy/Python arithmetic."""
import math

import numba
import numpy as np
import pytest

from mlpsim import simd
from mlpsim.simd import (
    sfma,
    sfma_emulated,
    stanh,
    vadd,
    vbcast,
    vfma,
    vfma_emulated,
    vlanes,
    vleaky,
    vload,
    vmask,
    vmask_scale,
    vrelu,
    vsplat,
    vstore,
    vsub,
    vsum,
    vsums_store,
    vtanh,
)


@numba.njit(cache=True)
def _elementwise(op, a, b, c, out):
    """``out[0] = op(a[0], b[0], c[0])`` lane by lane, one vector."""
    x = vload(a, 0, 0)
    y = vload(b, 0, 0)
    z = vload(c, 0, 0)
    if op == 0:
        r = vfma(x, y, z)
    elif op == 1:
        r = vadd(x, y)
    elif op == 2:
        r = vsub(x, y)
    elif op == 3:
        r = vrelu(x)
    elif op == 4:
        r = vmask(x, y)
    else:
        r = vbcast(c[0], 1)
    vstore(out, 0, 0, r)


@numba.njit(cache=True)
def _scalar_fma(a, b, c):
    return sfma(a, b, c)


@numba.njit(cache=True)
def _sum(a):
    return vsum(vload(a, 0, 0))


@numba.njit(cache=True)
def _shifted_copy(a, out, r, c):
    vstore(out, r, c + 1, vsplat(out, 2.0))
    vstore(out, r, c, vload(a, r, c))
    return vlanes(a)


def _lanes(dtype):
    return simd.VECTOR_BYTES // np.dtype(dtype).itemsize


def _run(op, a, b, c):
    out = np.zeros_like(a)
    _elementwise(op, a, b, c, out)
    return out[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fma_rounds_once(dtype):
    # (1 + e)(1 - e) - 1 = -e^2 exactly; multiplying first rounds the product to 1 and gives 0
    e = dtype(2.0 ** -30 if dtype == np.float64 else 2.0 ** -13)
    V = _lanes(dtype)
    a, b, c = (np.full((1, V), v, dtype) for v in (1 + e, 1 - e, -1))
    assert a[0, 0] * b[0, 0] + c[0, 0] == 0  # the unfused answer
    assert np.all(_run(0, a, b, c) == -e * e)
    assert _scalar_fma(a[0, 0], b[0, 0], c[0, 0]) == -e * e


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lane_by_lane_operations(dtype):
    V = _lanes(dtype)
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(1, V)).astype(dtype) for _ in range(3))
    a[0, :3] = [np.nan, -0.0, -1.0]
    b[0, :4] = [1.0, 0.0, np.nan, -0.0]
    np.testing.assert_array_equal(_run(1, a, b, c), (a + b)[0])
    np.testing.assert_array_equal(_run(2, a, b, c), (a - b)[0])
    relu = _run(3, a, b, c)
    assert np.isnan(relu[0]) and relu[2] == 0  # NaN stays NaN, as `if v < 0: v = 0`
    np.testing.assert_array_equal(relu[3:], np.where(a[0, 3:] < 0, 0, a[0, 3:]))
    masked = _run(4, a, b, c)
    np.testing.assert_array_equal(masked[1:], np.where(b[0, 1:] <= 0, 0, a[0, 1:]))
    assert masked[2] == a[0, 2]  # a NaN activation masks nothing
    np.testing.assert_array_equal(_run(5, a, b, c), np.full(V, c[0, 1]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sum_adds_by_halves(dtype):
    V = _lanes(dtype)
    big = dtype(1e16 if dtype == np.float64 else 1e8)
    rng = np.random.default_rng(1)
    for _ in range(20):  # values where the order of the additions shows in the result
        v = (rng.choice([-1.0, 1.0, 3.0], size=V) * rng.choice([1.0, big], size=V)).astype(dtype)
        u = list(v)
        while len(u) > 1:
            h = len(u) // 2
            u = [dtype(u[k] + u[k + h]) for k in range(h)]
        assert _sum(v[None, :]) == u[0]


@numba.njit(cache=True)
def _sums_stored(U, g, j0, j1, k):
    """vsums_store of the first ``k`` rows of ``U`` (one vector each) into ``g``."""
    if k == 2:
        vsums_store(g, j0, j1, (vload(U, 0, 0), vload(U, 1, 0)))
    elif k == 4:
        vsums_store(g, j0, j1, (vload(U, 0, 0), vload(U, 1, 0), vload(U, 2, 0), vload(U, 3, 0)))
    else:
        vsums_store(g, j0, j1, (vload(U, 0, 0), vload(U, 1, 0), vload(U, 2, 0), vload(U, 3, 0),
                                vload(U, 4, 0), vload(U, 5, 0), vload(U, 6, 0), vload(U, 7, 0)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [2, 4, 8])
def test_sums_of_several_vectors_have_the_bits_of_vsum_and_land_in_two_runs(dtype, k):
    V = _lanes(dtype)
    rng = np.random.default_rng(k)
    for _ in range(30):  # magnitudes far apart, so that any other order of the additions shows
        U = (rng.standard_normal((8, V)) * 10.0 ** rng.integers(-9, 9, (8, V))).astype(dtype)
        g = np.full(24, -7.0, dtype=dtype)
        j0, j1 = int(rng.integers(0, 6)), int(rng.integers(12, 24 - k // 2))
        _sums_stored(U, g, j0, j1, k)
        want = np.array([_sum(U[r:r + 1]) for r in range(k)], dtype=dtype)
        np.testing.assert_array_equal(g[j0:j0 + k // 2].view(np.uint8), want[:k // 2].view(np.uint8))
        np.testing.assert_array_equal(g[j1:j1 + k // 2].view(np.uint8), want[k // 2:].view(np.uint8))
        untouched = np.ones(24, bool)
        untouched[j0:j0 + k // 2] = untouched[j1:j1 + k // 2] = False
        assert (g[untouched] == -7.0).all()


def test_sums_of_several_vectors_refuse_other_counts():
    @numba.njit
    def three(U, g):
        vsums_store(g, 0, 4, (vload(U, 0, 0), vload(U, 1, 0), vload(U, 2, 0)))

    with pytest.raises((TypeError, numba.core.errors.TypingError), match="2, 4 or 8 vectors"):
        three(np.zeros((3, 8)), np.zeros(8))


@numba.njit(cache=True)
def _tanh_both(x, out_scalar, out_vector):
    V = vlanes(x)
    for r in range(x.shape[0]):
        for s in range(0, x.shape[1], V):
            vstore(out_vector, r, s, vtanh(vload(x, r, s)))
        for s in range(x.shape[1]):
            out_scalar[r, s] = stanh(x[r, s])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_is_within_2_5_ulp_with_the_same_bits_in_a_vector(dtype):
    # against tanh in 80-bit long double, over normal, uniform and log-spaced values
    rng = np.random.default_rng(7)
    tiny = -300 if dtype == np.float64 else -37
    x = np.concatenate([rng.standard_normal(100_000) * 3, np.linspace(-25, 25, 100_000),
                        10.0 ** rng.uniform(tiny, 1.5, 100_352) * rng.choice([-1, 1], 100_352)]).astype(dtype)
    x = x.reshape(-1, 64)
    scalar, vector = np.empty_like(x), np.empty_like(x)
    _tanh_both(x, scalar, vector)
    np.testing.assert_array_equal(scalar.view(np.uint8), vector.view(np.uint8))
    exact = np.tanh(x.astype(np.longdouble))
    ulps = np.abs(scalar - exact) / np.spacing(np.abs(exact.astype(dtype))).astype(np.longdouble)
    assert ulps.max() <= 2.5, float(ulps.max())
    special = np.array([[0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 19.1, -19.1, 30.0, 1e30, -1e30,
                         0.5, -0.5, 1.0, -1.0]], dtype=dtype)  # 16 values: whole vectors of either dtype
    got, got_vector = np.empty_like(special), np.empty_like(special)
    _tanh_both(special, got, got_vector)
    np.testing.assert_array_equal(got.view(np.uint8), got_vector.view(np.uint8))
    want = np.tanh(special.astype(np.longdouble)).astype(dtype)
    np.testing.assert_array_equal(np.signbit(got[0, :2]), [False, True])  # tanh(+-0) = +-0
    assert np.isnan(got[0, 4]) and (got[0, 2:4] == [1, -1]).all() and (got[0, 9:12] == [1, 1, -1]).all()
    np.testing.assert_allclose(got[0, 5:], want[0, 5:], rtol=4 * np.finfo(dtype).eps)


@numba.njit(cache=True)
def _leaky_both(x, slope, out_vector, out_scalar, a, k, out_scaled):
    V = vlanes(x)
    for s in range(0, x.shape[1], V):
        vstore(out_vector, 0, s, vleaky(vload(x, 0, s), slope))
        vstore(out_scaled, 0, s, vmask_scale(vload(x, 0, s), vload(a, 0, s), vsplat(x, k)))
    for s in range(x.shape[1]):  # the scalar form the kernels' leaky relu had
        out_scalar[0, s] = x[0, s]
        if x[0, s] < 0.0:
            out_scalar[0, s] = slope * x[0, s]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leaky_relu_vectors_round_as_the_scalar_form(dtype):
    # float32: the scalar form multiplies in float64 and rounds once to float32
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1, 4096)) * 10.0 ** rng.integers(-30, 30, (1, 4096))).astype(dtype)
    x[0, :4] = [0.0, -0.0, np.nan, -np.inf]
    a = rng.standard_normal((1, 4096)).astype(dtype)
    a[0, :2] = [0.0, -0.0]
    vec, sca, scaled = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    _leaky_both(x, 0.0123, vec, sca, a, 0.0123, scaled)
    np.testing.assert_array_equal(vec.view(np.uint8), sca.view(np.uint8))
    k = dtype(0.0123)
    want = np.where(a <= 0, x * k, x)
    np.testing.assert_array_equal(scaled.view(np.uint8), want.view(np.uint8))


def test_loads_and_stores_at_any_offset():
    a = np.arange(40, dtype=np.float64).reshape(2, 20)
    out = np.zeros_like(a)
    assert _shifted_copy(a, out, 1, 3) == 8
    np.testing.assert_array_equal(out[1, 3:11], a[1, 3:11])
    assert out[1, 11] == 2.0 and not out[0].any() and not out[1, :3].any()


def test_aligned_arrays():
    for shape, dtype in [((3, 256), np.float64), ((2, 5, 256), np.float32), ((7,), np.float64)]:
        a = simd.aligned_zeros(shape, dtype)
        assert a.ctypes.data % simd.VECTOR_BYTES == 0 and a.shape == shape and a.dtype == dtype
        assert a.flags.c_contiguous and not a.any()
    x = np.arange(12.0).reshape(3, 4).T  # not contiguous
    y = simd.aligned_copy(x, np.float32)
    assert y.ctypes.data % simd.VECTOR_BYTES == 0 and y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)


def test_wrong_arrays_are_refused_when_compiling():
    @numba.njit
    def load_1d(a):
        return vsum(vload(a, 0, 0))

    with pytest.raises((TypeError, numba.core.errors.TypingError), match="2-D C-contiguous"):
        load_1d(np.zeros(8))
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="float32/float64"):
        load_1d(np.zeros((1, 8), dtype=np.int64))
    assert math.isfinite(load_1d(np.zeros((1, 8))))


# ------------------------------------------------------------ fma without FMA instructions
@numba.njit(cache=True)
def _fma_three_ways(a, b, c, hardware, scalar, vector):
    """llvm.fma (``hardware``), and the emulation for scalars and for vectors (rows of ``V``)."""
    for i in range(a.size):
        hardware.flat[i] = sfma(a.flat[i], b.flat[i], c.flat[i])
        scalar.flat[i] = sfma_emulated(a.flat[i], b.flat[i], c.flat[i])
    for r in range(a.shape[0]):
        vstore(vector, r, 0, vfma_emulated(vload(a, r, 0), vload(b, r, 0), vload(c, r, 0)))


def _near_ties(dtype, n, rng):
    """``(a, b, c)`` whose exact ``a * b + c`` lies just beside a midpoint between two
    floats, where rounding twice (to nearest, then to nearest again) gives the wrong
    neighbour: ``c`` has an odd last bit and ``a * b = (1 - 2**-2j) * ulp(c) / 2``,
    with ``a = 1 - 2**-j`` and ``b = (1 + 2**-j) * ulp(c) / 2``. float64: ``a * b``
    rounds to ``ulp(c) / 2``; float32: ``a * b + c`` rounds to the float32 midpoint in
    float64."""
    bits, j_range = (52, (27, 31)) if dtype == np.float64 else (23, (15, 24))
    j = rng.integers(*j_range, n)
    e = rng.integers(-60, 60, n)
    odd = (rng.integers(0, 2 ** bits // 2, n) * 2 + 1).astype(np.float64)  # the mantissa's odd last bit
    c = (2.0 ** bits + odd) * 2.0 ** (e - bits) * rng.choice([-1.0, 1.0], n)
    half_ulp = 2.0 ** (e - bits - 1)
    a = 1 - 2.0 ** -j
    b = (1 + 2.0 ** -j) * half_ulp * rng.choice([-1.0, 1.0], n)
    return a.astype(dtype), b.astype(dtype), c.astype(dtype)


def _fma_cases(dtype, rows, rng):
    """Products of every scale, with the c that cancels them (wholly or nearly), ties,
    near ties (see :func:`_near_ties`), signed zeros, and the extremes that take the
    exact fallback (overflow, underflow, subnormals, inf, NaN)."""
    V = _lanes(dtype)
    n = rows * V
    a = rng.standard_normal(n) * 2.0 ** rng.integers(-40, 40, n)
    b = rng.standard_normal(n) * 2.0 ** rng.integers(-40, 40, n)
    a, b = a.astype(dtype), b.astype(dtype)
    p = a.astype(np.float64) * b
    kind = rng.integers(0, 4, n)
    c = np.select([kind == 0, kind == 1, kind == 2],
                  [-p, rng.standard_normal(n) * 2.0 ** rng.integers(-90, 90, n),
                   -p * (1 + rng.standard_normal(n) * 2.0 ** -rng.integers(1, 60, n))], 0.0).astype(dtype)
    ties = rng.random(n) < 0.1  # small integers: exact midpoints between floats are common
    k = int(ties.sum())
    a[ties] = rng.integers(-2 ** 12, 2 ** 12, k)
    b[ties] = rng.integers(-2 ** 14, 2 ** 14, k)
    c[ties] = rng.integers(-2 ** 30, 2 ** 30, k) * 2.0 ** rng.integers(-10, 40, k)
    near = rng.random(n) < 0.1
    a[near], b[near], c[near] = _near_ties(dtype, int(near.sum()), rng)
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, 1.0, -3.0, np.inf, -np.inf, np.nan, info.max, info.tiny, info.smallest_subnormal,
                        2.0 ** -500 if dtype == np.float64 else 2.0 ** -70, 2.0 ** 600 if dtype == np.float64 else 2.0 ** 70,
                        2.0 ** 960 if dtype == np.float64 else 2.0 ** 100, 1.0 + info.eps], dtype)
    m = len(special)
    a[:m ** 3] = np.repeat(special, m * m)
    b[:m ** 3] = np.tile(np.repeat(special, m), m)
    c[:m ** 3] = np.tile(special, m * m)
    return a.reshape(rows, V), b.reshape(rows, V), c.reshape(rows, V)


def _exact_fma(a, b, c, dtype):
    """``a * b + c`` in exact rational arithmetic, rounded to nearest (ties to even)."""
    from fractions import Fraction
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if exact == 0:  # -0 only for (-0) + (-0); an exact cancellation gives +0
        negative = (a == 0 or b == 0) and c == 0 and np.signbit(a) != np.signbit(b) and np.signbit(c)
        return dtype(-0.0 if negative else 0.0)
    guess = dtype(float(exact))  # float64: correctly rounded; float32: maybe one unit off
    best = guess
    for cand in (np.nextafter(guess, dtype(-np.inf)), np.nextafter(guess, dtype(np.inf))):
        if not np.isfinite(cand):
            continue
        d_cand, d_best = abs(Fraction(float(cand)) - exact), abs(Fraction(float(best)) - exact)
        if d_cand < d_best or (d_cand == d_best and int(cand.view(np.uint64 if dtype == np.float64 else np.uint32)) % 2 == 0):
            best = cand
    return best


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_emulated_fma_has_the_bits_of_a_fused_multiply_add(dtype):
    # Where the target has no FMA instructions (simd.HARDWARE_FMA false) every vfma
    # and sfma is emulated; the promise of the same bits on every CPU rests on it.
    with np.errstate(all="ignore"):
        a, b, c = _fma_cases(dtype, 20_000 if dtype == np.float64 else 10_000, np.random.default_rng(7))
        hardware, scalar, vector = (np.empty_like(a) for _ in range(3))
        _fma_three_ways(a, b, c, hardware, scalar, vector)
    bits = np.uint64 if dtype == np.float64 else np.uint32
    nan = np.isnan(hardware)
    np.testing.assert_array_equal(np.isnan(scalar), nan)
    np.testing.assert_array_equal(np.isnan(vector), nan)
    np.testing.assert_array_equal(scalar[~nan].view(bits), hardware[~nan].view(bits))
    np.testing.assert_array_equal(vector[~nan].view(bits), hardware[~nan].view(bits))
    # llvm.fma is itself emulated on a machine without FMA: check against exact
    # rational arithmetic too, on the finite cases (the first are the extremes).
    rng = np.random.default_rng(8)
    idx = np.concatenate([np.arange(3000), rng.integers(3000, a.size, 3000)])
    for i in idx:
        x, y, z = a.flat[i], b.flat[i], c.flat[i]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)) or not np.isfinite(scalar.flat[i]):
            continue
        with np.errstate(over="ignore"):
            want = _exact_fma(x, y, z, dtype)
        assert scalar.flat[i].view(bits) == want.view(bits), (x, y, z)


def test_hardware_fma_is_read_from_the_target_features():
    assert simd._hardware_fma("+avx,+avx2,+fma,+sse2", "x86_64")
    assert simd._hardware_fma("+avx,+fma4", "x86_64")  # AMD's FMA4 (Bulldozer)
    assert not simd._hardware_fma("+avx,+sse2,-fma", "x86_64")  # Sandy Bridge
    assert not simd._hardware_fma("", "x86_64")  # numba's NUMBA_CPU_NAME=generic
    assert simd._hardware_fma("+neon", "aarch64")  # in the base instruction set


def test_software_multiply_adds_are_reported_with_the_fix():
    assert simd.fma_warning(target="+avx2,+fma", host="+avx2,+fma", machine="x86_64") is None
    settings = simd.fma_warning(target="", host="+avx2,+fma", machine="x86_64")
    assert "NUMBA_CPU_NAME" in settings and "+fma" in settings
    assert "same bits" in settings and "40 times as long" in settings
    assert "this CPU has no FMA" in simd.fma_warning(target="+avx", host="+avx", machine="x86_64", translated=False)
    rosetta = simd.fma_warning(target="+avx", host="+avx", machine="x86_64", translated=True)
    assert "Rosetta 2" in rosetta and "arm64 Python" in rosetta


def test_rosetta_is_asked_of_macos_only(monkeypatch):
    import platform
    import subprocess
    calls = []

    def sysctl(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="1\n")
    monkeypatch.setattr(subprocess, "run", sysctl)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    assert not simd._translated() and calls == []
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert simd._translated() and calls == [["sysctl", "-in", "sysctl.proc_translated"]]
