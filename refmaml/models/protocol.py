"""The written model protocol: what the MAML code asks of a layer, a network and a loss head.

``derivations/models.md`` writes the gradient and the Hessian-vector product of any network times
head once (H2), (H4); :class:`refmaml.models.Model` composes them from the members below, and
nothing above ``refmaml.models`` calls anything else of a network or a head. The classes are
``typing.Protocol`` s: a user's layer or network needs no base class, only these members
(``tests/test_layers.py`` checks every built-in one against them).

Shapes. Every data array carries a leading task axis ``T`` and an example axis ``n``:
inputs ``X (T, n) + input_shape``, a layer's input ``a (T, n) + in_shape`` and output
``b (T, n) + out_shape``, network outputs ``z (T, n) + q``. Parameters and directions are
``(T,) + P`` (one set per task) or ``P`` (shared by the tasks), a layer's parameters likewise
``(T,) + shape`` or ``shape`` for each of its ``param_shapes``: rules index them from the right
(``c[..., None, :]``) so that both broadcast. Gradients are always ``(T,) + P``. ``P`` is one task's parameter shape: ``(d,)`` or ``(d, C)`` for
the linear network, ``(size,)`` for a network of layers (PyTorch's ``parameters_to_vector``
order).

Ownership (the rules every implementation keeps, and the callers rely on):

1. *Results are fresh.* Every array a member returns as a result (a gradient, ``J^T u + R[v]``,
   an input adjoint, a parameter gradient) is newly allocated and held by nothing else: the
   caller may update it in place. A network or layer never returns an array it keeps, nor a view
   of its inputs, as a result.
2. *Caches are read-only.* What ``forward`` returns besides its outputs (the cache, a layer's
   context) and what ``vjp`` returns besides the gradient (the adjoints) may hold views of
   ``theta``, of ``X`` and of each other; no member writes into them, so one cache serves any
   number of ``vjp``, ``jvp`` and ``r_vjp`` calls in any order. A caller that keeps a cache, the
   adjoints or a Hessian-vector-product closure built from them must not write into ``theta``
   or ``X`` while it does.
3. *Inputs are read-only*, except the one argument that ``r_vjp`` documents as consumed
   (``R_delta``, a fresh array of the caller's that the layer may overwrite).
4. Nothing checks its inputs: :mod:`refmaml.problem` validates once per public call.
"""

from typing import Protocol, runtime_checkable


