"""Multilayer perceptrons: ``derivations/mlp.md`` (N1)-(N9).

``MLP(sizes, activation, loss)`` is a :class:`refmaml.models.Model` whose network is a stack of
fully connected layers, ``z_l = W_l h_{l-1} + b_l``, with ``activation`` after every layer but
the last, and whose head is one of ``refmaml.models.heads`` (``mse``, ``logistic``, ``softmax``).

The parameters are one flat vector ``theta`` of length ``model.size`` (or ``(T, size)``, one per
task), in the order of PyTorch's ``parameters_to_vector(nn.Sequential(Linear, act, ..., Linear)
.parameters())``: per layer the weight ``(out, in)`` row-major, then the bias ``(out,)``. So
``torch.nn.utils.vector_to_parameters`` loads ``theta`` into the equivalent ``nn.Sequential``.

Everything is written by hand: the forward pass (N1), backpropagation (N2)-(N3), the exact
Hessian-vector product by the R-operator (N4)-(N6), its split into the Gauss-Newton part and the
network's second-order term (N7); ReLU'(0) = 0 as in PyTorch (N8).
"""

import math
import numbers
import operator

import numpy as np
from array_api_compat import device

from .. import _validate, _xp
from .._xp import array_namespace
from . import heads
from .model import Model

ACTIVATIONS = ("tanh", "relu")
HESSIAN_BYTES = 2**30  # an explicit Hessian larger than this (float64) is refused: use hvp


