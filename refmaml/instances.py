"""Random MAML problems for any model, seeded: the one generator of ``refmaml verify``, the oracle's
cases, ``refmaml explain`` and the benchmarks.

Everything is decided by what the model declares (``refmaml.models.Model``'s capabilities), never
by its class or name: the parameter shape (``parameter_shape``), how random parameters are drawn
(``random_parameters``: scaled normal entries, or a network's PyTorch initialisation), the form of
the targets (``targets``: 0/1 floats, integer classes, or real numbers with the output shape), and
whether kinks must be kept at a margin (``kinks``: then every kinked input stays ``margin`` away
from its kink at every inner iterate, on the support and the query sets, or the draw is repeated).
Draws come in a fixed order (parameters, ``Xs``, ``Xq``, ``ys``, ``yq``), so a seed gives the same
problem on every machine.
"""

from dataclasses import dataclass

import numpy as np

from . import models
from .maml import adapt


@dataclass(frozen=True)
class Instance:
    """``theta`` (one task's parameters), ``Xs (T, n, d)``, ``ys``, ``Xq (T, m, d)``, ``yq``: NumPy
    float64 arrays, targets in the model's form (float64 0/1, int64 classes, or real)."""

    theta: np.ndarray
    Xs: np.ndarray
    ys: np.ndarray
    Xq: np.ndarray
    yq: np.ndarray


def targets(rng, model, shape, outputs):
    """Random targets of ``model``'s form for examples of shape ``shape`` (``(T, n)`` or ``(n,)``) and
    one example's outputs ``outputs``: 0.0/1.0 floats, int64 classes in ``[0, C)``, or standard
    normal reals of shape ``shape + outputs`` (``shape`` alone for one output)."""
    model = models.get(model)
    if model.targets == "real":
        return rng.standard_normal(tuple(shape) + (tuple(outputs) if tuple(outputs) not in ((), (1,)) else ()))
    if model.targets == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    return rng.integers(0, outputs[-1], shape).astype(np.int64)


def draw(rng, model, *, T, n, m, features=None, classes=None, scale=0.5):
    """One random problem from ``rng``: parameters (:meth:`Model.random_parameters` at ``scale``),
    standard normal ``Xs (T, n, d)`` and ``Xq (T, m, d)``, and targets; ``features`` and ``classes``
    size a linear model (a network's are its own)."""
    model = models.get(model)
    theta = np.asarray(model.random_parameters(rng, model.parameter_shape(features, classes), scale))
    d, outputs = model.dimensions(theta.shape)
    Xs, Xq = rng.standard_normal((T, n, d)), rng.standard_normal((T, m, d))
    return Instance(theta, Xs, targets(rng, model, (T, n), outputs), Xq, targets(rng, model, (T, m), outputs))


def kink_distance(model, instance, *, inner_lr, inner_steps, l2=0.0):
    """The smallest distance of any kinked input from its kink along the inner loop: at every
    iterate ``theta_0..theta_K`` of every task, on the support and the query inputs (``inf`` for a
    model without kinks)."""
    model = models.get(model)
    if not model.kinks:
        return float("inf")
    path = np.asarray(adapt(instance.theta, instance.Xs, instance.ys, inner_lr=inner_lr, inner_steps=inner_steps,
                            model=model, l2=l2, return_trajectory=True))
    return min(model.kink_distance(path[k, t][None], X[t][None, ...])
               for k in range(path.shape[0]) for t in range(path.shape[1]) for X in (instance.Xs, instance.Xq))


__all__ = ["Instance", "draw", "kink_distance", "targets"]
