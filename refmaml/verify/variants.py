"""The MAML family (``derivations/variants.md``): learned-rate gradients against the complex step
(V2)-(V5), Reptile's one step (V6), the Taylor relations of Reptile, first-order MAML and MAML
(V7)-(V9), implicit MAML against central differences and unrolled proximal steps (V11), and its
solver residuals (V12)-(V14)."""

import math

import numpy as np

from .. import check, meta_value_and_grad, reptile_direction
from .identity import EPS64, Identity


def _rate_gradient(kind):
    """variants.md (V3), (V4): the rate gradient against the complex step through the inner loop."""
    def run(p):
        rate = p.rates[kind]
        return check.gradient_error(lambda a: p.unrolled_meta_loss(p.theta, inner_lr=a),
                                    lambda a: p.meta(inner_lr=a, lr_grad=True)(p.theta)[2], rate)
    return run


def _theta_gradient_with_rates(p):
    """variants.md (V2): the theta gradient with per-step, per-parameter rates."""
    rate = p.rates["per step and parameter"]
    return check.gradient_error(lambda t: p.unrolled_meta_loss(t, inner_lr=rate),
                                lambda t: p.meta(inner_lr=rate)(t)[1], p.theta)


def _first_order_rate_gradient(p):
    """variants.md (V5): first-order rate gradient = complex step with the inner gradients frozen."""
    xp, rate = p.xp, p.rates["per step and parameter"]
    path = p.adapt(p.theta, inner_lr=rate, return_trajectory=True)  # (K+1, T) + P
    frozen = [p.model.grad(path[k, ...], p.Xs, p.ys, l2=p.l2) for k in range(p.K)]

    def loss(a):
        theta_K = p.theta
        for k in range(p.K):
            theta_K = theta_K - a[k, ...] * frozen[k]
        return xp.mean(p.model.loss(theta_K, p.Xq, p.yq))

    def rate_grad(a):
        return p.meta(inner_lr=a, lr_grad=True, first_order=True)(p.theta)[2]

    return check.gradient_error(loss, rate_grad, rate)


def _reptile_one_step(p):
    """variants.md (V6): with K = 1 the direction is alpha times the mean support gradient."""
    d = reptile_direction(p.theta, p.Xs, p.ys, inner_lr=p.alpha, inner_steps=1, model=p.model, l2=p.l2)
    ref = p.alpha * p.xp.mean(p.model.grad(p.theta, p.Xs, p.ys, l2=p.l2), axis=0)
    return check.relative_error(d, ref)


def taylor_remainders(p, alpha):
    """variants.md (V7)-(V9) with L_q = L_s (query = support, l2 = 0): the norms of what is
    left of Reptile / (alpha K), first-order MAML and MAML after their terms of order <= 1."""
    xp, K = p.xp, p.K
    g = p.model.grad(p.theta, p.Xs, p.ys)
    Hg = xp.mean(p.model.hvp(p.theta, p.Xs, p.ys, g), axis=0)
    g = xp.mean(g, axis=0)
    kw = dict(inner_lr=alpha, inner_steps=K, model=p.model)
    reptile = reptile_direction(p.theta, p.Xs, p.ys, **kw) / (alpha * K)
    first = meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xs, p.ys, first_order=True, **kw)[1]
    full = meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xs, p.ys, **kw)[1]
    return [check.norm(a - (g - c * alpha * Hg))
            for a, c in ((reptile, (K - 1) / 2), (first, K), (full, 2 * K))]


def _taylor_order(p):
    """The observed order of the remainders of (V7)-(V9), from alpha = 0.002 and 0.001:
    ``max |log2(e(alpha) / e(alpha / 2)) - 2|``. The next term, of relative size
    ``O(alpha)``, moves the observed order by a few hundredths at these rates. A network with kinks
    takes alpha = 0.0005 and 0.00025: the expansions hold on one branch only, and a step across a kink
    (the instance keeps its kinked inputs 1e-3 from their kinks at theta) leaves a remainder of order
    one."""
    rates = (0.0005, 0.00025) if p.model.kinks else (0.002, 0.001)
    coarse, fine = taylor_remainders(p, rates[0]), taylor_remainders(p, rates[1])
    return max(abs(float(np.log2(c / f)) - 2) for c, f in zip(coarse, fine, strict=True))


