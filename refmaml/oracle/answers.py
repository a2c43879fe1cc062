"""The right answer of a case, and the answers of the bugs the oracle diagnoses.

Everything is computed in float64 with refmaml's public functions; the bugs'
answers are derived in ``derivations/oracle.md`` (O1)-(O6).
"""

from dataclasses import dataclass

import numpy as np

from .. import models
from ..maml import adapt, meta_value_and_grad, sum_to_rate

DIAGNOSES = ("first_order", "drift", "sum_over_tasks", "sum_over_examples", "steps_minus_one",
             "steps_plus_one", "inner_on_query", "meta_loss_on_support", "lr_no_grad", "tutorial_code",
             "l2_on_query", "l2_without_half", "hessian_at_last_iterate")
# Bugs whose answers differ from the truth only where the support loss has a ridge term (l2 > 0).
RIDGE = ("l2_on_query", "l2_without_half")


@dataclass(frozen=True)
class Answer:
    """A meta-loss, a meta-gradient and, where it is defined, the gradient with respect to
    ``inner_lr`` (``None``: not part of the comparison)."""

    loss: float
    grad: np.ndarray
    lr_grad: object = None

    def scaled(self, loss=1.0, grad=1.0, lr_grad=1.0):
        rate = None if self.lr_grad is None else self.lr_grad * lr_grad
        return Answer(self.loss * loss, self.grad * grad, rate)


def _meta(case, rate, *, Xs=None, ys=None, Xq=None, yq=None, lr=None, steps=None, l2=None, first_order=False):
    """``meta_value_and_grad`` on the case with some of its parts replaced."""
    loss, grad, lr_grad = meta_value_and_grad(
        case.theta, case.Xs if Xs is None else Xs, case.ys if ys is None else ys,
        case.Xq if Xq is None else Xq, case.yq if yq is None else yq,
        inner_lr=rate if lr is None else lr, inner_steps=case.inner_steps if steps is None else steps,
        model=case.model, l2=case.l2 if l2 is None else l2, first_order=first_order, lr_grad=True)
    return Answer(float(loss), np.asarray(grad), np.asarray(lr_grad))


def truth(case, rate):
    """The exact meta-loss, meta-gradient (M6) and rate gradient (V3)-(V4), mean over tasks."""
    return _meta(case, rate)


def first_order(case, rate):
    """First-order MAML (M8) and its rate gradient (V5)."""
    return _meta(case, rate, first_order=True)


def trajectory(case, rate):
    """``theta_0 .. theta_K`` of every task: ``(K + 1, T) + theta.shape``."""
    return np.asarray(adapt(case.theta, case.Xs, case.ys, inner_lr=rate, inner_steps=case.inner_steps,
                            model=case.model, l2=case.l2, return_trajectory=True))


def drift(case, rate):
    """Task ``t`` starts where task ``t - 1`` ended (O1), differentiated exactly through the whole
    chain (O2), and the in-place version whose gradient is the mean of the query gradients at the
    drifted points (O3)."""
    model = models.get(case.model)
    T, K = case.T, case.inner_steps
    phi, paths, grads, ends = case.theta, [], [], []
    for t in range(T):
        path, g_t = [phi], []
        for _ in range(K):
            g = model.grad(phi, case.Xs[t], case.ys[t], l2=case.l2)
            g_t.append(g)
            phi = phi - rate * g
            path.append(phi)
        paths.append(path)
        grads.append(g_t)
        ends.append(phi)
    loss = float(np.mean([model.loss(ends[t], case.Xq[t], case.yq[t]) for t in range(T)]))
    query = [model.grad(ends[t], case.Xq[t], case.yq[t]) for t in range(T)]
    adjoint, lr_grad = np.zeros_like(case.theta), np.zeros(np.shape(rate))
    for t in reversed(range(T)):
        adjoint = adjoint + query[t] / T
        for k in reversed(range(K)):
            lr_grad = lr_grad - sum_to_rate(np, (adjoint * grads[t][k])[None], np.shape(rate))[0]
            adjoint = adjoint - model.hvp(paths[t][k], case.Xs[t], case.ys[t], rate * adjoint, l2=case.l2)
    return [Answer(loss, adjoint, lr_grad), Answer(loss, np.mean(query, axis=0))]


def tutorial_code(case, rate):
    """The seed tutorial's loop (``derivations/seed-errata.md`` (E5)-(E6)) with ``K`` inner steps
    per task (O6): one gradient buffer that is never zeroed, parameters updated in place. Its
    meta-loss as printed (mean) or summed, its buffer as is or divided by ``T``."""
    model = models.get(case.model)
    buffer, current, losses, pending = np.zeros_like(case.theta), case.theta, [], []
    for t in range(case.T):
        for _ in range(case.inner_steps):
            buffer = buffer + model.grad(current, case.Xs[t], case.ys[t], l2=case.l2)
            current = current - rate * buffer
        losses.append(float(model.loss(current, case.Xq[t], case.yq[t])))
        pending.append(model.grad(current, case.Xq[t], case.yq[t]))
    inner = buffer
    buffer = inner + np.sum(pending, axis=0)
    mean, total = float(np.mean(losses)), float(np.sum(losses))
    # the query losses averaged before backward(): the buffer gains the mean of the h_t (O6)
    averaged = inner + np.mean(pending, axis=0)
    return [Answer(mean, buffer), Answer(mean, buffer / case.T), Answer(total, buffer), Answer(mean, averaged)]


