"""Targets and training data.

Each named target is a function of the inputs ``x`` (n, d_in) returning
``y`` (n, d_out), with the input dimension and the default input range it
was made for (every input coordinate is drawn uniformly from ``x_range``):

==============  =====  =============  ==============================================
name            d_in   default range  y
==============  =====  =============  ==============================================
piecewise       1      [-3, 3]        1 on [-2, -1) and [0, 2), else 0 (the seed's)
step            1      [-3, 3]        1 for x >= 0, else 0
sin             1      [-3, 3]        sin(x)
sinc            1      [-32, 32]      sin(x) / x (1 at 0)
abs             1      [-3, 3]        |x|
sawtooth        1      [-3, 3]        x - floor(x) (period 1)
bump            1      [-3, 3]        exp(-x^2)
polynomial      1      [-3, 3]        x^3 / 9 - x / 2
gaussian_2d     2      [-2, 2]        exp(-(x1^2 + x2^2) / 2)
checkerboard    2      [-2, 2]        1 where floor(x1) + floor(x2) is even, else 0
teacher         any    [-3, 3]        a seeded random MLP (``teacher_widths``,
                                      tanh, Kaiming init, biases N(0, 0.1^2))
==============  =====  =============  ==============================================

Inputs are drawn by a generator seeded with the data seed alone (the test set,
when asked for, from an independent child stream), so data never depend on the
initialization seed.

sin, sinc, bump and gaussian_2d are computed exactly and rounded once
(:func:`exactly_rounded`), not with NumPy's ``sin``/``exp``: those take other code
paths on other CPUs (AVX-512, AVX2, none; the C library's with or without FMA) and
gave other last bits for 1 value in 10 to 1 in 1000, and with them other
training data, so another run. Exactly rounded values are the same on every machine.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal, getcontext, localcontext

import numpy as np

from .errors import file_read_problem, unknown_name_message


@dataclass(frozen=True)
class Target:
    fn: object
    d_in: int
    x_range: tuple


def piecewise(x):
    """The seed notebook's target: 1 on [-2, -1) and [0, 2), else 0."""
    x = x[:, 0]
    return (((x >= -2) & (x < -1)) | ((x >= 0) & (x < 2))).astype(np.float64)[:, None]


def step(x):
    return (x[:, :1] >= 0).astype(np.float64)


# ------------------------------------------------------- exactly rounded functions
# Each value is computed in decimal arithmetic with 40 significant digits to spare
# and rounded to float64 once: decimal arithmetic is done in software, by the same
# rules on every machine. About 20 us per value (5000 samples: 0.1 s; Intel Xeon
# model 207).
_GUARD_DIGITS = 40


@functools.cache
def _pi(digits: int) -> Decimal:
    """pi to ``digits`` significant digits (Machin: 16 atan(1/5) - 4 atan(1/239))."""
    with localcontext() as ctx:
        ctx.prec = digits + 5
        small = Decimal(10) ** -(digits + 5)

        def atan_inverse(n):  # atan(1/n) by its series, to ``small``
            total, term, k, n2 = Decimal(0), Decimal(1) / n, 0, n * n
            while term > small:
                total += term / (2 * k + 1) if k % 2 == 0 else -term / (2 * k + 1)
                term /= n2
                k += 1
            return total
        return +(16 * atan_inverse(5) - 4 * atan_inverse(239))


def _sin_decimal(x: Decimal) -> Decimal:
    """sin(x) to the context's precision (its digits beyond |x|'s integer digits)."""
    if not x:
        return x
    half_pi = _pi(max(x.adjusted(), 0) + _GUARD_DIGITS + 20) / 2
    k = int((x / half_pi).to_integral_value())
    r = x - k * half_pi  # |r| <= pi / 4
    cosine = k % 2 == 1  # sin(r + k pi/2) = sin r, cos r, -sin r, -cos r
    total = term = Decimal(1) if cosine else r
    n = 0 if cosine else 1
    small = abs(total).scaleb(-getcontext().prec - 2) if total else Decimal(0)
    while abs(term) > small:  # Taylor series, until its terms are below the precision
        term = -term * r * r / ((n + 1) * (n + 2))
        total += term
        n += 2
    return -total if k % 4 >= 2 else total


def exactly_rounded(f, *columns) -> np.ndarray:
    """``f`` applied to each row of float64 ``columns`` in decimal arithmetic, rounded
    once to float64: ``f`` takes and returns :class:`decimal.Decimal` (``+ - * /``,
    ``.exp()``, :func:`_sin_decimal`)."""
    out = np.empty(len(columns[0]))
    with localcontext() as ctx:
        for i, values in enumerate(zip(*columns)):
            ctx.prec = _GUARD_DIGITS + max(0, max(Decimal(float(v)).adjusted() for v in values))
            out[i] = float(f(*(Decimal(float(v)) for v in values)))
    return out[:, None]


def sin(x):
    return exactly_rounded(_sin_decimal, x[:, 0])


def sinc(x):
    return exactly_rounded(lambda t: _sin_decimal(t) / t if t else Decimal(1), x[:, 0])


def absolute(x):
    return np.abs(x[:, :1])


def sawtooth(x):
    return x[:, :1] - np.floor(x[:, :1])


def bump(x):
    return exactly_rounded(lambda t: (-t * t).exp(), x[:, 0])


def polynomial(x):
    return x[:, :1] ** 3 / 9.0 - x[:, :1] / 2.0


