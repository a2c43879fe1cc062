"""Numbers behind corrections of derivations/ (the review's E1, E2, E4, E6, E7), each computed here.

Tolerances: the linear-algebra checks are exact to rounding (1e-12); the integral is checked
against SciPy's quadrature (an independent referee), asked for 1e-13 and compared at 1e-12.
"""

import numpy as np
import pytest

import refmaml
from refmaml.models import MLP, linear


def _singular_values_of_S(Hs):
    """S of linear.md (Q8) for two tasks with support Hessians ``Hs`` (n = 2, so (2/n) X^T X = X^T X),
    K = 1, alpha = 1, l2 = 0, X_q = I; its eigenvalues."""
    Xs = np.stack([np.diag(np.sqrt(np.diag(H))) for H in Hs])
    ys = np.zeros((2, 2))
    M, _ = linear.affine_map(Xs, ys, inner_lr=1.0, inner_steps=1)
    S = sum(M[t].T @ M[t] for t in range(2))  # (2/m) X_q^T X_q = I for m = 2
    return M, np.linalg.eigvalsh(S)


def test_E1_a_shared_eigenvalue_is_not_enough_a_shared_eigenvector_is():
    """linear.md after (Q9): diag(1, 3) and diag(3, 1) share the eigenvalue 1 = 1/alpha, each M_t is
    singular, and S = 4I; diag(1, 3) and diag(1, 2) share the eigenvector (1, 0) and S is singular."""
    M, eig = _singular_values_of_S([np.diag([1.0, 3.0]), np.diag([3.0, 1.0])])
    assert all(abs(np.linalg.det(M[t])) < 1e-12 for t in range(2))
    assert np.allclose(eig, [4.0, 4.0], rtol=1e-12, atol=0)
    _, eig = _singular_values_of_S([np.diag([1.0, 3.0]), np.diag([1.0, 2.0])])
    assert np.allclose(eig, [0.0, 5.0], rtol=0, atol=1e-12)
    Xs = np.stack([np.eye(2), np.diag([1.0, np.sqrt(2.0)])])
    with pytest.raises(ValueError, match="no unique minimiser"):
        linear.meta_optimum(Xs, np.ones((2, 2)), np.stack([np.eye(2)] * 2), np.ones((2, 2)), inner_lr=1.0,
                            inner_steps=1)


def test_E2_the_average_sine_is_minus_two_a_bar_over_pi_cos_x():
    """training.md (T13): E[a sin(x - phi)] over a ~ U[0.1, 5], phi ~ U[0, pi] is -(2 a_bar / pi) cos x,
    about -1.62 cos x, by quadrature; not zero."""
    quad = pytest.importorskip("scipy.integrate").quad
    a_bar = (0.1 + 5.0) / 2
    for x in (-4.0, -1.0, 0.0, 0.5, 3.0):
        mean, _ = quad(lambda phi: np.sin(x - phi), 0.0, np.pi, epsabs=1e-13)
        assert abs(a_bar * mean / np.pi - (-2 * a_bar / np.pi * np.cos(x))) <= 1e-12  # quad's own 1e-13
    assert round(2 * a_bar / np.pi, 2) == 1.62


def test_E6_the_weights_are_not_the_smaller_memory_term():
    """mlp.md (N9): for the 1-40-40-1 network with n = 10, |theta| = 1761 and n sum_l d_l = 810 (the
    widths of layers 1..3, whose activations and adjoints the cache holds per example)."""
    model = MLP((1, 40, 40, 1), "relu", "mse")
    assert model.size == 1761 and 10 * sum(model.sizes[1:]) == 810


def test_E4_the_meta_loss_jumps_at_a_kink():
    """mlp.md, ReLU's kinks: with a support pre-activation exactly at 0, the one-step meta-loss
    F = L_q(theta - alpha grad L_s(theta)) of a 1-3-1 ReLU network jumps (by about 1.4e-3 here) as
    the bias crosses it, so its central differences grow like jump / (2 s) (tenfold per tenfold
    smaller s), while those of L_s stay put (L_s is continuous, only kinked)."""
    net = MLP((1, 3, 1), "relu", "mse")
    theta = net.init(0)
    theta[3] = -theta[0] * 0.7  # b_1[0] = -W_1[0] x_0: unit 0's pre-activation on support example 0 is 0
    Xs, ys, Xq, yq = np.array([[0.7], [-1.2]]), np.array([0.5, -0.3]), np.array([[0.4], [1.1]]), np.array([0.2, 0.9])
    e = np.zeros(net.size)
    e[3] = 1.0

    def F(t):
        return float(refmaml.meta_value_and_grad(t, Xs, ys, Xq, yq, inner_lr=0.5, inner_steps=1, model=net)[0])

    jumps = [F(theta + s * e) - F(theta - s * e) for s in (1e-6, 1e-8)]  # the smooth part adds O(s)
    assert abs(jumps[0] - jumps[1]) <= 1e-6 and abs(jumps[1]) > 1e-3
    slopes = [(F(theta + s * e) - F(theta - s * e)) / (2 * s) for s in (1e-4, 1e-5, 1e-6)]
    assert 9 < slopes[1] / slopes[0] < 11 and 9 < slopes[2] / slopes[1] < 11
    flat = [float(net.loss(theta + s * e, Xs, ys) - net.loss(theta - s * e, Xs, ys)) / (2 * s) for s in (1e-4, 1e-6)]
    assert abs(flat[0] - flat[1]) <= 1e-6


def test_E7_a_relu_networks_hessian_is_indefinite_its_gauss_newton_part_is_not():
    """mlp.md (N7): ReLU'' = 0, yet R[v] != 0: the Hessian of a 3-4-3-2 ReLU network under mse has a
    negative eigenvalue while its Gauss-Newton part J^T W J / n is positive semi-definite (to
    rounding, 1e-12 of its largest eigenvalue)."""
    rng = np.random.default_rng(0)
    net = MLP((3, 4, 3, 2), "relu", "mse")
    theta, X, y = net.init(1), rng.standard_normal((1, 8, 3)), rng.standard_normal((1, 8, 2))
    H = net.hessian(theta, X[0], y[0])
    hvp = net.grad_hvp(theta[None], X, y, 0.0)[1]
    G = np.stack([hvp(np.eye(net.size)[j][None], second_order=False)[0] for j in range(net.size)], axis=1)
    h, g = np.linalg.eigvalsh(H), np.linalg.eigvalsh((G + G.T) / 2)
    assert h[0] < -1e-3 * h[-1]
    assert g[0] >= -1e-12 * g[-1]
