"""Layers for :class:`refmaml.models.Sequential`, one module per kind.

Each layer writes its four rules side by side (``refmaml.models.protocol.Layer``; the forward
pass, the vector-Jacobian product, the Jacobian-vector product and the R-backward term), each
beside its equation label, in PyTorch's parameter layout. A new kind of layer is one module here
(or anywhere: :class:`refmaml.models.Sequential` takes any object with the protocol's members)
and its derivation.

``KINDS`` maps each built-in layer's ``spec()["layer"]`` to its class, for
:func:`refmaml.models.from_spec`.
"""

from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .flatten import Flatten
from .linear import Linear
from .pool import MaxPool2d
from .relu import ReLU
from .tanh import Tanh

KINDS = {"Linear": Linear, "ReLU": ReLU, "Tanh": Tanh, "Conv2d": Conv2d, "MaxPool2d": MaxPool2d,
         "BatchNorm2d": BatchNorm2d, "BatchNorm1d": BatchNorm1d, "Flatten": Flatten}

__all__ = ["KINDS", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Flatten", "Linear", "MaxPool2d", "ReLU", "Tanh"]
