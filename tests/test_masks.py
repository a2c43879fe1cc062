"""Meta-only parameters: ``inner_mask`` in every MAML-family function, ``derivations/maml.md`` (M10)
and ``derivations/variants.md`` (V15).

The complex step of the unrolled meta-loss is exact to rounding on the branch the real parts
choose (ReLU and max-pooling decide on the real part), so the meta-gradients are compared with it
at 1e-12 relative: about 2K + 1 chained gradient evaluations, each with rounding near 1e-16 times
the sums' terms. Implicit MAML solves its problems to ``tol ~ 1.8e-12`` and is compared with central
differences at 1e-6 (``derivations/variants.md`` (V14) bounds what the solves add).
"""

import numpy as np
import pytest

import refmaml
from refmaml.models import ConvNet, MLP, Sequential
from refmaml.models.layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh

H = 1e-30


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _image_problem(net, T=2, n=3, m=4, seed=0):
    rng = np.random.default_rng(seed)
    C = net.network.shapes[-1][0]
    Xs = rng.standard_normal((T, n) + net.input_shape)
    Xq = rng.standard_normal((T, m) + net.input_shape)
    return net.init(seed), Xs, rng.integers(0, C, (T, n)), Xq, rng.integers(0, C, (T, m))


CONV = ConvNet(3, blocks=1, channels=2, input_shape=(1, 4, 4))
BN_MLP = Sequential([Linear(3, 4), BatchNorm1d(4), Tanh(), Linear(4, 3)], loss="softmax", input_shape=(3,))
MASKS = {"all": None, "anil": -1, "batch-norm": 1}


def _mask(net, which):
    return None if MASKS[which] is None else net.mask(MASKS[which])


@pytest.mark.parametrize("net", [CONV, BN_MLP], ids=["convnet", "bn-mlp"])
@pytest.mark.parametrize("which", list(MASKS))
@pytest.mark.parametrize("rate", ["scalar", "per-parameter", "per-step"])
def test_masked_meta_gradient_against_complex_step(net, which, rate):
    """(M10): with a mask, the meta-gradient (every parameter, masked or not) and the rate gradient
    equal the complex step of the unrolled meta-loss, K = 2, l2 = 0.1 (1e-12, module docstring);
    ``first_order`` is the query gradient at the masked adaptation's ``theta_K``."""
    theta, Xs, ys, Xq, yq = _image_problem(net)
    rng = np.random.default_rng(1)
    K = 2
    alpha = {"scalar": 0.4, "per-parameter": 0.2 + 0.4 * rng.random(net.size),
             "per-step": 0.2 + 0.4 * rng.random((K, net.size))}[rate]
    kw = dict(inner_steps=K, model=net, l2=0.1, inner_mask=_mask(net, which))
    loss, g, g_rate = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, lr_grad=True, **kw)
    e = rng.standard_normal(net.size)
    cs = np.imag(refmaml.meta_value_and_grad(theta + 1j * H * e, Xs, ys, Xq, yq, inner_lr=alpha, **kw)[0]) / H
    assert abs(g @ e - cs) <= 1e-12 * np.linalg.norm(g) * np.linalg.norm(e)
    r = rng.standard_normal(np.shape(alpha))
    cs_rate = np.imag(refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha + 1j * H * r, **kw)[0]) / H
    assert abs(np.sum(g_rate * r) - cs_rate) <= 1e-12 * np.linalg.norm(g_rate) * np.linalg.norm(r)
    assert np.shape(g_rate) == np.shape(alpha)
    theta_K = refmaml.adapt(theta, Xs, ys, inner_lr=alpha, **kw)
    first = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, first_order=True, **kw)[1]
    assert rel(first, np.mean(net.grad(theta_K, Xq, yq), axis=0)) <= 1e-14


