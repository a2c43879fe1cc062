"""The figures of the derivations: ``refmaml figures --out DIR`` writes them (the committed copies are
``derivations/figures/``, made with ``refmaml figures --out derivations/figures``).

Each figure has a function that computes its numbers (a dict of plain numbers and lists, no
matplotlib), and one that draws them; :func:`make_all` writes the four PNGs and ``figures.json``, the
numbers each figure draws, so that ``tests/test_figures.py`` checks the numbers, not the pixels.

* ``unrolled.png``: the unrolled computation of MAML with ``K = 2`` inner steps on a tiny logistic
  instance, the forward pass (M2) and the reverse pass (M6) with their numbers;
* ``landscape.png``: the meta-loss of linear regression over the plane ``d = 2`` (Q6), its minimiser
  (Q8), the first-order fixed point (Q10), the pooled least-squares solution (Q13), and meta-training
  paths;
* ``first_order_error.png``: the relative error of the first-order meta-gradient (M8) against the
  exact one (M6) as a function of ``K`` and ``alpha``;
* ``batchnorm_coupling.png``: the Jacobian of a batch-norm layer over a stack of tasks (B4), (B6):
  the examples of a set coupled, the tasks not; beside it, the tasks wrongly stacked into one set.

Every instance is seeded and small; everything is float64 on NumPy.
"""

import json
import os

import numpy as np

from . import _atomic, _validate, maml
from .models import linear, logistic
from .models.layers import BatchNorm1d

NAMES = ("unrolled", "landscape", "first_order_error", "batchnorm_coupling")
JSON = "figures.json"
INSTALL = "drawing the figures needs matplotlib: pip install 'refmaml[plot]'"


def _list(a):
    return np.asarray(a, dtype=np.float64).tolist()


# ----------------------------------------------------------------------------- 1. the unrolled loop

def unrolled_data(*, seed=0, inner_lr=0.5):
    """The numbers of the unrolled computation of one task with ``K = 2``: the logistic model with
    ``d = 2`` features, 4 support and 3 query examples.

    Forward (``derivations/maml.md`` (M2)): ``theta_{k+1} = theta_k - alpha grad L_s(theta_k)``, with
    the support losses and gradients; then ``L_q(theta_2)``. Reverse (M6): ``g_2 = grad L_q(theta_2)``,
    ``g_k = g_{k+1} - alpha H_s(theta_k) g_{k+1}`` with the Hessian-vector products ``H_s(theta_k)
    g_{k+1}`` (``derivations/logistic.md`` (L11)) listed; ``g_0`` is the meta-gradient, beside the
    first-order one (M8), ``g_2``.
    """
    alpha = _rate(inner_lr)
    rng = np.random.default_rng(_seed(seed))
    K, d = 2, 2
    Xs, Xq = rng.standard_normal((4, d)), rng.standard_normal((3, d))
    ys, yq = np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0])
    theta = np.array([0.5, -0.5])
    iterates, support_loss, support_grad = [theta], [], []
    for k in range(K):  # (M2)
        support_loss.append(float(logistic.loss(iterates[k], Xs, ys)))
        support_grad.append(logistic.grad(iterates[k], Xs, ys))
        iterates.append(iterates[k] - alpha * support_grad[k])
    query_loss = float(logistic.loss(iterates[K], Xq, yq))
    g = [None] * (K + 1)
    g[K] = logistic.grad(iterates[K], Xq, yq)
    hvps = [None] * K
    for k in reversed(range(K)):  # (M6)
        hvps[k] = logistic.hvp(iterates[k], Xs, ys, g[k + 1])
        g[k] = g[k + 1] - alpha * hvps[k]
    return dict(model="logistic", seed=seed, inner_lr=alpha, inner_steps=K,
                Xs=_list(Xs), ys=_list(ys), Xq=_list(Xq), yq=_list(yq),
                theta=_list(iterates), support_loss=support_loss, support_grad=_list(support_grad),
                query_loss=query_loss, g=_list(g), hvp=_list(hvps), first_order_grad=_list(g[K]))


