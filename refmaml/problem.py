"""One validated problem: the checks that every model function and every MAML-family call share.

:func:`model_call` validates the arguments of a model function (``loss``, ``grad``, ``hvp``,
``hessian``, ``predict``), :func:`meta` those of a MAML-family call (``adapt``,
``meta_value_and_grad``, ``reptile_direction``, ``imaml_value_and_grad``). Both run before any
computation, name the argument at fault, and return arrays of one namespace and device, in the
computation dtype, with a leading task axis, so that the math below never checks anything.

What a model contributes is its part of the model protocol (README, "Architecture"):
``param_ndim``, ``check_parameters`` and ``labels``. The dtype rules are those of
:mod:`refmaml._validate`. ``None`` where an array belongs is a TypeError naming the argument.

NumPy float64 arrays (the common case) take a fast path that runs the same checks with fewer
calls; anything it does not accept at once goes through the general path, which raises the
error. Both give the same problem for the same inputs (``tests/test_problem.py``).
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from . import _validate, _xp

NO_RATE = object()  # for methods without an inner learning rate (implicit MAML)
ABSENT = object()  # an argument the call does not take (the query set of adapt, labels of predict)


def present(value, name):
    """``value``, or a TypeError naming ``name`` when it is None."""
    if value is None:
        raise TypeError(f"{name} is None; expected an array")
    return value


@dataclass(frozen=True)
class Call:
    """A validated model call. ``theta`` is one task's parameters ``P`` (shared by the tasks) or
    ``(T,) + P``; ``X`` is ``(T, n, d)``; ``y`` the targets in the model's form, with a task
    axis (None for ``predict``); ``v`` the direction of an HVP, ``(T,) + P`` or ``P`` (None
    otherwise); ``batched`` says whether the caller passed a task axis."""

    xp: object
    theta: object
    X: object
    y: object
    v: object
    l2: float
    batched: bool

    def unbatch(self, result):
        """Drop the task axis of ``result`` when the caller passed one task."""
        return result if self.batched else result[0, ...]

    def finish(self, compute, what):
        """``compute()`` with overflow warnings silenced, then checked: a non-finite result (outputs
        or ``l2 ||theta||^2`` beyond the float range) is a ValueError; else :meth:`unbatch`."""
        with _xp.quiet_overflow():
            result = compute()
        if not _xp.all_finite(self.xp, result):
            raise ValueError(f"{what} overflows the floating-point range: theta, X or l2 is too large "
                             "(see derivations/range.md)")
        return self.unbatch(result)


@dataclass(frozen=True)
class Problem:
    """A validated MAML-family call. ``theta`` is ``P`` (shared by the tasks), ``Xs (T, n, d)``,
    ``ys`` the support targets in the model's form with a task axis, ``Xq``, ``yq`` likewise
    (None for calls without a query set); ``rate`` the inner rate(s) as validated (None for
    implicit MAML), ``per_step`` whether it has a leading step axis; ``batched`` whether the
    caller passed a task axis."""

    xp: object
    model: object
    theta: object
    Xs: object
    ys: object
    Xq: object
    yq: object
    rate: object
    per_step: bool
    steps: int
    l2: float
    batched: bool

    def step_rate(self, k):
        """The rate of inner step ``k``: 0-d or broadcastable against ``(T,) + P``."""
        return self.rate[k, ...] if self.per_step else self.rate

    @property
    def tasks(self):
        return self.Xs.shape[0]

    def task_slice(self, a, b):
        """The same problem for tasks ``a..b-1``."""
        return replace(self, Xs=self.Xs[a:b, ...], ys=self.ys[a:b, ...],
                       Xq=None if self.Xq is None else self.Xq[a:b, ...],
                       yq=None if self.yq is None else self.yq[a:b, ...])


# ----------------------------------------------------------------------------- the general path

def features(xp, device, X, name):
    """Feature array: 2-D ``(n, d)`` for one task or 3-D ``(T, n, d)`` for a stack, non-empty."""
    X = _validate.floating(xp, device, present(X, name), name, ndims=(2, 3))
    axes = {-2: "example (row)", -1: "feature (column)"}
    if X.ndim == 3:
        axes[0] = "task"
    _validate.nonempty(X, name, axes)
    return X


def parameters(xp, device, model, theta, X, name, X_name, *, allow_task_axis):
    """Parameters that fit ``model`` and the features ``X``; with ``allow_task_axis`` one set per task."""
    nd = model.param_ndim
    ranks = (nd, nd + 1) if allow_task_axis else (nd,)
    theta = _validate.floating(xp, device, present(theta, name), name, allow_complex=True, ndims=ranks)
    model.check_parameters(tuple(theta.shape[theta.ndim - nd:]), X.shape[-1], name, X_name, X.shape)
    if theta.ndim == nd + 1:
        if X.ndim != 3:
            raise ValueError(
                f"{name} has a task axis (shape {tuple(theta.shape)}) but {X_name} is one task "
                f"(shape {tuple(X.shape)}); give {X_name} a task axis too"
            )
        if theta.shape[0] != X.shape[0]:
            raise ValueError(f"{name} holds {theta.shape[0]} tasks but {X_name} holds {X.shape[0]}")
    return theta


def _labels(model, xp, device, y, X, theta_shape, dtype, name):
    return model.labels(xp, device, present(y, name), X, tuple(theta_shape), dtype, name)


def _stacker(xp, batched, dtype):
    def stack(a, cast=_validate.real_cast):
        a = cast(xp, a, dtype)
        return a if batched else xp.expand_dims(a, axis=0)
    return stack


def _model_call_general(model, theta, X, y, l2, v):
    arrays = {"theta": theta, "X": X}
    if y is not ABSENT:
        arrays["y"] = y
    if v is not ABSENT:
        arrays["v"] = v
    xp, device = _xp.namespace(**arrays)
    X = features(xp, device, X, "X")
    theta = parameters(xp, device, model, theta, X, "theta", "X", allow_task_axis=True)
    l2 = _validate.l2(l2)
    extra = ()
    if v is not ABSENT:
        per_task = tuple(theta.shape[theta.ndim - model.param_ndim:])
        shapes = [tuple(theta.shape)] + ([(X.shape[0],) + per_task] if X.ndim == 3 else [])
        v = _validate.floating(xp, device, present(v, "v"), "v", allow_complex=True)
        if tuple(v.shape) not in shapes:
            raise ValueError(f"v has shape {tuple(v.shape)}; expected " + " or ".join(str(s) for s in shapes))
        extra = (v,)
    dtype = _validate.compute_dtype(xp, theta, X, *extra)
    if y is not ABSENT:
        y = _labels(model, xp, device, y, X, theta.shape[theta.ndim - model.param_ndim:],
                    _xp.real_dtype_of(xp, dtype), "y")
    batched = X.ndim == 3
    stack = _stacker(xp, batched, dtype)
    return Call(xp, _validate.cast(xp, theta, dtype), stack(X), None if y is ABSENT else stack(y),
                None if v is ABSENT else stack(v, _validate.cast), l2, batched)


def _meta_general(model, theta, Xs, ys, Xq, yq, l2, inner_lr, inner_steps):
    query = Xq is not ABSENT
    arrays = {"theta": theta, "Xs": Xs, "ys": ys}
    if inner_lr is not NO_RATE:
        arrays["inner_lr"] = inner_lr
    if query:
        arrays.update(Xq=Xq, yq=yq)
    xp, device = _xp.namespace(**arrays)
    Xs = features(xp, device, Xs, "Xs")
    theta = parameters(xp, device, model, theta, Xs, "theta", "Xs", allow_task_axis=False)
    if query:
        Xq = features(xp, device, Xq, "Xq")
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
        rate, per_step, weak_rate = _validate.rates(xp, device, present(inner_lr, "inner_lr"),
                                                    tuple(theta.shape), steps)
    l2 = _validate.l2(l2)
    dtype = _validate.compute_dtype(xp, theta, Xs, *((Xq,) if query else ()),
                                    *(() if weak_rate else (rate,)))
    if rate is not None and _xp.is_complex(xp, rate):
        dtype = _xp.complex_dtype_of(xp, dtype)
    real = _xp.real_dtype_of(xp, dtype)
    ys = _labels(model, xp, device, ys, Xs, theta.shape, real, "ys")
    if query:
        yq = _labels(model, xp, device, yq, Xq, theta.shape, real, "yq")
    batched = Xs.ndim == 3
    stack = _stacker(xp, batched, dtype)
    return Problem(
        xp, model, _validate.cast(xp, theta, dtype), stack(Xs), stack(ys),
        stack(Xq) if query else None, stack(yq) if query else None,
        None if rate is None else _validate.cast(xp, rate, dtype), per_step, steps, l2, batched,
    )


# ----------------------------------------------------------------------------- the NumPy fast path

_F64 = np.dtype(np.float64)


def _f64(*arrays):
    """Every argument is a plain NumPy float64 array."""
    return all(type(a) is np.ndarray and a.dtype == _F64 for a in arrays)


def _real(value):
    return type(value) is float or type(value) is int


def _fast_l2(l2):
    return _real(l2) and 0 <= l2 < math.inf


def _fast_rate(rate, theta_shape, steps):
    """``(rate, per_step)`` for a Python number or a NumPy float64 array of a valid shape, else None
    (labels, rates and every other array must be plain NumPy arrays here: a mix of libraries
    takes the general path, which refuses it)."""
    if _real(rate):
        return (np.asarray(float(rate)), False) if math.isfinite(rate) else None
    if not _f64(rate):
        return None
    per_step = _validate.rate_layout(tuple(rate.shape), theta_shape, steps)
    if per_step is None or not _xp.numpy_finite(rate):
        return None
    return rate, per_step


def _model_call_fast(model, theta, X, y, l2, v):
    arrays = (theta, X) + (() if v is ABSENT else (v,))
    if not (_f64(*arrays) and _fast_l2(l2) and X.ndim in (2, 3) and 0 not in X.shape
            and (y is ABSENT or type(y) is np.ndarray)):
        return None
    nd = model.param_ndim
    per_task = theta.shape[theta.ndim - nd:]
    if not (theta.ndim == nd or (theta.ndim == nd + 1 and X.ndim == 3 and theta.shape[0] == X.shape[0])):
        return None
    if v is not ABSENT and v.shape != theta.shape and (X.ndim == 2 or v.shape != (X.shape[0],) + per_task):
        return None
    model.check_parameters(per_task, X.shape[-1], "theta", "X", X.shape)
    if not _xp.numpy_finite(*arrays):
        return None
    if y is not ABSENT:
        y = model.labels(_xp.NUMPY, "cpu", present(y, "y"), X, per_task, _F64, "y")
    batched = X.ndim == 3
    if not batched:
        X = X[None]
        y = y if y is ABSENT else y[None]
        v = v if v is ABSENT else v[None]
    return Call(_xp.NUMPY, theta, X, None if y is ABSENT else y, None if v is ABSENT else v,
                float(l2), batched)


def _meta_fast(model, theta, Xs, ys, Xq, yq, l2, inner_lr, inner_steps):
    query = Xq is not ABSENT
    if not (_f64(theta, Xs, *((Xq,) if query else ())) and _fast_l2(l2) and type(inner_steps) is int
            and inner_steps >= 0 and Xs.ndim in (2, 3) and 0 not in Xs.shape
            and theta.ndim == model.param_ndim and type(ys) is np.ndarray
            and (not query or type(yq) is np.ndarray)):
        return None
    if query and (Xq.ndim != Xs.ndim or 0 in Xq.shape or Xq.shape[-1] != Xs.shape[-1]
                  or Xq.shape[:-2] != Xs.shape[:-2]):
        return None
    rate, per_step = None, False
    if inner_lr is not NO_RATE:
        found = _fast_rate(inner_lr, tuple(theta.shape), inner_steps)
        if found is None:
            return None
        rate, per_step = found
    model.check_parameters(theta.shape, Xs.shape[-1], "theta", "Xs", Xs.shape)
    if not _xp.numpy_finite(theta, Xs, *((Xq,) if query else ())):
        return None
    ys = model.labels(_xp.NUMPY, "cpu", present(ys, "ys"), Xs, theta.shape, _F64, "ys")
    if query:
        yq = model.labels(_xp.NUMPY, "cpu", present(yq, "yq"), Xq, theta.shape, _F64, "yq")
    batched = Xs.ndim == 3
    if not batched:
        Xs, ys = Xs[None], ys[None]
        if query:
            Xq, yq = Xq[None], yq[None]
    return Problem(_xp.NUMPY, model, theta, Xs, ys, Xq if query else None, yq if query else None,
                   rate, per_step, inner_steps, float(l2), batched)


# ----------------------------------------------------------------------------- entry points

def model_call(model, theta, X, y=ABSENT, *, l2=0.0, v=ABSENT):
    """Validate the arguments of a model function; returns a :class:`Call`.

    ``y=ABSENT`` for calls without targets (``predict``); ``v`` is the direction of an HVP, of
    ``theta``'s shape or, for a stack of tasks, ``(T,) + P``.
    """
    try:
        found = _model_call_fast(model, theta, X, y, l2, v)
    except (TypeError, ValueError, OverflowError):  # the general path says what is wrong
        found = None
    return found if found is not None else _model_call_general(model, theta, X, y, l2, v)


def meta(model, theta, Xs, ys, Xq=ABSENT, yq=ABSENT, *, l2=0.0, inner_lr=NO_RATE, inner_steps=0):
    """Validate every argument of a MAML-family call; returns a :class:`Problem`.

    ``Xq=yq=ABSENT`` for calls without a query set (``adapt``, ``reptile_direction``);
    ``inner_lr=NO_RATE`` for methods without an inner learning rate (implicit MAML).
    """
    try:
        found = _meta_fast(model, theta, Xs, ys, Xq, yq, l2, inner_lr, inner_steps)
    except (TypeError, ValueError, OverflowError):  # the general path says what is wrong
        found = None
    return found if found is not None else _meta_general(model, theta, Xs, ys, Xq, yq, l2, inner_lr,
                                                         inner_steps)


def flag(value, name):
    """A boolean option: True or False, nothing else."""
    if value is not True and value is not False:
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


__all__ = ["ABSENT", "NO_RATE", "Call", "Problem", "features", "flag", "meta", "model_call",
           "parameters", "present"]
