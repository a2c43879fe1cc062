"""Adam, the meta-optimizer: ``derivations/training.md`` (T5)-(T7).

Written in the parameters' array namespace; the state is plain arrays, so a
checkpoint can hold it exactly.
"""

import dataclasses

from . import _xp

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


@dataclasses.dataclass
class State:
    """First and second moment estimates ``m``, ``v`` (one per parameter array) and the
    number of updates taken, ``t``."""

    m: dict
    v: dict
    t: int = 0


def init(params):
    """Zero moments for ``params`` (a dict of arrays), ``t = 0``."""
    return State({k: p * 0 for k, p in params.items()}, {k: p * 0 for k, p in params.items()}, 0)


def step(params, grads, state, lr):
    """One Adam update (T5)-(T7): returns new ``params`` and ``state``; the inputs are not changed.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2`` (T5);
    bias corrections ``1 - b1^t``, ``1 - b2^t`` (T6);
    ``p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`` (T7).
    """
    t = state.t + 1
    c1, c2 = 1.0 - BETA1**t, 1.0 - BETA2**t
    new, m, v = {}, {}, {}
    for k, p in params.items():
        xp = _xp.array_namespace(p)
        g = grads[k]
        m[k] = BETA1 * state.m[k] + (1.0 - BETA1) * g
        v[k] = BETA2 * state.v[k] + (1.0 - BETA2) * (g * g)
        new[k] = p - lr * (m[k] / c1) / (xp.sqrt(v[k] / c2) + EPS)
    return new, State(m, v, t)
