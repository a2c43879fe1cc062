"""Multilayer perceptrons (derivations/mlp.md): what ``test_models.py`` does not already check of
every MLP (its generic tests run on MLPs with one hidden layer, tanh and ReLU under each head, on
every backend): two hidden layers against the textbook network of ``reference.py``, the
Gauss-Newton split (N7), PyTorch as an independent referee, MAML and its family through a
network, the kinks, the equivalences with the linear models, and the refusals.

Tolerances: complex step 1e-12 relative (exact to rounding: every step of the network is analytic
on its branch), central differences 1e-6 (``eps^(2/3)`` of the function's scale, about 1e-10,
with room for K steps), PyTorch 1e-12 (the same float64 quantities by other sums).

ReLU's kinks (mlp.md (N8)): the ReLU instances keep every pre-activation, of the support and of the
query set, at least ``MARGIN`` away from 0 at every inner iterate, and central differences move none
by more than ``MARGIN / 10``; ``relu_margin`` and ``query_margin`` measure them and the instances are
drawn until they hold.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refmaml
from refmaml.models import MLP, linear, logistic

from . import reference as ref
from . import referees
from .conftest import BACKENDS

MARGIN = 1e-3
HEADS = [("mse", 2), ("logistic", 1), ("softmax", 3)]
CASES = [(act, head, out) for act in ("tanh", "relu") for head, out in HEADS]
IDS = [f"{a}-{h}" for a, h, _ in CASES]


def _targets(rng, head, shape, out):
    if head == "mse":
        return rng.standard_normal(shape + (out,))
    if head == "logistic":
        return rng.integers(0, 2, shape).astype(float)
    return rng.integers(0, out, shape)


def textbook_layers(model):
    """The MLP's layers as ``reference.network_forward`` describes them."""
    out = []
    for l, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        out += [("linear", fan_in, fan_out)] + ([(model.activation,)] if l < len(model.sizes) - 2 else [])
    return tuple(out)


def textbook_outputs(model, theta, X):
    """(N1) written from the definition with NumPy alone (complex theta allowed)."""
    return ref.network_forward(textbook_layers(model), theta, X)[0]


def textbook_loss(model, theta, X, y, l2=0.0):
    return ref.network_loss(textbook_layers(model), model.loss_name, theta, X, y, l2)


def preactivations(model, theta, X):
    """Every hidden pre-activation z_l (l < L) of every example, flattened."""
    h, out, offset = X, [], 0
    sizes = model.sizes
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[..., offset:offset + fan_out * fan_in].reshape(theta.shape[:-1] + (fan_out, fan_in))
        offset += fan_out * fan_in
        b = theta[..., offset:offset + fan_out]
        offset += fan_out
        z = h @ np.swapaxes(W, -1, -2) + b[..., None, :]
        if l < len(sizes) - 2:
            out.append(z.ravel())
            h = np.tanh(z) if model.activation == "tanh" else np.maximum(z, 0)
    return np.concatenate(out) if out else np.zeros(0)


def relu_margin(model, theta, Xs, ys, **inner):
    """``(smallest |z| over every iterate, largest change of a pre-activation per central-difference
    step)`` for a ReLU instance; tanh instances have no kinks (``(inf, 0)``)."""
    if model.activation != "relu":
        return np.inf, 0.0
    path = refmaml.adapt(theta, Xs, ys, model=model, return_trajectory=True, **inner) if inner \
        else np.asarray(theta)[None]
    smallest = min(np.min(np.abs(preactivations(model, path[k], Xs))) for k in range(path.shape[0]))
    step = np.cbrt(np.finfo(float).eps) * max(1.0, np.max(np.abs(path)))
    widest = step * (1 + np.max(np.abs(Xs)) + np.max(np.abs(path))) * max(model.sizes)
    return smallest, widest


def query_margin(model, theta, Xs, ys, Xq, **inner):
    """The smallest ``|z|`` of the query set's pre-activations at every iterate of the support set's
    inner loop (the query loss is taken at theta_K, and its central differences at every point
    between); ``inf`` for tanh."""
    if model.activation != "relu":
        return np.inf
    path = refmaml.adapt(theta, Xs, ys, model=model, return_trajectory=True, **inner) if inner \
        else np.asarray(theta)[None]
    return min(np.min(np.abs(preactivations(model, path[k], Xq))) for k in range(path.shape[0]))


