"""Networks built from layers (``derivations/models.md`` (H8)-(H12)) and the written protocol.

The layers ``Scale`` and ``Sine`` below exist in this file only: nothing in refmaml registers
them, and a network built with them gets the loss, the gradient, the Hessian-vector product, the
MAML family and its spec from :class:`refmaml.models.Sequential` alone.

Tolerances: complex-step derivatives are exact to rounding, so analytic results agree with them
to 1e-12 relative (float64, moderate outputs); PyTorch computes the same float64 quantities by
another order of operations, also 1e-12.
"""

import numpy as np
import pytest

import refmaml
from refmaml.models import MLP, Sequential, from_spec, layers, networks, protocol
from refmaml.models import get as get_model

from . import reference as ref
from . import referees


class Scale:
    """``b = s * a + t`` per feature (parameters ``s (k,)``, ``t (k,)``): linear in ``a`` and in
    ``(s, t)`` separately, so ``A = diag(s)``, ``A_dot = diag(s_dot)``, ``B_dot^T delta = (delta a_dot, 0)``."""

    def __init__(self, features):
        self.features = features
        self.param_shapes = ((features,), (features,))

    def __repr__(self):
        return f"Scale({self.features})"

    def spec(self):
        return {"layer": "Scale", "features": self.features}

    def output_shape(self, input_shape):
        assert tuple(input_shape) == (self.features,)
        return (self.features,)

    def flops(self, n, input_shape):
        return 2 * n * self.features

    def init(self, rng):
        return np.concatenate([np.ones(self.features), np.zeros(self.features)])

    def forward(self, params, a):
        s, t = params
        return a * s[..., None, :] + t[..., None, :], None

    def vjp(self, params, a, ctx, delta, need_input):
        s, _ = params
        grads = ((delta * a).sum(axis=-2), delta.sum(axis=-2))
        return (delta * s[..., None, :] if need_input else None), grads

    def jvp(self, params, a, ctx, a_dot, p_dot):
        s, _ = params
        ds, dt = p_dot
        out = a * ds[..., None, :] + dt[..., None, :]
        return out if a_dot is None else out + a_dot * s[..., None, :]

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        s, _ = params
        gs = (R_delta * a).sum(axis=-2)
        if second_order and a_dot is not None:
            gs = gs + (delta * a_dot).sum(axis=-2)
        grads = (gs, R_delta.sum(axis=-2))
        if not need_input:
            return None, grads
        R_a = R_delta * s[..., None, :]
        if second_order:
            R_a = R_a + delta * p_dot[0][..., None, :]
        return R_a, grads


class Sine:
    """``b = sin(a)``: slope ``cos a``, curvature ``-sin a``."""

    param_shapes = ()

    def __repr__(self):
        return "Sine()"

    def spec(self):
        return {"layer": "Sine"}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, n, input_shape):
        return 0

    def init(self, rng):
        return np.empty(0)

    def forward(self, params, a):
        return np.sin(a), a

    def vjp(self, params, a, ctx, delta, need_input):
        return (delta * np.cos(a) if need_input else None), ()

    def jvp(self, params, a, ctx, a_dot, p_dot):
        return None if a_dot is None else np.cos(a) * a_dot

    def r_vjp(self, params, a, ctx, delta, a_dot, p_dot, R_delta, need_input, second_order):
        if not need_input:
            return None, ()
        out = R_delta * np.cos(a)
        if second_order and a_dot is not None:
            out = out - delta * np.sin(a) * a_dot
        return out, ()


HEADS = [("mse", 2), ("logistic", 1), ("softmax", 3)]


def network(head, out):
    return Sequential([layers.Linear(3, 4), Sine(), Scale(4), layers.Tanh(), layers.Linear(4, out)],
                      loss=head, input_shape=(3,))


