"""MAML: inner-loop adaptation and the exact meta-gradient by reverse accumulation.

Equations are in ``derivations/maml.md``.  Nothing here is specific to a model: the model
protocol (README, "Architecture") supplies ``grad_hvp`` (the gradient and a function that gives
Hessian-vector products at the same point) and ``value_grad`` (loss and gradient together);
:mod:`refmaml.problem` validates every call, and :mod:`refmaml.policy` chooses the form and
shares large calls among threads.

Shapes: ``theta`` is one task's parameters ``P`` (``(d,)`` for the logistic and linear models,
``(d, C)`` for the softmax model, ``(model.size,)`` for a network); ``Xs (T, n, d)``,
``ys (T, n)``, ``Xq (T, m, d)``, ``yq (T, m)`` for a stack of ``T`` tasks, or the same without the
leading axis for one task.  All tasks are processed together by batched array operations.
"""

from array_api_compat import device

from . import _validate, _xp, dual, models, policy, problem

REDUCTIONS = ("mean", "sum", "none")


def inner_loop(p, keep=()):
    """Run ``theta_{k+1} = theta_k - alpha_k * grad L_s(theta_k)``: ``derivations/maml.md`` (M2),
    with the rates of ``derivations/variants.md`` (V1).

    ``keep`` names what to remember per step: ``"iterates"`` (theta_0..theta_K),
    ``"hvps"`` (the model's Hessian-vector products at theta_0..theta_{K-1}, what the
    reverse pass needs), ``"grads"`` (grad L_s(theta_0..theta_{K-1}), what the
    rate gradient needs).  Returns ``(theta_K (T, P...), {name: list})``.
    """
    xp = p.xp
    theta = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))
    kept = {name: [] for name in keep}
    # theta_k for k >= 1 is this loop's own array; it is updated in place unless something keeps it:
    # the iterates, or the Hessian-vector products, which may hold views of it (the ownership rules
    # of refmaml.models.protocol). theta_0 is the caller's (broadcast) array.
    in_place = "iterates" not in kept and "hvps" not in kept
    if "iterates" in kept:
        kept["iterates"].append(theta)
    for k in range(p.steps):
        g, hvp = p.model.grad_hvp(theta, p.Xs, p.ys, p.l2)
        if "grads" in kept:
            kept["grads"].append(g)
            step = p.step_rate(k) * g
        else:  # g is the model's fresh array and nothing else holds it: scale it in place
            g *= p.step_rate(k)
            step = g
        if k == 0 or not in_place:
            theta = theta - step
        else:
            theta -= step
        for name, value in (("iterates", theta), ("hvps", hvp)):
            if name in kept:
                kept[name].append(value)
    return theta, kept


def _describe_rate(p):
    xp = p.xp
    rate = p.rate if p.user_rate is None else p.user_rate
    if rate.ndim:
        return f"inner_lr of shape {tuple(rate.shape)}"
    value = complex(rate) if _xp.is_complex(xp, rate) else float(rate)
    return f"inner_lr={value}"


def check_overflow(p, what, *arrays):
    """Are all ``arrays`` finite? If not, the inner loop overflowed, a ValueError that says so
    (``derivations/range.md`` (R4)). A check of device values (:func:`refmaml._validate.require`):
    inside a deferred scope, read with the call's other checks when it ends."""
    _validate.require(_xp.finite_flag(p.xp, *arrays), lambda: ValueError(
        f"the inner loop overflowed: {what} is not finite after {p.steps} steps "
        f"with {_describe_rate(p)}; use a smaller inner_lr or fewer inner_steps"))


def sum_to_rate(xp, c, body):
    """Sum per-task, per-parameter ``c (T, P...)`` down to ``(T,) + body``, where ``body`` is
    the shape of a rate that was broadcast against ``P``: over the leading parameter axes it lacks
    and the axes where it has length 1 (``derivations/variants.md`` (V4)). The one reduction of a
    rate gradient: the reverse pass, ``refmaml explain`` and the oracle's answers use it."""
    lead = c.ndim - 1 - len(body)
    if lead:
        c = xp.sum(c, axis=tuple(range(1, 1 + lead)))
    axes = tuple(1 + i for i, s in enumerate(body) if s == 1 and c.shape[1 + i] != 1)
    return xp.sum(c, axis=axes, keepdims=True) if axes else c