def instance(act, head, out, seed, T=2, n=5, m=4, sizes=(3, 5, 4), **inner):
    """A model and a problem; ReLU ones drawn until the margin of the module docstring holds."""
    model = MLP(sizes + (out,), act, head)
    for attempt in range(200):
        rng = np.random.default_rng([seed, attempt])
        theta = model.init(int(rng.integers(2**31)))
        Xs, Xq = rng.standard_normal((T, n, sizes[0])), rng.standard_normal((T, m, sizes[0]))
        ys, yq = _targets(rng, head, (T, n), out), _targets(rng, head, (T, m), out)
        smallest, widest = relu_margin(model, theta, Xs, ys, **inner)
        q_small = query_margin(model, theta, Xs, ys, Xq, **inner)
        if min(smallest, q_small) >= MARGIN and widest <= MARGIN / 10:
            return model, theta, Xs, ys, Xq, yq
    raise AssertionError("no instance with the ReLU margin found")


# ------------------------------------------------------------------ the network's derivatives

@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_gradient_against_complex_step_of_the_textbook_loss(act, head, out, l2):
    """(N2), (N3) against Im L(theta + i h e_j) / h of the loss written from (N1) alone, through
    two hidden layers (``test_models.py`` runs one), and the loss itself to 1e-14 (a few ulps)."""
    model, theta, X, y, _, _ = instance(act, head, out, seed=1)
    for t in range(2):
        got = model.grad(theta, X[t], y[t], l2=l2)
        want = ref.complex_step_gradient(lambda th: textbook_loss(model, th, X[t], y[t], l2), theta)
        assert ref.rel_err(got, want) <= 1e-12
        assert abs(float(model.loss(theta, X[t], y[t], l2=l2)) - textbook_loss(model, theta, X[t], y[t], l2)) \
            <= 1e-14 * abs(textbook_loss(model, theta, X[t], y[t], l2))


@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
def test_hvp_against_complex_step_of_the_gradient(act, head, out):
    """(N4)-(N6): H v = d/dt grad(theta + t v) through two hidden layers (``test_models.py`` runs
    one, on every backend), a stack with shared and with per-task theta, to 1e-12."""
    model, theta, X, y, _, _ = instance(act, head, out, seed=3)
    rng = np.random.default_rng(1)
    for th in (theta, np.stack([theta, theta + 0.01 * rng.standard_normal(model.size)])):
        v = rng.standard_normal(th.shape)
        got = model.hvp(th, X, y, v, l2=0.2)
        want = ref.complex_step_directional(lambda t: model.grad(t, X, y, l2=0.2), th, v)
        assert got.shape == (2, model.size)
        assert ref.rel_err(got, want) <= 1e-12


def _jacobian(model, theta, X):
    """d outputs / d theta by the complex step through the textbook forward pass, (n q, P)."""
    P = model.size
    cols = [np.imag(textbook_outputs(model, theta + 1e-20j * np.eye(P)[j], X)).ravel() / 1e-20 for j in range(P)]
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
def test_gauss_newton_part_and_second_order_term(act, head, out):
    """(N7): hvp(second_order=False) is J^T W J v with J from the complex step; the rest, R[v], is the
    derivative along v of theta -> J(theta)^T r at the residuals r held fixed (H4)."""
    model, theta, X, y, _, _ = instance(act, head, out, seed=4)
    net, h = model.network, model.head
    v = np.random.default_rng(2).standard_normal(model.size)
    Xt, yt = X[:1], model.labels(refmaml._xp.NUMPY, "cpu", y[:1], X[:1], (model.size,), np.float64, "y")
    z, cache = net.forward(theta, Xt)
    r, c = h.residual(z, yt)
    hvp = model.grad_hvp(theta, Xt, yt, 0.0)[1]
    n = Xt.shape[1]
    gn = n * hvp(v, second_order=False)[0]
    J = _jacobian(model, theta, X[0])
    Wc = h.curvature_matrix(c)[0]                                  # (n, q, q)
    q = Wc.shape[-1]
    Jv = (J @ v).reshape(-1, q)
    want_gn = J.T @ np.einsum("nab,nb->na", Wc, Jv).ravel()
    assert ref.rel_err(gn, want_gn) <= 1e-12
    full = n * hvp(v)[0]

    def JTr(th):
        z_c, cache_c = net.forward(th, Xt.astype(complex))
        return net.vjp(cache_c, r.astype(complex))[0][0]

    want_R = np.imag(JTr(theta + 1e-20j * v)) / 1e-20
    assert ref.rel_err(full - gn, want_R, floor=1e-3 * ref.norm(full)) <= 1e-12
    if head != "mse" or act == "tanh":
        assert ref.norm(want_R) > 1e-3 * ref.norm(full)  # the second-order term is really there


