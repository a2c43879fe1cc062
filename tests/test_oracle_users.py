"""MAML implementations for the oracle's third version, written apart from refmaml the way users write
them, and a few checks of the implementations themselves (the oracle's verdicts on them are in
``tests/test_oracle_conv.py``, ``tests/test_oracle_bugs.py`` and ``tests/test_oracle_verdicts.py``).

Nothing here calls refmaml's math: the networks are ``torch.nn`` modules (``nn.Conv2d``,
``nn.BatchNorm2d(C, track_running_stats=False)``, ``nn.MaxPool2d``, ``nn.Linear``, ...) built from a
small spec of their own, the flat ``theta`` is poured into them with
``torch.nn.utils.vector_to_parameters`` (PyTorch's ``parameters_to_vector`` order, the oracle's
documented convention), the inner loop runs through ``torch.func.functional_call`` with
``torch.autograd.grad(..., create_graph=True)`` per task, in float64. Each ``mistake`` is one bug as
users write it (see :class:`TorchUser`); ``jax_sinusoid`` is a JAX MAML of the MAML paper's
sinusoid network, with the same mistakes of shape and scale.

Every implementation has the signature ``refmaml.oracle.check`` calls:
``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps[, l2])`` returning ``(meta_loss, meta_grad[,
inner_lr_grad])``.
"""

import numpy as np
import pytest

# The networks as users write them: ("conv", in, out, kernel, padding), ("bn", C), ("relu",),
# ("tanh",), ("pool", kernel), ("flatten",), ("linear", in, out), ("dropout", p)
CONVNET = [("conv", 1, 4, 3, 1), ("bn", 4), ("relu",), ("pool", 2), ("conv", 4, 4, 3, 1), ("bn", 4), ("relu",),
           ("pool", 2), ("flatten",), ("linear", 16, 3)]           # refmaml's ConvNet(3, blocks=2, channels=4)
PLAIN = [("conv", 1, 4, 3, 1), ("relu",), ("pool", 2), ("conv", 4, 4, 3, 1), ("relu",), ("pool", 2), ("flatten",),
         ("linear", 16, 3)]                                          # the same without batch norm
SINUSOID = [("linear", 1, 40), ("relu",), ("linear", 40, 40), ("relu",), ("linear", 40, 1)]
TWO_OUTPUTS = [("linear", 2, 8), ("tanh",), ("linear", 8, 2)]


def refmaml_model(spec, loss="softmax", input_shape=(1, 8, 8)):
    """The refmaml model the oracle is asked to check against (the only use of refmaml here)."""
    from refmaml.models import ConvNet, Sequential
    from refmaml.models.layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh

    if spec is CONVNET:
        return ConvNet(3, blocks=2, channels=4, input_shape=(1, 8, 8))
    build = {"conv": lambda a: Conv2d(a[0], a[1], a[2], padding=a[3]), "bn": lambda a: BatchNorm2d(a[0]),
             "relu": lambda a: ReLU(), "tanh": lambda a: Tanh(), "pool": lambda a: MaxPool2d(a[0]),
             "flatten": lambda a: Flatten(), "linear": lambda a: Linear(a[0], a[1])}
    return Sequential([build[kind](a) for kind, *a in spec], loss=loss, input_shape=input_shape)


def _torch():
    import torch

    return torch, torch.nn, torch.nn.functional


def max_pool_no_second_order(torch, F, kernel):
    """A max-pool whose backward pass ``S^T delta`` is a constant for the second derivative: the
    rule that returns zero for its incoming gradient (and for its input), as cbfinn/maml's
    special_grads.py does for TensorFlow's MaxPoolGrad (derivations/oracle.md (O20))."""

    class Cut(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y, index = F.max_pool2d(x, kernel, return_indices=True)
            ctx.save_for_backward(index)
            ctx.shape = x.shape
            return y

        @staticmethod
        def backward(ctx, grad):
            index, = ctx.saved_tensors
            return F.max_unpool2d(grad.detach(), index, kernel, output_size=ctx.shape[-2:])

    class Pool(torch.nn.Module):
        def forward(self, x):
            return Cut.apply(x)

    return Pool()


def detached_batch_norm(torch, F, channels):
    """Batch norm with the batch's mean and variance detached (constants for every derivative)."""

    class BN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(channels, dtype=torch.float64))
            self.bias = torch.nn.Parameter(torch.zeros(channels, dtype=torch.float64))

        def forward(self, x):
            axes = (0, 2, 3) if x.ndim == 4 else (0,)
            mean = x.mean(axes).detach()
            var = x.var(axes, unbiased=False).detach()
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=1e-5)

    return BN()


