"""The MAML family (derivations/variants.md): learned rates, Reptile, implicit MAML.

References are independent of refmaml: the unrolled loops use the textbook
formulas of ``reference.py``; scipy is the referee for the implicit-MAML
solvers. Tolerances: complex step 1e-12 (exact to rounding through the
unrolled loop), central differences 1e-6, with the reasons given where a
test departs from them.
"""

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg

import refmaml
from refmaml import ConvergenceError, models

from . import reference as ref

MODELS = ["logistic", "softmax", "linear"]
KINDS = ["scalar", "per parameter", "per step", "per step and parameter"]


def _problem(seed, model="logistic", T=3, n=5, m=7, d=4, C=3):
    rng = np.random.default_rng(seed)
    shape, classes = ((d, C), C) if model == "softmax" else ((d,), 2)

    def labels(size):
        return rng.standard_normal(size) if model == "linear" else rng.integers(0, classes, size)

    return dict(theta=0.5 * rng.standard_normal(shape), Xs=rng.standard_normal((T, n, d)),
                ys=labels((T, n)), Xq=rng.standard_normal((T, m, d)), yq=labels((T, m)))


def _rates(kind, shape, K, seed):
    """``inner_lr`` of each shape of (V1), positive and negative entries mixed."""
    rng = np.random.default_rng(seed)
    draw = {"scalar": (), "per parameter": shape, "per step": (K,) + (1,) * len(shape),
            "per step and parameter": (K,) + shape}[kind]
    return np.float64(0.3) if not draw else rng.uniform(-0.2, 0.8, draw)


def _step_rate(rate, k, theta_ndim):
    return rate[k] if np.ndim(rate) == theta_ndim + 1 else rate


def _ref_meta_loss(p, model, K, l2, theta=None, rate=None):
    """Mean query loss after K textbook steps with rates ``rate`` (V1); a function of the
    argument not given."""
    ndim = p["theta"].ndim

    def run(th, a):
        losses = []
        for t in range(p["Xs"].shape[0]):
            phi = th
            for k in range(K):
                phi = phi - _step_rate(a, k, ndim) * ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], l2)
            losses.append(ref.LOSS[model](phi, p["Xq"][t], p["yq"][t]))
        return np.mean(losses)

    return (lambda th: run(th, rate)) if theta is None else (lambda a: run(theta, a))


def _on(backend, p):
    return {k: backend.put(v) for k, v in p.items()}


# --- learned inner learning rates ----------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("K", range(1, 11))
def test_rate_gradient_against_complex_step(backend, model, kind, K):
    """(V3), (V4): the rate gradient against the complex step through the unrolled loop, in the
    rate's own shape; and (V2): the theta gradient with the same rates."""
    p = _problem(seed=K, model=model)
    rate = _rates(kind, p["theta"].shape, K, seed=K)
    loss, g, r = refmaml.meta_value_and_grad(**_on(backend, p), inner_lr=backend.put(rate), inner_steps=K,
                                             l2=0.1, model=model, lr_grad=True)
    backend.assert_home(r)
    assert r.shape == np.shape(rate)
    want_r = ref.complex_step_gradient(_ref_meta_loss(p, model, K, 0.1, theta=p["theta"]), rate)
    want_g = ref.complex_step_gradient(_ref_meta_loss(p, model, K, 0.1, rate=rate), p["theta"])
    assert ref.rel_err(backend.get(r), want_r) <= 1e-12
    assert ref.rel_err(backend.get(g), want_g) <= 1e-12