@pytest.mark.parametrize("act, head, out", CASES[:3], ids=IDS[:3])
def test_explicit_hessian_is_symmetric_and_its_columns_are_hvps(act, head, out):
    model, theta, X, y, _, _ = instance(act, head, out, seed=5, sizes=(2, 3))
    H = model.hessian(theta, X, y, l2=0.1)
    assert H.shape == (2, model.size, model.size)
    assert ref.rel_err(H, np.swapaxes(H, -1, -2)) <= 1e-14
    e = np.eye(model.size)
    cols = np.stack([model.hvp(theta, X, y, np.broadcast_to(e[j], (2, model.size)), l2=0.1)
                     for j in range(model.size)], axis=-1)
    assert np.array_equal(H, cols)


# ------------------------------------------------------------------ MAML through a network

def _meta_cases():
    """NumPy at every K from 0 to 5 (no step, one factor, the recursion and its products); the
    other backends at K = 2, the shortest loop that runs the recursion (namespace, device and the
    same arithmetic there)."""
    out = [(BACKENDS["numpy"], case, K, f"numpy-{i}-K{K}") for case, i in zip(CASES, IDS) for K in range(6)]
    out += [(BACKENDS[b], case, 2, f"{b}-{i}-K2") for case, i in zip(CASES, IDS)
            for b in ("strict", "strict-device1", "cupy")]
    return [pytest.param(b, *case, K, id=name) for b, case, K, name in out]


@pytest.mark.parametrize("backend, act, head, out, K", _meta_cases(), indirect=["backend"])
def test_meta_gradient_against_complex_step(backend, act, head, out, K):
    """(M6) through the network: the complex step of the unrolled inner loop, K = 0..5, with l2."""
    inner = dict(inner_lr=0.2, inner_steps=K, l2=0.1)
    model, theta, Xs, ys, Xq, yq = instance(act, head, out, seed=10 + K, **inner)
    args = [backend.put(a) for a in (Xs, ys, Xq, yq)]
    loss, g = refmaml.meta_value_and_grad(backend.put(theta), *args, model=model, **inner)
    backend.assert_home(g)

    def unrolled(th):
        theta_K = refmaml.adapt(backend.put(th), args[0], args[1], model=model, **inner)
        return float(np.real(np.mean(backend.get(model.loss(theta_K, args[2], args[3]))))) if not np.iscomplexobj(th) \
            else np.mean(backend.get(model.loss(theta_K, args[2], args[3])))

    want = ref.complex_step_gradient(unrolled, theta)
    assert ref.rel_err(backend.get(g), want) <= 1e-12
    assert abs(float(backend.get(loss)) - unrolled(theta)) <= 1e-14 * abs(unrolled(theta))


@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["scalar", "per parameter", "per step"])
def test_rate_gradients_against_complex_step(act, head, out, kind):
    """(V3), (V4) through the network."""
    K = 3
    model, theta, Xs, ys, Xq, yq = instance(act, head, out, seed=20, inner_lr=0.2, inner_steps=K)
    rng = np.random.default_rng(3)
    rate = {"scalar": np.float64(0.2), "per parameter": rng.uniform(0.1, 0.3, model.size),
            "per step": rng.uniform(0.1, 0.3, (K, 1))}[kind]
    _, _, got = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rate, inner_steps=K, model=model,
                                            lr_grad=True)

    def f(a):
        return np.mean(model.loss(refmaml.adapt(theta, Xs, ys, inner_lr=a, inner_steps=K, model=model), Xq, yq))

    assert ref.rel_err(got, ref.complex_step_gradient(f, rate)) <= 1e-12


@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
def test_meta_gradient_against_central_differences(act, head, out):
    inner = dict(inner_lr=0.2, inner_steps=2, l2=0.1)
    model, theta, Xs, ys, Xq, yq = instance(act, head, out, seed=30, **inner)
    got = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model=model, **inner)[1]
    want = ref.central_gradient(
        lambda th: float(np.mean(model.loss(refmaml.adapt(th, Xs, ys, model=model, **inner), Xq, yq))), theta)
    assert ref.rel_err(got, want) <= 1e-6


