"""MAML's meta-gradient (``derivations/maml.md``): against the complex step and central differences
through the unrolled inner loop (M6), the one-step form (M5), its reductions to the query gradient
(M7), (M8), the batch as the mean of its tasks (M4), and meta-only parameters (M10)."""

import numpy as np

from .. import check, meta_value_and_grad
from .identity import Identity
from .instance import flat


def _one_step(p):
    """K = 1 against (I - alpha H_s(theta)) grad L_q(theta_1) with explicit Hessians (M5)."""
    xp = p.xp
    _, g = p.meta(inner_steps=1, reduction="none")(p.theta)
    theta1 = p.adapt(p.theta, inner_steps=1)
    Hs = p.model.hessian(p.theta, p.Xs, p.ys, l2=p.l2)
    T = p.Xs.shape[0]
    gq = flat(xp, p.model.grad(theta1, p.Xq, p.yq), (T,))
    ref = gq - p.alpha * (Hs @ gq[..., None])[..., 0]
    return check.relative_error(flat(xp, g, (T,)), ref)


def _batch_mean(p):
    xp = p.xp
    _, g = p.meta()(p.theta)
    singles = [meta_value_and_grad(p.theta, p.Xs[t, ...], p.ys[t, ...], p.Xq[t, ...], p.yq[t, ...],
                                   inner_lr=p.alpha, inner_steps=p.K, l2=p.l2, model=p.model)[1]
               for t in range(p.Xs.shape[0])]
    return check.relative_error(g, xp.mean(xp.stack(singles), axis=0))


def _reduces_to_query_gradient(**kw):
    def run(p):
        _, g = p.meta(**kw)(p.theta)
        theta_K = p.adapt(p.theta, inner_lr=kw.get("inner_lr", p.alpha),
                          inner_steps=kw.get("inner_steps", p.K))
        return check.relative_error(g, p.xp.mean(p.model.grad(theta_K, p.Xq, p.yq), axis=0))
    return run


def _masked(p):
    """(M10): with an ``inner_mask`` (every other parameter, in row-major order), the meta-gradient of
    every parameter against the complex step of the unrolled loss with that mask."""
    shape = tuple(p.theta.shape)
    mask = p.put(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0)
    return check.gradient_error(lambda t: p.unrolled_meta_loss(t, inner_mask=mask),
                                lambda t: p.meta(inner_mask=mask)(t)[1], p.theta)


IDENTITIES = [
    Identity("MAML ({name}) meta-gradient = complex step (K=3)", "maml.md (M6)", 1e-12, False,
             lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta)),
    Identity("MAML ({name}) meta-gradient = central differences (K=3)", "maml.md (M6)", 1e-6, True,
             lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta,
                                            method="central")),
    Identity("MAML ({name}) one step = (I - alpha H_s) grad L_q", "maml.md (M5)", 1e-12, False, _one_step),
    Identity("MAML ({name}) K=0 = query gradient", "maml.md (M7)", 1e-12, False,
             _reduces_to_query_gradient(inner_steps=0)),
    Identity("MAML ({name}) inner_lr=0 = query gradient", "maml.md (M7)", 1e-12, False,
             _reduces_to_query_gradient(inner_lr=0.0)),
    Identity("first-order MAML ({name}) = query gradient at theta_K", "maml.md (M8)", 1e-12, False,
             _reduces_to_query_gradient(first_order=True)),
    Identity("MAML ({name}) batch = mean of single tasks", "maml.md (M4)", 1e-12, False, _batch_mean),
    Identity("MAML ({name}) inner_mask (every other parameter) = complex step", "maml.md (M10)", 1e-12, False,
             _masked),
]