def _vector(v, digits=3):
    return "(" + ", ".join(f"{x:+.{digits}f}" for x in v) + ")"


def draw_unrolled(data, path):
    """Write ``unrolled.png``: the forward pass left to right on top, the reverse pass right to left
    below, each arrow with its equation and each box with its numbers."""
    from matplotlib.figure import Figure

    K, alpha = data["inner_steps"], data["inner_lr"]
    theta, g, hvp = data["theta"], data["g"], data["hvp"]
    fig = Figure(figsize=(12.5, 5.6))
    ax = fig.subplots()
    xs = [3.3 * k for k in range(K + 2)]
    ax.set_xlim(-1.0, xs[-1] + 1.0)
    ax.set_ylim(-0.55, 5.2)
    ax.axis("off")
    top, bottom, half = 3.6, 0.9, 0.95
    box = dict(boxstyle="round,pad=0.45", fc="#e8f0fb", ec="#2b5c9e")
    rbox = dict(boxstyle="round,pad=0.45", fc="#fbeee6", ec="#b5562b")
    blue, red = "#2b5c9e", "#b5562b"

    def arrow(x0, y0, x1, y1, colour, **kw):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(dict(arrowstyle="-|>", lw=1.6, color=colour, shrinkA=0, shrinkB=0), **kw))

    for k in range(K + 1):
        ax.text(xs[k], top, f"$\\theta_{k}$\n{_vector(theta[k])}" + (f"\n$L_s$ = {data['support_loss'][k]:.4f}"
                                                                     if k < K else ""),
                ha="center", va="center", fontsize=10, bbox=box)
        ax.text(xs[k], bottom, f"$g_{k}$\n{_vector(g[k])}", ha="center", va="center", fontsize=10, bbox=rbox)
    ax.text(xs[K + 1], top, f"$L_q(\\theta_{K})$\n= {data['query_loss']:.4f}", ha="center", va="center",
            fontsize=10, bbox=box)
    for k in range(K):
        arrow(xs[k] + half, top, xs[k + 1] - half, top, blue)
        ax.text((xs[k] + xs[k + 1]) / 2, top + 0.6,
                f"(M2): $\\theta_{k + 1} = \\theta_{k} - \\alpha\\nabla L_s(\\theta_{k})$\n"
                f"$\\nabla L_s(\\theta_{k})$ = {_vector(data['support_grad'][k])}",
                ha="center", va="bottom", fontsize=9, color=blue)
        arrow(xs[k + 1] - half, bottom, xs[k] + half, bottom, red)
        ax.text((xs[k] + xs[k + 1]) / 2, bottom - 0.45,
                f"(M6): $g_{k} = (I - \\alpha H_s(\\theta_{k}))\\, g_{k + 1}$\n"
                f"$= g_{k + 1} - \\alpha H_s(\\theta_{k}) g_{k + 1}$, an HVP (L11):\n"
                f"$H_s(\\theta_{k}) g_{k + 1}$ = {_vector(hvp[k])}",
                ha="center", va="top", fontsize=9, color=red)
        # the reverse step k needs H_s at theta_k: a dotted line from the forward box
        arrow(xs[k] + 0.3, top - 0.65, (xs[k] + xs[k + 1]) / 2, bottom + 0.12, "0.45", ls=":", lw=1.1)
        ax.text((xs[k] + 0.3 + (xs[k] + xs[k + 1]) / 2) / 2 + 0.12, (top + bottom) / 2,
                f"$H_s(\\theta_{k})$ needs $\\theta_{k}$", fontsize=9, color="0.35", ha="left", va="center")
    arrow(xs[K] + half, top, xs[K + 1] - 0.75, top, blue)
    arrow(xs[K + 1], top - 0.55, xs[K] + half, bottom + 0.2, "0.3")
    ax.text((xs[K] + half + xs[K + 1]) / 2 + 0.3, (top + bottom) / 2, f"(M6): $g_{K} = \\nabla L_q(\\theta_{K})$",
            fontsize=9, color="0.3", ha="left", va="center")
    ax.text(xs[0] - 0.8, 5.0, "forward pass (M2), remembering what each $H_s(\\theta_k)$ needs",
            fontsize=11, color=blue, ha="left")
    ax.text(xs[0] - 0.8, -0.5, f"reverse pass (M6): meta-gradient $\\nabla F = g_0$ = {_vector(g[0], 4)};  "
            f"first-order MAML (M8) stops at $g_{K}$ = {_vector(g[K], 4)}",
            fontsize=11, color=red, ha="left")
    ax.set_title(f"MAML unrolled, K = {K}, $\\alpha$ = {alpha:g}: logistic model, d = 2, "
                 f"{len(data['ys'])} support and {len(data['yq'])} query examples (seed {data['seed']})",
                 fontsize=11)
    fig.tight_layout()
    _save(fig, path)


