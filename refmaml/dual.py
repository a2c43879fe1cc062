"""The dual (Gram) form of the exact meta-gradient: ``derivations/dual.md`` (G1)-(G7).

For a linear network (``z = X theta``, any loss head) every inner iterate stays in ``c_k theta_0 + span`` of the
support rows (scaled by per-feature rates), and the reverse-pass vector in the
span of the query and support rows. The whole computation then runs on
``n``-dimensional coefficients with the Gram matrices ``X_s A X_s^T`` and
``X_q A X_s^T``, and maps back to ``d`` dimensions once. It gives the same
numbers as the primal form (``refmaml.maml``) to rounding and is cheaper when
the inner loop is long and the support set short compared with ``d`` (G8); the
choice is :mod:`refmaml.policy`'s. It needs of the model only its head (the loss,
residual and curvature in output space) and the linear network's matrix view.

Arrays carry a trailing output axis throughout (length 1 for one output per
example, the network's ``as_matrix``): coefficients ``(T, n, C)``, outputs
``(T, n, C)``, parameters ``(T, d, C)``.
"""

from array_api_compat import device

from . import _threads, _xp


def rate_kind(p):
    """How the dual form can take the call (G5): ``"scalar"`` (one number per step, any ``l2``),
    ``"feature"`` (one per feature, shared by the steps and classes, ``l2 = 0``), or None
    (the primal form is needed: other rates, or a network that is not linear (G1))."""
    if not p.model.linear:
        return None
    rate = p.rate
    body = tuple(rate.shape[1:]) if p.per_step else tuple(rate.shape)
    if all(s == 1 for s in body):
        return "scalar"
    if p.per_step or p.l2:
        return None
    C_axis = len(p.theta.shape) == 2
    if C_axis and (len(body) < 2 or body[-1] != 1):
        return None  # rates that differ by class
    return "feature"


def value_and_grad(p, *, first_order=False, lr_grad=False, record=None, pairs=False):
    """Per-task query losses ``(T,)``, meta-gradients ``(T,) + P`` and, with ``lr_grad``, rate
    gradients ``(T,) + inner_lr.shape``, by the dual form (G1)-(G7).

    ``record``, a dict, receives the Gram blocks ``G``, ``M`` (G3), (G5), ``Z0``, ``U0``, the
    forward coefficients ``forward = [(Gamma_k, c_k), ...]`` (G2) and the reverse ones ``reverse =
    [(k, E_k, xi_k), ...]`` (G4), in matrix form (a trailing output axis), for ``refmaml explain``.

    ``pairs``: compute the two products of each independent pair with the data (``G`` and ``M``,
    ``Z_0`` and ``U_0``, the two terms of (G6)) in two threads (:func:`refmaml._threads.both`); each
    product is the one computed without it, so the result is the same to the bit.
    """
    xp, net, head = p.xp, p.model.network, p.model.head
    kind = rate_kind(p)
    K, n, m = p.steps, p.Xs.shape[1], p.Xq.shape[1]
    Xs, Xq = p.Xs, p.Xq
    XsT = xp.matrix_transpose(Xs)
    theta0 = net.as_matrix(xp.broadcast_to(p.theta, (Xs.shape[0],) + tuple(p.theta.shape)))
    if kind == "feature":  # A = diag(alpha) over the features (G5)
        column = tuple(p.theta.shape[:1]) + (1,) * (len(p.theta.shape) - 1)
        alpha = xp.reshape(xp.broadcast_to(p.rate, column), (-1,))
        XsA, XqA = Xs * alpha, Xq * alpha
    else:
        XsA, XqA = Xs, Xq
    together = _threads.both if pairs else _one_then_other
    M, G = together(lambda: XqA @ XsT,    # (T, m, n)   X_q A X_s^T
                    lambda: XsA @ XsT)    # (T, n, n)   X_s A X_s^T   (G3), (G5)
    U0, Z0 = together(lambda: Xq @ theta0,   # (T, m, C)   X_q theta_0
                      lambda: Xs @ theta0)   # (T, n, C)   X_s theta_0

    # forward (G2)-(G3): theta_k = c_k theta_0 + A X_s^T Gamma_k, logits Z_k = c_k Z_0 + G Gamma_k.
    # Gamma_0 = 0 and E_K = 0 are kept as None, and c_k = xi_k = 1 as the Python number 1.0 while
    # no step decays (delta = 1): the products with them are skipped, not computed.
    decay = kind == "scalar" and p.l2 != 0
    keep_path = lr_grad or record is not None   # Gamma_k read again after the loop
    Gam, c = None, _ONE
    states, residuals, path, steps = [], [], [], []
    for k in range(K):
        Z = _scaled(c, Z0) if Gam is None else _scaled(c, Z0) + G @ Gam
        R, state = head.residual(net.from_matrix(Z), p.ys)
        R = net.as_matrix(R) / n                                # R_k = r_k / n
        s_k, delta = _step(p, k, kind, decay)
        states.append(state)
        residuals.append(R)
        steps.append((s_k, delta))
        if keep_path:
            path.append((xp.zeros_like(Z0) if Gam is None else Gam, c))
        step = s_k * R
        if Gam is None:
            Gam = -step
        elif keep_path or delta is not _ONE:
            Gam = _scaled(delta, Gam) - step
        else:
            Gam -= step   # this loop's own array, held by nothing else
        c = _scaled(delta, c)
    Zq = _scaled(c, U0) if Gam is None else _scaled(c, U0) + M @ Gam
    if Gam is None:
        Gam = xp.zeros_like(Z0)
    if record is not None:
        record.update(G=G, M=M, Z0=Z0, U0=U0, forward=path + [(Gam, c)], reverse=[])
    losses = head.value(net.from_matrix(Zq), p.yq)
    Rq, _ = head.residual(net.from_matrix(Zq), p.yq)
    B = net.as_matrix(Rq) / m            # g_K = X_q^T B   (G4)
    MtB = xp.matrix_transpose(M) @ B   # (T, n, C)

    # reverse (G4): g_k = xi_k X_q^T B + X_s^T E_k; first order keeps g_K (xi = 1, E = 0)
    E, xi = None, _ONE
    terms, S = [], None
    for k in reversed(range(K) if lr_grad or not first_order else ()):
        s_k, delta = steps[k]
        if first_order or E is None:
            V = _scaled(xi, MtB)                                 # X_s A g_{k+1}
        else:
            V = _scaled(xi, MtB) + G @ E
        if lr_grad and kind == "scalar":
            E_k = xp.zeros_like(Z0) if E is None else E
            terms.append(_scalar_rate_term(p, V, E_k, xi, residuals[k], path[k], Z0, B, U0))
        if lr_grad and kind == "feature" and not first_order and E is not None:
            S = _accumulate(xp, S, E, residuals[k])
        if not first_order:
            curv = (s_k / n) * net.as_matrix(head.curvature(states[k], net.from_matrix(V)))
            if E is None:
                E = -curv
            elif record is not None or delta is not _ONE:
                E = _scaled(delta, E) - curv
            else:
                E -= curv     # this loop's own array, held by nothing else
            xi = _scaled(delta, xi)
            if record is not None:
                record["reverse"].append((k, E, xi))
    XqT = xp.matrix_transpose(Xq)
    if E is None:
        g = _scaled(xi, XqT @ net.as_matrix(Rq)) / m                                  # (G6)
    else:
        query, support = together(lambda: XqT @ net.as_matrix(Rq), lambda: XsT @ E)
        g = _scaled(xi, query) / m + support
    g = net.from_matrix(g)
    if not lr_grad:
        return losses, g, None
    if kind == "scalar":
        return losses, g, _scalar_rate_gradient(p, terms[::-1], B)
    return losses, g, _feature_rate_gradient(p, residuals, B, S, Xs, Xq)