@pytest.mark.parametrize("model", MODELS)
def test_rates_multiply_before_the_hessian(model):
    """(V2): the classic bug ``alpha * (H g)`` gives another theta gradient, far outside the
    tolerance, so the test above would catch it."""
    p, K = _problem(seed=3, model=model), 3
    rate = _rates("per parameter", p["theta"].shape, K, seed=3)
    mod = models.get(model)
    path = [p["theta"]]
    for _ in range(K):
        path.append(path[-1] - rate * mod.grad(path[-1], p["Xs"], p["ys"]))
    g = mod.grad(path[-1], p["Xq"], p["yq"])
    for k in reversed(range(K)):
        g = g - rate * mod.hvp(path[k], p["Xs"], p["ys"], g)   # the bug
    want = ref.complex_step_gradient(_ref_meta_loss(p, model, K, 0.0, rate=rate), p["theta"])
    assert ref.rel_err(np.mean(g, axis=0), want) > 1e-3
    _, right = refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=K, model=model)
    assert ref.rel_err(right, want) <= 1e-12


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", KINDS)
def test_first_order_rate_gradient(backend, model, kind):
    """(V5): the first-order rate gradient is the complex-step derivative of the loss with every
    inner gradient frozen at its value on the actual path."""
    p, K = _problem(seed=21, model=model), 4
    rate = _rates(kind, p["theta"].shape, K, seed=21)
    _, g, r = refmaml.meta_value_and_grad(**_on(backend, p), inner_lr=backend.put(rate), inner_steps=K,
                                          l2=0.2, model=model, lr_grad=True, first_order=True)
    ndim = p["theta"].ndim
    frozen = []
    for t in range(p["Xs"].shape[0]):
        phi, grads = p["theta"], []
        for k in range(K):
            grads.append(ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], 0.2))
            phi = phi - _step_rate(rate, k, ndim) * grads[-1]
        frozen.append(grads)

    def loss(a):
        return np.mean([ref.LOSS[model](p["theta"] - sum(_step_rate(a, k, ndim) * frozen[t][k]
                                                         for k in range(K)),
                                        p["Xq"][t], p["yq"][t]) for t in range(len(frozen))])

    assert ref.rel_err(backend.get(r), ref.complex_step_gradient(loss, rate)) <= 1e-12


@pytest.mark.parametrize("model", MODELS)
def test_rate_gradient_reductions_and_shapes(model):
    p, K = _problem(seed=5, model=model, T=4), 2
    rate = _rates("per step", p["theta"].shape, K, seed=5)
    kw = dict(inner_lr=rate, inner_steps=K, model=model, lr_grad=True)
    _, _, mean = refmaml.meta_value_and_grad(**p, **kw)
    _, _, total = refmaml.meta_value_and_grad(**p, **kw, reduction="sum")
    _, _, each = refmaml.meta_value_and_grad(**p, **kw, reduction="none")
    assert each.shape == (4,) + rate.shape
    assert ref.rel_err(total, 4 * mean) <= 1e-14 and ref.rel_err(each.mean(axis=0), mean) <= 1e-14
    one = {k: v[0] for k, v in p.items() if k != "theta"}
    _, _, single = refmaml.meta_value_and_grad(p["theta"], **one, **kw, reduction="none")
    assert ref.rel_err(single, each[0]) <= 1e-14
    _, _, scalar = refmaml.meta_value_and_grad(**p, inner_lr=0.3, inner_steps=K, model=model, lr_grad=True)
    assert scalar.shape == ()


def test_zero_steps_give_zero_rate_gradient():
    p = _problem(seed=1)
    _, _, r = refmaml.meta_value_and_grad(**p, inner_lr=np.zeros((0, 1)), inner_steps=0, lr_grad=True)
    assert r.shape == (0, 1)
    _, _, r = refmaml.meta_value_and_grad(**p, inner_lr=np.full(4, 0.2), inner_steps=0, lr_grad=True)
    assert np.array_equal(r, np.zeros(4))


@pytest.mark.parametrize("model", MODELS)
def test_adapt_with_rates_is_the_textbook_loop(backend, model):
    p, K = _problem(seed=8, model=model), 3
    rate = _rates("per step and parameter", p["theta"].shape, K, seed=8)
    got = refmaml.adapt(backend.put(p["theta"]), backend.put(p["Xs"]), backend.put(p["ys"]),
                        inner_lr=backend.put(rate), inner_steps=K, model=model, l2=0.1)
    want = []
    for t in range(3):
        phi = p["theta"]
        for k in range(K):
            phi = phi - rate[k] * ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], 0.1)
        want.append(phi)
    assert ref.rel_err(backend.get(got), np.stack(want)) <= 1e-14


