"""Networks (``derivations/mlp.md``): the networks ``refmaml verify`` checks, the split of the HVP
into its Gauss-Newton part and the second-order term (N7), and instances kept away from ReLU's kink
(N8)."""

import numpy as np

from .. import backends, check, models
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
RELU_MARGIN = 1e-3  # mlp.md (N8): every pre-activation this far from ReLU's kink


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
    """The seed of the instance for ``model``: ``seed`` itself, or for a ReLU network the first of
    ``(seed, 1), (seed, 2), ...`` whose pre-activations (support set along the inner loop, and the
    query and single-task sets) all stay ``RELU_MARGIN`` away from 0."""
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
