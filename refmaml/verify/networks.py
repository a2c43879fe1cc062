"""Networks (``derivations/mlp.md``, ``conv.md``, ``batchnorm.md``): the networks ``refmaml verify``
checks (perceptrons, a network for each image layer, the ConvNet preset), the split of the HVP into
its Gauss-Newton part and the second-order term (N7), and instances kept away from the kinks of ReLU
(N8) and max-pooling (C12)."""

import numpy as np

from .. import backends, check, models
from ..models.layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Tanh
from .identity import Identity
from .instance import Instance

# A tanh network with each head and a ReLU one (instances drawn with every pre-activation at least
# RELU_MARGIN from ReLU's kink, mlp.md (N8)).
VERIFIED = {
    "MLP tanh mse": models.MLP((3, 3, 2), "tanh", "mse"),
    "MLP tanh softmax": models.MLP((3, 3, 3), "tanh", "softmax"),
    "MLP relu logistic": models.MLP((3, 3, 1), "relu", "logistic"),
}
LABELS = {model: dict(hessian="mlp.md (N6)", symmetry="mlp.md (N6)", split="mlp.md (N7)")
          for model in VERIFIED.values()}
# A network for each image layer, on 1x4x4 (or 3-feature) inputs, and the ConvNet preset.
_LAYERED = {
    "Conv2d net": (models.Sequential([Conv2d(1, 1, 3, stride=2, padding=1), Tanh(), Flatten(), Linear(4, 2)],
                                     loss="mse", input_shape=(1, 4, 4)), "conv.md (C4), (C5)", "conv.md (C6), (C7)"),
    "MaxPool2d net": (models.Sequential([Conv2d(1, 1, 2), MaxPool2d(2, stride=1), Flatten(), Linear(4, 3)],
                                        loss="softmax", input_shape=(1, 4, 4)), "conv.md (C10)", "conv.md (C11)"),
    "BatchNorm2d net": (models.Sequential([Conv2d(1, 1, 2), BatchNorm2d(1), Tanh(), Flatten(), Linear(9, 1)],
                                          loss="logistic", input_shape=(1, 4, 4)), "batchnorm.md (B3)",
                        "batchnorm.md (B4), (B5)"),
    "BatchNorm1d net": (models.Sequential([Linear(3, 3), BatchNorm1d(3), Tanh(), Linear(3, 2)], loss="mse",
                                          input_shape=(3,)), "batchnorm.md (B3)", "batchnorm.md (B4), (B5)"),
    "ConvNet preset": (models.ConvNet(2, blocks=1, channels=2, input_shape=(1, 4, 4)), "models.md (H9)",
                       "models.md (H10)-(H12)"),
}
VERIFIED.update({name: model for name, (model, _, _) in _LAYERED.items()})
# The networks of one image layer each are checked on the layer's math: the model's identities and
# MAML's; the variants' (rates, Reptile, iMAML) run on the perceptrons and the preset.
LAYER_ONLY = frozenset(model for name, (model, _, _) in _LAYERED.items() if name != "ConvNet preset")
LABELS.update({model: dict(grad=grad, hvp=hvp, hessian="models.md (H3)", symmetry="models.md (H3)",
                           split="models.md (H12)") for model, grad, hvp in _LAYERED.values()})
# iMAML's proximal weight where the default (10) leaves a proximal minimiser among the kinks of ReLU and
# max-pooling, where Newton's method (which assumes a smooth problem) stalls: the preset's.
PROXIMAL = {VERIFIED["ConvNet preset"]: 300.0}
# Identities (by the start of their name) checked in float64 only for a model: in float32 the preset's
# inner problem stalls at a relative gradient norm of about 1e-5 through batch norm's normalisation,
# above iMAML's tolerance eps^(3/4) = 6.4e-6 (variants.md (V14)).
FLOAT64_ONLY = {VERIFIED["ConvNet preset"]: "iMAML"}
RELU_MARGIN = 1e-3  # mlp.md (N8), conv.md (C12): every kinked input this far from its kink


def _split(p):
    """mlp.md (N7): hvp - hvp(second_order=False) = R[v], the derivative along v of
    theta -> J(theta)^T r at the residuals r held fixed (complex step)."""
    xp, model = p.xp, p.model
    net, head = model.network, model.head
    X = p.X[None, ...]
    y = model.labels(xp, p.device, p.y, p.X, tuple(p.theta.shape), p.theta.dtype, "y")[None, ...]
    hvp = model.grad_hvp(p.theta, X, y, 0.0)[1]
    R = (hvp(p.v) - hvp(p.v, second_order=False)) * X.shape[1]
    z, _ = net.forward(p.theta, X)
    r, _ = head.residual(z, y)
    h = 1e-20
    Xc = xp.astype(X, xp.complex128 if p.theta.dtype == xp.float64 else xp.complex64)
    theta_c = xp.astype(p.theta, Xc.dtype) + (1j * h) * p.v
    _, cache_c = net.forward(theta_c, Xc)
    want = xp.imag(net.vjp(cache_c, xp.astype(r, Xc.dtype))[0]) / h
    return check.relative_error(R, want)


IDENTITIES = [
    Identity("{name} HVP = Gauss-Newton part + second-order term R[v]", "{split}", 1e-12, False, _split,
             applies=lambda model: not model.linear),
]


def kink_free(seed, model):
    """The seed of the instance for ``model``: ``seed`` itself, or for a network with kinks (ReLU,
    max-pooling) the first of ``(seed, 1), (seed, 2), ...`` whose kinked inputs (support set along
    the inner loop, and the query and single-task sets) all stay ``RELU_MARGIN`` from their kinks:
    ReLU's pre-activations from 0, every max-pooling window's two largest entries from each other."""
    if not model.kinks:
        return seed
    numpy, cpu = backends.get("numpy")
    for attempt in range(1000):
        candidate = seed if attempt == 0 else [seed, attempt]
        p = Instance(numpy, cpu, np.dtype("float64"), candidate, model)
        path = p.adapt(p.theta, return_trajectory=True)
        points = [(path[k, ...], p.Xs) for k in range(path.shape[0])] + [(p.theta, p.Xq), (p.theta, p.X[None])]
        smallest = min(p.model.kink_distance(theta, X) for theta, X in points)
        if smallest >= RELU_MARGIN:
            return candidate
    raise RuntimeError(f"no instance of {model!r} keeps its pre-activations {RELU_MARGIN} from 0")
