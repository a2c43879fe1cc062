"""Networks: maps from parameters to outputs, ``derivations/models.md`` (H1)-(H5).

A network has the members of ``refmaml.models.protocol.Network`` (``forward``, ``vjp``, ``jvp``,
``r_vjp``) and of ``NetworkShapes``. The linear network here has ``R = 0`` (H5); it also forms its
explicit Hessian blocks (H7) and, for the dual form (``derivations/dual.md``), reads parameters
and outputs as matrices (``as_matrix``, ``from_matrix``). Nothing checks its inputs; the models
validate once per public call. Networks built from layers are :mod:`refmaml.models.sequential`.
"""

from .._xp import array_namespace


class Linear:
    """``z = X theta`` (H5): ``theta (d,)`` gives one output per example, ``theta (d, C)`` gives
    ``C`` (``param_ndim`` 1 or 2). Flattened row-major, entry ``(a, c)`` of ``theta`` is
    parameter ``a C + c``."""

    linear = True

    def __init__(self, param_ndim, min_outputs=1):
        self.param_ndim = param_ndim
        self.min_outputs = min_outputs

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """One task's parameter shape ``shape`` against ``d`` features; ValueError naming ``name``."""
        if shape[0] != d:
            full = tuple(shape)
            raise ValueError(f"{name} has shape {full} (per task) but {X_name} has {d} features "
                             f"(shape {tuple(X_shape)}); the feature axes must match")
        if self.param_ndim == 2 and shape[-1] < self.min_outputs:
            raise ValueError(
                f"{name} has shape {tuple(shape)}: {shape[-1]} class(es); the softmax model needs at "
                f"least {self.min_outputs} classes (columns)")

    def dimensions(self, shape):
        """``(d, q)``: features and one example's output shape for parameters ``(d,)`` or ``(d, C)``."""
        return shape[0], self.outputs(shape)

    def parameter_shape(self, features, classes):
        return (features,) if self.param_ndim == 1 else (features, classes)

    def outputs(self, shape):
        """Per-example output shape for one task's parameters of shape ``shape``."""
        return tuple(shape[1:])

    def gradient_flops(self, n, d, shape):
        """Floating-point operations of one gradient on ``n`` examples: two products with ``X``,
        ``4 n d q`` (``derivations/maml.md`` (M9))."""
        return 4 * n * d * (shape[1] if len(shape) == 2 else 1)

    def hvp_flops(self, n, d, shape):
        """Operations of one Hessian-vector product: the same two products (M9)."""
        return self.gradient_flops(n, d, shape)

    def describe_outputs(self, shape):
        """For messages: ``C -> "theta has C classes (shape ...)"``."""
        return lambda C: f"theta has {C} classes (shape {tuple(shape)})"

    def forward(self, theta, X):
        """``z = X theta``, ``(T, n) + q`` (H5); the cache is ``X`` itself."""
        return self._apply(X, theta), X

    def _apply(self, X, a):
        if self.param_ndim == 2:
            return X @ a
        return (X @ a[..., None])[..., 0]

    def vjp(self, X, r):
        """``J^T r = X^T r`` per task (H2), (H5); no adjoints to keep."""
        xp = array_namespace(X)
        if self.param_ndim == 2:
            return xp.matrix_transpose(X) @ r, None
        return (xp.matrix_transpose(X) @ r[..., None])[..., 0], None

    def jvp(self, X, v):
        """``J v = X v`` (H5)."""
        return self._apply(X, v), None

    def r_vjp(self, X, adjoints, tangents, u, second_order=True):
        """``X^T u``: exact, since ``R = 0`` (H4), (H5)."""
        return self.vjp(X, u)[0]

    def gauss_newton_matrix(self, X, W):
        """``sum_i (x_i x_i^T) (x) W_i`` for curvature matrices ``W (T, n, q, q)``, ``(T, dq, dq)``
        row-major (H7); not divided by ``n``."""
        xp = array_namespace(X)
        T, n, d = X.shape
        q = W.shape[-1]
        W = xp.permute_dims(W, (0, 2, 3, 1))[..., None]  # (T, q, q, n, 1)
        Xt = xp.matrix_transpose(X)[:, None, None, ...]  # (T, 1, 1, d, n)
        blocks = Xt @ (W * X[:, None, None, ...])  # (T, q, q, d, d), indices (c, e, a, b)
        return xp.reshape(xp.permute_dims(blocks, (0, 3, 1, 4, 2)), (T, d * q, d * q))

    def as_matrix(self, a):
        """Parameters or outputs with their class axis: a trailing axis of length 1 is added
        for one output (the dual form, ``derivations/dual.md``, works with matrices)."""
        return a[..., None] if self.param_ndim == 1 else a

    def from_matrix(self, a):
        """The inverse of :meth:`as_matrix`."""
        return a[..., 0] if self.param_ndim == 1 else a
