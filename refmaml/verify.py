"""Identity checks behind ``refmaml verify``.

Each identity is checked on seeded random instances, on every array
backend present (NumPy; array-api-strict on its default device and on
``device1``, which stands in for a GPU; CuPy when a GPU is present), in
float64 and float32.  Tolerances are stated for float64 and scaled by
``eps(dtype) / eps(float64)`` for float32; central-difference identities are
checked in float64 only (in float32 their truncation and rounding errors
leave about 5 digits, too few to say anything).

The structural identities of the softmax model (``derivations/softmax.md``
(S12), (S13)) compare a quantity that is zero in exact arithmetic with the
scale it is made of, so their tolerances sit a few tens of ``eps`` above
rounding (1e-15 for the Hessian's null space, 1e-14 for the row sums of a
meta-gradient, which accumulate K + 1 products); a bug there gives errors of
order one.

The MAML-family identities (``derivations/variants.md``): learned-rate
gradients against the complex step (1e-12); the Taylor relations of Reptile,
first-order MAML and MAML, whose "error" is the distance of the observed
order of their remainders from 2 (tolerance 0.05, float64 only); implicit
MAML against central differences (1e-6) and against the complex step through
60 unrolled proximal gradient steps (1e-10: the solver tolerance ``eps^(3/4)``
times the condition number of (V13), with room), and its solver residuals
against the default tolerance ``eps^(3/4)``.
"""

import math
from dataclasses import dataclass

import array_api_compat
import numpy as np

from . import _text, _validate, adapt, check, imaml_value_and_grad, instances, meta_value_and_grad, models
from . import reptile_direction
from .models import linear, logistic, softmax

EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Row:
    identity: str
    label: str
    backend: str
    dtype: str
    error: float
    tolerance: float

    @property
    def passed(self):
        return bool(self.error <= self.tolerance)


def backends():
    """``(name, xp, device)`` for every backend importable here."""
    found = [("numpy", array_api_compat.array_namespace(np.empty(0)), "cpu")]
    try:
        import array_api_strict as strict
    except ImportError:
        pass
    else:
        found.append(("array-api-strict", strict, strict.Device()))
        found.append(("array-api-strict:device1", strict, strict.Device("device1")))
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found.append(("cupy", array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(0)))
    except Exception:  # no CuPy, or CuPy without a usable GPU
        pass
    return found


class _Instance:
    """One seeded random problem for one model, moved to a backend and dtype.

    ``theta``, ``u``, ``v`` have the model's parameter shape: ``(d,)`` for
    the logistic model, ``(d, C)`` for the softmax model.
    """

    def __init__(self, xp, device, dtype, seed, model, T=3, n=6, m=8, d=4, C=3):
        rng = np.random.default_rng(seed)
        self.xp, self.device, self.dtype = xp, device, dtype
        self.name, self.model = model, models.get(VERIFIED.get(model, model))
        shape = self.model.parameter_shape(d, C)
        put = self.put
        self.theta = put(self.model.random_parameters(rng, shape, 0.5))
        d, outputs = self.model.dimensions(shape)

        def targets(size):  # in the model's form (instances.targets)
            return instances.targets(rng, self.model, tuple(np.atleast_1d(size)), outputs)

        self.X = put(rng.standard_normal((n, d)))
        self.y = put(targets(n))
        self.u = put(rng.standard_normal(shape))
        self.v = put(rng.standard_normal(shape))
        self.Xs = put(rng.standard_normal((T, n, d)))
        self.ys = put(targets((T, n)))
        self.Xq = put(rng.standard_normal((T, m, d)))
        self.yq = put(targets((T, m)))
        self.l2 = 0.1
        self.alpha = 0.4
        self.K = 3
        self.lam = 1.0 if self.model.convex else 10.0  # a nonconvex support loss needs lam above -min eig H_s (V12)
        lead = (1,) * len(shape)
        self.rates = {  # inner_lr shapes of derivations/variants.md (V1)
            "scalar": put(np.float64(self.alpha)),
            "per parameter": put(self.alpha * (0.5 + rng.random(shape))),
            "per step": put(self.alpha * (0.5 + rng.random((self.K,) + lead))),
            "per step and parameter": put(self.alpha * (0.5 + rng.random((self.K,) + shape))),
        }

    def put(self, a):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(self.dtype)
        return self.xp.asarray(a, device=self.device)

    def _inner(self, kw):
        """The instance's inner-loop settings, overridden by ``kw``."""
        return {"inner_lr": self.alpha, "inner_steps": self.K, "l2": self.l2, "model": self.model, **kw}

    def meta(self, **kw):
        args = self._inner(kw)
        return lambda t: meta_value_and_grad(t, self.Xs, self.ys, self.Xq, self.yq, **args)

    def adapt(self, t, **kw):
        return adapt(t, self.Xs, self.ys, **self._inner(kw))

    def unrolled_meta_loss(self, t, **kw):
        return self.xp.mean(self.model.loss(self.adapt(t, **kw), self.Xq, self.yq))

    def imaml(self, t, **kw):
        return imaml_value_and_grad(t, self.Xs, self.ys, self.Xq, self.yq, lam=self.lam, model=self.model,
                                    l2=self.l2, **kw)

    def loss(self, t, l2=None):
        return self.model.loss(t, self.X, self.y, l2=self.l2 if l2 is None else l2)

    def grad(self, t, l2=None):
        return self.model.grad(t, self.X, self.y, l2=self.l2 if l2 is None else l2)

    def hvp(self, t, v, l2=None):
        return self.model.hvp(t, self.X, self.y, v, l2=self.l2 if l2 is None else l2)

    def hessian(self, t, l2=None):
        return self.model.hessian(t, self.X, self.y, l2=self.l2 if l2 is None else l2)


