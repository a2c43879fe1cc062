"""Softmax regression (multinomial logistic): ``P = softmax(X @ theta)`` row by row.

Equations are in ``derivations/softmax.md``.  Shapes: one task has
``theta (d, C)``, ``X (n, d)``, integer labels ``y (n,)`` in ``[0, C)``; a
stack of ``T`` tasks has ``X (T, n, d)``, ``y (T, n)`` and ``theta`` either
shared, ``(d, C)``, or one per task, ``(T, d, C)``.  Every function returns
per-task results (the task axis is dropped for one task).  Flattened, as in
:func:`hessian`, ``theta`` is read row-major: entry ``(a, c)`` is number
``a * C + c``.

The private functions are the model interface used by :mod:`refmaml.maml`
(the same as in :mod:`refmaml.models.logistic`): they take validated arrays
with a task axis and check nothing.  Labels reach them one-hot,
``Y (T, n, C)``, in the computation's real dtype.
"""

import sys

from array_api_compat import device

from .. import _validate, _xp
from .._xp import array_namespace
from ..special import _log_softmax, _log_softmax_and_softmax, _softmax
from . import _prepare

PARAM_NDIM = 2


def check_parameters(theta, name):
    """A softmax over fewer than two classes is constant: refuse it."""
    if theta.shape[-1] < 2:
        raise ValueError(
            f"{name} has shape {tuple(theta.shape)}: {theta.shape[-1]} class(es); the softmax "
            "model needs at least 2 classes (columns)"
        )


def labels(xp, dev, y, X, theta_shape, dtype, name="y"):
    """Check integer class labels in ``[0, C)`` and return them one-hot, ``(..., n, C)`` of ``dtype``."""
    y = _validate.as_array(xp, dev, y, name)
    if not _xp.isdtype(xp, y.dtype, "integral"):
        raise TypeError(
            f"{name} has dtype {y.dtype}; softmax labels must be integers (class indices in [0, C))"
        )
    if tuple(y.shape) != tuple(X.shape[:-1]):
        raise ValueError(
            f"{name} has shape {tuple(y.shape)}; expected {tuple(X.shape[:-1])} "
            "(one label per example)"
        )
    C = theta_shape[-1]
    out_of_range = y < 0
    if C <= xp.iinfo(y.dtype).max:  # otherwise no value of y's dtype reaches C
        out_of_range = out_of_range | (y >= C)
    if bool(xp.any(out_of_range)):
        low, high = int(xp.min(y)), int(xp.max(y))
        bad = low if low < 0 else high
        raise ValueError(
            f"{name} holds the label {bad}, but theta has {C} classes (shape {tuple(theta_shape)}); "
            f"labels must lie in [0, {C})"
        )
    if C - 1 > xp.iinfo(y.dtype).max:  # the class indices need a wider type than the labels
        y = xp.astype(y, xp.int64)
    classes = xp.arange(C, dtype=y.dtype, device=dev)
    return xp.astype(y[..., None] == classes, dtype)


def _logits(theta, X):
    """``Z = X theta`` per task, ``(T, n, C)``: ``derivations/softmax.md`` (S1)."""
    return X @ theta


def _probabilities(theta, X):
    """``P = softmax(X theta)`` row by row, ``(T, n, C)``: ``derivations/softmax.md`` (S1), (S6)."""
    return _softmax(_logits(theta, X))


def _value(logP, theta, Y, l2):
    """Mean cross-entropy plus ridge from the log-probabilities ``(T, n, C)``, per task: (S2), (S7)."""
    xp = array_namespace(logP)
    value = -xp.mean(xp.sum(Y * logP, axis=-1), axis=-1)
    if l2:  # theta * theta, not |theta|^2: analytic for the complex step
        value = value + (l2 / 2) * xp.sum(theta * theta, axis=(-2, -1))
    return value


def _residual(P, Y):
    """``P - Y`` with the true class's entry as ``-sum_{c != y} p_c``: (S8)."""
    xp = array_namespace(P)
    hit = Y == 1
    others = xp.sum(xp.where(hit, xp.zeros_like(P), P), axis=-1, keepdims=True)
    return xp.where(hit, -others, P)


def _gradient(P, theta, X, Y, l2):
    """``(1/n) X^T (P - Y) + l2 theta``, ``(T, d, C)``: (S4), (S8)."""
    xp = array_namespace(X)
    G = xp.matrix_transpose(X) @ _residual(P, Y) / X.shape[-2]
    if l2:
        G = G + l2 * theta
    return G


def _loss(theta, X, Y, l2):
    """Loss per task ``(T,)``: ``derivations/softmax.md`` (S2), (S7)."""
    return _value(_log_softmax(_logits(theta, X)), theta, Y, l2)


def _grad_state(theta, X, Y, l2):
    """Gradient ``(T, d, C)`` and the probabilities ``P (T, n, C)``: ``derivations/softmax.md`` (S4).

    ``P`` is all that Hessian-vector products at the same point need (S10).
    """
    P = _probabilities(theta, X)
    return _gradient(P, theta, X, Y, l2), P


def _value_grad(theta, X, Y, l2):
    """Loss ``(T,)`` and gradient ``(T, d, C)`` from one evaluation of the logits: (S2), (S4)."""
    logP, P = _log_softmax_and_softmax(_logits(theta, X))
    return _value(logP, theta, Y, l2), _gradient(P, theta, X, Y, l2)


