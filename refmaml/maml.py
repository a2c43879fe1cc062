"""MAML: inner-loop adaptation and the exact meta-gradient by reverse accumulation.

Equations are in ``derivations/maml.md``.  Nothing here is specific to a
model: the model module supplies ``_grad_state`` (gradient plus whatever its
Hessian-vector product needs), ``_value_grad`` (loss and gradient together)
and ``_hvp_state``.

Shapes: ``theta`` is one task's parameters, ``P = (d,)`` for the logistic
model and ``(d, C)`` for the softmax model;
``Xs (T, n, d)``, ``ys (T, n)``, ``Xq (T, m, d)``, ``yq (T, m)`` for a stack of
``T`` tasks, or the same without the leading axis for one task.  All tasks
are processed together by batched array operations.
"""

from dataclasses import dataclass

from . import _validate, _xp, models
from .models import _prepare

REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class _Problem:
    xp: object
    model: object
    theta: object  # (P...)
    Xs: object  # (T, n, d)
    ys: object  # (T, n)
    Xq: object  # (T, m, d) or None
    yq: object  # (T, m) or None
    rate: object  # 0-d array of the computation dtype
    steps: int
    l2: float
    batched: bool


def _problem(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, model, l2):
    """Validate every argument of a MAML call, before any computation."""
    model = models.get(model)
    arrays = {"theta": theta, "Xs": Xs, "ys": ys, "inner_lr": inner_lr}
    if Xq is not None:
        arrays.update(Xq=Xq, yq=yq)
    xp, device = _xp.namespace(**arrays)
    Xs = _prepare.features(xp, device, Xs, "Xs")
    theta = _prepare.parameters(xp, device, model, theta, Xs, "theta", "Xs", allow_task_axis=False)
    if Xq is not None:
        Xq = _prepare.features(xp, device, Xq, "Xq")
        if Xq.ndim != Xs.ndim:
            raise ValueError(
                f"Xs has shape {tuple(Xs.shape)} but Xq has shape {tuple(Xq.shape)}; "
                "both must be one task (2-D) or both a stack of tasks (3-D)"
            )
        if Xq.shape[-1] != Xs.shape[-1] or Xq.shape[:-2] != Xs.shape[:-2]:
            raise ValueError(
                f"Xq has shape {tuple(Xq.shape)} but Xs has shape {tuple(Xs.shape)}; "
                "they must agree in the number of tasks and of features"
            )
    rate, weak_rate = _validate.scalar_rate(xp, device, inner_lr, "inner_lr")
    steps = _validate.steps(inner_steps, "inner_steps")
    l2 = _validate.l2(l2)
    dtype = _validate.compute_dtype(xp, theta, Xs, *(() if Xq is None else (Xq,)),
                                    *(() if weak_rate else (rate,)))
    if _xp.is_complex(xp, rate):
        dtype = _xp.complex_dtype_of(xp, dtype)
    real = _xp.real_dtype_of(xp, dtype)
    ys = model.labels(xp, device, ys, Xs, theta.shape, real, "ys")
    if Xq is not None:
        yq = model.labels(xp, device, yq, Xq, theta.shape, real, "yq")
    batched = Xs.ndim == 3

    def stack(a):
        a = _validate.real_cast(xp, a, dtype)
        return a if batched else xp.expand_dims(a, axis=0)

    return _Problem(
        xp, model, _validate.cast(xp, theta, dtype), stack(Xs), stack(ys),
        None if Xq is None else stack(Xq), None if yq is None else stack(yq),
        _validate.cast(xp, rate, dtype), steps, l2, batched,
    )


def _inner_loop(p, keep):
    """Run ``theta_{k+1} = theta_k - alpha grad L_s(theta_k)``: ``derivations/maml.md`` (M2).

    ``keep`` is ``"states"`` (what the reverse pass needs: the model's
    curvature data at theta_0..theta_{K-1}), ``"iterates"`` (theta_0..theta_K)
    or ``None``.  Returns ``(theta_K (T, P...), kept list)``.
    """
    xp = p.xp
    theta = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))
    kept = [theta] if keep == "iterates" else []
    for _ in range(p.steps):
        g, state = p.model._grad_state(theta, p.Xs, p.ys, p.l2)
        theta = theta - p.rate * g
        if keep is not None:
            kept.append(theta if keep == "iterates" else state)
    return theta, kept


