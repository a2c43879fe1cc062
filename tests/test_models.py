"""What every model satisfies: derivatives against independent references, Hessian structure,
batching and shapes.  Run for every case of ``model_cases.MODELS``: the binary logistic model
(``derivations/logistic.md``), the softmax model (``derivations/softmax.md``) and linear
regression (``derivations/linear.md``), every pair of a linear network and a loss head
(``derivations/models.md`` (H2)-(H7)); MLPs with tanh and with ReLU under each of the three heads
and a Sequential network (``derivations/mlp.md``, (H8)-(H12)).  A new model is tested by adding its
case there: its problems, its textbook loss and gradient, its scales.

Tolerances (relative error ``||a - b|| / max(||b||, floor)``, ``b`` the reference):

* complex step: 1e-12.  The complex step has no subtraction, so it is exact
  to rounding; both sides carry rounding errors of order ``eps`` times the
  sum of the magnitudes of the terms ``S``.  The floor ``1e-3 S`` therefore
  keeps the plain relative error whenever the answer is not a near-total
  cancellation (``||b|| >= 1e-3 S``), and bounds the absolute error by
  ``1e-15 S`` (a few ulps of the terms) when it is.
* central differences: 1e-6, floor ``1e-3 (S + |f|)``: the error model is
  ``eps |f| / h + h^2 |f'''|`` with ``h ~ eps^(1/3)``, about ``4e-11 (|f| + S)``.

``S`` is derived for each model in ``model_cases.py`` (the sum of the magnitudes of the terms:
from ``z = X theta`` for the linear models, from backpropagation and the R-operator run on the
magnitudes of every operand for the networks), as are the input ranges.  On ReLU networks every
derivative is taken on one branch: the problems keep every pre-activation ``1e-3`` from its kink,
and the central differences move none by more than a tenth of that (checked on each problem).
Measured on the networks' problems of the ``ci`` profile: complex-step errors at most 6e-15 and
central-difference errors at most 3e-8, with the floor ``1e-3 S`` at most 5e-2 of ``||b||``
(median 1.3e-3): the errors are judged relative to the answer, with two orders to spare.
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refmaml

from . import reference as ref
from .conftest import BACKENDS
from .model_cases import MODELS, VALUES

each_model = pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
# Every model on NumPy; off NumPy every linear model, and of the networks the ReLU MLP with the
# softmax head and the Sequential case (tanh, ReLU, mse): every layer and the three heads (the
# logistic one through the logistic model) on every backend.  A network's array operations do not
# depend on its head and activations beyond those, and each of its cases off NumPy costs a product
# per parameter several times slower through array-api-strict: they are marked slow.
ON_EVERY_BACKEND = {"mlp-relu-softmax", "sequential-tanh-relu-mse"}
assert ON_EVERY_BACKEND <= {case.name for case in MODELS}
each_model_on_each_backend = pytest.mark.parametrize("backend, model", [
    pytest.param(value, case, id=f"{name}-{case.name}",
                 marks=[pytest.mark.slow] if name != "numpy" and not case.model.linear else [])
    for name, value in BACKENDS.items() for case in MODELS
    if name == "numpy" or case.model.linear or case.name in ON_EVERY_BACKEND], indirect=["backend"])


def _put(backend, *arrays):
    return [backend.put(a) for a in arrays]


# ------------------------------------------------------------------ gradient


@each_model_on_each_backend
@given(data=st.data())
def test_gradient_against_complex_step(backend, model, data):
    """(L4), (S4) against the complex-step derivative of the library's own loss (complex theta),
    task by task."""
    theta, X, y, _, l2 = data.draw(model.problems())
    f = model.api
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
    got = model.api.grad(theta, X, y, l2=l2)
    want = ref.complex_step_gradient(lambda th: model.ref_loss(th, X, y, l2), theta)
    assert ref.rel_err(got, want, floor=1e-3 * model.grad_scale(theta, X, y, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_gradient_against_central_differences(model, data):
    theta, X, y, _, l2 = data.draw(model.problems(batched=False))
    assert model.central_steps_stay_on_one_branch(theta, X)
    f = model.api
    got = f.grad(theta, X, y, l2=l2)
    want = ref.central_gradient(lambda th: float(f.loss(th, X, y, l2=l2)), theta)
    value = abs(float(f.loss(theta, X, y, l2=l2)))
    assert ref.rel_err(got, want, floor=1e-3 * (model.grad_scale(theta, X, y, l2) + value)) <= 1e-6


# ------------------------------------------------------------------ HVP and Hessian


@each_model_on_each_backend
@given(data=st.data())
def test_hvp_against_complex_step_of_gradient(backend, model, data):
    """(L11), (S10): H v = d/dt grad(theta + t v), by the complex step through the library's gradient."""
    theta, X, y, v, l2 = data.draw(model.problems())
    f = model.api
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
    got = model.api.hvp(theta, X, y, v, l2=l2)
    want = ref.complex_step_directional(lambda th: model.ref_grad(th, X, y, l2), theta, v)
    assert ref.rel_err(got, want, floor=1e-3 * model.hvp_scale(theta, X, y, v, l2)) <= 1e-12