BAD_RATES = [
    (np.full(5, 0.1), ValueError),           # 5 rates for 4 parameters
    (np.full((2, 4), 0.1), ValueError),      # a step axis of length 2 with inner_steps=3
    (np.full((3, 4, 1), 0.1), ValueError),   # too many axes for a (4,) theta
    (np.full((3, 2), 0.1), ValueError),      # per step, 2 does not broadcast to 4
    (np.array([0.1, np.nan, 0.1, 0.1]), ValueError),
    (np.array([0.1, np.inf, 0.1, 0.1]), ValueError),
    (np.array([True, False, True, True]), TypeError),
    (np.array(["a", "b", "c", "d"]), TypeError),
]


@pytest.mark.parametrize("rate, exc", BAD_RATES, ids=[str(i) for i in range(len(BAD_RATES))])
def test_bad_rate_shapes_and_values(rate, exc):
    p = _problem(seed=0)
    with pytest.raises(exc, match="inner_lr"):
        refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=3)
    with pytest.raises(exc, match="inner_lr"):
        refmaml.adapt(p["theta"], p["Xs"], p["ys"], inner_lr=rate, inner_steps=3)
    with pytest.raises(exc, match="inner_lr"):
        refmaml.reptile_direction(p["theta"], p["Xs"], p["ys"], inner_lr=rate, inner_steps=3)


def test_lr_grad_must_be_a_bool():
    with pytest.raises(TypeError, match="lr_grad"):
        refmaml.meta_value_and_grad(**_problem(seed=0), inner_lr=0.1, inner_steps=1, lr_grad=1)


# --- Reptile --------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", ["scalar", "per step and parameter"])
def test_reptile_direction(backend, model, kind):
    """(V6): the mean over tasks of theta - theta_K, l2 included."""
    p, K = _problem(seed=2, model=model), 4
    rate = _rates(kind, p["theta"].shape, K, seed=2)
    d = refmaml.reptile_direction(backend.put(p["theta"]), backend.put(p["Xs"]), backend.put(p["ys"]),
                                  inner_lr=backend.put(rate), inner_steps=K, model=model, l2=0.3)
    backend.assert_home(d)
    want = []
    for t in range(3):
        phi = p["theta"]
        for k in range(K):
            step = _step_rate(rate, k, p["theta"].ndim)
            phi = phi - step * ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], 0.3)
        want.append(p["theta"] - phi)
    assert ref.rel_err(backend.get(d), np.mean(want, axis=0)) <= 1e-14


