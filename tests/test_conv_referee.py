"""An independent PyTorch referee for refmaml's convolutional and batch-norm networks.

The torch side is written the way a PyTorch user writes MAML, apart from refmaml's implementation:
the equivalent ``nn.Sequential`` (``nn.Conv2d``, ``nn.BatchNorm2d(C, track_running_stats=False)``,
``nn.MaxPool2d``, ...) run through ``torch.func.functional_call`` on a dict of parameters poured from
the flat ``theta`` in the order of ``parameters_to_vector``, the inner loop as
``torch.autograd.grad(..., create_graph=True)`` per task, and everything in float64 with explicit
``dtype=torch.float64`` (the global default dtype is never touched). Only refmaml's public API is
called (``Sequential``, ``ConvNet``, the layers, ``adapt``, ``meta_value_and_grad``,
``reptile_direction``).

Networks (small, so that the file runs in seconds):

* ``maml_block``: the MAML paper's block, Conv2d(1,3,3,padding=1), BatchNorm2d, ReLU, MaxPool2d(2),
  Flatten, Linear -> softmax, input (1, 8, 8);
* ``convnet``: the ``ConvNet`` preset (classes=3, blocks=2, channels=4), input (1, 8, 8);
* ``strided_tanh``: two convolutions (stride 2 with padding 0; kernel 2 with padding 1), Tanh, a 3x3
  max-pool with stride 2 (overlapping windows), mse head with 2 outputs, input (2, 13, 13);
* ``bn1d_mlp``: Linear, BatchNorm1d, ReLU, Linear -> logistic (one output), input (6,).

Tolerance: 1e-12 relative, ``||a - b|| / ||b||`` over the whole array, everywhere. Both sides are
exact to rounding in float64: every quantity is a finite composition of arithmetic, ``exp``, ``log``,
``tanh`` and ``sqrt`` (batch norm), evaluated at points where ReLU and max-pool are differentiable,
so the two sides differ only by the order of float64 roundings (about 1e-16 relative per
operation, amplified by the modest conditioning of these small nets). A real mismatch (a wrong
sign, a wrong statistic, a wrong index) is of order 1e-3 or more.

Kinks: ReLU and max-pool are not differentiable at ties, and there the two implementations could
differ legitimately. Every comparison therefore records, with forward pre-hooks on the torch side,
the ReLU pre-activations and max-pool windows of every forward pass (every inner iterate, support and
query) and asserts that each ReLU pre-activation is at least ``MARGIN`` (relative to the largest one
of that pass) from 0 and that in each max-pool window the top two values differ by at least
``MARGIN`` (relative to the largest input of that pass), except windows that are all exactly 0 after
a ReLU (all pre-activations negative: every entry's gradient is 0 whichever wins). A draw that lands
on a kink fails loudly. Margin 1e-6 is ten orders of magnitude above the rounding that could move a
value across.

Set ``REFMAML_CONV_REFEREE_ERRORS=path.json`` to write the largest relative error of each compared
quantity per network, and the smallest kink margins checked.
"""

import json
import math
import os

import numpy as np
import pytest

import refmaml

torch = pytest.importorskip("torch")

F = torch.nn.functional
nn = torch.nn
from torch.func import functional_call  # noqa: E402
from torch.nn.utils import parameters_to_vector, vector_to_parameters  # noqa: E402

DT = torch.float64
TOL = 1e-12     # relative; both sides exact to rounding in float64 (see the module docstring)
MARGIN = 1e-6   # relative distance from every kink (ReLU at 0, max-pool ties)
CAUGHT = 1e-3   # a bug must move the meta-gradient by at least this much (relative) to count as caught

# --- the networks: one spec, built twice (torch here, refmaml through its public layers) ---------

