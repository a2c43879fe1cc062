"""What the elementwise activations share: ``b = f(a)`` with no parameters.

For an activation ``f`` the four rules of the layer protocol reduce to its slope ``f'(a)`` and
curvature ``f''(a)`` (``derivations/mlp.md`` (N2), (N4), (N5)): ``delta_a = delta f'(a)``,
``b_dot = f'(a) a_dot``, ``R{delta_a} = R{delta} f'(a) + delta f''(a) a_dot``. A subclass gives
``forward`` as ``(f(a), ctx)`` and ``slope(ctx)``, ``curvature(ctx)`` (None where ``f'' = 0``).
"""

import numpy as np


class Elementwise:
    """Base of :class:`refmaml.models.layers.Tanh` and :class:`refmaml.models.layers.ReLU`."""

    equations = ("mlp.md (N1), (N8)", "mlp.md (N2), (N8)")  # forward, backward: for walk-throughs

    param_shapes = ()

    def __repr__(self):
        return f"{type(self).__name__}()"

    def spec(self):
        return {"layer": type(self).__name__}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, n, input_shape):
        """Elementwise work is not counted (``derivations/mlp.md`` (N9) counts products only)."""
        return 0

    def init(self, rng):
        return np.empty(0)

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta f'(a)`` (N2)."""
        return (delta * self.slope(ctx) if need_input else None), ()

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``f'(a) a_dot`` (N4)."""
        return None if a_dot is None else self.slope(ctx) * a_dot

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``R{delta} f'(a) + delta f''(a) a_dot`` (N5); ``R_delta`` is overwritten."""
        if not need_input:
            return None, ()
        R_delta *= self.slope(ctx)
        f2 = self.curvature(ctx) if second_order and a_dot is not None else None
        if f2 is not None:
            R_delta += delta * f2 * a_dot
        return R_delta, ()
