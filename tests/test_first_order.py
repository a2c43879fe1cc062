"""First-order MAML's bias, pre-training, and what the linear closed form says about MAML:
derivations/maml.md (M11) and derivations/linear.md (Q10)-(Q15).

Tolerances, each with its reason:

* fixed points: a backward-stable solve of a ``d x d`` system leaves a residual of about
  ``eps ||S_fo|| ||theta||``; the direction is recomputed by reverse accumulation (other sums), so the
  tests allow ``1e-12 (||S_fo|| ||theta|| + ||b_fo||) / T``, and check that the same direction is at least
  ``1e-3`` of that scale elsewhere (the claim is not empty);
* identities between closed forms (Q11), (Q12), (Q14): ``1e-10`` relative, several products of
  ``d x d`` matrices of condition below about 1e3 on each side;
* (M11) and (Q11) to second order: the remainder is ``O(alpha^2)``, so halving ``alpha`` divides it
  by 4 up to an ``O(alpha)`` correction; the tests accept ratios in ``[3.5, 4.5]`` at rates where the
  remainder is above ``1e-8`` (far above rounding);
* the numbers printed in the derivations are recomputed and compared as the printed strings
  (3 significant digits, 4 for meta-losses near 1, 2 for the sinusoid table); every such number
  was checked to lie far from a rounding boundary compared with the ``1e-12`` relative differences
  a BLAS kernel can make.
"""

import math
import pathlib

import numpy as np
import pytest

import refmaml
from refmaml import instances, tasks
from refmaml.models import linear, logistic

from . import reference as ref

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINEAR_MD = ROOT / "derivations" / "linear.md"
MAML_MD = ROOT / "derivations" / "maml.md"


def sig(x, digits=3):
    """``x`` to ``digits`` significant digits, trailing zeros kept, no trailing point."""
    s = f"{x:#.{digits}g}"
    return s[:-1] if s.endswith(".") else s


def vector(v, digits=3):
    return "[" + ", ".join(sig(float(x), digits) for x in v) + "]"


def worked_tasks(n=5):
    """The worked instance of linear.md ("A worked instance"): refmaml's own generator, seed 0."""
    inst = instances.draw(np.random.default_rng(0), "linear", T=20, n=n, m=5, features=3)
    return dict(Xs=inst.Xs, ys=inst.ys, Xq=inst.Xq, yq=inst.yq)


def random_tasks(seed, T=6, n=6, m=7, d=4):
    rng = np.random.default_rng(seed)
    return dict(Xs=rng.standard_normal((T, n, d)), ys=rng.standard_normal((T, n)),
                Xq=rng.standard_normal((T, m, d)), yq=rng.standard_normal((T, m)))


def query_matrices(p):
    """``Q_t = (2/m) X_q^T X_q`` and ``b_q = (2/m) X_q^T y_q`` (linear.md (Q6)), by NumPy."""
    m = p["Xq"].shape[1]
    XqT = np.swapaxes(p["Xq"], 1, 2)
    return 2 * XqT @ p["Xq"] / m, 2 * np.einsum("tji,tj->ti", p["Xq"], p["yq"]) / m


def support_hessians(p, l2=0.0):
    n, d = p["Xs"].shape[1:]
    return 2 * np.swapaxes(p["Xs"], 1, 2) @ p["Xs"] / n + l2 * np.eye(d)


def systems(p, rate, K, l2=0.0):
    """``(S, b_bar)`` of (Q8) and ``(S_fo, b_fo)`` of (Q10), by NumPy from refmaml's affine maps."""
    M, c = (np.asarray(a) for a in linear.affine_map(p["Xs"], p["ys"], inner_lr=rate, inner_steps=K, l2=l2))
    Q, q = query_matrices(p)
    Mt = np.swapaxes(M, 1, 2)
    r = q - np.einsum("tij,tj->ti", Q, c)
    return (Mt @ Q @ M).sum(0), np.einsum("tij,tj->i", Mt, r), (Q @ M).sum(0), r.sum(0)