def unrolled(case, rate, *, query_l2=0.0, hessian_at_last=False):
    """(O9)-(O10): the meta-loss with a ridge term ``(query_l2/2)||theta_K||^2`` in the query loss,
    and its gradient by reverse accumulation, every reverse step taking the Hessian at ``theta_k``
    (exact) or, with ``hessian_at_last``, at ``theta_K``; mean over tasks."""
    model = models.get(case.model)
    path = trajectory(case, rate)
    K, T = case.inner_steps, case.T
    loss, grad, lr_grad = 0.0, np.zeros_like(case.theta), np.zeros(np.shape(rate))
    for t in range(T):
        end = path[K, t]
        loss += float(model.loss(end, case.Xq[t], case.yq[t], l2=query_l2)) / T
        g = np.asarray(model.grad(end, case.Xq[t], case.yq[t], l2=query_l2))
        for k in reversed(range(K)):
            step = model.grad(path[k, t], case.Xs[t], case.ys[t], l2=case.l2)
            lr_grad = lr_grad - sum_to_rate(np, (g * step)[None], np.shape(rate))[0] / T
            at = path[K if hessian_at_last else k, t]
            g = g - np.asarray(model.hvp(at, case.Xs[t], case.ys[t], rate * g, l2=case.l2))
        grad = grad + g / T
    return Answer(loss, grad, lr_grad)


def _sum_over_examples(case, rate):
    """Losses summed over examples instead of averaged (O4): the support sum is the mean's step at
    rate ``n alpha`` (with ``l2 / n`` if the ridge term is added once, ``l2`` if it is summed too),
    the query sum multiplies loss and gradient by ``m``."""
    n, m = case.Xs.shape[1], case.Xq.shape[1]
    out = []
    for l2 in (case.l2 / n, case.l2):
        support = _meta(case, rate, lr=n * rate, l2=l2)
        out += [support.scaled(m, m, m * n), support.scaled(1, 1, n)]
    return out + [truth(case, rate).scaled(m, m, m)]


def _finite_only(make):
    """A bug's answers, without those that overflow: a bug whose inner loop diverges on a case (a
    summed support loss's step ``n alpha`` through a network) has no finite answer to match there."""
    try:
        found = make()
    except (ValueError, FloatingPointError, OverflowError):
        return []
    return [a for a in found if np.isfinite(a.loss) and np.all(np.isfinite(a.grad))
            and (a.lr_grad is None or np.all(np.isfinite(a.lr_grad)))]


def wrong(case, rate, *, lr_grad):
    """``{diagnosis: [Answer, ...]}``: the answers each diagnosed bug gives on ``case`` (O1)-(O6),
    (O9)-(O10)."""
    right = truth(case, rate)
    K = case.inner_steps
    makers = {
        "first_order": lambda: [first_order(case, rate)],
        "drift": lambda: drift(case, rate),
        "sum_over_tasks": lambda: [right.scaled(case.T, case.T, case.T)],
        "sum_over_examples": lambda: _sum_over_examples(case, rate),
        "steps_minus_one": lambda: [_meta(case, rate, steps=K - 1)] if K >= 1 else [],
        "steps_plus_one": lambda: [_meta(case, rate, steps=K + 1)],
        "inner_on_query": lambda: [_meta(case, rate, Xs=case.Xq, ys=case.yq)],
        "meta_loss_on_support": lambda: [_meta(case, rate, Xq=case.Xs, yq=case.ys)],
        "lr_no_grad": lambda: [Answer(right.loss, right.grad, np.zeros_like(right.lr_grad))] if lr_grad else [],
        "tutorial_code": lambda: tutorial_code(case, rate),
        # (O9): the ridge term in the query loss too; l2 ||theta||^2 (no 1/2) in the support loss
        "l2_on_query": lambda: [unrolled(case, rate, query_l2=case.l2)] if case.l2 else [],
        "l2_without_half": lambda: [_meta(case, rate, l2=2 * case.l2)] if case.l2 else [],
        # (O10): every reverse step with the support Hessian at the last iterate; linear regression's
        # Hessian is constant, and there this is the truth
        "hessian_at_last_iterate": lambda: [unrolled(case, rate, hessian_at_last=True)]
        if K >= 1 and not models.get(case.model).constant_curvature else [],
    }
    assert tuple(makers) == DIAGNOSES
    with np.errstate(over="ignore", invalid="ignore"):
        return {key: _finite_only(make) for key, make in makers.items()}
