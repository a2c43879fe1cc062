"""The fully connected layer ``b = a W^T + c``: ``derivations/mlp.md`` (N1)-(N6).

``Linear(in_features, out_features)`` is PyTorch's ``nn.Linear``: weight ``W (out, in)``, then
bias ``c (out,)``, in that registration order. Its four rules, side by side (the layer protocol,
``refmaml.models.protocol.Layer``), with ``a (T, n, in)``, ``delta = dL/db (T, n, out)`` and a
direction ``(V, e)`` of the parameters:

* forward (N1): ``b = a W^T + c``;
* vector-Jacobian product (N2), (N3): ``delta_a = delta W``, ``grad W = delta^T a``,
  ``grad c = sum_i delta_i``;
* Jacobian-vector product (N4): ``b_dot = a V^T + e + a_dot W^T``;
* R-backward (N5), (N6): ``R{delta_a} = R{delta} W + delta V``,
  ``R{grad W} = R{delta}^T a + delta^T a_dot``, ``R{grad c} = sum_i R{delta_i}``.
"""

import math

from ... import _validate
from ..._xp import array_namespace


class Linear:
    """``b = a W^T + c`` (N1): ``W (out_features, in_features)``, ``c (out_features,)``."""

    equations = ("mlp.md (N1)", "mlp.md (N2), (N3)")  # forward, backward: for walk-throughs

    def __init__(self, in_features, out_features):
        self.in_features = _validate.integer(in_features, "in_features", minimum=1)
        self.out_features = _validate.integer(out_features, "out_features", minimum=1)
        self.param_shapes = ((self.out_features, self.in_features), (self.out_features,))

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"

    def spec(self):
        return {"layer": "Linear", "in_features": self.in_features, "out_features": self.out_features}

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self!r} takes inputs of shape ({self.in_features},) per example; "
                             f"got {tuple(input_shape)}")
        return (self.out_features,)

    def flops(self, n, input_shape):
        """``2 n out in``: the forward product (``derivations/mlp.md`` (N9))."""
        return 2 * n * self.out_features * self.in_features

    def init(self, rng):
        """PyTorch's default: weight and bias uniform in ``+-1/sqrt(in_features)`` (N1), drawn
        together."""
        bound = 1 / math.sqrt(self.in_features)
        return rng.uniform(-bound, bound, self.out_features * (self.in_features + 1))

    def forward(self, params, a):
        """``a W^T + c`` (N1); no context."""
        xp = array_namespace(a)
        W, c = params
        b = a @ xp.matrix_transpose(W)
        b += c[..., None, :]
        return b, None

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta W`` and ``(delta^T a, sum_i delta_i)`` (N2), (N3)."""
        xp = array_namespace(a)
        grads = (xp.matrix_transpose(delta) @ a, xp.sum(delta, axis=-2))
        return (delta @ params[0] if need_input else None), grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``a V^T + e + a_dot W^T`` (N4)."""
        xp = array_namespace(a)
        V, e = p_dot
        b_dot = a @ xp.matrix_transpose(V)
        b_dot += e[..., None, :]
        if a_dot is not None:
            b_dot += a_dot @ xp.matrix_transpose(params[0])
        return b_dot

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """(N5), (N6): ``R{delta} W + delta V`` and ``(R{delta}^T a + delta^T a_dot, sum_i R{delta_i})``;
        the weight's two terms are one product over ``2n`` stacked examples."""
        xp = array_namespace(a)
        if second_order and a_dot is not None:
            gW = xp.matrix_transpose(xp.concat([R_delta, delta], axis=-2)) @ xp.concat([a, a_dot], axis=-2)
        else:
            gW = xp.matrix_transpose(R_delta) @ a
        grads = (gW, xp.sum(R_delta, axis=-2))
        if not need_input:
            return None, grads
        R_a = R_delta @ params[0]
        if second_order:
            R_a += delta @ p_dot[0]
        return R_a, grads
