"""The layers of image networks: convolution, max-pooling, batch norm, flatten.

``derivations/conv.md`` (C1)-(C14) and ``derivations/batchnorm.md`` (B1)-(B9). Every rule of every
layer is checked against the complex step of the rule below it (the forward pass for the
Jacobian-vector product, the vector-Jacobian product for the R-backward term), which is exact to
rounding: the tolerance is 1e-12 relative, a few hundred times float64's rounding of these
sums of at most a few hundred terms of like magnitude. The forward pass of the convolution is
checked against a direct sum and against SciPy's correlation, PyTorch's tie rule and
initialisation against PyTorch itself where it is installed (``tests/test_conv_referee.py``
compares whole networks and their meta-gradients with PyTorch).
"""

import math

import numpy as np
import pytest

from refmaml.models import ConvNet, Sequential
from refmaml.models.layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh
from refmaml.models.layers.batchnorm import project

H = 1e-30  # complex step
TOL = 1e-12  # see the module docstring


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


LAYERS = [
    (Conv2d(2, 3, 3), (2, 5, 6)),
    (Conv2d(2, 3, (2, 3), stride=2, padding=1), (2, 6, 7)),
    (Conv2d(1, 2, 3, stride=(1, 2), padding=(2, 0)), (1, 5, 6)),
    (MaxPool2d(2), (3, 4, 6)),
    (MaxPool2d(3, stride=1), (2, 5, 5)),
    (MaxPool2d((2, 3), stride=(2, 1)), (1, 5, 7)),
    (BatchNorm2d(3), (3, 4, 5)),
    (BatchNorm2d(2, eps=0.5), (2, 1, 3)),
    (BatchNorm1d(4), (4,)),
    (BatchNorm1d(3), (3, 5)),
    (Flatten(), (2, 3, 4)),
]
each_layer = pytest.mark.parametrize("layer, shape", LAYERS, ids=[f"{layer!r}-{shape}" for layer, shape in LAYERS])


def _params(layer, rng, T, per_task):
    lead = (T,) if per_task else ()
    return tuple(rng.standard_normal(lead + s) for s in layer.param_shapes)


def _problem(layer, shape, seed, per_task):
    rng = np.random.default_rng(seed)
    T, n = 2, 3
    a = rng.standard_normal((T, n) + shape)
    p = _params(layer, rng, T, per_task)
    p_dot = _params(layer, rng, T, per_task)
    a_dot = rng.standard_normal(a.shape)
    out = (T, n) + layer.output_shape(shape)
    return rng, a, p, a_dot, p_dot, rng.standard_normal(out), rng.standard_normal(out)


def _shift(p, p_dot, t):
    return tuple(x + t * dx for x, dx in zip(p, p_dot, strict=True))


def _task_sum(g, p):
    """A parameter gradient ``(T,) + shape`` summed over the tasks where the parameter is shared."""
    return g if g.ndim == p.ndim else g.sum(axis=0)


