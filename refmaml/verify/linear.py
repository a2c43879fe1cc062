"""Linear regression's closed forms (``derivations/linear.md``): the constant Hessian (Q3), the
inner loop as an affine map (Q4), (Q5), reverse accumulation against the closed-form meta-gradient
(Q6), (Q7), and the meta-optimum (Q8), (Q9)."""

from .. import check
from ..models import linear
from .identity import Identity


def _linear_rate(p, kind):
    """Rates of linear regression's closed-form rows: a scalar, per parameter or per step."""
    return p.alpha if kind == "scalar" else p.rates[kind]


def _linear_closed_form(kind):
    """linear.md (Q7): reverse accumulation (M6), (V2) against M^T grad L_q(M theta + c)."""
    def run(p):
        rate = _linear_rate(p, kind)
        a = p.meta(inner_lr=rate)(p.theta)
        b = linear.closed_form_meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xq, p.yq, inner_lr=rate,
                                                   inner_steps=p.K, l2=p.l2)
        return max(check.relative_error(x, y) for x, y in zip(a, b, strict=True))
    return run


def _linear_hessian(p):
    """linear.md (Q3): the Hessian at theta + u is (2/n) X^T X + l2 I, whatever theta and u."""
    xp = p.xp
    n, d = p.X.shape
    want = 2 * (xp.matrix_transpose(p.X) @ p.X) / n + p.l2 * xp.eye(d, dtype=p.X.dtype, device=p.device)
    return check.relative_error(p.hessian(p.theta + p.u), want)


def _linear_affine(p):
    """linear.md (Q5): adapt(theta) = M theta + c."""
    M, c = linear.affine_map(p.Xs, p.ys, inner_lr=p.alpha, inner_steps=p.K, l2=p.l2)
    theta_K = p.adapt(p.theta)
    return check.relative_error((M @ p.theta[:, None])[..., 0] + c, theta_K)


def _linear_optimum(kind):
    """linear.md (Q8): the meta-gradient at meta_optimum, relative to the scale of its terms
    ``||S|| ||theta*|| / T`` (a backward-stable solve leaves a few eps of it)."""
    def run(p):
        xp = p.xp
        rate = _linear_rate(p, kind)
        star = linear.meta_optimum(p.Xs, p.ys, p.Xq, p.yq, inner_lr=rate, inner_steps=p.K, l2=p.l2)
        _, g = p.meta(inner_lr=rate)(star)
        M, _ = linear.affine_map(p.Xs, p.ys, inner_lr=rate, inner_steps=p.K, l2=p.l2)
        m = p.Xq.shape[1]
        S = xp.sum(xp.matrix_transpose(M) @ (2 * xp.matrix_transpose(p.Xq) @ p.Xq / m) @ M, axis=0)
        scale = float(xp.max(xp.linalg.eigvalsh(S))) * check.norm(star) / p.Xs.shape[0]
        return check.norm(g) / scale
    return run


IDENTITIES = [Identity(*row, applies=lambda model: model.constant_curvature) for row in [
    ("{name} Hessian = (2/n) X^T X + l2 I at every theta", "linear.md (Q3)", 1e-12, False, _linear_hessian),
    ("MAML ({name}) adapt = affine map M theta + c", "linear.md (Q4), (Q5)", 1e-12, False, _linear_affine),
] + [(f"MAML ({{name}}, {kind} rate) reverse accumulation = closed form M^T grad L_q", "linear.md (Q6), (Q7)",
      1e-12, False, _linear_closed_form(kind)) for kind in ("scalar", "per parameter", "per step")] + [
    (f"MAML ({{name}}, {kind} rate) meta-gradient at meta_optimum / scale", "linear.md (Q8), (Q9)", 1e-12,
     False, _linear_optimum(kind)) for kind in ("scalar", "per parameter", "per step")]]