@runtime_checkable
class Layer(Protocol):
    """One layer ``b = f(a; p)`` with parameters ``p`` (a tuple of arrays, maybe empty).

    The four rules of ``derivations/models.md`` (H8)-(H11) for a layer: the forward pass, the
    vector-Jacobian product to its input and its parameters, the Jacobian-vector product (the
    R-forward pass) and the R-backward term. Parameters come in PyTorch's registration order,
    each ``(T,) + shape`` or ``shape`` (views of ``theta``).
    """

    param_shapes: tuple
    """The shapes of the layer's parameters, one task's, in PyTorch's registration order."""

    def output_shape(self, input_shape):
        """One example's output shape for one example's input shape ``input_shape``; a
        ValueError naming the layer when the input does not fit it."""

    def forward(self, params, a):
        """``(b, ctx)``: the outputs and what the other three rules need at this point (H8)."""

    def vjp(self, params, a, ctx, delta, need_input):
        """``(delta_a, grads)`` for the output adjoint ``delta (T, n) + out_shape``: the input's
        adjoint ``(dL/db) (db/da)`` (None unless ``need_input``) and the parameters' gradients,
        each ``(T,) + shape``, summed over the examples (H9)."""

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = (db/da) a_dot + (db/dp) p_dot``, the R-forward rule (H10); ``a_dot`` is None
        where the input does not depend on the parameters (the network's input), and the result
        is None when neither term exists."""

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``(R{delta_a}, R{grads})``: the directional derivative of :meth:`vjp` along the
        parameters' direction, given the output adjoint ``delta`` of the gradient's backward pass,
        the tangents ``a_dot``, ``p_dot`` of the R-forward pass and ``R_delta = R{delta}``, which
        the layer may overwrite (H11). ``second_order=False`` drops every term that ``delta``
        weights, leaving the Gauss-Newton rule."""

    def init(self, rng):
        """The layer's parameters as PyTorch's default initialisation draws them, one flat
        float64 NumPy array in registration order, from the NumPy generator ``rng``."""

    def spec(self):
        """A JSON-able dict: ``{"layer": <kind>, ...}`` with the constructor's arguments."""


class LayerCosts(Protocol):
    """Cost counts for the speed policy (``derivations/maml.md`` (M9))."""

    def flops(self, n, input_shape):
        """Floating-point operations of the forward pass on ``n`` examples."""


@runtime_checkable
class Network(Protocol):
    """Parameters to outputs, ``z = f(theta, X)``: the math the model composes (H2)-(H5)."""

    linear: bool
    """True when ``z = X theta`` (the dual form applies, and ``R[v] = 0``)."""

    param_ndim: int
    """Axes of one task's parameters: 1 for a flat vector, 2 for the softmax model's ``(d, C)``."""

    def forward(self, theta, X):
        """``(z, cache)``: outputs ``(T, n) + q`` and what the other members need (H1)."""

    def vjp(self, cache, r):
        """``(J^T r, adjoints)``: the parameters' share of the output adjoints ``r (T, n) + q``,
        ``(T,) + P``, summed over the examples (not divided by ``n``), and the adjoints of the
        backward pass, kept for :meth:`r_vjp` (H2)."""

    def jvp(self, cache, v):
        """``(J v, tangents)``: the outputs' directional derivative along ``v ((T,) + P)`` and the
        R-forward pass's tangents, kept for :meth:`r_vjp` (H4)."""

    def r_vjp(self, cache, adjoints, tangents, u, second_order=True):
        """``J^T u + R[v]`` for output-space ``u (T, n) + q`` (the head's curvature times ``J v``),
        ``R[v]`` the network's second-order term along the ``v`` the tangents came from (zero for
        a linear network): one backward pass, summed over the examples (H4), (H5)."""


class NetworkShapes(Protocol):
    """What the argument checks and the speed policy ask of a network (not part of the math)."""

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """Refuse (ValueError naming ``name`` or ``X_name``) one task's parameter shape ``shape``
        that does not fit ``d`` features."""

    def outputs(self, shape):
        """One example's output shape ``q`` for one task's parameter shape ``shape``."""

    def describe_outputs(self, shape):
        """For messages: a function of the class count ``C`` that says where ``C`` comes from."""

    def gradient_flops(self, n, d, shape):
        """Operations of one gradient on ``n`` examples (M9)."""

    def hvp_flops(self, n, d, shape):
        """Operations of one Hessian-vector product on ``n`` examples (M9)."""


@runtime_checkable
class Head(Protocol):
    """A loss on the outputs, per task: ``(1/n) sum_i l(z_i, y_i)`` (H1), (H6)."""

    classification: bool
    targets: str
    """The form of the targets: ``"binary"`` (0/1), ``"classes"`` (integers in ``[0, C)``) or ``"real"``."""

    constant_curvature: bool
    """Whether ``d^2 l / dz^2`` is the same at every ``z`` (mse)."""

    def labels(self, xp, dev, y, shape, outputs, dtype, name, classes_of):
        """Targets checked and converted to the head's form (the one validating member)."""

    def value(self, z, y):
        """Mean over examples of the loss, ``(T,)`` (H1)."""

    def residual(self, z, y):
        """``(r, c)``: ``r = dl/dz`` per example and the state ``c`` that :meth:`curvature` needs (H6)."""

    def value_residual(self, z, y):
        """The value and ``r`` from one evaluation."""

    def curvature(self, c, u):
        """``(d^2 l / dz^2) u`` per example, fresh (H6)."""

    def curvature_matrix(self, c):
        """``d^2 l / dz^2`` as ``(T, n, q, q)`` matrices (H7)."""

    def predict(self, z):
        """Probabilities, or the outputs themselves for regression."""


__all__ = ["Head", "Layer", "LayerCosts", "Network", "NetworkShapes"]
