"""Linear regression (derivations/linear.md): the model, and MAML on it in closed form.

What every model satisfies runs in ``test_models.py``, ``test_maml.py``, ``test_dual.py`` and
``test_variants.py`` for this model too. Here: the conventions (PyTorch's ``mse_loss``), the affine
inner loop (Q4), (Q5), the closed-form meta-gradient against reverse accumulation (Q7), the best
initialisation (Q8), (Q9) and its refusals.

Tolerances: 1e-12 relative between reverse accumulation and the closed form (the same quantity by
other sums: ``K`` products of ``d x d`` matrices on one side, ``K`` HVPs on the other; the
instances keep ``|1 - alpha mu| <= 1`` for the support Hessian's eigenvalues ``mu``, so neither side
amplifies rounding); for the optimum, a backward-stable solve leaves a gradient of about
``eps ||S|| ||theta*||``, and the tests allow ``1e-12 (||S|| ||theta*|| + ||r||) / T``.
"""

import numpy as np
import pytest

import refmaml
from refmaml.models import linear

from . import reference as ref

KINDS = ["scalar", "per parameter", "per step", "per step and parameter"]


def _tasks(seed, T=4, n=6, m=8, d=5):
    rng = np.random.default_rng(seed)
    return dict(Xs=rng.standard_normal((T, n, d)), ys=rng.standard_normal((T, n)),
                Xq=rng.standard_normal((T, m, d)), yq=rng.standard_normal((T, m)))


def _rate(kind, K, d, rng):
    """Rates of every shape of (V1), small enough that every step contracts (support Hessians of
    these instances have eigenvalues below about 10)."""
    shape = {"scalar": (), "per parameter": (d,), "per step": (K, 1), "per step and parameter": (K, d)}[kind]
    return 0.04 if not shape else rng.uniform(0.01, 0.08, shape)


def _textbook_affine(Xs, ys, rate, K, l2):
    """``(M, c)`` of (Q5) for one task, by multiplying out ``I - A_k H`` (NumPy, no refmaml)."""
    n, d = Xs.shape
    H = 2 * Xs.T @ Xs / n + l2 * np.eye(d)
    b = 2 * Xs.T @ ys / n
    M, c = np.eye(d), np.zeros(d)
    for k in range(K):
        a = np.broadcast_to(rate[k] if np.ndim(rate) == 2 else rate, (d,))
        step = np.eye(d) - np.diag(a) @ H
        M, c = step @ M, step @ c + a * b
    return M, c


def _normal_equations(p, rate, K, l2):
    """``S`` and ``r`` of (Q8), from the textbook affine maps."""
    S, r = 0.0, 0.0
    for t in range(p["Xs"].shape[0]):
        M, c = _textbook_affine(p["Xs"][t], p["ys"][t], rate, K, l2)
        m = p["Xq"].shape[1]
        Q, q = 2 * p["Xq"][t].T @ p["Xq"][t] / m, 2 * p["Xq"][t].T @ p["yq"][t] / m
        S, r = S + M.T @ Q @ M, r + M.T @ (q - Q @ c)
    return S, r


# ------------------------------------------------------------------ the model's conventions

def test_loss_is_pytorch_mse_loss_and_predict_is_X_theta():
    """(Q1): the mean over examples of the squared error, no 1/2; plus (l2/2)||theta||^2."""
    rng = np.random.default_rng(0)
    X, y, theta = rng.standard_normal((7, 3)), rng.standard_normal(7), rng.standard_normal(3)
    e = X @ theta - y
    assert float(linear.loss(theta, X, y)) == pytest.approx(np.mean(e ** 2), rel=1e-15)
    assert float(linear.loss(theta, X, y, l2=0.4)) == pytest.approx(np.mean(e ** 2) + 0.2 * theta @ theta,
                                                                     rel=1e-15)
    assert np.allclose(linear.predict(theta, X), X @ theta, rtol=1e-15, atol=0)
    assert np.allclose(linear.grad(theta, X, y), 2 * X.T @ e / 7, rtol=1e-14, atol=0)
    assert np.allclose(linear.hessian(theta, X, y, l2=0.4), 2 * X.T @ X / 7 + 0.4 * np.eye(3), rtol=1e-14,
                       atol=0)