def adapt(theta, Xs, ys, *, inner_lr, inner_steps, model="logistic", l2=0.0, inner_mask=None,
          return_trajectory=False):
    """Adapted parameters after ``inner_steps`` gradient steps on each task's support loss.

    ``derivations/maml.md`` (M2): ``theta_{k+1} = theta_k - inner_lr * grad L_s(theta_k)``,
    ``k = 0..K-1``, with ``L_s`` the model's loss on ``(Xs, ys)`` including ``l2``.
    ``inner_lr`` may be an array of rates, per parameter and/or per step
    (``derivations/variants.md`` (V1)): an array of at most ``theta.ndim`` axes
    broadcasts against ``theta`` at every step; one of ``theta.ndim + 1`` axes has
    one row per step (length ``inner_steps``).

    ``model`` is ``"logistic"`` or ``"linear"`` (``theta (d,)``), ``"softmax"`` (``theta (d, C)``)
    or a :class:`refmaml.models.Model` object.

    ``inner_mask``: None (every parameter adapts) or a boolean array of ``theta``'s shape; the
    inner loop then adapts only the parameters where it is True (M10): each step is
    ``theta_{k+1} = theta_k - inner_lr * mask * grad L_s(theta_k)`` (``Sequential.mask(-1)``
    adapts the last layer only, as ANIL).

    Returns ``theta_K``: ``theta``'s shape ``P`` for one task, ``(T,) + P`` for
    a stack.  With ``return_trajectory=True``, every iterate
    ``theta_0..theta_K`` stacked on a new leading axis: ``(K + 1,) + P`` or
    ``(K + 1, T) + P``.
    """
    problem.flag(return_trajectory, "return_trajectory")
    with _validate.deferred():  # on a device, every check is read once, here at its end
        p = problem.meta(models.get(model), theta, Xs, ys, l2=l2, inner_lr=inner_lr, inner_steps=inner_steps,
                         inner_mask=inner_mask)
        with _xp.quiet_overflow():
            theta_K, kept = inner_loop(p, ("iterates",) if return_trajectory else ())
        check_overflow(p, "theta_K", theta_K)
    xp = p.xp
    if return_trajectory:
        out = xp.stack(kept["iterates"], axis=0)
        return out if p.batched else out[:, 0, ...]
    if p.steps == 0:  # theta_K is a broadcast view of the input: hand back a copy
        theta_K = xp.asarray(theta_K, copy=True)
    return theta_K if p.batched else theta_K[0, ...]


def _reduce(p, reduction, per_task):
    """``(T, ...)`` per-task results -> mean, sum, or (for one task) the task's own; always an
    array of the inputs' namespace (a 0-d array for a reduced loss, never a NumPy scalar)."""
    xp = p.xp
    if reduction == "none":
        return per_task if p.batched else per_task[0, ...]
    return xp.asarray((xp.mean if reduction == "mean" else xp.sum)(per_task, axis=0))


def meta_value_and_grad(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, model="logistic",
                        l2=0.0, inner_mask=None, first_order=False, reduction="mean", lr_grad=False,
                        form="auto"):
    """MAML meta-loss and its exact gradient with respect to ``theta`` (and ``inner_lr``).

    Meta-loss (``derivations/maml.md`` (M3)): the unregularised query loss
    ``L_q(theta_K)`` of each task after :func:`adapt`, reduced over tasks.

    Meta-gradient (M6), by reverse accumulation with Hessian-vector products
    (never a Hessian): ``g_K = grad L_q(theta_K)``, then
    ``g_k = g_{k+1} - H_s(theta_k) (alpha_k * g_{k+1})`` for ``k = K-1..0``
    (``derivations/variants.md`` (V2); for a scalar rate this is (M6));
    the answer is ``g_0``.  Cost (M9): ``K`` support gradients, ``K``
    Hessian-vector products and one query gradient per task, about ``2K + 1``
    gradient evaluations, with ``O(K n)`` memory for the curvature weights
    (``O(K n C)`` for the softmax model's probabilities).
    ``first_order=True`` drops the Hessian terms (M8) and returns ``g_K``.
    ``model`` is ``"logistic"`` (``theta (d,)``, labels 0/1), ``"softmax"``
    (``theta (d, C)``, integer labels in ``[0, C)``), ``"linear"`` (``theta (d,)``,
    real targets) or a :class:`refmaml.models.Model` object.

    ``inner_lr``: a scalar, or learned rates as in :func:`adapt` (V1).  With
    ``lr_grad=True`` the gradient with respect to ``inner_lr`` comes from the
    same reverse pass: step ``k``'s rate receives ``-g_{k+1} * grad L_s(theta_k)``,
    summed over the axes it was broadcast along (V3), (V4); with
    ``first_order=True`` also, ``-g_K * grad L_s(theta_k)`` (V5).  It has
    ``inner_lr``'s shape (0-d for a scalar rate); ``O(K P)`` more memory.

    ``reduction``: ``"mean"`` or ``"sum"`` over tasks gives a 0-d loss and a
    gradient of ``theta``'s shape; ``"none"`` gives per-task losses ``(T,)``
    and gradients ``(T,) + theta.shape`` (and rate gradients ``(T,) +
    inner_lr.shape``; no task axis for one task).
    ``l2`` enters the support loss only (M1).

    ``inner_mask`` (None, or a boolean array of ``theta``'s shape): the inner loop adapts only
    the masked parameters, as in :func:`adapt`; the others move only in the outer loop. The
    meta-gradient is exact for every parameter, masked or not: the mask is a rate of zero for
    the parameters it leaves out, so the reverse pass is (V2) with the rates times the mask
    (M10), and the rate gradient is that of the rates as given, summed over the masked
    parameters. ``first_order=True`` returns ``g_K`` for every parameter.

    ``form``: ``"primal"`` computes in the ``d``-dimensional parameter space as above;
    ``"dual"`` in the ``n``-dimensional space of the support examples with Gram
    matrices (``derivations/dual.md`` (G1)-(G7)), the same numbers to rounding;
    ``"auto"`` (default) takes the cheaper by the cost formulas (G8). The dual form
    takes rates that are one number per step, or one per feature with ``l2=0``, and
    linear networks only. On NumPy, medium and large calls share the cores
    (``refmaml.policy.sharing``): the dual form's independent products in two threads, or the
    tasks in groups, one thread per core; every product is computed as in one thread, so the
    result is the same to the bit.

    Returns ``(meta_loss, meta_grad)``, or ``(meta_loss, meta_grad, inner_lr_grad)``
    with ``lr_grad=True``: arrays of the inputs' namespace and device.
    """
    problem.flag(first_order, "first_order")
    problem.flag(lr_grad, "lr_grad")
    reduction = _validate.choice(reduction, "reduction", REDUCTIONS)
    form = _validate.choice(form, "form", policy.FORMS)

    def compute(part, chosen, pairs):
        with _xp.quiet_overflow():
            if chosen == "dual":
                return dual.value_and_grad(part, first_order=first_order, lr_grad=lr_grad, pairs=pairs)
            return primal(part, first_order=first_order, lr_grad=lr_grad)

    with _validate.deferred():  # on a device, every check is read once, here at its end
        with policy.validating(Xs, Xq) as finite:
            p = problem.meta(models.get(model), theta, Xs, ys, Xq, yq, l2=l2, inner_lr=inner_lr,
                             inner_steps=inner_steps, inner_mask=inner_mask, finite=finite)
        losses, g, rates = policy.run(p, form, lr_grad=lr_grad, compute=compute)
        check_overflow(p, "the adapted parameters or the query loss", losses, g)
    if lr_grad and p.mask is not None:
        rates = masked_rate_gradient(p, rates)
    out = (_reduce(p, reduction, losses), _reduce(p, reduction, g))
    return out + (_reduce(p, reduction, rates),) if lr_grad else out