def _flat(xp, a, lead=()):
    return xp.reshape(a, lead + (-1,))


def _hessian_columns(p):
    xp = p.xp
    H = p.hessian(p.theta)
    eye = xp.eye(H.shape[0], dtype=H.dtype, device=p.device)
    cols = xp.stack([_flat(xp, p.hvp(p.theta, xp.reshape(eye[j, ...], p.theta.shape)))
                     for j in range(H.shape[0])], axis=1)
    return check.relative_error(H, cols)


def _psd(p):
    xp = p.xp
    lam = xp.linalg.eigvalsh(p.hessian(p.theta, l2=0.0))
    return max(0.0, -float(xp.min(lam))) / float(xp.max(xp.abs(lam)))


def _saturated_logistic(p):
    """Logits of +-1e4: loss 5000 and gradient 0.5, exact to rounding (logistic.md (L8), (L9))."""
    theta, X = p.put([1e4]), p.put([[1.0], [1.0], [-1.0], [-1.0]])
    y = p.put([0, 1, 0, 1])
    e_loss = check.relative_error(logistic.loss(theta, X, y), p.put(5000.0))
    e_grad = check.relative_error(logistic.grad(theta, X, y), p.put([0.5]))
    return max(e_loss, e_grad)


def _saturated_softmax(p):
    """Logits (1e4, 0, -1e4) and their negatives: loss 15000, gradient (0.5, 0.5, -1) exactly
    (softmax.md (S7), (S8))."""
    theta, X = p.put([[1e4, 0.0, -1e4]]), p.put([[1.0], [-1.0]])
    y = p.put([2, 1])
    e_loss = check.relative_error(softmax.loss(theta, X, y), p.put(15000.0))
    e_grad = check.relative_error(softmax.grad(theta, X, y), p.put([[0.5, 0.5, -1.0]]))
    return max(e_loss, e_grad)


def _one_step(p):
    """K = 1 against (I - alpha H_s(theta)) grad L_q(theta_1) with explicit Hessians (M5)."""
    xp = p.xp
    _, g = p.meta(inner_steps=1, reduction="none")(p.theta)
    theta1 = p.adapt(p.theta, inner_steps=1)
    Hs = p.model.hessian(p.theta, p.Xs, p.ys, l2=p.l2)
    T = p.Xs.shape[0]
    gq = _flat(xp, p.model.grad(theta1, p.Xq, p.yq), (T,))
    ref = gq - p.alpha * (Hs @ gq[..., None])[..., 0]
    return check.relative_error(_flat(xp, g, (T,)), ref)


def _batch_mean(p):
    xp = p.xp
    _, g = p.meta()(p.theta)
    singles = [meta_value_and_grad(p.theta, p.Xs[t, ...], p.ys[t, ...], p.Xq[t, ...], p.yq[t, ...],
                                   inner_lr=p.alpha, inner_steps=p.K, l2=p.l2, model=p.model)[1]
               for t in range(p.Xs.shape[0])]
    return check.relative_error(g, xp.mean(xp.stack(singles), axis=0))


