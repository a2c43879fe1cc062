"""Binary logistic regression: ``p = sigmoid(X @ theta)``.

Equations are in ``derivations/logistic.md``.  Shapes: one task has
``theta (d,)``, ``X (n, d)``, labels ``y (n,)`` holding 0 and 1; a stack of
``T`` tasks has ``X (T, n, d)``, ``y (T, n)`` and ``theta`` either shared,
``(d,)``, or one per task, ``(T, d)``.  Every function returns per-task
results (the task axis is dropped for one task).

The private functions (``_loss``, ``_grad_state``, ``_value_grad``,
``_hvp_state``, ``_hessian``) are the model interface used by :mod:`refmaml.maml`: they take
validated arrays with a task axis (``X (T, n, d)``, ``y (T, n)``, ``theta
(d,)`` or ``(T, d)``) and check nothing.
"""

import sys

from array_api_compat import device

from .. import _validate, _xp
from .._xp import array_namespace
from ..special import _sigmoid, _sigmoid_pair, _softplus
from . import _prepare

PARAM_NDIM = 1


def check_parameters(theta, name):
    """Any ``(d,)`` (or ``(T, d)``) whose ``d`` matches the features will do: nothing more to check."""


def labels(xp, dev, y, X, theta_shape, dtype, name="y"):
    """Check binary labels and return them as ``dtype`` (0.0 and 1.0).

    Accepted: bool arrays, integer arrays holding only 0 and 1, real float
    arrays holding exactly 0.0 and 1.0; shape ``X.shape[:-1]``.
    """
    y = _validate.as_array(xp, dev, y, name)
    kinds = ("bool", "integral", "real floating")
    if not any(_xp.isdtype(xp, y.dtype, kind) for kind in kinds):
        raise TypeError(f"{name} has dtype {y.dtype}; binary labels must be bool, integer or float 0/1")
    if tuple(y.shape) != tuple(X.shape[:-1]):
        raise ValueError(
            f"{name} has shape {tuple(y.shape)}; expected {tuple(X.shape[:-1])} "
            "(one label per example)"
        )
    if _xp.isdtype(xp, y.dtype, "real floating"):
        _validate.check_finite(xp, y, name)
    if not _xp.isdtype(xp, y.dtype, "bool") and not bool(xp.all((y == 0) | (y == 1))):
        raise ValueError(f"{name} must hold only the labels 0 and 1")
    return xp.astype(y, dtype)


def _logits(theta, X):
    """``z = X theta`` per task, ``(T, n)``: ``derivations/logistic.md`` (L1)."""
    return (X @ theta[..., None])[..., 0]


def _value(z, theta, y, l2):
    """Mean binary cross-entropy plus ridge from the logits, per task ``(T,)``: (L2), (L8).

    Each example's term is ``softplus(s z)`` with ``s = 1 - 2y``, exact for
    both labels; the ridge uses ``theta * theta`` (not ``|theta|^2``) so that
    it stays analytic for complex-step derivatives.
    """
    xp = array_namespace(z)
    value = xp.mean(_softplus((1 - 2 * y) * z), axis=-1)
    if l2:
        value = value + (l2 / 2) * xp.sum(theta * theta, axis=-1)
    return value


def _residual_weights(z, y):
    """``p - y`` (L9) and the curvature weights ``w = p (1 - p)`` (L10) from the logits, with one
    exponential: ``p - y`` is ``sigmoid(z)`` where ``y = 0`` and ``-sigmoid(-z)`` where ``y = 1``,
    ``s sigmoid(s z)`` with ``s = 1 - 2y``, so neither label loses digits to cancellation."""
    xp = array_namespace(z)
    p, q = _sigmoid_pair(z)
    return xp.where(y == 0, p, -q), p * q


def _gradient(r, theta, X, l2):
    """``(1/n) X^T (p - y) + l2 theta`` from the residual ``r = p - y``, ``(T, d)``: (L4)."""
    xp = array_namespace(X)
    g = (xp.matrix_transpose(X) @ r[..., None])[..., 0] / X.shape[-2]
    if l2:
        g = g + l2 * theta
    return g


def _loss(theta, X, y, l2):
    """Loss per task ``(T,)``: ``derivations/logistic.md`` (L2), (L8)."""
    return _value(_logits(theta, X), theta, y, l2)


def _grad_state(theta, X, y, l2):
    """Gradient and the curvature weights at ``theta``: ``derivations/logistic.md`` (L4), (L10).

    The weights ``w = sigmoid(z) sigmoid(-z)`` are kept for Hessian-vector
    products at the same point.  Returns ``(grad (T, d), w (T, n))``.
    """
    r, w = _residual_weights(_logits(theta, X), y)
    return _gradient(r, theta, X, l2), w


