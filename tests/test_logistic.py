"""The binary logistic model against independent references.

Tolerances (relative error ``||a - b|| / max(||b||, floor)``, ``b`` the reference):

* complex step: 1e-12.  The complex step has no subtraction, so it is exact
  to rounding; both sides carry rounding errors of order ``eps`` times the
  sum of the magnitudes of the terms ``S``.  The floor ``1e-3 S`` therefore
  keeps the plain relative error whenever the answer is not a near-total
  cancellation (``||b|| >= 1e-3 S``), and bounds the absolute error by
  ``1e-15 S`` (a few ulps of the terms) when it is.
* central differences: 1e-6, floor ``1e-3 (S + |f|)``: the error model is
  ``eps |f| / h + h^2 |f'''|`` with ``h ~ eps^(1/3)``, about ``4e-11 (|f| + S)``.

Inputs are bounded (features and parameters 0 or of magnitude in [1e-8, 3], l2 in [0, 2]) so that
logits stay below about 60 in magnitude; saturated logits have their own
pinned tests.
"""

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmaml.models import logistic

from . import reference as ref

# Zero, or magnitudes in [1e-8, 3]: a complex step of 1e-20 on a value below about
# 1e-288 leaves the normal range, which is a limit of the reference, not of the code.
VALUES = st.one_of(st.just(0.0), st.floats(1e-8, 3), st.floats(-3, -1e-8))


@st.composite
def problems(draw, batched=None):
    """``(theta, X, y, v, l2)``: one task, or a stack of tasks with shared or per-task theta."""
    d = draw(st.integers(1, 6))
    n = draw(st.integers(1, 8))
    if batched is None:
        batched = draw(st.booleans())
    lead = (draw(st.integers(1, 3)),) if batched else ()
    per_task_theta = batched and draw(st.booleans())
    X = draw(arrays(np.float64, lead + (n, d), elements=VALUES))
    y = draw(arrays(np.bool_, lead + (n,)))
    theta = draw(arrays(np.float64, (lead if per_task_theta else ()) + (d,), elements=VALUES))
    v = draw(arrays(np.float64, theta.shape, elements=VALUES))
    l2 = draw(st.sampled_from([0.0, 0.1, 2.0]))
    return theta, X, y.astype(np.float64), v, l2


def _tasks(theta, X, y):
    """Iterate over (theta_t, X_t, y_t) of a single task or a stack."""
    if X.ndim == 2:
        yield theta, X, y
        return
    for t in range(X.shape[0]):
        yield (theta[t] if theta.ndim == 2 else theta), X[t], y[t]


def _grad_scale(theta, X, y, l2):
    """Sum of magnitudes of the gradient's terms, per task, stacked."""
    out = []
    for th, Xt, yt in _tasks(theta, X, y):
        r = np.abs(scipy.special.expit(Xt @ th) - yt)
        out.append(np.abs(Xt).T @ r / Xt.shape[0] + l2 * np.abs(th))
    return ref.norm(np.array(out))


def _hvp_scale(theta, X, y, v, l2):
    out = []
    vs = v if v.ndim == 2 else [v] * (1 if X.ndim == 2 else X.shape[0])
    for (th, Xt, _), vt in zip(_tasks(theta, X, y), vs, strict=True):
        w = scipy.special.expit(Xt @ th) * scipy.special.expit(-(Xt @ th))
        out.append(np.abs(Xt).T @ (w * np.abs(Xt @ vt)) / Xt.shape[0] + l2 * np.abs(vt))
    return ref.norm(np.array(out))


def _per_task(f, theta, X, y, *args):
    vals = [f(th, Xt, yt, *args) for th, Xt, yt in _tasks(theta, X, y)]
    return vals[0] if X.ndim == 2 else np.stack(vals)


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


# ------------------------------------------------------------------ gradient