def _hvp_state(P, X, V, l2):
    """Hessian-vector product from the probabilities ``P (T, n, C)``: ``derivations/softmax.md`` (S10).

    ``U = X V``; each example's row becomes ``p * u - p (p . u)``; then ``X^T``
    of that over ``n``, plus ``l2 V``: two matrix products per task, no
    ``dC x dC`` matrix.
    """
    xp = array_namespace(X)
    PU = P * (X @ V)
    R = PU - P * xp.sum(PU, axis=-1, keepdims=True)
    HV = xp.matrix_transpose(X) @ R / X.shape[-2]
    if l2:
        HV = HV + l2 * V
    return HV


def _logit_state(Z, Y):
    """Per-example ``dl/dz = P - Y`` (S8) and the probabilities ``P`` from the logits ``(T, n, C)``.
    The dual form (``derivations/dual.md`` (G1)) works with these alone."""
    P = _softmax(Z)
    return _residual(P, Y), P


def _logit_value(Z, Y):
    """Mean cross-entropy over examples from the logits, per task ``(T,)``, no ridge term: (S7)."""
    return _value(_log_softmax(Z), None, Y, 0.0)


def _logit_curvature(P, U):
    """The softmax curvature applied to ``U`` in logit space, row by row
    ``p * u - p (p . u)`` (S10)."""
    xp = array_namespace(P)
    PU = P * U
    return PU - P * xp.sum(PU, axis=-1, keepdims=True)


def _hessian(theta, X, l2):
    """Explicit Hessian ``(T, dC, dC)``, row-major flattening: ``derivations/softmax.md`` (S9).

    Block ``(c, e)`` of the class indices is ``(1/n) X^T diag(W[:, c, e]) X``
    with ``W_i = diag(p_i) - p_i p_i^T`` (S3); the blocks are interleaved so
    that entry ``(a C + c, b C + e)`` is ``H[(a, c), (b, e)]``.
    """
    xp = array_namespace(X)
    P = _probabilities(theta, X)
    T, n, d = X.shape
    C = P.shape[-1]
    eye = xp.eye(C, dtype=P.dtype, device=device(P))
    W = P[..., :, None] * eye - P[..., :, None] * P[..., None, :]  # (T, n, C, C)
    W = xp.permute_dims(W, (0, 2, 3, 1))[..., None]  # (T, C, C, n, 1)
    Xt = xp.matrix_transpose(X)[:, None, None, ...]  # (T, 1, 1, d, n)
    blocks = Xt @ (W * X[:, None, None, ...]) / n  # (T, C, C, d, d), indices (c, e, a, b)
    H = xp.reshape(xp.permute_dims(blocks, (0, 3, 1, 4, 2)), (T, d * C, d * C))
    if l2:
        H = H + l2 * xp.eye(d * C, dtype=H.dtype, device=device(H))
    return H


# ---------------------------------------------------------------- public API

_MODEL = sys.modules[__name__]


def loss(theta, X, y, *, l2=0.0):
    """Mean cross-entropy of ``softmax(X @ theta)`` plus ``(l2/2)||theta||^2``.

    ``derivations/softmax.md`` (S2); labels ``y`` are integers in ``[0, C)``.

    Returns a 0-d array for one task, ``(T,)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _loss(t.theta, t.X, t.y, t.l2), "the loss")


def grad(theta, X, y, *, l2=0.0):
    """Gradient of :func:`loss` with respect to ``theta``: ``derivations/softmax.md`` (S4).

    Returns ``(d, C)`` for one task, ``(T, d, C)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _grad_state(t.theta, t.X, t.y, t.l2)[0], "the gradient")


def hvp(theta, X, y, v, *, l2=0.0):
    """Hessian-vector product ``H(theta) v``: ``derivations/softmax.md`` (S10).

    ``v`` has ``theta``'s shape, or ``(T, d, C)`` for a stack of tasks (one
    direction per task).  ``y`` is checked but does not enter: the Hessian
    does not depend on the labels.  Returns ``(d, C)`` or ``(T, d, C)``.
    """
    t, extra = _prepare.task(_MODEL, theta, X, y, l2, v=v)
    return t.finish(lambda: _hvp_state(_probabilities(t.theta, t.X), t.X, extra["v"], t.l2),
                    "the Hessian-vector product")


def hessian(theta, X, y, *, l2=0.0):
    """Explicit Hessian ``(dC, dC)``, or ``(T, dC, dC)`` for a stack: ``derivations/softmax.md`` (S9).

    ``theta`` is flattened row-major: row and column ``a * C + c`` belong to
    ``theta[a, c]``, so ``hessian(...) @ reshape(v, (-1,))`` equals
    ``reshape(hvp(..., v), (-1,))``.  For teaching and tests; the MAML code
    uses Hessian-vector products (S10) and never forms it.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _hessian(t.theta, t.X, t.l2), "the Hessian")


def predict(theta, X):
    """Class probabilities ``softmax(X @ theta)`` row by row: ``derivations/softmax.md`` (S1).

    Returns ``(n, C)`` for one task, ``(T, n, C)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, None)
    return t.finish(lambda: _probabilities(t.theta, t.X), "the probabilities")