def _value_grad(theta, X, y, l2):
    """Loss ``(T,)`` and gradient ``(T, d)`` from one evaluation of the logits: (L2), (L4)."""
    z = _logits(theta, X)
    return _value(z, theta, y, l2), _gradient(_residual_weights(z, y)[0], theta, X, l2)


def _weights(z):
    """Curvature weights ``w = sigmoid(z) sigmoid(-z) = p (1 - p)``: ``derivations/logistic.md`` (L3)."""
    p, q = _sigmoid_pair(z)
    return p * q


def _hvp_state(w, X, v, l2):
    """Hessian-vector product ``(1/n) X^T (w * (X v)) + l2 v``: ``derivations/logistic.md`` (L11).

    ``w (T, n)`` are the curvature weights from :func:`_grad_state`; two
    matrix-vector products per task and no ``d x d`` matrix.
    """
    xp = array_namespace(X)
    Hv = (xp.matrix_transpose(X) @ (w * _logits(v, X))[..., None])[..., 0] / X.shape[-2]
    if l2:
        Hv = Hv + l2 * v
    return Hv


def _logit_state(z, y):
    """Per-example ``dl/dz = p - y`` and the curvature weights ``w`` from the logits ``(T, n)``:
    (L9), (L10). The dual form (``derivations/dual.md`` (G1)) works with these alone."""
    return _residual_weights(z, y)


def _logit_value(z, y):
    """Mean loss over examples from the logits, per task ``(T,)``, no ridge term: (L8)."""
    return _value(z, None, y, 0.0)


def _logit_curvature(w, u):
    """``d^2 l / dz^2`` applied to ``u`` in logit space: ``w * u`` (L10)."""
    return w * u


def _hessian(theta, X, l2):
    """Explicit Hessian ``(1/n) X^T diag(w) X + l2 I``, ``(T, d, d)``: ``derivations/logistic.md`` (L10)."""
    xp = array_namespace(X)
    w = _weights(_logits(theta, X))
    n, d = X.shape[-2:]
    H = xp.matrix_transpose(X) @ (w[..., None] * X) / n
    if l2:
        H = H + l2 * xp.eye(d, dtype=H.dtype, device=device(H))
    return H


# ---------------------------------------------------------------- public API

_MODEL = sys.modules[__name__]


def loss(theta, X, y, *, l2=0.0):
    """Mean binary cross-entropy plus ``(l2/2)||theta||^2``: ``derivations/logistic.md`` (L2).

    Returns a 0-d array for one task, ``(T,)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _loss(t.theta, t.X, t.y, t.l2), "the loss")


def grad(theta, X, y, *, l2=0.0):
    """Gradient of :func:`loss` with respect to ``theta``: ``derivations/logistic.md`` (L4).

    Returns ``(d,)`` for one task, ``(T, d)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _grad_state(t.theta, t.X, t.y, t.l2)[0], "the gradient")


def hvp(theta, X, y, v, *, l2=0.0):
    """Hessian-vector product ``H(theta) v``: ``derivations/logistic.md`` (L11).

    ``v`` has ``theta``'s shape, or ``(T, d)`` for a stack of tasks (one
    direction per task).  ``y`` is checked but does not enter: the Hessian of
    the cross-entropy does not depend on the labels.  Returns ``(d,)`` or ``(T, d)``.
    """
    t, extra = _prepare.task(_MODEL, theta, X, y, l2, v=v)
    return t.finish(lambda: _hvp_state(_weights(_logits(t.theta, t.X)), t.X, extra["v"], t.l2),
                    "the Hessian-vector product")


def hessian(theta, X, y, *, l2=0.0):
    """Explicit Hessian ``(d, d)``, or ``(T, d, d)`` for a stack: ``derivations/logistic.md`` (L10).

    For teaching and tests; the MAML code uses Hessian-vector products (L11) and never forms it.
    """
    t, _ = _prepare.task(_MODEL, theta, X, y, l2)
    return t.finish(lambda: _hessian(t.theta, t.X, t.l2), "the Hessian")


def predict(theta, X):
    """Probabilities ``sigmoid(X @ theta)``: ``derivations/logistic.md`` (L1).

    Returns ``(n,)`` for one task, ``(T, n)`` for a stack.
    """
    t, _ = _prepare.task(_MODEL, theta, X, None)
    return t.finish(lambda: _sigmoid(_logits(t.theta, t.X)), "the probabilities")