def test_first_order_reptile_and_batches_through_a_network():
    inner = dict(inner_lr=0.2, inner_steps=3, l2=0.1)
    model, theta, Xs, ys, Xq, yq = instance("tanh", "mse", 2, seed=40, T=3, **inner)
    _, fo = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model=model, first_order=True, **inner)
    theta_K = refmaml.adapt(theta, Xs, ys, model=model, **inner)
    assert ref.rel_err(fo, np.mean(model.grad(theta_K, Xq, yq), axis=0)) <= 1e-14
    direction = refmaml.reptile_direction(theta, Xs, ys, model=model, **inner)
    assert ref.rel_err(direction, np.mean(theta - theta_K, axis=0)) <= 1e-14
    _, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model=model, **inner)
    singles = [refmaml.meta_value_and_grad(theta, Xs[t], ys[t], Xq[t], yq[t], model=model, **inner)[1]
               for t in range(3)]
    assert ref.rel_err(g, np.mean(singles, axis=0)) <= 1e-14


def test_dual_form_refuses_a_network_and_auto_takes_the_primal():
    model, theta, Xs, ys, Xq, yq = instance("tanh", "mse", 1, seed=41)
    with pytest.raises(ValueError, match="form='dual' needs a linear network"):
        refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.1, inner_steps=2, model=model, form="dual")
    a = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.1, inner_steps=2, model=model)
    b = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.1, inner_steps=2, model=model,
                                    form="primal")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_imaml_through_a_network():
    """(V11) by central differences where H_s + lam I is positive definite; a ConvergenceError naming
    the tasks where it is not (variants.md (V12))."""
    model, theta, Xs, ys, Xq, yq = instance("tanh", "mse", 1, seed=42)
    loss, g, info = refmaml.imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=20.0, model=model)
    want = ref.central_gradient(
        lambda th: float(refmaml.imaml_value_and_grad(th, Xs, ys, Xq, yq, lam=20.0, model=model)[0]), theta)
    assert ref.rel_err(g, want) <= 1e-6
    big = MLP((1, 20, 20, 1), "tanh", "mse")
    rng = np.random.default_rng(0)
    X = rng.uniform(-5, 5, (3, 10, 1))
    with pytest.raises(refmaml.ConvergenceError, match=r"not positive definite .* task\(s\) 0, 1, 2"):
        refmaml.imaml_value_and_grad(3 * big.init(0), X, 3 * np.sin(X), X, 3 * np.sin(X), lam=0.01, model=big)


# ------------------------------------------------------------------ PyTorch as a referee

def _torch():
    return pytest.importorskip("torch")


def _sequential(torch, model):
    layers = []
    for l, (a, b) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if l < len(model.sizes) - 2:
            layers.append(torch.nn.Tanh() if model.activation == "tanh" else torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _torch_loss(torch, model, out, y):
    F = torch.nn.functional
    if model.loss_name == "mse":
        return F.mse_loss(out, y)
    if model.loss_name == "logistic":
        return F.binary_cross_entropy_with_logits(out[:, 0], y)
    return F.cross_entropy(out, y)


@pytest.mark.parametrize("act, head, out", CASES, ids=IDS)
def test_pytorch_referee(act, head, out):
    """nn.Sequential loaded with vector_to_parameters, torch.func.functional_call in the inner loop,
    create_graph=True: loss, gradient, HVP and the meta-gradient agree to 1e-12."""
    torch = _torch()
    from torch.func import functional_call
    inner = dict(inner_lr=0.2, inner_steps=3, l2=0.1)
    model, theta, Xs, ys, Xq, yq = instance(act, head, out, seed=50, **inner)
    net = _sequential(torch, model)
    torch.nn.utils.vector_to_parameters(torch.tensor(theta), net.parameters())
    names = [n for n, _ in net.named_parameters()]
    assert np.array_equal(torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy(), theta)
    X0, y0 = torch.tensor(Xs[0]), torch.tensor(ys[0])
    assert abs(_torch_loss(torch, model, net(X0), y0).item() - float(model.loss(theta, Xs[0], ys[0]))) \
        <= 1e-14 * abs(float(model.loss(theta, Xs[0], ys[0])))

    def task_loss(flat, X, y, l2=0.0):
        loss = _torch_loss(torch, model, functional_call(net, referees.named_views(net, flat), (X,)), y)
        return loss + l2 / 2 * torch.sum(flat * flat)

    t = torch.tensor(theta, requires_grad=True)
    g, = torch.autograd.grad(task_loss(t, X0, y0, 0.1), t, create_graph=True)
    assert ref.rel_err(g.detach().numpy(), model.grad(theta, Xs[0], ys[0], l2=0.1)) <= 1e-12
    v = np.random.default_rng(4).standard_normal(model.size)
    Hv, = torch.autograd.grad(g, t, torch.tensor(v))
    assert ref.rel_err(Hv.numpy(), model.hvp(theta, Xs[0], ys[0], v, l2=0.1)) <= 1e-12
    meta = referees.torch_meta_loss(torch, task_loss, t, Xs, ys, Xq, yq, 0.2, 3, 0.1)
    want, = torch.autograd.grad(meta, t)
    loss, got = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model=model, **inner)
    assert ref.rel_err(got, want.numpy()) <= 1e-12
    assert abs(float(loss) - meta.item()) <= 1e-14 * meta.item()
    assert len(names) == 2 * (len(model.sizes) - 1)