class Perceptron:
    """The network of an MLP (N1): ``sizes = (d_in, h_1, ..., d_out)``; ``squeeze`` drops the output
    axis of length 1 (the logistic head takes one output per example as ``(T, n)``)."""

    linear = False
    param_ndim = 1

    def __init__(self, sizes, activation, squeeze):
        self.sizes, self.activation, self.squeeze = tuple(sizes), activation, squeeze
        self.layers = []  # (start of W, start of b, out, in) per layer
        offset = 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            self.layers.append((offset, offset + fan_out * fan_in, fan_out, fan_in))
            offset += fan_out * fan_in + fan_out
        self.size = offset

    # ----------------------------------------------------------------------- shapes

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """``theta`` must be ``(size,)`` per task, and ``X`` must have ``sizes[0]`` features."""
        if tuple(shape) != (self.size,):
            raise ValueError(f"{name} has shape {tuple(shape)} per task; the MLP with sizes {self.sizes} "
                             f"has {self.size} parameters: expected ({self.size},)")
        if d != self.sizes[0]:
            raise ValueError(f"{X_name} has {d} features (shape {tuple(X_shape)}) but the MLP's input "
                             f"size is {self.sizes[0]} (sizes {self.sizes})")

    def outputs(self, shape):
        return () if self.squeeze else (self.sizes[-1],)

    def describe_outputs(self, shape):
        return lambda C: f"the MLP has {C} classes (outputs; sizes {self.sizes})"

    def unflatten(self, theta):
        """``[(W_l, b_l), ...]`` views of ``theta (..., size)``: ``W_l (..., out, in)``, ``b_l (..., out)``."""
        xp = array_namespace(theta)
        lead = tuple(theta.shape[:-1])
        return [(xp.reshape(theta[..., w:b], lead + (out, fan_in)), theta[..., b:b + out])
                for w, b, out, fan_in in self.layers]

    def flatten(self, parts):
        """The inverse of :meth:`unflatten` for per-task arrays ``W (T, out, in)``, ``b (T, out)``."""
        xp = array_namespace(parts[0][0])
        T = parts[0][0].shape[0]
        pieces = []
        for W, b in parts:
            pieces += [xp.reshape(W, (T, -1)), b]
        return xp.concat(pieces, axis=-1)

    # ----------------------------------------------------------------------- activations

    def _act(self, xp, z):
        """``(h, act'(z))`` (N8): ``tanh`` with its slope ``1 - h^2``; ReLU as ``z * [z > 0]`` with the
        mask as its slope (0 at the kink, as PyTorch), the branch taken on the real part."""
        if self.activation == "tanh":
            h = xp.tanh(z)
            return h, 1 - h * h
        mask = xp.astype(_xp.real_part(xp, z) > 0, z.dtype)
        return z * mask, mask

    def _curvature(self, h, slope):
        """``act''(z)`` (N8): ``-2 h (1 - h^2)`` for tanh; ``None`` for ReLU (zero away from the kink)."""
        return -2 * h * slope if self.activation == "tanh" else None

    # ----------------------------------------------------------------------- the passes

    def forward(self, theta, X):
        """Outputs ``z_L (T, n, d_out)`` (``(T, n)`` with ``squeeze``) and the cache: the layers'
        weights, inputs ``h_{l-1}``, pre-activations ``z_l``, activations and slopes (N1), (N8)."""
        xp = array_namespace(X)
        parts = self.unflatten(theta)
        h, inputs, pre, acts, slopes = X, [], [], [], []
        for l, (W, b) in enumerate(parts):
            inputs.append(h)
            z = h @ xp.matrix_transpose(W)
            z += b[..., None, :]
            pre.append(z)
            if l < len(parts) - 1:
                h, slope = self._act(xp, z)
                acts.append(h)
                slopes.append(slope)
        out = z[..., 0] if self.squeeze else z
        return out, {"parts": parts, "inputs": inputs, "pre": pre, "acts": acts, "slopes": slopes,
                     "deltas": None}

    def _output_axis(self, a):
        return a[..., None] if self.squeeze else a

    def _deltas(self, cache, r):
        """``delta_l``, the adjoints of ``z_l``, from ``delta_L = r`` down (N2), and ``W_l^T delta_l``
        before the slope (kept for the HVP's second-order term at the same point)."""
        parts, slopes = cache["parts"], cache["slopes"]
        delta = self._output_axis(r)
        deltas, raws = [None] * len(parts), [None] * len(parts)
        for l in range(len(parts) - 1, -1, -1):
            deltas[l] = delta
            if l:
                raws[l] = delta @ parts[l][0]
                delta = raws[l] * slopes[l - 1]
        return deltas, raws

    def _collect(self, xp, items):
        """The flat ``(T, P)`` vector of per-layer ``(A_l^T B_l, sum_i a_l)`` for ``items = [(A_l,
        B_l, a_l), ...]`` (each ``(T, n, .)``): weight then bias, layer by layer (N3), (N6). On NumPy
        the products are written into the result in place; elsewhere they are joined by ``concat``;
        both compute the same products."""
        T = items[0][0].shape[0]
        if xp is _xp.NUMPY:
            dtype = np.result_type(*(a.dtype for item in items for a in item))
            out = np.empty((T, self.size), dtype=dtype)
            for (w, b, size, fan_in), (A, B, a) in zip(self.layers, items, strict=True):
                weight = out[:, w:b].reshape(T, size, fan_in)  # splits one axis: always a view
                np.matmul(np.swapaxes(A, -1, -2), B, out=weight)
                np.sum(a, axis=-2, out=out[:, b:b + size])
            return out
        return self.flatten([(xp.matrix_transpose(A) @ B, xp.sum(a, axis=-2)) for A, B, a in items])

    def vjp(self, cache, X, r):
        """``J^T r``: ``grad W_l = delta_l^T h_{l-1}``, ``grad b_l = sum_i delta_l`` (N3); summed over
        the examples, not divided by ``n``. Keeps the adjoints in the cache for :meth:`hvp`."""
        xp = array_namespace(X)
        deltas, raws = self._deltas(cache, r)
        cache["deltas"], cache["raws"] = deltas, raws
        return self._collect(xp, [(d, h, d) for d, h in zip(deltas, cache["inputs"], strict=True)])

    def jvp(self, cache, X, v):
        """``J v`` and the directional derivatives ``R{z_l}``, ``R{h_l}`` of every layer (N4)."""
        xp = array_namespace(X)
        parts, slopes = cache["parts"], cache["slopes"]
        directions = self.unflatten(v)
        Rz, Rh = [], [None]
        for l, ((W, _), (V, vb)) in enumerate(zip(parts, directions, strict=True)):
            z_dot = cache["inputs"][l] @ xp.matrix_transpose(V)
            z_dot += vb[..., None, :]
            if l:
                z_dot += Rh[l] @ xp.matrix_transpose(W)
            Rz.append(z_dot)
            if l < len(parts) - 1:
                Rh.append(slopes[l] * z_dot)
        return Rz, Rh, directions

    def hvp(self, cache, X, v, head, c, r, second_order=True):
        """``J^T W (J v) + R[v]`` by the R-operator (N5), (N6): a forward pass of directional
        derivatives, then the backward pass of their adjoints; not divided by ``n``.
        ``second_order=False`` drops every term that the residuals weight, leaving the Gauss-Newton
        product ``J^T W (J v)`` (N7)."""
        xp = array_namespace(X)
        if cache.get("deltas") is None:
            cache["deltas"], cache["raws"] = self._deltas(cache, r)
        deltas, raws = cache["deltas"], cache["raws"]
        parts, inputs, slopes, acts = cache["parts"], cache["inputs"], cache["slopes"], cache["acts"]
        Rz, Rh, directions = self.jvp(cache, X, v)
        out = Rz[-1][..., 0] if self.squeeze else Rz[-1]
        R_delta = self._output_axis(head.curvature(c, out))
        items = [None] * len(parts)
        for l in range(len(parts) - 1, -1, -1):
            d = deltas[l]
            if second_order and l:  # R{delta_l} h^T + delta_l R{h}^T as one product over 2n examples
                items[l] = (xp.concat([R_delta, d], axis=-2), xp.concat([inputs[l], Rh[l]], axis=-2), R_delta)
            else:
                items[l] = (R_delta, inputs[l], R_delta)
            if l:
                back = R_delta @ parts[l][0]
                if second_order:
                    back += d @ directions[l][0]
                back *= slopes[l - 1]
                a2 = self._curvature(acts[l - 1], slopes[l - 1]) if second_order else None
                if a2 is not None:
                    back += raws[l] * a2 * Rz[l - 1]
                R_delta = back
        return self._collect(xp, items)

    def hessian(self, cache, X, head, c, r):
        """Explicit ``(T, P, P)``: the HVP of each basis vector, column by column (N6); not divided
        by ``n``. For teaching and tests: ``P`` HVPs."""
        xp = array_namespace(X)
        T = X.shape[0]
        dtype = cache["pre"][0].dtype
        eye = xp.eye(self.size, dtype=dtype, device=device(X))
        columns = [self.hvp(cache, X, xp.broadcast_to(eye[j, ...], (T, self.size)), head, c, r)
                   for j in range(self.size)]
        return xp.stack(columns, axis=-1)

    def gradient_flops(self, n, d, shape):
        """About three matrix products per layer and example (forward, adjoints, weight gradient):
        ``6 n sum_l out_l in_l`` (``derivations/mlp.md`` (N9))."""
        return 6 * n * sum(out * fan_in for _, _, out, fan_in in self.layers)

    def hvp_flops(self, n, d, shape):
        """About twice a gradient (N9)."""
        return 2 * self.gradient_flops(n, d, shape)