def _imaml_central(p):
    """variants.md (V11) against central differences of the meta-loss (V10) solved to tol."""
    return check.gradient_error(lambda t: p.imaml(t)[0], lambda t: p.imaml(t)[1], p.theta, method="central")


def _imaml_unrolled(p, steps=60):
    """variants.md (V11) against the complex step through ``steps`` gradient steps on (V10),
    from phi_0 = theta (start and anchor), with step 1 / (h_max + 1 + lam). ``steps=None`` takes
    as many as contract the distance to phi* below 1e-13: each step multiplies it by at most
    ``1 - (lam + l2) / (h_max + 1 + lam)`` (l2 bounds the support Hessian from below)."""
    xp = p.xp
    h_max = max(float(xp.max(xp.linalg.eigvalsh(p.model.hessian(p.theta, p.Xs[t, ...], p.ys[t, ...],
                                                                  l2=p.l2))))
                for t in range(p.Xs.shape[0]))
    eta = 1 / (h_max + 1 + p.lam)  # h_max at theta, plus room for the curvature along the path
    if steps is None:
        steps = math.ceil(math.log(1e-13) / math.log(1 - eta * (p.lam + p.l2)))

    def loss(t):
        phi = t
        for _ in range(steps):
            phi = phi - eta * (p.model.grad(phi, p.Xs, p.ys, l2=p.l2) + p.lam * (phi - t))
        return xp.mean(p.model.loss(phi, p.Xq, p.yq))

    return check.gradient_error(loss, lambda t: p.imaml(t)[1], p.theta)


IDENTITIES = [
    Identity(f"learned rates ({{name}}, {kind}): rate gradient = complex step", "variants.md (V3), (V4)", 1e-12,
             False, _rate_gradient(kind))
    for kind in ("scalar", "per parameter", "per step", "per step and parameter")
] + [
    Identity("learned rates ({name}): theta gradient = complex step", "variants.md (V2)", 1e-12, False,
             _theta_gradient_with_rates),
    Identity("first-order rates ({name}) = complex step, inner gradients frozen", "variants.md (V5)", 1e-12,
             False, _first_order_rate_gradient),
    Identity("Reptile ({name}) K=1 = alpha mean grad L_s", "variants.md (V6)", 1e-12, False, _reptile_one_step),
    Identity("Reptile, FO-MAML, MAML ({name}): Taylor remainders O(alpha^2) (|order-2|)",
             "variants.md (V7)-(V9)", 0.05, True, _taylor_order),
    Identity("iMAML ({name}) gradient = central differences", "variants.md (V11)", 1e-6, True, _imaml_central),
    Identity("iMAML ({name}) gradient = complex step, 60 unrolled prox steps", "variants.md (V11)", 1e-10, True,
             _imaml_unrolled, applies=lambda model: not model.constant_curvature),
    Identity("iMAML ({name}) gradient = complex step, prox steps unrolled to contraction 1e-13",
             "variants.md (V11)", 1e-10, True, lambda p: _imaml_unrolled(p, steps=None),
             applies=lambda model: model.constant_curvature),
    Identity("iMAML ({name}) inner residual ||grad G|| / ||grad L_s(theta)||", "variants.md (V12)",
             EPS64 ** 0.75, False, lambda p: p.imaml(p.theta)[2]["inner_residual"]),
    Identity("iMAML ({name}) CG residual ||b - Av|| / ||b||", "variants.md (V13), (V14)", EPS64 ** 0.75, False,
             lambda p: p.imaml(p.theta)[2]["cg_residual"]),
]