def _taylor(p, model, K, alpha):
    """(V7)-(V9) with query = support and l2 = 0: Reptile / (alpha K), first-order MAML, MAML,
    and their predicted expansions to first order in alpha."""
    mod = models.get(model)
    g = mod.grad(p["theta"], p["Xs"], p["ys"])
    Hg = np.mean(mod.hvp(p["theta"], p["Xs"], p["ys"], g), axis=0)
    g = np.mean(g, axis=0)
    kw = dict(inner_lr=alpha, inner_steps=K, model=model)
    reptile = refmaml.reptile_direction(p["theta"], p["Xs"], p["ys"], **kw) / (alpha * K)
    first = refmaml.meta_value_and_grad(p["theta"], p["Xs"], p["ys"], p["Xs"], p["ys"], first_order=True,
                                        **kw)[1]
    full = refmaml.meta_value_and_grad(p["theta"], p["Xs"], p["ys"], p["Xs"], p["ys"], **kw)[1]
    return [(reptile, g - (K - 1) / 2 * alpha * Hg), (first, g - K * alpha * Hg),
            (full, g - 2 * K * alpha * Hg)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("K", [1, 3, 6])
def test_reptile_and_maml_taylor_expansions(model, K):
    """(V7)-(V9): the remainders after the predicted terms shrink like alpha^2 (observed order
    2 within 0.05 between alpha = 2e-3 and 1e-3, where the next term moves it by a few
    hundredths), and Reptile and first-order MAML differ at order alpha (observed order 1)."""
    p = _problem(seed=30 + K, model=model, n=8)
    coarse, fine = _taylor(p, model, K, 2e-3), _taylor(p, model, K, 1e-3)
    if K == 1:  # one step: Reptile / alpha is exactly the gradient, no remainder to measure
        (a, a_pred), *_ = fine
        assert ref.rel_err(a, a_pred) <= 1e-12
        coarse, fine = coarse[1:], fine[1:]
        if model == "linear":  # constant Hessian (Q3): grad L(theta_1) = g - alpha H g exactly
            (a, a_pred), *_ = fine
            assert ref.rel_err(a, a_pred) <= 1e-12
            coarse, fine = coarse[1:], fine[1:]
    for (a, a_pred), (b, b_pred) in zip(coarse, fine, strict=True):
        order = np.log2(ref.norm(a - a_pred) / ref.norm(b - b_pred))
        assert abs(order - 2) <= 0.05
    reptile_c, first_c = _taylor(p, model, K, 2e-3)[:2]
    reptile_f, first_f = _taylor(p, model, K, 1e-3)[:2]
    gap = np.log2(ref.norm(reptile_c[0] - first_c[0]) / ref.norm(reptile_f[0] - first_f[0]))
    assert abs(gap - 1) <= 0.05


# --- implicit MAML --------------------------------------------------------------------------------

LAMS = [0.5, 2.0]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_imaml_against_central_differences(model, lam, l2):
    """(V11) against central differences of the meta-loss, each evaluation solving (V10) to the
    default tolerance. By (V14) that moves the loss by ~1e-12, which central differences turn
    into ~1e-7 at their step ~6e-6: the usual 1e-6 holds."""
    p = _problem(seed=40, model=model)
    loss, g, info = refmaml.imaml_value_and_grad(**p, lam=lam, model=model, l2=l2)

    def f(th):
        return float(refmaml.imaml_value_and_grad(th, *(p[k] for k in ("Xs", "ys", "Xq", "yq")), lam=lam,
                                                  model=model, l2=l2)[0])

    assert ref.rel_err(g, ref.central_gradient(f, p["theta"])) <= 1e-6
    assert info["inner_residual"] <= info["tol"] and info["cg_residual"] <= info["tol"]


def _unrolled_prox(p, model, lam, l2, steps, eta):
    """Plain gradient descent on (V10) from phi_0 = theta; theta is start and anchor alike."""
    def meta_loss(th):
        losses = []
        for t in range(p["Xs"].shape[0]):
            phi = th
            for _ in range(steps):
                phi = phi - eta * (ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], l2) + lam * (phi - th))
            losses.append(ref.LOSS[model](phi, p["Xq"][t], p["yq"][t]))
        return np.mean(losses)
    return meta_loss


@pytest.mark.parametrize("model", MODELS)
def test_imaml_is_the_limit_of_unrolled_proximal_descent(model):
    """(V11) against the complex step through J gradient steps on (V10): the error falls
    geometrically, like (1 - eta mu)^J, down to the solver tolerance."""
    p, lam, l2 = _problem(seed=41, model=model), 1.0, 0.1
    _, g, _ = refmaml.imaml_value_and_grad(**p, lam=lam, model=model, l2=l2)
    errors = [ref.rel_err(ref.complex_step_gradient(_unrolled_prox(p, model, lam, l2, J, 0.3), p["theta"]), g)
              for J in (5, 10, 20, 80)]
    assert all(b < a for a, b in zip(errors[:-1], errors[1:], strict=True))
    assert errors[0] > 1e-3 and errors[-1] <= 1e-10


def _scipy_task(mod, theta, Xs, ys, Xq, yq, lam, l2):
    """One task's minimiser of (V10) by scipy's trust-ncg, and the solution of (V11)'s linear
    system by scipy's cg at a given minimiser; refmaml's grad and hvp are the only shared code."""
    shape = theta.shape

    def G(x):
        return mod.loss(x.reshape(shape), Xs, ys, l2=l2) + lam / 2 * np.sum((x - theta.ravel()) ** 2)

    def dG(x):
        return (mod.grad(x.reshape(shape), Xs, ys, l2=l2) + lam * (x.reshape(shape) - theta)).ravel()

    def d2G(x, v):
        return (mod.hvp(x.reshape(shape), Xs, ys, v.reshape(shape), l2=l2) + lam * v.reshape(shape)).ravel()

    res = scipy.optimize.minimize(G, theta.ravel(), method="trust-ncg", jac=dG, hessp=d2G,
                                  options=dict(gtol=1e-14))

    def implicit(phi):
        A = scipy.sparse.linalg.LinearOperator(
            (phi.size, phi.size),
            matvec=lambda v: v + mod.hvp(phi, Xs, ys, v.reshape(shape), l2=l2).ravel() / lam)
        v, code = scipy.sparse.linalg.cg(A, mod.grad(phi, Xq, yq).ravel(), rtol=1e-14, atol=0)
        assert code == 0
        return v.reshape(shape)

    return res.x.reshape(shape), np.linalg.norm(dG(res.x)), implicit