def data(model, head, out, seed, T=2, n=5, m=4):
    rng = np.random.default_rng(seed)
    theta = model.init(seed) + 0.3 * rng.standard_normal(model.size)

    def targets(k):
        if head == "mse":
            return rng.standard_normal((T, k, out))
        return rng.integers(0, 2 if head == "logistic" else out, (T, k))

    return theta, rng.standard_normal((T, n, 3)), targets(n), rng.standard_normal((T, m, 3)), targets(m)


@pytest.mark.parametrize("head, out", HEADS)
def test_a_network_of_test_only_layers_against_complex_step(head, out):
    """(H8)-(H12): the gradient is the complex step of the loss, the HVP the complex step of the
    gradient along v, at 1e-12; the Gauss-Newton part is symmetric positive semi-definite."""
    model = network(head, out)
    theta, X, y, _, _ = data(model, head, out, seed=1)
    for t in range(X.shape[0]):
        g = model.grad(theta, X[t], y[t], l2=0.1)
        want = ref.complex_step_gradient(lambda th: model.loss(th, X[t], y[t], l2=0.1), theta)
        assert ref.rel_err(g, want) <= 1e-12
    v = np.random.default_rng(2).standard_normal(model.size)
    Hv = model.hvp(theta, X[0], y[0], v, l2=0.1)
    want = ref.complex_step_directional(lambda th: model.grad(th, X[0], y[0], l2=0.1), theta, v)
    assert ref.rel_err(Hv, want) <= 1e-12
    g, hvp = model.grad_hvp(theta, X, model.labels(refmaml._xp.NUMPY, "cpu", y, X, (model.size,), np.float64, "y"),
                            0.0)
    u = np.random.default_rng(3).standard_normal((2, model.size))
    w = np.broadcast_to(v, (2, model.size))
    gn_u, gn_w = hvp(u, second_order=False), hvp(w, second_order=False)
    assert np.allclose(np.sum(u * gn_w, axis=-1), np.sum(w * gn_u, axis=-1), rtol=1e-12, atol=0)
    assert np.all(np.sum(u * hvp(u, second_order=False), axis=-1) >= 0)


@pytest.mark.parametrize("head, out", HEADS)
def test_maml_through_test_only_layers_against_complex_step(head, out):
    """(M6), (V3): the meta-gradient and the rate gradient through K = 2 steps are the complex step
    of the unrolled meta-loss, at 1e-12."""
    model = network(head, out)
    theta, Xs, ys, Xq, yq = data(model, head, out, seed=4)
    inner = dict(inner_steps=2, model=model, l2=0.05)
    loss, g, g_lr = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.3, lr_grad=True, **inner)

    def meta(th, lr=0.3):
        return refmaml.meta_value_and_grad(th, Xs, ys, Xq, yq, inner_lr=lr, **inner)[0]

    assert ref.rel_err(g, ref.complex_step_gradient(meta, theta)) <= 1e-12
    want_lr = np.imag(meta(theta, 0.3 + 1e-20j)) / 1e-20
    assert ref.rel_err(g_lr, want_lr) <= 1e-12