@given(problems())
def test_gradient_against_complex_step(backend, case):
    """(L4) against the complex-step derivative of the library's own loss (complex theta)."""
    theta, X, y, _, l2 = case
    Xb, yb = backend.put(X), backend.put(y)
    got = backend.get(logistic.grad(backend.put(theta), Xb, yb, l2=l2))

    def total_loss(th):
        return backend.xp.sum(logistic.loss(backend.put(th), Xb, yb, l2=l2))

    # The summed per-task losses have the stacked per-task gradients as gradient.
    want = ref.complex_step_gradient(lambda th: backend.get(total_loss(th)), theta) \
        if theta.ndim == 2 or X.ndim == 2 else None
    if want is None:  # shared theta over a stack: compare task by task
        want = np.stack([ref.complex_step_gradient(
            lambda th, t=t: backend.get(logistic.loss(backend.put(th), Xb[t, ...], yb[t, ...], l2=l2)),
            theta) for t in range(X.shape[0])])
    assert ref.rel_err(got, want, floor=1e-3 * _grad_scale(theta, X, y, l2)) <= 1e-12


@given(problems(batched=False))
def test_gradient_against_reference_complex_step(case):
    """(L4) against the complex step of the textbook loss in ``reference.py`` (no refmaml code)."""
    theta, X, y, _, l2 = case
    got = logistic.grad(theta, X, y, l2=l2)
    want = ref.complex_step_gradient(lambda th: ref.loss(th, X, y, l2), theta)
    assert ref.rel_err(got, want, floor=1e-3 * _grad_scale(theta, X, y, l2)) <= 1e-12


@given(problems(batched=False))
def test_gradient_against_central_differences(case):
    theta, X, y, _, l2 = case
    got = logistic.grad(theta, X, y, l2=l2)
    want = ref.central_gradient(lambda th: float(logistic.loss(th, X, y, l2=l2)), theta)
    f = abs(float(logistic.loss(theta, X, y, l2=l2)))
    assert ref.rel_err(got, want, floor=1e-3 * (_grad_scale(theta, X, y, l2) + f)) <= 1e-6


# ------------------------------------------------------------------ HVP and Hessian


@given(problems())
def test_hvp_against_complex_step_of_gradient(backend, case):
    """(L11): H v = d/dt grad(theta + t v), by the complex step through the library's gradient."""
    theta, X, y, v, l2 = case
    Xb, yb = backend.put(X), backend.put(y)
    got = backend.get(logistic.hvp(backend.put(theta), Xb, yb, backend.put(v), l2=l2))
    want = ref.complex_step_directional(
        lambda th: backend.get(logistic.grad(backend.put(th), Xb, yb, l2=l2)), theta, v)
    assert ref.rel_err(got, want, floor=1e-3 * _hvp_scale(theta, X, y, v, l2)) <= 1e-12


@given(problems(batched=False))
def test_hvp_against_central_differences_of_gradient(case):
    theta, X, y, v, l2 = case
    got = logistic.hvp(theta, X, y, v, l2=l2)
    h = np.cbrt(np.finfo(float).eps) * max(1.0, ref.norm(theta)) / max(ref.norm(v), 1e-300)
    want = (logistic.grad(theta + h * v, X, y, l2=l2) - logistic.grad(theta - h * v, X, y, l2=l2)) / (2 * h)
    floor = 1e-3 * (_hvp_scale(theta, X, y, v, l2) + _grad_scale(theta, X, y, l2) * ref.norm(v))
    assert ref.rel_err(got, want, floor=floor) <= 1e-6


@given(problems())
def test_hessian_columns_are_hvps_of_basis_vectors(backend, case):
    """(L10) = (L11) applied to e_1..e_d, for every task."""
    theta, X, y, _, l2 = case
    th, Xb, yb = backend.put(theta), backend.put(X), backend.put(y)
    H = backend.get(logistic.hessian(th, Xb, yb, l2=l2))
    d = X.shape[-1]
    lead = X.shape[:-2]
    assert H.shape == lead + (d, d)
    cols = []
    for j in range(d):
        e = np.zeros(lead + (d,))
        e[..., j] = 1.0
        cols.append(backend.get(logistic.hvp(th, Xb, yb, backend.put(e), l2=l2)))
    want = np.stack(cols, axis=-1)
    scale = ref.norm(np.abs(X).swapaxes(-1, -2) @ np.abs(X)) / X.shape[-2] + l2 * d
    assert ref.rel_err(H, want, floor=1e-3 * scale) <= 1e-12