@pytest.mark.parametrize("case", ["logistic", "softmax", "mlp", "convnet"])
def test_mask_is_a_rate(case):
    """(M10): a mask is a rate of zero on the parameters it leaves out: every result equals that of
    the rates ``alpha * mask`` (the same arithmetic: to the bit, but for the rate gradient, which
    sums the same products over the masked parameters in another order, 1e-14); the unmasked
    parameters never move in the inner loop; Reptile's direction is zero there; a scalar rate's
    gradient is the per-parameter rate gradient summed over the masked parameters."""
    rng = np.random.default_rng(3)
    T, n, m = 3, 4, 5
    if case in ("logistic", "softmax"):
        model, d = case, 4
        theta = rng.standard_normal((d,) if case == "logistic" else (d, 3))
        Xs, Xq = rng.standard_normal((T, n, d)), rng.standard_normal((T, m, d))
        ys, yq = (rng.integers(0, 2, (T, k)) if case == "logistic" else rng.integers(0, 3, (T, k)) for k in (n, m))
        mask = rng.random(theta.shape) < 0.5
    else:
        model = MLP((3, 5, 2), "tanh", "softmax") if case == "mlp" else CONV
        theta, Xs, ys, Xq, yq = _image_problem(model) if case == "convnet" else (
            model.init(0), rng.standard_normal((T, n, 3)), rng.integers(0, 2, (T, n)),
            rng.standard_normal((T, m, 3)), rng.integers(0, 2, (T, m)))
        mask = model.mask(-1)
    alpha = 0.3
    kw = dict(inner_steps=3, model=model, l2=0.05)
    as_rate = alpha * mask.astype(float)
    masked = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_mask=mask, lr_grad=True, **kw)
    rated = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=as_rate, lr_grad=True, form="primal", **kw)
    np.testing.assert_array_equal(masked[0], rated[0])
    assert rel(masked[1], rated[1]) <= 1e-14
    assert abs(masked[2] - np.sum(rated[2] * mask)) <= 1e-14 * np.sum(np.abs(rated[2]))
    path = refmaml.adapt(theta, Xs, ys, inner_lr=alpha, inner_mask=mask, return_trajectory=True, **kw)
    np.testing.assert_array_equal(path[:, :, ~mask], np.broadcast_to(theta[~mask], path[:, :, ~mask].shape))
    assert np.all(np.any(path[-1][:, mask] != theta[mask], axis=0))
    direction = refmaml.reptile_direction(theta, Xs, ys, inner_lr=alpha, inner_mask=mask, **kw)
    np.testing.assert_array_equal(direction[~mask], 0.0)
    assert rel(direction, refmaml.reptile_direction(theta, Xs, ys, inner_lr=as_rate, **kw)) <= 1e-15
    everything = np.ones(mask.shape, dtype=bool)
    np.testing.assert_array_equal(
        refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_mask=everything, **kw)[1],
        refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha * np.ones(mask.shape), **kw)[1])


def test_masked_imaml_against_central_differences():
    """(V15): implicit MAML with a mask holds the unmasked parameters at theta and its meta-gradient
    (``lam w`` on the mask, ``q_U - (H w)_U`` off it) equals central differences of the meta-loss
    (1e-6: module docstring); the mask of every parameter gives the unmasked result."""
    rng = np.random.default_rng(4)
    T, n, m, d = 2, 6, 7, 5
    Xs, Xq = rng.standard_normal((T, n, d)), rng.standard_normal((T, m, d))
    ys, yq = rng.integers(0, 2, (T, n)), rng.integers(0, 2, (T, m))
    theta = 0.5 * rng.standard_normal(d)
    mask = np.array([True, False, True, True, False])
    kw = dict(lam=2.0, l2=0.1, inner_mask=mask)
    loss, g, info = refmaml.imaml_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
    np.testing.assert_array_equal(info["phi"][:, ~mask], np.broadcast_to(theta[~mask], (T, 2)))
    h = 1e-5
    fd = np.array([(refmaml.imaml_value_and_grad(theta + h * e, Xs, ys, Xq, yq, **kw)[0]
                    - refmaml.imaml_value_and_grad(theta - h * e, Xs, ys, Xq, yq, **kw)[0]) / (2 * h)
                   for e in np.eye(d)])
    assert rel(g, fd) <= 1e-6
    full = refmaml.imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=2.0, l2=0.1, inner_mask=np.ones(d, bool))[1]
    assert rel(full, refmaml.imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=2.0, l2=0.1)[1]) <= 1e-10