# ------------------------------------------------------------------ the model object

def test_equivalences_with_the_linear_models():
    """MLP((d, 1), "logistic") is the logistic model on X with a column of ones; mse, linear regression."""
    rng = np.random.default_rng(6)
    X, theta = rng.standard_normal((3, 7, 4)), rng.standard_normal(5)
    X1 = np.concatenate([X, np.ones((3, 7, 1))], axis=-1)
    y01, yr = rng.integers(0, 2, (3, 7)).astype(float), rng.standard_normal((3, 7))
    for mlp, module, y in ((MLP((4, 1), loss="logistic"), logistic, y01), (MLP((4, 1), loss="mse"), linear, yr)):
        for name in ("loss", "grad", "hessian"):
            assert ref.rel_err(getattr(mlp, name)(theta, X, y, l2=0.2), getattr(module, name)(theta, X1, y, l2=0.2)) \
                <= 1e-14, (mlp, name)
        kw = dict(inner_lr=0.3, inner_steps=3, l2=0.1)
        a = refmaml.meta_value_and_grad(theta, X, y, X, y, model=mlp, **kw)
        b = refmaml.meta_value_and_grad(theta, X1, y, X1, y, model=module.MODEL.name, **kw)
        assert ref.rel_err(a[1], b[1]) <= 1e-13
    assert ref.rel_err(MLP((4, 1), loss="mse").predict(theta, X)[..., 0], linear.predict(theta, X1)) <= 1e-15
    assert ref.rel_err(MLP((4, 1), loss="logistic").predict(theta, X), logistic.predict(theta, X1)) <= 1e-15


def test_init_unflatten_and_pytorch_order():
    model = MLP((3, 4, 2), "relu", "softmax")
    assert model.size == 3 * 4 + 4 + 4 * 2 + 2
    theta = model.init(7)
    assert theta.dtype == np.float64 and theta.shape == (model.size,)
    assert np.array_equal(theta, model.init(7)) and not np.array_equal(theta, model.init(8))
    (W1, b1), (W2, b2) = model.unflatten(theta)
    assert W1.shape == (4, 3) and b1.shape == (4,) and W2.shape == (2, 4) and b2.shape == (2,)
    assert np.max(np.abs(np.concatenate([W1.ravel(), b1]))) <= 1 / np.sqrt(3)
    assert np.max(np.abs(np.concatenate([W2.ravel(), b2]))) <= 1 / np.sqrt(4)
    assert np.array_equal(np.concatenate([W1.ravel(), b1, W2.ravel(), b2]), theta)
    stacked = model.unflatten(np.stack([theta, 2 * theta]))
    assert stacked[0][0].shape == (2, 4, 3)
    big = MLP((1, 40, 40, 1), "relu", "mse").init(0)
    bounds = np.concatenate([np.full(80, 1.0), np.full(1640, 1 / np.sqrt(40)), np.full(41, 1 / np.sqrt(40))])
    assert np.all(np.abs(big) <= bounds) and np.std(big[:40]) > 0.5  # uniform in +-1 on the first layer
    torch = pytest.importorskip("torch")
    net = _sequential(torch, model)
    torch.nn.utils.vector_to_parameters(torch.tensor(theta), net.parameters())
    assert np.array_equal(net[0].weight.detach().numpy(), W1) and np.array_equal(net[2].bias.detach().numpy(), b2)


