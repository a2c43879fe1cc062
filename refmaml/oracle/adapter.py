"""Calling a user's ``fn`` on one case (:func:`call`) and reading what it returns as an
:class:`~refmaml.oracle.answers.Answer`: ``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps[, l2])``
returns ``(meta_loss, meta_grad)``, or ``(meta_loss, meta_grad, inner_lr_grad)`` with rate
gradients. Anything else (an exception, a wrong count, shape or precision, a value that cannot be
read as real numbers) is a :class:`Malformed` finding, not a crash of the check (O23):

* every array handed to ``fn`` is a fresh, writable copy: an ``fn`` that writes into its inputs
  changes neither the cases nor the truth they are judged against;
* every returned value is read inside a guard: an object whose ``detach``, ``cpu``,
  ``__array__`` or ``__float__`` raises, a complex number, an integer too large for a float, a
  ragged list: each is a message, never an exception or a warning that escapes;
* warnings that ``fn`` itself raises (PyTorch's broadcasting warning in ``mse_loss``) are kept
  for the report, not let through.
"""

import warnings

import numpy as np

from .. import models
from .answers import Answer


class Malformed(Exception):
    """fn raised or returned the wrong form: a finding about its interface. ``kind``: ``"raised"``,
    ``"interface"`` or ``"float32"`` (float32 answers in a float64 check); ``loss``: the meta-loss,
    when it could be read beside a malformed gradient (None otherwise)."""

    def __init__(self, message, kind="interface", loss=None):
        super().__init__(message)
        self.kind, self.loss = kind, loss


def _describe(x):
    shape = getattr(x, "shape", None)
    try:
        return type(x).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")
    except Exception:  # a hostile shape attribute
        return type(x).__name__


def _pieces(x):
    """For a tuple or list of arrays of different shapes (per-layer gradients), their shapes."""
    if not isinstance(x, (tuple, list)) or not x:
        return None
    shapes = []
    for part in x:
        shape = getattr(part, "shape", None)
        if shape is None:
            return None
        shapes.append(tuple(shape))
    return shapes if len(shapes) > 1 and any(shape != () for shape in shapes) else None


def _as_float64(x, name, expected=None):
    """NumPy, or anything ``np.asarray`` takes; tensors are detached and moved to the CPU first.
    Returns the float64 array and the dtype it came with (its name). Raises :class:`Malformed`
    for a value that cannot be read as real numbers (complex, too large for a float, objects that
    raise), with what was received; ``expected`` (a shape) is said for per-layer lists."""
    if x is None:
        return None, ""
    pieces = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # a ComplexWarning or an overflow is a finding, not a warning
            for method in ("detach", "cpu"):
                if hasattr(x, method):
                    x = getattr(x, method)()
            pieces = _pieces(x)
            if pieces is not None and expected is not None and (
                    any(s != pieces[0] for s in pieces)
                    or sum(int(np.prod(s)) for s in pieces) == int(np.prod(expected))):
                raise Malformed(_per_layer(name, pieces, expected))
            dtype = str(getattr(x, "dtype", ""))
            raw = np.asarray(x)
            if raw.dtype.kind == "c":
                imaginary = float(np.max(np.abs(raw.imag))) if raw.size else 0.0
                raise Malformed(f"{name} is complex (dtype {raw.dtype}, largest imaginary part {imaginary:.3g}); "
                                "return real numbers")
            if raw.dtype.kind not in "biuf":
                if raw.dtype.kind == "O" and any(isinstance(v, int) and not isinstance(v, bool)
                                                 and abs(v) > np.finfo(np.float64).max for v in raw.reshape(-1)):
                    raise Malformed(f"{name} holds a number too large for a float64 (more than 1.8e308)")
                if raw.dtype.kind not in "O":
                    raise Malformed(f"{name} has dtype {raw.dtype}; expected real numbers")
            return raw.astype(np.float64), dtype or str(raw.dtype)
    except Malformed:
        raise
    except Exception as exc:  # whatever a hostile object raises: the finding says what and where
        if pieces is not None and expected is not None:
            raise Malformed(_per_layer(name, pieces, expected)) from None
        if isinstance(exc, OverflowError):
            raise Malformed(f"{name} holds a number too large for a float64 (more than 1.8e308; {_describe(x)}: "
                            f"{exc})") from None
        raise Malformed(f"{name} could not be read as an array of real numbers ({_describe(x)}): "
                        f"{type(exc).__name__}: {exc}") from None


