"""Loss heads: what a model's loss does with its outputs, ``derivations/models.md`` (H1), (H6).

A head works in output space, one task per leading index: outputs ``z (T, n) + q`` (``q = ()``
for one output per example, ``(C,)`` for ``C`` classes or ``(q,)`` regression outputs) and
targets ``y`` of the form :meth:`Head.labels` returns. It gives

* ``value(z, y)``: the mean over examples of the per-example loss, ``(T,)`` (H1);
* ``residual(z, y)``: ``(r, c)``, the per-example derivative ``r = dl/dz`` and the curvature
  state ``c`` that :meth:`Head.curvature` needs (H6);
* ``value_residual(z, y)``: the value and ``r`` from one evaluation;
* ``curvature(c, u)``: the per-example curvature ``d^2 l / dz^2`` applied to ``u`` (H6);
* ``curvature_matrix(c)``: the same as matrices, ``(T, n, q, q)`` (with ``q = 1`` for one
  output), for explicit Hessians (H7);
* ``predict(z)``: probabilities, or the outputs themselves for regression.

Nothing here checks its inputs except :meth:`Head.labels`, which validates and converts
targets once per public call; its checks of the targets' values go through
:func:`refmaml._validate.require` (read at the end of a deferred call on a device).
"""

import numpy as np
from array_api_compat import device

from .. import _validate, _xp, kernels
from .._xp import array_namespace


def _shape_error(name, y, expected, what):
    return ValueError(f"{name} has shape {tuple(y.shape)}; expected {tuple(expected)} ({what})")


class Head:
    """Base class; the three heads below fill it in."""

    name = ""
    classification = True
    targets = ""  # the form of the targets: "binary" (0/1), "classes" (integers in [0, C)), "real"
    constant_curvature = False  # whether d^2 l / dz^2 is the same at every z (H6)

    def class_probabilities(self, z):
        """Class probabilities ``(T, n, C)`` from the outputs (classification heads only)."""
        raise ValueError(f"the {self.name} head has no classes: accuracy is defined for the logistic "
                         "and softmax heads only")


class Logistic(Head):
    """Binary cross-entropy with logits: ``l(z, y) = softplus((1 - 2y) z)``, one output per example,
    labels 0/1 (``derivations/logistic.md`` (L8)-(L10))."""

    name = "logistic"
    targets = "binary"

    def labels(self, xp, dev, y, shape, outputs, dtype, name, classes_of):
        """Binary labels as ``dtype`` 0.0 and 1.0, shape ``shape`` (one per example).

        Accepted: bool arrays, integer arrays holding only 0 and 1, real float arrays holding
        exactly 0.0 and 1.0. ``classes_of`` is unused (two classes, always)."""
        if type(y) is np.ndarray and y.dtype == np.float64 and y.shape == shape \
                and xp is _xp.NUMPY and dtype == np.float64 and ((y == 0) | (y == 1)).all():
            return y  # NumPy fast path: float64 labels that are already 0.0 and 1.0
        y = _validate.as_array(xp, dev, y, name)
        kinds = ("bool", "integral", "real floating")
        if not any(_xp.isdtype(xp, y.dtype, kind) for kind in kinds):
            raise TypeError(f"{name} has dtype {y.dtype}; binary labels must be bool, integer or float 0/1")
        if tuple(y.shape) != shape:
            raise _shape_error(name, y, shape, "one label per example")
        if _xp.isdtype(xp, y.dtype, "real floating"):
            _validate.check_finite(xp, y, name)
        if not _xp.isdtype(xp, y.dtype, "bool"):
            _validate.require(xp.all((y == 0) | (y == 1)),
                              lambda: ValueError(f"{name} must hold only the labels 0 and 1"))
        return xp.astype(y, dtype)

    def value(self, z, y):
        """Mean over examples of ``softplus(s z)``, ``s = 1 - 2y`` (L8): exact for both labels."""
        xp = array_namespace(z)
        return xp.mean(kernels.softplus((1 - 2 * y) * z), axis=-1)

    def residual(self, z, y):
        """``p - y`` (L9) and the curvature weights ``w = p (1 - p)`` (L10) from one exponential:
        ``p - y`` is ``sigmoid(z)`` where ``y = 0`` and ``-sigmoid(-z)`` where ``y = 1``, so neither
        label loses digits to cancellation."""
        xp = array_namespace(z)
        p, q = kernels.sigmoid_pair(z)
        return xp.where(y == 0, p, -q), p * q

    def value_residual(self, z, y):
        """(L8) and (L9) at the same outputs."""
        return self.value(z, y), self.residual(z, y)[0]

    def curvature(self, w, u):
        """``d^2 l / dz^2`` applied to ``u``: ``w * u`` (L10)."""
        return w * u

    def curvature_matrix(self, w):
        """``w`` as ``(T, n, 1, 1)`` matrices (L10)."""
        return w[..., None, None]

    def predict(self, z):
        """``sigmoid(z)`` (L1)."""
        return kernels.sigmoid(z)

    def class_probabilities(self, z):
        """``(1 - p, p)`` per example, ``(T, n, 2)``: the two classes of (L1), with ``1 - p`` computed
        as written, so that ``p = 1/2`` (to rounding) is a tie (T10)."""
        xp = array_namespace(z)
        p = kernels.sigmoid(z)
        return xp.stack([1 - p, p], axis=-1)


