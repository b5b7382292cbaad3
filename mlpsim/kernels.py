"""Compiled kernels: forward pass, backward pass, loss and optimizer steps.

Contract
--------
Kernels take arrays and scalars only, write into preallocated outputs, read no
globals except the compile-time constants below, and validate nothing: the
Python API in :mod:`mlpsim.model` and :mod:`mlpsim.train` checks shapes and
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
``G``      gradient accumulator ``(P,)``
=========  ===============================================================

Activations are applied in place, and derivatives are written from the stored
*output* ``a = f(z)`` (as scikit-learn does): relu' = [a > 0] (so 0 at 0),
tanh' = 1 - a**2, leaky' = 1 if a > 0 else slope, identity' = 1.

Determinism
-----------
Samples are processed in chunks of a fixed size (``CHUNK``), never in a number
of pieces that depends on the thread count. Each (instance, chunk) task writes its
own partial gradient; partials are then added in chunk order. Within a chunk,
sums over samples use eight partial sums combined in a fixed order. Hence the
result is bit-identical for any number of threads.
"""
import numba
import numpy as np

from ._jit import kernel, parallel_kernel

#: Samples per task. Changing it changes the order of floating-point sums, and
#: so the last bits of every result: it is recorded in each run's manifest.
CHUNK = 256

#: Activation codes used inside kernels (see :data:`mlpsim.model.ACTIVATIONS`).
IDENTITY, RELU, TANH, LEAKY_RELU = 0, 1, 2, 3

#: Optimizer codes (see :data:`mlpsim.config.OPTIMIZERS`).
GD, MOMENTUM, ADAM_WOLFRAM, ADAM_KINGMA = 0, 1, 2, 3

#: Positions in the ``hyper`` array passed to the optimizer kernels.
H_LR, H_BETA1, H_BETA2, H_EPS, H_MOMENTUM, H_WEIGHT_DECAY = 0, 1, 2, 3, 4, 5


