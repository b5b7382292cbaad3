"""Slow, obviously correct plain-NumPy reference implementations.

Everything here is written for clarity, independently of :mod:`mlpsim.kernels`:
layers as a Python list of (W, b) matrices, the batch as rows, numpy's own
sums. The fast paths are tested against these.
"""
import numpy as np


def unpack(theta, widths):
    """Split flat parameters into [(W (out, in), b (out,)), ...] in the seed's order."""
    layers, p = [], 0
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        W = theta[p:p + n_out * n_in].reshape(n_out, n_in)
        p += n_out * n_in
        b = theta[p:p + n_out]
        p += n_out
        layers.append((W, b))
    assert p == theta.size
    return layers


def act(z, name, slope=0.01):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    return z


def act_grad(z, name, slope=0.01):
    if name == "relu":
        return (z > 0).astype(float)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, slope)
    return np.ones_like(z)


def forward(theta, widths, x, activation="relu", slope=0.01):
    """Outputs (n, d_out) and the per-layer pre-activations and activations."""
    layers = unpack(np.asarray(theta, float), widths)
    a = np.asarray(x, float)
    zs, acts = [], [a]
    for l, (W, b) in enumerate(layers):
        z = a @ W.T + b
        zs.append(z)
        a = act(z, activation, slope) if l < len(layers) - 1 else z
        acts.append(a)
    return a, zs, acts


def loss_and_grad(theta, widths, x, y, activation="relu", slope=0.01, free=None):
    """MSE loss mean((yhat - y)**2) and its gradient by textbook backpropagation."""
    theta = np.asarray(theta, float)
    y = np.asarray(y, float).reshape(len(x), -1)
    yhat, zs, acts = forward(theta, widths, x, activation, slope)
    n, d_out = y.shape
    loss = np.mean((yhat - y) ** 2)
    delta = 2.0 * (yhat - y) / (n * d_out)
    grads = []
    layers = unpack(theta, widths)
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        grads.append((delta.T @ acts[l], delta.sum(axis=0)))
        if l > 0:
            delta = (delta @ W) * act_grad(zs[l - 1], activation, slope)
    grad = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in reversed(grads)])
    if free is not None:
        grad = grad * free
    return loss, grad


def numerical_grad(f, theta, h=1e-6):
    """Central finite differences of a scalar function."""
    theta = np.array(theta, float)
    g = np.zeros_like(theta)
    for j in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        g[j] = (f(tp) - f(tm)) / (2 * h)
    return g


def optimizer_step(theta, g, state, t, optimizer, lr, beta1=0.9, beta2=0.999, eps=1e-5,
                   momentum=0.9, weight_decay=0.0, free=None):
    """One optimizer update; returns new (theta, state). ``t`` is 1-based."""
    theta = np.array(theta, float)
    m, v = (np.array(s, float) for s in state)
    if free is None:
        free = np.ones_like(theta)
    g = g + weight_decay * theta
    if optimizer == "gd":
        new = theta - lr * g
    elif optimizer == "momentum":
        m = momentum * m + g
        new = theta - lr * m
    else:
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        if optimizer == "adam_wolfram":
            new = theta - lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (np.sqrt(v) + eps)
        else:  # textbook Kingma & Ba with bias-corrected moments
            m_hat = m / (1 - beta1 ** t)
            v_hat = v / (1 - beta2 ** t)
            new = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    keep = free == 0
    new[keep] = theta[keep]
    m = np.where(keep, state[0], m)
    v = np.where(keep, state[1], v)
    return new, (m, v)


def train(theta0, widths, x, y, steps, optimizer="adam_wolfram", activation="relu", free=None, **hyper):
    """Full-batch training; returns final theta and the loss before each step."""
    theta = np.array(theta0, float)
    state = (np.zeros_like(theta), np.zeros_like(theta))
    losses = []
    for t in range(1, steps + 1):
        loss, g = loss_and_grad(theta, widths, x, y, activation, free=free)
        losses.append(loss)
        theta, state = optimizer_step(theta, g, state, t, optimizer, free=free, **hyper)
    return theta, np.array(losses)