def primal(p, *, first_order, lr_grad):
    """Per-task losses ``(T,)``, meta-gradients ``(T,) + P`` (M6), (V2) and rate gradients (V3)-(V5)
    in parameter space: the reverse pass, for any model."""
    model = p.model
    keep = (() if first_order else ("hvps",)) + (("grads",) if lr_grad else ())
    theta_K, kept = inner_loop(p, keep)
    losses, g = model.value_grad(theta_K, p.Xq, p.yq, 0.0)
    g_K, rate_grads = g, []
    for k in reversed(range(p.steps)):
        adjoint = g_K if first_order else g
        if lr_grad:
            rate_grads.append(-adjoint * kept["grads"][k])
        if not first_order:  # g is this pass's own array (the query gradient's, then updated here)
            g -= kept["hvps"][k](p.step_rate(k) * g)
    rates = _rate_gradient(p, rate_grads[::-1], losses.shape[0]) if lr_grad else None
    return losses, g, rates


def masked_rate_gradient(p, G):
    """The gradient with respect to the rates as the caller gave them, ``(T,) + inner_lr.shape``,
    from ``G``, that with respect to the masked rates ``inner_lr * mask`` (M10): the chain rule
    through the product is ``G * mask``, summed over the axes the given rates were broadcast
    along (V4)."""
    xp = p.xp
    m = xp.astype(p.mask, G.dtype)
    if not p.per_step:
        return sum_to_rate(xp, G * m, tuple(p.user_rate.shape))
    body = tuple(p.user_rate.shape[1:])
    if p.steps == 0:
        return xp.zeros((G.shape[0],) + tuple(p.user_rate.shape), dtype=G.dtype, device=device(G))
    return xp.stack([sum_to_rate(xp, G[:, k, ...] * m, body) for k in range(p.steps)], axis=1)


def _rate_gradient(p, contributions, T):
    """Per-task gradient with respect to ``inner_lr``, ``(T,) + inner_lr.shape`` (V3), (V4).

    ``contributions[k]`` is step ``k``'s ``-g_{k+1} * grad L_s(theta_k)``, ``(T, P...)``.
    """
    xp = p.xp
    body = tuple(p.rate.shape[1:]) if p.per_step else tuple(p.rate.shape)
    summed = [sum_to_rate(xp, c, body) for c in contributions]
    if summed and p.per_step:
        return xp.stack(summed, axis=1)
    total = xp.zeros((T,) + tuple(p.rate.shape), dtype=p.theta.dtype, device=device(p.theta))
    for c in summed:
        total = total + c
    return total
