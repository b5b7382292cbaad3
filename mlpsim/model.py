"""The network: widths, activation, masks, and the flat parameter layout.

Notation
--------
=============  ===========================================================
``widths``     ``[d_in, h_1, ..., h_{L-1}, d_out]``; ``L = len(widths) - 1``
``theta``      flat parameters ``(P,)``, or ``(..., P)`` for ensembles and
               trajectories. Per layer ``l`` (0-based): ``W_l`` with shape
               ``(widths[l+1], widths[l])`` row-major, then ``b_l``
``x``          inputs ``(n, d_in)``; ``y`` targets ``(n, d_out)``
=============  ===========================================================

The network computes ``a_0 = x``, ``a_{l+1} = f(W_l a_l + b_l)`` for hidden
layers and a linear output layer: the seed notebook's "RRnet" for relu.
Layer names in the layout are 1-based, as in the seed README: ``W1, b1, W2, ...``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import kernels, simd
from .errors import is_number, unknown_name_message

#: Activation names and their kernel codes.
ACTIVATIONS = {
    "identity": kernels.IDENTITY,
    "relu": kernels.RELU,
    "tanh": kernels.TANH,
    "leaky_relu": kernels.LEAKY_RELU,
}


@dataclass(frozen=True)
class LayoutEntry:
    """One block of the flat parameter vector."""

    name: str       # "W1", "b1", ...
    layer: int      # 0-based layer index
    kind: str       # "weight" or "bias"
    offset: int
    shape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


class MLP:
    """A fully connected network with a linear output layer.

    Parameters
    ----------
    widths : sequence of int
        Layer widths including input and output, at least two entries, each >= 1.
    activation : {"relu", "tanh", "identity", "leaky_relu"}
        Applied after every hidden layer.
    masks : sequence of arrays or None, optional
        Per layer, a 0/1 array of the weight shape ``(widths[l+1], widths[l])``,
        or None for a dense layer. Masked weights are structurally absent: the
        forward pass treats them as 0, their gradient is reported as 0, and
        training never changes them.
    leaky_slope : float
        Slope of ``leaky_relu`` for negative inputs.

    Examples
    --------
    >>> net = MLP([1, 8, 8, 8, 1])
    >>> net.n_params
    169
    >>> theta = net.init(seed=7)
    >>> net.view(theta, "W2").shape
    (8, 8)
    """

    def __init__(self, widths, activation: str = "relu", masks=None, leaky_slope: float = 0.01):
        self.widths = validate_widths(widths)
        if activation not in ACTIVATIONS:
            raise ValueError(unknown_name_message("activation", activation, ACTIVATIONS))
        if not (is_number(leaky_slope) and np.isfinite(leaky_slope) and leaky_slope >= 0):
            raise ValueError(f"leaky_slope must be a finite number >= 0, got {leaky_slope!r}")
        self.activation = activation
        self.leaky_slope = float(leaky_slope)
        self.layout = _build_layout(self.widths)
        self.n_layers = len(self.widths) - 1
        self.n_params = self.layout[-1].offset + self.layout[-1].size
        self.masks = _validate_masks(masks, self.widths)
        self.free = np.ones(self.n_params, dtype=np.uint8)
        for layer, mask in enumerate(self.masks):
            if mask is not None:
                self.free[self.layout[2 * layer].slice] = mask.reshape(-1)
        # Arrays the kernels need, built once.
        self._widths = np.asarray(self.widths, dtype=np.int64)
        self._w_off = np.array([e.offset for e in self.layout if e.kind == "weight"], dtype=np.int64)
        self._b_off = np.array([e.offset for e in self.layout if e.kind == "bias"], dtype=np.int64)
        self._r_off = np.zeros(self.n_layers + 1, dtype=np.int64)
        self._r_off[1:] = np.cumsum(self._widths[1:]) - self._widths[1:]
        self._rows = int(sum(self.widths[1:]))

    def __repr__(self) -> str:
        masked = sum(m is not None for m in self.masks)
        extra = f", {masked} masked layer(s)" if masked else ""
        return (f"MLP({list(self.widths)}, activation={self.activation!r}{extra}; "
                f"{self.n_params} parameters)")

    # ------------------------------------------------------------------ layout
    def entry(self, name: str) -> LayoutEntry:
        """The layout entry called ``name`` ("W1", "b1", ...)."""
        for e in self.layout:
            if e.name == name:
                return e
        raise KeyError(unknown_name_message("layout entry", name, [e.name for e in self.layout]))

    def view(self, theta, name: str) -> np.ndarray:
        """Zero-copy view of one block, e.g. ``view(theta, "W2")`` with shape (8, 8).

        Works on any array whose last axis is the parameter axis: an ensemble
        ``(E, P)`` gives ``(E, 8, 8)``, a trajectory ``(E, C, P)`` ``(E, C, 8, 8)``.
        """
        theta = np.asarray(theta)
        self._check_param_axis(theta)
        e = self.entry(name)
        return theta[..., e.slice].reshape(theta.shape[:-1] + e.shape)

    def weights(self, theta) -> list:
        """Views of the weight matrices, one per layer."""
        return [self.view(theta, e.name) for e in self.layout if e.kind == "weight"]

    def biases(self, theta) -> list:
        """Views of the bias vectors, one per layer."""
        return [self.view(theta, e.name) for e in self.layout if e.kind == "bias"]

    def indices(self, layer=None, kind=None) -> np.ndarray:
        """Flat indices of the parameters selected by layer and kind.

        Layers are numbered from 1, as the names are: layer ``k`` is ``Wk`` and
        ``bk`` (the one convention of mlpsim's API, figures and summaries).
        ``indices()`` is all parameters; ``indices(kind="weight")`` all weights;
        ``indices(layer=2, kind="weight")`` the weight matrix W2.
        """
        if kind not in (None, "weight", "bias"):
            raise ValueError(f"kind must be None, 'weight' or 'bias', got {kind!r}")
        if layer is not None and not (isinstance(layer, (int, np.integer)) and 1 <= layer <= self.n_layers):
            raise ValueError(f"layer must be an integer in 1..{self.n_layers} (layer k is Wk and bk), got {layer!r}")
        parts = [np.arange(e.offset, e.offset + e.size) for e in self.layout
                 if (layer is None or e.layer + 1 == layer) and (kind is None or e.kind == kind)]
        return np.concatenate(parts).astype(np.int64)

    def layout_table(self) -> list:
        """The layout as a list of dicts (name, layer from 1, kind, offset, shape, size)."""
        return [dict(name=e.name, layer=e.layer + 1, kind=e.kind, offset=e.offset,
                     shape=list(e.shape), size=e.size) for e in self.layout]

    # ------------------------------------------------------------------ init
    def init(self, seed: int = 0, scheme: str = "kaiming_normal", bias_init: str = "zeros",
             bias_scale: float = 0.0, dtype=np.float64) -> np.ndarray:
        """Initial parameters ``(P,)`` drawn from ``scheme``; see :mod:`mlpsim.init`."""
        from .init import init_params
        return init_params(self, seed=seed, scheme=scheme, bias_init=bias_init,
                           bias_scale=bias_scale, dtype=dtype)

    # ------------------------------------------------------------------ compute
    def forward(self, theta, x) -> np.ndarray:
        """Network output for inputs ``x`` (n, d_in): ``(n, d_out)``.

        ``theta`` may also be an ensemble ``(E, P)``; the result is then
        ``(E, n, d_out)``.
        """
        thetas, single = self._as_ensemble(theta)
        X = self.check_inputs(x, dtype=thetas.dtype)
        out = np.empty((thetas.shape[0], self.widths[-1], X.shape[1]), dtype=thetas.dtype)
        kernels.forward_batch(thetas, *self._kernel_layout(), X, self.scratch(thetas.dtype), out)
        out = out.transpose(0, 2, 1)
        return np.ascontiguousarray(out[0] if single else out)

    def loss(self, theta, x, y):
        """Mean squared error ``mean((f(x) - y)**2)`` over samples and outputs."""
        return self.loss_and_grad(theta, x, y)[0]

    def loss_and_grad(self, theta, x, y):
        """Mean squared error and its exact gradient with respect to ``theta``.

        Returns ``(loss, grad)`` with ``grad`` of the shape of ``theta``; for an
        ensemble ``(E, P)``, ``loss`` is ``(E,)``. Entries of masked weights are 0.
        """
        thetas, single = self._as_ensemble(theta)
        if not thetas.flags.writeable:  # e.g. a run's memory-mapped checkpoints: the training
            thetas = thetas.copy()      # kernel computes the loss and takes writable parameters
        X = self.check_inputs(x, dtype=thetas.dtype)
        Y = self.check_targets(y, X.shape[1], dtype=thetas.dtype)
        E = thetas.shape[0]
        buffers = self.work_buffers(E, X.shape[1], thetas.dtype)
        G = np.empty((E, self.n_params), dtype=thetas.dtype)
        loss = np.empty(E)
        unused = np.zeros_like(thetas)  # optimizer state: no update with n_steps = 0
        kernels.train_steps(thetas, unused, unused, self.free, np.ones(E, np.uint8), 0, 0, 0, np.zeros(6),
                            *self._kernel_layout(), X, Y, *buffers, G, loss, np.empty((E, 0)))
        G *= self.free
        return (float(loss[0]), G[0]) if single else (loss, G)

    # ------------------------------------------------------------------ helpers
    def check_inputs(self, x, dtype=np.float64) -> np.ndarray:
        """Validate inputs ``(n, d_in)`` (1-D accepted when d_in == 1); return ``(d_in, n)``."""
        x = np.asarray(x)
        if x.ndim == 1 and self.widths[0] == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.widths[0]:
            raise ValueError(f"inputs must have shape (n, {self.widths[0]}) for this network, "
                             f"got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("inputs must contain at least one sample")
        return simd.aligned_copy(_real_values(x, "inputs").T, dtype)

    def check_targets(self, y, n: int, dtype=np.float64) -> np.ndarray:
        """Validate targets ``(n, d_out)`` (1-D accepted when d_out == 1); return ``(d_out, n)``."""
        y = np.asarray(y)
        if y.ndim == 1 and self.widths[-1] == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape != (n, self.widths[-1]):
            raise ValueError(f"targets must have shape ({n}, {self.widths[-1]}) to match the inputs "
                             f"and the network's output, got {y.shape}")
        return simd.aligned_copy(_real_values(y, "targets").T, dtype)

    def check_params(self, theta, dtype=None) -> np.ndarray:
        """Validate a parameter array ``(..., P)``: finite, right length, 0 where masked."""
        theta = np.asarray(theta)
        self._check_param_axis(theta)
        if not np.issubdtype(theta.dtype, np.floating) and not np.issubdtype(theta.dtype, np.integer):
            raise ValueError(f"parameters must be numeric, got dtype {theta.dtype}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("parameters contain NaN or Inf")
        if np.any(theta[..., self.free == 0] != 0):
            raise ValueError("parameters are nonzero at masked (absent) weights; set them to 0")
        if dtype is None:
            dtype = theta.dtype if theta.dtype in (np.float32, np.float64) else np.float64
        return np.ascontiguousarray(theta, dtype=dtype)

    def check_trajectory(self, params):
        """A ValueError unless ``params`` is a trajectory of this network: (instances, checkpoints, P)
        (a run's ``params``); parameters of another network would be measured without a word."""
        shape = np.shape(params)
        if len(shape) != 3 or shape[-1] != self.n_params:
            raise ValueError(f"expected parameters of shape (instances, checkpoints, {self.n_params}) for "
                             f"{self!r} (a run's params), got shape {shape}")

    def _check_param_axis(self, theta):
        if theta.ndim < 1 or theta.shape[-1] != self.n_params:
            raise ValueError(f"expected parameters with last axis of length {self.n_params} "
                             f"for {self!r}, got shape {theta.shape}")

    def _as_ensemble(self, theta):
        theta = self.check_params(theta)
        if theta.ndim == 1:
            return theta[None, :], True
        if theta.ndim == 2:
            return theta, False
        raise ValueError(f"parameters must be (P,) or (E, P), got shape {theta.shape}")

    def _kernel_layout(self):
        return (self._widths, self._w_off, self._b_off, self._r_off,
                ACTIVATIONS[self.activation], self.leaky_slope)

    def scratch(self, dtype) -> np.ndarray:
        """Per-thread activation work space for the kernels."""
        return simd.aligned_zeros((numba.config.NUMBA_NUM_THREADS, self._rows,
                                  kernels.chunk_samples(dtype) + kernels.ROW_PAD), dtype)

    def work_buffers(self, n_instances: int, n_samples: int, dtype):
        """(scratch, partial_G, partial_loss) for ``kernels.train_steps``."""
        n_chunks = -(-n_samples // kernels.chunk_samples(dtype))
        return (self.scratch(dtype),
                np.zeros((n_instances * n_chunks, self.n_params), dtype=dtype),
                np.zeros((n_instances, n_chunks)))


def numpy_activation(z, name: str, slope: float = 0.01):
    """The activation ``name`` in plain NumPy (for analyses; training uses the kernels)."""
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    return z


def _real_values(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as real numbers (booleans as 0 and 1, e.g. ``y = x > 0``), or a ValueError saying why not:
    complex numbers would lose their imaginary part without a word in the float conversion."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if np.iscomplexobj(a):
        raise ValueError(f"{what} are complex numbers; mlpsim works with real numbers")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} must be numbers, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or Inf")
    return a


def validate_widths(widths) -> tuple:
    """Return widths as a tuple of int, or raise a ValueError naming the problem."""
    try:
        values = list(widths)
    except TypeError:
        raise ValueError(f"widths must be a list of positive integers, got {widths!r}") from None
    if len(values) < 2:
        raise ValueError(f"widths needs at least two entries (input and output), got {values!r}")
    for w in values:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"widths must be positive integers, got {values!r}")
    return tuple(int(w) for w in values)


def _build_layout(widths) -> tuple:
    entries = []
    offset = 0
    for l in range(len(widths) - 1):
        shape = (widths[l + 1], widths[l])
        entries.append(LayoutEntry(f"W{l + 1}", l, "weight", offset, shape))
        offset += shape[0] * shape[1]
        entries.append(LayoutEntry(f"b{l + 1}", l, "bias", offset, (widths[l + 1],)))
        offset += widths[l + 1]
    return tuple(entries)


def _validate_masks(masks, widths) -> tuple:
    L = len(widths) - 1
    if masks is None:
        return (None,) * L
    try:
        masks = list(masks)
    except TypeError:
        raise ValueError(f"masks must be a list with one mask (or None) per layer ({L}), got {masks!r}") from None
    if len(masks) != L:
        raise ValueError(f"masks must have one entry per layer ({L}), got {len(masks)}")
    out = []
    for l, mask in enumerate(masks):
        if mask is None:
            out.append(None)
            continue
        try:
            mask = np.asarray(mask)
        except ValueError:  # ragged rows
            raise ValueError(f"mask of layer {l + 1} must be a rectangular array of 0 and 1") from None
        shape = (widths[l + 1], widths[l])
        if mask.shape != shape:
            raise ValueError(f"mask of layer {l + 1} must have the weight shape {shape}, got {mask.shape}")
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask of layer {l + 1} must contain only 0 and 1")
        out.append(mask.astype(np.uint8))
    return tuple(out)