def test_loss_matches_torch_mse_loss():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X, y, theta = rng.standard_normal((9, 4)), rng.standard_normal(9), rng.standard_normal(4)
    want = torch.nn.functional.mse_loss(torch.tensor(X) @ torch.tensor(theta), torch.tensor(y)).item()
    assert float(linear.loss(theta, X, y)) == pytest.approx(want, rel=1e-15)


def test_integer_targets_are_real_numbers_and_bad_targets_are_refused():
    X, theta = np.ones((3, 2)), np.zeros(2)
    assert float(linear.loss(theta, X, np.array([1, 2, 3]))) == pytest.approx(14 / 3)
    with pytest.raises(TypeError, match="y has dtype bool"):
        linear.loss(theta, X, np.array([True, False, True]))
    with pytest.raises(TypeError, match="y has dtype complex"):
        linear.loss(theta, X, np.ones(3, complex))
    with pytest.raises(ValueError, match="y contains NaN"):
        linear.loss(theta, X, np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="y has shape"):
        linear.loss(theta, X, np.ones((3, 1)))
    with pytest.raises(TypeError, match="y is None"):
        linear.loss(theta, X, None)


# ------------------------------------------------------------------ the affine inner loop

def _kinds_and_steps(steps):
    """Every rate kind with every K; per-step rates need K >= 1 rows."""
    return [(kind, K) for kind in KINDS for K in steps if K or not kind.startswith("per step")]


@pytest.mark.parametrize("kind, K", _kinds_and_steps([0, 1, 4]))
def test_affine_map_is_the_inner_loop(backend, kind, K):
    """(Q4), (Q5): theta_K = M theta + c for any theta, and (M, c) are the textbook products."""
    rng = np.random.default_rng(K)
    p = _tasks(K)
    rate = _rate(kind, K, 5, rng)
    M, c = linear.affine_map(backend.put(p["Xs"]), backend.put(p["ys"]), inner_lr=backend.put(rate),
                             inner_steps=K, l2=0.3)
    backend.assert_home(M)
    M, c = backend.get(M), backend.get(c)
    assert M.shape == (4, 5, 5) and c.shape == (4, 5)
    for t in range(4):
        Mt, ct = _textbook_affine(p["Xs"][t], p["ys"][t], rate, K, 0.3)
        assert ref.rel_err(M[t], Mt) <= 1e-13 and ref.rel_err(c[t], ct, floor=1e-300) <= 1e-13
    for _ in range(2):
        theta = rng.standard_normal(5)
        theta_K = refmaml.adapt(theta, p["Xs"], p["ys"], inner_lr=rate, inner_steps=K, model="linear", l2=0.3)
        assert ref.rel_err(theta_K, (M @ theta[:, None])[..., 0] + c) <= 1e-13
    one = linear.affine_map(p["Xs"][0], p["ys"][0], inner_lr=rate, inner_steps=K, l2=0.3)
    assert one[0].shape == (5, 5) and one[1].shape == (5,)


# ------------------------------------------------------------------ the closed-form meta-gradient

def _closed_form_cases():
    """Rate kinds, steps, l2 and forms; the dual form takes per-parameter rates shared by the steps,
    with l2 = 0, only (dual.md (G5))."""
    out = []
    for kind, K in _kinds_and_steps([0, 1, 2, 5]):
        for l2 in (0.0, 0.3):
            for form in ("primal", "dual"):
                if form == "dual" and kind.endswith("parameter") and (l2 or kind.startswith("per step")):
                    continue
                out.append((kind, K, l2, form))
    return out


@pytest.mark.parametrize("kind, K, l2, form", _closed_form_cases())
def test_reverse_accumulation_equals_the_closed_form(kind, K, l2, form):
    """(Q7) = (M6) / (V2): M^T grad L_q(theta_K) is the product reverse accumulation applies."""
    rng = np.random.default_rng(10 * K)
    p = _tasks(10 + K)
    rate = _rate(kind, K, 5, rng)
    theta = rng.standard_normal(5)
    loss, g = refmaml.meta_value_and_grad(theta, **p, inner_lr=rate, inner_steps=K, model="linear", l2=l2,
                                          form=form)
    loss_c, g_c = linear.closed_form_meta_value_and_grad(theta, **p, inner_lr=rate, inner_steps=K, l2=l2)
    assert ref.rel_err(g, g_c) <= 1e-12
    assert ref.rel_err(loss, loss_c) <= 1e-12


