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
with slice additions: operations NumPy, CuPy and the array API share. The layer keeps it per task,
with the examples side by side, ``(T, I kh kw, n Ho Wo)`` (:func:`task_patches`): each product above
is then one matrix product per task, the sums over the examples ``i`` inside it, instead of ``n``
small products and a sum.
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


def _out(shape, kernel, stride, padding):
    return (windows(shape[-2], kernel[0], stride[0], padding[0]), windows(shape[-1], kernel[1], stride[1], padding[1]))


def _swap(xp, a):
    """``(..., p, q, H, W)`` -> ``(..., q, p, H, W)``, a view."""
    nd = a.ndim
    return xp.permute_dims(a, tuple(range(nd - 4)) + (nd - 3, nd - 4, nd - 2, nd - 1))


def task_patches(a, kernel, stride, padding):
    """The patch matrices ``Ā`` of (C2) of a set's examples side by side: ``a (..., n, I, H, W)`` ->
    ``(..., I kh kw, n Ho Wo)``, row ``i kh kw + u kw + v`` holding ``a_pad[j, i, s y + u, s x + v]`` at
    column ``j Ho Wo + y Wo + x`` for example ``j``. A fresh array."""
    xp = array_namespace(a)
    (n, channels), lead, out = tuple(a.shape[-4:-2]), tuple(a.shape[:-4]), _out(a.shape, kernel, stride, padding)
    a = _padded(xp, _swap(xp, a), padding)  # (..., I, n, H + 2 ph, W + 2 pw)
    cols = xp.empty(lead + (channels, kernel[0] * kernel[1], n) + out, dtype=a.dtype, device=device(a))
    for k, (rows, columns) in enumerate(window_slices(kernel, stride, out)):
        cols[..., k, :, :, :] = a[..., rows, columns]
    return xp.reshape(cols, lead + (channels * kernel[0] * kernel[1], n * out[0] * out[1]))


def task_fold(cols, n, shape, kernel, stride, padding):
    """The transpose of :func:`task_patches` (C5): ``cols (..., I kh kw, n Ho Wo)`` added back to the
    input positions they came from (overlapping patches sum), the padding dropped; ``(..., n) + shape``
    for one example's input shape ``shape = (I, H, W)``. A fresh array (a strided view of one)."""
    xp = array_namespace(cols)
    (channels, height, width), lead = shape, tuple(cols.shape[:-2])
    out = _out(shape, kernel, stride, padding)
    cols = xp.reshape(cols, lead + (channels, kernel[0] * kernel[1], n) + out)
    total = xp.zeros(lead + (channels, n, height + 2 * padding[0], width + 2 * padding[1]), dtype=cols.dtype,
                     device=device(cols))
    for k, (rows, columns) in enumerate(window_slices(kernel, stride, out)):
        total[..., rows, columns] += cols[..., k, :, :, :]
    if padding[0] or padding[1]:
        total = total[..., padding[0]:padding[0] + height, padding[1]:padding[1] + width]
    return _swap(xp, total)


def _one_set(a):
    """``a (..., I, H, W)`` as a set of one example, ``(..., 1, I, H, W)``."""
    return array_namespace(a).expand_dims(a, axis=-4)


def patches(a, kernel, stride, padding):
    """The patch matrix ``Ā`` of (C2): ``a (..., I, H, W)`` -> ``(..., I kh kw, Ho Wo)``, row
    ``i kh kw + u kw + v`` holding ``a_pad[i, s y + u, s x + v]`` at column ``y Wo + x``
    (:func:`task_patches` of each example alone)."""
    return task_patches(_one_set(a), kernel, stride, padding)


