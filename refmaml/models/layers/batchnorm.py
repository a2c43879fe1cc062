"""Batch normalisation in training mode with the statistics of the set being evaluated:
``derivations/batchnorm.md`` (B1)-(B9).

``BatchNorm2d(channels, eps=1e-5)`` is PyTorch's ``nn.BatchNorm2d(channels, eps,
track_running_stats=False)`` on ``a (T, n, C, H, W)``; ``BatchNorm1d(features, eps=1e-5)`` is
``nn.BatchNorm1d`` on ``a (T, n, C)`` or ``(T, n, C, L)``. Per task and channel, over the ``m``
values of the set's examples and positions (B1):
``mu = mean(a)``, ``sigma^2 = mean((a - mu)^2)`` (biased), ``s = (sigma^2 + eps)^(-1/2)``,
``x̂ = (a - mu) s``, ``b = gamma x̂ + beta``; weight ``gamma`` (PyTorch's initialisation: ones),
then bias ``beta`` (zeros). The statistics couple the examples of a set (B6): every rule below
runs over the whole set at once. With ``P(u) = u - mean(u) - x̂ mean(x̂ u)`` (B2):

* vector-Jacobian product (B3): ``delta_a = s P(gamma delta)``, ``grad gamma = sum delta x̂``,
  ``grad beta = sum delta``;
* Jacobian-vector product (B4): ``x̂_dot = s P(a_dot)``, ``b_dot = gamma x̂_dot + gamma_dot x̂ + beta_dot``;
* R-backward (B5), with ``g = gamma delta`` and ``kappa = mean(x̂ a_dot)``:
  ``R{delta_a} = s P(gamma R{delta} + gamma_dot delta) - s^2 kappa P(g)
  - s (x̂_dot mean(x̂ g) + x̂ mean(x̂_dot g))``,
  ``R{grad gamma} = sum (R{delta} x̂ + delta x̂_dot)``, ``R{grad beta} = sum R{delta}``.
"""

import numpy as np

from ... import _validate
from ..._xp import array_namespace


def _mean(xp, u, axes):
    return xp.mean(u, axis=axes, keepdims=True)


def _sum(xp, u, axes):
    return xp.sum(u, axis=axes, keepdims=True)


def project(x_hat, u, axes):
    """``P(u) = u - mean(u) - x̂ mean(x̂ u)`` (B2), means over ``axes`` (the examples and positions
    of each channel); a fresh array. The layer's rules apply it written out, with the means as
    per-channel factors times sums they need anyway (:meth:`BatchNorm.vjp`)."""
    xp = array_namespace(u)
    return u - _mean(xp, u, axes) - x_hat * _mean(xp, x_hat * u, axes)