def test_inner_mask_is_checked():
    """A mask of the wrong shape, of numbers, or of another array library is refused, naming
    ``inner_mask`` and what was expected; a list of booleans is taken."""
    theta, Xs, ys, Xq, yq = _image_problem(CONV)
    kw = dict(inner_lr=0.1, inner_steps=1, model=CONV)
    with pytest.raises(ValueError, match=r"inner_mask has shape \(3,\); expected theta's shape \(51,\)"):
        refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_mask=np.ones(3, bool), **kw)
    with pytest.raises(TypeError, match="inner_mask has dtype float64; expected a boolean array"):
        refmaml.adapt(theta, Xs, ys, inner_mask=np.ones(CONV.size), **kw)
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="inner_mask is a array_api_strict array but the other arrays are numpy"):
        refmaml.reptile_direction(theta, Xs, ys, inner_mask=strict.asarray(CONV.mask(-1)), **kw)
    listed = refmaml.adapt(theta, Xs, ys, inner_mask=CONV.mask(-1).tolist(), **kw)
    np.testing.assert_array_equal(listed, refmaml.adapt(theta, Xs, ys, inner_mask=CONV.mask(-1), **kw))


@pytest.mark.parametrize("backend", [("strict", "device1")], indirect=True, ids=["strict-device1"])
def test_image_networks_on_every_backend(backend):
    """The layers use only what the array API shares: on array-api-strict's second device (which
    stands in for a GPU: any hidden transfer to the host fails there) the masked meta-gradient of
    a network with every layer kind is NumPy's, to 1e-14 (the same arithmetic), on that device."""
    net = Sequential([Conv2d(1, 2, 3, padding=1), BatchNorm2d(2), ReLU(), MaxPool2d(2, stride=1), Conv2d(2, 1, 2,
                      stride=2), Tanh(), Flatten(), Linear(4, 2), BatchNorm1d(2)], loss="softmax", input_shape=(1, 5, 5))
    theta, Xs, ys, Xq, yq = _image_problem(net)
    mask = net.mask(0, -1)
    kw = dict(inner_lr=0.3, inner_steps=2, model=net, inner_mask=mask, lr_grad=True)
    want = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
    put = backend.put
    got = refmaml.meta_value_and_grad(put(theta), put(Xs), put(ys), put(Xq), put(yq),
                                      **{**kw, "inner_mask": put(mask)})
    for a, b in zip(got, want, strict=True):
        assert rel(backend.get(a), b) <= 1e-14
    v = np.random.default_rng(0).standard_normal(net.size)
    assert rel(backend.get(net.hvp(put(theta), put(Xs), put(ys), put(v))), net.hvp(theta, Xs, ys, v)) <= 1e-14


def test_image_networks_in_float32():
    """float32 in, float32 out (theta and images): the masked meta-gradient of the ConvNet agrees
    with float64's to 1e-5 relative, about 100 times float32's eps (1.2e-7): rounding grows through
    2 inner steps and batch norm's 1/sqrt(var + eps); measured 2.5e-7."""
    theta, Xs, ys, Xq, yq = _image_problem(CONV)
    kw = dict(inner_lr=0.3, inner_steps=2, model=CONV, inner_mask=CONV.mask(-1))
    want = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)[1]
    got = refmaml.meta_value_and_grad(theta.astype(np.float32), Xs.astype(np.float32), ys, Xq.astype(np.float32), yq,
                                      **kw)[1]
    assert got.dtype == np.float32
    assert rel(got, want) <= 1e-5
