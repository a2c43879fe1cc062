"""Binary logistic regression: ``p = sigmoid(X @ theta)``, the linear network times the logistic head.

Equations are in ``derivations/logistic.md``; the pair is (H5) with the logistic head of (H6)
(``derivations/models.md``). Shapes: one task has ``theta (d,)``, ``X (n, d)``, labels ``y (n,)``
holding 0 and 1; a stack of ``T`` tasks has ``X (T, n, d)``, ``y (T, n)`` and ``theta`` either
shared, ``(d,)``, or one per task, ``(T, d)``. Every function returns per-task results (the task
axis is dropped for one task). ``MODEL`` is the model object the MAML functions use
(``model="logistic"``).
"""

from . import heads, networks
from .model import Model

MODEL = Model("logistic", networks.Linear(1), heads.LOGISTIC,
              equations=dict(outputs="logistic.md (L1)", residual="logistic.md (L9)", grad="logistic.md (L4)",
                             hvp="logistic.md (L11)", loss="logistic.md (L2), (L8)"))


def loss(theta, X, y, *, l2=0.0):
    """Mean binary cross-entropy plus ``(l2/2)||theta||^2``: ``derivations/logistic.md`` (L2), (L8).

    Returns a 0-d array for one task, ``(T,)`` for a stack.
    """
    return MODEL.loss(theta, X, y, l2=l2)


def grad(theta, X, y, *, l2=0.0):
    """Gradient of :func:`loss` with respect to ``theta``: ``derivations/logistic.md`` (L4), (L9).

    Returns ``(d,)`` for one task, ``(T, d)`` for a stack.
    """
    return MODEL.grad(theta, X, y, l2=l2)


def hvp(theta, X, y, v, *, l2=0.0):
    """Hessian-vector product ``(1/n) X^T (w * (X v)) + l2 v``: ``derivations/logistic.md`` (L11).

    ``v`` has ``theta``'s shape, or ``(T, d)`` for a stack of tasks (one direction per task).
    ``y`` is checked but does not enter: the Hessian of the cross-entropy does not depend on the
    labels. Two matrix-vector products per task, no ``d x d`` matrix. Returns ``(d,)`` or ``(T, d)``.
    """
    return MODEL.hvp(theta, X, y, v, l2=l2)


def hessian(theta, X, y, *, l2=0.0):
    """Explicit Hessian ``(d, d)``, or ``(T, d, d)`` for a stack: ``derivations/logistic.md`` (L10).

    For teaching and tests; the MAML code uses Hessian-vector products (L11) and never forms it.
    """
    return MODEL.hessian(theta, X, y, l2=l2)


def predict(theta, X):
    """Probabilities ``sigmoid(X @ theta)``: ``derivations/logistic.md`` (L1).

    Returns ``(n,)`` for one task, ``(T, n)`` for a stack.
    """
    return MODEL.predict(theta, X)
