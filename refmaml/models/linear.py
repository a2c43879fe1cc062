"""Linear regression: ``z = X @ theta`` with the mean squared error, the linear network times the
mse head; and MAML on it in closed form.

Equations are in ``derivations/linear.md``; the pair is (H5) with the mse head of (H6)
(``derivations/models.md``). Shapes: one task has ``theta (d,)``, ``X (n, d)``, real targets
``y (n,)``; a stack of ``T`` tasks has ``X (T, n, d)``, ``y (T, n)`` and ``theta`` either shared,
``(d,)``, or one per task, ``(T, d)``. The loss is the mean over examples of ``(x^T theta - y)^2``
(PyTorch's ``mse_loss``, reduction ``"mean"``, no 1/2) plus ``(l2/2)||theta||^2``. ``MODEL`` is the
model object the MAML functions use (``model="linear"``).

The Hessian of the support loss does not depend on ``theta`` (Q3), so the inner loop of MAML is
affine, ``theta_K = M theta + c`` (Q4), (Q5), and the meta-loss is quadratic in ``theta``:
:func:`affine_map`, :func:`closed_form_meta_value_and_grad` and :func:`meta_optimum` compute what
reverse accumulation computes, and the best initialisation, without it (Q6)-(Q9);
:func:`first_order_fixed_point` is where first-order MAML stops (Q10), and :func:`pooled_optimum`
is multi-task pre-training (Q13). The three solutions are computed from scaled square-root factors
and stay exact at any scale of the features (Q16).
"""

from array_api_compat import device

from .. import _xp, problem
from . import heads, networks
from .model import Model

MODEL = Model("linear", networks.Linear(1), heads.MSE_HEAD,
              equations=dict(outputs="linear.md (Q1)", residual="models.md (H6)", grad="linear.md (Q2)",
                             hvp="linear.md (Q3)", loss="linear.md (Q1)"))


def loss(theta, X, y, *, l2=0.0):
    """Mean squared error plus ``(l2/2)||theta||^2``: ``derivations/linear.md`` (Q1).

    Returns a 0-d array for one task, ``(T,)`` for a stack.
    """
    return MODEL.loss(theta, X, y, l2=l2)


def grad(theta, X, y, *, l2=0.0):
    """``(2/n) X^T (X theta - y) + l2 theta``: ``derivations/linear.md`` (Q2).

    Returns ``(d,)`` for one task, ``(T, d)`` for a stack.
    """
    return MODEL.grad(theta, X, y, l2=l2)


def hvp(theta, X, y, v, *, l2=0.0):
    """``(2/n) X^T (X v) + l2 v``, the same at every ``theta``: ``derivations/linear.md`` (Q3).

    ``v`` has ``theta``'s shape, or ``(T, d)`` for a stack of tasks. ``y`` is checked but does not
    enter. Returns ``(d,)`` or ``(T, d)``.
    """
    return MODEL.hvp(theta, X, y, v, l2=l2)


def hessian(theta, X, y, *, l2=0.0):
    """``(2/n) X^T X + l2 I``, ``(d, d)`` or ``(T, d, d)``: ``derivations/linear.md`` (Q3)."""
    return MODEL.hessian(theta, X, y, l2=l2)


def predict(theta, X):
    """``X @ theta``: ``(n,)`` for one task, ``(T, n)`` for a stack (``derivations/linear.md`` (Q1))."""
    return MODEL.predict(theta, X)


# ------------------------------------------------------------------------- MAML in closed form

def _problem(Xs, ys, Xq, yq, inner_lr, inner_steps, l2):
    """The validated problem of a closed-form call: real inputs, ``theta`` implied ``(d,)``."""
    arrays = {"Xs": Xs, "ys": ys, "inner_lr": inner_lr}
    if Xq is not problem.ABSENT:
        arrays.update(Xq=Xq, yq=yq)
    xp, dev = _xp.namespace(**arrays)
    X = problem.features(xp, dev, Xs, "Xs")
    zero = xp.zeros((X.shape[-1],), dtype=X.dtype, device=dev)
    p = problem.meta(MODEL, zero, Xs, ys, Xq, yq, l2=l2, inner_lr=inner_lr, inner_steps=inner_steps)
    if _xp.is_complex(p.xp, p.rate):
        raise TypeError("inner_lr must be real for the closed forms of linear regression")
    return p