def _reduces_to_query_gradient(**kw):
    def run(p):
        _, g = p.meta(**kw)(p.theta)
        theta_K = p.adapt(p.theta, inner_lr=kw.get("inner_lr", p.alpha),
                          inner_steps=kw.get("inner_steps", p.K))
        return check.relative_error(g, p.xp.mean(p.model.grad(theta_K, p.Xq, p.yq), axis=0))
    return run


def _class_shift(p):
    """``u 1_C^T``: the same vector added to every class column."""
    return p.u[:, :1] * p.xp.ones_like(p.u)


def _null_space(p):
    """softmax.md (S12): ``||H (u 1^T)|| / (||H||_F ||u 1^T||)`` at l2 = 0."""
    xp = p.xp
    shift = _class_shift(p)
    H = p.hessian(p.theta, l2=0.0)
    return check.norm(p.hvp(p.theta, shift, l2=0.0)) / (check.norm(H) * check.norm(shift))


def _row_sums(l2):
    """softmax.md (S13): ``||G 1_C|| / (sqrt(C) ||G||)`` for the meta-gradient G."""
    def run(p):
        xp = p.xp
        _, G = p.meta(l2=l2)(p.theta)
        C = G.shape[-1]
        return check.norm(xp.sum(G, axis=-1)) / (C ** 0.5 * check.norm(G))
    return run


def _class_rates_row_sums(p):
    """softmax.md (S13): with rates that differ between classes, ``||G 1_C|| / (sqrt(C) ||G||)`` at
    l2 = 0 (a shift ``u 1^T`` is carried unchanged; with l2 > 0 it is not, and the row sums are
    of the order of G: tests/test_softmax.py)."""
    xp = p.xp
    C = p.theta.shape[-1]
    rate = p.put(p.alpha * (0.5 + np.arange(C) / C))
    _, G = p.meta(l2=0.0, inner_lr=rate)(p.theta)
    return check.norm(xp.sum(G, axis=-1)) / (C ** 0.5 * check.norm(G))


def _softmax_curvature_constant(p):
    """range.md (R3), (R4): at Theta = 0 with C = 2 the top eigenvalue of the softmax Hessian is
    ``||X||_2^2 / (2n)``, the bound's constant 1/2 reached (the logistic model's is 1/4)."""
    xp = p.xp
    n, d = p.X.shape
    H = softmax.hessian(xp.zeros((d, 2), dtype=p.X.dtype, device=p.device), p.X, p.y % 2, l2=0.0)
    top = xp.max(xp.linalg.eigvalsh(H))
    spectral = xp.max(xp.linalg.eigvalsh(xp.matrix_transpose(p.X) @ p.X))
    return check.relative_error(top, spectral / (2 * n))


def _shift_invariance(p):
    """softmax.md (S13): the meta-loss is unchanged by ``theta -> theta + u 1^T`` (l2 > 0 too)."""
    loss, _ = p.meta()(p.theta)
    shifted, _ = p.meta()(p.theta + _class_shift(p))
    return check.relative_error(shifted, loss)


def _two_classes(p):
    """softmax.md (S14): C = 2 softmax MAML (alpha, l2) = logistic MAML on t1 - t0 (2 alpha, l2/2)."""
    xp = p.xp
    theta = p.theta[:, :2]
    ys, yq = p.ys % 2, p.yq % 2
    kw = dict(inner_steps=p.K, reduction="none")
    L2, G2 = meta_value_and_grad(theta, p.Xs, ys, p.Xq, yq, inner_lr=p.alpha, l2=p.l2,
                                 model="softmax", **kw)
    L1, G1 = meta_value_and_grad(theta[:, 1] - theta[:, 0], p.Xs, ys, p.Xq, yq,
                                 inner_lr=2 * p.alpha, l2=p.l2 / 2, model="logistic", **kw)
    return max(check.relative_error(L2, L1),
               check.relative_error(G2, xp.stack([-G1, G1], axis=-1)))


def _rate_gradient(kind):
    """variants.md (V3), (V4): the rate gradient against the complex step through the inner loop."""
    def run(p):
        rate = p.rates[kind]
        return check.gradient_error(lambda a: p.unrolled_meta_loss(p.theta, inner_lr=a),
                                    lambda a: p.meta(inner_lr=a, lr_grad=True)(p.theta)[2], rate)
    return run


