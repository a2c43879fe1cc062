"""Reptile (Nichol, Achiam and Schulman 2018): ``derivations/variants.md`` (V6)-(V9)."""

from .. import _validate, _xp, models, problem
from ..maml import check_overflow, inner_loop


def reptile_direction(theta, Xs, ys, *, inner_lr, inner_steps, model="logistic", l2=0.0, inner_mask=None):
    """Mean over tasks of ``theta - theta_K``, the direction of the Reptile update (V6).

    ``theta_K`` is :func:`refmaml.adapt`'s result: ``inner_steps`` full-batch gradient
    steps on each task's support loss (with ``l2``), with a scalar ``inner_lr`` or the
    learned rates of ``derivations/variants.md`` (V1). The Reptile update is
    ``theta <- theta - outer_lr * reptile_direction(...)``. Its relation to MAML and
    first-order MAML for small ``inner_lr`` is (V7)-(V9). With ``inner_mask`` the inner loop adapts
    only the masked parameters (``derivations/maml.md`` (M10)), and the direction is zero elsewhere.

    Returns an array of ``theta``'s shape, in the inputs' namespace and device.
    """
    with _validate.deferred():  # on a device, every check is read once, here at its end
        p = problem.meta(models.get(model), theta, Xs, ys, l2=l2, inner_lr=inner_lr, inner_steps=inner_steps,
                         inner_mask=inner_mask)
        with _xp.quiet_overflow():
            theta_K, _ = inner_loop(p)
        check_overflow(p, "theta_K", theta_K)
    return p.xp.mean(p.theta - theta_K, axis=0)
