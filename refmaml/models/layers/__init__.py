"""Layers for :class:`refmaml.models.Sequential`, one module per kind.

Each layer writes its four rules side by side (``refmaml.models.protocol.Layer``; the forward
pass, the vector-Jacobian product, the Jacobian-vector product and the R-backward term), each
beside its equation label, in PyTorch's parameter layout. A new kind of layer is one module here
(or anywhere: :class:`refmaml.models.Sequential` takes any object with the protocol's members)
and its derivation.

``KINDS`` maps each built-in layer's ``spec()["layer"]`` to its class, for
:func:`refmaml.models.from_spec`.
"""

from .linear import Linear
from .relu import ReLU
from .tanh import Tanh

KINDS = {"Linear": Linear, "ReLU": ReLU, "Tanh": Tanh}

__all__ = ["KINDS", "Linear", "ReLU", "Tanh"]