# ------------------------------------------------------------------------------ 2. the landscape

def _linear_instance(seed, T, n, m):
    """``T`` tasks of linear regression in ``d = 2``: targets ``x^T w_t`` plus noise 0.1, the task
    weights ``w_t`` spread around ``(1, -0.5)``; the second feature has a smaller scale, so the
    landscape is not round."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 0.5])
    Xs = rng.standard_normal((T, n, 2)) * scale
    Xq = rng.standard_normal((T, m, 2)) * scale
    w = np.array([1.0, -0.5]) + rng.standard_normal((T, 2))
    ys = np.einsum("tnd,td->tn", Xs, w) + 0.1 * rng.standard_normal((T, n))
    yq = np.einsum("tmd,td->tm", Xq, w) + 0.1 * rng.standard_normal((T, m))
    return Xs, ys, Xq, yq


def landscape_data(*, seed=26, tasks=4, inner_lr=0.15, inner_steps=3, grid=61, outer_steps=30, start=(0.0, 2.0)):
    """The meta-loss ``F(theta)`` of linear regression over a grid of the plane (``d = 2``), from the
    affine map of the inner loop (``derivations/linear.md`` (Q5), (Q6)): ``F = mean_t L_q(M_t theta +
    c_t)``; with its minimiser ``theta*`` (Q8), the first-order fixed point (Q10) (where the
    first-order meta-gradient (M8) is zero), the pooled least-squares solution (Q13) (every example
    of every task in one regression), and two meta-training paths of ``outer_steps`` plain gradient steps from the same
    ``start``: exact MAML (``refmaml.meta_value_and_grad``, (M6)) and first-order MAML (M8), with the
    outer step ``1 / lambda`` for ``lambda`` the larger of the top eigenvalue of the Hessian
    ``mean_t M_t^T Q_t M_t`` of ``F`` and the spectral radius of the first-order iteration's matrix
    ``mean_t Q_t M_t``.
    4 support and 8 query examples per task."""
    seed, T = _seed(seed), _validate_int(tasks, "tasks", 1, 1000)
    alpha, K = _rate(inner_lr), _validate_int(inner_steps, "inner_steps", 0)
    size, steps = _validate_int(grid, "grid", 2, 1000), _validate_int(outer_steps, "outer_steps", 1)
    try:
        start = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"start must be two finite numbers; got {start!r}") from None
    if start.shape != (2,) or not np.all(np.isfinite(start)):
        raise ValueError(f"start must be two finite numbers; got {start.tolist()}")
    n, m = 4, 8
    Xs, ys, Xq, yq = _linear_instance(seed, T, n, m)
    kw = dict(inner_lr=alpha, inner_steps=K)
    star = linear.meta_optimum(Xs, ys, Xq, yq, **kw)
    first_order = linear.first_order_fixed_point(Xs, ys, Xq, yq, **kw)
    pooled = linear.pooled_optimum(Xs, ys, Xq, yq)
    M, c = linear.affine_map(Xs, ys, **kw)
    Q = 2 * np.einsum("tmd,tme->tde", Xq, Xq) / m
    curvature = np.linalg.eigvalsh(np.mean(np.einsum("tdk,tde,tel->tkl", M, Q, M), axis=0))
    drift = np.abs(np.linalg.eigvals(np.mean(Q @ M, axis=0)))        # the first-order iteration's matrix
    beta = 1 / max(curvature[-1], drift.max())
    paths = {}
    for name, fo in (("exact", False), ("first_order", True)):
        theta, path, values = start, [start], []
        for _ in range(steps):
            value, grad = maml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model="linear", first_order=fo, **kw)
            values.append(float(value))
            theta = theta - beta * grad
            path.append(theta)
        values.append(float(maml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model="linear", **kw)[0]))
        paths[name] = dict(theta=_list(path), meta_loss=values)
    points = np.stack([star, first_order, pooled, start])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.25 * (high - low) + 0.2
    t0 = np.linspace(low[0] - pad[0], high[0] + pad[0], size)
    t1 = np.linspace(low[1] - pad[1], high[1] + pad[1], size)
    grid_theta = np.stack(np.meshgrid(t0, t1, indexing="xy"), axis=-1)  # (size, size, 2): [row = t1, col = t0]
    theta_K = np.einsum("tde,abe->abtd", M, grid_theta) + c            # (Q5) at every grid point
    residual = np.einsum("tmd,abtd->abtm", Xq, theta_K) - yq
    F = np.mean(residual ** 2, axis=(-1, -2))                          # (Q6), (M3)
    return dict(model="linear", seed=seed, tasks=T, support=n, query=m, inner_lr=alpha, inner_steps=K,
                Xs=_list(Xs), ys=_list(ys), Xq=_list(Xq), yq=_list(yq),
                theta0=_list(t0), theta1=_list(t1), meta_loss=_list(F),
                theta_star=_list(star), first_order_fixed_point=_list(first_order), pooled=_list(pooled),
                meta_loss_at=dict(theta_star=_value(star, Xs, ys, Xq, yq, kw),
                                  first_order_fixed_point=_value(first_order, Xs, ys, Xq, yq, kw),
                                  pooled=_value(pooled, Xs, ys, Xq, yq, kw)),
                outer_lr=float(beta), curvature=_list(curvature), start=_list(start), paths=paths)


def _value(theta, Xs, ys, Xq, yq, kw):
    return float(maml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model="linear", **kw)[0])


def draw_landscape(data, path):
    """Write ``landscape.png``: contours of ``F`` (log-spaced levels) with the three solutions and
    the two meta-training paths; beside it, ``F`` along the paths."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    F = np.array(data["meta_loss"])
    t0, t1 = np.array(data["theta0"]), np.array(data["theta1"])
    fig = Figure(figsize=(13, 6.6))
    ax, side = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(1.25, 1)))
    low = min(F.min(), data["meta_loss_at"]["theta_star"])
    levels = np.geomspace(low * 0.999, F.max(), 18)
    cs = ax.contourf(t0, t1, F, levels=levels, norm=LogNorm(), cmap="Blues_r", alpha=0.85)
    ax.contour(t0, t1, F, levels=levels, colors="0.4", linewidths=0.5)
    fig.colorbar(cs, ax=ax, label="meta-loss F($\\theta$) (log scale)", format="%.2g")
    colours = dict(exact="C3", first_order="C1")
    labels = dict(exact="exact MAML (M6)", first_order="first-order MAML (M8)")
    for name, p in data["paths"].items():
        theta = np.array(p["theta"])
        ax.plot(theta[:, 0], theta[:, 1], ".-", color=colours[name], ms=5, lw=1.2,
                label=f"{labels[name]}: {len(theta) - 1} gradient steps")
    ax.plot(*data["start"], "s", color="k", ms=7, label="start")
    ax.plot(*data["theta_star"], "*", color="C3", ms=17, mec="k", label="$\\theta^*$, minimiser of F (Q8)")
    ax.plot(*data["first_order_fixed_point"], "D", color="C1", ms=9, mec="k",
            label="first-order fixed point (Q10)")
    ax.plot(*data["pooled"], "o", color="C2", ms=9, mec="k", label="pooled least squares (Q13)")
    ax.set(xlabel="$\\theta_1$", ylabel="$\\theta_2$", aspect="equal")
    ax.set_title(f"linear regression, d = 2, T = {data['tasks']} tasks, K = {data['inner_steps']}, "
                 f"$\\alpha$ = {data['inner_lr']:g} (seed {data['seed']})", fontsize=10)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    floor = 1e-15 * data["meta_loss_at"]["theta_star"]  # below it, rounding
    for name, p in data["paths"].items():
        side.semilogy(np.maximum(np.array(p["meta_loss"]) - data["meta_loss_at"]["theta_star"], floor), ".-",
                      color=colours[name], label=labels[name])
    for name, colour, label in (("first_order_fixed_point", "C1", "first-order fixed point"),
                                ("pooled", "C2", "pooled least squares")):
        side.axhline(data["meta_loss_at"][name] - data["meta_loss_at"]["theta_star"], color=colour, ls="--",
                     lw=1, label=f"F - F* at the {label}")
    side.set(xlabel="outer gradient step", ylabel="F($\\theta$) - F($\\theta^*$)",
             title=f"the meta-loss along the paths (outer rate {data['outer_lr']:.3g})")
    side.legend(fontsize=9)
    fig.tight_layout()
    _save(fig, path)