@each_layer
@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize("input_moves", [True, False])
def test_rules_against_complex_step(layer, shape, per_task, input_moves):
    """(C4)-(C7), (C10), (C11), (C13), (B2)-(B5): the Jacobian-vector product is the complex step of
    the forward pass; the vector-Jacobian product is its adjoint (``<delta, b_dot> = <delta_a,
    a_dot> + <grads, p_dot>``); the R-backward rule is the complex step of the vector-Jacobian
    product along the same direction with ``delta`` moving by ``R_delta``; without the second-order
    terms it is the vector-Jacobian product of ``R_delta`` (H12). 1e-12 (module docstring)."""
    rng, a, p, a_dot, p_dot, delta, R_delta = _problem(layer, shape, 7, per_task)
    if not input_moves:
        a_dot = None
    moved = a if a_dot is None else a + 1j * H * a_dot
    b, ctx = layer.forward(p, a)
    b_dot = layer.jvp(p, a, ctx, a_dot, p_dot)
    cs = np.imag(layer.forward(_shift(p, p_dot, 1j * H), moved)[0]) / H
    if b_dot is None:  # no parameters and an input that does not move
        assert not layer.param_shapes and a_dot is None
        return
    assert rel(b_dot, cs) <= TOL

    delta_a, grads = layer.vjp(p, a, ctx, delta, True)
    lhs = np.sum(delta * b_dot)
    rhs = sum(np.sum(_task_sum(g, q) * q_dot) for g, q, q_dot in zip(grads, p, p_dot, strict=True))
    terms = np.sum(np.abs(delta * b_dot))
    if a_dot is not None:
        rhs += np.sum(delta_a * a_dot)
    assert abs(lhs - rhs) <= TOL * terms

    def vjp_at(t):
        shifted = a if a_dot is None else a + t * a_dot
        params = _shift(p, p_dot, t)
        return layer.vjp(params, shifted, layer.forward(params, shifted)[1], delta + t * R_delta, True)

    cs_a, cs_grads = vjp_at(1j * H)
    R_a, R_grads = layer.r_vjp(p, a, ctx, delta, a_dot, p_dot, R_delta.copy(), True, True)
    assert rel(R_a, np.imag(cs_a) / H) <= TOL
    for got, want in zip(R_grads, cs_grads, strict=True):
        assert rel(got, np.imag(want) / H) <= TOL

    gn_a, gn_grads = layer.r_vjp(p, a, ctx, delta, a_dot, p_dot, R_delta.copy(), True, False)
    lin_a, lin_grads = layer.vjp(p, a, ctx, R_delta, True)
    assert rel(gn_a, lin_a) <= TOL
    for got, want in zip(gn_grads, lin_grads, strict=True):
        assert rel(got, want) <= TOL


def _direct_conv(W, c, a, stride, padding):
    """(C1) as a loop over outputs: ``b[o, y, x] = c_o + sum W[o, i, u, v] a_pad[i, s y + u, s x + v]``."""
    O, I, kh, kw = W.shape
    ap = np.pad(a, ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    Ho = (ap.shape[1] - kh) // stride[0] + 1
    Wo = (ap.shape[2] - kw) // stride[1] + 1
    out = np.empty((O, Ho, Wo))
    for o in range(O):
        for y in range(Ho):
            for x in range(Wo):
                patch = ap[:, y * stride[0]:y * stride[0] + kh, x * stride[1]:x * stride[1] + kw]
                out[o, y, x] = c[o] + np.sum(W[o] * patch)
    return out


@pytest.mark.parametrize("layer, shape", [entry for entry in LAYERS if isinstance(entry[0], Conv2d)])
def test_conv_forward_is_the_direct_sum(layer, shape):
    """(C1), (C2): the patch-matrix product equals the direct sum and SciPy's ``correlate2d`` summed
    over input channels (an independent referee), per example; 1e-13 relative: the same sums in
    another order."""
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    W, c = (rng.standard_normal(s) for s in layer.param_shapes)
    a = rng.standard_normal((1, 2) + shape)
    b, _ = layer.forward((W, c), a)
    for i in range(2):
        direct = _direct_conv(W, c, a[0, i], layer.stride, layer.padding)
        assert rel(b[0, i], direct) <= 1e-13
        ap = np.pad(a[0, i], ((0, 0),) + tuple((p, p) for p in layer.padding))
        full = np.stack([sum(signal.correlate2d(ap[j], W[o, j], mode="valid") for j in range(W.shape[1]))
                         for o in range(W.shape[0])])
        scipy_b = full[:, ::layer.stride[0], ::layer.stride[1]] + c[:, None, None]
        assert rel(b[0, i], scipy_b) <= 1e-13


def test_output_shapes_and_flops():
    """(C3): ``Ho = floor((H + 2p - kh)/s) + 1``, refused (ValueError naming the layer) below 1;
    (C14): a convolution's forward pass is ``2 n O I kh kw Ho Wo`` operations; (B9): batch norm
    counts none (no products), as activations."""
    conv = Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0))
    assert conv.output_shape((3, 7, 5)) == (4, (7 + 2 - 3) // 2 + 1, (5 - 2) // 1 + 1)
    assert conv.flops(10, (3, 7, 5)) == 2 * 10 * 4 * 3 * 3 * 2 * 4 * 4
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*smaller than the kernel"):
        conv.output_shape((3, 7, 1))
    with pytest.raises(ValueError, match=r"takes inputs of shape \(3, H, W\)"):
        conv.output_shape((2, 7, 5))
    assert MaxPool2d(2).output_shape((3, 5, 4)) == (3, 2, 2)
    assert MaxPool2d(3, stride=1).output_shape((1, 5, 4)) == (1, 3, 2)
    with pytest.raises(ValueError, match="smaller than the window"):
        MaxPool2d(3).output_shape((1, 2, 4))
    assert BatchNorm2d(3).flops(10, (3, 4, 4)) == 0
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) takes inputs of shape \(3, H, W\)"):
        BatchNorm2d(3).output_shape((3, 4))
    with pytest.raises(ValueError, match=r"\(3,\) or \(3, L\)"):
        BatchNorm1d(3).output_shape((3, 4, 4))
    assert Flatten().output_shape((2, 3, 4)) == (24,)
    for bad, error in (((0, 2, 3), ValueError), ((1, 2, 0), ValueError), ((1, 2, (3, 4, 5)), TypeError),
                       ((1, 2, 2.5), TypeError)):
        with pytest.raises(error):
            Conv2d(*bad)
    with pytest.raises(ValueError, match="eps"):
        BatchNorm2d(2, eps=0.0)