def _theta_gradient_with_rates(p):
    """variants.md (V2): the theta gradient with per-step, per-parameter rates."""
    rate = p.rates["per step and parameter"]
    return check.gradient_error(lambda t: p.unrolled_meta_loss(t, inner_lr=rate),
                                lambda t: p.meta(inner_lr=rate)(t)[1], p.theta)


def _first_order_rate_gradient(p):
    """variants.md (V5): first-order rate gradient = complex step with the inner gradients frozen."""
    xp, rate = p.xp, p.rates["per step and parameter"]
    path = p.adapt(p.theta, inner_lr=rate, return_trajectory=True)  # (K+1, T) + P
    frozen = [p.model.grad(path[k, ...], p.Xs, p.ys, l2=p.l2) for k in range(p.K)]

    def loss(a):
        theta_K = p.theta
        for k in range(p.K):
            theta_K = theta_K - a[k, ...] * frozen[k]
        return xp.mean(p.model.loss(theta_K, p.Xq, p.yq))

    def rate_grad(a):
        return p.meta(inner_lr=a, lr_grad=True, first_order=True)(p.theta)[2]

    return check.gradient_error(loss, rate_grad, rate)


def _reptile_one_step(p):
    """variants.md (V6): with K = 1 the direction is alpha times the mean support gradient."""
    d = reptile_direction(p.theta, p.Xs, p.ys, inner_lr=p.alpha, inner_steps=1, model=p.model, l2=p.l2)
    ref = p.alpha * p.xp.mean(p.model.grad(p.theta, p.Xs, p.ys, l2=p.l2), axis=0)
    return check.relative_error(d, ref)


def taylor_remainders(p, alpha):
    """variants.md (V7)-(V9) with L_q = L_s (query = support, l2 = 0): the norms of what is
    left of Reptile / (alpha K), first-order MAML and MAML after their terms of order <= 1."""
    xp, K = p.xp, p.K
    g = p.model.grad(p.theta, p.Xs, p.ys)
    Hg = xp.mean(p.model.hvp(p.theta, p.Xs, p.ys, g), axis=0)
    g = xp.mean(g, axis=0)
    kw = dict(inner_lr=alpha, inner_steps=K, model=p.model)
    reptile = reptile_direction(p.theta, p.Xs, p.ys, **kw) / (alpha * K)
    first = meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xs, p.ys, first_order=True, **kw)[1]
    full = meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xs, p.ys, **kw)[1]
    return [check.norm(a - (g - c * alpha * Hg))
            for a, c in ((reptile, (K - 1) / 2), (first, K), (full, 2 * K))]


def _taylor_order(p):
    """The observed order of the remainders of (V7)-(V9), from alpha = 0.002 and 0.001:
    ``max |log2(e(alpha) / e(alpha / 2)) - 2|``. The next term, of relative size
    ``O(alpha)``, moves the observed order by a few hundredths at these rates."""
    coarse, fine = taylor_remainders(p, 0.002), taylor_remainders(p, 0.001)
    return max(abs(float(np.log2(c / f)) - 2) for c, f in zip(coarse, fine, strict=True))


def _imaml_central(p):
    """variants.md (V11) against central differences of the meta-loss (V10) solved to tol."""
    return check.gradient_error(lambda t: p.imaml(t)[0], lambda t: p.imaml(t)[1], p.theta, method="central")


def _imaml_unrolled(p, steps=60):
    """variants.md (V11) against the complex step through ``steps`` gradient steps on (V10),
    from phi_0 = theta (start and anchor), with step 1 / (h_max + 1 + lam). ``steps=None`` takes
    as many as contract the distance to phi* below 1e-13: each step multiplies it by at most
    ``1 - (lam + l2) / (h_max + 1 + lam)`` (l2 bounds the support Hessian from below)."""
    xp = p.xp
    h_max = max(float(xp.max(xp.linalg.eigvalsh(p.model.hessian(p.theta, p.Xs[t, ...], p.ys[t, ...],
                                                                  l2=p.l2))))
                for t in range(p.Xs.shape[0]))
    eta = 1 / (h_max + 1 + p.lam)  # h_max at theta, plus room for the curvature along the path
    if steps is None:
        steps = math.ceil(math.log(1e-13) / math.log(1 - eta * (p.lam + p.l2)))

    def loss(t):
        phi = t
        for _ in range(steps):
            phi = phi - eta * (p.model.grad(phi, p.Xs, p.ys, l2=p.l2) + p.lam * (phi - t))
        return xp.mean(p.model.loss(phi, p.Xq, p.yq))

    return check.gradient_error(loss, lambda t: p.imaml(t)[1], p.theta)


