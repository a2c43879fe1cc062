"""The dual (Gram) form of MAML on linear networks (``derivations/dual.md``): against the primal
form, rate gradients included (G4)-(G7), and against the complex step (G6)."""

import numpy as np

from .. import check
from .identity import Identity


def _dual_equals_primal(rates):
    """dual.md (G5)-(G7): the dual form against the primal form, rate gradient included; rates
    ``"scalar"`` and ``"per step"`` with the instance's l2, ``"per feature"`` with l2 = 0."""
    def run(p):
        if rates == "per feature":
            d = p.theta.shape[0]
            rate = p.put(p.alpha * (0.5 + np.arange(d) / d).reshape((d,) + (1,) * (p.theta.ndim - 1)))
            args = dict(inner_lr=rate, l2=0.0)
        else:
            args = dict(inner_lr=p.alpha if rates == "scalar" else p.rates["per step"])
        a = p.meta(form="dual", lr_grad=True, **args)(p.theta)
        b = p.meta(form="primal", lr_grad=True, **args)(p.theta)
        return max(check.relative_error(x, y) for x, y in zip(a, b, strict=True))
    return run


IDENTITIES = [Identity(name, label, 1e-12, False, fn, applies=lambda model: model.linear) for name, label, fn in [
    ("MAML ({name}) dual form = primal form (scalar rate, l2)", "dual.md (G4), (G6), (G7)",
     _dual_equals_primal("scalar")),
    ("MAML ({name}) dual form = primal form (rate per step)", "dual.md (G4), (G7)", _dual_equals_primal("per step")),
    ("MAML ({name}) dual form = primal form (rate per feature)", "dual.md (G5), (G7)",
     _dual_equals_primal("per feature")),
    ("MAML ({name}) dual meta-gradient = complex step (K=3)", "dual.md (G6)",
     lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta(form="dual")(t)[1], p.theta)),
]]
