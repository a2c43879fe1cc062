"""The edges of the numerical range, derivations/range.md (R1)-(R5): accurate inside, a clear
ValueError outside, never an inf or a NaN."""

import math

import numpy as np
import pytest

import refmaml
from refmaml import check, special
from refmaml.models import logistic, softmax

mpmath = pytest.importorskip("mpmath")  # the 50-digit referee (in the test extra)
mpmath.mp.dps = 50


def _exact(f, z):
    return np.array([float(f(mpmath.mpf(float(v)))) for v in np.ravel(z)]).reshape(np.shape(z))


def test_special_functions_are_accurate_for_every_finite_input():
    """(R1): within 4 eps relative of 50-digit values, from -1e300 to 1e300 (where they are
    not below the smallest subnormal)."""
    z = np.concatenate([-np.logspace(-300, 300, 301), [0.0], np.logspace(-300, 300, 301)])
    sig = _exact(lambda t: 1 / (1 + mpmath.exp(-t)), z)
    sp = _exact(lambda t: mpmath.log1p(mpmath.exp(t)), z)
    for got, want in ((special.sigmoid(z), sig), (special.softplus(z), sp), (special.log_sigmoid(z), -_exact(
            lambda t: mpmath.log1p(mpmath.exp(-t)), z))):
        assert np.all(np.isfinite(got))
        ok = want != 0
        assert np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])) <= 4 * np.finfo(float).eps
    big = np.array([[1e300, 0.0, -1e300], [3.0, 3.0, 3.0]])
    assert np.array_equal(special.softmax(big, axis=-1)[0], [1.0, 0.0, 0.0])
    assert special.logsumexp(big, axis=-1)[0] == 1e300
    with pytest.raises(ValueError, match="z contains NaN or infinity"):
        special.sigmoid(np.array([1.0, np.inf]))


def test_saturated_logits_keep_the_loss_and_gradient_exact():
    """(R2): logits of +-1e300 and +-40: the loss is softplus of the signed logit, exactly, and the
    residual of a saturated, correctly classified example keeps its digits (e^-40, not 0)."""
    X = np.array([[1.0], [-1.0], [1.0], [1.0]])
    y = np.array([1.0, 1.0, 0.0, 1.0])
    theta = np.array([1e300])
    assert logistic.loss(theta, X, y) == pytest.approx((0 + 1e300 + 1e300 + 0) / 4, rel=1e-15)
    g = logistic.grad(theta, X, y)
    assert np.isfinite(g).all() and g[0] == pytest.approx((0 + 1 + 1 + 0) / 4, rel=1e-15)
    theta = np.array([40.0])
    r = logistic.grad(theta, X[:1], y[:1])[0]
    assert r == pytest.approx(-math.exp(-40), rel=1e-14)
    # Softmax: a dominant class of 1e300.
    Xs = np.array([[1.0, 0.0]])
    Th = np.array([[1e300, 0.0, -1e300], [0.0, 0.0, 0.0]])
    assert softmax.loss(Th, Xs, np.array([0])) == 0.0
    assert softmax.loss(Th, Xs, np.array([1])) == pytest.approx(1e300, rel=1e-15)


def test_tiny_features_are_exact_inputs():
    """(R2): features of 1e-300: the loss is log 2 and the gradient X^T(1/2 - y)/n, to 4 eps."""
    rng = np.random.default_rng(0)
    X = 1e-300 * rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6).astype(float)
    theta = rng.standard_normal(3)
    assert logistic.loss(theta, X, y) == pytest.approx(math.log(2), rel=4e-16)
    want = X.T @ (0.5 - y) / 6
    assert check.relative_error(logistic.grad(theta, X, y), want) < 4e-16