def _dual_equals_primal(rates):
    """dual.md (G5)-(G7): the dual form against the primal form, rate gradient included; rates
    ``"scalar"`` and ``"per step"`` with the instance's l2, ``"per feature"`` with l2 = 0."""
    def run(p):
        if rates == "per feature":
            d = p.theta.shape[0]
            rate = p.put(p.alpha * (0.5 + np.arange(d) / d).reshape((d,) + (1,) * (p.theta.ndim - 1)))
            args = dict(inner_lr=rate, l2=0.0)
        else:
            args = dict(inner_lr=p.alpha if rates == "scalar" else p.rates["per step"])
        a = p.meta(form="dual", lr_grad=True, **args)(p.theta)
        b = p.meta(form="primal", lr_grad=True, **args)(p.theta)
        return max(check.relative_error(x, y) for x, y in zip(a, b, strict=True))
    return run


def _variant_identities(name, model):
    rows = [(f"learned rates ({name}, {kind}): rate gradient = complex step", "variants.md (V3), (V4)",
             1e-12, False, _rate_gradient(kind))
            for kind in ("scalar", "per parameter", "per step", "per step and parameter")]
    return rows + [
        (f"learned rates ({name}): theta gradient = complex step", "variants.md (V2)", 1e-12, False,
         _theta_gradient_with_rates),
        (f"first-order rates ({name}) = complex step, inner gradients frozen", "variants.md (V5)", 1e-12,
         False, _first_order_rate_gradient),
        (f"Reptile ({name}) K=1 = alpha mean grad L_s", "variants.md (V6)", 1e-12, False, _reptile_one_step),
        (f"Reptile, FO-MAML, MAML ({name}): Taylor remainders O(alpha^2) (|order-2|)",
         "variants.md (V7)-(V9)", 0.05, True, _taylor_order),
        (f"iMAML ({name}) gradient = central differences", "variants.md (V11)", 1e-6, True, _imaml_central),
        (f"iMAML ({name}) gradient = complex step, 60 unrolled prox steps", "variants.md (V11)", 1e-10, True,
         _imaml_unrolled) if not model.constant_curvature else
        (f"iMAML ({name}) gradient = complex step, prox steps unrolled to contraction 1e-13",
         "variants.md (V11)", 1e-10, True, lambda p: _imaml_unrolled(p, steps=None)),
        (f"iMAML ({name}) inner residual ||grad G|| / ||grad L_s(theta)||", "variants.md (V12)",
         EPS64 ** 0.75, False, lambda p: p.imaml(p.theta)[2]["inner_residual"]),
        (f"iMAML ({name}) CG residual ||b - Av|| / ||b||", "variants.md (V13), (V14)", EPS64 ** 0.75, False,
         lambda p: p.imaml(p.theta)[2]["cg_residual"]),
    ]


def _dual_identities(name):
    return [
        (f"MAML ({name}) dual form = primal form (scalar rate, l2)", "dual.md (G4), (G6), (G7)", 1e-12,
         False, _dual_equals_primal("scalar")),
        (f"MAML ({name}) dual form = primal form (rate per step)", "dual.md (G4), (G7)", 1e-12, False,
         _dual_equals_primal("per step")),
        (f"MAML ({name}) dual form = primal form (rate per feature)", "dual.md (G5), (G7)", 1e-12, False,
         _dual_equals_primal("per feature")),
        (f"MAML ({name}) dual meta-gradient = complex step (K=3)", "dual.md (G6)", 1e-12, False,
         lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta(form="dual")(t)[1], p.theta)),
    ]