def meta_loss(theta, p, rate, K, l2=0.0):
    return float(linear.closed_form_meta_value_and_grad(theta, **p, inner_lr=rate, inner_steps=K, l2=l2)[0])


def direction(theta, p, rate, K, first_order, l2=0.0):
    return refmaml.meta_value_and_grad(theta, **p, inner_lr=rate, inner_steps=K, model="linear", l2=l2,
                                       first_order=first_order)[1]


# ------------------------------------------------------------------ fixed points (Q8), (Q10)

@pytest.mark.parametrize("rate", [0.1, np.array([0.05, 0.12, 0.08, 0.1])], ids=["scalar", "per parameter"])
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_fixed_points_zero_their_directions(backend, rate, K, l2):
    """(Q10): first_order_fixed_point zeroes the first-order direction (M8) and meta_optimum the
    exact one (M6); neither zeroes the other's, so the exact meta-gradient at the first-order point
    is not zero: the dropped term of (M11) does not vanish in the mean over tasks."""
    p = random_tasks(3 + K)
    T = p["Xs"].shape[0]
    put = {k: backend.put(v) for k, v in p.items()}
    fo = linear.first_order_fixed_point(**put, inner_lr=backend.put(rate), inner_steps=K, l2=l2)
    star = linear.meta_optimum(**put, inner_lr=backend.put(rate), inner_steps=K, l2=l2)
    backend.assert_home(fo)
    fo, star = backend.get(fo), backend.get(star)
    S, b, S_fo, b_fo = systems(p, rate, K, l2)
    fo_scale = (np.linalg.norm(S_fo, 2) * ref.norm(fo) + ref.norm(b_fo)) / T
    star_scale = (np.linalg.norm(S, 2) * ref.norm(star) + ref.norm(b)) / T
    assert ref.norm(direction(fo, p, rate, K, True, l2)) <= 1e-12 * fo_scale
    assert ref.norm(direction(star, p, rate, K, False, l2)) <= 1e-12 * star_scale
    assert ref.norm(direction(fo, p, rate, K, False, l2)) >= 1e-3 * star_scale
    assert ref.norm(direction(star, p, rate, K, True, l2)) >= 1e-3 * fo_scale


def test_a_singular_first_order_system_is_refused():
    p = random_tasks(9, T=1, m=2, d=4)  # S_fo = Q M has rank at most m = 2 < d
    with pytest.raises(ValueError, match=r"no unique fixed point.*rank 2 < d = 4"):
        linear.first_order_fixed_point(**p, inner_lr=0.1, inner_steps=1)
    with pytest.raises(ValueError, match="inner_lr"):
        linear.first_order_fixed_point(**p, inner_lr=-0.1, inner_steps=1)
    with pytest.raises(ValueError, match=r"pooled loss has no unique minimiser.*rank"):
        linear.pooled_optimum(p["Xs"][:, :1], p["ys"][:, :1], p["Xq"], p["yq"])


# ------------------------------------------------------------------ the first-order system (Q11)

