"""Random problems for each model, and the scales their tolerances are measured against.

Shared by ``test_models.py`` (what every model satisfies) and the model-specific test modules.
``MODELS`` holds every registered model (the three linear ones), MLPs (tanh and ReLU, each with
the mse, logistic and softmax heads) and a Sequential network mixing both activations.

Each case's scale ``S`` of a gradient or a Hessian-vector product is the sum of the magnitudes of
the terms of each entry (its norm over the entries and the tasks): what its rounding errors are
proportional to.  For the linear models it is written from ``z = X theta`` (``|X|^T |P - Y| / n``
and its HVP analogue); for the networks it is the textbook backpropagation and R-operator of
``reference.network_grad_hvp`` run on the magnitudes of every operand.

Linear models: features and parameters are 0 or of magnitude in [1e-8, 3] (a complex step of
1e-20 on a value below about 1e-288 leaves the normal range, a limit of the references, not of the
code), d <= 6 and l2 in [0, 2], so that logits stay below about 90 in magnitude; saturated logits
have their own pinned tests.  Networks: features 0 or of magnitude in [1e-8, 3], parameters
Gaussian of scale 1e-4 to 1 (0.3 to 1 with ReLU, see below), l2 in [0, 2], n <= 6.  ReLU
networks have kinks (``derivations/mlp.md`` (N8)): every pre-activation of every drawn problem is
at least ``MARGIN`` from 0, and no central-difference step of ``test_models.py`` moves one by
more than ``MARGIN / 10`` (measured on each problem), so every derivative is taken on one branch.
"""

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmaml import instances
from refmaml.models import MLP, Sequential, layers, linear, logistic, softmax

from . import reference as ref
from .test_layers import Sine

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
    module: object  # the registered model's module: loss, grad, hvp, hessian, predict
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

    # the interface test_models.py uses for every case

    @property
    def api(self):
        return self.module

    @property
    def model(self):
        return self.module.MODEL

    def curvature_scale(self, theta, X, y, l2, size):
        """Scale of the Hessian's entries (``size`` of them per row), for every model alike."""
        return self.hessian_scale(X, l2, size)

    def labels(self, rng, shape):
        """Targets in the model's form, from refmaml's one generator (instances.targets)."""
        return instances.targets(rng, self.model, shape, self.model.dimensions(self.shapes(1)[0])[1])

    def shapes(self, d):
        """``(theta's shape, predict's shape per example)`` on ``d`` features (3 classes for softmax)."""
        return ((d,), ()) if self.param_ndim == 1 else ((d, 3), (3,))

    def central_steps_stay_on_one_branch(self, theta, X, v=None):
        return True  # no kinks


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
LINEAR_MODELS = [LOGISTIC, SOFTMAX, LINEAR]


# ------------------------------------------------------------------ networks

MARGIN = 1e-3
_EPS3 = np.cbrt(np.finfo(float).eps)


def _magnitudes(rng, shape):
    """Entries 0 (one in five) or of magnitude log-uniform in [1e-8, 3], either sign."""
    mag = 10.0 ** rng.uniform(-8, np.log10(3), shape)
    return np.where(rng.random(shape) < 0.2, 0.0, rng.choice([-1.0, 1.0], shape) * mag)


