"""The right answer of a case, and the answers of the bugs the oracle diagnoses.

Everything is computed in float64 with refmaml's public functions; the bugs'
answers are derived in ``derivations/oracle.md`` (O1)-(O6).
"""

from dataclasses import dataclass

import numpy as np

from .. import models
from ..maml import adapt, meta_value_and_grad

DIAGNOSES = ("first_order", "drift", "sum_over_tasks", "sum_over_examples", "steps_minus_one",
             "steps_plus_one", "inner_on_query", "meta_loss_on_support", "lr_no_grad", "tutorial_code")


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


def _sum_to_rate(c, rate):
    return np.sum(c) if np.ndim(rate) == 0 else c


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
            lr_grad = lr_grad - _sum_to_rate(adjoint * grads[t][k], rate)
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
    buffer = buffer + np.sum(pending, axis=0)
    mean, total = float(np.mean(losses)), float(np.sum(losses))
    return [Answer(mean, buffer), Answer(mean, buffer / case.T), Answer(total, buffer)]


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


def wrong(case, rate, *, lr_grad):
    """``{diagnosis: [Answer, ...]}``: the answers each diagnosed bug gives on ``case`` (O1)-(O6)."""
    right = truth(case, rate)
    K = case.inner_steps
    out = {
        "first_order": [first_order(case, rate)],
        "drift": drift(case, rate),
        "sum_over_tasks": [right.scaled(case.T, case.T, case.T)],
        "sum_over_examples": _sum_over_examples(case, rate),
        "steps_minus_one": [_meta(case, rate, steps=K - 1)] if K >= 1 else [],
        "steps_plus_one": [_meta(case, rate, steps=K + 1)],
        "inner_on_query": [_meta(case, rate, Xs=case.Xq, ys=case.yq)],
        "meta_loss_on_support": [_meta(case, rate, Xq=case.Xs, yq=case.ys)],
        "lr_no_grad": [Answer(right.loss, right.grad, np.zeros_like(right.lr_grad))] if lr_grad else [],
        "tutorial_code": tutorial_code(case, rate),
    }
    assert tuple(out) == DIAGNOSES
    return out