# ("conv", in, out, kernel, stride, padding), ("bn2d", C), ("bn1d", F), ("relu",), ("tanh",),
# ("pool", kernel, stride or None), ("flatten",), ("linear", in, out)
NETS = {
    "maml_block": dict(
        spec=[("conv", 1, 3, 3, 1, 1), ("bn2d", 3), ("relu",), ("pool", 2, None), ("flatten",),
              ("linear", 48, 5)],
        loss="softmax", input_shape=(1, 8, 8), outputs=5, lr=0.1, bn_layers=(1,)),
    "convnet": dict(
        preset=dict(classes=3, blocks=2, channels=4),
        spec=[("conv", 1, 4, 3, 1, 1), ("bn2d", 4), ("relu",), ("pool", 2, None),
              ("conv", 4, 4, 3, 1, 1), ("bn2d", 4), ("relu",), ("pool", 2, None), ("flatten",),
              ("linear", 16, 3)],
        loss="softmax", input_shape=(1, 8, 8), outputs=3, lr=0.1, bn_layers=(1, 5)),
    "strided_tanh": dict(
        spec=[("conv", 2, 3, 3, 2, 0), ("tanh",), ("conv", 3, 4, 2, 1, 1), ("tanh",), ("pool", 3, 2),
              ("flatten",), ("linear", 36, 2)],
        loss="mse", input_shape=(2, 13, 13), outputs=2, lr=0.2, bn_layers=()),
    "bn1d_mlp": dict(
        spec=[("linear", 6, 5), ("bn1d", 5), ("relu",), ("linear", 5, 1)],
        loss="logistic", input_shape=(6,), outputs=1, lr=0.2, bn_layers=(1,)),
}
NAMES = list(NETS)


def torch_sequential(spec, running_stats=False):
    """The ``nn.Sequential`` of ``spec`` in float64; batch norm without running statistics (it
    always normalises with the statistics of the batch it is given) unless ``running_stats``."""
    mods = []
    for kind, *a in spec:
        if kind == "conv":
            mods.append(nn.Conv2d(a[0], a[1], a[2], stride=a[3], padding=a[4], dtype=DT))
        elif kind == "bn2d":
            mods.append(nn.BatchNorm2d(a[0], track_running_stats=running_stats, dtype=DT))
        elif kind == "bn1d":
            mods.append(nn.BatchNorm1d(a[0], track_running_stats=running_stats, dtype=DT))
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "tanh":
            mods.append(nn.Tanh())
        elif kind == "pool":
            mods.append(nn.MaxPool2d(a[0], stride=a[1]))
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "linear":
            mods.append(nn.Linear(a[0], a[1], dtype=DT))
        else:
            raise ValueError(kind)
    return nn.Sequential(*mods)


def refmaml_model(name):
    """refmaml's model of ``NETS[name]``, through the public layers (or the ConvNet preset)."""
    from refmaml.models import Sequential
    from refmaml.models.layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh

    c = NETS[name]
    if "preset" in c:
        from refmaml.models import ConvNet

        return ConvNet(**c["preset"], input_shape=c["input_shape"])
    layers = []
    for kind, *a in c["spec"]:
        layers.append({
            "conv": lambda: Conv2d(a[0], a[1], a[2], stride=a[3], padding=a[4]),
            "bn2d": lambda: BatchNorm2d(a[0]), "bn1d": lambda: BatchNorm1d(a[0]),
            "relu": ReLU, "tanh": Tanh,
            "pool": lambda: MaxPool2d(a[0]) if a[1] is None else MaxPool2d(a[0], stride=a[1]),
            "flatten": Flatten, "linear": lambda: Linear(a[0], a[1]),
        }[kind]())
    return Sequential(layers, loss=c["loss"], input_shape=c["input_shape"])


def draw_theta(name, seed):
    """A flat theta in ``parameters_to_vector`` order, drawn with NumPy (not refmaml's init):
    conv/linear weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's default range), batch-norm
    gamma in 1 +- 0.3 and beta in +-0.3 (away from the default 1 and 0, so that their gradients are
    generic)."""
    rng = np.random.default_rng(seed)
    net = torch_sequential(NETS[name]["spec"])
    parts = []
    for mod in net:
        params = dict(mod.named_parameters(recurse=False))
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            parts += [1 + rng.uniform(-0.3, 0.3, params["weight"].numel()),
                      rng.uniform(-0.3, 0.3, params["bias"].numel())]
        elif params:
            bound = 1 / math.sqrt(params["weight"][0].numel())
            parts += [rng.uniform(-bound, bound, p.numel()) for p in params.values()]
    return np.concatenate(parts)


def draw_tasks(name, seed, T, n=4, m=6):
    """``Xs (T, n) + input_shape``, ``Xq (T, m) + input_shape`` standard normal; labels uniform
    (softmax: classes; logistic: 0./1. as float64; mse: standard normal targets ``(T, n, outputs)``)."""
    c = NETS[name]
    rng = np.random.default_rng(seed)
    Xs = rng.standard_normal((T, n) + c["input_shape"])
    Xq = rng.standard_normal((T, m) + c["input_shape"])

    def labels(k):
        if c["loss"] == "softmax":
            return rng.integers(0, c["outputs"], (T, k))
        if c["loss"] == "logistic":
            return rng.integers(0, 2, (T, k)).astype(np.float64)
        return rng.standard_normal((T, k, c["outputs"]))

    return Xs, labels(n), Xq, labels(m)


