"""The binary logistic model: what is specific to it (what every model satisfies is in
``test_models.py``).

Values are compared with scipy.special (``expit``, ``log_expit``) as referee; saturated and
well-fitted examples have pinned exact values.
"""

import numpy as np
import pytest
import scipy.special
from hypothesis import given

from refmaml.models import logistic

from . import reference as ref
from .model_cases import LOGISTIC

problems = LOGISTIC.problems


def _per_task(f, theta, X, y):
    return LOGISTIC.per_task(f, theta, X, y)


# ------------------------------------------------------------------ values


@given(problems())
def test_loss_matches_scipy(backend, case):
    """(L2), (L8): the loss equals -mean(y log sigma(z) + (1-y) log sigma(-z)) from scipy's log_expit."""
    theta, X, y, _, l2 = case
    got = logistic.loss(backend.put(theta), backend.put(X), backend.put(y), l2=l2)

    def scipy_loss(th, Xt, yt):
        z = Xt @ th
        bce = -np.mean(yt * scipy.special.log_expit(z) + (1 - yt) * scipy.special.log_expit(-z))
        return bce + 0.5 * l2 * th @ th

    want = _per_task(scipy_loss, theta, X, y)
    # 1e-13: both sides are sums of n + d terms of one sign, each exact to a few ulps.
    assert ref.rel_err(backend.get(got), want) <= 1e-13


@given(problems())
def test_predict_is_sigmoid_of_logits(backend, case):
    """(L1): predict = expit(X theta)."""
    theta, X, y, _, _ = case
    got = backend.get(logistic.predict(backend.put(theta), backend.put(X)))
    want = _per_task(lambda th, Xt, yt: scipy.special.expit(Xt @ th), theta, X, y)
    assert got.shape == want.shape
    assert ref.rel_err(got, want) <= 1e-15 * 10  # elementwise, a few ulps each


# ------------------------------------------------------------------ saturation


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_saturated_logits_give_exact_finite_results(scale, backend):
    """(L8), (L9): logits of +-scale; exact values, no overflow, no warnings (warnings are errors)."""
    theta = backend.put([scale])
    X = backend.put([[1.0], [1.0], [-1.0], [-1.0]])
    y = backend.put([0, 1, 0, 1])
    # terms: softplus(scale), softplus(-scale), softplus(-scale), softplus(scale)
    assert backend.get(logistic.loss(theta, X, y)) == pytest.approx(scale / 2, rel=1e-15)
    # residuals 1, -e^{-scale}, e^{-scale}, -1 times x = 1, 1, -1, -1
    assert backend.get(logistic.grad(theta, X, y)) == pytest.approx([0.5], rel=1e-15)
    H = backend.get(logistic.hessian(theta, X, y))
    assert np.all(np.isfinite(H)) and np.all(H >= 0)
    assert np.all(np.isfinite(backend.get(logistic.hvp(theta, X, y, backend.put([1.0])))))
    p = backend.get(logistic.predict(theta, X))
    assert list(p) == [1.0, 1.0, 0.0, 0.0]


def test_well_fitted_example_keeps_relative_accuracy():
    """(L8), (L9): a correctly classified example with logit 40 has loss and residual e^-40, not 0."""
    got_loss = float(logistic.loss(np.array([40.0]), np.array([[1.0]]), np.array([1])))
    got_grad = float(logistic.grad(np.array([40.0]), np.array([[1.0]]), np.array([1]))[0])
    assert got_loss == pytest.approx(np.log1p(np.exp(-40.0)), rel=1e-15)
    assert got_grad == pytest.approx(-scipy.special.expit(-40.0), rel=1e-15)