def _require_finite(p, what, *arrays):
    """One device-to-host read of a flag: are all ``arrays`` finite?"""
    xp = p.xp
    finite = xp.all(xp.isfinite(arrays[0]))
    for a in arrays[1:]:
        finite = finite & xp.all(xp.isfinite(a))
    if not bool(finite):
        raise ValueError(
            f"the inner loop overflowed: {what} is not finite after {p.steps} steps "
            f"with inner_lr={complex(p.rate) if _xp.is_complex(xp, p.rate) else float(p.rate)}; "
            "use a smaller inner_lr or fewer inner_steps"
        )


def adapt(theta, Xs, ys, *, inner_lr, inner_steps, model="logistic", l2=0.0,
          return_trajectory=False):
    """Adapted parameters after ``inner_steps`` gradient steps on each task's support loss.

    ``derivations/maml.md`` (M2): ``theta_{k+1} = theta_k - inner_lr * grad L_s(theta_k)``,
    ``k = 0..K-1``, with ``L_s`` the model's loss on ``(Xs, ys)`` including ``l2``.

    ``model`` is ``"logistic"`` (``theta (d,)``) or ``"softmax"`` (``theta (d, C)``).

    Returns ``theta_K``: ``theta``'s shape ``P`` for one task, ``(T,) + P`` for
    a stack.  With ``return_trajectory=True``, every iterate
    ``theta_0..theta_K`` stacked on a new leading axis: ``(K + 1,) + P`` or
    ``(K + 1, T) + P``.
    """
    if not isinstance(return_trajectory, bool):
        raise TypeError(f"return_trajectory must be True or False; got {return_trajectory!r}")
    p = _problem(theta, Xs, ys, None, None, inner_lr, inner_steps, model, l2)
    xp = p.xp
    with _xp.quiet_overflow():
        theta_K, iterates = _inner_loop(p, "iterates" if return_trajectory else None)
    _require_finite(p, "theta_K", theta_K)
    if return_trajectory:
        out = xp.stack(iterates, axis=0)
        return out if p.batched else out[:, 0, ...]
    if p.steps == 0:  # theta_K is a broadcast view of the input: hand back a copy
        theta_K = xp.asarray(theta_K, copy=True)
    return theta_K if p.batched else theta_K[0, ...]


def meta_value_and_grad(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, model="logistic",
                        l2=0.0, first_order=False, reduction="mean"):
    """MAML meta-loss and its exact gradient with respect to ``theta``.

    Meta-loss (``derivations/maml.md`` (M3)): the unregularised query loss
    ``L_q(theta_K)`` of each task after :func:`adapt`, reduced over tasks.

    Meta-gradient (M6), by reverse accumulation with Hessian-vector products
    (never a Hessian): ``g_K = grad L_q(theta_K)``, then
    ``g_k = g_{k+1} - inner_lr * H_s(theta_k) g_{k+1}`` for ``k = K-1..0``;
    the answer is ``g_0``.  Cost (M9): ``K`` support gradients, ``K``
    Hessian-vector products and one query gradient per task, about ``2K + 1``
    gradient evaluations, with ``O(K n)`` memory for the curvature weights
    (``O(K n C)`` for the softmax model's probabilities).
    ``first_order=True`` drops the Hessian terms (M8) and returns ``g_K``.
    ``model`` is ``"logistic"`` (``theta (d,)``, labels 0/1) or ``"softmax"``
    (``theta (d, C)``, integer labels in ``[0, C)``).

    ``reduction``: ``"mean"`` or ``"sum"`` over tasks gives a 0-d loss and a
    gradient of ``theta``'s shape; ``"none"`` gives per-task losses ``(T,)``
    and gradients ``(T,) + theta.shape`` (no task axis for one task).
    ``l2`` enters the support loss only (M1).

    Returns ``(meta_loss, meta_grad)``, arrays of the inputs' namespace and device.
    """
    if not isinstance(first_order, bool):
        raise TypeError(f"first_order must be True or False; got {first_order!r}")
    reduction = _validate.choice(reduction, "reduction", REDUCTIONS)
    p = _problem(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, model, l2)
    xp, model = p.xp, p.model
    with _xp.quiet_overflow():
        theta_K, states = _inner_loop(p, None if first_order else "states")
        losses, g = model._value_grad(theta_K, p.Xq, p.yq, 0.0)
        for state in reversed(states):
            g = g - p.rate * model._hvp_state(state, p.Xs, g, p.l2)
    _require_finite(p, "the adapted parameters or the query loss", theta_K, losses, g)
    if reduction == "none":
        return (losses, g) if p.batched else (losses[0], g[0, ...])
    reduce = xp.mean if reduction == "mean" else xp.sum
    return reduce(losses), reduce(g, axis=0)