def _step(p, k, kind, decay):
    """``(alpha_k, 1 - l2 alpha_k)`` for a rate that is one number per step, ``alpha_k`` 0-d; the
    decay is the Python number 1.0 where it is 1 (``l2 = 0``), and both are 1.0 for per-feature
    rates (``A`` holds them, (G5))."""
    if kind == "feature":
        return _ONE, _ONE
    a = p.xp.reshape(p.step_rate(k), ())
    return a, (1 - p.l2 * a) if decay else _ONE


def _one_then_other(f, g):
    """``(f(), g())`` in this thread."""
    return f(), g()


def _scaled(c, a):
    """``c * a``, or ``a`` itself where ``c`` is the Python number 1.0 (no decay so far)."""
    return a if c is _ONE else c * a


_ONE = 1.0


def _accumulate(xp, S, E, R):
    """``S += E_{k+1} R_k^T`` (n x n per task), summed over the classes (G7)."""
    term = E @ xp.matrix_transpose(R)
    return term if S is None else S + term


def _scalar_rate_term(p, V, E, xi, R, point, Z0, B, U0):
    """Step ``k``'s ``-<g_{k+1}, grad L_s(theta_k)>`` in n-space (G7):
    ``grad L_s(theta_k) = X_s^T (R_k + l2 Gamma_k) + l2 c_k theta_0``."""
    xp = p.xp
    Gam_k, c_k = point
    value = _xp.task_dot(xp, V, R + p.l2 * Gam_k)
    if p.l2:
        value = value + p.l2 * c_k * (xi * _xp.task_dot(xp, B, U0) + _xp.task_dot(xp, E, Z0))
    return -value


def _scalar_rate_gradient(p, terms, B):
    xp = p.xp
    T = B.shape[0]
    if not terms:
        return xp.zeros((T,) + tuple(p.rate.shape), dtype=B.dtype, device=_device(p))
    per_step = xp.stack(terms, axis=1)
    if not p.per_step:
        per_step = xp.sum(per_step, axis=1)
    return xp.reshape(per_step, (T,) + tuple(p.rate.shape))


def _feature_rate_gradient(p, residuals, B, S, Xs, Xq):
    """``-sum_k g_{k+1} * (X_s^T R_k)``, summed over the classes, for per-feature rates (G7)."""
    xp = p.xp
    T, d = B.shape[0], Xs.shape[2]
    per_feature = xp.zeros((T, d), dtype=B.dtype, device=_device(p))
    if residuals:
        total = residuals[0]
        for R in residuals[1:]:
            total = total + R
        query = (xp.matrix_transpose(Xq) @ B) * (xp.matrix_transpose(Xs) @ total)
        per_feature = xp.sum(query, axis=-1)
    if S is not None:
        per_feature = per_feature + xp.sum(Xs * (S @ Xs), axis=1)
    return xp.reshape(-per_feature, (T,) + tuple(p.rate.shape))


def _device(p):
    return device(p.theta)