@pytest.mark.parametrize("model", MODELS)
def test_imaml_solvers_against_scipy(model):
    """The inner minimiser against scipy's trust-region Newton-CG on the same objective, and the
    implicit gradient against scipy's conjugate gradients at refmaml's minimiser."""
    p, lam, l2 = _problem(seed=42, model=model, T=2), 0.7, 0.05
    mod = models.get(model)
    _, g, info = refmaml.imaml_value_and_grad(**p, lam=lam, model=model, l2=l2, tol=1e-13)
    grads = []
    for t in range(2):
        task = (p[k][t] for k in ("Xs", "ys", "Xq", "yq"))
        phi, gradient_norm, implicit = _scipy_task(mod, p["theta"], *task, lam, l2)
        # scipy may stop early ("bad approximation"); strong convexity (V14) bounds how far its
        # point can be from the minimiser: ||phi - phi*|| <= ||grad G(phi)|| / (lam + l2).
        assert ref.norm(info["phi"][t] - phi) <= gradient_norm / (lam + l2) + 1e-14 * ref.norm(phi)
        grads.append(implicit(info["phi"][t]))
    assert ref.rel_err(g, np.mean(grads, axis=0)) <= 1e-12


def test_imaml_on_every_backend(backend):
    p = _problem(seed=43, model="softmax")
    loss, g, info = refmaml.imaml_value_and_grad(**_on(backend, p), lam=1.0, model="softmax", l2=0.1)
    backend.assert_home(loss)
    backend.assert_home(g)
    backend.assert_home(info["phi"])
    want_loss, want_g, _ = refmaml.imaml_value_and_grad(**p, lam=1.0, model="softmax", l2=0.1)
    assert ref.rel_err(backend.get(g), want_g) <= 1e-13
    assert info["phi"].shape == (3, 4, 3)


def test_imaml_single_task_and_info():
    p = _problem(seed=44)
    one = {k: (v if k == "theta" else v[0]) for k, v in p.items()}
    loss, g, info = refmaml.imaml_value_and_grad(**one, lam=1.0)
    assert loss.shape == () and g.shape == (4,) and info["phi"].shape == (4,)
    assert set(info) == {"phi", "inner_residual", "inner_iterations", "cg_residual", "cg_iterations", "tol"}
    # stationarity of the adapted parameters (V10)
    station = models.logistic.grad(info["phi"], one["Xs"], one["ys"]) + (info["phi"] - one["theta"])
    assert ref.norm(station) <= 1e-12 * ref.norm(models.logistic.grad(one["theta"], one["Xs"], one["ys"]))


def test_imaml_convergence_errors_carry_the_residual():
    p = _problem(seed=45)
    with pytest.raises(ConvergenceError, match="inner problem") as inner:
        refmaml.imaml_value_and_grad(**p, lam=1.0, tol=1e-30)
    assert inner.value.residual > 1e-30 and inner.value.tolerance == 1e-30
    with pytest.raises(ConvergenceError, match="conjugate gradients") as cg:
        refmaml.imaml_value_and_grad(**p, lam=0.01, cg_maxiter=1)
    assert cg.value.residual > cg.value.tolerance
    assert isinstance(cg.value, ValueError)


@pytest.mark.parametrize("lam, exc", [(0.0, ValueError), (-1.0, ValueError), (np.inf, ValueError),
                                      (np.nan, ValueError), ("1", TypeError), (True, TypeError)])
def test_imaml_bad_lam(lam, exc):
    with pytest.raises(exc, match="lam"):
        refmaml.imaml_value_and_grad(**_problem(seed=0), lam=lam)


def test_imaml_refuses_complex_theta_and_bad_tol():
    p = _problem(seed=0)
    with pytest.raises(TypeError, match="real theta"):
        refmaml.imaml_value_and_grad(**{**p, "theta": p["theta"] + 0j}, lam=1.0)
    for tol in (0.0, -1e-3, np.nan):
        with pytest.raises(ValueError, match="tol"):
            refmaml.imaml_value_and_grad(**p, lam=1.0, tol=tol)