@given(problems(), arrays(np.float64, 6, elements=VALUES))
def test_hvp_is_symmetric(backend, case, u_data):
    """(L12): <u, H v> = <H u, v>, relative to the Cauchy-Schwarz bound."""
    theta, X, y, v, l2 = case
    u = np.resize(u_data, v.shape)
    th, Xb, yb = backend.put(theta), backend.put(X), backend.put(y)
    Hu = backend.get(logistic.hvp(th, Xb, yb, backend.put(u), l2=l2))
    Hv = backend.get(logistic.hvp(th, Xb, yb, backend.put(v), l2=l2))
    gap = abs(np.sum(u * Hv) - np.sum(Hu * v))
    bound = max(ref.norm(u) * ref.norm(Hv), ref.norm(Hu) * ref.norm(v), 1e-300)
    assert gap / bound <= 1e-12


@given(problems())
def test_hessian_is_positive_semidefinite(backend, case):
    """(L12): the eigenvalues are >= l2, up to rounding relative to the largest (scipy.linalg.eigh)."""
    import scipy.linalg

    theta, X, y, _, l2 = case
    H = backend.get(logistic.hessian(backend.put(theta), backend.put(X), backend.put(y), l2=l2))
    for Ht in H.reshape((-1,) + H.shape[-2:]):
        lam = scipy.linalg.eigh(Ht, eigvals_only=True)
        assert lam.min() >= l2 - 1e-12 * max(abs(lam).max(), 1.0)


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


# ------------------------------------------------------------------ batching and shapes


def test_stack_equals_tasks_one_by_one(backend):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 5, 3))
    y = rng.integers(0, 2, (4, 5))
    thetas = rng.standard_normal((4, 3))
    v = rng.standard_normal((4, 3))
    for theta in (thetas, thetas[0]):
        th = backend.put(theta)
        for name, f in (("loss", logistic.loss), ("grad", logistic.grad), ("hessian", logistic.hessian)):
            whole = backend.get(f(th, backend.put(X), backend.put(y), l2=0.3))
            for t in range(4):
                single = backend.get(f(backend.put(theta[t] if theta.ndim == 2 else theta),
                                       backend.put(X[t]), backend.put(y[t]), l2=0.3))
                assert ref.rel_err(whole[t], single) <= 1e-15, name
        hv = backend.get(logistic.hvp(th, backend.put(X), backend.put(y), backend.put(v)))
        for t in range(4):
            single = backend.get(logistic.hvp(backend.put(theta[t] if theta.ndim == 2 else theta),
                                              backend.put(X[t]), backend.put(y[t]), backend.put(v[t])))
            assert ref.rel_err(hv[t], single) <= 1e-15


def test_output_shapes_namespace_and_device(backend):
    X, y, theta = np.ones((2, 3, 4)), np.zeros((2, 3)), np.ones(4)
    th, Xb, yb = backend.put(theta), backend.put(X), backend.put(y)
    shapes = {
        "loss": ((), (2,)), "grad": ((4,), (2, 4)), "hessian": ((4, 4), (2, 4, 4)),
        "predict": ((3,), (2, 3)),
    }
    for name, (single, stacked) in shapes.items():
        f = getattr(logistic, name)
        args = (th, Xb) if name == "predict" else (th, Xb, yb)
        out = f(*args)
        backend.assert_home(out)
        assert tuple(out.shape) == stacked, name
        one = f(*(a[0, ...] if a.ndim == 3 or a is yb else a for a in args))
        assert tuple(one.shape) == single, name
    out = logistic.hvp(th, Xb, yb, th)
    backend.assert_home(out)
    assert tuple(out.shape) == (2, 4)
