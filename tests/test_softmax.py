"""The softmax model: what is specific to it (what every model satisfies is in
``test_models.py``): values, the Kronecker structure of the Hessian, the null space of class
shifts and what it does to MAML, the two-class relation to the binary model, saturation.

Tolerances are stated next to each test; ``model_cases.py`` bounds the random inputs.
"""

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis.extra.numpy import arrays

import refmaml
from refmaml.models import logistic, softmax

from . import reference as ref
from .model_cases import SOFTMAX, VALUES

problems = SOFTMAX.problems


def _per_task(f, theta, X, y):
    return SOFTMAX.per_task(f, theta, X, y)


def _grad_scale(theta, X, y, l2):
    return SOFTMAX.grad_scale(theta, X, y, l2)


def _put(backend, *arrays):
    return [backend.put(a) for a in arrays]


# ------------------------------------------------------------------ values


@given(problems())
def test_loss_matches_reference(backend, case):
    """(S2), (S7) against ``reference.softmax_loss``, which pivots on the label, not the largest logit.

    Not scipy.special.log_softmax: it computes ``z - logsumexp(z)`` and cancels for a dominant
    class (logits (9, 0), label 0: relative error 6.5e-13 in the loss ``log1p(e^-9)``).
    """
    theta, X, y, _, l2 = case
    got = softmax.loss(*_put(backend, theta, X, y), l2=l2)
    want = _per_task(lambda th, Xt, yt: ref.softmax_loss(th, Xt, yt, l2), theta, X, y)
    # 1e-13: sums of n + dC terms of one sign, each exact to a few ulps.
    assert ref.rel_err(backend.get(got), want) <= 1e-13


@given(problems())
def test_predict_is_scipy_softmax(backend, case):
    """(S1), (S6): predict = scipy.special.softmax(X theta) row by row, a few ulps elementwise."""
    theta, X, y, _, _ = case
    got = backend.get(softmax.predict(*_put(backend, theta, X)))
    want = _per_task(lambda th, Xt, yt: scipy.special.softmax(Xt @ th, axis=1), theta, X, y)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=1e-14, atol=0)


@given(problems())
def test_hessian_is_the_kronecker_sum(backend, case):
    """(S9): H = (1/n) sum_i kron(x_i x_i^T, diag(p_i) - p_i p_i^T) + l2 I, built with np.kron;
    this pins the row-major flattening order."""
    theta, X, y, _, l2 = case
    H = backend.get(softmax.hessian(*_put(backend, theta, X, y), l2=l2))
    d, C = theta.shape[-2:]

    def kron_sum(th, Xt, yt):
        P = scipy.special.softmax(Xt @ th, axis=1)
        blocks = [np.kron(np.outer(x, x), np.diag(p) - np.outer(p, p)) for x, p in zip(Xt, P, strict=True)]
        return np.mean(blocks, axis=0) + l2 * np.eye(d * C)

    want = _per_task(kron_sum, theta, X, y)
    assert H.shape == want.shape == X.shape[:-2] + (d * C, d * C)
    scale = SOFTMAX.hessian_scale(X, l2, d * C)
    assert ref.rel_err(H, want, floor=1e-3 * scale) <= 1e-12


# ------------------------------------------------------------------ the class-shift null space


@given(problems(), arrays(np.float64, 5, elements=VALUES))
def test_class_shifts_are_the_null_space(backend, case, u_data):
    """(S12): H (u 1^T) = l2 u 1^T, grad(theta + u 1^T) = grad(theta) + l2 u 1^T, and the gradient's
    row sums are l2 theta 1, all to rounding of the terms involved."""
    theta, X, y, _, l2 = case
    d, C = theta.shape[-2:]
    shift = np.broadcast_to(np.repeat(u_data[:d, None], C, axis=1), theta.shape)
    th, Xb, yb = _put(backend, theta, X, y)
    Hs = backend.get(softmax.hvp(th, Xb, yb, backend.put(shift), l2=l2))
    scale = SOFTMAX.hessian_scale(X, l2, 1) * ref.norm(shift)
    assert ref.norm(Hs - l2 * shift) <= 1e-15 * max(scale, 1e-300)
    g = backend.get(softmax.grad(th, Xb, yb, l2=l2))
    g_shifted = backend.get(softmax.grad(backend.put(theta + shift), Xb, yb, l2=l2))
    gscale = _grad_scale(theta, X, y, l2) + _grad_scale(theta + shift, X, y, l2)
    assert ref.norm(g_shifted - g - l2 * shift) <= 1e-14 * gscale
    assert ref.norm(g.sum(axis=-1) - l2 * theta.sum(axis=-1)) <= 1e-14 * gscale