def test_init_matches_pytorch():
    """(C8): PyTorch's ``kaiming_uniform_(a=sqrt(5))`` bound ``gain sqrt(3 / fan_in)`` is
    ``1/sqrt(fan_in)``; the draws fill ``+-1/sqrt(fan_in)`` (the largest of 10,000 within 1% of it);
    batch norm starts at ``gamma = 1``, ``beta = 0`` as ``nn.BatchNorm2d``; ``Sequential.init``
    concatenates the layers in order."""
    conv = Conv2d(3, 5, (3, 2))
    fan_in = 3 * 3 * 2
    gain = math.sqrt(2 / (1 + 5))  # leaky_relu's gain at a = sqrt(5)
    assert math.isclose(gain * math.sqrt(3 / fan_in), 1 / math.sqrt(fan_in))
    draws = np.concatenate([conv.init(np.random.default_rng(s)) for s in range(100)])
    assert draws.size == 100 * 5 * (fan_in + 1)
    assert np.max(np.abs(draws)) <= 1 / math.sqrt(fan_in)
    assert np.max(np.abs(draws)) >= 0.99 / math.sqrt(fan_in)
    np.testing.assert_array_equal(BatchNorm2d(3).init(None), [1, 1, 1, 0, 0, 0])
    torch = pytest.importorskip("torch")
    assert math.isclose(torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5)), gain)
    module = torch.nn.BatchNorm2d(3)
    np.testing.assert_array_equal(np.concatenate([module.weight.detach().numpy(), module.bias.detach().numpy()]),
                                  BatchNorm2d(3).init(None))
    net = ConvNet(3, blocks=1, channels=2, input_shape=(1, 4, 4))
    torch_net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2),
                                    torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                    torch.nn.Linear(8, 3))
    assert net.size == sum(p.numel() for p in torch_net.parameters())
    assert [s for layer in net.unflatten(net.init(0)) for s in (x.shape for x in layer)] == \
        [tuple(p.shape) for p in torch_net.parameters()]


def test_maxpool_first_maximum_wins():
    """(C9): where entries of a window tie, the first in row-major order is chosen, as PyTorch
    (checked against ``max_pool2d``'s indices where PyTorch is installed): the gradient goes to it
    alone."""
    a = np.array([[[[1.0, 3.0, 2.0, 2.0],
                    [3.0, 0.0, 2.0, 2.0],
                    [5.0, 5.0, -1.0, 4.0],
                    [5.0, 5.0, 4.0, -1.0]]]])[None]  # (T=1, n=1, C=1, 4, 4)
    pool = MaxPool2d(2)
    b, ctx = pool.forward((), a)
    np.testing.assert_array_equal(b[0, 0, 0], [[3.0, 2.0], [5.0, 4.0]])
    delta_a, _ = pool.vjp((), a, ctx, np.ones_like(b), True)
    chosen = np.zeros((4, 4))
    chosen[0, 1] = chosen[0, 2] = chosen[2, 0] = chosen[2, 3] = 1.0
    np.testing.assert_array_equal(delta_a[0, 0, 0], chosen)
    torch = pytest.importorskip("torch")
    _, index = torch.nn.functional.max_pool2d(torch.tensor(a[0]), 2, return_indices=True)
    np.testing.assert_array_equal(np.flatnonzero(chosen), np.sort(index.numpy().ravel()))