@dataclass(frozen=True)
class Network:
    """A network model with its textbook description (``reference.network_*``)."""

    name: str
    model: object
    layers: tuple
    head: str
    outputs: int
    param_ndim = 1
    classes = None

    @property
    def api(self):
        return self.model

    @property
    def features(self):
        return self.layers[0][1]

    @property
    def kinks(self):
        return any(layer[0] == "relu" for layer in self.layers)

    def labels(self, rng, shape):
        """Targets in the model's form (instances.targets); mse targets keep their output axis."""
        y = instances.targets(rng, self.model, shape, self.model.dimensions((self.model.size,))[1])
        return np.reshape(y, tuple(shape) + (self.outputs,)) if self.head == "mse" else y

    def shapes(self, d):
        """``(theta's shape, predict's shape per example)``; the network fixes ``d``."""
        return (self.model.size,), ((self.outputs,) if self.head != "logistic" else ())

    def ref_loss(self, theta, X, y, l2=0.0):
        return ref.network_loss(self.layers, self.head, theta, X, y, l2)

    def ref_grad(self, theta, X, y, l2=0.0):
        return ref.network_grad_hvp(self.layers, self.head, theta, X, y, l2)[0]

    def problems(self, batched=None):
        return _network_problems(self, batched)

    def per_task(self, f, theta, X, y):
        return ref.per_task(f, theta, X, y, 1)

    def grad_scale(self, theta, X, y, l2):
        return ref.norm(self.per_task(
            lambda th, Xt, yt: ref.network_grad_hvp(self.layers, self.head, th, Xt, yt, l2, absolute=True)[0],
            theta, X, y))

    def hvp_scale(self, theta, X, y, v, l2):
        V = _directions(v, X, 1)
        out = [ref.network_grad_hvp(self.layers, self.head, th, Xt, yt, l2, Vt, absolute=True)[1]
               for (th, Xt, yt), Vt in zip(ref.each_task(theta, X, y, 1), V if X.ndim == 3 else [V])]
        return ref.norm(np.stack(out))

    def curvature_scale(self, theta, X, y, l2, size):
        """``|| M 1 ||``, ``M`` the magnitudes of the terms of the Hessian's entries (all tasks): it
        bounds their Frobenius norm (``M >= 0``), whatever ``size``."""
        return self.hvp_scale(theta, X, y, np.ones(theta.shape[-1]), l2)

    def central_steps_stay_on_one_branch(self, theta, X, v=None):
        """No step of the central differences of ``test_models.py`` (each coordinate by
        ``eps^(1/3) max(1, |theta_j|)``, and ``h v`` along ``v``) moves a pre-activation by more
        than ``MARGIN / 10``, at a point where all are at least ``MARGIN`` from 0."""
        if not self.kinks:
            return True
        z0 = ref.preactivations(self.layers, theta, X)
        if np.min(np.abs(z0)) < MARGIN:
            return False
        steps = [np.eye(theta.size)[j] * _EPS3 * max(1.0, abs(theta[j])) for j in range(theta.size)]
        if v is not None:
            steps.append(_EPS3 * max(1.0, ref.norm(theta)) / max(ref.norm(v), 1e-300) * v)
        return all(np.max(np.abs(ref.preactivations(self.layers, theta + s * e, X) - z0)) <= MARGIN / 10
                   for e in steps for s in (-1, 1))


@st.composite
def _network_problems(draw, case, batched):
    """``(theta, X, y, v, l2)`` as ``_problems`` draws them, for a network; with ReLU, redrawn until
    the margin of the module docstring holds at every task."""
    n = draw(st.integers(1, 6))
    if batched is None:
        batched = draw(st.booleans())
    lead = (draw(st.integers(1, 3)),) if batched else ()
    per_task_theta = batched and draw(st.booleans())
    scale = draw(st.sampled_from([0.3, 1.0] if case.kinks else [1e-4, 0.3, 1.0]))
    l2 = draw(st.sampled_from([0.0, 0.1, 2.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    P = case.model.size
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        theta = scale * rng.standard_normal((lead if per_task_theta else ()) + (P,))
        X = _magnitudes(rng, lead + (n, case.features))
        y = case.labels(rng, lead + (n,))
        v = _magnitudes(rng, theta.shape)
        if all(case.central_steps_stay_on_one_branch(th, Xt, vt)
               for (th, Xt, _), vt in zip(ref.each_task(theta, X, y, 1), _directions(v, X, 1)
                                          if X.ndim == 3 else [v])):
            return theta, X, y, v, l2
    raise AssertionError(f"{case.name}: no problem with the ReLU margin in 100 draws")


def _mlp(activation, head, outputs):
    sizes = (3, 4, outputs)
    description = (("linear", 3, 4), (activation,), ("linear", 4, outputs))
    return Network(f"mlp-{activation}-{head}", MLP(sizes, activation, head), description, head, outputs)


NETWORKS = [_mlp(act, head, q) for act in ("tanh", "relu") for head, q in (("mse", 2), ("logistic", 1), ("softmax", 3))]
NETWORKS.append(Network(
    "sequential-tanh-relu-mse",
    Sequential([layers.Linear(3, 3), layers.Tanh(), layers.Linear(3, 3), layers.ReLU(), layers.Linear(3, 1)],
               loss="mse", input_shape=(3,)),
    (("linear", 3, 3), ("tanh",), ("linear", 3, 3), ("relu",), ("linear", 3, 1)), "mse", 1))
# a layer that only the tests define (tests/test_layers.py): the generic tests take it unchanged
NETWORKS.append(Network(
    "sequential-test-only-sine-softmax",
    Sequential([layers.Linear(3, 4), Sine(), layers.Linear(4, 3)], loss="softmax", input_shape=(3,)),
    (("linear", 3, 4), ("sine",), ("linear", 4, 3)), "softmax", 3))
MODELS = LINEAR_MODELS + NETWORKS