def test_class_shift_leaves_the_loss_unchanged_only_without_ridge():
    """(S12): L(theta + u 1^T) = L(theta) at l2 = 0; with l2 > 0 the ridge term changes."""
    rng = np.random.default_rng(4)
    theta, X, y = rng.standard_normal((3, 4)), rng.standard_normal((6, 3)), rng.integers(0, 4, 6)
    shift = np.repeat(rng.standard_normal((3, 1)), 4, axis=1)
    base = float(softmax.loss(theta, X, y))
    assert float(softmax.loss(theta + shift, X, y)) == pytest.approx(base, rel=1e-14)
    ridge = 0.5 * 0.3 * (np.sum((theta + shift) ** 2) - np.sum(theta ** 2))
    assert float(softmax.loss(theta + shift, X, y, l2=0.3)) == pytest.approx(
        float(softmax.loss(theta, X, y, l2=0.3)) + ridge, rel=1e-13)


def _maml_problem(seed, C, T=4, n=5, m=7, d=3):
    rng = np.random.default_rng(seed)
    return dict(theta=0.5 * rng.standard_normal((d, C)), Xs=rng.standard_normal((T, n, d)),
                ys=rng.integers(0, C, (T, n)), Xq=rng.standard_normal((T, m, d)),
                yq=rng.integers(0, C, (T, m)))


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("K", [0, 1, 5])
def test_meta_gradient_rows_sum_to_zero(backend, K, l2):
    """(S13): the meta-loss is invariant under theta -> theta + u 1^T (the query loss is never
    regularised, so for l2 > 0 too) and every row of the meta-gradient sums to zero.

    Row sums are compared with the sum of the magnitudes of each row (rounding of C terms);
    the invariance of the meta-loss with its value (rounding of the K + 1 steps)."""
    p = _maml_problem(seed=K, C=4)
    kw = dict(inner_lr=0.7, inner_steps=K, l2=l2, model="softmax")
    args = {k: backend.put(v) for k, v in p.items()}
    for first_order in (False, True):
        loss, G = refmaml.meta_value_and_grad(**args, **kw, first_order=first_order)
        G = backend.get(G)
        assert np.all(np.abs(G.sum(axis=1)) <= 1e-14 * np.abs(G).sum(axis=1))
    shift = np.repeat(np.array([[1.5], [-2.0], [0.7]]), 4, axis=1)
    shifted, _ = refmaml.meta_value_and_grad(**{**args, "theta": backend.put(p["theta"] + shift)}, **kw)
    assert abs(float(backend.get(shifted)) - float(backend.get(loss))) <= 1e-14 * float(backend.get(loss))
    # The support loss itself is not invariant when l2 > 0: its row sums are l2 theta 1 (S12).
    g_s = backend.get(softmax.grad(args["theta"], args["Xs"], args["ys"], l2=l2))
    assert np.allclose(g_s.sum(axis=-1), l2 * p["theta"].sum(axis=-1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("l2", [0.0, 0.4])
@pytest.mark.parametrize("K", [0, 1, 2, 7])
@pytest.mark.parametrize("alpha", [-0.3, 0.2, 1.1])
def test_two_classes_equal_the_binary_model(backend, alpha, K, l2):
    """(S14): softmax MAML with C = 2 on [t0, t1] (rate alpha, ridge l2) equals logistic MAML on
    w = t1 - t0 (rate 2 alpha, ridge l2/2): same adapted w, same meta-loss, meta-gradient (-G, G).

    1e-13: the two computations round differently at each of the K steps."""
    p = _maml_problem(seed=20 + K, C=2)
    args = {k: backend.put(v) for k, v in p.items()}
    w = backend.put(p["theta"][:, 1] - p["theta"][:, 0])
    data = [args[k] for k in ("Xs", "ys", "Xq", "yq")]
    for first_order in (False, True):
        L2, G2 = refmaml.meta_value_and_grad(args["theta"], *data, inner_lr=alpha, inner_steps=K,
                                             l2=l2, model="softmax", first_order=first_order)
        L1, G1 = refmaml.meta_value_and_grad(w, *data, inner_lr=2 * alpha, inner_steps=K,
                                             l2=l2 / 2, model="logistic", first_order=first_order)
        G1 = backend.get(G1)
        assert ref.rel_err(backend.get(L2), backend.get(L1)) <= 1e-13
        assert ref.rel_err(backend.get(G2), np.stack([-G1, G1], axis=1)) <= 1e-13
    theta_K = backend.get(refmaml.adapt(args["theta"], args["Xs"], args["ys"], inner_lr=alpha,
                                        inner_steps=K, l2=l2, model="softmax"))
    w_K = backend.get(refmaml.adapt(w, args["Xs"], args["ys"], inner_lr=2 * alpha, inner_steps=K,
                                    l2=l2 / 2))
    assert ref.rel_err(theta_K[..., 1] - theta_K[..., 0], w_K) <= 1e-13


def test_two_class_loss_gradient_and_hessian_are_the_binary_ones():
    """(S14) for one model call, and (S3): for C = 2, W = p0 p1 [[1, -1], [-1, 1]] with
    p0 p1 the binary weight, so the Hessian is kron(H_logistic(w), [[1, -1], [-1, 1]])."""
    rng = np.random.default_rng(8)
    theta, X, y = rng.standard_normal((4, 2)), rng.standard_normal((9, 4)), rng.integers(0, 2, 9)
    w = theta[:, 1] - theta[:, 0]
    assert float(softmax.loss(theta, X, y)) == pytest.approx(float(logistic.loss(w, X, y)), rel=1e-14)
    g = logistic.grad(w, X, y)
    assert ref.rel_err(softmax.grad(theta, X, y), np.stack([-g, g], axis=1)) <= 1e-14
    want = np.kron(logistic.hessian(w, X, y), np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert ref.rel_err(softmax.hessian(theta, X, y), want) <= 1e-14


# ------------------------------------------------------------------ saturation


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_saturated_logits_give_exact_finite_results(scale, backend):
    """(S5)-(S8): logits (s, 0, -s) and their negatives; exact values, no overflow, no warnings."""
    theta = backend.put([[scale, 0.0, -scale]])
    X = backend.put([[1.0], [-1.0]])
    y = backend.put([2, 1])
    # -log p: 2s for the first example (label 2, logit -s against s), s for the second.
    assert backend.get(softmax.loss(theta, X, y)) == pytest.approx(1.5 * scale, rel=1e-15)
    # residuals (1, 0, -1) * 1 and (0, -1, 1) * -1, averaged
    assert np.array_equal(backend.get(softmax.grad(theta, X, y)), [[0.5, 0.5, -1.0]])
    H = backend.get(softmax.hessian(theta, X, y))
    assert np.all(np.isfinite(H))
    assert np.all(np.isfinite(backend.get(softmax.hvp(theta, X, y, backend.put([[1.0, 2.0, 3.0]])))))
    assert np.array_equal(backend.get(softmax.predict(theta, X)), [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_well_fitted_example_keeps_relative_accuracy():
    """(S7), (S8): logits (40, 0, 0) with label 0: loss log1p(2 e^-40) and residual -2 e^-40 / (1 + 2e^-40),
    not 0."""
    theta, X, y = np.array([[40.0, 0.0, 0.0]]), np.array([[1.0]]), np.array([0])
    r = 2 * np.exp(-40.0)
    assert float(softmax.loss(theta, X, y)) == pytest.approx(np.log1p(r), rel=1e-15)
    g = softmax.grad(theta, X, y)[0]
    assert g[0] == pytest.approx(-r / (1 + r), rel=1e-15)
    assert g[1] == g[2] == pytest.approx(np.exp(-40.0) / (1 + r), rel=1e-15)


# ------------------------------------------------------------------ cost


def test_hvp_costs_two_matrix_products(monkeypatch):
    """(S10): the HVP multiplies by X and by X^T once each, and never forms the Hessian."""
    def forbidden(*a, **k):
        raise AssertionError("explicit Hessian formed")

    monkeypatch.setattr(softmax.MODEL, "hessian_matrix", forbidden)
    rng = np.random.default_rng(3)
    X, theta, V = rng.standard_normal((2, 6, 4)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))

    class Counting(np.ndarray):
        products = 0

        def __matmul__(self, other):
            Counting.products += 1
            return np.asarray(self) @ np.asarray(other)

        def __rmatmul__(self, other):
            Counting.products += 1
            return np.asarray(other) @ np.asarray(self)

    hvp = softmax.MODEL.grad_hvp(theta, X.view(Counting), np.eye(3)[rng.integers(0, 3, (2, 6))], 0.1)[1]
    Counting.products = 0
    hvp(V)
    assert Counting.products == 2


@pytest.mark.parametrize("shape", ["class", "parameter"])
def test_class_dependent_rates_break_zero_row_sums_only_with_ridge(shape):
    """(S13): with rates that differ between classes (shape (C,) or (d, C)) the inner loop carries
    a shift u 1^T unchanged when l2 = 0, so the meta-gradient's rows still sum to zero; with
    l2 > 0 the shift of column c shrinks by (1 - alpha_c l2) per step, differently for each class,
    and the row sums are of the order of the gradient (measured 0.055 and 0.050 at l2 = 0.2, 7e-17
    and 1.5e-16 at l2 = 0).
    Measured as ||G 1|| / (sqrt(C) ||G||): 1e-14 is rounding of K + 1 products (as in
    ``refmaml verify``); 1e-2 is far above it and below what a class-dependent decay gives."""
    C, K = 3, 3
    p = _maml_problem(seed=1, C=C)
    d = p["theta"].shape[0]
    rng = np.random.default_rng(2)
    rate = np.array([0.2, 0.5, 0.9]) if shape == "class" else 0.4 * (0.5 + rng.random((d, C)))

    def row_sums(l2):
        _, G = refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=K, l2=l2, model="softmax")
        return np.linalg.norm(G.sum(axis=-1)) / (C ** 0.5 * np.linalg.norm(G))

    assert row_sums(0.0) <= 1e-14
    assert row_sums(0.2) >= 1e-2


def test_curvature_bound_is_one_half_for_softmax():
    """range.md (R3), (R4): lambda_max(H) <= ||X||_2^2 / (2n) + l2 for softmax (Gershgorin on
    W = diag(p) - p p^T: every eigenvalue <= 2 max_c p_c (1 - p_c) <= 1/2), against 1/4 for the
    logistic model. The constant 1/2 is reached at Theta = 0 with C = 2 (p = (1/2, 1/2)), where the
    logistic constant 1/4 is exceeded twice over. Equality to 1e-12 (rounding of an eigensolver);
    the bound with 1e-12 of room."""
    rng = np.random.default_rng(0)
    n, d = 6, 4
    X, y = rng.standard_normal((n, d)), rng.integers(0, 2, n)
    spectral = np.linalg.norm(X, 2) ** 2
    top = np.linalg.eigvalsh(softmax.hessian(np.zeros((d, 2)), X, y, l2=0.0)).max()
    assert top == pytest.approx(spectral / (2 * n), rel=1e-12)
    assert top > 1.99 * spectral / (4 * n)  # 0.768 against the logistic bound's 0.384
    for seed in range(20):
        r = np.random.default_rng(seed)
        C, l2 = int(r.integers(2, 6)), float(r.choice([0.0, 0.3]))
        X, y = r.standard_normal((n, d)), r.integers(0, C, n)
        theta = r.standard_normal((d, C)) * r.choice([0.1, 1.0, 3.0])
        top = np.linalg.eigvalsh(softmax.hessian(theta, X, y, l2=l2)).max()
        assert top <= (np.linalg.norm(X, 2) ** 2 / (2 * n) + l2) * (1 + 1e-12)