class TorchUser:
    """MAML through an ``nn.Sequential`` built from ``spec`` (float64), the adapted parameters a dict
    run with ``torch.func.functional_call``. ``loss``: ``"softmax"`` (cross_entropy), ``"mse"``
    (mse_loss, the output squeezed when it has one column). ``adapt``: the layer indices the inner
    loop adapts (None: all; ``(-1,)``: ANIL). ``mistake``:

    * ``"first_order"``: ``create_graph=False``;
    * ``"bn_eval"``: ``nn.BatchNorm2d`` with running statistics (the default), ``net.eval()``;
    * ``"bn_detached"``: batch norm with the batch's mean and variance detached;
    * ``"pool_cut"``: a max-pool whose backward is a constant for the second derivative;
    * ``"no_bias"``: the inner loop adapts only parameters whose name has no ``bias``;
    * ``"bias_first"``: theta read (and the gradient returned) with each layer's bias before its weight;
    * ``"in_out"``: linear weights read (and returned) as ``(in, out)``;
    * ``"swapped"``: the sets unpacked as ``(theta, Xq, yq, Xs, ys)``;
    * ``"broadcast"``: a one-column output ``(n, 1)`` against targets ``(n,)`` in ``mse_loss``;
    * ``"half"``: ``0.5 * mse_loss``; ``"sum_outputs"``: squared errors summed over outputs;
    * ``"dropout"``: an ``nn.Dropout(0.2)`` before the last layer, left in training mode;
    * ``"noise"``: unseeded noise added to the meta-gradient (1e-6 of its size);
    * ``"clip"``: the meta-gradient clipped to norm 0.05 (``clip_grad_norm_`` style);
    * ``"per_layer"``: the meta-gradient returned as a list of per-parameter tensors;
    * ``"double_mean"``: the meta-loss divided by the number of tasks twice;
    * ``"writes_inputs"``: zeroes theta, the features and the rates in place after using them;
    * ``"bn_momentum"``: ``nn.BatchNorm2d(C, momentum=1.0)`` (running statistics), reset at each task,
      trained on the support set and put in ``eval()`` for the query;
    * ``"l2_norm"``: the ridge term ``l2/2 * ||phi||`` (a norm where its square belongs);
    * ``"smoothing"``: ``cross_entropy(..., label_smoothing=0.1)``.
    """

    def __init__(self, spec, loss="softmax", *, adapt=None, mistake=None):
        torch, nn, F = _torch()
        self.spec, self.loss, self.adapt, self.mistake = spec, loss, adapt, mistake
        mods = []
        for kind, *a in spec:
            if kind == "conv":
                mods.append(nn.Conv2d(a[0], a[1], a[2], padding=a[3], dtype=torch.float64))
            elif kind == "bn":
                if mistake == "bn_detached":
                    mods.append(detached_batch_norm(torch, F, a[0]))
                elif mistake == "bn_momentum":
                    mods.append(nn.BatchNorm2d(a[0], momentum=1.0, dtype=torch.float64))
                else:
                    mods.append(nn.BatchNorm2d(a[0], track_running_stats=mistake == "bn_eval", dtype=torch.float64))
            elif kind == "relu":
                mods.append(nn.ReLU())
            elif kind == "tanh":
                mods.append(nn.Tanh())
            elif kind == "pool":
                mods.append(max_pool_no_second_order(torch, F, a[0]) if mistake == "pool_cut" else nn.MaxPool2d(a[0]))
            elif kind == "flatten":
                mods.append(nn.Flatten())
            elif kind == "linear":
                if mistake == "dropout" and len(mods) == len(spec) - 1:
                    mods.append(nn.Dropout(0.2))
                mods.append(nn.Linear(a[0], a[1], dtype=torch.float64))
        self.net = nn.Sequential(*mods)
        if mistake == "bn_eval":
            self.net.eval()
        self.names = [k for k, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        layers = [int(k.split(".")[0]) for k in self.names]
        if adapt is None:
            self.adapted = set(self.names)
        else:
            count = len(self.net)
            chosen = {i % count for i in adapt}
            self.adapted = {k for k, i in zip(self.names, layers) if i in chosen}
        if mistake == "no_bias":
            self.adapted = {k for k in self.adapted if "bias" not in k}

    # --- theta <-> parameters -----------------------------------------------------------------
    def _order(self):
        """The user's flat layout: [(name, stored shape, transposed?)] in the order read."""
        torch, _, _ = _torch()
        by_layer = {}
        for k, shape in zip(self.names, self.shapes):
            by_layer.setdefault(k.split(".")[0], []).append((k, shape))
        out = []
        for _, params in by_layer.items():
            if self.mistake == "bias_first":
                params = params[::-1]
            for k, shape in params:
                transposed = self.mistake == "in_out" and len(shape) == 2
                out.append((k, torch.Size(shape[::-1]) if transposed else shape, transposed))
        return out

    def unpack(self, flat):
        """The parameters (a dict, PyTorch shapes) of the flat vector as this user reads it."""
        torch, _, _ = _torch()
        if self.mistake not in ("bias_first", "in_out"):
            from torch.nn.utils import vector_to_parameters

            vector_to_parameters(flat.detach(), self.net.parameters())
            params, start = {}, 0
            for k, p in self.net.named_parameters():
                params[k] = flat[start:start + p.numel()].view_as(p)
                start += p.numel()
            return params
        params, start = {}, 0
        for k, shape, transposed in self._order():
            size = int(np.prod(shape))
            block = flat[start:start + size].reshape(shape)
            params[k] = block.T if transposed else block
            start += size
        return params

    def pack(self, grads):
        """A dict of per-parameter gradients as the user's flat vector."""
        torch, _, _ = _torch()
        if self.mistake not in ("bias_first", "in_out"):
            from torch.nn.utils import parameters_to_vector

            return parameters_to_vector([grads[k] for k in self.names])
        return torch.cat([(grads[k].T if transposed else grads[k]).reshape(-1) for k, _, transposed in self._order()])

    # --- the loss --------------------------------------------------------------------------------
    def data_loss(self, params, X, y):
        torch, _, F = _torch()
        from torch.func import functional_call

        out = functional_call(self.net, params, (X,))
        if self.loss == "softmax":
            return F.cross_entropy(out, y, label_smoothing=0.1 if self.mistake == "smoothing" else 0.0)
        if out.shape[-1] == 1 and self.mistake != "broadcast":
            out = out[:, 0]
        if self.mistake == "half":
            return 0.5 * F.mse_loss(out, y)
        if self.mistake == "sum_outputs":
            return ((out - y) ** 2).sum(-1).mean()
        return F.mse_loss(out, y)

    def __call__(self, theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        torch, _, _ = _torch()
        if self.mistake == "swapped":
            Xs, ys, Xq, yq = Xq, yq, Xs, ys
        flat = torch.tensor(theta, requires_grad=True)
        rate_leaf = torch.tensor(np.asarray(inner_lr, dtype=np.float64), requires_grad=True)
        params = self.unpack(flat)
        if rate_leaf.ndim:
            rates = self.unpack(rate_leaf)
        else:
            rates = {k: rate_leaf for k in self.names}
        tensor = (lambda a: torch.tensor(a)) if self.mistake != "writes_inputs" else torch.from_numpy
        Xs_t, Xq_t = tensor(Xs), tensor(Xq)
        ys_t, yq_t = torch.tensor(ys), torch.tensor(yq)
        create_graph = self.mistake != "first_order"
        losses = []
        for t in range(Xs_t.shape[0]):
            phi = dict(params)
            if self.mistake == "bn_momentum":
                for mod in self.net:   # fresh buffers (the last task's query graph keeps the old ones)
                    if isinstance(mod, torch.nn.BatchNorm2d):
                        mod.running_mean = torch.zeros_like(mod.running_mean)
                        mod.running_var = torch.ones_like(mod.running_var)
                self.net.train()
            for _ in range(inner_steps):
                inner = self.data_loss(phi, Xs_t[t], ys_t[t])
                if l2 and self.mistake == "l2_norm":
                    inner = inner + l2 / 2 * torch.sqrt(sum(torch.sum(p ** 2) for p in phi.values()))
                elif l2:
                    inner = inner + l2 / 2 * sum(torch.sum(p ** 2) for p in phi.values())
                keys = [k for k in self.names if k in self.adapted]
                grads = torch.autograd.grad(inner, [phi[k] for k in keys], create_graph=create_graph)
                for k, g in zip(keys, grads):
                    phi[k] = phi[k] - rates[k] * g
            if self.mistake == "bn_momentum":
                self.net.eval()
            losses.append(self.data_loss(phi, Xq_t[t], yq_t[t]))
        meta = torch.stack(losses).mean()
        if self.mistake == "double_mean":
            meta = meta / Xs_t.shape[0]
        g_flat, g_rate = torch.autograd.grad(meta, [flat, rate_leaf], allow_unused=True)
        g_rate = torch.zeros_like(rate_leaf) if g_rate is None else g_rate
        g = g_flat.detach()   # in the user's own layout: the gradient with respect to their flat vector
        if self.mistake == "noise":
            g = g + 1e-6 * g.norm() * torch.randn_like(g)
        if self.mistake == "clip":
            g = g * min(1.0, 0.05 / float(g.norm()))
        if self.mistake == "writes_inputs":
            theta[...] = 0.0
            Xs[...] = 0.0
            if np.ndim(inner_lr):
                inner_lr[...] = 0.0
        out_grad = g.numpy()
        if self.mistake == "per_layer":
            grads = self.unpack(g)
            out_grad = [grads[k] for k in self.names]
        out = (meta.item(), out_grad)
        return out + (g_rate.detach().numpy(),) if np.ndim(inner_lr) else out


def jax_sinusoid(mistake=None):
    """The MAML paper's sinusoid network (1-40-40-1, ReLU) in JAX: parameters unpacked from the flat
    theta in PyTorch's layout by hand (weight (out, in), then bias), ``jax.grad`` through the unrolled
    loop, float64. ``mistake``: ``"broadcast"`` (the output kept as ``(n, 1)`` against ``(n,)``
    targets: NumPy broadcasting, no warning at all), ``"half"`` (``0.5 * mean``), ``"swapped"``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    sizes = [(40, 1), (40, 40), (1, 40)]

    def unpack(theta):
        out, start = [], 0
        for o, i in sizes:
            W = theta[start:start + o * i].reshape(o, i)
            start += o * i
            b = theta[start:start + o]
            start += o
            out.append((W, b))
        return out

    def predict(theta, X):
        h = X
        layers = unpack(theta)
        for W, b in layers[:-1]:
            h = jnp.maximum(h @ W.T + b, 0.0)
        W, b = layers[-1]
        return h @ W.T + b            # (n, 1)

    def loss(theta, X, y):
        out = predict(theta, X)
        if mistake != "broadcast":
            out = out[:, 0]
        err = jnp.mean((out - y) ** 2)
        return 0.5 * err if mistake == "half" else err

    def meta(theta, Xs, ys, Xq, yq, lr, K, l2):
        def task(Xs, ys, Xq, yq):
            phi = theta
            for _ in range(K):
                phi = phi - lr * jax.grad(lambda p: loss(p, Xs, ys) + l2 / 2 * jnp.sum(p ** 2))(phi)
            return loss(phi, Xq, yq)
        return jnp.mean(jax.vmap(task)(Xs, ys, Xq, yq))

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        if mistake == "swapped":
            Xs, ys, Xq, yq = Xq, yq, Xs, ys
        value, grad = jax.value_and_grad(meta)(jnp.asarray(theta), jnp.asarray(Xs), jnp.asarray(ys),
                                              jnp.asarray(Xq), jnp.asarray(yq), inner_lr, inner_steps, l2)
        return float(value), np.asarray(grad)

    return fn


# --- the implementations' own sanity ----------------------------------------------------------

def test_the_users_layout_is_pytorchs():
    """The users' flat order is torch's own (vector_to_parameters), and has refmaml's size."""
    torch, _, _ = _torch()
    user = TorchUser(CONVNET)
    assert sum(int(np.prod(s)) for s in user.shapes) == refmaml_model(CONVNET).size
    flat = torch.arange(float(refmaml_model(CONVNET).size), dtype=torch.float64)
    params = user.unpack(flat)
    assert torch.equal(user.pack(params), flat)


def test_the_users_other_layouts_round_trip():
    torch, _, _ = _torch()
    for mistake in ("bias_first", "in_out"):
        user = TorchUser(SINUSOID, "mse", mistake=mistake)
        flat = torch.arange(1761.0, dtype=torch.float64)
        assert torch.equal(user.pack(user.unpack(flat)), flat)
        assert not torch.equal(user.unpack(flat)["2.weight"], TorchUser(SINUSOID, "mse").unpack(flat)["2.weight"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")