def _split(p):
    """mlp.md (N7): hvp - hvp(second_order=False) = R[v], the derivative along v of
    theta -> J(theta)^T r at the residuals r held fixed (complex step)."""
    xp, model = p.xp, p.model
    net, head = model.network, model.head
    X = p.X[None, ...]
    y = model.labels(xp, p.device, p.y, p.X, tuple(p.theta.shape), p.theta.dtype, "y")[None, ...]
    hvp = model.grad_hvp(p.theta, X, y, 0.0)[1]
    R = (hvp(p.v) - hvp(p.v, second_order=False)) * X.shape[1]
    z, _ = net.forward(p.theta, X)
    r, _ = head.residual(z, y)
    h = 1e-20
    Xc = xp.astype(X, xp.complex128 if p.theta.dtype == xp.float64 else xp.complex64)
    theta_c = xp.astype(p.theta, Xc.dtype) + (1j * h) * p.v
    _, cache_c = net.forward(theta_c, Xc)
    want = xp.imag(net.vjp(cache_c, xp.astype(r, Xc.dtype))[0]) / h
    return check.relative_error(R, want)


def _model_identities(name, eq, model=None):
    """The identities every model satisfies; ``eq`` maps each to its equation labels."""
    return [
        (f"{name} gradient = complex step", eq["grad"], 1e-12, False,
         lambda p: check.gradient_error(p.loss, p.grad, p.theta)),
        (f"{name} gradient = central differences", eq["grad"], 1e-6, True,
         lambda p: check.gradient_error(p.loss, p.grad, p.theta, method="central")),
        (f"{name} HVP = complex step of gradient", eq["hvp"], 1e-12, False,
         lambda p: check.hvp_error(p.grad, p.hvp, p.theta, p.v)),
        (f"{name} HVP = central differences of gradient", eq["hvp"], 1e-6, True,
         lambda p: check.hvp_error(p.grad, p.hvp, p.theta, p.v, method="central")),
        (f"{name} Hessian columns = HVP(e_j)", eq["hessian"], 1e-12, False, _hessian_columns),
        (f"{name} HVP symmetry <u,Hv> = <Hu,v>", eq["symmetry"], 1e-12, False,
         lambda p: check.hvp_symmetry_error(p.hvp, p.theta, p.u, p.v)),
    ] + ([(f"{name} Hessian PSD (-min eig / max |eig|)", eq["psd"], 1e-12, False, _psd)] if "psd" in eq else [
        (f"{name} HVP = Gauss-Newton part + second-order term R[v]", eq["split"], 1e-12, False, _split),
    ]) + ([(f"{name} loss, gradient at logits +-1e4", eq["saturated"][0], 1e-12, False, eq["saturated"][1])]
          if "saturated" in eq else []) + [
        (f"MAML ({name}) meta-gradient = complex step (K=3)", "maml.md (M6)", 1e-12, False,
         lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta)),
        (f"MAML ({name}) meta-gradient = central differences (K=3)", "maml.md (M6)", 1e-6, True,
         lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta,
                                        method="central")),
        (f"MAML ({name}) one step = (I - alpha H_s) grad L_q", "maml.md (M5)", 1e-12, False, _one_step),
        (f"MAML ({name}) K=0 = query gradient", "maml.md (M7)", 1e-12, False,
         _reduces_to_query_gradient(inner_steps=0)),
        (f"MAML ({name}) inner_lr=0 = query gradient", "maml.md (M7)", 1e-12, False,
         _reduces_to_query_gradient(inner_lr=0.0)),
        (f"first-order MAML ({name}) = query gradient at theta_K", "maml.md (M8)", 1e-12, False,
         _reduces_to_query_gradient(first_order=True)),
        (f"MAML ({name}) batch = mean of single tasks", "maml.md (M4)", 1e-12, False, _batch_mean),
    ] + (_dual_identities(name) if "psd" in eq else []) + _variant_identities(name, model or models.get(name))


def _linear_rate(p, kind):
    """Rates of linear regression's closed-form rows: a scalar, per parameter or per step."""
    return p.alpha if kind == "scalar" else p.rates[kind]


def _linear_closed_form(kind):
    """linear.md (Q7): reverse accumulation (M6), (V2) against M^T grad L_q(M theta + c)."""
    def run(p):
        rate = _linear_rate(p, kind)
        a = p.meta(inner_lr=rate)(p.theta)
        b = linear.closed_form_meta_value_and_grad(p.theta, p.Xs, p.ys, p.Xq, p.yq, inner_lr=rate,
                                                   inner_steps=p.K, l2=p.l2)
        return max(check.relative_error(x, y) for x, y in zip(a, b, strict=True))
    return run