class Softmax(Head):
    """Cross-entropy of ``softmax(z)`` over ``C >= 2`` classes, integer labels in ``[0, C)``
    (``derivations/softmax.md`` (S2), (S7), (S8), (S10)). Targets reach the math one-hot."""

    name = "softmax"
    targets = "classes"

    def labels(self, xp, dev, y, shape, outputs, dtype, name, classes_of):
        """Integer class labels in ``[0, C)`` returned one-hot, ``shape + (C,)`` of ``dtype``;
        ``classes_of(C)`` says where ``C`` comes from (for messages)."""
        C = outputs[-1]
        if type(y) is np.ndarray and y.dtype == np.int64 and y.shape == shape and xp is _xp.NUMPY \
                and y.size and y.min() >= 0 and y.max() < C:
            return (y[..., None] == np.arange(C)).astype(dtype)  # NumPy fast path
        y = _validate.as_array(xp, dev, y, name)
        if not _xp.isdtype(xp, y.dtype, "integral"):
            raise TypeError(
                f"{name} has dtype {y.dtype}; softmax labels must be integers (class indices in [0, C))"
            )
        if tuple(y.shape) != shape:
            raise _shape_error(name, y, shape, "one label per example")
        out_of_range = y < 0
        if C <= xp.iinfo(y.dtype).max:  # otherwise no value of y's dtype reaches C
            out_of_range = out_of_range | (y >= C)

        def error():
            low, high = int(xp.min(y)), int(xp.max(y))
            bad = low if low < 0 else high
            return ValueError(f"{name} holds the label {bad}, but {classes_of(C)}; labels must lie in [0, {C})")

        _validate.require(~xp.any(out_of_range), error)
        if C - 1 > xp.iinfo(y.dtype).max:  # the class indices need a wider type than the labels
            y = xp.astype(y, xp.int64)
        classes = xp.arange(C, dtype=y.dtype, device=dev)
        return xp.astype(y[..., None] == classes, dtype)

    def value(self, Z, Y):
        """Mean cross-entropy over examples, ``-mean_i sum_c Y_ic log P_ic`` (S2), (S7)."""
        return self._value(kernels.log_softmax(Z), Y)

    @staticmethod
    def _value(logP, Y):
        xp = array_namespace(logP)
        return -xp.mean(xp.sum(Y * logP, axis=-1), axis=-1)

    @staticmethod
    def _residual(P, Y):
        """``P - Y`` with the true class's entry as ``-sum_{c != y} p_c``: (S8)."""
        xp = array_namespace(P)
        hit = Y == 1
        others = xp.sum(xp.where(hit, xp.zeros_like(P), P), axis=-1, keepdims=True)
        return xp.where(hit, -others, P)

    def residual(self, Z, Y):
        """``P - Y`` (S8) and the probabilities ``P``, all that the curvature (S10) needs."""
        P = kernels.softmax(Z)
        return self._residual(P, Y), P

    def value_residual(self, Z, Y):
        """(S7) and (S8) from one pivot (S6)."""
        logP, P = kernels.log_softmax_and_softmax(Z)
        return self._value(logP, Y), self._residual(P, Y)

    def curvature(self, P, U):
        """``W u`` per example, ``p * u - p (p . u)`` (S3), (S10)."""
        xp = array_namespace(P)
        PU = P * U
        return PU - P * xp.sum(PU, axis=-1, keepdims=True)

    def curvature_matrix(self, P):
        """``W = diag(p) - p p^T`` per example, ``(T, n, C, C)`` (S3)."""
        xp = array_namespace(P)
        eye = xp.eye(P.shape[-1], dtype=P.dtype, device=device(P))
        return P[..., :, None] * eye - P[..., :, None] * P[..., None, :]

    def predict(self, Z):
        """``softmax(Z)`` row by row (S1), (S6)."""
        return kernels.softmax(Z)

    def class_probabilities(self, Z):
        return kernels.softmax(Z)


