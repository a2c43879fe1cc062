"""Networks built from layers: forward, backpropagation and the R-operator composed once.

``derivations/models.md`` (H8)-(H12): a network ``f = f_L o ... o f_1`` whose layers each give
their four rules (``refmaml.models.protocol.Layer``) is differentiated by running the rules in
order: the forward pass keeps every layer's input and context, the backward pass (H2) runs the
vector-Jacobian products from the top, and the Hessian-vector product (H4) runs the
Jacobian-vector products up (the R-forward pass) and the R-backward terms down, starting from the
head's curvature times ``J v``. Nothing here knows what a layer computes.

:class:`Sequential` is the public model: ``Sequential(layers, loss=..., input_shape=...)`` with a
head from ``refmaml.models.heads``; ``theta`` is one flat vector in the order of PyTorch's
``parameters_to_vector`` of the equivalent ``nn.Sequential`` (per layer its parameters in
registration order, each row-major).
"""

import json
import math

import numpy as np

from .. import _validate, _xp
from .._xp import array_namespace
from . import heads
from .model import Model

HESSIAN_BYTES = 2**30  # an explicit Hessian larger than this (float64) is refused: use hvp


class Layered:
    """The network of a :class:`Sequential`: ``layers`` applied in order to inputs of one
    example's shape ``input_shape``; ``squeeze`` drops an output axis of length 1 (the logistic
    head takes one output per example as ``(T, n)``)."""

    linear = False
    param_ndim = 1

    def __init__(self, layers, input_shape, squeeze, label="the network"):
        self.layers, self.input_shape, self.squeeze = tuple(layers), tuple(input_shape), squeeze
        self.label = label  # for messages
        self.shapes = [self.input_shape]  # one example's input shape of each layer, then the output's
        self.blocks = []  # per layer: (start, stop, shape) of each parameter in theta
        offset = 0
        for layer in self.layers:
            self.shapes.append(tuple(layer.output_shape(self.shapes[-1])))
            block = []
            for shape in layer.param_shapes:
                size = math.prod(shape)
                block.append((offset, offset + size, tuple(shape)))
                offset += size
            self.blocks.append(tuple(block))
        self.size = offset
        # layer l propagates an adjoint to its input only where a layer below it has parameters
        below = [False]
        for block in self.blocks[:-1]:
            below.append(below[-1] or bool(block))
        self.need_input = tuple(below)

    # ----------------------------------------------------------------------- shapes

    def check_parameters(self, shape, d, name, X_name, X_shape):
        """``theta`` must be ``(size,)`` per task, and ``X`` must have ``input_shape`` per example
        (``d``: the number of features, or one example's shape for inputs of several axes)."""
        if tuple(shape) != (self.size,):
            raise ValueError(f"{name} has shape {tuple(shape)} per task; {self.label} has {self.size} "
                             f"parameters: expected ({self.size},)")
        example = tuple(d) if isinstance(d, tuple) else (d,)
        if example != self.input_shape:
            got = f"{d} features" if len(example) == 1 else f"examples of shape {example}"
            raise ValueError(f"{X_name} has {got} (shape {tuple(X_shape)}) but {self.label} takes "
                             f"inputs of shape {self.input_shape}")

    @property
    def input_ndim(self):
        """Axes of one example's input: 1 for feature vectors, 3 for images ``(C, H, W)``."""
        return len(self.input_shape)

    def outputs(self, shape):
        return () if self.squeeze else self.shapes[-1]

    def dimensions(self, shape):
        """``(d, q)``: the input features (one example's input shape, a tuple, for inputs of several
        axes) and one example's output shape (fixed by the layers)."""
        d = self.input_shape[0] if len(self.input_shape) == 1 else self.input_shape
        return d, self.outputs(shape)

    def parameter_shape(self, features, classes):
        return (self.size,)

    @property
    def kinks(self):
        """Whether a layer whose input depends on the parameters has kinks (a ``kink_distance``
        member, as ReLU and max-pooling)."""
        return any(hasattr(layer, "kink_distance") and need for layer, need in zip(self.layers, self.need_input,
                                                                                    strict=True))

    def describe_outputs(self, shape):
        return lambda C: f"{self.label} has {C} classes (outputs)"

    def gradient_flops(self, n, d, shape):
        """The forward pass, the adjoints and the parameters' gradients: three times the layers'
        forward operations (``derivations/mlp.md`` (N9))."""
        return 3 * sum(layer.flops(n, s) for layer, s in zip(self.layers, self.shapes, strict=False))

    def hvp_flops(self, n, d, shape):
        """About twice a gradient (N9)."""
        return 2 * self.gradient_flops(n, d, shape)

    def unflatten(self, theta):
        """Per layer, a tuple of its parameters, views of ``theta (..., size)`` of shape
        ``(...,) + shape``."""
        xp = array_namespace(theta)
        lead = tuple(theta.shape[:-1])
        return [tuple(xp.reshape(theta[..., a:b], lead + shape) for a, b, shape in block)
                for block in self.blocks]

    def _flatten(self, xp, grads):
        """The flat ``(T, size)`` vector of per-layer gradient tuples."""
        parts = [xp.reshape(g, (g.shape[0], -1)) for layer in grads for g in layer]
        return xp.concat(parts, axis=-1)

    # ----------------------------------------------------------------------- the passes

    def forward(self, theta, X):
        """Outputs ``(T, n) + q`` and the cache: each layer's parameters, input and context (H8)."""
        params, inputs, contexts = self.unflatten(theta), [], []
        a = X
        for layer, p in zip(self.layers, params, strict=True):
            inputs.append(a)
            a, ctx = layer.forward(p, a)
            contexts.append(ctx)
        return (a[..., 0] if self.squeeze else a), (params, inputs, contexts)

    def vjp(self, cache, r):
        """``J^T r`` by backpropagation (H9), and the adjoints of every layer's output."""
        params, inputs, contexts = cache
        delta = r[..., None] if self.squeeze else r
        deltas, grads = [None] * len(self.layers), [None] * len(self.layers)
        for l in range(len(self.layers) - 1, -1, -1):
            deltas[l] = delta
            delta, grads[l] = self.layers[l].vjp(params[l], inputs[l], contexts[l], delta, self.need_input[l])
        return self._flatten(array_namespace(r), grads), deltas

    def jvp(self, cache, v):
        """``J v`` by the R-forward pass (H10), and the tangents of every layer's input."""
        params, inputs, contexts = cache
        directions = self.unflatten(v)
        a_dot, tangents = None, []
        for layer, p, a, ctx, p_dot in zip(self.layers, params, inputs, contexts, directions, strict=True):
            tangents.append(a_dot)
            a_dot = layer.jvp(p, a, ctx, a_dot, p_dot)
        return (a_dot[..., 0] if self.squeeze else a_dot), (tangents, directions)

    def r_vjp(self, cache, adjoints, tangents, u, second_order=True, record=None):
        """``J^T u + R[v]`` by the R-backward pass (H11), (H12): ``u`` enters as ``R{delta}`` at the
        top; ``second_order=False`` leaves ``J^T u`` (``derivations/mlp.md`` (N7)). ``record`` (a
        dict, for walk-throughs) receives ``R{delta}`` of every layer's output and its ``R{grads}``
        as ``record[l] = (R_delta, grads)``."""
        params, inputs, contexts = cache
        a_dots, directions = tangents
        R_delta = u[..., None] if self.squeeze else u
        grads = [None] * len(self.layers)
        for l in range(len(self.layers) - 1, -1, -1):
            top = None if record is None else array_namespace(R_delta).asarray(R_delta, copy=True)
            R_delta, grads[l] = self.layers[l].r_vjp(params[l], inputs[l], contexts[l], adjoints[l], a_dots[l],
                                                     directions[l], R_delta, self.need_input[l], second_order)
            if record is not None:
                record[l] = (top, grads[l])
        return self._flatten(array_namespace(u), grads)

    def kink_distances(self, cache):
        """For every layer with kinks (a ``kink_distance`` member) whose input depends on the
        parameters (a layer with parameters below it), how far its inputs are from them,
        ``[(l, (T, n) + shape), ...]``."""
        params, inputs, contexts = cache
        return [(l, layer.kink_distance(inputs[l], contexts[l])) for l, layer in enumerate(self.layers)
                if hasattr(layer, "kink_distance") and self.need_input[l]]