def _finite(p, *arrays, what=None):
    """The closed forms' results, or a ValueError when the products overflowed (range.md (R4)):
    ``what`` names the system that overflowed, if not the inner loop's affine map."""
    if not _xp.all_finite(p.xp, *arrays):
        if what is not None:
            raise ValueError(f"{what} overflows: it is beyond the floating-point range")
        raise ValueError(f"the inner loop overflows: the affine map of {p.steps} steps (derivations/linear.md "
                         "(Q5)) is beyond the floating-point range; use a smaller inner_lr or fewer inner_steps")
    return arrays


def _affine(p):
    """``(M (T, d, d), c (T, d))`` of (Q5) by the recursion (Q4), checked for overflow."""
    with _xp.quiet_overflow():
        return _finite(p, *_affine_products(p))


def _affine_products(p):
    xp = p.xp
    T, n, d = p.Xs.shape
    dev = device(p.Xs)
    XsT = xp.matrix_transpose(p.Xs)
    eye = xp.eye(d, dtype=p.Xs.dtype, device=dev)
    H = 2 * (XsT @ p.Xs) / n + p.l2 * eye                       # (Q3)
    b = 2 * (XsT @ p.ys[..., None])[..., 0] / n                  # (Q4)
    M = xp.broadcast_to(eye, (T, d, d))
    c = xp.zeros((T, d), dtype=p.Xs.dtype, device=dev)
    for k in range(p.steps):
        a = xp.broadcast_to(p.step_rate(k), (d,))
        M = M - xp.reshape(a, (d, 1)) * (H @ M)                   # (I - A_k H) M
        c = c - a * ((H @ c[..., None])[..., 0] - b)              # (I - A_k H) c + A_k b
    return M, c


def _query(p):
    """``Q = (2/m) X_q^T X_q`` and ``q = (2/m) X_q^T y_q`` per task (Q6)."""
    xp = p.xp
    m = p.Xq.shape[1]
    XqT = xp.matrix_transpose(p.Xq)
    return 2 * (XqT @ p.Xq) / m, 2 * (XqT @ p.yq[..., None])[..., 0] / m


def affine_map(Xs, ys, *, inner_lr, inner_steps, l2=0.0):
    """The inner loop as an affine map, ``theta_K = M theta + c``: ``derivations/linear.md`` (Q4), (Q5).

    ``M = (I - A_{K-1} H_s) ... (I - A_0 H_s)`` with ``A_k = diag(alpha_k)`` and ``H_s`` the support
    Hessian (Q3); ``inner_lr`` is a scalar, per-parameter ``(d,)`` or per-step ``(K, 1)`` / ``(K, d)``
    (``derivations/variants.md`` (V1)), real. Returns ``(M, c)``: ``(d, d)`` and ``(d,)`` for one
    task, ``(T, d, d)`` and ``(T, d)`` for a stack.
    """
    p = _problem(Xs, ys, problem.ABSENT, problem.ABSENT, inner_lr, inner_steps, l2)
    M, c = _affine(p)
    return (M, c) if p.batched else (M[0, ...], c[0, ...])


