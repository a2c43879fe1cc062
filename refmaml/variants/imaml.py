"""Implicit MAML (Rajeswaran, Finn, Kakade and Levine 2019): ``derivations/variants.md`` (V10)-(V14).

Everything is written in the inputs' array namespace, all tasks at once:
Newton's method with conjugate-gradient directions and a backtracking line
search for the inner problem, conjugate gradients for the implicit
meta-gradient, both through the model's Hessian-vector product. Each
iteration reads back one boolean per test (converged? step accepted?), a
synchronisation but no data transfer.
"""

import math

from .. import _validate, _xp, models, problem
from ..errors import ConvergenceError

NEWTON_MAXITER = 100
HALVINGS = 60  # line search: the step never shrinks below 2^-60
ARMIJO = 1e-4  # sufficient decrease constant


def _norm(xp, a):
    return xp.sqrt(_xp.task_dot(xp, a, a))


def _per_task(xp, s, like):
    """``(T,)`` reshaped to broadcast against ``like (T, P...)``."""
    return xp.reshape(s, (s.shape[0],) + (1,) * (like.ndim - 1))


def _safe(xp, s):
    """``s`` with zeros replaced by ones, for divisions whose zero lanes are masked."""
    return xp.where(s > 0, s, xp.ones_like(s))


def _not_positive_definite(xp, bad, what, lam, residual):
    tasks = [int(t) for t in _xp.to_numpy(xp.nonzero(bad)[0])]
    shown = ", ".join(map(str, tasks[:10])) + (", ..." if len(tasks) > 10 else "")
    return ConvergenceError(
        f"implicit MAML: H_s + lam I is not positive definite ({what}) in task(s) {shown}: conjugate "
        f"gradients met a direction of curvature <= 0, so the proximal inner problem is not strongly "
        f"convex there (a network's loss need not be convex; derivations/variants.md (V12)); "
        f"raise lam (now {lam}) above the most negative eigenvalue of the support Hessian",
        residual=residual, tolerance=float("nan"))


def conjugate_gradient(xp, apply, b, rtol, maxiter, *, what="", lam=None):
    """Solve ``A x = b`` for every task by conjugate gradients (V13), ``A`` symmetric positive definite.

    ``apply(v)`` is ``A v`` for ``v (T, P...)``; ``rtol`` a number or ``(T,)``.
    A task stops when its residual ``||b - A x|| <= rtol ||b||``. Returns
    ``(x, relative residual (T,), iterations)``; the residual is recomputed as
    ``b - A x`` at the end, not taken from the recursion. A direction ``p`` with
    ``p^T A p <= 0`` in a task still running shows that ``A`` is not positive definite there:
    a :class:`refmaml.ConvergenceError` naming those tasks (``what`` and ``lam`` go into its message).
    """
    x = xp.zeros_like(b)
    r, p = b, b
    rr = _xp.task_dot(xp, r, r)
    b_norm = xp.sqrt(rr)
    iterations = 0
    while iterations < maxiter:
        done = xp.sqrt(rr) <= rtol * b_norm
        if bool(xp.all(done)):
            break
        Ap = apply(p)
        pAp = _xp.task_dot(xp, p, Ap)
        bad = ~done & (pAp <= 0)
        if bool(xp.any(bad)):
            raise _not_positive_definite(xp, bad, what, lam, float(xp.max(xp.sqrt(rr) / _safe(xp, b_norm))))
        step = xp.where(done | (pAp <= 0), xp.zeros_like(rr), rr / _safe(xp, pAp))
        x = x + _per_task(xp, step, x) * p
        r = r - _per_task(xp, step, r) * Ap
        rr_new = _xp.task_dot(xp, r, r)
        beta = rr_new / _safe(xp, rr)
        p = xp.where(_per_task(xp, done, p), p, r + _per_task(xp, beta, p) * p)
        rr = rr_new
        iterations += 1
    residual = _norm(xp, b - apply(x)) / _safe(xp, b_norm)
    return x, residual, iterations


def _overflow():
    return ValueError("implicit MAML: the support loss, its gradient or its curvature overflows the "
                      "floating-point range: theta, Xs or l2 is too large (see derivations/range.md)")


