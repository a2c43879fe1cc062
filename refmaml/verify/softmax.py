"""The structure of the softmax model (``derivations/softmax.md``): the Hessian's null space (S12),
the meta-gradient's zero row sums and the meta-loss's invariance under a class shift (S13), two
classes as the logistic model (S14), and the curvature constant of the range bound (``range.md``
(R3), (R4)). Tolerances sit a few tens of eps above rounding (see :mod:`refmaml.verify`)."""

import numpy as np

from .. import check, meta_value_and_grad
from ..models import softmax
from .identity import Identity


def _class_shift(p):
    """``u 1_C^T``: the same vector added to every class column."""
    return p.u[:, :1] * p.xp.ones_like(p.u)


def _null_space(p):
    """softmax.md (S12): ``||H (u 1^T)|| / (||H||_F ||u 1^T||)`` at l2 = 0."""
    xp = p.xp
    shift = _class_shift(p)
    H = p.hessian(p.theta, l2=0.0)
    return check.norm(p.hvp(p.theta, shift, l2=0.0)) / (check.norm(H) * check.norm(shift))


def _row_sums(l2):
    """softmax.md (S13): ``||G 1_C|| / (sqrt(C) ||G||)`` for the meta-gradient G."""
    def run(p):
        xp = p.xp
        _, G = p.meta(l2=l2)(p.theta)
        C = G.shape[-1]
        return check.norm(xp.sum(G, axis=-1)) / (C ** 0.5 * check.norm(G))
    return run


def _class_rates_row_sums(p):
    """softmax.md (S13): with rates that differ between classes, ``||G 1_C|| / (sqrt(C) ||G||)`` at
    l2 = 0 (a shift ``u 1^T`` is carried unchanged; with l2 > 0 it is not, and the row sums are
    of the order of G: tests/test_softmax.py)."""
    xp = p.xp
    C = p.theta.shape[-1]
    rate = p.put(p.alpha * (0.5 + np.arange(C) / C))
    _, G = p.meta(l2=0.0, inner_lr=rate)(p.theta)
    return check.norm(xp.sum(G, axis=-1)) / (C ** 0.5 * check.norm(G))


def _softmax_curvature_constant(p):
    """range.md (R3), (R4): at Theta = 0 with C = 2 the top eigenvalue of the softmax Hessian is
    ``||X||_2^2 / (2n)``, the bound's constant 1/2 reached (the logistic model's is 1/4)."""
    xp = p.xp
    n, d = p.X.shape
    H = softmax.hessian(xp.zeros((d, 2), dtype=p.X.dtype, device=p.device), p.X, p.y % 2, l2=0.0)
    top = xp.max(xp.linalg.eigvalsh(H))
    spectral = xp.max(xp.linalg.eigvalsh(xp.matrix_transpose(p.X) @ p.X))
    return check.relative_error(top, spectral / (2 * n))


def _shift_invariance(p):
    """softmax.md (S13): the meta-loss is unchanged by ``theta -> theta + u 1^T`` (l2 > 0 too)."""
    loss, _ = p.meta()(p.theta)
    shifted, _ = p.meta()(p.theta + _class_shift(p))
    return check.relative_error(shifted, loss)


def _two_classes(p):
    """softmax.md (S14): C = 2 softmax MAML (alpha, l2) = logistic MAML on t1 - t0 (2 alpha, l2/2)."""
    xp = p.xp
    theta = p.theta[:, :2]
    ys, yq = p.ys % 2, p.yq % 2
    kw = dict(inner_steps=p.K, reduction="none")
    L2, G2 = meta_value_and_grad(theta, p.Xs, ys, p.Xq, yq, inner_lr=p.alpha, l2=p.l2,
                                 model="softmax", **kw)
    L1, G1 = meta_value_and_grad(theta[:, 1] - theta[:, 0], p.Xs, ys, p.Xq, yq,
                                 inner_lr=2 * p.alpha, l2=p.l2 / 2, model="logistic", **kw)
    return max(check.relative_error(L2, L1),
               check.relative_error(G2, xp.stack([-G1, G1], axis=-1)))


IDENTITIES = [Identity(*row, applies=lambda model: model.linear and model.targets == "classes") for row in [
    ("{name} H (u 1^T) = 0 at l2=0 (||H u1^T|| / ||H|| ||u1^T||)", "softmax.md (S12)", 1e-15, False, _null_space),
    ("MAML ({name}) meta-gradient rows sum to 0, l2=0", "softmax.md (S13)", 1e-14, False, _row_sums(0.0)),
    ("MAML ({name}) meta-gradient rows sum to 0, l2=0.1", "softmax.md (S13)", 1e-14, False, _row_sums(0.1)),
    ("MAML ({name}) rows sum to 0, rates differing by class, l2=0", "softmax.md (S13)", 1e-14, False,
     _class_rates_row_sums),
    ("softmax top eigenvalue of H at Theta=0, C=2 = ||X||_2^2 / (2n)", "range.md (R3), (R4)", 1e-12, False,
     _softmax_curvature_constant),
    ("MAML ({name}) meta-loss invariant under theta + u 1^T", "softmax.md (S13)", 1e-14, False, _shift_invariance),
    ("MAML softmax C=2 = logistic on t1-t0, rate 2 alpha", "softmax.md (S14)", 1e-12, False, _two_classes),
]]