# --- kink margins -------------------------------------------------------------------------------

MARGINS = {"relu": math.inf, "pool": math.inf}   # the smallest margins any test checked


class KinkMargins:
    """Forward pre-hooks on every ``nn.ReLU`` and ``nn.MaxPool2d`` of ``net``: the smallest relative
    distance from a kink seen since the last ``reset`` (see the module docstring)."""

    def __init__(self, net):
        self.reset()
        self.hooked = 0
        for mod in net.modules():
            if isinstance(mod, nn.ReLU):
                mod.register_forward_pre_hook(self._relu)
                self.hooked += 1
            elif isinstance(mod, nn.MaxPool2d):
                mod.register_forward_pre_hook(self._pool)
                self.hooked += 1

    def reset(self):
        self.relu, self.pool, self.calls = math.inf, math.inf, 0

    def _relu(self, mod, inp):
        x = inp[0].detach()
        self.calls += 1
        scale = x.abs().max().item()
        if scale > 0:
            self.relu = min(self.relu, x.abs().min().item() / scale)

    def _pool(self, mod, inp):
        x = inp[0].detach()
        self.calls += 1
        n, C, H, W = x.shape
        win = F.unfold(x.reshape(n * C, 1, H, W), mod.kernel_size, stride=mod.stride)  # (nC, k*k, L)
        top = win.topk(2, dim=1).values
        gap = (top[:, 0] - top[:, 1])[~(win == 0).all(dim=1)]   # all-zero windows after a ReLU: harmless
        scale = x.abs().max().item()
        if gap.numel() and scale > 0:
            self.pool = min(self.pool, gap.min().item() / scale)

    def check(self):
        """Assert the margins, and that the hooks saw the passes (record the smallest that passed)."""
        assert self.calls or not self.hooked, "the kink hooks saw no forward pass"
        assert self.relu >= MARGIN, f"a ReLU pre-activation is {self.relu:.3g} (relative) from 0: draw another seed"
        assert self.pool >= MARGIN, f"a max-pool window's top two differ by {self.pool:.3g}: draw another seed"
        MARGINS["relu"], MARGINS["pool"] = min(MARGINS["relu"], self.relu), min(MARGINS["pool"], self.pool)
        return self.relu, self.pool


# --- the referee --------------------------------------------------------------------------------

def _t(a):
    a = np.asarray(a)
    return torch.tensor(a, dtype=torch.int64 if a.dtype.kind in "iu" else DT)


