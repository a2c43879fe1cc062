"""MAML: adaptation and the exact meta-gradient against independent references.

The references in ``reference.py`` unroll the inner loop task by task with
textbook formulas and no refmaml code.  Tolerances: complex step 1e-12 (exact
to rounding through the whole unrolled loop), central differences 1e-6
(``eps^(2/3)`` of the function's scale, about 1e-10 here, with room for the
amplification of K steps).  The instances are seeded Gaussian problems; their
meta-gradients are small only where the K factors ``(I - alpha H)`` contract
(large alpha and l2), which shrinks every term alike rather than cancelling
them, so the plain relative error is meaningful.
"""

import numpy as np
import pytest

import refmaml
from refmaml import models

from . import reference as ref
from .conftest import BACKENDS

ALPHAS = [-0.2, 0.1, 0.5, 1.5]
MODELS = ["logistic", "softmax", "linear"]
SHAPE = {"logistic": (4,), "softmax": (4, 3), "linear": (4,)}  # theta of every problem below
FORMS = ["primal", "dual"]  # derivations/dual.md: the same verification for both forms


def meta(form, *args, **kw):
    return refmaml.meta_value_and_grad(*args, form=form, **kw)


def _problem(seed, model="logistic", T=3, n=5, m=7, d=4):
    """Seeded Gaussian tasks; binary float labels for the logistic model, 3 classes for softmax,
    Gaussian targets for linear regression."""
    rng = np.random.default_rng(seed)
    shape, classes = ((d, 3), 3) if model == "softmax" else ((d,), 2)

    def labels(size):
        if model == "linear":
            return rng.standard_normal(size)
        y = rng.integers(0, classes, size)
        return y.astype(float) if model == "logistic" else y

    return dict(
        theta=0.5 * rng.standard_normal(shape),
        Xs=rng.standard_normal((T, n, d)),
        ys=labels((T, n)),
        Xq=rng.standard_normal((T, m, d)),
        yq=labels((T, m)),
    )


def _on(backend, p):
    return {k: backend.put(v) for k, v in p.items()}


def _ref_meta_loss(p, alpha, K, l2, model="logistic"):
    return lambda th: np.mean(ref.meta_losses(th, p["Xs"], p["ys"], p["Xq"], p["yq"], alpha, K, l2,
                                              model))


def _unrolled_cases():
    """The cases of the test below: ``(backend, model, form, K, alpha, l2)``.

    On NumPy, for every model and both forms: K = 0 once (the meta-loss is the query loss at
    theta, so alpha and l2 do not enter), and K = 1 (one factor ``I - alpha H``), 2 (a product of
    factors at distinct iterates, the reverse pass's recursion) and 10 (a long product: rounding
    accumulated over the steps, and the expanding loop of linear regression at alpha >= 0.5) at
    every alpha (negative, small, moderate, beyond the curvature's stable range) with and without
    l2.  K = 3..9 repeat K = 2's recursion with more factors and add no condition of their own.
    The other backends check the namespace and the device of the results and the same arithmetic
    there, for every model and form: at K = 0 and at K = 2 (alpha = 0.5, l2 = 0.3), the shortest
    loop that runs the recursion (alpha, l2 and a longer loop change no array operation).
    """
    out = []
    for model in MODELS:
        for form in FORMS:
            out.append(("numpy", model, form, 0, 0.5, 0.3))
            out += [("numpy", model, form, K, alpha, l2) for K in (1, 2, 10) for alpha in ALPHAS for l2 in (0.0, 0.3)]
            out += [(b, model, form, K, 0.5, 0.3) for b in ("strict", "strict-device1", "cupy") for K in (0, 2)]
    return [pytest.param(BACKENDS[b], model, form, K, alpha, l2, id=f"{b}-{model}-{form}-K{K}-a{alpha}-l2{l2}")
            for b, model, form, K, alpha, l2 in out]