@each_model
@given(data=st.data())
def test_hvp_against_central_differences_of_gradient(model, data):
    theta, X, y, v, l2 = data.draw(model.problems(batched=False))
    assert model.central_steps_stay_on_one_branch(theta, X, v)
    f = model.api
    got = f.hvp(theta, X, y, v, l2=l2)
    h = np.cbrt(np.finfo(float).eps) * max(1.0, ref.norm(theta)) / max(ref.norm(v), 1e-300)
    want = (f.grad(theta + h * v, X, y, l2=l2) - f.grad(theta - h * v, X, y, l2=l2)) / (2 * h)
    floor = 1e-3 * (model.hvp_scale(theta, X, y, v, l2) + model.grad_scale(theta, X, y, l2) * ref.norm(v))
    assert ref.rel_err(got, want, floor=floor) <= 1e-6


@each_model_on_each_backend
@given(data=st.data())
def test_hessian_columns_are_hvps_of_basis_vectors(backend, model, data):
    """(L10) = (L11) and (S9) = (S10) applied to each basis direction, in row-major order."""
    theta, X, y, _, l2 = data.draw(model.problems())
    f = model.api
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
    assert ref.rel_err(H, want, floor=1e-3 * model.curvature_scale(theta, X, y, l2, size)) <= 1e-12


@each_model_on_each_backend
@given(data=st.data(), u_data=arrays(np.float64, 20, elements=VALUES))
def test_hvp_is_symmetric(backend, model, data, u_data):
    """(L12), (S11): <u, H v> = <H u, v>.

    Relative to the Cauchy-Schwarz bound of both products, or, when u and v both lie in a null
    space (the softmax class shifts, (S12)) and H u, H v are rounding noise, to ||u|| ||v|| times
    the scale of H's entries, the scale of that rounding."""
    theta, X, y, v, l2 = data.draw(model.problems())
    f = model.api
    u = np.resize(u_data, v.shape)
    th, Xb, yb = _put(backend, theta, X, y)
    Hu = backend.get(f.hvp(th, Xb, yb, backend.put(u), l2=l2))
    Hv = backend.get(f.hvp(th, Xb, yb, backend.put(v), l2=l2))
    gap = abs(np.sum(u * Hv) - np.sum(Hu * v))
    bound = max(ref.norm(u) * ref.norm(Hv), ref.norm(Hu) * ref.norm(v),
                ref.norm(u) * ref.norm(v) * model.curvature_scale(theta, X, y, l2, 1), 1e-300)
    assert gap / bound <= 1e-12


@each_model_on_each_backend
@given(data=st.data())
def test_hessian_is_positive_semidefinite(backend, model, data):
    """(L12), (S11): the eigenvalues are >= l2, up to rounding relative to the largest (scipy.linalg.eigh).

    A network's loss is not convex; its Gauss-Newton part ``J^T W J / n + l2 I`` (H4),
    ``hvp(..., second_order=False)``, is, and is tested in its place (formed column by column)."""
    theta, X, y, _, l2 = data.draw(model.problems())
    if model.model.convex:
        H = backend.get(model.api.hessian(*_put(backend, theta, X, y), l2=l2))
    else:
        Xt = X if X.ndim == 3 else X[None]
        yt = model.model.labels(refmaml._xp.NUMPY, "cpu", y if X.ndim == 3 else y[None], Xt,
                                (model.model.size,), np.float64, "y")
        hvp = model.model.grad_hvp(theta, Xt, yt, l2)[1]
        H = np.stack([hvp(np.broadcast_to(e, (Xt.shape[0], e.size)), second_order=False)
                      for e in np.eye(model.model.size)], axis=-1)
    for Ht in H.reshape((-1,) + H.shape[-2:]):
        lam = scipy.linalg.eigh(Ht, eigvals_only=True)
        assert lam.min() >= l2 - 1e-12 * max(abs(lam).max(), 1.0)


# ------------------------------------------------------------------ batching and shapes


@each_model_on_each_backend
def test_stack_equals_tasks_one_by_one(backend, model):
    """A stack of tasks gives each task's result to 1e-15: the same operations on each task's
    slice, at most summed in another order (a few ulps)."""
    rng = np.random.default_rng(1)
    f = model.api
    shape, _ = model.shapes(3)
    d = getattr(model, "features", 3)
    X, y = rng.standard_normal((4, 5, d)), model.labels(rng, (4, 5))
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


@each_model_on_each_backend
def test_output_shapes_namespace_and_device(backend, model):
    f = model.api
    P, per_example = model.shapes(4)
    d = getattr(model, "features", 4)
    size = int(np.prod(P))
    probs = (3,) + per_example
    X, y, theta = np.ones((2, 3, d)), model.labels(np.random.default_rng(0), (2, 3)), np.ones(P)
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