# ------------------------------------------------------------------------ 3. the first-order error

def first_order_error_data(*, seed=0, tasks=5, features=4, inner_lrs=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                           inner_steps=10):
    """The relative error ``||grad F^FO - grad F|| / ||grad F||`` of first-order MAML (M8) against
    the exact meta-gradient (M6) for ``K = 1..inner_steps`` and each rate, on one seeded logistic
    instance (``tasks`` tasks, ``features`` features, 5 support and 10 query examples per task).
    For small ``alpha`` the error grows as ``alpha K``: the dropped part is
    ``-alpha sum_k H_s(theta_k) grad L_q(theta_K) + O(alpha^2)`` (``derivations/maml.md``, after (M8))."""
    seed, T = _seed(seed), _validate_int(tasks, "tasks", 1, 1000)
    d, K = _validate_int(features, "features", 1, 100), _validate_int(inner_steps, "inner_steps", 1)
    rates = [_rate(a, "inner_lrs") for a in np.atleast_1d(np.asarray(inner_lrs, dtype=object)).tolist()]
    if not rates:
        raise ValueError("inner_lrs must hold at least one rate")
    rng = np.random.default_rng(seed)
    Xs, Xq = rng.standard_normal((T, 5, d)), rng.standard_normal((T, 10, d))
    w = rng.standard_normal((T, d))
    ys = (np.einsum("tnd,td->tn", Xs, w) > 0).astype(np.float64)
    yq = (np.einsum("tmd,td->tm", Xq, w) > 0).astype(np.float64)
    theta = 0.5 * rng.standard_normal(d)
    error = np.empty((len(rates), K))
    for i, alpha in enumerate(rates):
        for k in range(1, K + 1):
            _, exact = maml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=k)
            _, fo = maml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=k,
                                             first_order=True)
            error[i, k - 1] = np.linalg.norm(fo - exact) / np.linalg.norm(exact)
    return dict(model="logistic", seed=seed, tasks=T, features=d, support=5, query=10,
                Xs=_list(Xs), ys=_list(ys), Xq=_list(Xq), yq=_list(yq), theta=_list(theta), inner_lrs=rates,
                inner_steps=list(range(1, K + 1)), relative_error=_list(error))


