"""The R-operator is forward-over-reverse, and the Gauss-Newton part of the Hessian is the Hessian of
the linearised network: ``derivations/models.md`` (H13)-(H15).

Every reference is a complex step (``derivations/checks.md`` (D2)): no subtraction, so the only
error is rounding in the two computations compared, about 1e-15 relative for these small networks;
the tolerance 1e-12 leaves three digits of margin and still fails on any wrong term, which moves
the product by far more (each test also checks that the term that tells the two sides apart is
not negligible).
"""

import numpy as np
import pytest

from refmaml import _xp, check
from refmaml.models import MLP

H = 1e-20  # complex step: no cancellation, so any step far below the scale of theta does
TOL = 1e-12  # rounding of both sides, about 1e-15 relative, with margin
HEADS = {"mse": 2, "logistic": 1, "softmax": 3}
L2 = 0.1


def _instance(head, seed=0):
    out = HEADS[head]
    model = MLP((3, 4, out), "tanh", head)
    rng = np.random.default_rng(seed)
    theta = model.init(seed)
    X = rng.standard_normal((6, 3))
    if head == "mse":
        y = rng.standard_normal((6, out))
    elif head == "logistic":
        y = rng.integers(0, 2, 6).astype(float)
    else:
        y = rng.integers(0, out, 6)
    return model, theta, X, y, rng.standard_normal(model.size)


@pytest.mark.parametrize("head", HEADS)
def test_hvp_is_forward_over_reverse(head):
    """(H13): d/dt grad L(theta + t v) at t = 0, the derivative of the backward pass along v (here
    by the complex step through the whole gradient computation), is refmaml's H v."""
    model, theta, X, y, v = _instance(head)
    forward_over_reverse = check.hvp_reference(lambda th: model.grad(th, X, y, l2=L2), theta, v, step=H)
    assert check.relative_error(model.hvp(theta, X, y, v, l2=L2), forward_over_reverse) <= TOL


@pytest.mark.parametrize("head", HEADS)
def test_reverse_over_reverse_gives_the_same_product(head):
    """(H14): the gradient of the scalar theta -> <v, grad L(theta)> is H^T v = H v (H symmetric).
    Its entries here are complex steps of that scalar, one per coordinate."""
    model, theta, X, y, v = _instance(head, seed=1)
    reverse_over_reverse = check.complex_step_gradient(lambda th: v @ model.grad(th, X, y, l2=L2), theta, step=H)
    assert check.relative_error(model.hvp(theta, X, y, v, l2=L2), reverse_over_reverse) <= TOL


def _linearised_gradient(model, theta0, X, y, l2):
    """theta -> the gradient of the linearised loss (H15) at ``theta`` (complex allowed): outputs
    z(theta0) + J (theta - theta0) from refmaml's own R-forward pass (H10), J and the cache frozen
    at theta0, and J^T r from its backward pass (H9) at theta0."""
    net, head = model.network, model.head
    Xt = X[None, ...]
    yt = model.labels(_xp.NUMPY, "cpu", y[None, ...], Xt, (model.size,), np.float64, "y")
    z0, cache = net.forward(theta0, Xt)
    n = X.shape[0]

    def gradient(theta):
        Jd, _ = net.jvp(cache, (theta - theta0)[None, ...])
        r, _ = head.residual(z0 + Jd, yt)
        g, _ = net.vjp(cache, r)
        return g[0] / n + l2 * theta

    return gradient, Xt, yt


@pytest.mark.parametrize("head", HEADS)
def test_gauss_newton_is_the_hessian_of_the_linearised_network(head):
    """(H15): the Hessian of theta -> (1/n) sum_i l(z_i(theta0) + J_i (theta - theta0), y_i)
    + (l2/2)||theta||^2 at theta0, applied to v (the complex step of its gradient along v), is the
    Gauss-Newton product (1/n) J^T W J v + l2 v of refmaml's HVP (hvp(v, second_order=False)), and
    the full HVP is that plus (1/n) R[v] (H4), (H12). The linearised loss's gradient at theta0 is
    the true gradient (the two losses agree to first order)."""
    model, theta0, X, y, v = _instance(head, seed=2)
    gradient, Xt, yt = _linearised_gradient(model, theta0, X, y, L2)
    assert check.relative_error(gradient(theta0), model.grad(theta0, X, y, l2=L2)) <= TOL
    g, hvp = model.grad_hvp(theta0[None, ...], Xt, yt, L2)
    gn = hvp(v[None, ...], second_order=False)[0]
    full = hvp(v[None, ...])[0]
    linearised = np.imag(gradient(theta0 + 1j * H * v)) / H
    assert check.relative_error(gn, linearised) <= TOL
    second_order = full - gn  # (1/n) R[v]: present for the tanh network, so the test tells GN from H
    assert check.norm(second_order) > 1e-3 * check.norm(full)
    assert check.relative_error(full, model.hvp(theta0, X, y, v, l2=L2)) <= TOL
