"""A model is a network times a loss head: ``derivations/models.md`` (H1)-(H7).

:class:`Model` writes the loss, the gradient, the Hessian-vector product and the explicit
Hessian of any pair once:

* ``L(theta) = (1/n) sum_i l(z_i(theta), y_i) + (l2/2) ||theta||^2`` (H1);
* ``grad L = (1/n) J^T r + l2 theta`` (H2);
* ``H v = (1/n) (J^T W (J v) + R[v]) + l2 v`` (H4), ``R = 0`` for a linear network (H5).

It carries two sets of methods. The *protocol* (``value``, ``grad_state``, ``value_grad``,
``hvp_state``, ``hessian_matrix``, ``predictions``, with ``check_parameters``, ``labels``,
``param_ndim``, ``linear``, ``network`` and ``head``) takes validated arrays with a leading task
axis and checks nothing; it is what :mod:`refmaml.maml`, :mod:`refmaml.dual`, the variants and the
applications call, and it is documented in the README's "Architecture" section. The *user API*
(``loss``, ``grad``, ``hvp``, ``hessian``, ``predict``) validates its arguments through
:func:`refmaml.problem.model_call` and returns per-task results, without the task axis for one task.
"""

from array_api_compat import device

from .. import problem
from .._xp import array_namespace


class Model:
    """``network`` (parameters -> outputs) times ``head`` (outputs -> loss), registered as ``name``."""

    def __init__(self, name, network, head):
        self.name, self.network, self.head = name, network, head
        self.param_ndim = network.param_ndim
        self.linear = network.linear

    def __repr__(self):
        return f"<refmaml model {self.name!r}>"

    # --------------------------------------------------------------- protocol: validation

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """Refuse one task's parameter shape ``shape`` if it does not fit ``d`` features."""
        self.network.check_parameters(shape, d, name, X_name, X_shape)

    def labels(self, xp, dev, y, X, theta_shape, dtype, name):
        """Targets ``y`` for the features ``X`` checked and converted to the head's form."""
        return self.head.labels(xp, dev, y, tuple(X.shape[:-1]), self.network.outputs(theta_shape), dtype,
                                name, self.network.describe_outputs(theta_shape))

    # --------------------------------------------------------------- protocol: the math

    def _ridge(self, value, theta, l2):
        """``value + (l2/2) sum theta * theta`` (H1): ``theta * theta``, not ``|theta|^2``, keeps it
        analytic for the complex step."""
        if l2:
            xp = array_namespace(theta)
            value = value + (l2 / 2) * xp.sum(theta * theta, axis=tuple(range(-self.param_ndim, 0)))
        return value

    def value(self, theta, X, y, l2):
        """Loss per task ``(T,)``: (H1)."""
        z, _ = self.network.forward(theta, X)
        return self._ridge(self.head.value(z, y), theta, l2)

    def _gradient(self, cache, X, r, theta, l2):
        """``(1/n) J^T r + l2 theta`` (H2)."""
        g = self.network.vjp(cache, X, r)  # a fresh array: updated in place below
        g /= X.shape[-2]
        if l2:
            g += l2 * theta
        return g

    def grad_state(self, theta, X, y, l2):
        """Gradient ``(T,) + P`` (H2) and the state that :meth:`hvp_state` needs at the same point
        (the network's cache, the head's curvature state and residuals)."""
        z, cache = self.network.forward(theta, X)
        r, c = self.head.residual(z, y)
        return self._gradient(cache, X, r, theta, l2), (cache, c, r)

    def value_grad(self, theta, X, y, l2):
        """Loss ``(T,)`` and gradient from one forward pass: (H1), (H2)."""
        z, cache = self.network.forward(theta, X)
        value, r = self.head.value_residual(z, y)
        return self._ridge(value, theta, l2), self._gradient(cache, X, r, theta, l2)

    def hvp_state(self, state, X, v, l2):
        """``H v = (1/n) (J^T W (J v) + R[v]) + l2 v`` (H4) at the point ``state`` came from."""
        cache, c, r = state
        Hv = self.network.hvp(cache, X, v, self.head, c, r)  # fresh: updated in place
        Hv /= X.shape[-2]
        if l2:
            Hv += l2 * v
        return Hv

    def hessian_matrix(self, theta, X, y, l2):
        """Explicit Hessian ``(T, P, P)``, parameters flattened row-major: (H3), (H7)."""
        xp = array_namespace(X)
        z, cache = self.network.forward(theta, X)
        r, c = self.head.residual(z, y)
        H = self.network.hessian(cache, X, self.head, c, r) / X.shape[-2]
        if l2:
            H = H + l2 * xp.eye(H.shape[-1], dtype=H.dtype, device=device(H))
        return H

    def predictions(self, theta, X):
        """The head's predictions: probabilities, or the outputs for regression."""
        return self.head.predict(self.network.forward(theta, X)[0])

    def class_probability_matrix(self, theta, X):
        """Class probabilities ``(T, n, C)`` (the logistic head's two classes included)."""
        return self.head.class_probabilities(self.network.forward(theta, X)[0])

    # --------------------------------------------------------------- user API

    def loss(self, theta, X, y, *, l2=0.0):
        """Mean loss over examples plus ``(l2/2)||theta||^2``: ``derivations/models.md`` (H1).

        One task (``X (n, d)``) gives a 0-d array, a stack (``X (T, n, d)``) gives ``(T,)``.
        """
        c = problem.model_call(self, theta, X, y, l2=l2)
        return c.finish(lambda: self.value(c.theta, c.X, c.y, c.l2), "the loss")

    def grad(self, theta, X, y, *, l2=0.0):
        """Gradient of :meth:`loss`, ``theta``'s shape per task: (H2)."""
        c = problem.model_call(self, theta, X, y, l2=l2)
        return c.finish(lambda: self.grad_state(c.theta, c.X, c.y, c.l2)[0], "the gradient")

    def hvp(self, theta, X, y, v, *, l2=0.0):
        """Hessian-vector product ``H(theta) v``: (H4). ``v`` has ``theta``'s shape, or one direction
        per task for a stack."""
        c = problem.model_call(self, theta, X, y, l2=l2, v=v)
        return c.finish(lambda: self.hvp_state(self.grad_state(c.theta, c.X, c.y, c.l2)[1], c.X, c.v, c.l2),
                        "the Hessian-vector product")

    def hessian(self, theta, X, y, *, l2=0.0):
        """Explicit Hessian ``(P, P)`` or ``(T, P, P)``, ``P = theta.size`` per task, ``theta``
        flattened row-major: (H3), (H7). For teaching and tests; MAML never forms it."""
        c = problem.model_call(self, theta, X, y, l2=l2)
        return c.finish(lambda: self.hessian_matrix(c.theta, c.X, c.y, c.l2), "the Hessian")

    def predict(self, theta, X):
        """Probabilities, or the outputs for regression, per example: (H1)."""
        c = problem.model_call(self, theta, X)
        return c.finish(lambda: self.predictions(c.theta, c.X), "the predictions")

    def class_probabilities(self, theta, X):
        """Class probabilities ``(n, C)`` or ``(T, n, C)``, two classes for the logistic head
        (``1 - p``, ``p``); a ValueError for regression: (H6)."""
        if not self.head.classification:
            self.head.class_probabilities(None)
        c = problem.model_call(self, theta, X)
        return c.finish(lambda: self.class_probability_matrix(c.theta, c.X), "the class probabilities")
