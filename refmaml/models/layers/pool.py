"""Max-pooling, PyTorch's ``nn.MaxPool2d``: ``derivations/conv.md`` (C9)-(C12).

``MaxPool2d(kernel, stride=None)`` (stride = kernel by default, no padding) keeps the largest
entry of each ``kh x kw`` window of ``a (T, n, C, H, W)``; where entries tie, the first in the
window's row-major order wins, as in PyTorch. Away from ties the layer is a selection ``b = S a``
(C9): linear with no parameters, so ``delta_a = S^T delta``, ``b_dot = S a_dot`` (C10) and
``R{delta_a} = S^T R{delta}`` (C11), with no second-order term. The choice is made on the real
part, so the complex step passes through it as through ReLU.
"""

import math

import numpy as np
from array_api_compat import device

from ... import _xp
from ..._xp import array_namespace
from .conv import window_slices, pair, windows


class MaxPool2d:
    """``b = max over each window of a`` (C9); the first maximum wins a tie."""

    equations = ("conv.md (C9)", "conv.md (C10)")  # forward, backward: for walk-throughs

    param_shapes = ()

    def __init__(self, kernel, stride=None):
        self.kernel = pair(kernel, "kernel", 1)
        self.stride = self.kernel if stride is None else pair(stride, "stride", 1)

    def __repr__(self):
        kernel = self.kernel if self.kernel[0] != self.kernel[1] else self.kernel[0]
        if self.stride == self.kernel:
            return f"MaxPool2d({kernel})"
        stride = self.stride if self.stride[0] != self.stride[1] else self.stride[0]
        return f"MaxPool2d({kernel}, stride={stride})"

    def spec(self):
        return {"layer": "MaxPool2d", "kernel": list(self.kernel), "stride": list(self.stride)}

    def _out(self, input_shape):
        return tuple(windows(input_shape[1 + j], self.kernel[j], self.stride[j]) for j in (0, 1))

    def output_shape(self, input_shape):
        """``(C, Ho, Wo)``, ``Ho = floor((H - kh) / s) + 1`` (C3 with no padding)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"{self!r} takes inputs of shape (C, H, W) per example; got {input_shape}")
        out = self._out(input_shape)
        if min(out) < 1:
            raise ValueError(f"{self!r}: the input {input_shape[1:]} is smaller than the window {self.kernel}")
        return (input_shape[0],) + out

    def flops(self, n, input_shape):
        """Comparisons are not counted (``derivations/mlp.md`` (N9) counts products)."""
        return 0

    def init(self, rng):
        return np.empty(0)

    def _windows(self, a):
        """``(T, n, C, Ho, Wo, kh kw)``: every window's entries, in row-major window order."""
        xp = array_namespace(a)
        out = self._out(tuple(a.shape[-3:]))
        return xp.stack([a[..., rows, columns] for rows, columns in window_slices(self.kernel, self.stride, out)],
                        axis=-1)

    def _scatter(self, cols, a):
        """``S^T``: ``cols (T, n, C, Ho, Wo, kh kw)`` added back to the window entries they came
        from, ``a``'s shape (fresh)."""
        xp = array_namespace(cols)
        out = self._out(tuple(a.shape[-3:]))
        total = xp.zeros(tuple(cols.shape[:-3]) + tuple(a.shape[-2:]), dtype=cols.dtype, device=device(cols))
        for k, (rows, columns) in enumerate(window_slices(self.kernel, self.stride, out)):
            total[..., rows, columns] += cols[..., k]
        return total

    def forward(self, params, a):
        """``b = S a`` (C9): the context ``S`` is the one-hot choice of each window
        ``(T, n, C, Ho, Wo, kh kw)``, in ``a``'s dtype; the first maximum of the real part wins."""
        xp = array_namespace(a)
        entries = self._windows(a)
        first = xp.argmax(_xp.real_part(xp, entries), axis=-1)
        S = xp.astype(first[..., None] == xp.arange(entries.shape[-1], device=device(a)), a.dtype)
        return xp.sum(entries * S, axis=-1), S

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = S^T delta`` (C10)."""
        return (self._scatter(delta[..., None] * ctx, a) if need_input else None), ()

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = S a_dot`` (C10)."""
        if a_dot is None:
            return None
        xp = array_namespace(a_dot)
        return xp.sum(self._windows(a_dot) * ctx, axis=-1)

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``R{delta_a} = S^T R{delta}`` (C11): piecewise linear, no second-order term."""
        return (self._scatter(R_delta[..., None] * ctx, a) if need_input else None), ()

    def kink_distance(self, a, ctx):
        """The gap between the two largest real parts of each window, ``(T, n, C, Ho, Wo)`` (C12):
        how far the window is from a tie. A window whose largest entry is exactly 0 counts as
        having no kink (``inf``): below a ReLU its entries are then all zeros with zero tangents,
        and the tie changes nothing; a window of one entry has none either."""
        xp = array_namespace(a)
        entries = _xp.real_part(xp, self._windows(a))
        top = xp.max(entries, axis=-1)
        if math.prod(self.kernel) == 1:
            return xp.full(top.shape, math.inf, dtype=top.dtype, device=device(top))
        chosen = _xp.real_part(xp, ctx) != 0
        second = xp.max(xp.where(chosen, xp.full_like(entries, -math.inf), entries), axis=-1)
        gap = top - second
        return xp.where(top == 0, xp.full_like(gap, math.inf), gap)
