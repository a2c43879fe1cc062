"""Two-dimensional convolution, PyTorch's ``nn.Conv2d``: ``derivations/conv.md`` (C1)-(C8), (C14).

``Conv2d(in_channels, out_channels, kernel, stride=1, padding=0)`` is the cross-correlation of
NCHW inputs ``a (T, n, I, H, W)`` with the weight ``W (O, I, kh, kw)``, plus the bias ``c (O,)``,
in that registration order, on the zero-padded input. Written as one matrix product with the
patch matrix (C2), its four rules are those of a fully connected layer applied at every output
position, with ``W̄ = W`` reshaped ``(O, I kh kw)``, ``Ā`` the patches of ``a``, ``Δ`` the output
adjoint ``(O, Ho Wo)`` and a direction ``(V, e)``:

* forward (C1), (C2): ``b̄ = W̄ Ā + c 1^T``;
* vector-Jacobian product (C4), (C5): ``grad W̄ = sum_i Δ Ā^T``, ``grad c = sum Δ``,
  ``delta_a = fold(W̄^T Δ)``;
* Jacobian-vector product (C6): ``b_dot = V̄ Ā + e 1^T + W̄ Ȧ``;
* R-backward (C7): ``R{delta_a} = fold(W̄^T R{Δ} + V̄^T Δ)``,
  ``R{grad W̄} = sum_i (R{Δ} Ā^T + Δ Ȧ^T)``, ``R{grad c} = sum R{Δ}``.

The patch matrix is built from shifted, strided slices of the padded input and folded back
with slice additions: operations NumPy, CuPy and the array API share.
"""

import math
import numbers

import numpy as np
from array_api_compat import device

from ... import _validate
from ..._xp import array_namespace


def pair(value, name, minimum):
    """An integer or a pair of integers, each at least ``minimum``, as a pair."""
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer or a pair of integers; got {value!r}") from None
    return (_validate.integer(first, name, minimum=minimum), _validate.integer(second, name, minimum=minimum))


def windows(size, kernel, stride, padding=0):
    """Output length of sliding ``kernel`` over ``size + 2 padding`` by ``stride`` (C3); 0 when it does
    not fit."""
    span = size + 2 * padding - kernel
    return span // stride + 1 if span >= 0 else 0


def _padded(xp, a, padding):
    ph, pw = padding
    if not (ph or pw):
        return a
    shape = tuple(a.shape[:-2]) + (a.shape[-2] + 2 * ph, a.shape[-1] + 2 * pw)
    out = xp.zeros(shape, dtype=a.dtype, device=device(a))
    out[..., ph:ph + a.shape[-2], pw:pw + a.shape[-1]] = a
    return out