def test_first_order_system_is_not_symmetric():
    """(Q11): S_fo - S_fo^T is the sum of the commutators [Q_t, M_t] (scalar rate), K alpha sum [H_s, Q_t]
    to second order; on the worked instance it is far from 0, and the first-order direction
    circulates around a closed loop, which no gradient does, while MAML's direction does not."""
    p = worked_tasks()
    _, _, S_fo, _ = systems(p, 0.1, 2)
    M, _ = linear.affine_map(p["Xs"], p["ys"], inner_lr=0.1, inner_steps=2)
    Q, _ = query_matrices(p)
    assert ref.rel_err(S_fo - S_fo.T, (Q @ M - M @ Q).sum(0)) <= 1e-10
    assert np.linalg.norm(S_fo - S_fo.T) >= 0.01 * np.linalg.norm(S_fo)

    H = support_hessians(p)
    first = (H @ Q - Q @ H).sum(0)
    K = 2

    def remainder(alpha):
        _, _, S_fo, _ = systems(p, alpha, K)
        return np.linalg.norm(S_fo - S_fo.T - K * alpha * first)

    errors = [remainder(a) for a in (0.01, 0.005, 0.0025)]
    assert min(errors) >= 1e-8
    for big, small in zip(errors, errors[1:]):
        assert 3.5 <= big / small <= 4.5

    # circulation around the parallelogram theta0, +eps u, +eps w: exact for an affine field by the
    # trapezoid rule on each edge; for a gradient it is 0 (up to rounding), here eps^2 w^T (S_fo - S_fo^T) u / T
    rng = np.random.default_rng(1)
    theta0, u, w = rng.standard_normal((3, 3))
    eps = 0.5
    corners = [theta0, theta0 + eps * u, theta0 + eps * (u + w), theta0 + eps * w, theta0]

    def circulation(first_order):
        v = [direction(c, p, 0.1, 2, first_order) for c in corners]
        return sum((b - a) @ (v[i] + v[i + 1]) / 2 for i, (a, b) in enumerate(zip(corners, corners[1:])))

    T = p["Xs"].shape[0]
    expected = eps ** 2 * w @ (S_fo - S_fo.T) @ u / T
    assert abs(expected) >= 1e-4
    assert circulation(True) == pytest.approx(expected, rel=1e-10)
    assert abs(circulation(False)) <= 1e-12 * np.linalg.norm(S_fo, 2) * 10


def test_shared_curvature_makes_first_order_exact():
    """linear.md, after (Q11): tasks with one support set design and one query design (targets
    differ) have the same fixed point for first-order MAML and MAML."""
    rng = np.random.default_rng(4)
    T, n, m, d = 5, 6, 7, 4
    p = dict(Xs=np.tile(rng.standard_normal((n, d)), (T, 1, 1)), ys=rng.standard_normal((T, n)),
             Xq=np.tile(rng.standard_normal((m, d)), (T, 1, 1)), yq=rng.standard_normal((T, m)))
    fo = linear.first_order_fixed_point(**p, inner_lr=0.1, inner_steps=3)
    star = linear.meta_optimum(**p, inner_lr=0.1, inner_steps=3)
    assert ref.rel_err(fo, star) <= 1e-10
    other = random_tasks(4, T=T, n=n, m=m, d=d)  # different designs: the two differ
    assert ref.rel_err(linear.first_order_fixed_point(**other, inner_lr=0.1, inner_steps=3),
                       linear.meta_optimum(**other, inner_lr=0.1, inner_steps=3)) >= 1e-3


# ------------------------------------------------------------------ excess meta-loss (Q12)

def test_excess_meta_loss_is_the_S_norm():
    """(Q12): F is (1/T)(theta^T S theta / 2 - theta^T b_bar) plus a constant, and
    F(theta) - F(theta*) = (theta - theta*)^T S (theta - theta*) / (2T)."""
    p = random_tasks(11)
    T = p["Xs"].shape[0]
    S, b, _, _ = systems(p, 0.1, 2)
    star = linear.meta_optimum(**p, inner_lr=0.1, inner_steps=2)
    rng = np.random.default_rng(12)
    consts = []
    for theta in rng.standard_normal((4, 4)):
        quad = (0.5 * theta @ S @ theta - theta @ b) / T
        consts.append(meta_loss(theta, p, 0.1, 2) - quad)
        excess = meta_loss(theta, p, 0.1, 2) - meta_loss(star, p, 0.1, 2)
        # a difference of two O(1) values: rounding 1e-16 against an excess of order 0.1 to 1
        assert excess == pytest.approx((theta - star) @ S @ (theta - star) / (2 * T), rel=1e-10)
    assert max(consts) - min(consts) <= 1e-12 * max(abs(c) for c in consts)


# ------------------------------------------------------------------ pre-training (Q13)