def test_maxpool_kink_distance():
    """(C12): the gap between each window's two largest entries; a window whose largest entry is
    exactly 0 (all zeros below a ReLU) and a window of one entry have none (inf); a pool whose input
    does not depend on the parameters adds no kinks to a network."""
    a = np.array([[[[1.0, 0.5, 0.0, 0.0],
                    [0.25, 0.0, 0.0, 0.0],
                    [2.0, 2.0, 1.0, 3.5],
                    [0.0, 1.0, 3.0, 0.0]]]])[None]
    pool = MaxPool2d(2)
    _, ctx = pool.forward((), a)
    np.testing.assert_array_equal(pool.kink_distance(a, ctx)[0, 0, 0], [[0.5, np.inf], [0.0, 0.5]])
    one = MaxPool2d(1)
    assert np.all(np.isinf(one.kink_distance(a, one.forward((), a)[1])))
    first = Sequential([MaxPool2d(2), Flatten(), Linear(4, 1)], loss="mse", input_shape=(1, 4, 4))
    assert not first.kinks and first.network.kink_distances(first.network.forward(first.init(0)[None], a)[1]) == []
    later = Sequential([Conv2d(1, 1, 1), MaxPool2d(2), Flatten(), Linear(4, 1)], loss="mse", input_shape=(1, 4, 4))
    assert later.kinks


def test_batchnorm_couples_the_examples():
    """(B6): one example's output depends on the others' inputs through the set's statistics, so a
    set's gradient is not the mean of one-example gradients; statistics are per task (a stack of
    tasks equals each task alone, 1e-14: the same arithmetic), never shared across tasks."""
    rng = np.random.default_rng(5)
    bn = BatchNorm2d(2)
    p = (rng.standard_normal(2), rng.standard_normal(2))
    a = rng.standard_normal((2, 4, 2, 3, 3))
    b, ctx = bn.forward(p, a)
    moved = a.copy()
    moved[0, 1] += 1e-3  # example 1 of task 0 only
    b2, _ = bn.forward(p, moved)
    assert np.max(np.abs(b2[0, 0] - b[0, 0])) > 1e-5  # example 0 moved
    np.testing.assert_array_equal(b2[1], b[1])  # the other task did not
    for t in range(2):
        alone, _ = bn.forward(p, a[t:t + 1])
        assert rel(alone[0], b[t]) <= 1e-14
    net = Sequential([Conv2d(1, 2, 2), BatchNorm2d(2), Tanh(), Flatten(), Linear(8, 1)], loss="mse",
                     input_shape=(1, 3, 3))
    theta = net.init(1)
    X, y = rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    whole = net.grad(theta, X, y)
    one_at_a_time = np.mean([net.grad(theta, X[i:i + 1], y[i:i + 1]) for i in range(4)], axis=0)
    assert rel(one_at_a_time, whole) > 0.1


def test_batchnorm_zero_variance():
    """(B7): a set whose channel has variance 0 (one example with 1x1 maps, or a constant channel):
    ``x̂ = 0``, the output is ``beta``; with one value per channel the input's adjoint is exactly 0,
    with a constant channel of ``m > 1`` values it is ``eps^(-1/2) (g - mean g)``, ``g = gamma delta``;
    every rule stays finite and agrees with the complex step (1e-12)."""
    bn = BatchNorm2d(2)
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    a = np.array([3.0, -7.0]).reshape(1, 1, 2, 1, 1)
    b, ctx = bn.forward((gamma, beta), a)
    np.testing.assert_array_equal(b.ravel(), beta)
    delta_a, grads = bn.vjp((gamma, beta), a, ctx, np.ones_like(b), True)
    np.testing.assert_array_equal(delta_a, 0.0)
    np.testing.assert_array_equal(grads[0], [[0.0, 0.0]])
    const = np.full((1, 3, 2, 2, 2), 1.5)
    b, ctx = bn.forward((gamma, beta), const)
    np.testing.assert_array_equal(b, np.broadcast_to(beta[:, None, None], b.shape))
    delta = np.random.default_rng(0).standard_normal(b.shape)
    delta_a, _ = bn.vjp((gamma, beta), const, ctx, delta, True)
    g = gamma[:, None, None] * delta
    want = (g - g.mean(axis=(1, 3, 4), keepdims=True)) / math.sqrt(bn.eps)
    assert rel(delta_a, want) <= TOL
    net = Sequential([Linear(2, 3), BatchNorm1d(3), Tanh(), Linear(3, 1)], loss="mse", input_shape=(2,))
    theta, X, y = net.init(0), np.array([[0.5, -1.0]]), np.array([0.3])
    v = np.random.default_rng(1).standard_normal(net.size)
    cs = np.imag(net.grad(theta + 1j * H * v, X, y)) / H
    assert np.all(np.isfinite(net.hvp(theta, X, y, v)))
    assert rel(net.hvp(theta, X, y, v), cs) <= TOL