def _torch_network(torch, head, out):
    class TorchScale(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.s = torch.nn.Parameter(torch.ones(k, dtype=torch.float64))
            self.t = torch.nn.Parameter(torch.zeros(k, dtype=torch.float64))

        def forward(self, a):
            return a * self.s + self.t

    class TorchSine(torch.nn.Module):
        def forward(self, a):
            return torch.sin(a)

    f64 = dict(dtype=torch.float64)
    return torch.nn.Sequential(torch.nn.Linear(3, 4, **f64), TorchSine(), TorchScale(4), torch.nn.Tanh(),
                               torch.nn.Linear(4, out, **f64))


@pytest.mark.parametrize("head, out", HEADS)
def test_pytorch_referee_for_test_only_layers(head, out):
    """The equivalent nn.Sequential loaded with vector_to_parameters, MAML written with
    torch.func.functional_call and create_graph=True: the meta-loss and meta-gradient agree to
    1e-12 (the parameter order is PyTorch's)."""
    torch = pytest.importorskip("torch")
    from torch.func import functional_call
    F = torch.nn.functional
    model = network(head, out)
    theta, Xs, ys, Xq, yq = data(model, head, out, seed=7)
    net = _torch_network(torch, head, out)
    torch.nn.utils.vector_to_parameters(torch.tensor(theta), net.parameters())

    def task_loss(flat, X, y, l2=0.0):
        z = functional_call(net, referees.named_views(net, flat), (X,))
        if head == "mse":
            loss = F.mse_loss(z, y)
        elif head == "logistic":
            loss = F.binary_cross_entropy_with_logits(z[:, 0], y.double())
        else:
            loss = F.cross_entropy(z, y)
        return loss + l2 / 2 * torch.sum(flat * flat)

    t = torch.tensor(theta, requires_grad=True)
    meta = referees.torch_meta_loss(torch, task_loss, t, Xs, ys, Xq, yq, 0.2, 3, 0.1)
    want, = torch.autograd.grad(meta, t)
    loss, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.2, inner_steps=3, model=model, l2=0.1)
    assert abs(float(loss) - meta.item()) <= 1e-12 * abs(meta.item())
    assert ref.rel_err(g, want.numpy()) <= 1e-12


def test_every_built_in_part_has_the_protocol_members():
    """protocol.py: the layers, the networks and the heads provide what the model composes."""
    for layer in (layers.Linear(2, 3), layers.Tanh(), layers.ReLU(), Scale(2), Sine()):
        assert isinstance(layer, protocol.Layer)
    for name in ("logistic", "softmax", "linear"):
        model = get_model(name)
        assert isinstance(model.network, protocol.Network) and isinstance(model.head, protocol.Head)
    model = MLP((2, 3, 2), "relu", "softmax")
    assert isinstance(model.network, protocol.Network) and isinstance(model.head, protocol.Head)
    assert not isinstance(object(), protocol.Layer)


@pytest.mark.parametrize("model", [network("softmax", 3), MLP((3, 4, 2), "relu", "mse"), get_model("softmax")],
                         ids=["test-layers", "mlp", "softmax"])
def test_results_are_fresh_and_caches_are_read_only(model):
    """protocol.py, ownership: every result may be updated in place by its caller (it shares no
    memory with theta, X or the cache), and no call writes into theta, X or a cache, so repeated
    products at one point give the same bits."""
    rng = np.random.default_rng(5)
    T, n = 2, 6
    d = 3
    theta = rng.standard_normal((T,) + ((d, 3) if model.param_ndim == 2 else (model.size,)))
    X = rng.standard_normal((T, n, d))
    outputs = model.network.outputs(tuple(theta.shape[1:]))
    y = rng.standard_normal((T, n) + tuple(outputs)) if not model.head.classification else \
        np.eye(outputs[-1])[rng.integers(0, outputs[-1], (T, n))]
    frozen = theta.copy(), X.copy()
    z, cache = model.network.forward(theta, X)
    g, hvp = model.grad_hvp(theta, X, y, 0.1)
    v = rng.standard_normal(theta.shape)
    first = hvp(v)
    for result in (g, first):
        assert not np.shares_memory(result, theta) and not np.shares_memory(result, X)
    first_copy = first.copy()
    first *= 0  # the caller owns it
    assert np.array_equal(hvp(v), first_copy) and np.array_equal(hvp(v), first_copy)
    assert np.array_equal(theta, frozen[0]) and np.array_equal(X, frozen[1])
    r, _ = model.head.residual(z, y)
    grad, adjoints = model.network.vjp(cache, r)
    again, _ = model.network.vjp(cache, r)
    assert np.array_equal(grad, again) and not np.shares_memory(grad, again)