@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_pooled_optimum_zeroes_the_pretraining_gradient(backend, l2):
    """(Q13): the gradient of training.md's pooled loss (T9), support and query examples together
    with the ridge term, vanishes at pooled_optimum; with l2 = 0 it is ordinary least squares on all
    examples, and it is not the K = 0 optimum of (Q8), which pools the query sets only."""
    p = random_tasks(13)
    pool = linear.pooled_optimum(**{k: backend.put(v) for k, v in p.items()}, l2=l2)
    backend.assert_home(pool)
    pool = backend.get(pool)
    X, y = np.concatenate([p["Xs"], p["Xq"]], axis=1), np.concatenate([p["ys"], p["yq"]], axis=1)
    g = np.mean(np.asarray(linear.grad(pool, X, y, l2=l2)), axis=0)
    H = np.mean(support_hessians(dict(Xs=X), l2), axis=0)
    assert ref.norm(g) <= 1e-12 * (np.linalg.norm(H, 2) * ref.norm(pool) + ref.norm(g + H @ pool))
    if l2 == 0:
        lstsq = np.linalg.lstsq(X.reshape(-1, 4), y.reshape(-1), rcond=None)[0]
        assert ref.rel_err(pool, lstsq) <= 1e-12 * np.linalg.cond(X.reshape(-1, 4)) ** 2
    assert ref.rel_err(pool, linear.meta_optimum(**p, inner_lr=0.1, inner_steps=0)) >= 1e-3


# ------------------------------------------------------------------ the worked instance

def worked_instance_numbers():
    """{placeholder: printed string} for linear.md, "A worked instance" and the table of (Q15)."""
    p = worked_tasks()
    kw = dict(inner_lr=0.1, inner_steps=2)
    star = linear.meta_optimum(**p, **kw)
    points = dict(FO=linear.first_order_fixed_point(**p, **kw), POOL=linear.pooled_optimum(**p),
                  QUERY=linear.meta_optimum(**p, inner_lr=0.1, inner_steps=0))
    F_star = meta_loss(star, p, 0.1, 2)
    out = {"THETA_STAR": vector(star), "F_STAR": sig(F_star)}
    for name, theta in points.items():
        out[f"THETA_{name}"] = vector(theta)
        out[f"DIST_{name}"] = sig(ref.norm(theta - star))
        out[f"EXCESS_{name}"] = sig(meta_loss(theta, p, 0.1, 2) - F_star)
    _, _, S_fo, _ = systems(p, 0.1, 2)
    out["ASYMMETRY"] = sig(np.linalg.norm(S_fo - S_fo.T) / np.linalg.norm(S_fo))

    q = worked_tasks(n=20)
    rho = float(np.max(np.abs(1 - 0.1 * np.linalg.eigvalsh(support_hessians(q)))))
    pool = linear.pooled_optimum(**q)
    rows = []
    for K in (1, 10, 100):
        s = linear.meta_optimum(**q, inner_lr=0.1, inner_steps=K)
        rows.append(f"| {K} | {sig(meta_loss(s, q, 0.1, K), 4)} | {sig(meta_loss(pool, q, 0.1, K), 4)} "
                    f"| {sig(ref.norm(s))} |")
    Hs = support_hessians(q)
    fits = np.linalg.solve(Hs, (2 * np.einsum("tji,tj->ti", q["Xs"], q["ys"]) / 20)[..., None])[..., 0]
    F_inf = np.mean(np.mean((np.einsum("tij,tj->ti", q["Xq"], fits) - q["yq"]) ** 2, axis=1))
    out.update(RHO=sig(rho), RHO_100=sig(rho ** -100), F_INF=sig(F_inf, 4), LIMIT_ROWS="\n".join(rows))
    return out