class BatchNorm:
    """What :class:`BatchNorm2d` and :class:`BatchNorm1d` share; ``ranks`` are the numbers of axes of
    one example's input that the layer takes."""

    equations = ("batchnorm.md (B1)", "batchnorm.md (B3)")  # forward, backward: for walk-throughs

    ranks = ()
    expected = "(%d, ...)"

    def __init__(self, channels, eps=1e-5):
        self.channels = _validate.integer(channels, "channels", minimum=1)
        self.eps = _validate.positive(eps, "eps")
        self.param_shapes = ((self.channels,), (self.channels,))

    def __repr__(self):
        eps = "" if self.eps == 1e-5 else f", eps={self.eps!r}"
        return f"{type(self).__name__}({self.channels}{eps})"

    def spec(self):
        return {"layer": type(self).__name__, "channels": self.channels, "eps": self.eps}

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) not in self.ranks or input_shape[0] != self.channels:
            raise ValueError(f"{self!r} takes inputs of shape {self.expected % self.channels} per example; "
                             f"got {input_shape}")
        return input_shape

    def flops(self, n, input_shape):
        """No products beyond a few passes over the values (B9): counted as 0, as activations are."""
        return 0

    def init(self, rng):
        """PyTorch's initialisation: ``gamma = 1``, ``beta = 0`` (nothing is drawn)."""
        return np.concatenate([np.ones(self.channels), np.zeros(self.channels)])

    @staticmethod
    def _axes(a):
        """The examples' axis and the positions' axes of ``a (T, n, C, ...)``."""
        return (1,) + tuple(range(3, a.ndim))

    @staticmethod
    def _channel(p, a):
        """A per-channel parameter ``(C,)`` or ``(T, C)`` shaped to broadcast against ``a (T, n, C, ...)``."""
        return p[(..., None, slice(None)) + (None,) * (a.ndim - 3)]

    def forward(self, params, a):
        """``b = gamma x̂ + beta`` (B1); the context is ``(x̂, s)``, ``s (T, 1, C, 1...)``."""
        xp = array_namespace(a)
        axes = self._axes(a)
        x_hat = a - _mean(xp, a, axes)
        s = 1 / xp.sqrt(_mean(xp, x_hat * x_hat, axes) + self.eps)
        x_hat *= s
        gamma, beta = (self._channel(p, a) for p in params)
        b = gamma * x_hat
        b += beta
        return b, (x_hat, s)

    # The rules below are (B3)-(B5) with every mean over the set written out: P(u) is linear in u,
    # and for u = (per-channel factor) x (array), mean(u) and mean(x̂ u) are the factor times sums
    # the rule needs anyway (the gradients of gamma and beta among them). Each rule is then one
    # combination of its arrays with per-channel coefficients.

    @staticmethod
    def _per_channel(g, a):
        """A per-channel sum ``(T, 1, C, 1...)`` as ``(T, C)``."""
        return g[(slice(None), 0, slice(None)) + (0,) * (a.ndim - 3)]

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = s P(gamma delta)``, ``(sum delta x̂, sum delta)`` (B3)."""
        xp = array_namespace(a)
        x_hat, s = ctx
        axes = self._axes(a)
        sum_dx, sum_d = _sum(xp, delta * x_hat, axes), _sum(xp, delta, axes)
        grads = (self._per_channel(sum_dx, a), self._per_channel(sum_d, a))
        if not need_input:
            return None, grads
        # s P(gamma delta) = s gamma (delta - mean(delta) - x̂ mean(x̂ delta))
        scale = s * self._channel(params[0], a)
        m = x_hat.size // sum_d.size
        delta_a = scale * delta
        delta_a -= x_hat * (scale * sum_dx / m)
        delta_a -= scale * sum_d / m
        return delta_a, grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = gamma s P(a_dot) + gamma_dot x̂ + beta_dot`` (B4)."""
        x_hat, s = ctx
        gamma_dot, beta_dot = (self._channel(p, a) for p in p_dot)
        if a_dot is None:
            b_dot = gamma_dot * x_hat
            b_dot += beta_dot
            return b_dot
        # gamma s (a_dot - mean(a_dot) - x̂ kappa) + gamma_dot x̂ + beta_dot, kappa = mean(x̂ a_dot)
        xp = array_namespace(a)
        axes = self._axes(a)
        scale = self._channel(params[0], a) * s
        b_dot = scale * a_dot
        b_dot += x_hat * (gamma_dot - scale * _mean(xp, x_hat * a_dot, axes))
        b_dot += beta_dot - scale * _mean(xp, a_dot, axes)
        return b_dot

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """(B5); without ``second_order`` only ``s P(gamma R{delta})``, ``sum R{delta} x̂`` and
        ``sum R{delta}`` remain (H12)."""
        xp = array_namespace(a)
        x_hat, s = ctx
        axes = self._axes(a)
        curved = second_order and a_dot is not None
        sum_R, sum_XR = _sum(xp, R_delta, axes), _sum(xp, R_delta * x_hat, axes)
        m = x_hat.size // sum_R.size
        R_gamma = sum_XR
        if curved:
            # x̂_dot = s P(a_dot) = s (a_dot - mean(a_dot) - x̂ kappa), kappa = mean(x̂ a_dot)
            kappa = _mean(xp, x_hat * a_dot, axes)
            x_hat_dot = a_dot - _mean(xp, a_dot, axes)
            x_hat_dot -= x_hat * kappa
            x_hat_dot *= s
            sum_DXd = _sum(xp, delta * x_hat_dot, axes)
            R_gamma = R_gamma + sum_DXd
        grads = (self._per_channel(R_gamma, a), self._per_channel(sum_R, a))
        if not need_input:
            return None, grads
        # R{delta_a} = c_R R{delta} + c_D delta + c_X x̂ + c_Xd x̂_dot + c_0: (B5) with
        # u = gamma R{delta} + gamma_dot delta, g = gamma delta and the means of (B2) as sums
        gamma = self._channel(params[0], a)
        c_R = s * gamma
        mean_u, mean_xu = gamma * sum_R / m, gamma * sum_XR / m
        c_D = None
        if second_order:
            gamma_dot = self._channel(p_dot[0], a)
            sum_D, sum_XD = _sum(xp, delta, axes), _sum(xp, delta * x_hat, axes)
            mean_u = mean_u + gamma_dot * sum_D / m
            mean_xu = mean_xu + gamma_dot * sum_XD / m
            c_D = s * gamma_dot
        c_X, c_0 = -s * mean_xu, -s * mean_u
        if curved:
            k = s * s * kappa * gamma  # -s^2 kappa P(g) = -k (delta - mean(delta) - x̂ mean(x̂ delta))
            c_D = c_D - k
            c_0 = c_0 + k * sum_D / m
            c_X = c_X + (k * sum_XD - s * gamma * sum_DXd) / m
        R_delta *= c_R
        if c_D is not None:
            R_delta += c_D * delta
        R_delta += c_X * x_hat
        if curved:
            R_delta += (-s * gamma * sum_XD / m) * x_hat_dot
        R_delta += c_0
        return R_delta, grads


class BatchNorm2d(BatchNorm):
    """PyTorch's ``nn.BatchNorm2d(channels, eps, track_running_stats=False)``: inputs ``(C, H, W)``
    per example, statistics per channel over the set's examples and positions (B1)."""

    ranks = (3,)
    expected = "(%d, H, W)"


class BatchNorm1d(BatchNorm):
    """PyTorch's ``nn.BatchNorm1d(features, eps, track_running_stats=False)``: inputs ``(C,)`` or
    ``(C, L)`` per example, statistics per feature over the set's examples (and positions) (B8)."""

    ranks = (1, 2)

    def __init__(self, features, eps=1e-5):
        super().__init__(features, eps)

    def output_shape(self, input_shape):
        try:
            return super().output_shape(input_shape)
        except ValueError:
            raise ValueError(f"{self!r} takes inputs of shape ({self.channels},) or ({self.channels}, L) per "
                             f"example; got {tuple(input_shape)}") from None

    def spec(self):
        return {"layer": "BatchNorm1d", "features": self.channels, "eps": self.eps}