class Referee:
    """MAML through ``functional_call`` on the ``nn.Sequential`` of a spec. ``running_stats`` and
    ``eval_mode`` build the common bug (batch norm with running statistics, evaluated in eval mode)."""

    def __init__(self, name, running_stats=False, eval_mode=False):
        self.name, self.c = name, NETS[name]
        self.net = torch_sequential(self.c["spec"], running_stats)
        if eval_mode:
            self.net.eval()
        self.kinks = KinkMargins(self.net)
        self.size = sum(p.numel() for p in self.net.parameters())

    # the flat vector as the module's parameters, in named_parameters() order (that of
    # parameters_to_vector / vector_to_parameters: test_parameter_order_masks_and_init checks it)
    def split(self, flat):
        out, start = {}, 0
        for name, p in self.net.named_parameters():
            out[name] = flat[start:start + p.numel()].view_as(p)
            start += p.numel()
        assert start == flat.numel()
        return out

    def leaves(self, theta):
        vector_to_parameters(torch.tensor(theta, dtype=DT), self.net.parameters())
        return {k: v.detach().clone().requires_grad_(True) for k, v in self.net.named_parameters()}

    def head(self, out, y):
        if self.c["loss"] == "softmax":
            return F.cross_entropy(out, y)
        if self.c["loss"] == "logistic":
            return F.binary_cross_entropy_with_logits(out[:, 0], y)
        return F.mse_loss(out, y)

    def data_loss(self, params, X, y):
        return self.head(functional_call(self.net, params, (X,)), y)

    def support_loss(self, params, X, y, l2=0.0):
        loss = self.data_loss(params, X, y)
        return loss + l2 / 2 * sum(torch.sum(p ** 2) for p in params.values()) if l2 else loss

    # --- one task: loss, gradient, Hessian-vector product, predictions
    def loss_grad_hvp(self, theta, X, y, v, l2=0.0):
        flat = torch.tensor(theta, dtype=DT, requires_grad=True)
        loss = self.support_loss(self.split(flat), _t(X), _t(y), l2)
        g, = torch.autograd.grad(loss, flat, create_graph=True)
        hv, = torch.autograd.grad(g @ torch.tensor(v, dtype=DT), flat)   # double backward
        return loss.item(), g.detach().numpy(), hv.numpy()

    def predict(self, theta, X):
        with torch.no_grad():
            out = functional_call(self.net, self.split(torch.tensor(theta, dtype=DT)), (_t(X),))
        if self.c["loss"] == "softmax":
            return F.softmax(out, dim=-1).numpy()
        if self.c["loss"] == "logistic":
            return torch.sigmoid(out[:, 0]).numpy()
        return out.numpy()

    # --- MAML
    def maml(self, theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0, inner_mask=None,
             first_order=False):
        """Per task, ``inner_steps`` steps ``phi - (rate * mask) * grad`` of the support loss (its own
        batch-norm statistics at every step), then the query loss (the query set's statistics);
        mean over tasks. ``inner_lr``: a scalar, a ``(size,)`` array (per parameter) or ``(K, size)``
        (per step and parameter). Returns the meta-loss, the meta-gradient, the rate gradient (of
        ``inner_lr``'s shape) and the trajectory ``(K+1, T, size)``."""
        params = self.leaves(theta)
        rates = torch.tensor(np.asarray(inner_lr, dtype=np.float64), requires_grad=True)
        mask = None if inner_mask is None else torch.tensor(np.asarray(inner_mask), dtype=DT)
        Xs, ys, Xq, yq = map(_t, (Xs, ys, Xq, yq))
        losses, paths = [], []
        for t in range(Xs.shape[0]):
            phi, path = params, [parameters_to_vector(params.values()).detach()]
            for k in range(inner_steps):
                rate = rates[k] if rates.ndim == 2 else rates
                rate = rate * mask if mask is not None else rate
                lr = {key: rate for key in phi} if rate.ndim == 0 else self.split(rate)
                grads = torch.autograd.grad(self.support_loss(phi, Xs[t], ys[t], l2), list(phi.values()),
                                            create_graph=not first_order)
                phi = {key: p - lr[key] * g for (key, p), g in zip(phi.items(), grads)}
                path.append(parameters_to_vector(phi.values()).detach())
            losses.append(self.data_loss(phi, Xq[t], yq[t]))
            paths.append(torch.stack(path))
        meta = torch.stack(losses).mean()
        *g, g_lr = torch.autograd.grad(meta, list(params.values()) + [rates], allow_unused=True)
        g_lr = torch.zeros_like(rates) if g_lr is None else g_lr
        return dict(loss=meta.item(), grad=parameters_to_vector(g).numpy(), lr_grad=g_lr.numpy(),
                    trajectory=torch.stack(paths, dim=1).numpy())

    def maml_shared_statistics(self, theta, Xs, ys, Xq, yq, *, inner_lr):
        """The second common bug, K = 1: all tasks start from the same theta, so the support sets of
        all tasks are stacked into one forward pass (one batch-norm call, statistics shared across
        tasks); each task's loss is its slice, its step its own gradient; query per task."""
        params = self.leaves(theta)
        Xs, ys, Xq, yq = map(_t, (Xs, ys, Xq, yq))
        T, n = Xs.shape[:2]
        out = functional_call(self.net, params, (Xs.reshape((T * n,) + Xs.shape[2:]),))
        losses = []
        for t in range(T):
            grads = torch.autograd.grad(self.head(out[t * n:(t + 1) * n], ys[t]), list(params.values()),
                                        create_graph=True, retain_graph=True)
            phi = {key: p - inner_lr * g for (key, p), g in zip(params.items(), grads)}
            losses.append(self.data_loss(phi, Xq[t], yq[t]))
        meta = torch.stack(losses).mean()
        return meta.item(), parameters_to_vector(torch.autograd.grad(meta, list(params.values()))).numpy()

    def param_mask(self, *layer_indices):
        """True on the parameters of the named layers (indices into the nn.Sequential)."""
        idx = {i % len(self.net) for i in layer_indices}
        return np.concatenate([np.full(p.numel(), int(k.split(".")[0]) in idx)
                               for k, p in self.net.named_parameters()])


# --- comparison and the error record -------------------------------------------------------------