def fold(cols, shape, kernel, stride, padding):
    """The transpose of :func:`patches` (C5): ``cols (..., I kh kw, Ho Wo)`` added back to the input
    positions they came from (overlapping patches sum), the padding dropped; ``(...,) + shape``
    for one example's input shape ``shape = (I, H, W)``. A fresh array."""
    return task_fold(cols, 1, shape, kernel, stride, padding)[..., 0, :, :, :]


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
    #
    # Per task, with the set's n examples side by side: the patch matrix Ā (T, I kh kw, n Ho Wo)
    # (task_patches), the output and the adjoints as (T, O, n Ho Wo) (_by_task), so that every product
    # of (C2), (C4)-(C7) is one matrix product per task.

    def _matrix(self, W):
        """``W̄``: ``(..., O, I kh kw)``."""
        xp = array_namespace(W)
        return xp.reshape(W, tuple(W.shape[:-4]) + (self.out_channels, self.fan_in))

    def _patches(self, a):
        return task_patches(a, self.kernel, self.stride, self.padding)

    @staticmethod
    def _examples(A, n):
        """``Ā (T, I kh kw, n Ho Wo)`` -> ``(T, n, I kh kw, Ho Wo)``, a view (the context's shape)."""
        xp = array_namespace(A)
        A = xp.reshape(A, tuple(A.shape[:-1]) + (n, A.shape[-1] // n))
        nd = A.ndim
        return xp.permute_dims(A, tuple(range(nd - 3)) + (nd - 2, nd - 3, nd - 1))

    @staticmethod
    def _tasks(A):
        """The inverse of :meth:`_examples`: ``(T, n, I kh kw, Ho Wo)`` -> ``(T, I kh kw, n Ho Wo)``,
        a view where ``A`` is one of :meth:`_examples`, else a copy."""
        xp = array_namespace(A)
        nd = A.ndim
        A = xp.permute_dims(A, tuple(range(nd - 3)) + (nd - 2, nd - 3, nd - 1))
        return xp.reshape(A, tuple(A.shape[:-3]) + (A.shape[-3], -1))

    def _fold(self, cols, a):
        return task_fold(cols, a.shape[-4], tuple(a.shape[-3:]), self.kernel, self.stride, self.padding)

    def _image(self, b, a):
        """``(T, O, n Ho Wo)`` -> ``(T, n, O, Ho, Wo)``."""
        xp = array_namespace(b)
        b = xp.reshape(b, tuple(b.shape[:-1]) + (a.shape[-4],) + self._out(tuple(a.shape[-3:])))
        return _swap(xp, b)

    def _by_task(self, delta):
        """``(T, n, O, Ho, Wo)`` -> ``(T, O, n Ho Wo)``."""
        xp = array_namespace(delta)
        return xp.reshape(_swap(xp, delta), tuple(delta.shape[:-4]) + (delta.shape[-3], -1))

    def forward(self, params, a):
        """``b̄ = W̄ Ā + c 1^T`` (C1), (C2); the context is the patch matrix ``Ā (T, n, I kh kw, Ho Wo)``
        (a view of the one the rules use, ``(T, I kh kw, n Ho Wo)``: :meth:`_tasks`)."""
        W, c = params
        A = self._patches(a)
        b = self._matrix(W) @ A
        b += c[..., :, None]
        return self._image(b, a), self._examples(A, a.shape[-4])

    @staticmethod
    def _weight_gradient(xp, D, A):
        """``sum_i D_i A_i^T`` over the examples, one product per task: ``(T, O, I kh kw)``."""
        return D @ xp.matrix_transpose(A)

    def _grads(self, xp, gW, D, W):
        return xp.reshape(gW, tuple(gW.shape[:-2]) + tuple(W.shape[-4:])), xp.sum(D, axis=-1)

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = fold(W̄^T Δ)`` (C5) and ``(sum_i Δ Ā^T, sum Δ)`` (C4)."""
        xp = array_namespace(a)
        W = params[0]
        D = self._by_task(delta)
        grads = self._grads(xp, self._weight_gradient(xp, D, self._tasks(ctx)), D, W)
        if not need_input:
            return None, grads
        return self._fold(xp.matrix_transpose(self._matrix(W)) @ D, a), grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = V̄ Ā + e 1^T + W̄ Ȧ`` (C6)."""
        V, e = p_dot
        b_dot = self._matrix(V) @ self._tasks(ctx)
        b_dot += e[..., :, None]
        if a_dot is not None:
            b_dot += self._matrix(params[0]) @ self._patches(a_dot)
        return self._image(b_dot, a)

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """(C7): ``R{delta_a} = fold(W̄^T R{Δ} + V̄^T Δ)``, ``R{grad W̄} = sum_i (R{Δ} Ā^T + Δ Ȧ^T)``,
        ``R{grad c} = sum R{Δ}``; without ``second_order`` the terms in ``Δ`` are dropped (H12)."""
        xp = array_namespace(a)
        W = params[0]
        R_D = self._by_task(R_delta)
        D = self._by_task(delta) if second_order else None
        gW = self._weight_gradient(xp, R_D, self._tasks(ctx))
        if second_order and a_dot is not None:
            gW += self._weight_gradient(xp, D, self._patches(a_dot))
        grads = self._grads(xp, gW, R_D, W)
        if not need_input:
            return None, grads
        if second_order:  # W̄^T R{Δ} + V̄^T Δ as one product, [W̄; V̄]^T [R{Δ}; Δ]
            V = p_dot[0]
            lead = tuple(V.shape[:-4]) if V.ndim >= W.ndim else tuple(W.shape[:-4])
            both = [xp.broadcast_to(self._matrix(M), lead + (self.out_channels, self.fan_in)) for M in (W, V)]
            cols = xp.matrix_transpose(xp.concat(both, axis=-2)) @ xp.concat([R_D, D], axis=-2)
        else:
            cols = xp.matrix_transpose(self._matrix(W)) @ R_D
        return self._fold(cols, a), grads
