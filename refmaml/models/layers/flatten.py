"""``nn.Flatten``: one example's input ``(C, H, W)`` (or any shape) as one axis in C order,
``derivations/conv.md`` (C13). Its rules reshape: ``delta_a`` is ``delta`` in the input's shape,
``b_dot`` is ``a_dot`` flattened, and there is no R-backward term."""

import math

import numpy as np

from ..._xp import array_namespace


class Flatten:
    """``b = vec(a)`` per example, row-major (C13); no parameters."""

    equations = ("conv.md (C13)", "conv.md (C13)")  # forward, backward: for walk-throughs

    param_shapes = ()

    def __repr__(self):
        return "Flatten()"

    def spec(self):
        return {"layer": "Flatten"}

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def flops(self, n, input_shape):
        return 0

    def init(self, rng):
        return np.empty(0)

    @staticmethod
    def _reshape(u, shape):
        """``u`` in ``shape``, a fresh array (results are never views of the caller's arrays)."""
        xp = array_namespace(u)
        return xp.reshape(xp.asarray(u, copy=True), shape)

    def forward(self, params, a):
        """``vec(a)`` (C13)."""
        return self._reshape(a, tuple(a.shape[:2]) + (-1,)), None

    def vjp(self, params, a, ctx, delta, need_input):
        return (self._reshape(delta, tuple(a.shape)) if need_input else None), ()

    def jvp(self, params, a, ctx, a_dot, p_dot):
        return None if a_dot is None else self._reshape(a_dot, tuple(a_dot.shape[:2]) + (-1,))

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``R_delta`` (the caller's fresh array) in the input's shape: no second-order term."""
        if not need_input:
            return None, ()
        xp = array_namespace(R_delta)
        return xp.reshape(R_delta, tuple(a.shape)), ()
