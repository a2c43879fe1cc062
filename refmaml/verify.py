"""Identity checks behind ``refmaml verify``.

Each identity is checked on seeded random instances, on every array
backend present (NumPy; array-api-strict on its default device and on
``device1``, which stands in for a GPU; CuPy when a GPU is present), in
float64 and float32.  Tolerances are stated for float64 and scaled by
``eps(dtype) / eps(float64)`` for float32; central-difference identities are
checked in float64 only (in float32 their truncation and rounding errors
leave about 5 digits, too few to say anything).
"""

from dataclasses import dataclass

import array_api_compat
import numpy as np

from . import adapt, check, meta_value_and_grad
from .models import logistic

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
    """One seeded random problem, moved to a backend and dtype."""

    def __init__(self, xp, device, dtype, seed, T=3, n=6, m=8, d=4):
        rng = np.random.default_rng(seed)
        self.xp, self.device, self.dtype = xp, device, dtype
        put = self.put
        self.theta = put(0.5 * rng.standard_normal(d))
        self.X = put(rng.standard_normal((n, d)))
        self.y = put(rng.integers(0, 2, n))
        self.u = put(rng.standard_normal(d))
        self.v = put(rng.standard_normal(d))
        self.Xs = put(rng.standard_normal((T, n, d)))
        self.ys = put(rng.integers(0, 2, (T, n)))
        self.Xq = put(rng.standard_normal((T, m, d)))
        self.yq = put(rng.integers(0, 2, (T, m)))
        self.l2 = 0.1
        self.alpha = 0.4
        self.K = 3

    def put(self, a):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(self.dtype)
        return self.xp.asarray(a, device=self.device)

    def meta(self, **kw):
        args = dict(inner_lr=self.alpha, inner_steps=self.K, l2=self.l2)
        args.update(kw)
        return lambda t: meta_value_and_grad(t, self.Xs, self.ys, self.Xq, self.yq, **args)

    def unrolled_meta_loss(self, t):
        theta_K = adapt(t, self.Xs, self.ys, inner_lr=self.alpha, inner_steps=self.K, l2=self.l2)
        return self.xp.mean(logistic.loss(theta_K, self.Xq, self.yq))


def _loss(p):
    return lambda t: logistic.loss(t, p.X, p.y, l2=p.l2)


def _grad(p):
    return lambda t: logistic.grad(t, p.X, p.y, l2=p.l2)


def _hvp(p):
    return lambda t, v: logistic.hvp(t, p.X, p.y, v, l2=p.l2)


def _hessian_columns(p):
    xp = p.xp
    H = logistic.hessian(p.theta, p.X, p.y, l2=p.l2)
    eye = xp.eye(H.shape[0], dtype=H.dtype, device=p.device)
    cols = xp.stack([logistic.hvp(p.theta, p.X, p.y, eye[j, ...], l2=p.l2)
                     for j in range(H.shape[0])], axis=1)
    return check.relative_error(H, cols)


def _psd(p):
    xp = p.xp
    H = logistic.hessian(p.theta, p.X, p.y, l2=0.0)
    lam = xp.linalg.eigvalsh(H)
    return max(0.0, -float(xp.min(lam))) / float(xp.max(xp.abs(lam)))


def _saturated(p):
    """Logits of +-1e4: loss 5000 and gradient 0.5, exact to rounding (logistic.md (L8), (L9))."""
    theta, X = p.put([1e4]), p.put([[1.0], [1.0], [-1.0], [-1.0]])
    y = p.put([0, 1, 0, 1])
    e_loss = check.relative_error(logistic.loss(theta, X, y), p.put(5000.0))
    e_grad = check.relative_error(logistic.grad(theta, X, y), p.put([0.5]))
    return max(e_loss, e_grad)


def _one_step(p):
    """K = 1 against (I - alpha H_s(theta)) grad L_q(theta_1) with explicit Hessians (M5)."""
    _, g = p.meta(inner_steps=1, reduction="none")(p.theta)
    theta1 = adapt(p.theta, p.Xs, p.ys, inner_lr=p.alpha, inner_steps=1, l2=p.l2)
    Hs = logistic.hessian(p.theta, p.Xs, p.ys, l2=p.l2)
    gq = logistic.grad(theta1, p.Xq, p.yq)
    ref = gq - p.alpha * (Hs @ gq[..., None])[..., 0]
    return check.relative_error(g, ref)


