"""Validation and batching shared by the public functions of every model.

A model module provides ``PARAM_NDIM`` (rank of one task's parameters:
1 for ``(d,)``, 2 for ``(d, C)``), ``check_parameters(theta, name)``, which
refuses parameter shapes the model cannot use beyond rank and feature count,
and ``labels(xp, device, y, X, theta_shape, dtype, name)``, which checks the
labels against the features and parameters and converts them to the form
the model computes with (of ``dtype``).
The functions here do the rest: they take the namespace from the inputs,
apply the dtype rules, check ranks and shapes, and give every array a leading
task axis so that the model's private functions see one layout only.
"""

from dataclasses import dataclass

from .. import _validate, _xp


@dataclass(frozen=True)
class Task:
    """Validated inputs with a leading task axis.

    ``theta`` is ``(P...)`` (shared by the tasks) or ``(T, P...)``; ``X`` is
    ``(T, n, d)``; ``y`` is ``(T, n)``; ``batched`` says whether the caller
    passed a task axis (results drop it when not).
    """

    theta: object
    X: object
    y: object
    l2: float
    batched: bool

    def unbatch(self, result):
        """Drop the task axis of ``result`` when the caller passed one task."""
        return result if self.batched else result[0, ...]

    def finish(self, compute, what):
        """``compute()`` with overflow warnings silenced, then checked: a non-finite result (logits
        or ``l2 ||theta||^2`` beyond the float range) is a ValueError; else :meth:`unbatch`."""
        with _xp.quiet_overflow():
            result = compute()
        if not _xp.all_finite(_xp.array_namespace(result), result):
            raise ValueError(f"{what} overflows the floating-point range: theta, X or l2 is too large "
                             "(see derivations/range.md)")
        return self.unbatch(result)


def features(xp, device, X, name):
    """Feature array: 2-D ``(n, d)`` for one task or 3-D ``(T, n, d)`` for a stack."""
    X = _validate.floating(xp, device, X, name, ndims=(2, 3))
    axes = {-2: "example (row)", -1: "feature (column)"}
    if X.ndim == 3:
        axes[0] = "task"
    _validate.nonempty(X, name, axes)
    return X


def parameters(xp, device, model, theta, X, name, X_name, *, allow_task_axis):
    """Parameters whose feature axis matches ``X``; with ``allow_task_axis`` one set per task."""
    ranks = (model.PARAM_NDIM, model.PARAM_NDIM + 1) if allow_task_axis else (model.PARAM_NDIM,)
    theta = _validate.floating(xp, device, theta, name, allow_complex=True, ndims=ranks)
    d = X.shape[-1]
    if theta.shape[theta.ndim - model.PARAM_NDIM] != d:
        raise ValueError(
            f"{name} has shape {tuple(theta.shape)} but {X_name} has {d} features "
            f"(shape {tuple(X.shape)}); the feature axes must match"
        )
    model.check_parameters(theta, name)
    if theta.ndim == model.PARAM_NDIM + 1:
        if X.ndim != 3:
            raise ValueError(
                f"{name} has a task axis (shape {tuple(theta.shape)}) but {X_name} is one task "
                f"(shape {tuple(X.shape)}); give {X_name} a task axis too"
            )
        if theta.shape[0] != X.shape[0]:
            raise ValueError(
                f"{name} holds {theta.shape[0]} tasks but {X_name} holds {X.shape[0]}"
            )
    return theta


def task(model, theta, X, y, l2=0.0, **extra):
    """Validate one model call; returns a :class:`Task` and the converted ``extra`` arrays.

    ``y=None`` for calls without labels (prediction).  ``extra`` holds further
    parameter-shaped arrays by name (the HVP's ``v``), each of ``theta``'s
    shape or, for a stack of tasks, of shape ``(T,) + P``.
    """
    xp, device = _xp.namespace(theta=theta, X=X, y=y, **extra)
    X = features(xp, device, X, "X")
    theta = parameters(xp, device, model, theta, X, "theta", "X", allow_task_axis=True)
    l2 = _validate.l2(l2)
    per_task = tuple(theta.shape[-model.PARAM_NDIM:])
    shapes = [tuple(theta.shape)] + ([(X.shape[0],) + per_task] if X.ndim == 3 else [])
    for name, v in extra.items():
        v = _validate.floating(xp, device, v, name, allow_complex=True)
        if tuple(v.shape) not in shapes:
            raise ValueError(f"{name} has shape {tuple(v.shape)}; expected "
                             + " or ".join(str(s) for s in shapes))
        extra[name] = v
    dtype = _validate.compute_dtype(xp, theta, X, *extra.values())
    if y is not None:
        y = model.labels(xp, device, y, X, theta.shape, _xp.real_dtype_of(xp, dtype), "y")
    batched = X.ndim == 3

    def stack(a):
        return a if batched else xp.expand_dims(a, axis=0)

    X = stack(_validate.real_cast(xp, X, dtype))
    y = None if y is None else stack(y)
    extra = {k: stack(_validate.cast(xp, v, dtype)) for k, v in extra.items()}
    return Task(_validate.cast(xp, theta, dtype), X, y, l2, batched), extra
