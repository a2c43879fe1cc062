"""Batch norm as two common mistakes compute it, as layers of the protocol
(``refmaml.models.protocol.Layer``), so that the oracle computes those mistakes' answers exactly
with refmaml's own passes: ``derivations/oracle.md`` (O16)-(O17).

:class:`FixedStatistics` normalises ``a (T, n, C, ...)`` per channel with statistics that the
derivatives treat as constants, ``x̂ = (a - mu) s``, ``b = gamma x̂ + beta``:

* ``mode="eval"``: ``mu = 0``, ``s = (1 + eps)^(-1/2)``, what ``model.eval()`` does with a fresh
  ``track_running_stats=True`` layer (running mean 0, running variance 1): batch norm as a fixed
  affine map (O16);
* ``mode="detached"``: ``mu`` and ``s`` the batch statistics of the set being evaluated, as in
  refmaml's ``BatchNorm2d`` (B1), but constants for every derivative (``mean.detach()``,
  ``var.detach()``): the forward pass is the truth's, the derivatives are (O17);
* ``mode="given"``: ``mu = mean`` and ``s = (var + eps)^(-1/2)`` given per channel (the statistics
  of another set, cached from an earlier pass): (O24).

With ``mu`` and ``s`` constant the layer is affine in ``a`` and bilinear in ``(gamma, a)``: its
rules are (B3)-(B5) without the projection ``P`` and without the terms that differentiate the
statistics:

* vector-Jacobian product: ``delta_a = s gamma delta``, ``grad gamma = sum delta x̂``,
  ``grad beta = sum delta``;
* Jacobian-vector product: ``b_dot = gamma s a_dot + gamma_dot x̂ + beta_dot``;
* R-backward: ``R{delta_a} = s (gamma R{delta} + gamma_dot delta)``,
  ``R{grad gamma} = sum (R{delta} x̂ + delta s a_dot)``, ``R{grad beta} = sum R{delta}``.
"""

import numpy as np
from array_api_compat import array_namespace

MODES = ("eval", "detached", "given")


def _axes(a):
    """The examples' axis and the positions' axes of ``a (T, n, C, ...)``."""
    return (1,) + tuple(range(3, a.ndim))


def _channel(p, a):
    """A per-channel parameter ``(C,)`` or ``(T, C)`` shaped to broadcast against ``a (T, n, C, ...)``."""
    return p[(..., None, slice(None)) + (None,) * (a.ndim - 3)]


class FixedStatistics:
    """Batch norm over ``channels`` with constant statistics (``mode``: ``"eval"`` or
    ``"detached"``), standing in for the batch-norm layer ``original`` (same parameters, same
    input shapes)."""

    param_shapes = ()

    def __init__(self, original, mode, mean=None, var=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.original, self.mode = original, mode
        self.mean, self.var = mean, var
        self.channels, self.eps = original.channels, original.eps
        self.param_shapes = tuple(original.param_shapes)

    def __repr__(self):
        return f"FixedStatistics({self.original!r}, {self.mode!r})"

    def spec(self):
        return {"layer": f"{self.original.spec()['layer']}-{self.mode}-statistics", "channels": self.channels,
                "eps": self.eps}

    def output_shape(self, input_shape):
        return self.original.output_shape(input_shape)

    def flops(self, n, input_shape):
        return 0

    def init(self, rng):
        return self.original.init(rng)

    def forward(self, params, a):
        """``b = gamma (a - mu) s + beta``; the context is ``(x̂, s)``."""
        xp = array_namespace(a)
        if self.mode == "eval":
            s = 1 / np.sqrt(1 + self.eps)
            x_hat = a * s
        elif self.mode == "given":
            s = _channel(1 / np.sqrt(np.asarray(self.var) + self.eps), a)
            x_hat = (a - _channel(np.asarray(self.mean), a)) * s
        else:
            axes = _axes(a)
            centred = a - xp.mean(a, axis=axes, keepdims=True)
            s = 1 / xp.sqrt(xp.mean(centred * centred, axis=axes, keepdims=True) + self.eps)
            x_hat = centred * s
        gamma, beta = (_channel(p, a) for p in params)
        return gamma * x_hat + beta, (x_hat, s)

    def vjp(self, params, a, ctx, delta, need_input):
        """``delta_a = s gamma delta``, ``(sum delta x̂, sum delta)``."""
        xp = array_namespace(a)
        x_hat, s = ctx
        axes = _axes(a)
        grads = (xp.sum(delta * x_hat, axis=axes), xp.sum(delta, axis=axes))
        return (s * _channel(params[0], a) * delta if need_input else None), grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        """``b_dot = gamma s a_dot + gamma_dot x̂ + beta_dot``."""
        x_hat, s = ctx
        gamma_dot, beta_dot = (_channel(p, a) for p in p_dot)
        b_dot = gamma_dot * x_hat + beta_dot
        if a_dot is not None:
            b_dot = b_dot + _channel(params[0], a) * s * a_dot
        return b_dot

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        """``R{delta_a} = s (gamma R{delta} + gamma_dot delta)``, ``R{grad gamma} = sum (R{delta} x̂
        + delta s a_dot)``, ``R{grad beta} = sum R{delta}``; without ``second_order`` the terms
        that ``delta`` weights are dropped (H12)."""
        xp = array_namespace(a)
        x_hat, s = ctx
        axes = _axes(a)
        R_gamma = R_delta * x_hat
        if second_order and a_dot is not None:
            R_gamma = R_gamma + delta * s * a_dot
        grads = (xp.sum(R_gamma, axis=axes), xp.sum(R_delta, axis=axes))
        if not need_input:
            return None, grads
        R_a = _channel(params[0], a) * R_delta
        if second_order:
            R_a = R_a + _channel(p_dot[0], a) * delta
        return s * R_a, grads