ERRORS = {}


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def agree(quantity, name, ours, torch_value, tol=TOL):
    """refmaml's ``ours`` against the referee's ``torch_value``; records the relative error."""
    err = rel(ours, torch_value)
    key = f"{quantity} [{name}]"
    ERRORS[key] = max(ERRORS.get(key, 0.0), err)
    assert err <= tol, f"{quantity} on {name}: relative error {err:.3e} > {tol:g}"
    return err


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_error_report():
    """torch on one thread for this module (restored after): these tensors are tiny, and on a
    loaded machine MKL's spinning threads made the file ten times slower; then the error report."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    path = os.environ.get("REFMAML_CONV_REFEREE_ERRORS")
    if path:
        with open(path, "w") as f:
            json.dump({"relative_errors": dict(sorted(ERRORS.items())), "smallest_kink_margins": MARGINS}, f, indent=1)


def _np(a):
    return np.asarray(a)   # refmaml answers NumPy inputs with NumPy arrays


# --- setup (seeds chosen so that every iterate keeps its distance from the kinks) ----------------

# Seeds scanned on the torch side over every configuration below (all K, T, rates, masks, l2):
# maml_block seeds 0, 4, 7 and convnet seeds 0, 1, 3 come within 1e-6 of a kink (a ReLU input or a
# max-pool tie), so they are not used; the chosen ones keep every margin above 8e-6.
SEED = {"maml_block": 1, "convnet": 4, "strided_tanh": 3, "bn1d_mlp": 3}


def instance(name, T=2, seed=None):
    seed = SEED[name] if seed is None else seed
    ref = Referee(name)
    theta = draw_theta(name, seed)
    Xs, ys, Xq, yq = draw_tasks(name, 100 + seed, T)
    return ref, refmaml_model(name), theta, (Xs, ys, Xq, yq)


def slow_unless(names):
    return [pytest.param(n, marks=[] if n in names else [pytest.mark.slow]) for n in NAMES]


# ================================================================================================
# the referee itself
# ================================================================================================

def test_kink_margins_see_ties():
    """The margin hooks are not vacuous: a ReLU input of exactly 0 and a max-pool window with a tied
    maximum give margin 0, an all-zero window after a ReLU is not counted (exact values: no tolerance)."""
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    kinks = KinkMargins(net)
    x = torch.tensor([[[[1.0, -2.0, -1.0, -3.0], [0.5, 0.25, -1.0, -0.5]]]], dtype=DT)
    net(x)
    assert kinks.relu == 0.25 / 3 and kinks.pool == 0.5   # the window [1, 0, .5, .25]: (1 - .5) / 1
    kinks.reset()
    net(torch.tensor([[[[1.0, 0.0], [-1.0, 2.0]]]], dtype=DT))
    assert kinks.relu == 0
    kinks.reset()
    net(torch.tensor([[[[2.0, 2.0], [-1.0, 1.0]]]], dtype=DT))
    assert kinks.pool == 0
    with pytest.raises(AssertionError, match="draw another seed"):
        kinks.check()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_order_masks_and_init(name):
    """The flat order: the referee's split is that of vector_to_parameters (exact); refmaml's size is
    the module's; net.mask(-1) and the batch-norm masks are the torch positions of those layers'
    parameters; net.init(seed) has gamma = 1 and beta = 0 at batch norm's torch positions and every
    conv/linear entry within PyTorch's default bound 1/sqrt(fan_in) (exact comparisons: no rounding)."""
    ref, model, _, _ = instance(name)
    flat = torch.arange(ref.size, dtype=DT)
    vector_to_parameters(flat, ref.net.parameters())
    for (key, p), view in zip(ref.net.named_parameters(), ref.split(flat).values()):
        assert torch.equal(p.detach(), view), key
    assert model.size == ref.size
    np.testing.assert_array_equal(_np(model.mask(-1)), ref.param_mask(-1))
    for i in NETS[name]["bn_layers"]:
        np.testing.assert_array_equal(_np(model.mask(i)), ref.param_mask(i))
    if NETS[name]["bn_layers"]:
        np.testing.assert_array_equal(_np(model.mask(*NETS[name]["bn_layers"])),
                                      ref.param_mask(*NETS[name]["bn_layers"]))
    theta = _np(model.init(0))
    assert theta.shape == (ref.size,) and theta.dtype == np.float64
    parts = ref.split(torch.tensor(theta))
    for key, p in parts.items():
        mod = ref.net[int(key.split(".")[0])]
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert torch.equal(p, torch.ones_like(p) if key.endswith("weight") else torch.zeros_like(p)), key
        else:
            bound = 1 / math.sqrt(mod.weight[0].numel())
            assert p.abs().max() <= bound, key
            if p.numel() >= 10:   # uniform in +-bound: all within bound/4 has probability 4**-numel
                assert p.abs().max() > bound / 4, key