@pytest.mark.parametrize("model", ["logistic", "softmax"])
def test_logits_beyond_the_float_range_are_refused(model):
    """(R2) fails: theta 1e300 times features 1e10 -> logits of 1e310."""
    m = logistic if model == "logistic" else softmax
    theta = np.full((2,) if model == "logistic" else (2, 3), 1e300)
    X = np.full((3, 2), 1e10)
    y = np.array([0, 1, 0])
    with pytest.raises(ValueError, match="overflows the floating-point range.*theta, X or l2"):
        m.loss(theta, X, y)
    # The gradient of saturated examples is representable (residuals of 0 or 1): either that
    # exact value or the same error, never an inf or a NaN.
    try:
        g = m.grad(theta, X, y)
    except ValueError as exc:
        assert "overflows the floating-point range" in str(exc)
    else:
        assert np.isfinite(g).all()
        if model == "logistic":
            assert np.array_equal(g, X.T @ (1.0 - y) / 3)  # every logit is +inf: p = 1
    with pytest.raises(ValueError, match="overflows"):
        m.loss(np.full(theta.shape, 1e200), np.full((3, 2), 1e-300), y, l2=1e10)  # the ridge term


def test_a_diverging_inner_loop_is_an_error_that_says_so():
    """(R3): |1 - alpha l2| = 4 per step overflows after about 709 / log 4 = 511 steps."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 5, 4))
    y = rng.integers(0, 2, (3, 5)).astype(float)
    kw = dict(inner_lr=5.0, l2=1.0)
    loss, g = refmaml.meta_value_and_grad(np.ones(4), X, y, X, y, inner_steps=400, **kw)
    assert np.isfinite(g).all() and np.isfinite(float(loss))
    for call in (lambda: refmaml.meta_value_and_grad(np.ones(4), X, y, X, y, inner_steps=600, **kw),
                 lambda: refmaml.adapt(np.ones(4), X, y, inner_steps=600, **kw),
                 lambda: refmaml.reptile_direction(np.ones(4), X, y, inner_steps=600, **kw)):
        with pytest.raises(ValueError, match="inner loop overflowed.*smaller inner_lr or fewer inner_steps"):
            call()
    # A contraction (alpha (l2 + ||X||^2 / 4n) <= 2) never overflows, however many steps.
    L = 1.0 + max(np.linalg.norm(x, 2) ** 2 for x in X) / (4 * 5)
    _, g = refmaml.meta_value_and_grad(np.ones(4), X, y, X, y, inner_lr=2 / L, inner_steps=3000, l2=1.0)
    assert np.isfinite(g).all()


def test_imaml_near_singular_problems_converge_or_say_they_did_not():
    """(R4): separable data, lam down to 1e-12 (kappa about 1e11): converged to tol, or a
    ConvergenceError carrying the residual; never an answer that misses tol silently."""
    Xs = np.array([[[1.0, 0.0], [-1.0, 0.0], [2.0, 0.1]]])
    ys = np.array([[1.0, 0.0, 1.0]])
    for lam in (1e-3, 1e-6, 1e-9, 1e-12):
        try:
            _, g, info = refmaml.imaml_value_and_grad(np.zeros(2), Xs, ys, Xs, ys, lam=lam)
        except refmaml.ConvergenceError as exc:
            assert exc.residual > exc.tolerance
            continue
        assert np.isfinite(g).all()
        assert info["inner_residual"] <= info["tol"] and info["cg_residual"] <= info["tol"]
    with pytest.raises(refmaml.ConvergenceError) as exc:
        refmaml.imaml_value_and_grad(np.zeros(2), Xs, ys, Xs, ys, lam=1e-3, tol=1e-30)
    assert exc.value.residual > 1e-30
    with pytest.raises(ValueError, match="overflows the floating-point range"):
        refmaml.imaml_value_and_grad(np.zeros(2), Xs * 1e300, ys, Xs, ys, lam=1.0, l2=1e300)


def test_difference_checks_refuse_what_they_cannot_represent():
    """(R5): the complex step is exact to rounding at any scale; a function that overflows near x
    is an error naming it."""
    x = np.array([1e100, -3.0])
    got = check.complex_step_gradient(lambda t: np.sum(t * t) / 2, x)
    assert np.array_equal(got, x)
    with pytest.raises(ValueError, match="f returned"):
        check.complex_step_gradient(lambda t: np.sum(t * t * t), np.array([1e200]))
    with pytest.raises(ValueError, match="f returned"):
        check.central_difference_gradient(lambda t: float(np.sum(t)) * 1e300, np.array([1e10]))