def _sizes(sizes):
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of layer widths (d_in, h_1, ..., d_out); got {sizes!r}") \
            from None
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least two entries (d_in, ..., d_out); got {sizes!r}")
    out = []
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"sizes must hold positive integers; got {s!r} in {sizes!r}")
        s = operator.index(s)
        if s < 1:
            raise ValueError(f"sizes must hold positive integers; got {s} in {sizes!r}")
        out.append(s)
    return tuple(out)


class MLP(Model):
    """A multilayer perceptron with a loss head (``derivations/mlp.md``).

    ``sizes = (d_in, h_1, ..., d_out)`` (at least two entries); ``activation`` is ``"tanh"`` or
    ``"relu"``, after every layer but the last; ``loss`` is ``"mse"`` (targets ``(..., n, d_out)``,
    or ``(..., n)`` when ``d_out = 1``), ``"logistic"`` (``d_out = 1``, labels 0/1) or
    ``"softmax"`` (``d_out = C >= 2``, integer labels). ``theta`` is flat, ``(size,)`` or
    ``(T, size)``, in PyTorch's parameter order. ``l2`` covers every parameter, biases included.
    """

    def __init__(self, sizes, activation="tanh", loss="mse"):
        sizes = _sizes(sizes)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {activation!r}")
        if not isinstance(loss, str) or loss not in heads.HEADS:
            raise ValueError(f"loss must be one of {', '.join(map(repr, heads.HEADS))}; got {loss!r}")
        if loss == "logistic" and sizes[-1] != 1:
            raise ValueError(f"the logistic head takes one output per example: sizes must end in 1; got {sizes}")
        if loss == "softmax" and sizes[-1] < 2:
            raise ValueError(f"the softmax head needs at least 2 outputs (classes): sizes must end in C >= 2; "
                             f"got {sizes}")
        network = Perceptron(sizes, activation, squeeze=loss == "logistic")
        super().__init__(f"MLP({sizes}, {activation!r}, {loss!r})", network, heads.HEADS[loss])
        self.sizes, self.activation, self.loss_name = sizes, activation, loss
        self.size = network.size

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, activation={self.activation!r}, loss={self.loss_name!r})"

    def __eq__(self, other):
        return isinstance(other, MLP) and (self.sizes, self.activation, self.loss_name) == \
            (other.sizes, other.activation, other.loss_name)

    def __hash__(self):
        return hash((MLP, self.sizes, self.activation, self.loss_name))

    def init(self, seed):
        """A float64 NumPy vector drawn as PyTorch's default ``nn.Linear`` initialisation: every
        weight and bias of a layer uniform in ``+-1/sqrt(fan_in)`` (N1); seeded by ``seed``."""
        rng = np.random.default_rng(_validate.integer(seed, "seed"))
        out = np.empty(self.size)
        for w, b, out_size, fan_in in self.network.layers:
            bound = 1 / math.sqrt(fan_in)
            out[w:b + out_size] = rng.uniform(-bound, bound, b + out_size - w)
        return out

    def unflatten(self, theta):
        """``[(W, b), ...]``: each layer's weight ``(out, in)`` and bias ``(out,)`` of (N1), with a
        leading task axis when ``theta`` has one; views of ``theta`` in its own namespace."""
        xp, dev = _xp.namespace(theta=theta)
        theta = _validate.floating(xp, dev, theta, "theta", allow_complex=True, ndims=(1, 2))
        self.network.check_parameters(tuple(theta.shape[-1:]), self.sizes[0], "theta", "X", (self.sizes[0],))
        return self.network.unflatten(theta)

    def hessian(self, theta, X, y, *, l2=0.0):
        """Explicit Hessian ``(P, P)`` or ``(T, P, P)``, ``P = size``: the HVP (N6) of every basis vector.
        Refused (ValueError) when it would take more than 1 GiB in float64: use :meth:`hvp`."""
        lead = 1
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 3:
            lead = shape[0]
        need = 8 * lead * self.size * self.size
        if need > HESSIAN_BYTES:
            raise ValueError(f"the explicit Hessian of this MLP ({lead} x {self.size} x {self.size} float64) "
                             f"would take {need / 2**30:.1f} GiB; use hvp, which never forms it")
        return super().hessian(theta, X, y, l2=l2)