def test_predict_shapes():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((2, 5, 3))
    for sizes, loss, shape in (((3, 4, 2), "mse", (2, 5, 2)), ((3, 4, 1), "mse", (2, 5, 1)),
                               ((3, 4, 1), "logistic", (2, 5)), ((3, 4, 3), "softmax", (2, 5, 3))):
        m = MLP(sizes, "tanh", loss)
        assert m.predict(m.init(0), X).shape == shape
        assert m.predict(m.init(0), X[0]).shape == shape[1:]
    m = MLP((3, 4, 1), "tanh", "mse")
    y = rng.standard_normal((2, 5))
    assert float(m.loss(m.init(0), X, y)[0]) == float(m.loss(m.init(0), X, y[..., None])[0])


@pytest.mark.parametrize("args, exc, match", [
    (((3,),), ValueError, "at least two entries"),
    (((3, 0, 1),), ValueError, "positive integers"),
    (((3, 2.5, 1),), TypeError, "positive integers"),
    (((3, True, 1),), TypeError, "positive integers"),
    ((3,), TypeError, "sequence"),
    (((3, 1), "sigmoid"), ValueError, "activation"),
    (((3, 1), "tanh", "hinge"), ValueError, "loss"),
    (((3, 2), "tanh", "logistic"), ValueError, "logistic head takes one output"),
    (((3, 1), "tanh", "softmax"), ValueError, "softmax head needs at least 2"),
])
def test_bad_models_are_refused(args, exc, match):
    with pytest.raises(exc, match=match):
        MLP(*args)


def test_bad_inputs_name_the_argument():
    m = MLP((3, 4, 2), "tanh", "mse")
    X, y = np.ones((5, 3)), np.ones((5, 2))
    with pytest.raises(ValueError, match=r"theta has shape \(7,\) per task; .* expected \(26,\)"):
        m.loss(np.ones(7), X, y)
    with pytest.raises(ValueError, match="X has 4 features"):
        m.loss(m.init(0), np.ones((5, 4)), y)
    with pytest.raises(ValueError, match=r"y has shape \(5, 3\)"):
        m.loss(m.init(0), X, np.ones((5, 3)))
    with pytest.raises(TypeError, match="y has dtype bool"):
        m.loss(m.init(0), X, y > 0)
    c = MLP((3, 4, 3), "relu", "softmax")
    with pytest.raises(ValueError, match="y holds the label 3, but the MLP has 3 classes"):
        c.loss(c.init(0), X, np.full(5, 3))
    with pytest.raises(TypeError, match="y has dtype float64; softmax labels must be integers"):
        c.loss(c.init(0), X, np.zeros(5))
    b = MLP((3, 4, 1), "relu", "logistic")
    with pytest.raises(ValueError, match="y must hold only the labels 0 and 1"):
        b.loss(b.init(0), X, np.full(5, 2.0))
    with pytest.raises(ValueError, match="seed"):
        m.init(-1)


def test_explicit_hessian_beyond_one_gibibyte_is_refused():
    m = MLP((100, 120, 1), "tanh", "mse")  # 12,241 parameters: 1.1 GiB
    with pytest.raises(ValueError, match="use hvp"):
        m.hessian(np.zeros(m.size), np.ones((2, 100)), np.ones(2))


@given(st.sampled_from(CASES), st.integers(0, 2**16))
def test_float32_within_its_tolerance(case, seed):
    """float32 in, float32 out, within 1e-4 relative of float64 (a few thousand float32 eps: the
    network's K-step loop amplifies rounding)."""
    act, head, out = case
    inner = dict(inner_lr=0.2, inner_steps=2)
    model, theta, Xs, ys, Xq, yq = instance(act, head, out, seed=seed, **inner)
    f32 = [a.astype(np.float32) if a.dtype == np.float64 and not (head == "logistic" and a is ys) else a
           for a in (theta, Xs, ys, Xq, yq)]
    loss32, g32 = refmaml.meta_value_and_grad(*f32, model=model, **inner)
    loss64, g64 = refmaml.meta_value_and_grad(*(a.astype(np.float64) if a.dtype == np.float32 else a for a in f32),
                                              model=model, **inner)
    assert g32.dtype == np.float32
    assert ref.rel_err(g32, g64) <= 1e-4 and ref.rel_err(loss32, loss64) <= 1e-4