def test_closed_form_of_one_task_and_of_a_stack():
    p = _tasks(3, T=3)
    theta = np.linspace(-1, 1, 5)
    kw = dict(inner_lr=0.05, inner_steps=3, l2=0.1)
    loss, g = linear.closed_form_meta_value_and_grad(theta, **p, **kw)
    singles = [linear.closed_form_meta_value_and_grad(theta, *(p[k][t] for k in ("Xs", "ys", "Xq", "yq")),
                                                      **kw) for t in range(3)]
    assert ref.rel_err(g, np.mean([s[1] for s in singles], axis=0)) <= 1e-14
    assert loss.shape == () and singles[0][1].shape == (5,)


# ------------------------------------------------------------------ the best initialisation

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_meta_gradient_vanishes_at_the_optimum(backend, kind, K, l2):
    """(Q8): the MAML meta-gradient (reverse accumulation) is zero at meta_optimum, to the rounding
    of a backward-stable solve, and the optimum is the solution of the textbook normal equations."""
    rng = np.random.default_rng(20 + K)
    p = _tasks(20 + K, T=5)
    rate = _rate(kind, K, 5, rng)
    star = linear.meta_optimum(**{k: backend.put(v) for k, v in p.items()}, inner_lr=backend.put(rate),
                               inner_steps=K, l2=l2)
    backend.assert_home(star)
    star = backend.get(star)
    assert star.shape == (5,)
    S, r = _normal_equations(p, rate, K, l2)
    assert ref.rel_err(star, np.linalg.solve(S, r)) <= 1e-12 * np.linalg.cond(S)
    _, g = refmaml.meta_value_and_grad(star, **p, inner_lr=rate, inner_steps=K, model="linear", l2=l2)
    scale = (np.linalg.norm(S, 2) * ref.norm(star) + ref.norm(r)) / 5
    assert ref.norm(g) <= 1e-12 * scale
    _, g_zero = refmaml.meta_value_and_grad(np.zeros(5), **p, inner_lr=rate, inner_steps=K, model="linear",
                                            l2=l2)
    assert ref.norm(g_zero) >= 1e-3 * scale  # the claim is not empty: away from the optimum it is not 0


def test_maml_optimum_is_not_the_pooled_least_squares_solution():
    """(Q9): with K = 0 the optimum is least squares pooled over the query sets; with K >= 1 the
    adaptation re-weights the tasks, and MAML's meta-gradient at the pooled solution is not zero."""
    p = _tasks(5, T=6)
    pooled = linear.meta_optimum(**p, inner_lr=0.05, inner_steps=0)
    X, y = p["Xq"].reshape(-1, 5), p["yq"].reshape(-1)
    assert ref.rel_err(pooled, np.linalg.lstsq(X, y, rcond=None)[0]) <= 1e-12
    star = linear.meta_optimum(**p, inner_lr=0.05, inner_steps=3)
    assert ref.rel_err(star, pooled) >= 1e-3
    _, g = refmaml.meta_value_and_grad(pooled, **p, inner_lr=0.05, inner_steps=3, model="linear")
    _, g_star = refmaml.meta_value_and_grad(star, **p, inner_lr=0.05, inner_steps=3, model="linear")
    assert ref.norm(g_star) <= 1e-10 * ref.norm(g)


def test_a_singular_system_is_refused():
    """(Q9): fewer query examples than features in all (T m < d), or a rate that makes I - alpha H_s
    singular in every task, leave the minimiser not unique: a ValueError that says so."""
    p = _tasks(6, T=2, m=2, d=5)
    with pytest.raises(ValueError, match=r"no unique minimiser.*rank 4 < d = 5.*T m = 4 < d = 5"):
        linear.meta_optimum(**p, inner_lr=0.05, inner_steps=2)
    rng = np.random.default_rng(7)
    Xs = np.tile(rng.standard_normal((7, 5)), (3, 1, 1))  # one support Hessian H_s for every task
    mu = np.linalg.eigvalsh(2 * Xs[0].T @ Xs[0] / 7).max()
    q = dict(Xs=Xs, ys=rng.standard_normal((3, 7)), Xq=rng.standard_normal((3, 9, 5)),
             yq=rng.standard_normal((3, 9)))
    with pytest.raises(ValueError, match="no unique minimiser"):
        linear.meta_optimum(**q, inner_lr=1 / mu, inner_steps=1)
    linear.meta_optimum(**q, inner_lr=0.5 / mu, inner_steps=1)  # the same tasks with a regular rate