# ================================================================================================
# loss, gradient, Hessian-vector product, predictions
# ================================================================================================

@pytest.mark.parametrize("l2", [0.0, 0.1])
@pytest.mark.parametrize("name", NAMES)
def test_loss_grad_hvp_predict(name, l2):
    """net.loss, net.grad, net.hvp (torch: double backward, the gradient of <grad, v>) and
    net.predict against torch, one task, a stack of tasks with a shared theta, and per-task thetas
    (T, size). 1e-12 relative: all are exact to rounding in float64 at kink-free points."""
    ref, model, theta, (Xs, ys, _, _) = instance(name, T=3)
    rng = np.random.default_rng(7)
    thetas = theta + 0.05 * rng.standard_normal((3, theta.size))
    v = rng.standard_normal((3, theta.size))   # one direction per task
    for t in range(3):
        for th in (theta, thetas[t]):
            loss, g, hv = ref.loss_grad_hvp(th, Xs[t], ys[t], v[t], l2)
            agree("loss", name, _np(model.loss(th, Xs[t], ys[t], l2=l2)), loss)
            agree("grad", name, _np(model.grad(th, Xs[t], ys[t], l2=l2)), g)
            agree("hvp", name, _np(model.hvp(th, Xs[t], ys[t], v[t], l2=l2)), hv)
            agree("predict", name, _np(model.predict(th, Xs[t])), ref.predict(th, Xs[t]))
    # stacked: shared theta, then per-task thetas
    for th in (theta, thetas):
        per = [ref.loss_grad_hvp(th if th.ndim == 1 else th[t], Xs[t], ys[t], v[t], l2) for t in range(3)]
        agree("loss_stacked", name, _np(model.loss(th, Xs, ys, l2=l2)), np.array([p[0] for p in per]))
        agree("grad_stacked", name, _np(model.grad(th, Xs, ys, l2=l2)), np.stack([p[1] for p in per]))
        agree("hvp_stacked", name, _np(model.hvp(th, Xs, ys, v, l2=l2)), np.stack([p[2] for p in per]))
        agree("predict_stacked", name, _np(model.predict(th, Xs)),
              np.stack([ref.predict(th if th.ndim == 1 else th[t], Xs[t]) for t in range(3)]))
    ref.kinks.check()


# ================================================================================================
# MAML: meta-loss and meta-gradient, first order, rates, masks, l2, adapt, Reptile
# ================================================================================================

def _meta_params():
    out = []
    for name in NAMES:
        for K, T in ((1, 2), (2, 3), (3, 2)):
            fast = name in ("maml_block", "bn1d_mlp") and K < 3
            out.append(pytest.param(name, K, T, marks=[] if fast else [pytest.mark.slow], id=f"{name}-K{K}-T{T}"))
    return out


@pytest.mark.parametrize("name, K, T", _meta_params())
def test_meta_loss_and_gradient(name, K, T):
    """meta_value_and_grad (exact, through the unrolled loop) against torch's create_graph=True loop:
    K = 1, 2, 3 inner steps, T = 2 or 3 tasks, batch-norm statistics per set and per task.
    1e-12 relative: exact to rounding in float64 at kink-free iterates (asserted)."""
    ref, model, theta, data = instance(name, T=T)
    lr = NETS[name]["lr"]
    want = ref.maml(theta, *data, inner_lr=lr, inner_steps=K)
    loss, grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=K, model=model)
    agree("meta_loss", name, _np(loss), want["loss"])
    agree("meta_grad", name, _np(grad), want["grad"])
    ref.kinks.check()


@pytest.mark.parametrize("name", slow_unless(("maml_block", "bn1d_mlp")))
def test_first_order(name):
    """first_order=True: the query gradient at theta_K (torch: create_graph=False, so the inner
    gradients are constants), and its rate gradient -sum_k <g_K, grad L_s(theta_k)> (torch: the
    rate stays in the graph of the update), K = 2, T = 3. 1e-12 relative: exact to rounding."""
    ref, model, theta, data = instance(name, T=3)
    lr = NETS[name]["lr"]
    want = ref.maml(theta, *data, inner_lr=lr, inner_steps=2, first_order=True)
    loss, grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=2, model=model,
                                             first_order=True)
    agree("fo_meta_loss", name, _np(loss), want["loss"])
    agree("fo_meta_grad", name, _np(grad), want["grad"])
    _, grad, lr_grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=2, model=model,
                                                   first_order=True, lr_grad=True)
    agree("fo_meta_grad", name, _np(grad), want["grad"])
    agree("fo_lr_grad_scalar", name, _np(lr_grad), want["lr_grad"])
    ref.kinks.check()


