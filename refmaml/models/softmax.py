"""Softmax regression (multinomial logistic): ``P = softmax(X @ theta)`` row by row, the linear
network times the softmax head.

Equations are in ``derivations/softmax.md``; the pair is (H5) with the softmax head of (H6)
(``derivations/models.md``). Shapes: one task has ``theta (d, C)``, ``X (n, d)``, integer labels
``y (n,)`` in ``[0, C)``; a stack of ``T`` tasks has ``X (T, n, d)``, ``y (T, n)`` and ``theta``
either shared, ``(d, C)``, or one per task, ``(T, d, C)``. Every function returns per-task results
(the task axis is dropped for one task). Flattened, as in :func:`hessian`, ``theta`` is read
row-major: entry ``(a, c)`` is number ``a * C + c``. ``MODEL`` is the model object the MAML
functions use (``model="softmax"``); labels reach its math one-hot, ``Y (T, n, C)``.
"""

from . import heads, networks
from .model import Model

MODEL = Model("softmax", networks.Linear(2, min_outputs=2), heads.SOFTMAX,
              equations=dict(outputs="softmax.md (S1)", residual="softmax.md (S8)", grad="softmax.md (S4)",
                             hvp="softmax.md (S10)", loss="softmax.md (S2), (S7)"))


def loss(theta, X, y, *, l2=0.0):
    """Mean cross-entropy of ``softmax(X @ theta)`` plus ``(l2/2)||theta||^2``.

    ``derivations/softmax.md`` (S2), (S7); labels ``y`` are integers in ``[0, C)``.

    Returns a 0-d array for one task, ``(T,)`` for a stack.
    """
    return MODEL.loss(theta, X, y, l2=l2)


def grad(theta, X, y, *, l2=0.0):
    """Gradient of :func:`loss` with respect to ``theta``: ``derivations/softmax.md`` (S4), (S8).

    Returns ``(d, C)`` for one task, ``(T, d, C)`` for a stack.
    """
    return MODEL.grad(theta, X, y, l2=l2)


def hvp(theta, X, y, v, *, l2=0.0):
    """Hessian-vector product ``H(theta) v``: ``derivations/softmax.md`` (S10).

    ``U = X V``; each example's row becomes ``p * u - p (p . u)``; then ``X^T`` of that over
    ``n``, plus ``l2 V``: two matrix products per task, no ``dC x dC`` matrix. ``v`` has
    ``theta``'s shape, or ``(T, d, C)`` for a stack of tasks (one direction per task). ``y`` is
    checked but does not enter: the Hessian does not depend on the labels. Returns ``(d, C)`` or
    ``(T, d, C)``.
    """
    return MODEL.hvp(theta, X, y, v, l2=l2)


def hessian(theta, X, y, *, l2=0.0):
    """Explicit Hessian ``(dC, dC)``, or ``(T, dC, dC)`` for a stack: ``derivations/softmax.md`` (S9).

    ``theta`` is flattened row-major: row and column ``a * C + c`` belong to ``theta[a, c]``, so
    ``hessian(...) @ reshape(v, (-1,))`` equals ``reshape(hvp(..., v), (-1,))``. Block ``(c, e)``
    of the class indices is ``(1/n) X^T diag(W[:, c, e]) X`` with ``W_i = diag(p_i) - p_i p_i^T``
    (S3). For teaching and tests; the MAML code uses Hessian-vector products (S10) and never forms it.
    """
    return MODEL.hessian(theta, X, y, l2=l2)


def predict(theta, X):
    """Class probabilities ``softmax(X @ theta)`` row by row: ``derivations/softmax.md`` (S1).

    Returns ``(n, C)`` for one task, ``(T, n, C)`` for a stack.
    """
    return MODEL.predict(theta, X)
