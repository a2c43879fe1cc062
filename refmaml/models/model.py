"""A model is a network times a loss head: ``derivations/models.md`` (H1)-(H7).

:class:`Model` writes the loss, the gradient, the Hessian-vector product and the explicit
Hessian of any pair once:

* ``L(theta) = (1/n) sum_i l(z_i(theta), y_i) + (l2/2) ||theta||^2`` (H1);
* ``grad L = (1/n) J^T r + l2 theta`` (H2);
* ``H v = (1/n) (J^T W (J v) + R[v]) + l2 v`` (H4), ``R = 0`` for a linear network (H5).

It carries two sets of methods. The *protocol* (``value``, ``value_grad``, ``grad_hvp``,
``hessian_matrix``, ``predictions``, with ``check_parameters``, ``labels``,
``param_ndim``, ``linear``, ``network`` and ``head``) takes validated arrays with a leading task
axis and checks nothing; it is what :mod:`refmaml.maml`, :mod:`refmaml.dual`, the variants and the
applications call, and it is documented in the README's "Architecture" section. The *user API*
(``loss``, ``grad``, ``hvp``, ``hessian``, ``predict``) validates its arguments through
:func:`refmaml.problem.model_call` and returns per-task results, without the task axis for one task.
"""

import math

from array_api_compat import device

from .. import _validate, problem
from .._xp import array_namespace