def closed_form_meta_value_and_grad(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Meta-loss and meta-gradient of linear-regression MAML from the affine map, with no reverse
    pass: ``F_t = L_q(M_t theta + c_t)``, ``grad F_t = M_t^T grad L_q(M_t theta + c_t)``
    (``derivations/linear.md`` (Q6), (Q7)); the mean over tasks.

    Real inputs; ``theta (d,)``; the other arguments as in :func:`refmaml.meta_value_and_grad`.
    Returns ``(meta_loss, meta_grad)``, a 0-d array and ``(d,)``. Costs ``O(K d^3)`` per task: a
    reference for teaching and tests, not a fast path.
    """
    p = problem.meta(MODEL, theta, Xs, ys, Xq, yq, l2=l2, inner_lr=inner_lr, inner_steps=inner_steps)
    if _xp.is_complex(p.xp, p.theta):
        raise TypeError("theta and inner_lr must be real for the closed forms of linear regression")
    xp = p.xp
    M, c = _affine(p)
    with _xp.quiet_overflow():
        Q, q = _query(p)
        theta_K = (M @ p.theta[..., None])[..., 0] + c
        residual = p.Xq @ theta_K[..., None]
        losses = xp.mean((residual[..., 0] - p.yq) ** 2, axis=-1)
        g_K = (Q @ theta_K[..., None])[..., 0] - q                    # grad L_q(theta_K), (Q6)
        g = (xp.matrix_transpose(M) @ g_K[..., None])[..., 0]         # (Q7)
        return _finite(p, xp.asarray(xp.mean(losses)), xp.mean(g, axis=0))


def _query_factors(p, M, c):
    """The stacked square-root factors of the query side, ``(T m, d)``, ``(T m, d)``, ``(T m,)``:
    ``X_q^(t)``, ``X_q^(t) M_t`` and ``y_q^(t) - X_q^(t) c_t`` over the tasks, so that
    ``sum_t M_t^T Q_t M_t = (2/m) A^T A`` and ``sum_t M_t^T (q_t - Q_t c_t) = (2/m) A^T z`` (Q8),
    ``sum_t Q_t M_t = (2/m) B^T A`` and ``sum_t (q_t - Q_t c_t) = (2/m) B^T z`` (Q10)."""
    xp = p.xp
    T, m, d = p.Xq.shape
    B = xp.reshape(p.Xq, (T * m, d))
    A = xp.reshape(p.Xq @ M, (T * m, d))
    z = xp.reshape(p.yq - (p.Xq @ c[..., None])[..., 0], (T * m,))
    return B, A, z


def _column_scale(xp, F):
    """The largest magnitude of each column of ``F``, 1 where a column is 0 (no scaling)."""
    top = xp.max(xp.abs(F), axis=0)
    return xp.where(top > 0, top, xp.ones_like(top))


def _refusal(statement, label, rows, advice):
    """The message of a singular system, for :func:`_solve_factored`: ``statement``, the equation
    ``label`` of its ``d x d`` system, its rank (and ``rows = (name, count)`` of the factors' rows
    where they are fewer than ``d``), then ``advice``."""

    def message(rank, d):
        hint = f"; here {rows[0]} = {rows[1]} < d = {d}" if rows[1] < d else ""
        return (f"{statement}: its d x d system (derivations/linear.md {label}) has rank {rank} < d = {d} "
                f"(singular values at most d eps times the largest count as 0){hint}; {advice}")

    return message


def _solve_factored(p, B, A, z, refusal, what=None):
    """``theta`` solving ``(B^T A) theta = B^T z`` (``B``, ``A`` of shape ``(R, d)``, ``z (R,)``),
    computed on the scaled factors ``B / b``, ``A / a`` (column magnitudes) and ``z / zeta`` so that
    no product of two tiny or two huge numbers is formed: the system is exact under these scalings
    (``theta = zeta theta' / a``), and its entries are of order 1 whatever the scale of the
    features (``derivations/linear.md`` (Q8), (Q10), (Q16)). A system of rank below ``d`` (singular
    values of the scaled matrix at most ``d eps`` times the largest count as 0, NumPy's
    ``matrix_rank`` rule) is a ValueError: ``refusal(rank, d)`` gives its message."""
    xp = p.xp
    with _xp.quiet_overflow():
        a, b = _column_scale(xp, A), _column_scale(xp, B)
        zeta = xp.max(xp.abs(z))
        zeta = xp.where(zeta > 0, zeta, xp.ones_like(zeta))
        Bs = B / b
        system = xp.matrix_transpose(Bs) @ (A / a)
        rhs = xp.matrix_transpose(Bs) @ (z / zeta)
    system, rhs = _finite(p, system, rhs, what=what)
    d = system.shape[0]
    sv = xp.linalg.svdvals(system)
    top = float(xp.max(sv))
    tol = d * _xp.eps(xp, system.dtype) * top
    rank = int(xp.sum(xp.astype(sv > tol, xp.int64)))
    if rank < d:
        raise ValueError(refusal(rank, d))
    with _xp.quiet_overflow():
        theta = xp.linalg.solve(system, rhs[:, None])[:, 0]
        return _finite(p, zeta * theta / a, what=what)[0]


def meta_optimum(Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """The initialisation that minimises the MAML meta-loss of linear regression:
    ``derivations/linear.md`` (Q8), (Q9), solved as in (Q16).

    Solves the ``d x d`` system ``(sum_t M_t^T Q_t M_t) theta = sum_t M_t^T (q_t - Q_t c_t)`` for
    scalar, per-step and per-parameter rates, formed from the stacked factors ``X_q^(t) M_t`` with
    their columns scaled to magnitude 1, so that features near the ends of the floating-point range
    (``1e-150`` or ``1e100``) give the answer of the same problem at scale 1. Where that matrix is
    singular (rank below ``d``: for instance ``T m < d`` query examples, or a rate that makes some
    ``I - alpha H_s`` singular in every task) the meta-loss has no unique minimiser, and this is a
    ValueError that says so. Returns an array of shape ``(d,)`` in the inputs' namespace.
    """
    p = _problem(Xs, ys, Xq, yq, inner_lr, inner_steps, l2)
    M, c = _affine(p)
    _, A, z = _query_factors(p, M, c)
    refusal = _refusal("the meta-loss has no unique minimiser", "(Q8)", ("T m", A.shape[0]),
                       "more query examples (Xq) or tasks, or an inner_lr that keeps every 1 - alpha mu away from "
                       "0 (mu an eigenvalue of the support Hessian), make it unique")
    return _solve_factored(p, A, A, z, refusal)


def first_order_fixed_point(Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Where the first-order MAML direction vanishes on linear regression: ``derivations/linear.md``
    (Q10), (Q11).

    First-order MAML follows ``sum_t grad L_q(theta_K^(t)) = sum_t (Q_t (M_t theta + c_t) - q_t)``
    (``derivations/maml.md`` (M8)); its fixed point solves the ``d x d`` system
    ``(sum_t Q_t M_t) theta = sum_t (q_t - Q_t c_t)``, which is not symmetric, formed and scaled as
    in :func:`meta_optimum` (Q16). Arguments as for :func:`meta_optimum`. A singular system (no
    unique fixed point) is a ValueError. Returns ``(d,)`` in the inputs' namespace.
    """
    p = _problem(Xs, ys, Xq, yq, inner_lr, inner_steps, l2)
    M, c = _affine(p)
    B, A, z = _query_factors(p, M, c)
    refusal = _refusal("first-order MAML has no unique fixed point", "(Q10)", ("T m", A.shape[0]),
                       "more query examples (Xq) or tasks, or another inner_lr, make it unique")
    return _solve_factored(p, B, A, z, refusal)


def pooled_optimum(Xs, ys, Xq, yq, *, l2=0.0):
    """Multi-task pre-training on linear regression: the minimiser of the loss pooled over every
    task's support and query examples, ``(1/T) sum_t L(theta; [X_s; X_q], [y_s; y_q])`` with the
    ridge term ``(l2/2)||theta||^2`` (``derivations/training.md`` (T9)); ``derivations/linear.md``
    (Q13).

    Least squares on all ``T (n + m)`` examples stacked, with the rows ``sqrt(T (n + m) l2 / 2) I``
    appended when ``l2 > 0``, solved as in :func:`meta_optimum` (Q16). Arguments as for
    :func:`meta_optimum`, without a rate. Returns ``(d,)`` in the inputs' namespace.
    """
    p = _problem(Xs, ys, Xq, yq, 0.0, 0, l2)
    xp = p.xp
    T, n, d = p.Xs.shape
    m = p.Xq.shape[1]
    X = xp.concat([xp.reshape(p.Xs, (T * n, d)), xp.reshape(p.Xq, (T * m, d))], axis=0)
    y = xp.concat([xp.reshape(p.ys, (T * n,)), xp.reshape(p.yq, (T * m,))], axis=0)
    if p.l2 > 0:
        ridge = (T * (n + m) / 2) ** 0.5 * p.l2 ** 0.5  # the square roots apart: no overflow of the product
        X = xp.concat([X, ridge * xp.eye(d, dtype=X.dtype, device=device(X))], axis=0)
        y = xp.concat([y, xp.zeros((d,), dtype=y.dtype, device=device(y))], axis=0)

    refusal = _refusal("the pooled loss has no unique minimiser", "(Q13)", ("T (n + m)", T * (n + m)),
                       "more examples or l2 > 0 make it unique")
    return _solve_factored(p, X, X, y, refusal, what="the pooled least-squares system (Q13)")
