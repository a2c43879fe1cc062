"""The derivatives of every model (``derivations/models.md`` (H2)-(H4), and each model's own file):
the gradient against the complex step and central differences, the HVP against those of the
gradient, the Hessian's columns and symmetry, its definiteness where the loss is convex, and the
loss at saturated logits."""

from .. import check
from .. import models as registry
from ..models import logistic, softmax
from .identity import Identity
from .instance import flat


def _hessian_columns(p):
    xp = p.xp
    H = p.hessian(p.theta)
    eye = xp.eye(H.shape[0], dtype=H.dtype, device=p.device)
    cols = xp.stack([flat(xp, p.hvp(p.theta, xp.reshape(eye[j, ...], p.theta.shape)))
                     for j in range(H.shape[0])], axis=1)
    return check.relative_error(H, cols)


def _psd(p):
    xp = p.xp
    lam = xp.linalg.eigvalsh(p.hessian(p.theta, l2=0.0))
    return max(0.0, -float(xp.min(lam))) / float(xp.max(xp.abs(lam)))


def _saturated_logistic(p):
    """Logits of +-1e4: loss 5000 and gradient 0.5, exact to rounding (logistic.md (L8), (L9))."""
    theta, X = p.put([1e4]), p.put([[1.0], [1.0], [-1.0], [-1.0]])
    y = p.put([0, 1, 0, 1])
    e_loss = check.relative_error(logistic.loss(theta, X, y), p.put(5000.0))
    e_grad = check.relative_error(logistic.grad(theta, X, y), p.put([0.5]))
    return max(e_loss, e_grad)


def _saturated_softmax(p):
    """Logits (1e4, 0, -1e4) and their negatives: loss 15000, gradient (0.5, 0.5, -1) exactly
    (softmax.md (S7), (S8))."""
    theta, X = p.put([[1e4, 0.0, -1e4]]), p.put([[1.0], [-1.0]])
    y = p.put([2, 1])
    e_loss = check.relative_error(softmax.loss(theta, X, y), p.put(15000.0))
    e_grad = check.relative_error(softmax.grad(theta, X, y), p.put([[0.5, 0.5, -1.0]]))
    return max(e_loss, e_grad)


# The labels of each registered model's rows beyond its own ``equations`` (grad, hvp).
LABELS = {
    registry.get("logistic"): dict(hessian="logistic.md (L10)", psd="logistic.md (L12)", symmetry="logistic.md (L12)",
                                   saturated="logistic.md (L8), (L9)"),
    registry.get("softmax"): dict(hessian="softmax.md (S9)", psd="softmax.md (S11)", symmetry="softmax.md (S11)",
                                  saturated="softmax.md (S7), (S8)"),
    registry.get("linear"): dict(hessian="linear.md (Q3)", psd="linear.md (Q3)", symmetry="linear.md (Q3)"),
}

IDENTITIES = [
    Identity("{name} gradient = complex step", "{grad}", 1e-12, False,
             lambda p: check.gradient_error(p.loss, p.grad, p.theta)),
    Identity("{name} gradient = central differences", "{grad}", 1e-6, True,
             lambda p: check.gradient_error(p.loss, p.grad, p.theta, method="central")),
    Identity("{name} HVP = complex step of gradient", "{hvp}", 1e-12, False,
             lambda p: check.hvp_error(p.grad, p.hvp, p.theta, p.v)),
    Identity("{name} HVP = central differences of gradient", "{hvp}", 1e-6, True,
             lambda p: check.hvp_error(p.grad, p.hvp, p.theta, p.v, method="central")),
    Identity("{name} Hessian columns = HVP(e_j)", "{hessian}", 1e-12, False, _hessian_columns),
    Identity("{name} HVP symmetry <u,Hv> = <Hu,v>", "{symmetry}", 1e-12, False,
             lambda p: check.hvp_symmetry_error(p.hvp, p.theta, p.u, p.v)),
    Identity("{name} Hessian PSD (-min eig / max |eig|)", "{psd}", 1e-12, False, _psd,
             applies=lambda model: model.convex),
    Identity("{name} loss, gradient at logits +-1e4", "{saturated}", 1e-12, False, _saturated_logistic,
             applies=lambda model: model.linear and model.targets == "binary"),
    Identity("{name} loss, gradient at logits +-1e4", "{saturated}", 1e-12, False, _saturated_softmax,
             applies=lambda model: model.linear and model.targets == "classes"),
]