def test_worked_instance():
    """Every number of linear.md's worked instance and of the table after (Q15), recomputed; and the
    claims they support: first-order MAML's excess meta-loss is below a tenth of pre-training's, and
    with K = 100 steps pre-training's meta-loss is F_inf to 4 digits while the optimum, of norm above
    rho^-100, stays lower."""
    text = LINEAR_MD.read_text(encoding="utf-8")
    numbers = worked_instance_numbers()
    for key in ("THETA_STAR", "THETA_FO", "THETA_POOL", "THETA_QUERY"):
        assert f"| {numbers[key]} |" in text, (key, numbers[key])
    for name in ("FO", "POOL", "QUERY"):
        assert f"| {numbers['DIST_' + name]} | {numbers['EXCESS_' + name]} |" in text, name
    assert f"$F(\\theta^\\star) =$ {numbers['F_STAR']}" in text
    assert f"=$ {numbers['ASYMMETRY']} (Q11)" in text
    assert f"$\\rho =$ {numbers['RHO']}" in text and f"$\\rho^{{-100}} =$ {numbers['RHO_100']}" in text
    assert f"$F_\\infty =$ {numbers['F_INF']}" in text
    assert numbers["LIMIT_ROWS"] in text
    assert float(numbers["EXCESS_FO"]) < 0.1 * float(numbers["EXCESS_POOL"])
    last = numbers["LIMIT_ROWS"].splitlines()[-1].split("|")
    assert last[3].strip() == numbers["F_INF"] and float(last[2]) < float(last[3])
    assert float(last[4]) > float(numbers["RHO_100"])


# ------------------------------------------------------------------ the link to the paper (Q14), (Q15)

def test_one_step_optimum_is_a_weighted_least_squares():
    """(Q14): each task's meta-loss is a quadratic around psi_t with the weight W_t, which for K = 1
    is (I - alpha H_s) Q (I - alpha H_s); theta* is the W-weighted average of the psi_t."""
    p = worked_tasks()
    alpha = 0.1
    for K in (1, 3):
        M, c = (np.asarray(a) for a in linear.affine_map(p["Xs"], p["ys"], inner_lr=alpha, inner_steps=K))
        Q, q = query_matrices(p)
        W = np.swapaxes(M, 1, 2) @ Q @ M
        if K == 1:
            step = np.eye(3) - alpha * support_hessians(p)
            assert ref.rel_err(W, step @ Q @ step) <= 1e-12
        phi = np.linalg.solve(Q, q[..., None])[..., 0]
        psi = np.linalg.solve(M, (phi - c)[..., None])[..., 0]
        star = linear.meta_optimum(**p, inner_lr=alpha, inner_steps=K)
        assert ref.rel_err(star, np.linalg.solve(W.sum(0), np.einsum("tij,tj->i", W, psi))) <= 1e-10
        theta = np.random.default_rng(K).standard_normal(3)
        for t in (0, 7):
            one = {k: v[t] for k, v in p.items()}
            F_t = float(linear.closed_form_meta_value_and_grad(theta, **one, inner_lr=alpha, inner_steps=K)[0])
            F_psi = float(linear.closed_form_meta_value_and_grad(psi[t], **one, inner_lr=alpha, inner_steps=K)[0])
            e = theta - psi[t]
            assert F_t == pytest.approx(0.5 * e @ W[t] @ e + F_psi, rel=1e-10)


def test_many_steps_forget_the_initialisation():
    """(Q15): with lambda = 0 and a contracting scalar rate, M_t -> the projector onto ker X_s and
    c_t -> X_s^+ y_s (fewer support examples than features: the projector is not 0); with enough
    support examples, or l2 > 0, M_t -> 0."""
    rng = np.random.default_rng(5)
    T, n, d = 4, 2, 3
    Xs, ys = rng.standard_normal((T, n, d)), rng.standard_normal((T, n))
    H = support_hessians(dict(Xs=Xs))
    mu = np.linalg.eigvalsh(H)
    nonzero = mu[mu > 1e-12 * mu.max()]
    alpha = 1 / mu.max()  # 0 < alpha mu <= 1 for every nonzero eigenvalue
    rho = np.max(1 - alpha * nonzero)
    K = math.ceil(math.log(1e-15) / math.log(rho))
    assert K <= 20000
    M, c = (np.asarray(a) for a in linear.affine_map(Xs, ys, inner_lr=alpha, inner_steps=K))
    pinv = np.linalg.pinv(Xs)
    P = np.eye(d) - pinv @ Xs
    assert min(np.linalg.norm(P[t]) for t in range(T)) >= 0.99  # a rank-1 projector in every task
    # the iteration contracts, so its rounding stays O(eps / (1 - rho))
    assert np.abs(M - P).max() <= 1e-12 / (1 - rho)
    assert np.abs(c - np.einsum("tij,tj->ti", pinv, ys)).max() <= 1e-12 / (1 - rho) * np.abs(c).max()
    M2, c2 = (np.asarray(a) for a in linear.affine_map(Xs, ys, inner_lr=alpha, inner_steps=K, l2=0.5))
    assert np.abs(M2).max() <= 1e-12
    ridge = np.linalg.solve(H + 0.5 * np.eye(d), (2 * np.einsum("tji,tj->ti", Xs, ys) / n)[..., None])[..., 0]
    assert ref.rel_err(c2, ridge) <= 1e-12


