"""Random problems for each model, and the scales their tolerances are measured against.

Shared by ``test_models.py`` (what every model satisfies) and the
model-specific test modules.  Inputs are bounded: features and parameters
are 0 or of magnitude in [1e-8, 3] (a complex step of 1e-20 on a value below
about 1e-288 leaves the normal range, a limit of the references, not of the
code), d <= 6 and l2 in [0, 2], so that logits stay below about 90 in
magnitude; saturated logits have their own pinned tests.
"""

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmaml.models import linear, logistic, softmax

from . import reference as ref

VALUES = st.one_of(st.just(0.0), st.floats(1e-8, 3), st.floats(-3, -1e-8))


@st.composite
def _problems(draw, classes, batched):
    """``(theta, X, y, v, l2)``: one task, or a stack of tasks with shared or per-task theta.

    ``classes`` is None for the binary model (``theta (d,)``, float 0/1 labels), ``"real"`` for
    linear regression (``theta (d,)``, real targets of the same range as the features), else the
    largest class count to draw (``theta (d, C)``, integer labels).
    """
    d = draw(st.integers(1, 6 if classes is None else 5))
    n = draw(st.integers(1, 8))
    if batched is None:
        batched = draw(st.booleans())
    lead = (draw(st.integers(1, 3)),) if batched else ()
    per_task_theta = batched and draw(st.booleans())
    X = draw(arrays(np.float64, lead + (n, d), elements=VALUES))
    if classes is None:
        shape = (d,)
        y = draw(arrays(np.bool_, lead + (n,))).astype(np.float64)
    elif classes == "real":
        shape = (d,)
        y = draw(arrays(np.float64, lead + (n,), elements=VALUES))
    else:
        C = draw(st.integers(2, classes))
        shape = (d, C)
        y = draw(arrays(np.int64, lead + (n,), elements=st.integers(0, C - 1)))
    theta = draw(arrays(np.float64, (lead if per_task_theta else ()) + shape, elements=VALUES))
    v = draw(arrays(np.float64, theta.shape, elements=VALUES))
    l2 = draw(st.sampled_from([0.0, 0.1, 2.0]))
    return theta, X, y, v, l2


def _directions(v, X, param_ndim):
    """``v`` with one direction per task (broadcast when shared)."""
    return v if v.ndim > param_ndim else np.broadcast_to(v, X.shape[:-2] + v.shape)


@dataclass(frozen=True)
class Model:
    """A model module with what its tests need."""

    name: str
    module: object
    param_ndim: int
    classes: object  # None (binary), "real" (regression) or the largest class count drawn
    ref_loss: object
    ref_grad: object
    residual: object  # (theta_t, X_t, y_t) -> |P - Y| per example
    hvp_terms: object  # (theta_t, X_t, V_t) -> magnitudes of the HVP's per-example terms

    def problems(self, batched=None):
        return _problems(self.classes, batched)

    def per_task(self, f, theta, X, y):
        return ref.per_task(f, theta, X, y, self.param_ndim)

    def grad_scale(self, theta, X, y, l2):
        """Norm of the summed magnitudes of the gradient's terms, all tasks: ``S`` of the tolerances."""
        def terms(th, Xt, yt):
            return np.abs(Xt).T @ self.residual(th, Xt, yt) / Xt.shape[0] + l2 * np.abs(th)

        return ref.norm(self.per_task(terms, theta, X, y))

    def hvp_scale(self, theta, X, y, v, l2):
        """Norm of the summed magnitudes of the HVP's terms, all tasks."""
        def terms(th, Xt, Vt):
            return np.abs(Xt).T @ self.hvp_terms(th, Xt, Vt) / Xt.shape[0] + l2 * np.abs(Vt)

        return ref.norm(self.per_task(terms, theta, X, _directions(v, X, self.param_ndim)))

    def hessian_scale(self, X, l2, size):
        """Scale of the Hessian's entries: ``|| |X|^T |X| || / n + l2 size``."""
        return ref.norm(np.abs(X).swapaxes(-1, -2) @ np.abs(X)) / X.shape[-2] + l2 * size


def _logistic_hvp_terms(th, Xt, vt):
    p = ref.sigmoid(Xt @ th)
    return p * (1 - p) * np.abs(Xt @ vt)


def _softmax_hvp_terms(th, Xt, Vt):
    P, U = ref.softmax_probabilities(Xt @ th), np.abs(Xt @ Vt)
    return P * U + P * np.sum(P * U, axis=1, keepdims=True)


LOGISTIC = Model(
    "logistic", logistic, 1, None, ref.loss, ref.grad,
    residual=lambda th, Xt, yt: np.abs(ref.sigmoid(Xt @ th) - yt),
    hvp_terms=_logistic_hvp_terms,
)
SOFTMAX = Model(
    "softmax", softmax, 2, 4, ref.softmax_loss, ref.softmax_grad,
    residual=lambda th, Xt, yt: np.abs(ref.softmax_probabilities(Xt @ th) - ref.one_hot(yt, th.shape[1])),
    hvp_terms=_softmax_hvp_terms,
)
LINEAR = Model(
    "linear", linear, 1, "real", ref.linear_loss, ref.linear_grad,
    residual=lambda th, Xt, yt: 2 * (np.abs(Xt) @ np.abs(th) + np.abs(yt)),
    hvp_terms=lambda th, Xt, vt: 2 * np.abs(Xt) @ np.abs(vt),
)
MODELS = [LOGISTIC, SOFTMAX, LINEAR]