def _per_layer(name, pieces, expected):
    shown = ", ".join(map(str, pieces[:6])) + (f" and {len(pieces) - 6} more" if len(pieces) > 6 else "")
    return (f"{name} is a {len(pieces)}-part list or tuple (shapes {shown}), one part per parameter; expected one "
            f"flat array of shape {expected}: concatenate the parts in the model's parameter order (PyTorch: "
            "torch.nn.utils.parameters_to_vector(grads), the order of model.parameters(), each part row-major)")


def _low_precision(dtype):
    return any(p in dtype for p in ("float32", "float16", "bfloat16"))


def arguments(case, rate, dtype, *, l2, lr_grad):
    """``(args, kwargs)`` for ``fn`` on ``case``: fresh, writable arrays every call (theta,
    features and real targets of ``dtype``; labels as the case holds them), the rate a fresh array
    of theta's shape with ``lr_grad`` (else a float), ``l2=`` with ``l2``."""
    args = [np.array(case.theta, dtype=dtype), np.array(case.Xs, dtype=dtype), np.array(case.ys),
            np.array(case.Xq, dtype=dtype), np.array(case.yq)]
    if models.get(case.model).targets == "real":
        args[2], args[4] = args[2].astype(dtype), args[4].astype(dtype)
    kw = dict(inner_lr=np.array(rate, dtype=dtype) if lr_grad else float(rate), inner_steps=case.inner_steps)
    if l2:
        kw["l2"] = case.l2
    return args, kw


def call(fn, case, rate, dtype, *, l2, lr_grad, caught=None):
    """``fn`` run on ``case`` with inputs of ``dtype`` and rate ``rate`` (an array of theta's shape
    with ``lr_grad``, else a float; ``l2=`` passed with ``l2``), its answers as float64; raises
    :class:`Malformed`. The warnings ``fn`` raises are appended to ``caught`` (a list), not shown."""
    args, kw = arguments(case, rate, dtype, l2=l2, lr_grad=lr_grad)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kw)
        except Exception as exc:  # the implementation's failure is a finding, not a crash of the check
            raise Malformed(f"{type(exc).__name__}: {exc}", "raised") from None
        finally:
            if caught is not None:
                caught.extend(f"{w.category.__name__}: {w.message}" for w in seen)
    return read(out, case, rate, dtype, lr_grad=lr_grad)


def read(out, case, rate, dtype, *, lr_grad):
    """What ``fn`` returned on ``case``, checked and read as an :class:`Answer` (float64)."""
    expected = "(meta_loss, meta_grad, inner_lr_grad)" if lr_grad else "(meta_loss, meta_grad)"
    if not isinstance(out, (tuple, list)) or len(out) != (3 if lr_grad else 2):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        raise Malformed(f"fn must return {expected}; got {got}")
    loss, loss_dtype = _as_float64(out[0], "meta_loss")
    if loss is None or loss.shape != ():
        raise Malformed(f"meta_loss must be a scalar; got shape {None if loss is None else loss.shape}")
    shape = tuple(case.theta.shape)
    try:
        grad, grad_dtype = _as_float64(out[1], "meta_grad", shape)
    except Malformed as exc:
        raise Malformed(str(exc), exc.kind, float(loss)) from None
    if grad is None or grad.shape != shape:
        raise Malformed(f"meta_grad expected with shape {shape} and dtype {dtype} (theta's); "
                        f"received shape {None if grad is None else grad.shape} and dtype {grad_dtype or '-'}",
                        loss=float(loss))
    try:
        rate_grad, rate_dtype = _as_float64(out[2], "inner_lr_grad", np.shape(rate)) if lr_grad else (None, "")
    except Malformed as exc:
        raise Malformed(str(exc), exc.kind, float(loss)) from None
    if lr_grad and rate_grad is None:
        rate_grad = np.zeros(np.shape(rate))
    if lr_grad and rate_grad.shape != np.shape(rate):
        raise Malformed(f"inner_lr_grad expected with shape {np.shape(rate)} (inner_lr's) and dtype {dtype}; "
                        f"received shape {rate_grad.shape} and dtype {rate_dtype or '-'}", loss=float(loss))
    if dtype == "float64":
        low = [(n, d) for n, d in (("meta_loss", loss_dtype), ("meta_grad", grad_dtype),
                                   ("inner_lr_grad", rate_dtype)) if _low_precision(d)]
        if low:
            raise Malformed(f"{low[0][0]} has dtype {low[0][1]} in a float64 check (received float32 "
                            "answers; expected float64)", "float32")
    return Answer(float(loss), grad, rate_grad)
