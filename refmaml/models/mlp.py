"""Multilayer perceptrons: ``derivations/mlp.md`` (N1)-(N9).

``MLP(sizes, activation, loss)`` is the preset ``Sequential([Linear(d_in, h_1), act, ...,
Linear(h_L, d_out)], loss=loss, input_shape=(d_in,))`` (:mod:`refmaml.models.sequential`): fully
connected layers ``z_l = W_l h_{l-1} + b_l`` with ``activation`` after every layer but the last,
and one of the heads of ``refmaml.models.heads`` (``mse``, ``logistic``, ``softmax``).

The parameters are one flat vector ``theta`` of length ``model.size`` (or ``(T, size)``, one per
task), in the order of PyTorch's ``parameters_to_vector(nn.Sequential(Linear, act, ..., Linear)
.parameters())``: per layer the weight ``(out, in)`` row-major, then the bias ``(out,)``. So
``torch.nn.utils.vector_to_parameters`` loads ``theta`` into the equivalent ``nn.Sequential``.

The layers write the forward pass (N1), backpropagation (N2)-(N3) and the R-operator (N4)-(N6)
(:mod:`refmaml.models.layers`); :class:`refmaml.models.Sequential` composes them, and the split
into the Gauss-Newton part and the network's second-order term is (N7); ReLU'(0) = 0 as in
PyTorch (N8).
"""

import numbers
import operator

import numpy as np

from . import heads
from .layers import Linear, ReLU, Tanh
from .sequential import Sequential

ACTIVATIONS = {"tanh": Tanh, "relu": ReLU}


def _sizes(sizes):
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of layer widths (d_in, h_1, ..., d_out); got {sizes!r}") \
            from None
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least two entries (d_in, ..., d_out); got {sizes!r}")
    out = []
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"sizes must hold positive integers; got {s!r} in {sizes!r}")
        s = operator.index(s)
        if s < 1:
            raise ValueError(f"sizes must hold positive integers; got {s} in {sizes!r}")
        out.append(s)
    return tuple(out)


class MLP(Sequential):
    """A multilayer perceptron with a loss head (``derivations/mlp.md``).

    ``sizes = (d_in, h_1, ..., d_out)`` (at least two entries); ``activation`` is ``"tanh"`` or
    ``"relu"``, after every layer but the last; ``loss`` is ``"mse"`` (targets ``(..., n, d_out)``,
    or ``(..., n)`` when ``d_out = 1``), ``"logistic"`` (``d_out = 1``, labels 0/1) or
    ``"softmax"`` (``d_out = C >= 2``, integer labels). ``theta`` is flat, ``(size,)`` or
    ``(T, size)``, in PyTorch's parameter order. ``l2`` covers every parameter, biases included.
    """

    _label = "the MLP"
    _argument = "sizes"

    def __init__(self, sizes, activation="tanh", loss="mse"):
        sizes = _sizes(sizes)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {activation!r}")
        if not isinstance(loss, str) or loss not in heads.HEADS:
            raise ValueError(f"loss must be one of {', '.join(map(repr, heads.HEADS))}; got {loss!r}")
        if loss == "logistic" and sizes[-1] != 1:
            raise ValueError(f"the logistic head takes one output per example: sizes must end in 1; got {sizes}")
        if loss == "softmax" and sizes[-1] < 2:
            raise ValueError(f"the softmax head needs at least 2 outputs (classes): sizes must end in C >= 2; "
                             f"got {sizes}")
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        super().__init__(layers[:-1], loss=loss, input_shape=(sizes[0],))
        self.sizes, self.activation = sizes, activation
        self.name = f"MLP({sizes}, {activation!r}, {loss!r})"
        self.equations = dict(outputs="mlp.md (N1)", residual="models.md (H6)", grad="mlp.md (N2), (N3)",
                              hvp="mlp.md (N4)-(N6)", loss="models.md (H1)")

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, activation={self.activation!r}, loss={self.loss_name!r})"

    @property
    def slug(self):
        """``mlp-1x40x40x1-relu-mse``: for identifiers."""
        return f"mlp-{'x'.join(map(str, self.sizes))}-{self.activation}-{self.loss_name}"

    def spec(self):
        """``{"model": "mlp", "sizes": [...], "activation": ..., "loss": ...}``."""
        return {"model": "mlp", "sizes": list(self.sizes), "activation": self.activation, "loss": self.loss_name}

    def __eq__(self, other):
        return isinstance(other, MLP) and self.spec() == other.spec()

    def __hash__(self):
        return hash((MLP, self.sizes, self.activation, self.loss_name))

    def unflatten(self, theta):
        """``[(W, b), ...]``: each layer's weight ``(out, in)`` and bias ``(out,)`` of (N1), with a
        leading task axis when ``theta`` has one; views of ``theta`` in its own namespace."""
        return [params for params in super().unflatten(theta) if params]
