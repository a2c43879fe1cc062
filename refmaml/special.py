"""Numerically stable special functions, for real and complex arguments.

Every function takes its namespace from its argument, never overflows for
real parts of any finite size (logits of 1e4, or 1e300, give finite results
with no warnings), and is *complex-step safe*: the branch is chosen by the
real part only, and each branch is one analytic expression, so for a real
``z`` and a tiny ``h`` the imaginary part of ``f(z + i h)`` is ``h f'(z)`` to
rounding.  Derivations: ``derivations/logistic.md`` (L5)-(L7).
"""

from array_api_compat import array_namespace

from ._xp import real_part


def _folded(xp, z):
    """``exp(-|z|)`` on the real part's side: ``exp(-z)`` where Re z >= 0, else ``exp(z)``.

    Its modulus is at most 1, so it never overflows.
    """
    nonneg = real_part(xp, z) >= 0
    return nonneg, xp.exp(xp.where(nonneg, -z, z))


def sigmoid(z):
    """Logistic function ``1 / (1 + exp(-z))``, elementwise.

    ``derivations/logistic.md`` (L5): for Re z >= 0 it is computed as
    ``1 / (1 + e)`` with ``e = exp(-z)``, otherwise as ``e / (1 + e)`` with
    ``e = exp(z)``; both forms equal sigma(z) and neither overflows.
    """
    xp = array_namespace(z)
    nonneg, e = _folded(xp, z)
    return xp.where(nonneg, 1 / (1 + e), e / (1 + e))


def softplus(z):
    """``log(1 + exp(z))``, elementwise.

    ``derivations/logistic.md`` (L6): ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``,
    with the max and the absolute value taken branch-wise on the real part
    (for Re z >= 0: ``z + log1p(exp(-z))``; otherwise ``log1p(exp(z))``).
    """
    xp = array_namespace(z)
    nonneg, e = _folded(xp, z)
    return xp.where(nonneg, z, xp.zeros_like(z)) + xp.log1p(e)


def log_sigmoid(z):
    """``log(sigmoid(z)) = -softplus(-z)``, elementwise (``derivations/logistic.md`` (L7))."""
    return -softplus(-z)
