"""Numbers behind corrections of derivations/ (the review's E1, E2, E6), each computed here.

Tolerances: the linear-algebra checks are exact to rounding (1e-12); the integral is checked
against SciPy's quadrature (an independent referee), asked for 1e-13 and compared at 1e-12.
"""

import numpy as np
import pytest

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