@pytest.mark.parametrize("backend, model, form, K, alpha, l2", _unrolled_cases(), indirect=["backend"])
def test_meta_gradient_against_complex_step_through_unrolled_loop(backend, K, alpha, l2, model, form):
    """(M6) against Im L(theta + i h e_j) / h of the reference unrolled loop, K from 0 to 10 (the
    cases, and what each adds: ``_unrolled_cases``)."""
    p = _problem(seed=K, model=model)
    loss, g = meta(form, **_on(backend, p), inner_lr=alpha, inner_steps=K, l2=l2,
                                          model=model)
    backend.assert_home(loss)
    backend.assert_home(g)
    assert loss.shape == () and g.shape == SHAPE[model]
    f = _ref_meta_loss(p, alpha, K, l2, model)
    want = ref.complex_step_gradient(f, p["theta"])
    assert ref.rel_err(backend.get(g), want) <= 1e-12
    # The loss to 1e-14, about 50 ulps. Linear regression's inner loop expands where alpha times
    # the support Hessian's top eigenvalue (about 7 here) exceeds 2, by up to 11 per step, and the
    # dual form carries that growth in n-dimensional coefficients summed in another order (observed
    # 1.2e-14 at alpha = 0.5, K = 8): 1e-13 for it.
    tol = 1e-13 if model == "linear" and form == "dual" else 1e-14
    assert abs(float(backend.get(loss)) - f(p["theta"])) <= tol * abs(f(p["theta"]))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("K", [1, 4, 10])
@pytest.mark.parametrize("alpha", [0.1, 1.0])
@pytest.mark.parametrize("form", FORMS)
def test_meta_gradient_against_central_differences(K, alpha, model, form):
    p = _problem(seed=100 + K, model=model)
    _, g = meta(form, **p, inner_lr=alpha, inner_steps=K, l2=0.1, model=model)
    want = ref.central_gradient(_ref_meta_loss(p, alpha, K, 0.1, model), p["theta"])
    assert ref.rel_err(g, want) <= 1e-6


def test_complex_inner_lr_gives_the_rate_derivative():
    """The meta-loss is analytic in inner_lr too: a complex rate carries d(meta-loss)/d(alpha)."""
    p = _problem(seed=7)
    h = 1e-20
    loss_c, _ = refmaml.meta_value_and_grad(**p, inner_lr=0.4 + 1j * h, inner_steps=3)

    def ref_f(a):
        return np.mean(ref.meta_losses(p["theta"], p["Xs"], p["ys"], p["Xq"], p["yq"], a[0], 3))

    want = ref.complex_step_gradient(ref_f, np.array([0.4]))[0]
    assert abs(np.imag(complex(loss_c)) / h - want) <= 1e-12 * abs(want)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("K", [0, 1, 3, 10])
@pytest.mark.parametrize("form", FORMS)
def test_first_order_is_query_gradient_at_adapted_parameters(backend, K, model, form):
    """(M8): first_order=True returns grad L_q(theta_K), averaged over tasks."""
    p = _problem(seed=K, model=model)
    _, g = meta(form, **_on(backend, p), inner_lr=0.5, inner_steps=K, l2=0.2,
                                       first_order=True, model=model)
    want = np.mean([ref.GRAD[model](ref.adapt(p["theta"], p["Xs"][t], p["ys"][t], 0.5, K, 0.2, model),
                                    p["Xq"][t], p["yq"][t]) for t in range(3)], axis=0)
    assert ref.rel_err(backend.get(g), want) <= 1e-13


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kw", [dict(inner_steps=0, inner_lr=0.5), dict(inner_steps=5, inner_lr=0.0)])
@pytest.mark.parametrize("form", FORMS)
def test_no_adaptation_reduces_to_query_gradient(backend, kw, model, form):
    """(M7): K = 0 or alpha = 0 gives the query gradient at theta itself, exactly."""
    p = _problem(seed=3, model=model)
    loss, g = meta(form, **_on(backend, p), **kw, l2=0.3, model=model)
    pb = _on(backend, p)
    module = models.get(model)
    want = backend.xp.mean(module.grad(pb["theta"], pb["Xq"], pb["yq"]), axis=0)
    assert np.array_equal(backend.get(g), backend.get(want))
    assert float(backend.get(loss)) == float(backend.get(backend.xp.mean(
        module.loss(pb["theta"], pb["Xq"], pb["yq"]))))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_batch_equals_mean_of_single_tasks(backend, first_order, model, form):
    """(M4): a stack of tasks gives the mean of the single-task results."""
    p = _problem(seed=11, model=model, T=5)
    kw = dict(inner_lr=0.3, inner_steps=4, l2=0.1, first_order=first_order, model=model)
    loss, g = meta(form, **_on(backend, p), **kw)
    singles = [meta(form,
        backend.put(p["theta"]), *(backend.put(p[k][t]) for k in ("Xs", "ys", "Xq", "yq")), **kw)
        for t in range(5)]
    assert ref.rel_err(backend.get(g), np.mean([backend.get(s[1]) for s in singles], axis=0)) <= 1e-14
    assert ref.rel_err(backend.get(loss), np.mean([backend.get(s[0]) for s in singles])) <= 1e-14
    one_loss, one_g = singles[0]
    assert one_loss.shape == () and one_g.shape == SHAPE[model]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("form", FORMS)
