"""Max-pooling, PyTorch's ``nn.MaxPool2d``: ``derivations/conv.md`` (C9)-(C12).

``MaxPool2d(kernel, stride=None)`` (stride = kernel by default, no padding) keeps the largest
entry of each ``kh x kw`` window of ``a (T, n, C, H, W)``; where entries tie, the first in the
window's row-major order wins, as in PyTorch. Away from ties the layer is a selection ``b = S a``
(C9): linear with no parameters, so ``delta_a = S^T delta``, ``b_dot = S a_dot`` (C10) and
``R{delta_a} = S^T R{delta}`` (C11), with no second-order term. The choice is made on the real
part, so the complex step passes through it as through ReLU.

``S`` is kept as the offset ``k`` (row-major in the window) of each window's chosen entry, and every
rule works on the ``kh kw`` strided views of ``a`` at the offsets (:meth:`MaxPool2d._windows`), one
array of the output's size at a time.
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
        """Every window's entry at each offset ``k`` (row-major in the window): ``kh kw`` strided views
        of ``a``, each ``(T, n, C, Ho, Wo)``."""
        out = self._out(tuple(a.shape[-3:]))
        return [a[..., rows, columns] for rows, columns in window_slices(self.kernel, self.stride, out)]

    def _offsets(self, xp, choice):
        """The offsets ``0 .. kh kw - 1`` as 0-d arrays of ``choice``'s dtype and device."""
        return [xp.asarray(k, dtype=choice.dtype, device=device(choice)) for k in range(math.prod(self.kernel))]

    @staticmethod
    def _mask(xp, choice, k, like):
        """``[choice == k]`` in ``like``'s dtype. Selections below multiply by it: NumPy's ``where`` takes
        several times as long as a product on these arrays, and a product lets a NaN through as
        before."""
        return xp.astype(choice == k, like.dtype)

    def _scatter(self, delta, choice, a):
        """``S^T delta``: each entry of ``delta (T, n, C, Ho, Wo)`` added back to the window entry chosen
        in ``choice``, ``a``'s shape (fresh; laid out in memory as ``a`` is, where the library keeps
        layouts, so that the layers below work on arrays of one layout)."""
        xp = array_namespace(delta)
        out = self._out(tuple(a.shape[-3:]))
        # windows that do not overlap receive one entry per position: assigned, not added; where they
        # also cover the whole input, nothing else needs zeros
        apart = all(s >= k for s, k in zip(self.stride, self.kernel, strict=True))
        tiled = apart and self.stride == self.kernel and all(
            o * k == size for o, k, size in zip(out, self.kernel, a.shape[-2:], strict=True))
        total = (xp.empty_like if tiled else xp.zeros_like)(a, dtype=delta.dtype)
        for k, (rows, columns) in zip(self._offsets(xp, choice), window_slices(self.kernel, self.stride, out),
                                      strict=True):
            part = self._mask(xp, choice, k, delta)
            part *= delta
            if apart:
                total[..., rows, columns] = part
            else:
                total[..., rows, columns] += part
        return total

    def _select(self, xp, entries, choice):
        """``S u`` for the entries ``u`` of every window at each offset: a fresh ``(T, n, C, Ho, Wo)``."""
        if len(entries) == 1:
            return xp.asarray(entries[0], copy=True)
        offsets = self._offsets(xp, choice)
        b = self._mask(xp, choice, offsets[0], entries[0])
        b *= entries[0]
        for k, e in zip(offsets[1:], entries[1:], strict=True):
            part = self._mask(xp, choice, k, e)
            part *= e
            b += part
        return b

    def forward(self, params, a):
        """``b = S a`` (C9): the context ``S`` is the offset of each window's chosen entry
        ``(T, n, C, Ho, Wo)`` (integers); the first maximum of the real part wins."""
        xp = array_namespace(a)
        entries = self._windows(a)
        kk = len(entries)
        offsets = [xp.asarray(k, dtype=xp.int8 if kk <= 127 else xp.int32, device=device(a)) for k in range(kk)]
        if kk == 1:
            return xp.asarray(entries[0], copy=True), xp.zeros(tuple(entries[0].shape), dtype=offsets[0].dtype,
                                                               device=device(a))
        best, choice = _xp.real_part(xp, entries[0]), offsets[0]
        for k, e in zip(offsets[1:], entries[1:], strict=True):
            e = _xp.real_part(xp, e)
            # offsets grow: where e is the new first maximum, k is above every earlier choice
            choice = xp.maximum(choice, xp.astype(e > best, choice.dtype) * k)  # the entries' layout
            best = xp.maximum(best, e)  # a NaN stays, as with argmax
        return (self._select(xp, entries, choice) if _xp.is_complex(xp, a) else best), choice

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = S^T delta`` (C10)."""
        return (self._scatter(delta, ctx, a) if need_input else None), ()

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = S a_dot`` (C10)."""
        if a_dot is None:
            return None
        return self._select(array_namespace(a_dot), self._windows(a_dot), ctx)

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``R{delta_a} = S^T R{delta}`` (C11): piecewise linear, no second-order term."""
        return (self._scatter(R_delta, ctx, a) if need_input else None), ()

    def kink_distance(self, a, ctx):
        """The gap between the two largest real parts of each window, ``(T, n, C, Ho, Wo)`` (C12):
        how far the window is from a tie. A window whose largest entry is exactly 0 counts as
        having no kink (``inf``): below a ReLU its entries are then all zeros with zero tangents,
        and the tie changes nothing; a window of one entry has none either."""
        xp = array_namespace(a)
        entries = [_xp.real_part(xp, e) for e in self._windows(a)]
        top = entries[0]
        for e in entries[1:]:
            top = xp.maximum(top, e)
        if len(entries) == 1:
            return xp.full(top.shape, math.inf, dtype=top.dtype, device=device(top))
        lowest = xp.full_like(top, -math.inf)
        second = lowest
        for k, e in zip(self._offsets(xp, ctx), entries, strict=True):
            second = xp.maximum(second, xp.where(ctx == k, lowest, e))
        gap = top - second
        return xp.where(top == 0, xp.full_like(gap, math.inf), gap)
