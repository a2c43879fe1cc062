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

VERSION = "1"
MODELS = ("logistic", "softmax")
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


def _labels(rng, model, shape, logits=None):
    if model == "logistic":
        return rng.integers(0, 2, shape).astype(np.float64)
    return rng.integers(0, CLASSES, shape).astype(np.int64)


def _make(seed, model, *, T, n, m, d, K, l2=0.0, alpha=0.4, rates=False, scale=0.5, diagnostic=False,
          note="", tag=""):
    rng = np.random.default_rng(seed)
    shape = (d,) if model == "logistic" else (d, CLASSES)
    theta = scale * rng.standard_normal(shape)
    Xs, Xq = rng.standard_normal((T, n, d)), rng.standard_normal((T, m, d))
    ys, yq = _labels(rng, model, (T, n)), _labels(rng, model, (T, m))
    inner_lr = alpha * rng.uniform(0.5, 1.5, shape) if rates else float(alpha)
    parts = [model, f"K{K}", f"T{T}", f"n{n}", f"m{m}", f"d{d}"]
    parts += (["l2"] if l2 else []) + (["rates"] if rates else []) + ([tag] if tag else [])
    tags = tuple(t for t, on in (("l2", bool(l2)), ("rates", rates), (tag, bool(tag))) if on)
    return Case("-".join(parts), model, theta, Xs, ys, Xq, yq, inner_lr, K, float(l2), diagnostic, note, tags)


def _saturated(seed, model, K):
    """Logits of about +-20: probabilities within 1e-9 of 0 and 1."""
    case = _make(seed, model, T=2, n=4, m=5, d=2, K=K, alpha=0.2, tag="saturated",
                 note="logits of size about 20: saturated probabilities")
    grow = 20.0 / np.max(np.abs(case.Xs @ case.theta))
    return Case(case.id, model, case.theta * grow, case.Xs, case.ys, case.Xq, case.yq, case.inner_lr, K,
                note=case.note, tags=case.tags)


def all_cases():
    """Every case of this version, in a fixed order."""
    out = []
    seed = 1000
    for model in MODELS:
        for K in STEPS:
            for T in (1, 3):
                for l2 in (0.0, 0.1):
                    for rates in (False, True):
                        seed += 1
                        out.append(_make(seed, model, T=T, n=5, m=7, d=4, K=K, l2=l2, rates=rates))
        for l2 in (0.0, 0.1):  # the diagnostic cases
            for rates in (False, True):
                for K in (2, 3):
                    seed += 1
                    out.append(_make(seed, model, T=4, n=6, m=9, d=5, K=K, l2=l2, rates=rates, alpha=0.5,
                                     diagnostic=True, tag="diagnostic",
                                     note="every diagnosed bug is far from the truth and from the others"))
        seed += 1
        out.append(_make(seed, model, T=2, n=5, m=6, d=1, K=2, note="one feature", tag="onefeature"))
        seed += 1
        out.append(_make(seed, model, T=3, n=1, m=1, d=4, K=2, note="one example per set", tag="oneexample"))
        seed += 1
        out.append(_saturated(seed, model, K=2))
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
