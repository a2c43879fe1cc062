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

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import array_api_compat
from array_api_compat import device

from . import _validate, _xp, dual, models
from .models import _prepare

REDUCTIONS = ("mean", "sum", "none")
NO_RATE = object()  # for methods without an inner learning rate (implicit MAML)


@dataclass(frozen=True)
class _Problem:
    xp: object
    model: object
    theta: object  # (P...)
    Xs: object  # (T, n, d)
    ys: object  # (T, n)
    Xq: object  # (T, m, d) or None
    yq: object  # (T, m) or None
    rate: object  # inner_lr as given (validated, of the computation dtype), or None
    per_step: bool  # rate has a leading step axis
    steps: int
    l2: float
    batched: bool

    def step_rate(self, k):
        """The rate of inner step ``k``: 0-d or broadcastable against ``(T, P...)``."""
        return self.rate[k, ...] if self.per_step else self.rate


def _problem(theta, Xs, ys, Xq, yq, model, l2, *, inner_lr=NO_RATE, inner_steps=0):
    """Validate every argument of a MAML-family call, before any computation.

    ``inner_lr=NO_RATE`` for methods without an inner learning rate (implicit MAML).
    """
    model = models.get(model)
    arrays = {"theta": theta, "Xs": Xs, "ys": ys}
    if inner_lr is not NO_RATE:
        arrays["inner_lr"] = inner_lr
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
    steps = _validate.steps(inner_steps, "inner_steps")
    rate, per_step, weak_rate = None, False, True
    if inner_lr is not NO_RATE:
        rate, per_step, weak_rate = _validate.rates(xp, device, inner_lr, tuple(theta.shape), steps)
    l2 = _validate.l2(l2)
    dtype = _validate.compute_dtype(xp, theta, Xs, *(() if Xq is None else (Xq,)),
                                    *(() if weak_rate else (rate,)))
    if rate is not None and _xp.is_complex(xp, rate):
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
        None if rate is None else _validate.cast(xp, rate, dtype), per_step, steps, l2, batched,
    )


def _inner_loop(p, keep=()):
    """Run ``theta_{k+1} = theta_k - alpha_k * grad L_s(theta_k)``: ``derivations/maml.md`` (M2),
    with the rates of ``derivations/variants.md`` (V1).

    ``keep`` names what to remember per step: ``"iterates"`` (theta_0..theta_K),
    ``"states"`` (the model's curvature data at theta_0..theta_{K-1}, what the
    reverse pass needs), ``"grads"`` (grad L_s(theta_0..theta_{K-1}), what the
    rate gradient needs).  Returns ``(theta_K (T, P...), {name: list})``.
    """
    xp = p.xp
    theta = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))
    kept = {name: [] for name in keep}
    if "iterates" in kept:
        kept["iterates"].append(theta)
    for k in range(p.steps):
        g, state = p.model._grad_state(theta, p.Xs, p.ys, p.l2)
        theta = theta - p.step_rate(k) * g
        for name, value in (("iterates", theta), ("states", state), ("grads", g)):
            if name in kept:
                kept[name].append(value)
    return theta, kept


def _describe_rate(p):
    xp = p.xp
    if p.rate.ndim:
        return f"inner_lr of shape {tuple(p.rate.shape)}"
    value = complex(p.rate) if _xp.is_complex(xp, p.rate) else float(p.rate)
    return f"inner_lr={value}"


def _require_finite(p, what, *arrays):
    """One device-to-host read of a flag: are all ``arrays`` finite?"""
    if not _xp.all_finite(p.xp, *arrays):
        raise ValueError(
            f"the inner loop overflowed: {what} is not finite after {p.steps} steps "
            f"with {_describe_rate(p)}; use a smaller inner_lr or fewer inner_steps"
        )


def _sum_to(xp, c, body):
    """Sum per-task, per-parameter ``c (T, P...)`` down to ``(T,) + body``, where ``body`` is
    the shape that was broadcast against ``P``: over the leading parameter axes it lacks and the
    axes where it has length 1 (``derivations/variants.md`` (V4))."""
    lead = c.ndim - 1 - len(body)
    if lead:
        c = xp.sum(c, axis=tuple(range(1, 1 + lead)))
    axes = tuple(1 + i for i, s in enumerate(body) if s == 1 and c.shape[1 + i] != 1)
    return xp.sum(c, axis=axes, keepdims=True) if axes else c