def test_batchnorm1d():
    """(B8): ``BatchNorm1d`` on ``(C,)`` is ``BatchNorm2d`` on ``(C, 1, 1)``, on ``(C, L)`` it is
    ``BatchNorm2d`` on ``(C, 1, L)``; the operator ``P`` of (B2) removes the mean and, for
    ``eps = 0``, the component along ``x̂`` (1e-14: the same sums)."""
    rng = np.random.default_rng(2)
    p = (rng.standard_normal(3), rng.standard_normal(3))
    for shape, as2d in (((3,), (3, 1, 1)), ((3, 4), (3, 1, 4))):
        a = rng.standard_normal((2, 5) + shape)
        b1, _ = BatchNorm1d(3).forward(p, a)
        b2, _ = BatchNorm2d(3).forward(p, a.reshape((2, 5) + as2d))
        assert rel(b1, b2.reshape(b1.shape)) <= 1e-14
    bn = BatchNorm2d(2, eps=1e-300)
    a = rng.standard_normal((1, 6, 2, 2, 2))
    x_hat, s = bn.forward((np.ones(2), np.zeros(2)), a)[1]
    u = rng.standard_normal(a.shape)
    Pu = project(x_hat, u, (1, 3, 4))
    assert np.max(np.abs(Pu.mean(axis=(1, 3, 4)))) <= 1e-14 * np.abs(u).max()
    assert np.max(np.abs((Pu * x_hat).mean(axis=(1, 3, 4)))) <= 1e-14 * np.abs(u).max()