def test_reductions(backend, model, form):
    p = _problem(seed=5, model=model, T=4)
    kw = dict(inner_lr=0.3, inner_steps=2, model=model)
    mean = meta(form, **_on(backend, p), **kw)
    total = meta(form, **_on(backend, p), **kw, reduction="sum")
    each = meta(form, **_on(backend, p), **kw, reduction="none")
    for a in (*mean, *total, *each):
        backend.assert_home(a)
    assert each[0].shape == (4,) and each[1].shape == (4,) + SHAPE[model]
    losses, grads = backend.get(each[0]), backend.get(each[1])
    assert ref.rel_err(backend.get(total[1]), grads.sum(axis=0)) <= 1e-15
    assert ref.rel_err(backend.get(mean[1]), grads.mean(axis=0)) <= 1e-15
    assert ref.rel_err(backend.get(total[0]), losses.sum()) <= 1e-15
    for t in range(4):
        def f(th, t=t):
            return ref.meta_losses(th, p["Xs"][t:t + 1], p["ys"][t:t + 1],
                                   p["Xq"][t:t + 1], p["yq"][t:t + 1], 0.3, 2, model=model)[0]

        assert ref.rel_err(grads[t], ref.complex_step_gradient(f, p["theta"])) <= 1e-12
    one = meta(form, *(backend.put(p[k][0]) if k != "theta" else backend.put(p[k])
                                        for k in ("theta", "Xs", "ys", "Xq", "yq")), **kw,
                                      reduction="none")
    assert one[0].shape == () and one[1].shape == SHAPE[model]


@pytest.mark.parametrize("model", MODELS)
def test_adapt_matches_reference_and_trajectory(backend, model):
    """(M2): every iterate equals the reference gradient-descent loop."""
    p = _problem(seed=2, model=model)
    pb = _on(backend, p)
    kw = dict(inner_lr=0.7, inner_steps=4, l2=0.2, model=model)
    traj = refmaml.adapt(pb["theta"], pb["Xs"], pb["ys"], **kw, return_trajectory=True)
    backend.assert_home(traj)
    assert traj.shape == (5, 3) + SHAPE[model]
    traj = backend.get(traj)
    for k in range(5):
        for t in range(3):
            want = ref.adapt(p["theta"], p["Xs"][t], p["ys"][t], 0.7, k, 0.2, model)
            assert ref.rel_err(traj[k, t], want) <= 1e-14
    last = refmaml.adapt(pb["theta"], pb["Xs"], pb["ys"], **kw)
    assert np.array_equal(backend.get(last), traj[-1])
    single = refmaml.adapt(pb["theta"], pb["Xs"][0, ...], pb["ys"][0, ...], **kw, return_trajectory=True)
    assert single.shape == (5,) + SHAPE[model]


