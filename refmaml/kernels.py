"""The stable special functions without input checks.

These are the kernels behind :mod:`refmaml.special` and the loss heads of
:mod:`refmaml.models`: they take arrays that were validated once per public call
(finite, of a floating dtype) and check nothing, so that an inner loop does not
pay for a check at every step. Users call :mod:`refmaml.special`, which validates
its argument and then calls the function of the same name here.

Every function takes its namespace from its argument, never overflows for real
parts of any finite size, and is complex-step safe: the branch is chosen by the
real part only, and each branch is one analytic expression, so for a real ``z``
and a tiny ``h`` the imaginary part of ``f(z + i h)`` is ``h f'(z)`` to rounding.
Derivations: ``derivations/logistic.md`` (L5)-(L7) and ``derivations/softmax.md``
(S5), (S6).
"""

from array_api_compat import device

from ._xp import array_namespace, real_part


def folded(xp, z):
    """``exp(-|z|)`` on the real part's side: ``exp(-z)`` where Re z >= 0, else ``exp(z)``.

    Its modulus is at most 1, so it never overflows.
    """
    nonneg = real_part(xp, z) >= 0
    return nonneg, xp.exp(xp.where(nonneg, -z, z))


def sigmoid(z):
    """Logistic function, elementwise: ``derivations/logistic.md`` (L5)."""
    xp = array_namespace(z)
    nonneg, e = folded(xp, z)
    return xp.where(nonneg, 1 / (1 + e), e / (1 + e))


def sigmoid_pair(z):
    """``(sigmoid(z), sigmoid(-z))`` from one exponential: ``derivations/logistic.md`` (L5).

    With ``e = exp(-|z|)`` (real-part branches) and ``q = 1 / (1 + e)``, the two
    are ``q`` and ``e q`` in the order the sign of Re z says; neither is
    computed as ``1 - sigmoid``, so both keep their digits.
    """
    xp = array_namespace(z)
    nonneg, e = folded(xp, z)
    q = 1 / (1 + e)
    eq = e * q
    return xp.where(nonneg, q, eq), xp.where(nonneg, eq, q)


def softplus(z):
    """``log(1 + exp(z))``, elementwise: ``derivations/logistic.md`` (L6)."""
    xp = array_namespace(z)
    nonneg, e = folded(xp, z)
    return xp.where(nonneg, z, xp.zeros_like(z)) + xp.log1p(e)


def log_sigmoid(z):
    """``log(sigmoid(z)) = -softplus(-z)``, elementwise: ``derivations/logistic.md`` (L7)."""
    return -softplus(-z)


def pivoted(z, axis):
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


def logsumexp(z, axis=-1):
    """``log(sum(exp(z), axis))``, the reduced axis dropped: ``derivations/softmax.md`` (S5)."""
    xp = array_namespace(z)
    z_a, _, r = pivoted(z, axis)
    return xp.squeeze(z_a + xp.log1p(r), axis=axis)


def log_softmax(z, axis=-1):
    """``z - logsumexp(z)`` along ``axis``: ``derivations/softmax.md`` (S6)."""
    xp = array_namespace(z)
    _, shifted, r = pivoted(z, axis)
    return shifted - xp.log1p(r)


def softmax(z, axis=-1):
    """``exp(z) / sum(exp(z), axis)``: ``derivations/softmax.md`` (S6)."""
    xp = array_namespace(z)
    _, shifted, r = pivoted(z, axis)
    return xp.exp(shifted) / (1 + r)


def log_softmax_and_softmax(z, axis=-1):
    """:func:`log_softmax` and :func:`softmax` from one pivot (S6), equal to theirs bit for bit."""
    xp = array_namespace(z)
    _, shifted, r = pivoted(z, axis)
    return shifted - xp.log1p(r), xp.exp(shifted) / (1 + r)
