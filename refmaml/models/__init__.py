"""Models: a network (parameters -> outputs) times a loss head (outputs -> loss).

``derivations/models.md`` writes the gradient and the Hessian-vector product of any pair once;
:class:`Model` implements them. The registered pairs, each a module with ``loss``, ``grad``,
``hvp``, ``hessian`` and ``predict``:

* :mod:`.logistic`: the linear network with the logistic head, ``theta (d,)``, labels 0/1;
* :mod:`.softmax`: the linear network with the softmax head, ``theta (d, C)``, labels in ``[0, C)``;
* :mod:`.linear`: the linear network with the mse head (linear regression), ``theta (d,)``.

:class:`MLP` builds a multilayer perceptron with any of the three heads, :class:`Sequential` any
network of the layers of :mod:`.layers` (convolution, max-pooling, batch norm), :class:`ConvNet`
the MAML paper's image network in miniature; their objects go wherever a model name does
(``model=MLP((1, 40, 40, 1), "relu", "mse")``).

``model=`` takes a registered name or a :class:`Model` object everywhere.
"""

from . import heads, layers, linear, logistic, networks, protocol, softmax
from .convnet import ConvNet
from .mlp import MLP
from .model import Model
from .sequential import Sequential
from .specs import from_spec

MODELS = {"logistic": logistic.MODEL, "softmax": softmax.MODEL, "linear": linear.MODEL}


def get(model):
    """The :class:`Model` registered under the name ``model``, or ``model`` itself if it is one."""
    if isinstance(model, Model):
        return model
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))} or a refmaml.models.Model "
                         f"object; got {model!r}")
    return MODELS[model]


__all__ = ["ConvNet", "MLP", "Model", "MODELS", "Sequential", "from_spec", "get", "heads", "layers", "linear", "logistic", "networks",
           "protocol", "softmax"]
