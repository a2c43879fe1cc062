"""The oracle's cases: seeded, versioned MAML problems in float64.

Every case is a stack of tasks (``T >= 1`` on the leading axis, as in
:func:`refmaml.meta_value_and_grad`), with NumPy arrays: ``theta`` float64,
features float64, logistic labels float64 0/1, softmax labels int64. The
list is fixed by ``VERSION``: a case's id, its data and its answers never
change within a version.

The *diagnostic* cases (``T >= 2``, ``K >= 2``, several examples, support and
query of different sizes) are where every diagnosed bug gives an answer far
from the truth and from every other bug's (``derivations/oracle.md`` (O7)).
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .. import instances, models

VERSION = "2"          # the version ``refmaml vectors`` writes; version 1 stays readable
VERSIONS = ("1", "2")
MODELS = ("logistic", "softmax", "linear")  # version 1 has the first two
LINEAR_RATE = 0.1  # linear regression's support Hessian (2/n) Xs^T Xs reaches about 7 here: rates stay below 2/7
STEPS = (0, 1, 2, 5)
CLASSES = 3  # of the softmax cases
EDGE = {"onefeature", "oneexample", "saturated"}  # edge cases, run by every check


@dataclass(frozen=True)
class Case:
    """One MAML problem. ``inner_lr`` is a float or, for learned-rate cases, an array of
    ``theta``'s shape (one rate per parameter, every step)."""

    id: str
    model: str
    theta: np.ndarray
    Xs: np.ndarray
    ys: np.ndarray
    Xq: np.ndarray
    yq: np.ndarray
    inner_lr: object
    inner_steps: int
    l2: float = 0.0
    diagnostic: bool = False
    note: str = ""
    tags: tuple = field(default=())

    @property
    def rates(self):
        """Whether the case has learned (array) rates."""
        return isinstance(self.inner_lr, np.ndarray)

    @property
    def T(self):
        return self.Xs.shape[0]

    def rate(self, lr_grad):
        """``inner_lr`` as the check passes it: with ``lr_grad`` always an array of ``theta``'s
        shape (a scalar rate repeated), otherwise the case's own."""
        if lr_grad and not self.rates:
            return np.full(self.theta.shape, self.inner_lr)
        return self.inner_lr

    def rounded(self, dtype):
        """The case with its real inputs rounded to ``dtype`` (and held in float64 again), so that
        the right answer for a float32 implementation is computed from the numbers it received."""
        if np.dtype(dtype) == np.float64:
            return self

        def r(a):
            return np.asarray(a, dtype=dtype).astype(np.float64)

        rate = r(self.inner_lr) if self.rates else float(r(self.inner_lr))
        return replace(self, theta=r(self.theta), Xs=r(self.Xs), Xq=r(self.Xq), inner_lr=rate)


def _make(seed, model, *, T, n, m, d, K, l2=0.0, alpha=0.4, rates=False, scale=0.5, diagnostic=False,
          note="", tag=""):
    rng = np.random.default_rng(seed)
    p = instances.draw(rng, model, T=T, n=n, m=m, features=d, classes=CLASSES, scale=scale)
    inner_lr = alpha * rng.uniform(0.5, 1.5, p.theta.shape) if rates else float(alpha)
    parts = [model, f"K{K}", f"T{T}", f"n{n}", f"m{m}", f"d{d}"]
    parts += (["l2"] if l2 else []) + (["rates"] if rates else []) + ([tag] if tag else [])
    tags = tuple(t for t, on in (("l2", bool(l2)), ("rates", rates), (tag, bool(tag))) if on)
    return Case("-".join(parts), model, p.theta, p.Xs, p.ys, p.Xq, p.yq, inner_lr, K, float(l2), diagnostic, note,
                tags)


def _saturated(seed, model, K):
    """Logits of about +-20: probabilities within 1e-9 of 0 and 1."""
    case = _make(seed, model, T=2, n=4, m=5, d=2, K=K, alpha=0.2, tag="saturated",
                 note="logits of size about 20: saturated probabilities")
    grow = 20.0 / np.max(np.abs(case.Xs @ case.theta))
    return Case(case.id, model, case.theta * grow, case.Xs, case.ys, case.Xq, case.yq, case.inner_lr, K,
                note=case.note, tags=case.tags)


def all_cases(version=VERSION, *, networks=True):
    """Every case of ``version`` (``"1"`` or ``"2"``), in a fixed order; version 2 is version 1's
    cases, unchanged, followed by the linear-regression cases and the cases of the two networks of
    ``NETWORKS()`` (:func:`network_cases`)."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}; got {version!r}")
    out = []
    seed = 1000
    for model in MODELS[:2] + (MODELS[2:] if version == "2" else ()):
        regression = models.get(model).targets == "real"
        alpha = LINEAR_RATE if regression else 0.4
        for K in STEPS:
            for T in (1, 3):
                for l2 in (0.0, 0.1):
                    for rates in (False, True):
                        seed += 1
                        out.append(_make(seed, model, T=T, n=5, m=7, d=4, K=K, l2=l2, rates=rates,
                                         alpha=alpha))
        for l2 in (0.0, 0.1):  # the diagnostic cases
            for rates in (False, True):
                for K in (2, 3):
                    seed += 1
                    out.append(_make(seed, model, T=4, n=6, m=9, d=5, K=K, l2=l2, rates=rates,
                                     alpha=LINEAR_RATE if regression else 0.5,
                                     diagnostic=True, tag="diagnostic",
                                     note="every diagnosed bug is far from the truth and from the others"))
        seed += 1
        out.append(_make(seed, model, T=2, n=5, m=6, d=1, K=2, note="one feature", tag="onefeature",
                         alpha=alpha))
        seed += 1
        out.append(_make(seed, model, T=3, n=1, m=1, d=4, K=2, note="one example per set", tag="oneexample",
                         alpha=alpha))
        seed += 1
        if not regression:  # no probabilities to saturate
            out.append(_saturated(seed, model, K=2))
    if version == "2" and networks:
        for network in NETWORKS():
            out += network_cases(network)
    ids = [c.id for c in out]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    return out


def select(cases, *, models=MODELS, steps=STEPS, l2=False, rates=False):
    """The cases a check runs: the chosen models and numbers of steps, plus every diagnostic case
    of those models; without ``l2`` (or ``rates``) the cases that need it are left out."""
    return [c for c in cases
            if c.model in models
            and (c.inner_steps in steps or c.diagnostic or EDGE & set(c.tags))
            and (l2 or not c.l2) and (rates or not c.rates)]


# --- networks ----------------------------------------------------------------------------------

# ReLU cases keep every pre-activation at least this far from 0 at every inner iterate (support and
# query inputs): implementations differ by rounding, about 1e-15 of the scale, so none computes the
# other side of a kink, where ReLU' jumps (ReLU'(0) = 0 by convention, derivations/mlp.md).
RELU_MARGIN = 1e-6
NETWORK_STEP = 0.5  # the inner rate times the largest |eigenvalue| of the first support Hessian at theta


def network_name(model):
    """The prefix of a network's case ids: ``mlp-1x40x40x1-relu-mse``."""
    return models.get(model).slug