def gaussian_2d(x):
    return exactly_rounded(lambda s, t: (-(s * s + t * t) / 2).exp(), x[:, 0], x[:, 1])


def checkerboard(x):
    return ((np.floor(x[:, :1]) + np.floor(x[:, 1:2])) % 2 == 0).astype(np.float64)


TARGETS = {
    "piecewise": Target(piecewise, 1, (-3.0, 3.0)),
    "step": Target(step, 1, (-3.0, 3.0)),
    "sin": Target(sin, 1, (-3.0, 3.0)),
    "sinc": Target(sinc, 1, (-32.0, 32.0)),
    "abs": Target(absolute, 1, (-3.0, 3.0)),
    "sawtooth": Target(sawtooth, 1, (-3.0, 3.0)),
    "bump": Target(bump, 1, (-3.0, 3.0)),
    "polynomial": Target(polynomial, 1, (-3.0, 3.0)),
    "gaussian_2d": Target(gaussian_2d, 2, (-2.0, 2.0)),
    "checkerboard": Target(checkerboard, 2, (-2.0, 2.0)),
    "teacher": Target(None, None, (-3.0, 3.0)),
}


def teacher_function(widths, seed: int):
    """The function of a seeded random tanh MLP (the ``teacher`` target)."""
    from .init import instance_rng, init_params
    from .model import MLP
    net = MLP(widths, activation="tanh")
    theta = init_params(net, seed=seed)
    theta[net.indices(kind="bias")] = instance_rng(seed, 1).normal(0.0, 0.1, net.indices(kind="bias").size)
    return lambda x: net.forward(theta, x)


def target_function(data_config):
    """``(fn, d_in)`` for the config's target."""
    if data_config.target not in TARGETS:
        raise ValueError(unknown_name_message("target", data_config.target, TARGETS))
    if data_config.target == "teacher":
        w = data_config.teacher_widths
        return teacher_function(w, data_config.teacher_seed), w[0]
    t = TARGETS[data_config.target]
    return t.fn, t.d_in


def draw_inputs(n: int, d_in: int, x_range, seed: int, stream: int = 0) -> np.ndarray:
    """``n`` inputs uniform on ``x_range`` in every coordinate; ``stream`` 0 trains, 1 tests."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)) if stream == 0
                                else np.random.SeedSequence(int(seed), spawn_key=(int(stream),)))
    lo, hi = x_range
    return rng.uniform(lo, hi, size=(int(n), d_in))


def make_data(target, n: int, x_range, seed: int):
    """Draw ``n`` inputs from ``x_range`` and evaluate a named target (1-D targets only here;
    see :func:`training_and_test_data` for every target and the test set)."""
    if target not in TARGETS or TARGETS[target].fn is None:
        raise ValueError(unknown_name_message("target", target, [k for k, v in TARGETS.items() if v.fn]))
    t = TARGETS[target]
    x = draw_inputs(n, t.d_in, x_range, seed)
    return x, t.fn(x)


def load_data_file(path, d_in: int, d_out: int):
    """Read ``(x, y)`` from ``.npz`` (arrays ``x`` and ``y``), ``.npy`` (a 2-D array whose
    first ``d_in`` columns are x and the rest y) or ``.csv`` (the same columns; a header
    line is skipped). Raises ValueError naming the problem: a missing, empty, corrupt or
    non-numeric file, complex values, wrong shapes, NaN or Inf."""
    import zipfile
    path = str(path)
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files or "y" not in z.files:
                    raise ValueError(f"{path!r} must hold arrays named 'x' and 'y', found "
                                     f"{', '.join(z.files) or 'no arrays'}")
                x, y = z["x"], z["y"]
        elif path.endswith(".npy") or path.endswith(".csv"):
            if path.endswith(".npy"):
                a = np.load(path, allow_pickle=False)
            else:
                with open(path, encoding="utf-8") as fh:
                    first = fh.readline()
                skip = 0 if _is_numeric_row(first) else 1
                a = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
            if a.ndim != 2 or a.shape[1] != d_in + d_out:
                raise ValueError(f"{path!r} must have {d_in + d_out} columns ({d_in} inputs, {d_out} "
                                 f"outputs) for this network, got shape {a.shape}")
            x, y = a[:, :d_in], a[:, d_in:]
        else:
            raise ValueError(f"data file {path!r} must end in .npz, .npy or .csv")
    except FileNotFoundError:
        raise ValueError(f"data file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"data file {path!r} is a directory") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, KeyError) as exc:
        if str(exc).startswith(repr(path)) or "must" in str(exc):
            raise
        raise ValueError(f"cannot read data file {path!r}: {file_read_problem(exc)}") from None
    x, y = np.asarray(x), np.asarray(y)
    for name, a in (("x", x), ("y", y)):
        if np.iscomplexobj(a):
            raise ValueError(f"{path!r}: {name} holds complex numbers; mlpsim trains on real data")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{path!r}: {name} is not numeric (dtype {a.dtype})")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != d_in or y.shape[1] != d_out:
        raise ValueError(f"{path!r}: x {x.shape} and y {y.shape} do not match the network "
                         f"(x (n, {d_in}), y (n, {d_out})) or each other")
    if x.shape[0] == 0:
        raise ValueError(f"{path!r} holds no data points")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{path!r} contains NaN or Inf")
    return x, y


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.strip().split(",") if v.strip()]
        return True
    except ValueError:
        return False
