"""What every model satisfies: derivatives against independent references, Hessian structure,
batching and shapes.  Run for the binary logistic model (``derivations/logistic.md``), the
softmax model (``derivations/softmax.md``) and linear regression (``derivations/linear.md``):
every pair of a linear network and a loss head (``derivations/models.md`` (H2)-(H7)).

Tolerances (relative error ``||a - b|| / max(||b||, floor)``, ``b`` the reference):

* complex step: 1e-12.  The complex step has no subtraction, so it is exact
  to rounding; both sides carry rounding errors of order ``eps`` times the
  sum of the magnitudes of the terms ``S``.  The floor ``1e-3 S`` therefore
  keeps the plain relative error whenever the answer is not a near-total
  cancellation (``||b|| >= 1e-3 S``), and bounds the absolute error by
  ``1e-15 S`` (a few ulps of the terms) when it is.
* central differences: 1e-6, floor ``1e-3 (S + |f|)``: the error model is
  ``eps |f| / h + h^2 |f'''|`` with ``h ~ eps^(1/3)``, about ``4e-11 (|f| + S)``.

The input ranges are those of ``model_cases.py``.
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from . import reference as ref
from .model_cases import MODELS, VALUES

each_model = pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)


def _put(backend, *arrays):
    return [backend.put(a) for a in arrays]


# ------------------------------------------------------------------ gradient


@each_model
@given(data=st.data())
def test_gradient_against_complex_step(backend, model, data):
    """(L4), (S4) against the complex-step derivative of the library's own loss (complex theta),
    task by task."""
    theta, X, y, _, l2 = data.draw(model.problems())
    f = model.module
    Xb, yb = _put(backend, X, y)
    got = backend.get(f.grad(backend.put(theta), Xb, yb, l2=l2))

    def task_loss(t):
        sl = slice(None) if X.ndim == 2 else t
        return lambda th: backend.get(f.loss(backend.put(th), Xb[sl, ...], yb[sl, ...], l2=l2))

    thetas = [th for th, _, _ in ref.each_task(theta, X, y, model.param_ndim)]
    want = np.stack([ref.complex_step_gradient(task_loss(t), th) for t, th in enumerate(thetas)])
    want = want[0] if X.ndim == 2 else want
    assert ref.rel_err(got, want, floor=1e-3 * model.grad_scale(theta, X, y, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_gradient_against_reference_complex_step(model, data):
    """(L4), (S4) against the complex step of the textbook loss in ``reference.py`` (no refmaml code)."""
    theta, X, y, _, l2 = data.draw(model.problems(batched=False))
    got = model.module.grad(theta, X, y, l2=l2)
    want = ref.complex_step_gradient(lambda th: model.ref_loss(th, X, y, l2), theta)
    assert ref.rel_err(got, want, floor=1e-3 * model.grad_scale(theta, X, y, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_gradient_against_central_differences(model, data):
    theta, X, y, _, l2 = data.draw(model.problems(batched=False))
    f = model.module
    got = f.grad(theta, X, y, l2=l2)
    want = ref.central_gradient(lambda th: float(f.loss(th, X, y, l2=l2)), theta)
    value = abs(float(f.loss(theta, X, y, l2=l2)))
    assert ref.rel_err(got, want, floor=1e-3 * (model.grad_scale(theta, X, y, l2) + value)) <= 1e-6


# ------------------------------------------------------------------ HVP and Hessian


@each_model
@given(data=st.data())
def test_hvp_against_complex_step_of_gradient(backend, model, data):
    """(L11), (S10): H v = d/dt grad(theta + t v), by the complex step through the library's gradient."""
    theta, X, y, v, l2 = data.draw(model.problems())
    f = model.module
    Xb, yb = _put(backend, X, y)
    got = backend.get(f.hvp(backend.put(theta), Xb, yb, backend.put(v), l2=l2))
    want = ref.complex_step_directional(
        lambda th: backend.get(f.grad(backend.put(th), Xb, yb, l2=l2)), theta, v)
    assert ref.rel_err(got, want, floor=1e-3 * model.hvp_scale(theta, X, y, v, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_hvp_against_reference_complex_step(model, data):
    """(L11), (S10) against the complex step of the textbook gradient in ``reference.py``."""
    theta, X, y, v, l2 = data.draw(model.problems(batched=False))
    got = model.module.hvp(theta, X, y, v, l2=l2)
    want = ref.complex_step_directional(lambda th: model.ref_grad(th, X, y, l2), theta, v)
    assert ref.rel_err(got, want, floor=1e-3 * model.hvp_scale(theta, X, y, v, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_hvp_against_central_differences_of_gradient(model, data):
    theta, X, y, v, l2 = data.draw(model.problems(batched=False))
    f = model.module
    got = f.hvp(theta, X, y, v, l2=l2)
    h = np.cbrt(np.finfo(float).eps) * max(1.0, ref.norm(theta)) / max(ref.norm(v), 1e-300)
    want = (f.grad(theta + h * v, X, y, l2=l2) - f.grad(theta - h * v, X, y, l2=l2)) / (2 * h)
    floor = 1e-3 * (model.hvp_scale(theta, X, y, v, l2) + model.grad_scale(theta, X, y, l2) * ref.norm(v))
    assert ref.rel_err(got, want, floor=floor) <= 1e-6


@each_model
@given(data=st.data())
def test_hessian_columns_are_hvps_of_basis_vectors(backend, model, data):
    """(L10) = (L11) and (S9) = (S10) applied to each basis direction, in row-major order."""
    theta, X, y, _, l2 = data.draw(model.problems())
    f = model.module
    th, Xb, yb = _put(backend, theta, X, y)
    H = backend.get(f.hessian(th, Xb, yb, l2=l2))
    shape = theta.shape[theta.ndim - model.param_ndim:]
    size = int(np.prod(shape))
    lead = X.shape[:-2]
    assert H.shape == lead + (size, size)
    cols = []
    for j in range(size):
        e = np.zeros(lead + (size,))
        e[..., j] = 1.0
        Hv = f.hvp(th, Xb, yb, backend.put(e.reshape(lead + shape)), l2=l2)
        cols.append(backend.get(Hv).reshape(lead + (size,)))
    want = np.stack(cols, axis=-1)
    assert ref.rel_err(H, want, floor=1e-3 * model.hessian_scale(X, l2, size)) <= 1e-12


@each_model
@given(data=st.data(), u_data=arrays(np.float64, 20, elements=VALUES))
def test_hvp_is_symmetric(backend, model, data, u_data):
    """(L12), (S11): <u, H v> = <H u, v>.

    Relative to the Cauchy-Schwarz bound of both products, or, when u and v both lie in a null
    space (the softmax class shifts, (S12)) and H u, H v are rounding noise, to ||u|| ||v|| times
    the scale of H's entries, the scale of that rounding."""
    theta, X, y, v, l2 = data.draw(model.problems())
    f = model.module
    u = np.resize(u_data, v.shape)
    th, Xb, yb = _put(backend, theta, X, y)
    Hu = backend.get(f.hvp(th, Xb, yb, backend.put(u), l2=l2))
    Hv = backend.get(f.hvp(th, Xb, yb, backend.put(v), l2=l2))
    gap = abs(np.sum(u * Hv) - np.sum(Hu * v))
    bound = max(ref.norm(u) * ref.norm(Hv), ref.norm(Hu) * ref.norm(v),
                ref.norm(u) * ref.norm(v) * model.hessian_scale(X, l2, 1), 1e-300)
    assert gap / bound <= 1e-12


@each_model
@given(data=st.data())
def test_hessian_is_positive_semidefinite(backend, model, data):
    """(L12), (S11): the eigenvalues are >= l2, up to rounding relative to the largest (scipy.linalg.eigh)."""
    theta, X, y, _, l2 = data.draw(model.problems())
    H = backend.get(model.module.hessian(*_put(backend, theta, X, y), l2=l2))
    for Ht in H.reshape((-1,) + H.shape[-2:]):
        lam = scipy.linalg.eigh(Ht, eigvals_only=True)
        assert lam.min() >= l2 - 1e-12 * max(abs(lam).max(), 1.0)


# ------------------------------------------------------------------ batching and shapes


def _labels(model, rng, shape):
    if model.classes == "real":
        return rng.standard_normal(shape)
    return rng.integers(0, 2 if model.classes is None else 3, shape)


@each_model
def test_stack_equals_tasks_one_by_one(backend, model):
    rng = np.random.default_rng(1)
    f = model.module
    shape = (3,) if model.param_ndim == 1 else (3, 3)
    X, y = rng.standard_normal((4, 5, 3)), _labels(model, rng, (4, 5))
    thetas, V = rng.standard_normal((4,) + shape), rng.standard_normal((4,) + shape)
    for theta in (thetas, thetas[0]):
        def one(t, theta=theta):
            return backend.put(theta[t] if theta.ndim > model.param_ndim else theta)

        th = backend.put(theta)
        for name in ("loss", "grad", "hessian"):
            whole = backend.get(getattr(f, name)(th, backend.put(X), backend.put(y), l2=0.3))
            for t in range(4):
                single = backend.get(getattr(f, name)(one(t), backend.put(X[t]), backend.put(y[t]), l2=0.3))
                assert ref.rel_err(whole[t], single) <= 1e-15, name
        hv = backend.get(f.hvp(th, backend.put(X), backend.put(y), backend.put(V)))
        for t in range(4):
            single = backend.get(f.hvp(one(t), backend.put(X[t]), backend.put(y[t]), backend.put(V[t])))
            assert ref.rel_err(hv[t], single) <= 1e-15


@each_model
def test_output_shapes_namespace_and_device(backend, model):
    f = model.module
    P = (4,) if model.param_ndim == 1 else (4, 5)
    size = int(np.prod(P))
    probs = (3,) if model.param_ndim == 1 else (3, 5)
    X, y, theta = np.ones((2, 3, 4)), np.zeros((2, 3), dtype=int), np.ones(P)
    th, Xb, yb = _put(backend, theta, X, y)
    shapes = {
        "loss": ((), (2,)), "grad": (P, (2,) + P), "hessian": ((size, size), (2, size, size)),
        "predict": (probs, (2,) + probs),
    }
    for name, (single, stacked) in shapes.items():
        fn = getattr(f, name)
        args = (th, Xb) if name == "predict" else (th, Xb, yb)
        out = fn(*args)
        backend.assert_home(out)
        assert tuple(out.shape) == stacked, name
        one = fn(*(a[0, ...] if a.ndim == 3 or a is yb else a for a in args))
        assert tuple(one.shape) == single, name
    out = f.hvp(th, Xb, yb, th)
    backend.assert_home(out)
    assert tuple(out.shape) == (2,) + P