# ------------------------------------------------------------------ (M11), the dropped term

def test_dropped_term_is_alpha_times_hessians_times_query_gradient():
    """(M11): exact minus first-order meta-gradient = -alpha sum_k H_s(theta_k) g_K + O(alpha^2), and
    = -alpha K H_s(theta) grad L_q(theta) + O(alpha^2): halving alpha divides both remainders by 4.
    On the logistic model, whose Hessian depends on theta, per task."""
    inst = instances.draw(np.random.default_rng(3), "logistic", T=3, n=6, m=5, features=4)
    p = dict(Xs=inst.Xs, ys=inst.ys, Xq=inst.Xq, yq=inst.yq)
    K = 3

    def remainders(alpha):
        kw = dict(inner_lr=alpha, inner_steps=K, model="logistic", reduction="none")
        _, g = refmaml.meta_value_and_grad(inst.theta, **p, **kw)
        _, gK = refmaml.meta_value_and_grad(inst.theta, **p, first_order=True, **kw)
        path = np.asarray(refmaml.adapt(inst.theta, p["Xs"], p["ys"], inner_lr=alpha, inner_steps=K,
                                        model="logistic", return_trajectory=True))
        along = sum(np.asarray(logistic.hvp(path[k], p["Xs"], p["ys"], gK)) for k in range(K))
        at_start = K * np.asarray(logistic.hvp(inst.theta, p["Xs"], p["ys"],
                                               np.asarray(logistic.grad(inst.theta, p["Xq"], p["yq"]))))
        dropped = np.asarray(g) - np.asarray(gK)
        # the bound of (M11) on the remainder rem, per task, with h_hat the largest ||H_s(theta_k)||_2
        h_hat = np.max([np.linalg.norm(np.asarray(logistic.hessian(path[k], p["Xs"], p["ys"])), 2, axis=(1, 2))
                    for k in range(K)], axis=0)
        bound = ((1 + alpha * h_hat) ** K - 1 - K * alpha * h_hat) * np.linalg.norm(np.asarray(gK), axis=1)
        assert np.all(np.linalg.norm(dropped + alpha * along, axis=1) <= bound * (1 + 1e-8) + 1e-15)
        return (ref.norm(dropped + alpha * along), ref.norm(dropped + alpha * at_start),
                ref.norm(dropped) / alpha)

    results = [remainders(a) for a in (0.04, 0.02, 0.01)]
    for big, small in zip(results, results[1:]):
        for which in (0, 1):
            assert small[which] >= 1e-8
            assert 3.5 <= big[which] / small[which] <= 4.5
    assert results[-1][2] >= 1e-2  # the dropped term itself is of order alpha, not smaller