def test_closed_forms_take_real_inputs_only():
    p = _tasks(8)
    with pytest.raises(TypeError, match="inner_lr must be real"):
        linear.meta_optimum(**p, inner_lr=0.1 + 1e-20j, inner_steps=1)
    with pytest.raises(TypeError, match="real"):
        linear.closed_form_meta_value_and_grad(np.zeros(5, complex), **p, inner_lr=0.1, inner_steps=1)
    with pytest.raises(TypeError, match="Xq is None"):
        linear.meta_optimum(p["Xs"], p["ys"], None, p["yq"], inner_lr=0.1, inner_steps=1)
    with pytest.raises(ValueError, match="inner_lr"):
        linear.meta_optimum(**p, inner_lr=np.ones(4), inner_steps=1)
    with pytest.raises(ValueError, match="l2"):
        linear.affine_map(p["Xs"], p["ys"], inner_lr=0.1, inner_steps=1, l2=-1.0)


def test_maml_on_linear_regression_against_torch():
    """(M6) for the mse head against PyTorch autograd with create_graph=True, float64."""
    torch = pytest.importorskip("torch")
    p = _tasks(9)
    theta = np.linspace(-0.5, 0.5, 5)
    t = torch.tensor(theta, requires_grad=True)
    losses = []
    for k in range(4):
        phi = t
        for _ in range(3):
            inner = torch.nn.functional.mse_loss(torch.tensor(p["Xs"][k]) @ phi, torch.tensor(p["ys"][k])) \
                + 0.1 / 2 * torch.sum(phi ** 2)
            g, = torch.autograd.grad(inner, phi, create_graph=True)
            phi = phi - 0.05 * g
        losses.append(torch.nn.functional.mse_loss(torch.tensor(p["Xq"][k]) @ phi, torch.tensor(p["yq"][k])))
    meta = torch.stack(losses).mean()
    want, = torch.autograd.grad(meta, t)
    loss, g = refmaml.meta_value_and_grad(theta, **p, inner_lr=0.05, inner_steps=3, model="linear", l2=0.1)
    assert ref.rel_err(g, want.numpy()) <= 1e-12
    assert abs(float(loss) - meta.item()) <= 1e-14 * meta.item()


# ------------------------------------------------------------------ extreme scales (Q16)

@pytest.mark.parametrize("scale", [1e-157, 1e-150, 1e-100, 1e100])
def test_closed_forms_are_exact_at_extreme_scales(scale):
    """(Q16): multiplying every query feature and target by ``scale`` leaves the MAML optimum (Q8)
    and the first-order fixed point (Q10) unchanged, and multiplying all features and targets leaves
    the pooled optimum (Q13, l2 = 0) unchanged; the scaled solve finds the scale-1 answer to 1e-10
    relative (the scaled systems differ from the scale-1 ones by the rounding of the column scales,
    a few eps, amplified by condition numbers below about 1e2 here). Forming Q = (2/m) X_q^T X_q
    at 1e-157 would give entries near 1e-314, below the normal range."""
    p = _tasks(31, T=5, n=6, m=4, d=3)
    q = dict(p, Xq=p["Xq"] * scale, yq=p["yq"] * scale)
    everything = {k: v * scale for k, v in p.items()}
    for rate, K in ((0.05, 2), (np.array([0.03, 0.06, 0.05]), 3)):
        assert ref.rel_err(linear.meta_optimum(**q, inner_lr=rate, inner_steps=K),
                           linear.meta_optimum(**p, inner_lr=rate, inner_steps=K)) <= 1e-10
        assert ref.rel_err(linear.first_order_fixed_point(**q, inner_lr=rate, inner_steps=K),
                           linear.first_order_fixed_point(**p, inner_lr=rate, inner_steps=K)) <= 1e-10
    assert ref.rel_err(linear.pooled_optimum(**everything), linear.pooled_optimum(**p)) <= 1e-10
    # per-feature scales: one query feature tiny, the others of order 1 (the unknown's entry scales back)
    D = np.array([scale, 1.0, 1.0]) if scale < 1 else np.array([1.0, 1.0, 1.0])
    star = linear.meta_optimum(**p, inner_lr=0.05, inner_steps=0)
    scaled = linear.meta_optimum(p["Xs"], p["ys"], p["Xq"] * D, p["yq"], inner_lr=0.05, inner_steps=0)
    assert ref.rel_err(scaled * D, star) <= 1e-10