def draw_first_order_error(data, path):
    """Write ``first_order_error.png``: the error against ``K`` for each rate, and against ``alpha``
    for a few ``K`` with the line ``alpha K`` of the first-order estimate, both on log scales."""
    from matplotlib.figure import Figure

    E = np.array(data["relative_error"])
    rates, Ks = np.array(data["inner_lrs"]), np.array(data["inner_steps"])
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(rates))]
    for i, alpha in enumerate(rates):
        left.semilogy(Ks, E[i], "o-", color=colours[i], ms=4, label=f"$\\alpha$ = {alpha:g}")
    left.set(xlabel="inner steps K", ylabel="relative error of the first-order meta-gradient",
             title="$\\|\\nabla F^{FO} - \\nabla F\\| / \\|\\nabla F\\|$ against K", xticks=Ks)
    left.legend(fontsize=9, ncol=2)
    shown = [k for k in (1, 2, 5, 10) if k in set(Ks.tolist())] or [int(Ks[0])]
    for j, k in enumerate(shown):
        col = int(np.flatnonzero(Ks == k)[0])
        right.loglog(rates, E[:, col], "o-", color=f"C{j}", ms=4, label=f"K = {k}")
    right.loglog(rates, rates, "k:", lw=1, label="$\\alpha$ (slope 1)")
    right.set(xlabel="inner rate $\\alpha$", ylabel="relative error of the first-order meta-gradient",
              title="against $\\alpha$: the dropped terms are $O(\\alpha K)$")
    right.legend(fontsize=9)
    fig.suptitle(f"first-order MAML (M8) against exact MAML (M6): logistic model, d = {data['features']}, "
                 f"T = {data['tasks']} tasks, {data['support']} support and {data['query']} query examples "
                 f"(seed {data['seed']})", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


# ------------------------------------------------------------------------ 4. batch norm's coupling

def _jacobian(layer, params, a):
    """The Jacobian of the layer's output with respect to its input, ``(a.size, a.size)`` in the
    order of ``a``'s axes, one column per unit tangent from the layer's Jacobian-vector product (B4)."""
    _, ctx = layer.forward(params, a)
    zero = tuple(np.zeros_like(p) for p in params)
    columns = []
    for j in range(a.size):
        a_dot = np.zeros(a.size)
        a_dot[j] = 1.0
        columns.append(layer.jvp(params, a, ctx, a_dot.reshape(a.shape), zero).ravel())
    return np.stack(columns, axis=1)


def batchnorm_coupling_data(*, seed=0, tasks=2, examples=4, features=2):
    """The Jacobian ``d b / d a`` of ``BatchNorm1d(features)`` over a stack of ``tasks`` sets of
    ``examples`` examples each (``derivations/batchnorm.md`` (B1), (B4), (B8)), rows and columns
    ordered by task, then feature, then example. Within one task and one feature every entry is
    nonzero: ``-(phi s / N)(1 + x_k x_l)`` off the diagonal (B6), the examples of a set coupled;
    across features and across tasks every entry is exactly 0. Beside it the same layer with the
    tasks stacked into one set (every task normalised with the others' values, the mistake
    batchnorm.md warns of): the cross-task blocks are nonzero."""
    seed, T = _seed(seed), _validate_int(tasks, "tasks", 1, 16)  # the Jacobian is dense: T n C squared
    n, C = _validate_int(examples, "examples", 2, 64), _validate_int(features, "features", 1, 16)
    rng = np.random.default_rng(seed)
    layer = BatchNorm1d(C)
    params = (1.0 + 0.5 * np.arange(C), 0.1 * np.arange(C))
    a = rng.standard_normal((T, n, C)) + np.arange(C)
    order = np.arange(T * n * C).reshape(T, n, C).transpose(0, 2, 1).ravel()  # task, feature, example
    per_task = _jacobian(layer, params, a)[np.ix_(order, order)]
    stacked = _jacobian(layer, params, a.reshape(1, T * n, C))[np.ix_(order, order)]
    _, (x_hat, s) = layer.forward(params, a)
    return dict(layer=repr(layer), eps=layer.eps, seed=seed, tasks=T, examples=n, features=C,
                gamma=_list(params[0]), beta=_list(params[1]), inputs=_list(a),
                x_hat=_list(x_hat), s=_list(s[:, 0, :]), jacobian=_list(per_task), jacobian_stacked=_list(stacked),
                order="rows and columns: task, then feature, then example")


def draw_batchnorm_coupling(data, path):
    """Write ``batchnorm_coupling.png``: the two Jacobians as heat maps on one colour scale, with
    lines between the tasks (solid) and the features (dotted)."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    T, n, C = data["tasks"], data["examples"], data["features"]
    J, S = np.array(data["jacobian"]), np.array(data["jacobian_stacked"])
    top = max(np.abs(J).max(), np.abs(S).max())
    norm = TwoSlopeNorm(0.0, -top, top)
    fig = Figure(figsize=(13, 6.6), layout="constrained")
    axes = fig.subplots(1, 2)
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"].with_extremes(bad="0.82")  # exact zeros, masked, in grey
    ticks = [f"t{t + 1} f{c + 1} x{i + 1}" for t in range(T) for c in range(C) for i in range(n)]
    titles = ("statistics per task (B1), (B8), as refmaml computes:\nthe examples of a set coupled (B6); "
              "cross-task blocks exactly 0",
              "the tasks stacked into one set, the mistake batchnorm.md\nwarns of: each task depends on "
              "the other's inputs")
    for ax, M, title in zip(axes, (J, S), titles):
        im = ax.imshow(np.ma.masked_equal(M, 0.0), cmap=cmap, norm=norm)
        for b in range(1, T * C):
            style = dict(color="k", lw=1.6) if b % C == 0 else dict(color="0.35", lw=0.8, ls=":")
            ax.axhline(b * n - 0.5, **style)
            ax.axvline(b * n - 0.5, **style)
        ax.set_xticks(range(T * n * C), ticks, rotation=90, fontsize=9)
        ax.set_yticks(range(T * n * C), ticks, fontsize=9)
        ax.set_xlabel("input $a$ (task t, feature f, example x)")
        ax.set_ylabel("output $b$")
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=axes, label="$\\partial b_k / \\partial a_l$ (grey: exactly 0)", shrink=0.85)
    fig.suptitle(f"{data['layer']} on {T} tasks of {n} examples, {C} features: the Jacobian of the outputs "
                 f"with respect to the inputs, from the layer's Jacobian-vector product (B4)", fontsize=11)
    _save(fig, path)


# ---------------------------------------------------------------------------------------- writing

DATA = dict(unrolled=unrolled_data, landscape=landscape_data, first_order_error=first_order_error_data,
            batchnorm_coupling=batchnorm_coupling_data)
DRAW = dict(unrolled=draw_unrolled, landscape=draw_landscape, first_order_error=draw_first_order_error,
            batchnorm_coupling=draw_batchnorm_coupling)


def compute_all():
    """``{name: data}`` of the four figures with their default instances: what ``figures.json``
    holds."""
    return {name: DATA[name]() for name in NAMES}


def make_all(out_dir):
    """Write ``unrolled.png``, ``landscape.png``, ``first_order_error.png``, ``batchnorm_coupling.png``
    and ``figures.json`` (the numbers each figure draws) into ``out_dir`` (created if missing),
    atomically; returns their paths. Needs matplotlib (``pip install 'refmaml[plot]'``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL) from None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path; got {type(out_dir).__name__}")
    data = compute_all()
    paths = []
    for name in NAMES:
        paths.append(os.path.join(os.fspath(out_dir), f"{name}.png"))
        DRAW[name](data[name], paths[-1])
    paths.append(os.path.join(os.fspath(out_dir), JSON))
    with _atomic.replacing(paths[-1]) as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return paths


def _save(fig, path):
    with _atomic.replacing(path, binary=True) as f:  # no version stamp: the same numbers, the same file
        fig.savefig(f, dpi=110, format="png", metadata={"Software": None})


def _seed(seed):
    return _validate.integer(seed, "seed")


def _validate_int(value, name, minimum, maximum=None):
    """An integer argument of a figure: at least ``minimum``; at most ``maximum`` (default
    :data:`refmaml._validate.MAX_STEPS`), so that a figure's work stays bounded."""
    return _validate.integer(value, name, minimum, _validate.MAX_STEPS if maximum is None else maximum)


def _rate(value, name="inner_lr"):
    return _validate.positive(value, name)
