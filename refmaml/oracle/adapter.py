"""Calling a user's ``fn`` on one case (:func:`call`) and reading what it returns as an
:class:`~refmaml.oracle.answers.Answer`: ``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps[, l2])``
returns ``(meta_loss, meta_grad)``, or ``(meta_loss, meta_grad, inner_lr_grad)`` with rate
gradients. Anything else (an exception, a wrong count, shape or precision) is a
:class:`Malformed` finding, not a crash of the check."""

import numpy as np

from .. import models
from .answers import Answer


class Malformed(Exception):
    """fn raised or returned the wrong form: a finding about its interface. ``kind``: ``"raised"``,
    ``"interface"`` or ``"float32"`` (float32 answers in a float64 check)."""

    def __init__(self, message, kind="interface"):
        super().__init__(message)
        self.kind = kind


def _as_float64(x, name):
    """NumPy, or anything ``np.asarray`` takes; CPU tensors of PyTorch are detached first. Returns
    the array and the dtype it came with (its name)."""
    if x is None:
        return None, ""
    for method in ("detach", "cpu"):
        if hasattr(x, method):
            x = getattr(x, method)()
    dtype = str(getattr(x, "dtype", ""))
    try:
        return np.asarray(x, dtype=np.float64), dtype
    except (TypeError, ValueError) as exc:
        raise Malformed(f"{name} could not be read as an array of numbers: {exc}") from None


def _low_precision(dtype):
    return any(p in dtype for p in ("float32", "float16", "bfloat16"))


def call(fn, case, rate, dtype, *, l2, lr_grad):
    """``fn`` run on ``case`` with inputs of ``dtype`` and rate ``rate`` (an array of theta's shape
    with ``lr_grad``, else a float; ``l2=`` passed with ``l2``), its answers as float64; raises
    :class:`Malformed`."""
    args = [case.theta.astype(dtype), case.Xs.astype(dtype), case.ys.copy(), case.Xq.astype(dtype),
            case.yq.copy()]
    if models.get(case.model).targets == "real":
        args[2], args[4] = args[2].astype(dtype), args[4].astype(dtype)
    kw = dict(inner_lr=np.asarray(rate, dtype=dtype) if lr_grad else float(rate),
              inner_steps=case.inner_steps)
    if l2:
        kw["l2"] = case.l2
    try:
        out = fn(*args, **kw)
    except Exception as exc:  # the implementation's failure is a finding, not a crash of the check
        raise Malformed(f"{type(exc).__name__}: {exc}", "raised") from None
    expected = "(meta_loss, meta_grad, inner_lr_grad)" if lr_grad else "(meta_loss, meta_grad)"
    if not isinstance(out, (tuple, list)) or len(out) != (3 if lr_grad else 2):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        raise Malformed(f"fn must return {expected}; got {got}")
    loss, loss_dtype = _as_float64(out[0], "meta_loss")
    if loss is None or loss.shape != ():
        raise Malformed(f"meta_loss must be a scalar; got shape {None if loss is None else loss.shape}")
    grad, grad_dtype = _as_float64(out[1], "meta_grad")
    if grad is None or grad.shape != case.theta.shape:
        raise Malformed(f"meta_grad expected with shape {case.theta.shape} and dtype {dtype} (theta's); "
                        f"received shape {None if grad is None else grad.shape} and dtype {grad_dtype or '-'}")
    rate_grad, rate_dtype = _as_float64(out[2], "inner_lr_grad") if lr_grad else (None, "")
    if lr_grad and rate_grad is None:
        rate_grad = np.zeros(np.shape(rate))
    if lr_grad and rate_grad.shape != np.shape(rate):
        raise Malformed(f"inner_lr_grad expected with shape {np.shape(rate)} (inner_lr's) and dtype {dtype}; "
                        f"received shape {rate_grad.shape} and dtype {rate_dtype or '-'}")
    if dtype == "float64":
        low = [(n, d) for n, d in (("meta_loss", loss_dtype), ("meta_grad", grad_dtype),
                                   ("inner_lr_grad", rate_dtype)) if _low_precision(d)]
        if low:
            raise Malformed(f"{low[0][0]} has dtype {low[0][1]} in a float64 check (received float32 "
                            "answers; expected float64)", "float32")
    return Answer(float(loss), grad, rate_grad)