def test_adapt_with_zero_steps_returns_a_copy_per_task():
    theta = np.array([1.0, 2.0])
    out = refmaml.adapt(theta, np.ones((3, 2, 2)), np.zeros((3, 2)), inner_lr=0.1, inner_steps=0)
    assert out.shape == (3, 2) and np.all(out == theta)
    out[...] = 0  # writable, and not a view of theta
    assert np.all(theta == [1.0, 2.0])


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("model", MODELS)
def test_meta_gradient_is_never_built_from_a_hessian(monkeypatch, model, form):
    """(M6): the meta-gradient path uses Hessian-vector products only (no d x d matrix)."""
    def forbidden(*a, **k):
        raise AssertionError("explicit Hessian formed")

    monkeypatch.setattr(models.get(model), "hessian_matrix", forbidden)
    monkeypatch.setattr(models.get(model).network, "gauss_newton_matrix", forbidden)
    p = _problem(seed=0, model=model)
    refmaml.meta_value_and_grad(**p, inner_lr=0.3, inner_steps=3, model=model, form=form)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("K", [0, 1, 6])
def test_cost_is_K_gradients_K_hvps_and_one_query_gradient(monkeypatch, K, model):
    """(M9): the exact meta-gradient evaluates K support gradients, K HVPs, and the query loss
    and gradient once, together."""
    calls = {"grad": 0, "query": 0, "hvp": 0}
    module = models.get(model)
    grad_hvp, value_grad = module.grad_hvp, module.value_grad

    def counted_hvp(hvp):
        def counted(*a, **k):
            calls["hvp"] += 1
            return hvp(*a, **k)
        return counted

    def counted_grad_hvp(*a, **k):
        calls["grad"] += 1
        g, hvp = grad_hvp(*a, **k)
        return g, counted_hvp(hvp)

    def counted_value_grad(*a, **k):
        calls["query"] += 1
        return value_grad(*a, **k)

    monkeypatch.setattr(module, "grad_hvp", counted_grad_hvp)
    monkeypatch.setattr(module, "value_grad", counted_value_grad)
    p = _problem(seed=0, model=model)
    refmaml.meta_value_and_grad(**p, inner_lr=0.3, inner_steps=K, model=model, form="primal")
    assert calls == {"grad": K, "query": 1, "hvp": K}
    calls.update(grad=0, query=0, hvp=0)
    refmaml.meta_value_and_grad(**p, inner_lr=0.3, inner_steps=K, first_order=True, model=model,
                                form="primal")
    assert calls == {"grad": K, "query": 1, "hvp": 0}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("form", FORMS)
def test_float32_stays_float32_and_is_accurate(model, form):
    p = _problem(seed=9, model=model)
    p32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in p.items()}
    loss, g = meta(form, **p32, inner_lr=0.3, inner_steps=3, model=model)
    assert loss.dtype == np.float32 and g.dtype == np.float32
    _, g64 = meta(form, **p, inner_lr=0.3, inner_steps=3, model=model)
    # float32 inputs are the float64 ones rounded; the result moves by a few eps32 times K.
    assert ref.rel_err(g, g64) <= 100 * np.finfo(np.float32).eps


def test_mixed_precision_follows_result_type():
    p = _problem(seed=9)
    p["theta"] = p["theta"].astype(np.float32)
    loss, g = refmaml.meta_value_and_grad(**p, inner_lr=0.3, inner_steps=3)
    assert g.dtype == np.float64 and loss.dtype == np.float64


@pytest.mark.parametrize("form", FORMS)
def test_diverging_inner_loop_is_an_error_without_warnings(form):
    p = _problem(seed=1)
    with pytest.raises(ValueError, match="inner loop overflowed"):
        meta(form, **p, inner_lr=1e308, inner_steps=3)
    with pytest.raises(ValueError, match="inner loop overflowed"):
        refmaml.adapt(p["theta"], p["Xs"], p["ys"], inner_lr=-1e3, inner_steps=200, l2=1.0)