def _linear_hessian(p):
    """linear.md (Q3): the Hessian at theta + u is (2/n) X^T X + l2 I, whatever theta and u."""
    xp = p.xp
    n, d = p.X.shape
    want = 2 * (xp.matrix_transpose(p.X) @ p.X) / n + p.l2 * xp.eye(d, dtype=p.X.dtype, device=p.device)
    return check.relative_error(p.hessian(p.theta + p.u), want)


def _linear_affine(p):
    """linear.md (Q5): adapt(theta) = M theta + c."""
    M, c = linear.affine_map(p.Xs, p.ys, inner_lr=p.alpha, inner_steps=p.K, l2=p.l2)
    theta_K = p.adapt(p.theta)
    return check.relative_error((M @ p.theta[:, None])[..., 0] + c, theta_K)


def _linear_optimum(kind):
    """linear.md (Q8): the meta-gradient at meta_optimum, relative to the scale of its terms
    ``||S|| ||theta*|| / T`` (a backward-stable solve leaves a few eps of it)."""
    def run(p):
        xp = p.xp
        rate = _linear_rate(p, kind)
        star = linear.meta_optimum(p.Xs, p.ys, p.Xq, p.yq, inner_lr=rate, inner_steps=p.K, l2=p.l2)
        _, g = p.meta(inner_lr=rate)(star)
        M, _ = linear.affine_map(p.Xs, p.ys, inner_lr=rate, inner_steps=p.K, l2=p.l2)
        m = p.Xq.shape[1]
        S = xp.sum(xp.matrix_transpose(M) @ (2 * xp.matrix_transpose(p.Xq) @ p.Xq / m) @ M, axis=0)
        scale = float(xp.max(xp.linalg.eigvalsh(S))) * check.norm(star) / p.Xs.shape[0]
        return check.norm(g) / scale
    return run


LINEAR_ROWS = [
    ("linear Hessian = (2/n) X^T X + l2 I at every theta", "linear.md (Q3)", 1e-12, False, _linear_hessian),
    ("MAML (linear) adapt = affine map M theta + c", "linear.md (Q4), (Q5)", 1e-12, False, _linear_affine),
] + [(f"MAML (linear, {kind} rate) reverse accumulation = closed form M^T grad L_q", "linear.md (Q6), (Q7)",
      1e-12, False, _linear_closed_form(kind)) for kind in ("scalar", "per parameter", "per step")] + [
    (f"MAML (linear, {kind} rate) meta-gradient at meta_optimum / scale", "linear.md (Q8), (Q9)", 1e-12,
     False, _linear_optimum(kind)) for kind in ("scalar", "per parameter", "per step")]


# Networks verified (mlp.md): a tanh network with each head and a ReLU one (instances drawn with every
# pre-activation at least 1e-3 from ReLU's kink, mlp.md (N8)).
VERIFIED = {
    "MLP tanh mse": models.MLP((3, 3, 2), "tanh", "mse"),
    "MLP tanh softmax": models.MLP((3, 3, 3), "tanh", "softmax"),
    "MLP relu logistic": models.MLP((3, 3, 1), "relu", "logistic"),
}
_NETWORK = dict(grad="mlp.md (N2), (N3)", hvp="mlp.md (N4)-(N6)", hessian="mlp.md (N6)", symmetry="mlp.md (N6)",
                split="mlp.md (N7)")


# model -> [(identity, equation labels, float64 tolerance, float64 only, check)]
IDENTITIES = {
    "logistic": _model_identities("logistic", dict(
        grad="logistic.md (L4)", hvp="logistic.md (L11)", hessian="logistic.md (L10)",
        psd="logistic.md (L12)", symmetry="logistic.md (L12)",
        saturated=("logistic.md (L8), (L9)", _saturated_logistic))),
    "softmax": _model_identities("softmax", dict(
        grad="softmax.md (S4)", hvp="softmax.md (S10)", hessian="softmax.md (S9)",
        psd="softmax.md (S11)", symmetry="softmax.md (S11)",
        saturated=("softmax.md (S7), (S8)", _saturated_softmax))) + [
        ("softmax H (u 1^T) = 0 at l2=0 (||H u1^T|| / ||H|| ||u1^T||)", "softmax.md (S12)",
         1e-15, False, _null_space),
        ("MAML (softmax) meta-gradient rows sum to 0, l2=0", "softmax.md (S13)", 1e-14, False,
         _row_sums(0.0)),
        ("MAML (softmax) meta-gradient rows sum to 0, l2=0.1", "softmax.md (S13)", 1e-14, False,
         _row_sums(0.1)),
        ("MAML (softmax) rows sum to 0, rates differing by class, l2=0", "softmax.md (S13)", 1e-14, False,
         _class_rates_row_sums),
        ("softmax top eigenvalue of H at Theta=0, C=2 = ||X||_2^2 / (2n)", "range.md (R3), (R4)", 1e-12, False,
         _softmax_curvature_constant),
        ("MAML (softmax) meta-loss invariant under theta + u 1^T", "softmax.md (S13)", 1e-14, False,
         _shift_invariance),
        ("MAML softmax C=2 = logistic on t1-t0, rate 2 alpha", "softmax.md (S14)", 1e-12, False,
         _two_classes),
    ],
    **{name: _model_identities(name, _NETWORK, model) for name, model in VERIFIED.items()},
    "linear": _model_identities("linear", dict(
        grad="linear.md (Q2)", hvp="linear.md (Q3)", hessian="linear.md (Q3)", psd="linear.md (Q3)",
        symmetry="linear.md (Q3)"))
    + LINEAR_ROWS,
}


