"""Numerically stable special functions, for real and complex arguments.

Every function takes its namespace from its argument, never overflows for
real parts of any finite size (logits of 1e4, or 1e300, give finite results
with no warnings), and is *complex-step safe*: the branch is chosen by the
real part only, and each branch is one analytic expression, so for a real
``z`` and a tiny ``h`` the imaginary part of ``f(z + i h)`` is ``h f'(z)`` to
rounding.  Derivations: ``derivations/logistic.md`` (L5)-(L7) and
``derivations/softmax.md`` (S5), (S6).
"""

from array_api_compat import device

from . import _validate, _xp
from ._xp import array_namespace, real_part


def _folded(xp, z):
    """``exp(-|z|)`` on the real part's side: ``exp(-z)`` where Re z >= 0, else ``exp(z)``.

    Its modulus is at most 1, so it never overflows.
    """
    nonneg = real_part(xp, z) >= 0
    return nonneg, xp.exp(xp.where(nonneg, -z, z))


def _sigmoid(z):
    """Unchecked sigmoid: (L5); validated by the public :func:`sigmoid`."""
    xp = array_namespace(z)
    nonneg, e = _folded(xp, z)
    return xp.where(nonneg, 1 / (1 + e), e / (1 + e))


def _sigmoid_pair(z):
    """``(sigmoid(z), sigmoid(-z))`` from one exponential: ``derivations/logistic.md`` (L5).

    With ``e = exp(-|z|)`` (real-part branches) and ``q = 1 / (1 + e)``, the two
    are ``q`` and ``e q`` in the order the sign of Re z says; neither is
    computed as ``1 - sigmoid``, so both keep their digits.
    """
    xp = array_namespace(z)
    nonneg, e = _folded(xp, z)
    q = 1 / (1 + e)
    eq = e * q
    return xp.where(nonneg, q, eq), xp.where(nonneg, eq, q)


def _softplus(z):
    """Unchecked softplus: (L6); validated by the public :func:`softplus`."""
    xp = array_namespace(z)
    nonneg, e = _folded(xp, z)
    return xp.where(nonneg, z, xp.zeros_like(z)) + xp.log1p(e)


def _log_sigmoid(z):
    """Unchecked log-sigmoid (L7); validated by the public :func:`log_sigmoid`."""
    return -_softplus(-z)


def _pivoted(z, axis):
    """Split ``z`` about its largest entry along ``axis``: ``derivations/softmax.md`` (S5).

    With ``a`` the first index of the largest real part, returns
    ``(z_a, z - z_a, r)`` where ``r = sum_{c != a} exp(z_c - z_a)`` and
    ``z_a``, ``r`` keep the reduced axis (length 1).  Every exponent has a
    non-positive real part, so nothing overflows, and the term ``c = a``,
    which is exactly 1, is left out of ``r`` so that ``log1p(r)`` keeps the
    digits of a dominant class.
    """
    xp = array_namespace(z)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -z.ndim <= axis < z.ndim:
        raise ValueError(f"axis must be an integer in [-{z.ndim}, {z.ndim}) for z of shape "
                         f"{tuple(z.shape)}; got {axis!r}")
    size = z.shape[axis]
    if size == 0:
        raise ValueError(f"z has shape {tuple(z.shape)}: axis {axis} is empty (no classes)")
    positions = xp.reshape(xp.arange(size, device=device(z)),
                           tuple(size if k == axis % z.ndim else 1 for k in range(z.ndim)))
    first = positions == xp.argmax(real_part(xp, z), axis=axis, keepdims=True)
    zeros = xp.zeros_like(z)
    z_a = xp.sum(xp.where(first, z, zeros), axis=axis, keepdims=True)
    shifted = z - z_a
    r = xp.sum(xp.where(first, zeros, xp.exp(shifted)), axis=axis, keepdims=True)
    return z_a, shifted, r


def _logsumexp(z, axis=-1):
    """Unchecked logsumexp: (S5); validated by the public :func:`logsumexp`."""
    xp = array_namespace(z)
    z_a, _, r = _pivoted(z, axis)
    return xp.squeeze(z_a + xp.log1p(r), axis=axis)


def _log_softmax(z, axis=-1):
    """Unchecked log-softmax: (S6); validated by the public :func:`log_softmax`."""
    xp = array_namespace(z)
    _, shifted, r = _pivoted(z, axis)
    return shifted - xp.log1p(r)


def _softmax(z, axis=-1):
    """Unchecked softmax: (S6); validated by the public :func:`softmax`."""
    xp = array_namespace(z)
    _, shifted, r = _pivoted(z, axis)
    return xp.exp(shifted) / (1 + r)


def _log_softmax_and_softmax(z, axis=-1):
    """:func:`log_softmax` and :func:`softmax` from one pivot (S6), equal to theirs bit for bit."""
    xp = array_namespace(z)
    _, shifted, r = _pivoted(z, axis)
    return shifted - xp.log1p(r), xp.exp(shifted) / (1 + r)


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
    return _sigmoid(_argument(z))


def softplus(z):
    """``log(1 + exp(z))``, elementwise: ``derivations/logistic.md`` (L6).

    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``, with the max and the absolute
    value taken branch-wise on the real part (for Re z >= 0: ``z + log1p(exp(-z))``;
    otherwise ``log1p(exp(z))``).
    """
    return _softplus(_argument(z))


def log_sigmoid(z):
    """``log(sigmoid(z)) = -softplus(-z)``, elementwise (``derivations/logistic.md`` (L7))."""
    return _log_sigmoid(_argument(z))


def logsumexp(z, axis=-1):
    """``log(sum(exp(z), axis))``: ``derivations/softmax.md`` (S5).

    Computed as ``z_a + log1p(sum_{c != a} exp(z_c - z_a))`` with ``a`` the
    largest entry by real part; the reduced axis is dropped.
    """
    return _logsumexp(_argument(z), axis)


def log_softmax(z, axis=-1):
    """``z - logsumexp(z)`` along ``axis``: ``derivations/softmax.md`` (S6).

    Computed as ``(z - z_a) - log1p(r)`` (see :func:`logsumexp`), never as a
    difference of two large numbers: the dominant class of a logit vector
    ``(1e4, 0)`` gets ``-log1p(e^-1e4)``, not ``1e4 - 1e4``.
    """
    return _log_softmax(_argument(z), axis)


def softmax(z, axis=-1):
    """``exp(z) / sum(exp(z), axis)``: ``derivations/softmax.md`` (S6).

    Computed as ``exp(z - z_a) / (1 + r)`` (see :func:`logsumexp`).
    """
    return _softmax(_argument(z), axis)