def adapt(theta, Xs, ys, *, inner_lr, inner_steps, model="logistic", l2=0.0,
          return_trajectory=False):
    """Adapted parameters after ``inner_steps`` gradient steps on each task's support loss.

    ``derivations/maml.md`` (M2): ``theta_{k+1} = theta_k - inner_lr * grad L_s(theta_k)``,
    ``k = 0..K-1``, with ``L_s`` the model's loss on ``(Xs, ys)`` including ``l2``.
    ``inner_lr`` may be an array of rates, per parameter and/or per step
    (``derivations/variants.md`` (V1)): an array of at most ``theta.ndim`` axes
    broadcasts against ``theta`` at every step; one of ``theta.ndim + 1`` axes has
    one row per step (length ``inner_steps``).

    ``model`` is ``"logistic"`` (``theta (d,)``) or ``"softmax"`` (``theta (d, C)``).

    Returns ``theta_K``: ``theta``'s shape ``P`` for one task, ``(T,) + P`` for
    a stack.  With ``return_trajectory=True``, every iterate
    ``theta_0..theta_K`` stacked on a new leading axis: ``(K + 1,) + P`` or
    ``(K + 1, T) + P``.
    """
    if not isinstance(return_trajectory, bool):
        raise TypeError(f"return_trajectory must be True or False; got {return_trajectory!r}")
    p = _problem(theta, Xs, ys, None, None, model, l2, inner_lr=inner_lr, inner_steps=inner_steps)
    xp = p.xp
    with _xp.quiet_overflow():
        theta_K, kept = _inner_loop(p, ("iterates",) if return_trajectory else ())
    _require_finite(p, "theta_K", theta_K)
    if return_trajectory:
        out = xp.stack(kept["iterates"], axis=0)
        return out if p.batched else out[:, 0, ...]
    if p.steps == 0:  # theta_K is a broadcast view of the input: hand back a copy
        theta_K = xp.asarray(theta_K, copy=True)
    return theta_K if p.batched else theta_K[0, ...]


def _reduce(p, reduction, per_task):
    """``(T, ...)`` per-task results -> mean, sum, or (for one task) the task's own."""
    xp = p.xp
    if reduction == "none":
        return per_task if p.batched else per_task[0, ...]
    return (xp.mean if reduction == "mean" else xp.sum)(per_task, axis=0)


