"""``b = max(a, 0)``: slope ``[a > 0]`` (0 at the kink, as PyTorch), curvature 0 away from the kink
(``derivations/mlp.md`` (N8)). The branch is taken on the real part, so the complex step passes
through it."""

from ... import _xp
from ..._xp import array_namespace
from .elementwise import Elementwise


class ReLU(Elementwise):
    """PyTorch's ``nn.ReLU`` (N8); its inputs have kinks at 0 (:meth:`kink_distance`)."""

    def forward(self, params, a):
        """``(a [a > 0], [a > 0])`` (N1), (N8)."""
        xp = array_namespace(a)
        mask = xp.astype(_xp.real_part(xp, a) > 0, a.dtype)
        return a * mask, mask

    def slope(self, ctx):
        return ctx

    def curvature(self, ctx):
        return None

    def kink_distance(self, a, ctx):
        """``|Re a|`` per entry: how far each input is from the kink at 0, ``(T, n) + shape``."""
        xp = array_namespace(a)
        return xp.abs(_xp.real_part(xp, a))