def _rates(kind, name, size, K):
    lr = NETS[name]["lr"]
    rng = np.random.default_rng(11)
    if kind == "scalar":
        return lr
    if kind == "per_parameter":
        return lr * rng.uniform(0.5, 1.5, size)
    return lr * rng.uniform(0.5, 1.5, (K, size))


@pytest.mark.parametrize("kind", ["scalar", "per_parameter", "per_step"])
@pytest.mark.parametrize("name", slow_unless(("maml_block", "bn1d_mlp")))
def test_rate_gradients(name, kind):
    """lr_grad=True with a scalar rate, one rate per parameter (Meta-SGD) and one per step and
    parameter (K, size): meta-gradient and the gradient with respect to the rates (torch: the
    rates a leaf tensor in the graph), K = 2, T = 2. 1e-12 relative: exact to rounding."""
    ref, model, theta, data = instance(name, T=2)
    rates = _rates(kind, name, ref.size, 2)
    want = ref.maml(theta, *data, inner_lr=rates, inner_steps=2)
    loss, grad, lr_grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=rates, inner_steps=2,
                                                      model=model, lr_grad=True)
    assert np.shape(_np(lr_grad)) == np.shape(rates)
    agree(f"meta_loss_{kind}_rates", name, _np(loss), want["loss"])
    agree(f"meta_grad_{kind}_rates", name, _np(grad), want["grad"])
    agree(f"lr_grad_{kind}", name, _np(lr_grad), want["lr_grad"])
    ref.kinks.check()


def _masks(name):
    out = [("anil", (-1,))]
    if NETS[name]["bn_layers"]:
        out.append(("batchnorm", NETS[name]["bn_layers"]))
    return out


@pytest.mark.parametrize("name", slow_unless(("maml_block", "bn1d_mlp")))
def test_inner_masks(name):
    """inner_mask = net.mask(-1) (ANIL) and the mask of the batch-norm layers' gamma and beta only:
    the meta-loss and meta-gradient (scalar rate), the rate gradient with per-parameter rates (the
    mask multiplies the rate elementwise; masked-out entries get 0), adapt's trajectory and
    reptile_direction, K = 2, T = 2. 1e-12 relative: exact to rounding."""
    ref, model, theta, data = instance(name, T=2)
    lr = NETS[name]["lr"]
    for label, layers in _masks(name):
        mask = _np(model.mask(*layers))
        np.testing.assert_array_equal(mask, ref.param_mask(*layers))
        want = ref.maml(theta, *data, inner_lr=lr, inner_steps=2, inner_mask=mask)
        loss, grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=2, model=model,
                                                 inner_mask=mask)
        agree(f"meta_loss_mask_{label}", name, _np(loss), want["loss"])
        agree(f"meta_grad_mask_{label}", name, _np(grad), want["grad"])
        rates = _rates("per_parameter", name, ref.size, 2)
        want_r = ref.maml(theta, *data, inner_lr=rates, inner_steps=2, inner_mask=mask)
        _, grad, lr_grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=rates, inner_steps=2,
                                                       model=model, inner_mask=mask, lr_grad=True)
        agree(f"meta_grad_mask_{label}_per_parameter", name, _np(grad), want_r["grad"])
        agree(f"lr_grad_mask_{label}_per_parameter", name, _np(lr_grad), want_r["lr_grad"])
        traj = refmaml.adapt(theta, data[0], data[1], inner_lr=lr, inner_steps=2, model=model,
                             inner_mask=mask, return_trajectory=True)
        agree(f"trajectory_mask_{label}", name, _np(traj), want["trajectory"])
        frozen = want["trajectory"][:, :, ~mask]
        assert np.array_equal(frozen, np.broadcast_to(theta[~mask], frozen.shape))
        direction = refmaml.reptile_direction(theta, data[0], data[1], inner_lr=lr, inner_steps=2,
                                              model=model, inner_mask=mask)
        agree(f"reptile_mask_{label}", name, _np(direction), theta - want["trajectory"][-1].mean(0))
    ref.kinks.check()