def test_mlp_is_the_sequential_preset_to_the_bit():
    """MLP(sizes, act, loss) and Sequential([Linear, act, ..., Linear]) are one model: the same
    parameters, the same initialisation and the same bits in every result."""
    mlp = MLP((3, 5, 4, 2), "tanh", "softmax")
    seq = Sequential([layers.Linear(3, 5), layers.Tanh(), layers.Linear(5, 4), layers.Tanh(), layers.Linear(4, 2)],
                     loss="softmax", input_shape=(3,))
    assert mlp.size == seq.size and np.array_equal(mlp.init(3), seq.init(3))
    rng = np.random.default_rng(0)
    theta, X, y = mlp.init(1), rng.standard_normal((2, 6, 3)), rng.integers(0, 2, (2, 6))
    for a, b in zip(refmaml.meta_value_and_grad(theta, X, y, X, y, inner_lr=0.1, inner_steps=2, model=mlp),
                    refmaml.meta_value_and_grad(theta, X, y, X, y, inner_lr=0.1, inner_steps=2, model=seq)):
        assert np.array_equal(a, b)
    assert [tuple(w.shape) for w, _ in mlp.unflatten(theta)] == [(5, 3), (4, 5), (2, 4)]
    assert [len(p) for p in seq.unflatten(theta)] == [2, 0, 2, 0, 2]


def test_specs_rebuild_every_model_and_refuse_malformed_ones():
    """spec() is JSON-able and from_spec inverts it; a spec read from a file is checked field by
    field, and a layer kind of the caller's own is built only when named."""
    import json
    for model in (get_model("logistic"), get_model("linear"), MLP((2, 3, 1), "relu", "logistic"),
                  Sequential([layers.Linear(2, 3), layers.ReLU(), layers.Linear(3, 2)], loss="mse", input_shape=(2,))):
        assert from_spec(json.loads(json.dumps(model.spec()))) == model
    custom = network("mse", 2)
    with pytest.raises(ValueError, match="unknown layer kind 'Sine'"):
        from_spec(custom.spec())
    rebuilt = from_spec(custom.spec(), layers={"Sine": Sine, "Scale": Scale})
    assert rebuilt.spec() == custom.spec() and rebuilt.size == custom.size
    bad = [([], TypeError, "dict"), ({"model": "mlp", "sizes": [2, 1]}, ValueError, "lacks the fields"),
           ({"model": "logistic", "extra": 1}, ValueError, "unexpected fields 'extra'"),
           ({"model": "sequential", "layers": [{"layer": "Linear", "in_features": [1]}], "loss": "mse",
             "input_shape": [1]}, TypeError, "layer arguments"),
           ({"model": "sequential", "layers": [{"layer": "Linear", "bogus": 1}], "loss": "mse",
             "input_shape": [1]}, ValueError, "does not take"),
           ({"model": "nope"}, ValueError, "unknown model")]
    for spec, exc, match in bad:
        with pytest.raises(exc, match=match):
            from_spec(spec)


def test_mask_selects_the_named_layers_parameters():
    model = MLP((3, 4, 2), "tanh", "mse")
    head = model.mask(-1)
    assert head.dtype == bool and head.sum() == 4 * 2 + 2 and head[-10:].all() and not head[:-10].any()
    assert model.mask(0, 2).all() and not model.mask(1).any()
    with pytest.raises(ValueError, match="out of range"):
        model.mask(3)


def test_sequential_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="takes inputs of shape"):
        Sequential([layers.Linear(3, 2)], loss="mse", input_shape=(4,))
    with pytest.raises(ValueError, match="logistic head takes one output"):
        Sequential([layers.Linear(3, 2)], loss="logistic", input_shape=(3,))
    with pytest.raises(ValueError, match="no parameters"):
        Sequential([layers.Tanh()], loss="mse", input_shape=(3,))
    with pytest.raises(ValueError, match="empty"):
        Sequential([], loss="mse", input_shape=(3,))
    assert isinstance(networks.Linear(1), protocol.Network)