@kernel
def sum8(a, b, n):
    """Return sum(a[:n] * b[:n]) with eight partial sums added in a fixed order."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    m = n - n % 8
    for s in range(0, m, 8):
        s0 += a[s] * b[s]
        s1 += a[s + 1] * b[s + 1]
        s2 += a[s + 2] * b[s + 2]
        s3 += a[s + 3] * b[s + 3]
        s4 += a[s + 4] * b[s + 4]
        s5 += a[s + 5] * b[s + 5]
        s6 += a[s + 6] * b[s + 6]
        s7 += a[s + 7] * b[s + 7]
    for s in range(m, n):
        s0 += a[s] * b[s]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@kernel
def activate(z, n, act, slope):
    """Apply the activation ``act`` to ``z[:n]`` in place."""
    if act == RELU:
        for s in range(n):
            if z[s] < 0.0:
                z[s] = 0.0
    elif act == TANH:
        for s in range(n):
            z[s] = np.tanh(z[s])
    elif act == LEAKY_RELU:
        for s in range(n):
            if z[s] < 0.0:
                z[s] = slope * z[s]


@kernel
def multiply_by_derivative(d, a, n, act, slope):
    """``d[:n] *= f'(z)``, with f' written from the stored output ``a = f(z)``."""
    if act == RELU:
        for s in range(n):
            if a[s] <= 0.0:
                d[s] = 0.0
    elif act == TANH:
        for s in range(n):
            d[s] = d[s] * (1.0 - a[s] * a[s])
    elif act == LEAKY_RELU:
        for s in range(n):
            if a[s] <= 0.0:
                d[s] = d[s] * slope


@kernel
def forward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, s0, s1, A):
    """Forward pass of samples ``s0:s1``; writes every layer's output into ``A``.

    The loop over samples is innermost, so it vectorizes without reordering any
    sum: each output is ``b[o] + W[o, 0]*x_0 + W[o, 1]*x_1 + ...`` in that order.
    """
    L = widths.shape[0] - 1
    n = s1 - s0
    for l in range(L):
        n_in = widths[l]
        n_out = widths[l + 1]
        for o in range(n_out):
            z = A[r_off[l + 1] + o]  # (chunk,)
            bo = theta[b_off[l] + o]
            for s in range(n):
                z[s] = bo
            for i in range(n_in):
                w = theta[w_off[l] + o * n_in + i]
                if l == 0:
                    x = X[i, s0:s1]
                else:
                    x = A[r_off[l] + i]
                for s in range(n):
                    z[s] += w * x[s]
            if l < L - 1:
                activate(z, n, act, slope)


@kernel
def output_delta_chunk(widths, r_off, Y, s0, s1, A, D):
    """Write ``yhat - y`` into the output rows of ``D``; return the sum of squares."""
    L = widths.shape[0] - 1
    n = s1 - s0
    total = 0.0
    for o in range(widths[L]):
        yhat = A[r_off[L] + o]
        d = D[r_off[L] + o]
        y = Y[o, s0:s1]
        for s in range(n):
            d[s] = yhat[s] - y[s]
        total += sum8(d, d, n)
    return total


@kernel
def backward_chunk(theta, widths, w_off, b_off, r_off, act, slope, X, s0, s1, A, D, G):
    """Backpropagate ``D`` (output rows filled) and add the gradient into ``G``.

    ``G`` receives the sums over the chunk's samples of ``d * x`` (weights) and
    ``d`` (biases), unscaled; the caller applies the loss's ``2 / (n * d_out)``.
    """
    L = widths.shape[0] - 1
    n = s1 - s0
    for l in range(L - 1, -1, -1):
        n_in = widths[l]
        n_out = widths[l + 1]
        for o in range(n_out):
            d = D[r_off[l + 1] + o]
            acc = 0.0
            for s in range(n):
                acc += d[s]
            G[b_off[l] + o] += acc
            for i in range(n_in):
                if l == 0:
                    x = X[i, s0:s1]
                else:
                    x = A[r_off[l] + i]
                G[w_off[l] + o * n_in + i] += sum8(d, x, n)
        if l > 0:
            for i in range(n_in):
                d_prev = D[r_off[l] + i]
                for s in range(n):
                    d_prev[s] = 0.0
                for o in range(n_out):
                    w = theta[w_off[l] + o * n_in + i]
                    d = D[r_off[l + 1] + o]
                    for s in range(n):
                        d_prev[s] += w * d[s]
                multiply_by_derivative(d_prev, A[r_off[l] + i], n, act, slope)


@parallel_kernel
def loss_grad_batch(thetas, widths, w_off, b_off, r_off, act, slope, X, Y, active,
                    scratch_A, scratch_D, partial_G, partial_loss, G, loss):
    """Mean-squared-error loss and gradient for every instance of an ensemble.

    Parameters
    ----------
    thetas : (E, P) parameters; X : (d_in, n); Y : (d_out, n)
    active : (E,) uint8; instances with 0 are skipped (their outputs untouched)
    scratch_A, scratch_D : (n_threads, R, CHUNK) per-thread work space
    partial_G : (E * C, P) float64; partial_loss : (E, C) float64
    G : (E, P) float64 out, the gradient; loss : (E,) float64 out

    The loss is ``mean((yhat - y)**2)`` over samples and outputs.
    """
    E, P = thetas.shape
    n = X.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    scale = 1.0 / (n * Y.shape[0])
    for task in numba.prange(E * n_chunks):
        e = task // n_chunks
        if active[e] == 0:
            continue
        c = task % n_chunks
        s0 = c * CHUNK
        s1 = min(n, s0 + CHUNK)
        tid = numba.get_thread_id()
        A = scratch_A[tid]
        D = scratch_D[tid]
        g = partial_G[task]
        g[:] = 0.0
        forward_chunk(thetas[e], widths, w_off, b_off, r_off, act, slope, X, s0, s1, A)
        partial_loss[e, c] = output_delta_chunk(widths, r_off, Y, s0, s1, A, D)
        backward_chunk(thetas[e], widths, w_off, b_off, r_off, act, slope, X, s0, s1, A, D, g)
    for e in numba.prange(E):
        if active[e] == 0:
            continue
        total = 0.0
        for c in range(n_chunks):
            total += partial_loss[e, c]
        loss[e] = total * scale
        for j in range(P):
            gj = 0.0
            for c in range(n_chunks):
                gj += partial_G[e * n_chunks + c, j]
            G[e, j] = 2.0 * scale * gj


@parallel_kernel
def forward_batch(thetas, widths, w_off, b_off, r_off, act, slope, X, scratch_A, out):
    """Network outputs for every instance: ``out`` (E, d_out, n)."""
    E = thetas.shape[0]
    L = widths.shape[0] - 1
    n = X.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for task in numba.prange(E * n_chunks):
        e = task // n_chunks
        c = task % n_chunks
        s0 = c * CHUNK
        s1 = min(n, s0 + CHUNK)
        A = scratch_A[numba.get_thread_id()]
        forward_chunk(thetas[e], widths, w_off, b_off, r_off, act, slope, X, s0, s1, A)
        for o in range(widths[L]):
            row = A[r_off[L] + o]
            for s in range(s1 - s0):
                out[e, o, s0 + s] = row[s]


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
    E, P = thetas.shape
    lr = hyper[H_LR]
    b1 = hyper[H_BETA1]
    b2 = hyper[H_BETA2]
    eps = hyper[H_EPS]
    mu = hyper[H_MOMENTUM]
    wd = hyper[H_WEIGHT_DECAY]
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    wolfram_step = lr * np.sqrt(bc2) / bc1
    kingma_step = lr / bc1
    sqrt_bc2 = np.sqrt(bc2)
    for e in numba.prange(E):
        if active[e] == 0:
            continue
        th = thetas[e]
        m = state1[e]
        v = state2[e]
        g_e = G[e]
        for j in range(P):
            if free[j] == 0:
                continue
            g = g_e[j]
            if wd != 0.0:
                g = g + wd * th[j]
            if optimizer == GD:
                th[j] = th[j] - lr * g
            elif optimizer == MOMENTUM:
                m[j] = mu * m[j] + g
                th[j] = th[j] - lr * m[j]
            else:
                m[j] = b1 * m[j] + (1.0 - b1) * g
                v[j] = b2 * v[j] + (1.0 - b2) * (g * g)
                if optimizer == ADAM_WOLFRAM:
                    th[j] = th[j] - wolfram_step * m[j] / (np.sqrt(v[j]) + eps)
                else:
                    th[j] = th[j] - kingma_step * m[j] / (np.sqrt(v[j]) / sqrt_bc2 + eps)


@kernel
def train_steps(thetas, state1, state2, free, active, t0, n_steps, optimizer, hyper,
                widths, w_off, b_off, r_off, act, slope, X, Y,
                scratch_A, scratch_D, partial_G, partial_loss, G, loss, loss_out):
    """Run ``n_steps`` full-batch updates on every active instance, in place.

    ``t0`` is the number of updates done before; ``loss_out`` (E, n_steps)
    receives the loss of the parameters *before* each update.
    """
    for k in range(n_steps):
        loss_grad_batch(thetas, widths, w_off, b_off, r_off, act, slope, X, Y, active,
                        scratch_A, scratch_D, partial_G, partial_loss, G, loss)
        for e in range(thetas.shape[0]):
            loss_out[e, k] = loss[e]
        optimizer_update(thetas, G, state1, state2, free, active, t0 + k + 1, optimizer, hyper)