def _masking(p):
    """``v -> mask * v`` for a problem with an ``inner_mask`` (V15), the identity without one."""
    if p.mask is None:
        return lambda v: v
    m = p.xp.astype(p.mask, p.theta.dtype)
    return lambda v: v * m


def _inner_solve(p, lam, tol):
    """``phi* = argmin_phi L_s(phi) + (lam/2)||phi - theta||^2`` for every task (V10), (V12).

    With an ``inner_mask`` the minimisation runs over the masked parameters only, the others
    held at ``theta`` (V15): the gradient and the Hessian are those of the masked block.
    Newton's method: the direction solves ``(H_s(phi) + lam I) d = -grad G(phi)``
    by conjugate gradients to the forcing tolerance ``min(1/2, sqrt(r))``
    (``r`` the relative gradient norm), then Armijo backtracking on ``G``. It
    stops when ``||grad G(phi)|| <= tol ||grad L_s(theta)||`` for every task.
    Returns ``(phi, the Hessian-vector product at phi, relative residual (T,), iterations)``.
    """
    xp, model = p.xp, p.model
    anchor = xp.broadcast_to(p.theta, (p.Xs.shape[0],) + tuple(p.theta.shape))
    keep = _masking(p)
    size = math.prod(p.theta.shape)
    rounding = 8 * _xp.eps(xp, p.theta.dtype)

    def objective(phi):
        return model.value(phi, p.Xs, p.ys, p.l2) + (lam / 2) * _xp.task_dot(xp, phi - anchor, phi - anchor)

    phi = anchor
    g, hvp = model.grad_hvp(phi, p.Xs, p.ys, p.l2)
    if not _xp.all_finite(xp, g, objective(phi)):
        raise _overflow()
    scale = _safe(xp, _norm(xp, keep(g)))
    for iteration in range(NEWTON_MAXITER + 1):
        grad = keep(g + lam * (phi - anchor))
        residual = _norm(xp, grad) / scale
        done = residual <= tol
        if bool(xp.all(done)) or iteration == NEWTON_MAXITER:
            break

        def hessian(v, hvp=hvp):
            return keep(hvp(keep(v))) + lam * v

        forcing = xp.minimum(xp.sqrt(residual), xp.full_like(residual, 0.5))
        d, _, _ = conjugate_gradient(xp, hessian, -grad, forcing, 10 * size + 10,
                                     what=f"Newton step {iteration + 1}", lam=lam)
        d = xp.where(_per_task(xp, done, d), xp.zeros_like(d), d)
        if not _xp.all_finite(xp, d):  # the curvature (features squared) overflowed
            raise _overflow()
        value, slope = objective(phi), _xp.task_dot(xp, grad, d)
        t = xp.ones_like(value)
        for _ in range(HALVINGS):
            # Armijo's test, with an allowance for rounding in G near the minimum,
            # where the decrease ||grad G||^2 / lam falls below G's last digit.
            trial = objective(phi + _per_task(xp, t, d) * d)
            accepted = trial <= value + ARMIJO * t * slope + rounding * xp.abs(value)
            if bool(xp.all(accepted)):
                break
            t = xp.where(accepted, t, t / 2)
        else:
            raise ConvergenceError(
                f"implicit MAML: the line search of Newton step {iteration + 1} found no decrease "
                f"(relative gradient norm {float(xp.max(residual)):.3e}, tolerance {tol:.1e}); "
                "tol may be below what rounding allows, or lam, l2, theta or Xs badly scaled",
                residual=float(xp.max(residual)), tolerance=tol)
        phi = phi + _per_task(xp, t, d) * d
        g, hvp = model.grad_hvp(phi, p.Xs, p.ys, p.l2)
    worst = float(xp.max(residual))
    if not worst <= tol:
        raise ConvergenceError(
            f"implicit MAML: the inner problem reached a relative gradient norm of {worst:.3e} "
            f"after {NEWTON_MAXITER} Newton steps, above tol={tol:.1e}; "
            "loosen tol, or increase lam (a better conditioned inner problem)",
            residual=worst, tolerance=tol)
    return phi, hvp, residual, iteration


