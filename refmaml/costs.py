"""Time and memory of the MAML family in passes of the network: ``derivations/costs.md`` (K1)-(K9).

A *pass* is one of the network's four passes of ``derivations/models.md``: the forward pass (H8),
the backward pass (H9), the R-forward pass (H10) and the R-backward pass (H11). A gradient is a
forward and a backward pass, a Hessian-vector product at a point whose gradient is already known
an R-forward and an R-backward pass. The formulas here count the passes of one call; every pass
runs all ``T`` tasks at once, so the flops of a call are ``T`` times those of one task
(:func:`flops`). A *point* is what one inner iterate keeps for its Hessian-vector product: the
forward cache, the adjoints and the head's curvature state (models.md, "What the code keeps").

Two schedules of the exact meta-gradient trade memory for time (K8), (K9); they compute the same
numbers as :func:`refmaml.maml.primal`, and exist to measure the trade.
"""

import math

from . import _validate, maml, models

METHODS = ("maml", "first-order", "reptile", "meta-sgd", "first-order meta-sgd")


def passes(method, K):
    """Passes of one call through ``K`` inner steps, ``{"forward", "backward", "r_forward",
    "r_backward"}``: (K2) exact MAML and (K5) Meta-SGD (``K`` support gradients, ``K``
    Hessian-vector products, one query gradient), (K3) first-order MAML and first-order Meta-SGD
    (``K + 1`` gradients), (K4) Reptile (``K`` gradients, no query set)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    K = _validate.steps(K, "K")
    gradients = K if method == "reptile" else K + 1
    hvps = K if method in ("maml", "meta-sgd") else 0
    return {"forward": gradients, "backward": gradients, "r_forward": hvps, "r_backward": hvps}


def kept_points(method, K):
    """The most points alive at once (K2)-(K5): ``K`` for the exact meta-gradient, whose reverse
    pass needs a Hessian-vector product at every iterate; ``min(K, 2)`` for the others, which hold
    the current point and the previous one only while the next is formed. (Meta-SGD also keeps the
    ``K`` support gradients and the ``K`` rate contributions, ``2 K |theta|`` numbers, (K5).)"""
    passes(method, K)
    return K if method in ("maml", "meta-sgd") else min(K, 2)


def flops(model, method, T, n, m, d, shape, K):
    """Floating-point operations of one call, all ``T`` tasks (K1): gradients at ``n`` support
    and ``m`` query examples at :meth:`gradient_flops`, Hessian-vector products at
    :meth:`hvp_flops` (``derivations/maml.md`` (M9) for a linear network, ``derivations/mlp.md``
    (N9) for a layered one), and for Meta-SGD the rate gradient's ``2 K |theta|`` (K5). ``model`` is
    a registered name or a :class:`refmaml.models.Model`; ``shape`` one task's parameter shape."""
    for value, name in ((T, "T"), (n, "n"), (m, "m"), (d, "d")):
        _validate.integer(value, name, 1)
    net = models.get(model).network
    counts = passes(method, K)
    size = math.prod(shape)
    support = K * net.gradient_flops(n, d, shape)
    query = 0 if method == "reptile" else net.gradient_flops(m, d, shape)
    hvps = counts["r_forward"] * net.hvp_flops(n, d, shape)
    rate = 2 * K * size if method in ("meta-sgd", "first-order meta-sgd") else 0
    return T * (support + query + hvps + rate)


def checkpointed_passes(K, every):
    """Passes and peak points of the checkpointed meta-gradient (K8): the forward sweep keeps
    ``theta_0, theta_s, theta_2s, ...`` (``ceil(K/s)`` iterates, ``s = every``); the reverse pass
    recomputes one segment of at most ``s`` points at a time, ``K`` more support gradients.
    Returns ``(passes, stored iterates, points held at once)``."""
    K, every = _validate.steps(K, "K"), _validate.integer(every, "every", 1, _validate.MAX_STEPS)
    gradients = 2 * K + 1
    counts = {"forward": gradients, "backward": gradients, "r_forward": K, "r_backward": K}
    return counts, -(-K // every), min(every, K)


def recomputed_passes(K):
    """Passes of the meta-gradient that stores no iterate (K9): step ``k``'s point is recomputed
    from ``theta_0`` by ``k`` steps, ``K + K(K + 1)/2`` support gradients in all, one point held."""
    K = _validate.steps(K, "K")
    gradients = K + K * (K + 1) // 2 + 1
    return {"forward": gradients, "backward": gradients, "r_forward": K, "r_backward": K}


def _step(p, theta, g, k):
    return theta - p.step_rate(k) * g


def checkpointed_primal(p, every):
    """Per-task losses ``(T,)`` and meta-gradients ``(T,) + P`` of :func:`refmaml.maml.primal`
    (``derivations/maml.md`` (M6), with the rates of ``derivations/variants.md`` (V2)), keeping
    every ``every``-th iterate and recomputing the points of one segment at a time (K8).
    ``p`` is a :class:`refmaml.problem.Problem`."""
    every = _validate.integer(every, "every", 1, _validate.MAX_STEPS)
    xp, model = p.xp, p.model
    theta = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))
    stored = {}
    for k in range(p.steps):
        if k % every == 0:
            stored[k] = theta
        theta = _step(p, theta, model.grad_hvp(theta, p.Xs, p.ys, p.l2)[0], k)  # the point is dropped
    maml.check_overflow(p, "theta_K", theta)
    losses, g = model.value_grad(theta, p.Xq, p.yq, 0.0)
    for start in sorted(stored, reverse=True):
        theta, points = stored.pop(start), []
        for k in range(start, min(start + every, p.steps)):  # the segment's points, held together
            points.append(model.grad_hvp(theta, p.Xs, p.ys, p.l2))
            theta = _step(p, theta, points[-1][0], k)
        for k in reversed(range(start, start + len(points))):
            g = g - points.pop()[1](p.step_rate(k) * g)
    return losses, g


def recomputed_primal(p):
    """Per-task losses and meta-gradients of :func:`refmaml.maml.primal` ((M6), (V2)) with no
    iterate stored: the point of step ``k`` is recomputed from ``theta_0`` (K9)."""
    xp, model = p.xp, p.model
    theta0 = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))

    def point(k):
        theta = theta0
        for j in range(k):
            theta = _step(p, theta, model.grad_hvp(theta, p.Xs, p.ys, p.l2)[0], j)
        return theta

    theta = point(p.steps)
    maml.check_overflow(p, "theta_K", theta)
    losses, g = model.value_grad(theta, p.Xq, p.yq, 0.0)
    for k in reversed(range(p.steps)):
        g = g - model.grad_hvp(point(k), p.Xs, p.ys, p.l2)[1](p.step_rate(k) * g)
    return losses, g