@pytest.mark.parametrize("name", slow_unless(("maml_block", "bn1d_mlp")))
def test_l2(name):
    """l2 = 0.05 on the support loss only ((l2/2)||phi||^2 at every inner step, never on the query
    loss): meta-loss, meta-gradient, rate gradient, adapt and reptile_direction, K = 2, T = 2.
    1e-12 relative: exact to rounding."""
    ref, model, theta, data = instance(name, T=2)
    lr, l2 = NETS[name]["lr"], 0.05
    want = ref.maml(theta, *data, inner_lr=lr, inner_steps=2, l2=l2)
    loss, grad, lr_grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=2, model=model,
                                                      l2=l2, lr_grad=True)
    agree("meta_loss_l2", name, _np(loss), want["loss"])
    agree("meta_grad_l2", name, _np(grad), want["grad"])
    agree("lr_grad_l2", name, _np(lr_grad), want["lr_grad"])
    agree("trajectory_l2", name, _np(refmaml.adapt(theta, data[0], data[1], inner_lr=lr, inner_steps=2,
                                                   model=model, l2=l2, return_trajectory=True)),
          want["trajectory"])
    agree("reptile_l2", name, _np(refmaml.reptile_direction(theta, data[0], data[1], inner_lr=lr, inner_steps=2,
                                                            model=model, l2=l2)),
          theta - want["trajectory"][-1].mean(0))
    ref.kinks.check()


@pytest.mark.parametrize("name", slow_unless(("maml_block", "bn1d_mlp")))
def test_adapt_and_reptile(name):
    """adapt: theta_K, and with return_trajectory every iterate (K+1, T, size), for a stack of tasks
    and for one task (no task axis); reptile_direction = mean over tasks of theta - theta_K;
    K = 3, T = 3. 1e-12 relative: exact to rounding."""
    ref, model, theta, data = instance(name, T=3)
    lr = NETS[name]["lr"]
    want = ref.maml(theta, *data, inner_lr=lr, inner_steps=3)["trajectory"]
    kw = dict(inner_lr=lr, inner_steps=3, model=model)
    agree("trajectory", name, _np(refmaml.adapt(theta, data[0], data[1], return_trajectory=True, **kw)), want)
    agree("adapt", name, _np(refmaml.adapt(theta, data[0], data[1], **kw)), want[-1])
    agree("adapt_one_task", name, _np(refmaml.adapt(theta, data[0][1], data[1][1], return_trajectory=True, **kw)),
          want[:, 1])
    agree("reptile", name, _np(refmaml.reptile_direction(theta, data[0], data[1], **kw)), theta - want[-1].mean(0))
    ref.kinks.check()


# ================================================================================================
# the referee would catch the common batch-norm bugs
# ================================================================================================

def test_running_statistics_in_eval_mode_would_be_caught():
    """The common bug: nn.BatchNorm2d with running statistics, evaluated in eval mode (it normalises
    with running_mean = 0, running_var = 1 instead of the set's statistics). Its meta-gradient is
    at least 1e-3 (relative) from refmaml's, while the correct referee agrees to 1e-12 (exact to
    rounding): the referee would catch it. Network maml_block, K = 2, T = 2."""
    ref, model, theta, data = instance("maml_block", T=2)
    _, grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=0.1, inner_steps=2, model=model)
    agree("meta_grad", "maml_block", _np(grad), ref.maml(theta, *data, inner_lr=0.1, inner_steps=2)["grad"])
    ref.kinks.check()
    bug = Referee("maml_block", running_stats=True, eval_mode=True)
    buggy = bug.maml(theta, *data, inner_lr=0.1, inner_steps=2)
    assert rel(buggy["grad"], _np(grad)) > CAUGHT


@pytest.mark.parametrize("name", ["maml_block", pytest.param("bn1d_mlp", marks=pytest.mark.slow)])
def test_statistics_shared_across_tasks_would_be_caught(name):
    """The other common bug: the support sets of all tasks stacked into one forward pass, so batch
    norm's statistics are shared across tasks (K = 1, T = 3). The meta-gradient is at least 1e-3
    (relative) from refmaml's, while the correct per-task referee agrees to 1e-12 (exact to
    rounding)."""
    ref, model, theta, data = instance(name, T=3)
    lr = NETS[name]["lr"]
    _, grad = refmaml.meta_value_and_grad(theta, *data, inner_lr=lr, inner_steps=1, model=model)
    agree("meta_grad", name, _np(grad), ref.maml(theta, *data, inner_lr=lr, inner_steps=1)["grad"])
    ref.kinks.check()
    _, buggy = ref.maml_shared_statistics(theta, *data, inner_lr=lr)
    assert rel(buggy, _np(grad)) > CAUGHT