def checked_input_shape(value):
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of positive integers; got {value!r}") from None
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"input_shape must be (features,), (C, L) or (C, H, W); got {shape!r}")
    return tuple(_validate.integer(s, "input_shape", minimum=1) for s in shape)


class Sequential(Model):
    """A network of ``layers`` (objects with the members of ``refmaml.models.protocol.Layer``,
    such as those of :mod:`refmaml.models.layers`) times the loss head ``loss`` (``"mse"``,
    ``"logistic"`` or ``"softmax"``), on inputs of one example's shape ``input_shape``.

    ``theta`` is flat, ``(size,)`` or ``(T, size)``, in PyTorch's parameter order. The ``mse``
    head takes targets ``(..., n, q)``, or ``(..., n)`` for one output; ``logistic`` one output
    per example and labels 0/1; ``softmax`` ``C >= 2`` outputs and integer labels. ``l2`` covers
    every parameter.
    """

    _label = "the network"  # how messages name the network
    _argument = "layers"  # and the argument that sets its size

    def __init__(self, layers, *, loss, input_shape):
        try:
            layers = tuple(layers)
        except TypeError:
            raise TypeError(f"layers must be a sequence of layers; got {layers!r}") from None
        if not layers:
            raise ValueError("layers is empty; a network needs at least one layer")
        if not isinstance(loss, str) or loss not in heads.HEADS:
            raise ValueError(f"loss must be one of {', '.join(map(repr, heads.HEADS))}; got {loss!r}")
        network = Layered(layers, checked_input_shape(input_shape), squeeze=loss == "logistic", label=self._label)
        if network.size == 0:
            raise ValueError("the network has no parameters: give it a layer with parameters (Linear)")
        if network.size > _validate.MAX_PARAMETERS:
            count = network.size if network.size < 10**30 else f"about 10^{int(network.size.bit_length() * 0.30103)}"
            raise ValueError(f"{self._argument} of {self._label} make {count} parameters; a network takes at most "
                             f"{_validate.MAX_PARAMETERS} (800 MB per float64 vector)")
        out = network.shapes[-1]
        if len(out) != 1:
            raise ValueError(f"the last layer gives outputs of shape {out} per example; the heads take "
                             "one axis of outputs (add Flatten())")
        if loss == "logistic" and out != (1,):
            raise ValueError(f"the logistic head takes one output per example; the network gives {out[0]}")
        if loss == "softmax" and out[0] < 2:
            raise ValueError(f"the softmax head needs at least 2 outputs (classes); the network gives {out[0]}")
        super().__init__(self._name(layers, loss, network.input_shape), network, heads.HEADS[loss],
                         equations=dict(outputs="models.md (H8)", residual="models.md (H6)", grad="models.md (H9)",
                                        hvp="models.md (H10)-(H12)", loss="models.md (H1)"))
        self.layers, self.loss_name, self.input_shape = network.layers, loss, network.input_shape
        self.size = network.size

    @staticmethod
    def _name(layers, loss, input_shape):
        return f"Sequential([{', '.join(map(repr, layers))}], loss={loss!r}, input_shape={input_shape})"

    def __repr__(self):
        return self.name

    def spec(self):
        """A JSON-able description: ``{"model": "sequential", "layers": [layer specs], "loss": ...,
        "input_shape": [...]}``; :func:`refmaml.models.from_spec` rebuilds the model."""
        return {"model": "sequential", "layers": [layer.spec() for layer in self.layers],
                "loss": self.loss_name, "input_shape": list(self.input_shape)}

    @property
    def slug(self):
        """``sequential-<8 hex digits of the spec's CRC-32>``: for identifiers."""
        import zlib

        return f"sequential-{zlib.crc32(json.dumps(self.spec(), sort_keys=True).encode()):08x}"

    def __eq__(self, other):
        return isinstance(other, Sequential) and self.spec() == other.spec()

    def __hash__(self):
        return hash(json.dumps(self.spec(), sort_keys=True))

    def random_parameters(self, rng, shape, scale):
        """PyTorch's default initialisation (:meth:`init`) seeded from ``rng``; ``scale`` is unused."""
        return self.init(int(rng.integers(2**31)))

    def init(self, seed):
        """A float64 NumPy vector drawn as PyTorch's default initialisation of each layer, layer
        by layer in the order of (H8) (for ``Linear``, ``derivations/mlp.md`` (N1)); seeded by ``seed``."""
        rng = np.random.default_rng(_validate.integer(seed, "seed"))
        return np.concatenate([np.asarray(layer.init(rng), dtype=np.float64).reshape(-1)
                               for layer in self.layers])

    def _checked(self, theta):
        xp, dev = _xp.namespace(theta=theta)
        theta = _validate.floating(xp, dev, theta, "theta", allow_complex=True, ndims=(1, 2))
        self.network.check_parameters(tuple(theta.shape[-1:]), self.network.dimensions(())[0], "theta", "X",
                                      self.input_shape)
        return theta

    def unflatten(self, theta):
        """One tuple of arrays per layer (empty for a layer without parameters), each of the
        parameter's shape with a leading task axis when ``theta`` has one; views of ``theta`` in
        its own namespace."""
        return self.network.unflatten(self._checked(theta))

    def mask(self, *indices):
        """A boolean NumPy vector ``(size,)``: True on the parameters of the layers ``indices``
        (``inner_mask`` of the MAML functions: ANIL adapts the last layer only)."""
        out = np.zeros(self.size, dtype=bool)
        for i in indices:
            i = _validate.integer(i, "layer index", minimum=-len(self.layers))
            if i >= len(self.layers):
                raise ValueError(f"layer index {i} is out of range: the network has {len(self.layers)} layers")
            for a, b, _ in self.network.blocks[i]:
                out[a:b] = True
        return out

    def hessian(self, theta, X, y, *, l2=0.0):
        """Explicit Hessian ``(P, P)`` or ``(T, P, P)``, ``P = size``: the HVP (H4) of every basis
        vector. Refused (ValueError) when it would take more than 1 GiB in float64: use :meth:`hvp`."""
        lead = 1
        shape = getattr(X, "shape", None)
        if shape is None:  # a nested list: its shape, without converting it
            shape, a = [], X
            while isinstance(a, (list, tuple)) and len(shape) <= 2 + len(self.input_shape):
                shape.append(len(a))
                a = a[0] if len(a) else None
            shape += list(getattr(a, "shape", ()))  # a list of arrays
        if len(shape) == 2 + len(self.input_shape):
            lead = shape[0]
        theta_shape = getattr(theta, "shape", None)
        if theta_shape is None and isinstance(theta, (list, tuple)) and theta and np.ndim(theta[0]) == 1:
            theta_shape = (len(theta), len(theta[0]))  # a list of parameter vectors, one per task
        if theta_shape is not None and len(theta_shape) == 2:  # one parameter vector per task
            lead = max(lead, theta_shape[0])
        need = 8 * lead * self.size * self.size
        if need > HESSIAN_BYTES:
            raise ValueError(f"the explicit Hessian of {self._label} ({lead} x {self.size} x {self.size} "
                             f"float64) would take {need / 2**30:.1f} GiB; use hvp, which never forms it")
        return super().hessian(theta, X, y, l2=l2)