def sinusoid(model):
    """Whether ``model`` takes the MAML paper's sinusoid tasks: a network of one input and one real
    output."""
    model = models.get(model)
    return not model.linear and model.targets == "real" and model.dimensions(model.parameter_shape(None, None)) \
        == (1, (1,))


def _curvature(model, theta, X, y, rng, iterations=30):
    """The largest |eigenvalue| of the support Hessian at ``theta`` (power iteration with HVPs)."""
    v = rng.standard_normal(theta.shape)
    v /= np.linalg.norm(v)
    value = 1.0
    for _ in range(iterations):
        w = np.asarray(model.hvp(theta, X, y, v))
        value = float(np.linalg.norm(w))
        if value == 0:
            return 1.0
        v = w / value
    return value


def _network_case(model, seed, *, T, n, m, K, l2=0.0, rates=False, diagnostic=False, note="", tag=""):
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        if sinusoid(model):  # the MAML paper's regression: y = A sin(x - phase), x in [-5, 5]
            theta = model.random_parameters(rng, model.parameter_shape(None, None), None)
            amplitude, phase = rng.uniform(0.1, 5.0, (T, 1)), rng.uniform(0, np.pi, (T, 1))
            Xs, Xq = rng.uniform(-5, 5, (T, n, 1)), rng.uniform(-5, 5, (T, m, 1))
            p = instances.Instance(theta, Xs, amplitude * np.sin(Xs[..., 0] - phase), Xq,
                                   amplitude * np.sin(Xq[..., 0] - phase))
        else:
            p = instances.draw(rng, model, T=T, n=n, m=m)
        theta, Xs, ys, Xq, yq = p.theta, p.Xs, p.ys, p.Xq, p.yq
        alpha = NETWORK_STEP / _curvature(model, theta, Xs[0], ys[0], rng)
        inner_lr = alpha * rng.uniform(0.5, 1.5, theta.shape) if rates else float(alpha)
        if instances.kink_distance(model, p, inner_lr=inner_lr, inner_steps=K, l2=l2) < RELU_MARGIN:
            continue
        break
    else:
        raise ValueError(f"no case for {network_name(model)} keeps the ReLU margin {RELU_MARGIN}")
    parts = [network_name(model), f"K{K}", f"T{T}", f"n{n}", f"m{m}"]
    parts += (["l2"] if l2 else []) + (["rates"] if rates else []) + ([tag] if tag else [])
    tags = tuple(t for t, on in (("l2", bool(l2)), ("rates", rates), (tag, bool(tag))) if on)
    return Case("-".join(parts), model, theta, Xs, ys, Xq, yq, inner_lr, K, float(l2), diagnostic, note, tags)


def network_cases(model):
    """The cases of an MLP ``model`` (a ``refmaml.models.MLP``): for every number of steps in
    ``STEPS`` five regular cases (one task, three with and without ``l2``, two with learned rates),
    the diagnostic cases (``T = 4``, ``K = 2, 3``, with and without ``l2`` and rates) and one case
    with one example per set. Seeded by the architecture: the same model gives the same cases."""
    import zlib

    base = zlib.crc32(network_name(model).encode()) % 2**20
    out, seed = [], base * 100
    for K in STEPS:
        for T, l2, rates in ((1, 0.0, False), (3, 0.0, False), (3, 0.1, False), (2, 0.0, True), (2, 0.1, True)):
            seed += 1
            out.append(_network_case(model, seed, T=T, n=5, m=7, K=K, l2=l2, rates=rates))
    for l2 in (0.0, 0.1):
        for rates in (False, True):
            for K in (2, 3):
                seed += 1
                out.append(_network_case(model, seed, T=4, n=6, m=9, K=K, l2=l2, rates=rates, diagnostic=True,
                                         tag="diagnostic", note="the bugs this network separates are far "
                                         "from the truth and from the others"))
    seed += 1
    out.append(_network_case(model, seed, T=3, n=1, m=1, K=2, note="one example per set", tag="oneexample"))
    return out


def NETWORKS():
    """The networks of the version-2 vectors: the MAML paper's sinusoid regressor (1-40-40-1, ReLU,
    mse) and a small tanh softmax classifier (4-8-3)."""
    return (models.MLP((1, 40, 40, 1), "relu", "mse"), models.MLP((4, 8, 3), "tanh", "softmax"))