def _batch_mean(p):
    xp = p.xp
    _, g = p.meta()(p.theta)
    singles = [meta_value_and_grad(p.theta, p.Xs[t, ...], p.ys[t, ...], p.Xq[t, ...], p.yq[t, ...],
                                   inner_lr=p.alpha, inner_steps=p.K, l2=p.l2)[1]
               for t in range(p.Xs.shape[0])]
    return check.relative_error(g, xp.mean(xp.stack(singles), axis=0))


def _reduces_to_query_gradient(**kw):
    def run(p):
        _, g = p.meta(**kw)(p.theta)
        theta_K = adapt(p.theta, p.Xs, p.ys, inner_lr=kw.get("inner_lr", p.alpha),
                        inner_steps=kw.get("inner_steps", p.K), l2=p.l2)
        return check.relative_error(g, p.xp.mean(logistic.grad(theta_K, p.Xq, p.yq), axis=0))
    return run


# (identity, equation labels, float64 tolerance, float64 only, check)
IDENTITIES = [
    ("logistic gradient = complex step", "logistic.md (L4)", 1e-12, False,
     lambda p: check.gradient_error(_loss(p), _grad(p), p.theta)),
    ("logistic gradient = central differences", "logistic.md (L4)", 1e-6, True,
     lambda p: check.gradient_error(_loss(p), _grad(p), p.theta, method="central")),
    ("logistic HVP = complex step of gradient", "logistic.md (L11)", 1e-12, False,
     lambda p: check.hvp_error(_grad(p), _hvp(p), p.theta, p.v)),
    ("logistic HVP = central differences of gradient", "logistic.md (L11)", 1e-6, True,
     lambda p: check.hvp_error(_grad(p), _hvp(p), p.theta, p.v, method="central")),
    ("logistic Hessian columns = HVP(e_j)", "logistic.md (L10)", 1e-12, False, _hessian_columns),
    ("logistic HVP symmetry <u,Hv> = <Hu,v>", "logistic.md (L12)", 1e-12, False,
     lambda p: check.hvp_symmetry_error(_hvp(p), p.theta, p.u, p.v)),
    ("logistic Hessian PSD (-min eig / max |eig|)", "logistic.md (L12)", 1e-12, False, _psd),
    ("logistic loss, gradient at logits +-1e4", "logistic.md (L8), (L9)", 1e-12, False, _saturated),
    ("MAML meta-gradient = complex step (K=3)", "maml.md (M6)", 1e-12, False,
     lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta)),
    ("MAML meta-gradient = central differences (K=3)", "maml.md (M6)", 1e-6, True,
     lambda p: check.gradient_error(p.unrolled_meta_loss, lambda t: p.meta()(t)[1], p.theta,
                                    method="central")),
    ("MAML one step = (I - alpha H_s) grad L_q", "maml.md (M5)", 1e-12, False, _one_step),
    ("MAML K=0 = query gradient", "maml.md (M7)", 1e-12, False,
     _reduces_to_query_gradient(inner_steps=0)),
    ("MAML inner_lr=0 = query gradient", "maml.md (M7)", 1e-12, False,
     _reduces_to_query_gradient(inner_lr=0.0)),
    ("first-order MAML = query gradient at theta_K", "maml.md (M8)", 1e-12, False,
     _reduces_to_query_gradient(first_order=True)),
    ("MAML batch = mean of single tasks", "maml.md (M4)", 1e-12, False, _batch_mean),
]


def run(seed=0, dtypes=("float64", "float32")):
    """Check every identity on every backend and dtype; returns a list of :class:`Row`."""
    rows = []
    for name, xp, device in backends():
        for dtype in dtypes:
            p = _Instance(xp, device, np.dtype(dtype), seed)
            scale = float(np.finfo(dtype).eps) / EPS64
            for identity, label, tol, f64_only, fn in IDENTITIES:
                if f64_only and dtype != "float64":
                    continue
                rows.append(Row(identity, label, name, dtype, float(fn(p)), tol * scale))
    return rows


def format_table(rows):
    header = ("identity", "equation", "backend", "dtype", "rel. error", "tolerance", "result")
    body = [(r.identity, r.label, r.backend, r.dtype, f"{r.error:.2e}", f"{r.tolerance:.1e}",
             "pass" if r.passed else "FAIL") for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*line) for line in body]
    return "\n".join(lines)
