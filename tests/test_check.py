"""refmaml.check on functions with known derivatives, and on deliberately wrong ones."""

import numpy as np
import pytest
from array_api_compat import array_namespace, device

from refmaml import check


def f(x):
    """A smooth test function with known gradient and Hessian."""
    return (x * x * x)[0] + x[0] * x[-1] + check_sum_sin(x)


def check_sum_sin(x):
    xp = array_namespace(x)
    return xp.sum(xp.sin(x))


def grad_f(x):
    xp = array_namespace(x)
    g = xp.cos(x)
    e0 = xp.asarray([1.0] + [0.0] * (x.shape[0] - 1), device=device(x))
    elast = xp.asarray([0.0] * (x.shape[0] - 1) + [1.0], device=device(x))
    return g + e0 * (3 * x[0] ** 2 + x[-1]) + elast * x[0]


def hvp_f(x, v):
    xp = array_namespace(x)
    n = x.shape[0]
    e0 = xp.asarray([1.0] + [0.0] * (n - 1), device=device(x))
    elast = xp.asarray([0.0] * (n - 1) + [1.0], device=device(x))
    return -xp.sin(x) * v + e0 * (6 * x[0] * v[0] + v[-1]) + elast * v[0]


X0 = np.array([0.3, -1.2, 2.0, 0.7])
V = np.array([1.0, 0.5, -0.25, 2.0])
U = np.array([-0.3, 0.1, 0.9, 1.0])


def test_gradients(backend):
    x = backend.put(X0)
    exact = backend.get(grad_f(x))
    cs = check.complex_step_gradient(f, x)
    cd = check.central_difference_gradient(f, x)
    backend.assert_home(cs)
    backend.assert_home(cd)
    assert np.linalg.norm(backend.get(cs) - exact) <= 1e-15 * np.linalg.norm(exact)
    # central differences: eps^(2/3) ~ 4e-11 of the scale
    assert np.linalg.norm(backend.get(cd) - exact) <= 1e-9 * np.linalg.norm(exact)
    assert check.gradient_error(f, grad_f, x) <= 1e-15
    assert check.gradient_error(f, grad_f, x, method="central") <= 1e-9


def test_directional_and_hvp_checks(backend):
    x, v, u = backend.put(X0), backend.put(V), backend.put(U)
    assert check.directional_error(f, grad_f, x, v) <= 1e-15
    assert check.directional_error(f, grad_f, x, v, method="central") <= 1e-9
    assert check.hvp_error(grad_f, hvp_f, x, v) <= 1e-15
    assert check.hvp_error(grad_f, hvp_f, x, v, method="central") <= 1e-9
    assert check.hvp_symmetry_error(hvp_f, x, u, v) <= 1e-15
    dd = check.directional_derivative(f, x, v)
    backend.assert_home(dd)
    assert dd.shape == ()


def test_wrong_derivatives_are_caught(backend):
    """Each check reports a large error for a derivative with a plausible bug."""
    x, v, u = backend.put(X0), backend.put(V), backend.put(U)
    assert check.gradient_error(f, lambda z: 0.5 * grad_f(z), x) > 0.1
    assert check.directional_error(f, lambda z: grad_f(z) + 0.1, x, v) > 1e-3
    assert check.hvp_error(grad_f, lambda z, w: hvp_f(z, w) * 1.01, x, v) > 1e-3
    xp = backend.xp

    def asymmetric(z, w):
        return hvp_f(z, w) + xp.stack([w[1], xp.zeros_like(w[0]), w[0] * 0, w[0] * 0])

    assert check.hvp_symmetry_error(asymmetric, x, u, v) > 1e-3


def test_relative_error_definition():
    a, b = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 4.0])
    assert check.relative_error(a, b) == pytest.approx(2.0 / np.sqrt(21.0), rel=1e-15)
    assert check.relative_error(b, b) == 0.0
    assert check.relative_error(np.zeros(2), np.zeros(2)) == 0.0
    assert check.relative_error(np.array([1e-200]), np.array([2e-200])) == pytest.approx(0.5)
    assert check.relative_error(np.array([1e200, 1e200]), np.array([2e200, 2e200])) == pytest.approx(0.5)


def test_shape_mismatch_is_not_broadcast():
    with pytest.raises(ValueError, match="shape"):
        check.relative_error(np.ones(3), np.ones((2, 3)))


def test_bad_method_is_rejected():
    with pytest.raises(ValueError, match="method"):
        check.gradient_error(f, grad_f, X0, method="forward")
    with pytest.raises(ValueError, match="method"):
        check.hvp_error(grad_f, hvp_f, X0, V, method="forward")