RELU_MARGIN = 1e-3  # mlp.md (N8): every pre-activation this far from ReLU's kink


def _kink_free(seed, model):
    """The seed of the instance for ``model``: ``seed`` itself, or for a ReLU network the first of
    ``(seed, 1), (seed, 2), ...`` whose pre-activations (support set along the inner loop, and the
    query and single-task sets) all stay ``RELU_MARGIN`` away from 0."""
    if not models.get(VERIFIED.get(model, model)).kinks:
        return seed
    numpy = array_api_compat.array_namespace(np.empty(0))
    for attempt in range(1000):
        candidate = seed if attempt == 0 else [seed, attempt]
        p = _Instance(numpy, "cpu", np.dtype("float64"), candidate, model)
        path = p.adapt(p.theta, return_trajectory=True)
        points = [(path[k, ...], p.Xs) for k in range(path.shape[0])] + [(p.theta, p.Xq), (p.theta, p.X[None])]
        smallest = min(p.model.kink_distance(theta, X) for theta, X in points)
        if smallest >= RELU_MARGIN:
            return candidate
    raise RuntimeError(f"no instance of {model} keeps its pre-activations {RELU_MARGIN} from 0")


def _rows(identities, seeds, dtypes, only=None):
    """Rows of ``identities`` (``{model: [identity, ...]}``) on every backend (or those named in
    ``only``) and dtype, each model's instance drawn from ``seeds[model]``."""
    rows = []
    for backend, xp, device in backends():
        if only is not None and backend not in only:
            continue
        for dtype in dtypes:
            scale = float(np.finfo(dtype).eps) / EPS64
            for model, checks in identities.items():
                p = _Instance(xp, device, np.dtype(dtype), seeds[model], model)
                rows += [Row(identity, label, backend, dtype, float(fn(p)), tol * scale)
                         for identity, label, tol, f64_only, fn in checks if dtype == "float64" or not f64_only]
    return rows


def check_model(model, name, *, seed=0, only=None, dtypes=("float64", "float32")):
    """Every identity of a network's rows (gradient, HVP, Hessian, symmetry, the (H12) split, MAML's
    and the variants') for any model object, as ``refmaml verify`` checks its own networks; returns
    a list of :class:`Row`. ``only`` names the backends to use (default: every one present); the
    identities cite the model's own equation labels (``model.equations``)."""
    eq = model.equations
    checks = _model_identities(name, dict(grad=eq["grad"], hvp=eq["hvp"], hessian="models.md (H3)",
                                          symmetry="models.md (H3)", split="models.md (H12)"), model)
    return _rows({model: checks}, {model: _kink_free(_validate.integer(seed, "seed"), model)}, dtypes, only)


def run(seed=0, dtypes=("float64", "float32")):
    """Check every identity on every backend and dtype; returns a list of :class:`Row`."""
    seed = _validate.integer(seed, "seed")
    return _rows(IDENTITIES, {model: _kink_free(seed, model) for model in IDENTITIES}, dtypes)


def format_table(rows):
    header = ("identity", "equation", "backend", "dtype", "rel. error", "tolerance", "result")
    body = [(r.identity, r.label, r.backend, r.dtype, f"{r.error:.2e}", f"{r.tolerance:.1e}",
             "pass" if r.passed else "FAIL") for r in rows]
    return _text.table(header, body)
