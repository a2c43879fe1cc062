"""One validated problem: the checks that every model function and every MAML-family call share.

:func:`model_call` validates the arguments of a model function (``loss``, ``grad``, ``hvp``,
``hessian``, ``predict``), :func:`meta` those of a MAML-family call (``adapt``,
``meta_value_and_grad``, ``reptile_direction``, ``imaml_value_and_grad``). Both run before any
computation, name the argument at fault, and return arrays of one namespace and device, in the
computation dtype, with a leading task axis, so that the math below never checks anything.

What a model contributes is its part of the model protocol (README, "Architecture"):
``param_ndim``, ``check_parameters`` and ``labels``. The dtype rules are those of
:mod:`refmaml._validate`. ``None`` where an array belongs is a TypeError naming the argument.

Every argument goes through one sequence of checks, in one order. A pre-check lets the common
case skip work that would change nothing: where every large array of the call (the parameters and
the features, and the direction ``v``) is a plain NumPy float64 array, their finiteness is read
once up front (by ``finite``, which the caller may give: :func:`refmaml.policy.validating`'s
reads large arrays in two threads), and an array so read, or a finite Python float as the rate,
is then taken as it is wherever the general rule would only have converted it to itself and found
it finite. The pre-check raises nothing and decides no error: any doubt, and every refusal, is
the general rules' (:mod:`refmaml._validate`). ``finite=None`` turns the pre-check off (the same
problem for the same inputs, ``tests/test_problem.py``).

The checks of values (finiteness, labels in range) go through :func:`refmaml._validate.require`:
inside a :func:`refmaml._validate.deferred` scope, on a device, they wait and are read once when the
scope ends, together with the call's checks of its results. The public calls open that scope
(``meta_value_and_grad``, ``adapt``, ``reptile_direction``, the model functions), so that a call on
a GPU reads the host once, at its end; the checks run in the order written here, and an error raised
here gives way to a waiting check met before it, so the first failing check wins, as on NumPy.
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
        or ``l2 ||theta||^2`` beyond the float range) is a ValueError (a check of device values,
        :func:`refmaml._validate.require`); else :meth:`unbatch`."""
        with _xp.quiet_overflow():
            result = compute()
        _validate.require(_xp.finite_flag(self.xp, result), lambda: ValueError(
            f"{what} overflows the floating-point range: theta, X or l2 is too large (see derivations/range.md)"))
        return self.unbatch(result)


@dataclass(frozen=True)
class Problem:
    """A validated MAML-family call. ``theta`` is ``P`` (shared by the tasks), ``Xs (T, n, d)``,
    ``ys`` the support targets in the model's form with a task axis, ``Xq``, ``yq`` likewise
    (None for calls without a query set); ``rate`` the inner rate(s) as validated (None for
    implicit MAML), ``per_step`` whether it has a leading step axis; ``batched`` whether the
    caller passed a task axis. With an ``inner_mask``, ``mask`` is it (a boolean array of ``P``)
    and ``rate`` the rates times the mask, so that the inner loop adapts only the masked
    parameters (``derivations/maml.md`` (M10)); ``user_rate`` is then the rate as the caller gave
    it (its gradient is reduced to that shape)."""

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
    mask: object = None
    user_rate: object = None

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


# ----------------------------------------------------------------------------- the checks

_F64 = np.dtype(np.float64)


def _plain(*arrays):
    """Every argument is a plain NumPy float64 array."""
    return all(type(a) is np.ndarray and a.dtype == _F64 for a in arrays)


def _clean(finite, *arrays):
    """The pre-check: ``finite`` given, every array a plain NumPy float64 array, and every entry
    finite (one read of each). True means that the general rules' conversion and finiteness test
    would return each of these arrays unchanged."""
    return finite is not None and _plain(*arrays) and finite(*arrays)


def features(xp, device, X, name, *, clean=False, example_ndim=1):
    """Feature array: ``(n, d)`` for one task or ``(T, n, d)`` for a stack, non-empty; for
    inputs of ``example_ndim`` axes per example (images: 3), ``(n, C, H, W)`` or
    ``(T, n, C, H, W)``. ``clean``: ``X`` passed the pre-check (:func:`_clean`)."""
    ranks = (1 + example_ndim, 2 + example_ndim)
    if not (clean and X.ndim in ranks):
        X = _validate.floating(xp, device, present(X, name), name, ndims=ranks)
    first = X.ndim - example_ndim
    axes = {first - 1: "example (row)"}
    axes.update({first + j: "feature (column)" if example_ndim == 1 else f"entry along input axis {j}"
                 for j in range(example_ndim)})
    if X.ndim == ranks[1]:
        axes[0] = "task"
    _validate.nonempty(X, name, axes)
    return X


def example_shape(model, X):
    """What a model's ``check_parameters`` takes as ``d``: the number of features, or one example's
    shape for inputs of several axes."""
    e = model.input_ndim
    return X.shape[-1] if e == 1 else tuple(X.shape[X.ndim - e:])


