"""Numerically stable special functions, for real and complex arguments.

Each function validates its argument and calls the kernel of the same name
in :mod:`refmaml.kernels`. Every function takes its namespace from its argument, never overflows for
real parts of any finite size (logits of 1e4, or 1e300, give finite results
with no warnings), and is *complex-step safe*: the branch is chosen by the
real part only, and each branch is one analytic expression, so for a real
``z`` and a tiny ``h`` the imaginary part of ``f(z + i h)`` is ``h f'(z)`` to
rounding.  Derivations: ``derivations/logistic.md`` (L5)-(L7) and
``derivations/softmax.md`` (S5), (S6).
"""

from . import _validate, _xp, kernels


def _argument(z):
    """Validate ``z`` for the public functions: an array of any supported library (or a Python
    number or list, converted with NumPy); bool and integer promoted to float64; float32,
    float64, complex64 and complex128 kept; every entry finite."""
    xp, dev = _xp.namespace(z=z)
    return _validate.floating(xp, dev, z, "z", allow_complex=True)


def sigmoid(z):
    """Logistic function ``1 / (1 + exp(-z))``, elementwise: ``derivations/logistic.md`` (L5).

    For Re z >= 0 it is computed as ``1 / (1 + e)`` with ``e = exp(-z)``, otherwise
    as ``e / (1 + e)`` with ``e = exp(z)``; both forms equal sigma(z) and neither
    overflows.
    """
    return kernels.sigmoid(_argument(z))


def softplus(z):
    """``log(1 + exp(z))``, elementwise: ``derivations/logistic.md`` (L6).

    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``, with the max and the absolute
    value taken branch-wise on the real part (for Re z >= 0: ``z + log1p(exp(-z))``;
    otherwise ``log1p(exp(z))``).
    """
    return kernels.softplus(_argument(z))


def log_sigmoid(z):
    """``log(sigmoid(z)) = -softplus(-z)``, elementwise (``derivations/logistic.md`` (L7))."""
    return kernels.log_sigmoid(_argument(z))


def logsumexp(z, axis=-1):
    """``log(sum(exp(z), axis))``: ``derivations/softmax.md`` (S5).

    Computed as ``z_a + log1p(sum_{c != a} exp(z_c - z_a))`` with ``a`` the
    largest entry by real part; the reduced axis is dropped.
    """
    return kernels.logsumexp(_argument(z), axis)


def log_softmax(z, axis=-1):
    """``z - logsumexp(z)`` along ``axis``: ``derivations/softmax.md`` (S6).

    Computed as ``(z - z_a) - log1p(r)`` (see :func:`logsumexp`), never as a
    difference of two large numbers: the dominant class of a logit vector
    ``(1e4, 0)`` gets ``-log1p(e^-1e4)``, not ``1e4 - 1e4``.
    """
    return kernels.log_softmax(_argument(z), axis)


def softmax(z, axis=-1):
    """``exp(z) / sum(exp(z), axis)``: ``derivations/softmax.md`` (S6).

    Computed as ``exp(z - z_a) / (1 + r)`` (see :func:`logsumexp`).
    """
    return kernels.softmax(_argument(z), axis)
