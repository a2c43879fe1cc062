"""Evaluation on held-out tasks: ``derivations/training.md`` (T10)-(T12).

From a learned initialisation (and learned rates, where a method has them),
each held-out task takes ``0, 1, ..., K`` plain gradient steps on its support
set (:func:`refmaml.adapt`); the query accuracy and query loss of every iterate
are recorded per task, then summarised over tasks by a mean and a 95%
confidence interval (T12), the form the MAML paper reports.
"""

import dataclasses
import math

import array_api_compat
import numpy as np

from . import _validate, _xp, models, problem
from .maml import adapt
from .variants import imaml_value_and_grad

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal distribution


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean over tasks and the half-width of its 95% confidence interval (T12)."""

    mean: float
    half_width: float
    tasks: int

    @property
    def interval(self):
        return (self.mean - self.half_width, self.mean + self.half_width)

    def as_dict(self):
        return {"mean": self.mean, "ci95": list(self.interval), "half_width": self.half_width,
                "tasks": self.tasks}


def summarize(values):
    """Mean of per-task ``values (T,)`` and its 95% interval ``mean +- z sqrt(s^2 / T)`` (T12),
    ``s^2`` the sample variance; ``T >= 2`` finite real numbers (a list, or any array on the host)."""
    if hasattr(values, "__array_namespace__") and not isinstance(values, np.ndarray):
        values = _xp.to_numpy(values)
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or values.dtype == np.float16:
        raise TypeError(f"values has dtype {values.dtype}; expected integers, float32 or float64")
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"values must be 1-D with at least 2 tasks; got shape {values.shape}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("values contains NaN or infinity; every entry must be finite")
    T = values.shape[0]
    scale = float(np.max(np.abs(values))) or 1.0  # scaled, so that squares cannot overflow
    scaled = values / scale
    mean = scale * float(scaled.mean())
    half = scale * float(Z95 * scaled.std(ddof=1) / math.sqrt(T))
    if not (math.isfinite(mean + half) and math.isfinite(mean - half)):
        raise ValueError("values are too large for a finite confidence interval")
    return Summary(mean, half, T)


def query_metrics(model, theta, Xq, yq):
    """Per-task query accuracy and loss ``(T,)`` of parameters ``theta (T,) + P`` (T10), (T11).

    Accuracy: the fraction of query examples whose most probable class is the label; an
    example where ``k`` classes tie for the largest probability, the label among them, counts
    ``1/k`` (the expected accuracy of breaking the tie at random), so ``theta = 0`` scores
    ``1/C``, not 0. A regression model (the mse head) has no accuracy: ``None``, and the loss is
    the query MSE.
    """
    xp = _xp.array_namespace(theta)
    m = models.get(model)
    with _validate.deferred():  # as Model.loss and Model.class_probabilities, from one forward pass
        call = problem.model_call(m, theta, Xq, yq)
        with _xp.quiet_overflow():
            Z, _ = m.network.forward(call.theta, call.X)
        loss = call.finish(lambda: m.head.value(Z, call.y), "the loss")
        if not m.head.classification:
            return None, loss
        P = call.finish(lambda: m.head.class_probabilities(Z), "the class probabilities")
    best = P == xp.max(P, axis=-1, keepdims=True)
    labels = xp.astype(yq, xp.int64)
    onehot = xp.astype(labels[..., None] == xp.arange(P.shape[-1], device=array_api_compat.device(P)),
                       theta.dtype)
    ties = xp.sum(xp.astype(best, theta.dtype), axis=-1)
    hit = xp.sum(xp.astype(best, theta.dtype) * onehot, axis=-1) / ties
    accuracy = xp.mean(hit, axis=-1)
    return accuracy, loss


def adaptation_curve(model, theta, Xs, ys, Xq, yq, *, inner_lr, steps, l2=0.0, inner_mask=None):
    """Query accuracy and loss after ``0..steps`` gradient steps on the support set, per task.

    ``theta``: the initialisation (``P``); ``inner_lr``: a scalar or learned rates (V1);
    ``inner_mask``: the parameters the steps adapt (ANIL's last layer, ``training.md`` (T15)), or
    None for all of them.
    Returns host arrays ``accuracy``, ``loss`` of shape ``(steps + 1, T)`` (``accuracy`` None for a
    regression model).
    """
    masked = {} if inner_mask is None else {"inner_mask": inner_mask}
    trajectory = adapt(theta, Xs, ys, inner_lr=inner_lr, inner_steps=steps, model=model, l2=l2,
                       return_trajectory=True, **masked)
    accuracy, loss = [], []
    for k in range(steps + 1):
        a, q = query_metrics(model, trajectory[k, ...], Xq, yq)
        accuracy.append(None if a is None else _xp.to_numpy(a))
        loss.append(_xp.to_numpy(q))
    return (None if accuracy[0] is None else np.stack(accuracy)), np.stack(loss)


def proximal_metrics(model, theta, Xs, ys, Xq, yq, *, lam, l2=0.0):
    """Per-task query accuracy and loss ``(T,)`` at iMAML's own adapted parameters, the
    proximal solution ``phi*`` (V10); host arrays."""
    _, _, info = imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=lam, model=model, l2=l2, tol=1e-10)
    a, q = query_metrics(model, info["phi"], Xq, yq)
    return (None if a is None else _xp.to_numpy(a)), _xp.to_numpy(q)
