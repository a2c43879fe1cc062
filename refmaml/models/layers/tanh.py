"""``b = tanh(a)``: slope ``1 - b^2``, curvature ``-2 b (1 - b^2)`` (``derivations/mlp.md`` (N8))."""

from ..._xp import array_namespace
from .elementwise import Elementwise


class Tanh(Elementwise):
    """PyTorch's ``nn.Tanh`` (N8)."""

    def forward(self, params, a):
        """``(tanh(a), (b, 1 - b^2))`` (N1), (N8)."""
        xp = array_namespace(a)
        b = xp.tanh(a)
        return b, (b, 1 - b * b)

    def slope(self, ctx):
        return ctx[1]

    def curvature(self, ctx):
        """``-2 b (1 - b^2)`` (N8)."""
        b, slope = ctx
        return -2 * b * slope