def test_layers_refuse_what_does_not_fit():
    """A network whose layers do not fit each other is refused when it is built, naming the
    layer; so is an input of the wrong shape when it is called."""
    with pytest.raises(ValueError, match=r"Linear\(10, 2\) takes inputs of shape \(10,\)"):
        Sequential([Conv2d(1, 2, 3), Flatten(), Linear(10, 2)], loss="softmax", input_shape=(1, 5, 5))
    with pytest.raises(ValueError, match="add Flatten"):
        Sequential([Conv2d(1, 2, 3), ReLU()], loss="softmax", input_shape=(1, 5, 5))
    net = ConvNet(3, blocks=1, channels=2, input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"examples of shape \(1, 4, 5\).*inputs of shape \(1, 4, 4\)"):
        net.loss(net.init(0), np.zeros((2, 1, 4, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="4-D or 5-D"):
        net.loss(net.init(0), np.zeros((2, 16)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="at least 4"):
        ConvNet(3, blocks=2, input_shape=(1, 3, 8))


def test_worked_examples():
    """The worked examples of ``derivations/conv.md`` and ``derivations/batchnorm.md``, recomputed by
    the layers: the integers exactly, the decimals within half a unit of their last printed digit."""
    conv, pool = Conv2d(1, 1, 2), MaxPool2d(2, stride=1)
    a = np.array([[1, 1, 2, 1], [3, 0, 1, 3], [3, 1, 3, -1], [1, 0, 3, 1]], dtype=float).reshape(1, 1, 1, 4, 4)
    W, c = np.array([[1.0, 2.0], [0.0, -1.0]]).reshape(1, 1, 2, 2), np.array([1.0])
    b, A = conv.forward((W, c), a)
    np.testing.assert_array_equal(A[0, 0], [[1, 1, 2, 3, 0, 1, 3, 1, 3], [1, 2, 1, 0, 1, 3, 1, 3, -1],
                                            [3, 0, 1, 3, 1, 3, 1, 0, 3], [0, 1, 3, 1, 3, -1, 0, 3, 1]])
    np.testing.assert_array_equal(b[0, 0, 0], [[4, 5, 2], [3, 0, 9], [6, 5, 1]])
    out, S = pool.forward((), b)
    np.testing.assert_array_equal(out[0, 0, 0], [[5, 9], [6, 9]])
    np.testing.assert_array_equal(pool.kink_distance(b, S)[0, 0, 0], [[1, 4], [1, 4]])
    delta = np.array([[1.0, 2.0], [-1.0, 1.0]]).reshape(1, 1, 1, 2, 2)
    D, _ = pool.vjp((), b, S, delta, True)
    np.testing.assert_array_equal(D.ravel(), [0, 1, 0, 0, 0, 3, -1, 0, 0])
    delta_a, (gW, gc) = conv.vjp((W, c), a, A, D, True)
    np.testing.assert_array_equal(gW[0, 0, 0], [[1, 10], [8, -2]])
    np.testing.assert_array_equal(gc, [[3]])
    np.testing.assert_array_equal(delta_a[0, 0, 0], [[0, 1, 2, 0], [0, 0, 2, 6], [-1, -2, 0, -3], [0, 1, 0, 0]])
    V, e = np.array([[0.0, 1.0], [-1.0, 0.0]]).reshape(1, 1, 2, 2), np.array([0.5])
    a_dot = np.zeros_like(a)
    a_dot[..., 1, 2] = 1.0
    b_dot = conv.jvp((W, c), a, A, a_dot, (V, e))
    np.testing.assert_array_equal(b_dot[0, 0, 0], [[-1.5, 1.5, 0.5], [-2.5, 2.5, 1.5], [0.5, 3.5, -3.5]])
    pooled = pool.jvp((), b, S, b_dot, ())
    np.testing.assert_array_equal(pooled[0, 0, 0], [[1.5, 1.5], [0.5, 1.5]])
    assert np.sum(delta * pooled) == 5.5 == np.sum(gW * V) + gc[0, 0] * 0.5 + np.sum(delta_a * a_dot)

    params = (np.array([2.0]), np.array([0.5]))
    x = np.array([1.0, 2.0, 4.0]).reshape(1, 3, 1)
    one_hot = np.array([1.0, 0.0, 0.0]).reshape(1, 3, 1)
    for eps, printed in ((1e-300, dict(s=(0.801784, 6), x_hat=((-1.069045, -0.267261, 1.336306), 6),
                                       b=((-1.638090, -0.034522, 3.172612), 6),
                                       delta_a=((0.458162, -0.687243, 0.229081), 6), grad=(-1.069045, 6))),
                         (1e-5, dict(s=(0.8017811, 7), x_hat=((-1.0690415, -0.2672604, 1.3363019), 7),
                                     b=((-1.6380831, -0.0345208, 3.1726038), 7),
                                     delta_a=((0.4581646, -0.6872400, 0.2290754), 7), grad=(-1.0690415, 7)))):
        bn = BatchNorm1d(1, eps=eps)
        out, (x_hat, s) = bn.forward(params, x)
        delta_a, (g_gamma, g_beta) = bn.vjp(params, x, (x_hat, s), one_hot, True)
        for got, (want, digits) in ((s, printed["s"]), (x_hat, printed["x_hat"]), (out, printed["b"]),
                                    (delta_a, printed["delta_a"]), (g_gamma, printed["grad"])):
            assert np.max(np.abs(np.ravel(got) - np.ravel(want))) <= 0.5 * 10.0 ** -digits
        assert g_beta[0, 0] == 1.0
        assert abs(np.sum(delta_a)) <= 1e-15
    assert abs(np.sum(delta_a * x_hat) - (-1.102e-5)) <= 0.5e-8
    exact = np.array([12.0, -18.0, 6.0]) / (7 * math.sqrt(14))
    delta0 = BatchNorm1d(1, eps=1e-300).vjp(params, x, BatchNorm1d(1, eps=1e-300).forward(params, x)[1], one_hot,
                                            True)[0]
    assert rel(delta0.ravel(), exact) <= 1e-15