def imaml_value_and_grad(theta, Xs, ys, Xq, yq, *, lam, model="logistic", l2=0.0, inner_mask=None, tol=None,
                         cg_maxiter=None):
    """Implicit MAML: meta-loss, implicit meta-gradient and solver report (V10)-(V14).

    For each task the adapted parameters are the minimiser of the proximal inner problem
    ``phi*(theta) = argmin_phi L_s(phi) + (lam/2)||phi - theta||^2`` (V10), with
    ``L_s`` the support loss including ``l2``; it is strongly convex for ``lam > 0``
    and solved by Newton's method with conjugate-gradient directions and a line
    search (V12). The meta-loss is the mean over tasks of ``L_q(phi*)``, and its
    gradient (V11) is the mean of ``(I + H_s(phi*)/lam)^{-1} grad L_q(phi*)``,
    solved by conjugate gradients with Hessian-vector products (V13).

    ``inner_mask`` (None, or a boolean array of ``theta``'s shape): the inner problem adapts only
    the masked parameters ``M`` and holds the others at ``theta`` (V15); the meta-gradient is then
    ``lam w`` on ``M`` and ``grad_U L_q - (H_s w)_U`` on the rest, ``w`` solving
    ``(H_MM + lam I) w = grad_M L_q``.

    ``tol`` (default ``eps^(3/4)`` of the computation dtype: about ``1.8e-12`` in
    float64, ``6.4e-6`` in float32) bounds both the inner gradient norm, relative to
    ``||grad L_s(theta)||``, and the relative residual of the linear solve; the error
    bounds it implies are (V14). ``cg_maxiter`` (default ``10 P + 10`` for ``P``
    parameters) caps the conjugate-gradient iterations of the implicit solve. A
    solve that misses ``tol`` raises :class:`refmaml.ConvergenceError` carrying
    the residual it reached.

    Real inputs only (no complex step through the solvers). Returns
    ``(meta_loss, meta_grad, info)``: a 0-d array, an array of ``theta``'s shape,
    and a dict with ``phi`` (the adapted parameters, ``theta``'s shape or ``(T,) +``
    that), ``inner_residual`` and ``cg_residual`` (the worst task's relative
    residuals, floats), ``inner_iterations`` and ``cg_iterations``, and ``tol``.
    """
    lam = _validate.positive(lam, "lam")
    p = problem.meta(models.get(model), theta, Xs, ys, Xq, yq, l2=l2, inner_lr=problem.NO_RATE,
                     inner_mask=inner_mask)
    xp = p.xp
    if _xp.is_complex(xp, p.theta):
        raise TypeError("implicit MAML takes real theta; complex parameters are for the complex "
                        "step through an unrolled inner loop (meta_value_and_grad)")
    tol = _xp.eps(xp, p.theta.dtype) ** 0.75 if tol is None else _validate.positive(tol, "tol")
    size = math.prod(p.theta.shape)
    cg_maxiter = 10 * size + 10 if cg_maxiter is None else _validate.steps(cg_maxiter, "cg_maxiter")
    with _xp.quiet_overflow():
        phi, hvp, inner_residual, inner_iterations = _inner_solve(p, lam, tol)
        losses, gq = p.model.value_grad(phi, p.Xq, p.yq, 0.0)
        keep = _masking(p)

        def system(v):
            return v + keep(hvp(keep(v))) / lam

        g, cg_residual, cg_iterations = conjugate_gradient(xp, system, keep(gq), tol, cg_maxiter,
                                                           what="implicit gradient", lam=lam)
        if p.mask is not None:  # (V15): the parameters held at theta
            rest = gq - hvp(g) / lam
            g = g + rest - keep(rest)
    worst = float(xp.max(cg_residual))
    if not worst <= tol:
        raise ConvergenceError(
            f"implicit MAML: conjugate gradients reached a relative residual of {worst:.3e} "
            f"in {cg_iterations} iterations, above tol={tol:.1e}; raise cg_maxiter or loosen tol",
            residual=worst, tolerance=tol)
    info = {
        "phi": phi if p.batched else phi[0, ...],
        "inner_residual": float(xp.max(inner_residual)),
        "inner_iterations": inner_iterations,
        "cg_residual": worst,
        "cg_iterations": cg_iterations,
        "tol": tol,
    }
    return xp.asarray(xp.mean(losses)), xp.mean(g, axis=0), info