class Model:
    """``network`` (parameters -> outputs) times ``head`` (outputs -> loss), registered as ``name``."""

    def __init__(self, name, network, head, equations=None):
        self.name, self.network, self.head = name, network, head
        self.param_ndim = network.param_ndim
        self.linear = network.linear
        # the labels a walk-through cites for this model: outputs, residual, grad, hvp, loss
        self.equations = dict(equations or {})

    def __repr__(self):
        return f"<refmaml model {self.name!r}>"

    def spec(self):
        """A JSON-able description, ``{"model": name}`` for a registered pair;
        :func:`refmaml.models.from_spec` rebuilds the model."""
        return {"model": self.name}

    # --------------------------------------------------------------- capabilities
    # What the tools ask of a model, declared here: they never test its class or its name.

    @property
    def slug(self):
        """A short name for identifiers (test-vector case ids): the registered name."""
        return self.name

    @property
    def targets(self):
        """The form of the targets: ``"binary"`` (0/1), ``"classes"`` (integers) or ``"real"``."""
        return self.head.targets

    @property
    def classification(self):
        return self.head.classification

    @property
    def convex(self):
        """Whether the loss is convex in theta: a linear network under a convex head (every head of
        (H6) is), so that ``H`` is positive semi-definite everywhere (H3)."""
        return self.linear

    @property
    def constant_curvature(self):
        """Whether ``H`` is the same at every theta (a linear network under mse: closed forms)."""
        return self.linear and self.head.constant_curvature

    @property
    def kinks(self):
        """Whether the network has kinks (ReLU): derivatives jump there, and checks keep away."""
        return bool(getattr(self.network, "kinks", False))

    @property
    def input_ndim(self):
        """Axes of one example's input: 1 (features) but for networks of images (3: ``(C, H, W)``)."""
        return getattr(self.network, "input_ndim", 1)

    def dimensions(self, theta_shape):
        """``(features, outputs)``: one example's number of features and output shape for one
        task's parameters of shape ``theta_shape``."""
        return self.network.dimensions(tuple(theta_shape))

    def parameter_shape(self, features, classes):
        """One task's parameter shape for ``features`` inputs and ``classes`` outputs (a network's
        are fixed: both are ignored)."""
        return self.network.parameter_shape(features, classes)

    def random_parameters(self, rng, shape, scale):
        """Parameters of ``shape`` for a random problem, from the NumPy generator ``rng``:
        ``scale`` times standard normal entries."""
        return scale * rng.standard_normal(shape)

    def kink_distance(self, theta, X):
        """The smallest distance of any kinked layer's input from its kink, over the examples of
        ``X (T, n, d)`` at ``theta`` (validated arrays of one namespace), one float (one host read per
        kinked layer); ``inf`` without kinks."""
        if not self.kinks:
            return float("inf")
        xp = array_namespace(X)
        _, cache = self.network.forward(theta, X)
        return min((float(xp.min(d)) for _, d in self.network.kink_distances(cache)), default=float("inf"))

    # --------------------------------------------------------------- protocol: validation

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """Refuse one task's parameter shape ``shape`` if it does not fit ``d`` features."""
        self.network.check_parameters(shape, d, name, X_name, X_shape)

    def labels(self, xp, dev, y, X, theta_shape, dtype, name):
        """Targets ``y`` for the features ``X`` checked and converted to the head's form."""
        return self.head.labels(xp, dev, y, tuple(X.shape[:X.ndim - self.input_ndim]), self.network.outputs(theta_shape), dtype,
                                name, self.network.describe_outputs(theta_shape))

    # --------------------------------------------------------------- protocol: the math

    def _ridge(self, value, theta, l2):
        """``value + (l2/2) sum theta * theta`` (H1): ``theta * theta``, not ``|theta|^2``, keeps it
        analytic for the complex step."""
        if l2:
            xp = array_namespace(theta)
            value = value + (l2 / 2) * xp.sum(theta * theta, axis=tuple(range(-self.param_ndim, 0)))
        return value

    @staticmethod
    def _mean(product, n, l2, theta):
        """``product / n + l2 theta``, updating the fresh ``product`` in place: (H2), (H4)."""
        product /= n
        if l2:
            product += l2 * theta
        return product

    def value(self, theta, X, y, l2):
        """Loss per task ``(T,)``: (H1)."""
        z, _ = self.network.forward(theta, X)
        return self._ridge(self.head.value(z, y), theta, l2)

    def value_grad(self, theta, X, y, l2):
        """Loss ``(T,)`` and gradient ``(T,) + P`` from one forward pass: (H1), (H2)."""
        z, cache = self.network.forward(theta, X)
        value, r = self.head.value_residual(z, y)
        return self._ridge(value, theta, l2), self._mean(self.network.vjp(cache, r)[0], X.shape[1], l2, theta)

    def grad_hvp(self, theta, X, y, l2):
        """The gradient ``(1/n) J^T r + l2 theta`` (H2), ``(T,) + P``, and a function ``hvp(v)``
        that gives ``H v = (1/n) (J^T W (J v) + R[v]) + l2 v`` (H4) at the same point, for any
        number of directions ``v ((T,) + P)``. The gradient and every product are fresh arrays;
        ``hvp`` holds the forward cache (views of ``theta`` and ``X``: neither may be written while
        it is kept). ``hvp(v, second_order=False)`` is the Gauss-Newton product
        ``(1/n) J^T W J v + l2 v`` (``derivations/mlp.md`` (N7))."""
        network, head, n = self.network, self.head, X.shape[1]
        z, cache = network.forward(theta, X)
        r, c = head.residual(z, y)
        g, adjoints = network.vjp(cache, r)

        def hvp(v, second_order=True):
            Jv, tangents = network.jvp(cache, v)
            return self._mean(network.r_vjp(cache, adjoints, tangents, head.curvature(c, Jv), second_order),
                              n, l2, v)

        return self._mean(g, n, l2, theta), hvp

    def hessian_matrix(self, theta, X, y, l2):
        """Explicit Hessian ``(T, P, P)``, parameters flattened row-major: (H3). A linear network
        forms its blocks (H7); any other gives the HVP (H4) of every basis vector, column by column."""
        xp = array_namespace(X)
        n = X.shape[1]
        if self.linear:
            z, cache = self.network.forward(theta, X)
            c = self.head.residual(z, y)[1]
            H = self.network.gauss_newton_matrix(cache, self.head.curvature_matrix(c)) / n
        else:
            hvp = self.grad_hvp(theta, X, y, 0.0)[1]
            size = math.prod(theta.shape[theta.ndim - self.param_ndim:])
            eye = xp.eye(size, dtype=xp.result_type(theta, X), device=device(X))
            shape = (X.shape[0],) + tuple(theta.shape[theta.ndim - self.param_ndim:])
            H = xp.stack([hvp(xp.broadcast_to(xp.reshape(eye[j, ...], shape[1:]), shape))
                          for j in range(size)], axis=-1)
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

    # Each validates (problem.model_call), computes and checks its result in one deferred scope: on a
    # device, every check of values is read once, at the end (refmaml._validate.deferred).

    def loss(self, theta, X, y, *, l2=0.0):
        """Mean loss over examples plus ``(l2/2)||theta||^2``: ``derivations/models.md`` (H1).

        One task (``X (n, d)``) gives a 0-d array, a stack (``X (T, n, d)``) gives ``(T,)``.
        """
        with _validate.deferred():
            c = problem.model_call(self, theta, X, y, l2=l2)
            return c.finish(lambda: self.value(c.theta, c.X, c.y, c.l2), "the loss")

    def grad(self, theta, X, y, *, l2=0.0):
        """Gradient of :meth:`loss`, ``theta``'s shape per task: (H2)."""
        with _validate.deferred():
            c = problem.model_call(self, theta, X, y, l2=l2)
            return c.finish(lambda: self.grad_hvp(c.theta, c.X, c.y, c.l2)[0], "the gradient")

    def hvp(self, theta, X, y, v, *, l2=0.0):
        """Hessian-vector product ``H(theta) v``: (H4). ``v`` has ``theta``'s shape, or one direction
        per task for a stack."""
        with _validate.deferred():
            c = problem.model_call(self, theta, X, y, l2=l2, v=v)
            return c.finish(lambda: self.grad_hvp(c.theta, c.X, c.y, c.l2)[1](c.v), "the Hessian-vector product")

    def hessian(self, theta, X, y, *, l2=0.0):
        """Explicit Hessian ``(P, P)`` or ``(T, P, P)``, ``P = theta.size`` per task, ``theta``
        flattened row-major: (H3), (H7). For teaching and tests; MAML never forms it."""
        with _validate.deferred():
            c = problem.model_call(self, theta, X, y, l2=l2)
            return c.finish(lambda: self.hessian_matrix(c.theta, c.X, c.y, c.l2), "the Hessian")

    def predict(self, theta, X):
        """Probabilities, or the outputs for regression, per example: (H1)."""
        with _validate.deferred():
            c = problem.model_call(self, theta, X)
            return c.finish(lambda: self.predictions(c.theta, c.X), "the predictions")

    def class_probabilities(self, theta, X):
        """Class probabilities ``(n, C)`` or ``(T, n, C)``, two classes for the logistic head
        (``1 - p``, ``p``); a ValueError for regression: (H6)."""
        if not self.head.classification:
            raise ValueError(f"the {self.head.name} head has no classes: accuracy is defined for the logistic "
                             "and softmax heads only")
        with _validate.deferred():
            c = problem.model_call(self, theta, X)
            return c.finish(lambda: self.class_probability_matrix(c.theta, c.X), "the class probabilities")