def window_slices(kernel, stride, out):
    """The strided slices, one per kernel offset ``(u, v)`` in row-major order, that pick the
    entries each output position sees at that offset."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out
    return [(slice(u, u + sh * (ho - 1) + 1, sh), slice(v, v + sw * (wo - 1) + 1, sw))
            for u in range(kh) for v in range(kw)]


def patches(a, kernel, stride, padding):
    """The patch matrix ``Ā`` of (C2): ``a (..., I, H, W)`` -> ``(..., I kh kw, Ho Wo)``, row
    ``i kh kw + u kw + v`` holding ``a_pad[i, s y + u, s x + v]`` at column ``y Wo + x``."""
    xp = array_namespace(a)
    lead, channels = tuple(a.shape[:-3]), a.shape[-3]
    out = (windows(a.shape[-2], kernel[0], stride[0], padding[0]),
           windows(a.shape[-1], kernel[1], stride[1], padding[1]))
    a = _padded(xp, a, padding)
    cols = xp.stack([a[..., rows, columns] for rows, columns in window_slices(kernel, stride, out)], axis=-3)
    return xp.reshape(cols, lead + (channels * kernel[0] * kernel[1], out[0] * out[1]))


def fold(cols, shape, kernel, stride, padding):
    """The transpose of :func:`patches` (C5): ``cols (..., I kh kw, Ho Wo)`` added back to the input
    positions they came from (overlapping patches sum), the padding dropped; ``(...,) + shape``
    for one example's input shape ``shape = (I, H, W)``. A fresh array."""
    xp = array_namespace(cols)
    (channels, height, width), lead = shape, tuple(cols.shape[:-2])
    out = (windows(height, kernel[0], stride[0], padding[0]), windows(width, kernel[1], stride[1], padding[1]))
    cols = xp.reshape(cols, lead + (channels, kernel[0] * kernel[1]) + out)
    total = xp.zeros(lead + (channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=cols.dtype,
                     device=device(cols))
    for k, (rows, columns) in enumerate(window_slices(kernel, stride, out)):
        total[..., rows, columns] += cols[..., k, :, :]
    if padding[0] or padding[1]:
        return total[..., padding[0]:padding[0] + height, padding[1]:padding[1] + width]
    return total


class Conv2d:
    """``b = W * a + c`` (C1): PyTorch's ``nn.Conv2d(in_channels, out_channels, kernel, stride,
    padding)`` with zero padding; ``kernel``, ``stride`` and ``padding`` are integers or pairs
    (height, width)."""

    equations = ("conv.md (C1), (C2)", "conv.md (C4), (C5)")  # forward, backward: for walk-throughs

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0):
        self.in_channels = _validate.integer(in_channels, "in_channels", minimum=1)
        self.out_channels = _validate.integer(out_channels, "out_channels", minimum=1)
        self.kernel = pair(kernel, "kernel", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.param_shapes = ((self.out_channels, self.in_channels) + self.kernel, (self.out_channels,))

    @property
    def fan_in(self):
        return self.in_channels * self.kernel[0] * self.kernel[1]

    def __repr__(self):
        extra = "".join(f", {name}={value if value[0] != value[1] else value[0]}"
                        for name, value, default in (("stride", self.stride, 1), ("padding", self.padding, 0))
                        if value != (default, default))
        kernel = self.kernel if self.kernel[0] != self.kernel[1] else self.kernel[0]
        return f"Conv2d({self.in_channels}, {self.out_channels}, {kernel}{extra})"

    def spec(self):
        return {"layer": "Conv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": list(self.kernel), "stride": list(self.stride), "padding": list(self.padding)}

    def _out(self, input_shape):
        return tuple(windows(input_shape[1 + j], self.kernel[j], self.stride[j], self.padding[j]) for j in (0, 1))

    def output_shape(self, input_shape):
        """``(O, Ho, Wo)`` with ``Ho = floor((H + 2 p - kh) / s) + 1`` (C3); a ValueError when the
        input is not ``(in_channels, H, W)`` or the padded input is smaller than the kernel."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise ValueError(f"{self!r} takes inputs of shape ({self.in_channels}, H, W) per example; "
                             f"got {input_shape}")
        out = self._out(input_shape)
        if min(out) < 1:
            raise ValueError(f"{self!r}: the input {input_shape[1:]} with padding {self.padding} is smaller "
                             f"than the kernel {self.kernel}")
        return (self.out_channels,) + out

    def flops(self, n, input_shape):
        """``2 n O I kh kw Ho Wo``: the products of the forward pass (C14)."""
        return 2 * n * self.out_channels * self.fan_in * math.prod(self._out(tuple(input_shape)))

    def init(self, rng):
        """PyTorch's default (C8): ``kaiming_uniform_(a=sqrt(5))`` for the weight, which is uniform
        in ``+-1/sqrt(fan_in)``, ``fan_in = I kh kw``, and the bias uniform in the same bounds;
        drawn together."""
        bound = 1 / math.sqrt(self.fan_in)
        return rng.uniform(-bound, bound, self.out_channels * (self.fan_in + 1))

    # ------------------------------------------------------------------ the four rules

    def _matrix(self, W):
        """``W̄``: ``(..., O, I kh kw)``, with an axis for the examples: ``(..., 1, O, I kh kw)``."""
        xp = array_namespace(W)
        return xp.reshape(W, tuple(W.shape[:-4]) + (1, self.out_channels, self.fan_in))

    def _patches(self, a):
        return patches(a, self.kernel, self.stride, self.padding)

    def _fold(self, cols, shape):
        return fold(cols, shape, self.kernel, self.stride, self.padding)

    def _image(self, b, a):
        """``(T, n, O, Ho Wo)`` -> ``(T, n, O, Ho, Wo)``."""
        xp = array_namespace(b)
        return xp.reshape(b, tuple(b.shape[:-1]) + self._out(tuple(a.shape[-3:])))

    def _columns(self, delta):
        xp = array_namespace(delta)
        return xp.reshape(delta, tuple(delta.shape[:-2]) + (delta.shape[-2] * delta.shape[-1],))

    def forward(self, params, a):
        """``b̄ = W̄ Ā + c 1^T`` (C1), (C2); the context is the patch matrix ``Ā (T, n, I kh kw, Ho Wo)``."""
        W, c = params
        A = self._patches(a)
        b = self._matrix(W) @ A
        b += c[..., None, :, None]
        return self._image(b, a), A

    @staticmethod
    def _weight_gradient(xp, D, A):
        """``sum_i D_i A_i^T`` over the examples: ``(T, O, I kh kw)``."""
        return xp.sum(D @ xp.matrix_transpose(A), axis=-3)

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = fold(W̄^T Δ)`` (C5) and ``(sum_i Δ Ā^T, sum Δ)`` (C4)."""
        xp = array_namespace(a)
        W = params[0]
        D = self._columns(delta)
        grads = (xp.reshape(self._weight_gradient(xp, D, ctx), (D.shape[0],) + tuple(W.shape[-4:])),
                 xp.sum(D, axis=(-3, -1)))
        if not need_input:
            return None, grads
        return self._fold(xp.matrix_transpose(self._matrix(W)) @ D, tuple(a.shape[-3:])), grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = V̄ Ā + e 1^T + W̄ Ȧ`` (C6)."""
        V, e = p_dot
        b_dot = self._matrix(V) @ ctx
        b_dot += e[..., None, :, None]
        if a_dot is not None:
            b_dot += self._matrix(params[0]) @ self._patches(a_dot)
        return self._image(b_dot, a)

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """(C7): ``R{delta_a} = fold(W̄^T R{Δ} + V̄^T Δ)``, ``R{grad W̄} = sum_i (R{Δ} Ā^T + Δ Ȧ^T)``,
        ``R{grad c} = sum R{Δ}``; without ``second_order`` the terms in ``Δ`` are dropped (H12)."""
        xp = array_namespace(a)
        W = params[0]
        R_D = self._columns(R_delta)
        D = self._columns(delta) if second_order else None
        gW = self._weight_gradient(xp, R_D, ctx)
        if second_order and a_dot is not None:
            gW += self._weight_gradient(xp, D, self._patches(a_dot))
        grads = (xp.reshape(gW, (R_D.shape[0],) + tuple(W.shape[-4:])), xp.sum(R_D, axis=(-3, -1)))
        if not need_input:
            return None, grads
        cols = xp.matrix_transpose(self._matrix(W)) @ R_D
        if second_order:
            cols += xp.matrix_transpose(self._matrix(p_dot[0])) @ D
        return self._fold(cols, tuple(a.shape[-3:])), grads