class MSE(Head):
    """Mean squared error: ``l(z, y) = (1/q) ||z - y||^2`` per example with ``q`` outputs, so that
    the loss is the mean over examples and outputs, PyTorch's ``mse_loss`` (no 1/2)
    (``derivations/models.md`` (H6), ``derivations/linear.md`` (Q1))."""

    name = "mse"
    classification = False
    targets = "real"
    constant_curvature = True

    def labels(self, xp, dev, y, shape, outputs, dtype, name, classes_of):
        """Real targets of shape ``shape + outputs``, or ``shape`` when there is one output
        (``outputs == (1,)``); returned as ``dtype`` with the outputs axis."""
        expected = shape + tuple(outputs)
        if type(y) is np.ndarray and y.dtype == np.float64 and y.shape == expected and xp is _xp.NUMPY \
                and dtype == np.float64 and _xp.numpy_finite(y):
            return y  # NumPy fast path
        y = _validate.as_array(xp, dev, y, name)
        if not (_xp.isdtype(xp, y.dtype, "integral") or _xp.isdtype(xp, y.dtype, "real floating")):
            raise TypeError(f"{name} has dtype {y.dtype}; regression targets must be real numbers "
                            "(integer or float arrays)")
        if tuple(y.shape) != expected:
            if tuple(outputs) == (1,) and tuple(y.shape) == shape:
                y = xp.expand_dims(y, axis=-1)
            else:
                what = "one target per example" if not outputs else \
                    f"{outputs[0]} targets per example" + (", or one per example" if tuple(outputs) == (1,) else "")
                raise _shape_error(name, y, expected, what)
        y = _validate.real_cast(xp, y, dtype)
        _validate.check_finite(xp, y, name)
        return y

    @staticmethod
    def _per_example(D):
        """``q``, the number of outputs per example, of ``D (T, n) + q``."""
        return 1 if D.ndim == 2 else D.shape[-1]

    def value(self, z, y):
        """Mean over examples and outputs of ``(z - y)^2`` (H6), (Q1)."""
        xp = array_namespace(z)
        D = z - y
        return xp.mean(D * D, axis=tuple(range(1, D.ndim)))

    def residual(self, z, y):
        """``dl/dz = (2/q)(z - y)`` (H6). The curvature ``(2/q) I`` is constant: its state is the
        residual itself, read for its shape only."""
        D = z - y
        r = (2 / self._per_example(D)) * D
        return r, r

    def value_residual(self, z, y):
        xp = array_namespace(z)
        D = z - y
        return xp.mean(D * D, axis=tuple(range(1, D.ndim))), (2 / self._per_example(D)) * D

    def curvature(self, r, u):
        """``(2/q) u`` (H6)."""
        return (2 / self._per_example(r)) * u

    def curvature_matrix(self, r):
        """``(2/q) I_q`` for every example, ``(T, n, q, q)`` (H6)."""
        xp = array_namespace(r)
        q = self._per_example(r)
        eye = xp.eye(q, dtype=r.dtype, device=device(r)) * (2 / q)
        return xp.broadcast_to(eye, tuple(r.shape[:2]) + (q, q))

    def predict(self, z):
        """The outputs themselves."""
        return z


LOGISTIC, SOFTMAX, MSE_HEAD = Logistic(), Softmax(), MSE()
HEADS = {"logistic": LOGISTIC, "softmax": SOFTMAX, "mse": MSE_HEAD}