def has_task_axis(model, X):
    """Whether ``X`` has a task axis."""
    return X.ndim == 2 + model.input_ndim


def parameters(xp, device, model, theta, X, name, X_name, *, allow_task_axis, clean=False):
    """Parameters that fit ``model`` and the features ``X``; with ``allow_task_axis`` one set per task.
    ``clean``: ``theta`` passed the pre-check (:func:`_clean`)."""
    nd = model.param_ndim
    ranks = (nd, nd + 1) if allow_task_axis else (nd,)
    if not (clean and theta.ndim in ranks):
        theta = _validate.floating(xp, device, present(theta, name), name, allow_complex=True, ndims=ranks)
    model.check_parameters(tuple(theta.shape[theta.ndim - nd:]), example_shape(model, X), name, X_name, X.shape)
    if theta.ndim == nd + 1:
        if not has_task_axis(model, X):
            raise ValueError(
                f"{name} has a task axis (shape {tuple(theta.shape)}) but {X_name} is one task "
                f"(shape {tuple(X.shape)}); give {X_name} a task axis too"
            )
        if theta.shape[0] != X.shape[0]:
            raise ValueError(f"{name} holds {theta.shape[0]} tasks but {X_name} holds {X.shape[0]}")
    return theta


def _rates(xp, device, value, theta_shape, steps, finite):
    """:func:`refmaml._validate.rates`, whose ``(rate, per_step, weak)`` the pre-check gives at once
    for a finite Python float and for a plain NumPy float64 array of a valid layout whose entries
    ``finite`` finds finite."""
    if finite is not None and xp is _xp.NUMPY:
        if type(value) is float and math.isfinite(value):
            return np.asarray(value), False, True
        if _plain(value):
            per_step = _validate.rate_layout(tuple(value.shape), theta_shape, steps)
            if per_step is not None and finite(value):
                return value, per_step, False
    return _validate.rates(xp, device, present(value, "inner_lr"), theta_shape, steps)


def mask_of(xp, device, value, theta_shape):
    """``inner_mask``: None (every parameter adapts), or a boolean array of one task's parameter
    shape ``theta_shape``, in the inputs' namespace or a NumPy array or list (converted: a mask is
    as small as ``theta``); returned in ``xp`` on ``device``."""
    if value is None:
        return None
    library = _xp.library_of(value)
    if library not in (None, "numpy", _xp.library_name(xp)):
        raise TypeError(f"inner_mask is a {library} array but the other arrays are {_xp.library_name(xp)} "
                        "arrays; give it in their library or as a NumPy array")
    mask = _validate.as_array(xp, device, value, "inner_mask")
    if not _xp.isdtype(xp, mask.dtype, "bool"):
        raise TypeError(f"inner_mask has dtype {mask.dtype}; expected a boolean array (True: the inner loop "
                        "adapts this parameter)")
    if tuple(mask.shape) != tuple(theta_shape):
        raise ValueError(f"inner_mask has shape {tuple(mask.shape)}; expected theta's shape {tuple(theta_shape)} "
                         "(one task's parameters)")
    return mask


def _labels(model, xp, device, y, X, theta_shape, dtype, name):
    return model.labels(xp, device, present(y, name), X, tuple(theta_shape), dtype, name)


def _stacker(xp, batched, dtype):
    def stack(a, cast=_validate.real_cast):
        a = cast(xp, a, dtype)
        return a if batched else xp.expand_dims(a, axis=0)
    return stack


# ----------------------------------------------------------------------------- entry points

def model_call(model, theta, X, y=ABSENT, *, l2=0.0, v=ABSENT, finite=_xp.numpy_finite):
    """Validate the arguments of a model function; returns a :class:`Call`.

    ``y=ABSENT`` for calls without targets (``predict``); ``v`` is the direction of an HVP, of
    ``theta``'s shape or, for a stack of tasks, ``(T,) + P``. ``finite``: the pre-check's
    finiteness test of NumPy float64 arrays (None: no pre-check).
    """
    arrays = {"theta": theta, "X": X}
    if y is not ABSENT:
        arrays["y"] = y
    if v is not ABSENT:
        arrays["v"] = v
    xp, device = _xp.namespace(**arrays)
    clean = _clean(finite, theta, X, *(() if v is ABSENT else (v,)))
    X = features(xp, device, X, "X", clean=clean, example_ndim=model.input_ndim)
    theta = parameters(xp, device, model, theta, X, "theta", "X", allow_task_axis=True, clean=clean)
    l2 = _validate.l2(l2)
    extra = ()
    if v is not ABSENT:
        per_task = tuple(theta.shape[theta.ndim - model.param_ndim:])
        shapes = [tuple(theta.shape)] + ([(X.shape[0],) + per_task] if has_task_axis(model, X) else [])
        if not clean:
            v = _validate.floating(xp, device, present(v, "v"), "v", allow_complex=True)
        if tuple(v.shape) not in shapes:
            raise ValueError(f"v has shape {tuple(v.shape)}; expected " + " or ".join(str(s) for s in shapes))
        extra = (v,)
    dtype = _validate.compute_dtype(xp, theta, X, *extra)
    if y is not ABSENT:
        y = _labels(model, xp, device, y, X, theta.shape[theta.ndim - model.param_ndim:],
                    _xp.real_dtype_of(xp, dtype), "y")
    tasks = has_task_axis(model, X)
    stack = _stacker(xp, tasks, dtype)
    return Call(xp, _validate.cast(xp, theta, dtype), stack(X), None if y is ABSENT else stack(y),
                None if v is ABSENT else stack(v, _validate.cast), l2, tasks)