def test_at_the_first_order_point_the_gap_is_a_covariance():
    """(M11), last line: where first-order MAML stops, the mean exact meta-gradient is
    -alpha K E_t[(H_s^(t) - H_bar)(grad L_q^(t) - g_bar)] + O(alpha^2): the mean query gradient at
    theta is O(alpha) there, so the H_bar g_bar term drops to second order. On the worked linear
    instance, halving alpha divides the remainder by about 4, and the covariance term is not 0."""
    p = worked_tasks()
    K = 2
    H = support_hessians(p)
    Q, q = query_matrices(p)

    def remainder(alpha):
        fo = linear.first_order_fixed_point(**p, inner_lr=alpha, inner_steps=K)
        g = Q @ fo - q                                   # grad L_q^(t)(theta) per task, (Q6)
        cov = np.mean((H - H.mean(0)) @ (g - g.mean(0))[..., None], axis=0)[..., 0]
        exact = direction(fo, p, alpha, K, False)
        return ref.norm(exact + alpha * K * cov), ref.norm(alpha * K * cov)

    results = [remainder(a) for a in (0.01, 0.005, 0.0025)]
    for big, small in zip(results, results[1:]):
        assert small[0] >= 1e-10
        assert 3.5 <= big[0] / small[0] <= 4.5
    assert results[-1][1] >= 10 * results[-1][0]  # the covariance term is the leading part


SINUSOID_TABLE = {(1, 0.001): "0.034", (1, 0.01): "0.35", (1, 0.1): "0.75",
                  (5, 0.001): "0.16", (5, 0.01): "0.55", (5, 0.1): "1.0"}


def test_dropped_term_on_the_sinusoid_network():
    """maml.md, after (M11): ||grad F - grad F^FO|| / ||grad F|| on the 1-40-40-1 ReLU network at
    its initialisation (seed 0), over the first 25 held-out sinusoid tasks with 10 support and 10
    query points, as printed. No pre-activation is within 1e-6 of its kink at any iterate, so each
    value is that of one linear piece of the network, far from where rounding could change it."""
    fam = tasks.family("sinusoid")
    theta = fam.initial(0)
    b = fam.held_out(25, 10, 10)
    inst = instances.Instance(theta, b.Xs, b.ys, b.Xq, b.yq)
    text = MAML_MD.read_text(encoding="utf-8")
    for K in (1, 5):
        row = []
        for alpha in (0.001, 0.01, 0.1):
            kw = dict(inner_lr=alpha, inner_steps=K, model=fam.model)
            _, g = refmaml.meta_value_and_grad(theta, b.Xs, b.ys, b.Xq, b.yq, **kw)
            _, gK = refmaml.meta_value_and_grad(theta, b.Xs, b.ys, b.Xq, b.yq, first_order=True, **kw)
            assert instances.kink_distance(fam.model, inst, inner_lr=alpha, inner_steps=K) >= 1e-6
            row.append(sig(ref.norm(np.asarray(g) - np.asarray(gK)) / ref.norm(g), 2))
            assert row[-1] == SINUSOID_TABLE[K, alpha]
        assert f"| {K} | " + " | ".join(row) + " |" in text


def test_pooled_optimum_takes_a_huge_ridge_without_overflow():
    """(Q13) with l2 = 1e307: the appended rows sqrt(T N l2 / 2) are formed as a product of square
    roots, so the product T N l2 / 2 never overflows; the answer (of order 1/l2) is the one of the
    normal equations, solved here in float64 after dividing through by l2 (relative 1e-12: a solve
    of a d x d system dominated by the ridge)."""
    p = random_tasks(3, T=4, n=5, m=6, d=3)
    l2 = 1e307
    theta = np.asarray(linear.pooled_optimum(p["Xs"], p["ys"], p["Xq"], p["yq"], l2=l2))
    N, T = 11, 4
    X = np.concatenate([p["Xs"], p["Xq"]], axis=1)
    y = np.concatenate([p["ys"], p["yq"]], axis=1)
    A = sum(2 / N * x.T @ x for x in X) / l2 + T * np.eye(3)
    b = sum(2 / N * x.T @ t for x, t in zip(X, y))
    expected = np.linalg.solve(A, b) / l2
    assert np.all(np.isfinite(theta)) and ref.rel_err(theta, expected) <= 1e-12