def meta_value_and_grad(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, model="logistic",
                        l2=0.0, first_order=False, reduction="mean", lr_grad=False, form="auto"):
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
    ``model`` is ``"logistic"`` (``theta (d,)``, labels 0/1) or ``"softmax"``
    (``theta (d, C)``, integer labels in ``[0, C)``).

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

    ``form``: ``"primal"`` computes in the ``d``-dimensional parameter space as above;
    ``"dual"`` in the ``n``-dimensional space of the support examples with Gram
    matrices (``derivations/dual.md`` (G1)-(G7)), the same numbers to rounding;
    ``"auto"`` (default) takes the cheaper by the cost formulas (G8). The dual form
    takes rates that are one number per step, or one per feature with ``l2=0``.
    On NumPy, calls of more than ``THREAD_FLOPS`` operations share their tasks
    among threads, one per core; each task is computed as in one call, so the
    result is the same to the bit.

    Returns ``(meta_loss, meta_grad)``, or ``(meta_loss, meta_grad, inner_lr_grad)``
    with ``lr_grad=True``: arrays of the inputs' namespace and device.
    """
    for name, flag in (("first_order", first_order), ("lr_grad", lr_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    reduction = _validate.choice(reduction, "reduction", REDUCTIONS)
    form = _validate.choice(form, "form", dual.FORMS)
    p = _problem(theta, Xs, ys, Xq, yq, model, l2, inner_lr=inner_lr, inner_steps=inner_steps)
    chosen = dual.choose(p, form, lr_grad=lr_grad)
    compute = dual.value_and_grad if chosen == "dual" else _primal

    def run(part):
        with _xp.quiet_overflow():
            return compute(part, first_order=first_order, lr_grad=lr_grad)

    losses, g, rates = _by_task_groups(p, run, chosen, lr_grad)
    _require_finite(p, "the adapted parameters or the query loss", losses, g)
    out = (_reduce(p, reduction, losses), _reduce(p, reduction, g))
    return out + (_reduce(p, reduction, rates),) if lr_grad else out


# A NumPy call with at least this many floating-point operations (G8) runs its tasks in groups,
# one thread per core: stacked matrix products per task run on one core in OpenBLAS, and threads
# that each take a share of the tasks use the others. Measured on 2 cores (benchmarks/README.md,
# "Thread use"): 1.3 to 2x faster from about 1.5e8 flops up, no gain or a loss below.
THREAD_FLOPS = 1.5e8
MAX_THREADS = 8  # measured with 2; more threads contend for the GIL between short operations


def _by_task_groups(p, run, form, lr_grad):
    """``run(p)``, or on NumPy for large calls ``run`` on groups of tasks in threads, the per-task
    results joined in task order. Every task is computed exactly as in one call, so the result is
    bit for bit the same."""
    xp = p.xp
    T = p.Xs.shape[0]
    workers = min(os.cpu_count() or 1, MAX_THREADS, T)
    primal, dual_cost = dual.costs(p, lr_grad=lr_grad)
    flops = T * (dual_cost if form == "dual" else primal)
    if workers < 2 or flops < THREAD_FLOPS or not array_api_compat.is_numpy_namespace(xp):
        return run(p)
    edges = [T * k // workers for k in range(workers + 1)]
    parts = [replace(p, Xs=p.Xs[a:b, ...], ys=p.ys[a:b, ...], Xq=p.Xq[a:b, ...], yq=p.yq[a:b, ...])
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    others = [_pool().submit(run, part) for part in parts[1:]]
    results = [run(parts[0])] + [f.result() for f in others]
    return tuple(None if r[0] is None else xp.concat(r, axis=0) for r in zip(*results, strict=True))


_POOL = []
_POOL_LOCK = threading.Lock()


def _pool():
    """One process-wide pool of (cores - 1) worker threads, made on first use; the calling thread
    takes the first group of tasks itself."""
    with _POOL_LOCK:
        if not _POOL:
            workers = max(1, min(os.cpu_count() or 2, MAX_THREADS) - 1)
            _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="refmaml"))
        return _POOL[0]


def _primal(p, *, first_order, lr_grad):
    """Per-task losses, meta-gradients (M6), (V2) and rate gradients (V3)-(V5) in parameter space."""
    model = p.model
    keep = (() if first_order else ("states",)) + (("grads",) if lr_grad else ())
    theta_K, kept = _inner_loop(p, keep)
    losses, g = model._value_grad(theta_K, p.Xq, p.yq, 0.0)
    g_K, rate_grads = g, []
    for k in reversed(range(p.steps)):
        adjoint = g_K if first_order else g
        if lr_grad:
            rate_grads.append(-adjoint * kept["grads"][k])
        if not first_order:
            g = g - model._hvp_state(kept["states"][k], p.Xs, p.step_rate(k) * g, p.l2)
    rates = _rate_gradient(p, rate_grads[::-1], losses.shape[0]) if lr_grad else None
    return losses, g, rates


def _rate_gradient(p, contributions, T):
    """Per-task gradient with respect to ``inner_lr``, ``(T,) + inner_lr.shape`` (V3), (V4).

    ``contributions[k]`` is step ``k``'s ``-g_{k+1} * grad L_s(theta_k)``, ``(T, P...)``.
    """
    xp = p.xp
    body = tuple(p.rate.shape[1:]) if p.per_step else tuple(p.rate.shape)
    summed = [_sum_to(xp, c, body) for c in contributions]
    if summed and p.per_step:
        return xp.stack(summed, axis=1)
    total = xp.zeros((T,) + tuple(p.rate.shape), dtype=p.theta.dtype, device=device(p.theta))
    for c in summed:
        total = total + c
    return total
