"""The seeded random problem every identity is checked on, on one backend and in one dtype."""

import numpy as np

from .. import adapt, imaml_value_and_grad, instances, meta_value_and_grad


class Instance:
    """One seeded random problem for one model, moved to a backend and dtype.

    ``theta``, ``u``, ``v`` have the model's parameter shape: ``(d,)`` for
    the logistic model, ``(d, C)`` for the softmax model.
    """

    def __init__(self, xp, device, dtype, seed, model, T=3, n=6, m=8, d=4, C=3, lam=None):
        rng = np.random.default_rng(seed)
        self.xp, self.device, self.dtype = xp, device, dtype
        self.model = model
        shape = self.model.parameter_shape(d, C)
        put = self.put
        self.theta = put(self.model.random_parameters(rng, shape, 0.5))
        d, outputs = self.model.dimensions(shape)
        example = tuple(d) if isinstance(d, tuple) else (d,)  # one example's input shape (images: (C, H, W))

        def targets(size):  # in the model's form (instances.targets)
            return instances.targets(rng, self.model, tuple(np.atleast_1d(size)), outputs)

        self.X = put(rng.standard_normal((n,) + example))
        self.y = put(targets(n))
        self.u = put(rng.standard_normal(shape))
        self.v = put(rng.standard_normal(shape))
        self.Xs = put(rng.standard_normal((T, n) + example))
        self.ys = put(targets((T, n)))
        self.Xq = put(rng.standard_normal((T, m) + example))
        self.yq = put(targets((T, m)))
        self.l2 = 0.1
        self.alpha = 0.4
        self.K = 3
        # a nonconvex support loss needs lam above -min eig H_s (V12)
        self.lam = lam if lam is not None else (1.0 if self.model.convex else 10.0)
        lead = (1,) * len(shape)
        self.rates = {  # inner_lr shapes of derivations/variants.md (V1)
            "scalar": put(np.float64(self.alpha)),
            "per parameter": put(self.alpha * (0.5 + rng.random(shape))),
            "per step": put(self.alpha * (0.5 + rng.random((self.K,) + lead))),
            "per step and parameter": put(self.alpha * (0.5 + rng.random((self.K,) + shape))),
        }

    def put(self, a):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(self.dtype)
        return self.xp.asarray(a, device=self.device)

    def inner(self, kw):
        """The instance's inner-loop settings, overridden by ``kw``."""
        return {"inner_lr": self.alpha, "inner_steps": self.K, "l2": self.l2, "model": self.model, **kw}

    def meta(self, **kw):
        args = self.inner(kw)
        return lambda t: meta_value_and_grad(t, self.Xs, self.ys, self.Xq, self.yq, **args)

    def adapt(self, t, **kw):
        return adapt(t, self.Xs, self.ys, **self.inner(kw))

    def unrolled_meta_loss(self, t, **kw):
        return self.xp.mean(self.model.loss(self.adapt(t, **kw), self.Xq, self.yq))

    def imaml(self, t, **kw):
        return imaml_value_and_grad(t, self.Xs, self.ys, self.Xq, self.yq, lam=self.lam, model=self.model,
                                    l2=self.l2, **kw)

    def loss(self, t, l2=None):
        return self.model.loss(t, self.X, self.y, l2=self.l2 if l2 is None else l2)

    def grad(self, t, l2=None):
        return self.model.grad(t, self.X, self.y, l2=self.l2 if l2 is None else l2)

    def hvp(self, t, v, l2=None):
        return self.model.hvp(t, self.X, self.y, v, l2=self.l2 if l2 is None else l2)

    def hessian(self, t, l2=None):
        return self.model.hessian(t, self.X, self.y, l2=self.l2 if l2 is None else l2)


def flat(xp, a, lead=()):
    return xp.reshape(a, lead + (-1,))