def meta(model, theta, Xs, ys, Xq=ABSENT, yq=ABSENT, *, l2=0.0, inner_lr=NO_RATE, inner_steps=0,
         inner_mask=None, finite=_xp.numpy_finite):
    """Validate every argument of a MAML-family call; returns a :class:`Problem`.

    ``Xq=yq=ABSENT`` for calls without a query set (``adapt``, ``reptile_direction``);
    ``inner_lr=NO_RATE`` for methods without an inner learning rate (implicit MAML). ``finite``:
    the pre-check's finiteness test of NumPy float64 arrays (:func:`refmaml.policy.validating`
    gives one that reads large arrays in two threads; None: no pre-check). ``inner_mask``: see
    :func:`mask_of`; with a rate it is folded into the rate (M10).
    """
    query = Xq is not ABSENT
    arrays = {"theta": theta, "Xs": Xs, "ys": ys}
    if inner_lr is not NO_RATE:
        arrays["inner_lr"] = inner_lr
    if query:
        arrays.update(Xq=Xq, yq=yq)
    xp, device = _xp.namespace(**arrays)
    clean = _clean(finite, theta, Xs, *((Xq,) if query else ()))
    e = model.input_ndim
    Xs = features(xp, device, Xs, "Xs", clean=clean, example_ndim=e)
    theta = parameters(xp, device, model, theta, Xs, "theta", "Xs", allow_task_axis=False, clean=clean)
    if query:
        Xq = features(xp, device, Xq, "Xq", clean=clean, example_ndim=e)
        if Xq.ndim != Xs.ndim:
            raise ValueError(
                f"Xs has shape {tuple(Xs.shape)} but Xq has shape {tuple(Xq.shape)}; "
                f"both must be one task ({1 + e}-D) or both a stack of tasks ({2 + e}-D)"
            )
        if Xq.shape[Xq.ndim - e:] != Xs.shape[Xs.ndim - e:] or Xq.shape[:-1 - e] != Xs.shape[:-1 - e]:
            raise ValueError(
                f"Xq has shape {tuple(Xq.shape)} but Xs has shape {tuple(Xs.shape)}; "
                "they must agree in the number of tasks and of features"
            )
    steps = _validate.steps(inner_steps, "inner_steps")
    rate, per_step, weak_rate = None, False, True
    if inner_lr is not NO_RATE:
        rate, per_step, weak_rate = _rates(xp, device, inner_lr, tuple(theta.shape), steps, finite)
    mask = mask_of(xp, device, inner_mask, tuple(theta.shape))
    l2 = _validate.l2(l2)
    if clean and (weak_rate or rate.dtype == _F64):
        dtype = _F64  # the result type of float64 arrays
    else:
        dtype = _validate.compute_dtype(xp, theta, Xs, *((Xq,) if query else ()),
                                        *(() if weak_rate else (rate,)))
    if rate is not None and _xp.is_complex(xp, rate):
        dtype = _xp.complex_dtype_of(xp, dtype)
    real = _xp.real_dtype_of(xp, dtype)
    ys = _labels(model, xp, device, ys, Xs, theta.shape, real, "ys")
    if query:
        yq = _labels(model, xp, device, yq, Xq, theta.shape, real, "yq")
    tasks = has_task_axis(model, Xs)
    stack = _stacker(xp, tasks, dtype)
    user_rate = None if rate is None else _validate.cast(xp, rate, dtype)
    rate = user_rate
    if mask is not None and rate is not None:
        rate = rate * xp.astype(mask, dtype)  # (M10): the rate of every parameter the mask leaves out is 0
    return Problem(
        xp, model, _validate.cast(xp, theta, dtype), stack(Xs), stack(ys),
        stack(Xq) if query else None, stack(yq) if query else None,
        rate, per_step, steps, l2, tasks, mask, user_rate,
    )


def flag(value, name):
    """A boolean option: True or False, nothing else."""
    if value is not True and value is not False:
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


__all__ = ["ABSENT", "NO_RATE", "Call", "Problem", "example_shape", "features", "flag", "has_task_axis",
           "mask_of", "meta", "model_call", "parameters", "present"]
