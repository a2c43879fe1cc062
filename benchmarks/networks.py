"""Networks: refmaml's exact meta-gradient through an MLP against PyTorch and JAX, and meta-training.

In one process and on the same data, float64: refmaml (``model=MLP(...)``), PyTorch as users
write MAML for a network (a per-task loop over ``nn.Sequential`` through ``torch.func.functional_call``
with ``torch.autograd.grad(..., create_graph=True)``; ``torch.func`` with ``grad`` and ``vmap``)
and JAX (``jit`` + ``vmap``). Every peer's meta-gradient is compared with refmaml's before it is
timed. Then meta-training on the sinusoid: iterations per second of the whole loop (a batch drawn
on the host, the meta-gradient, an Adam step) for refmaml's ``train`` and the same loops in
PyTorch (``torch.optim.Adam``) and JAX (the meta-gradient and Adam in one jitted step).

    python benchmarks/networks.py [--min-time 0.3] [--keep-freed-blocks] [--out FILE.json]

(``benchmarks/bench.py`` runs the same after the logistic configurations.)

``--keep-freed-blocks`` raises glibc's mmap and trim thresholds first (``refmaml._malloc``, what
``refmaml demo`` and ``refmaml train`` do); the default keeps the C library's defaults.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refmaml  # noqa: E402
from refmaml import _malloc, tasks, train  # noqa: E402
from refmaml.models import MLP  # noqa: E402

from bench import machine, measure  # noqa: E402

ALPHA = 0.01
# (name, sizes, activation, head, T, n, m, K)
CONFIGS = [
    ("sinusoid", (1, 40, 40, 1), "relu", "mse", 25, 10, 10, 1),
    ("sinusoid", (1, 40, 40, 1), "relu", "mse", 25, 10, 10, 5),
    ("classifier", (784, 64, 64, 5), "relu", "softmax", 32, 5, 15, 5),
]


def problem(name, sizes, head, T, n, m, seed=0):
    """``theta`` (MLP.init) and tasks: sines for the sinusoid, Gaussian 784-feature images with
    5 balanced classes for the classifier."""
    rng = np.random.default_rng(seed)
    model_size = MLP(sizes, "relu", head).size
    theta = MLP(sizes, "relu", head).init(seed)
    assert theta.shape == (model_size,)
    if name == "sinusoid":
        b = tasks.family("sinusoid").sample(rng, T, n, m)
        return theta, b.Xs, b.ys[..., None], b.Xq, b.yq[..., None]
    C = sizes[-1]
    centres = rng.standard_normal((T, C, sizes[0]))
    ys, yq = np.tile(np.arange(C), (T, n // C)), np.tile(np.arange(C), (T, m // C))
    Xs = (np.take_along_axis(centres, ys[..., None], 1) + rng.standard_normal((T, n, sizes[0]))) / np.sqrt(sizes[0])
    Xq = (np.take_along_axis(centres, yq[..., None], 1) + rng.standard_normal((T, m, sizes[0]))) / np.sqrt(sizes[0])
    return theta, Xs, ys, Xq, yq


def refmaml_impl(model, K):
    def setup(data):
        return (lambda: refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K, model=model)[1]), np.asarray
    return setup


def _torch_parts(torch, sizes, activation):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    shapes = [(name, p.shape, p.numel()) for name, p in net.named_parameters()]

    def params(flat):
        out, start = {}, 0
        for name, shape, size in shapes:
            out[name] = flat[start:start + size].view(shape)
            start += size
        return out
    return net, params


def torch_impls(sizes, activation, head, K):
    import torch
    from torch.func import functional_call, grad, vmap
    F = torch.nn.functional
    net, params = _torch_parts(torch, sizes, activation)

    def loss(flat, X, y):
        out = functional_call(net, params(flat), (X,))
        return F.mse_loss(out, y) if head == "mse" else F.cross_entropy(out, y)

    def loop(data):
        theta0, Xs, ys, Xq, yq = (torch.tensor(a) for a in data)

        def call():
            theta = theta0.clone().requires_grad_(True)
            losses = []
            for t in range(Xs.shape[0]):
                phi = theta
                for _ in range(K):
                    g, = torch.autograd.grad(loss(phi, Xs[t], ys[t]), phi, create_graph=True)
                    phi = phi - ALPHA * g
                losses.append(loss(phi, Xq[t], yq[t]))
            g, = torch.autograd.grad(torch.stack(losses).mean(), theta)
            return g
        return call, lambda g: g.numpy()

    def func(data):
        theta0, Xs, ys, Xq, yq = (torch.tensor(a) for a in data)

        task = torch_func_task(grad, loss, K, ALPHA)
        meta = grad(lambda th: vmap(task, in_dims=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq).mean())
        return (lambda: meta(theta0)), lambda g: g.numpy()

    return {"torch loop": loop, "torch.func vmap": func}


def _jax_net(jnp, jax, sizes, activation):
    layers, offset = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append((offset, offset + a * b, b, a))
        offset += a * b + b

    def net(theta, X):
        h = X
        for i, (w, bias, out, fan_in) in enumerate(layers):
            h = h @ theta[w:bias].reshape(out, fan_in).T + theta[bias:bias + out]
            if i < len(layers) - 1:
                h = jax.nn.relu(h) if activation == "relu" else jnp.tanh(h)
        return h
    return net


def torch_func_task(grad, loss, K, alpha):
    """One task's meta-loss as a ``torch.func`` user writes it: ``K`` plain steps of
    ``grad(loss)``, then the query loss (shared by conv.py)."""
    def task(theta, Xs, ys, Xq, yq):
        phi = theta
        for _ in range(K):
            phi = phi - alpha * grad(loss)(phi, Xs, ys)
        return loss(phi, Xq, yq)
    return task


def jax_cross_entropy(jax, jnp, z, y):
    """The mean cross-entropy of logits ``z (n, C)`` against labels ``y (n,)``, as in ``optax``."""
    return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])


def jax_meta_loss(jax, jnp, loss, K, alpha):
    """The MAML meta-loss as a JAX user writes it: ``K`` plain steps of ``jax.grad(loss)`` per task,
    the query loss at the end, ``vmap`` over the tasks and their mean (shared by conv.py)."""
    def task(theta, Xs, ys, Xq, yq):
        phi = theta
        for _ in range(K):
            phi = phi - alpha * jax.grad(loss)(phi, Xs, ys)
        return loss(phi, Xq, yq)

    def meta_loss(theta, *batch):
        return jnp.mean(jax.vmap(task, in_axes=(None, 0, 0, 0, 0))(theta, *batch))
    return meta_loss


def jax_impl(sizes, activation, head, K):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    net = _jax_net(jnp, jax, sizes, activation)

    def loss(theta, X, y):
        out = net(theta, X)
        return jnp.mean((out - y) ** 2) if head == "mse" else jax_cross_entropy(jax, jnp, out, y)

    meta_loss = jax_meta_loss(jax, jnp, loss, K, ALPHA)

    def setup(data):
        f = jax.jit(jax.grad(meta_loss))
        args = [jnp.asarray(a) for a in data]
        return (lambda: f(*args).block_until_ready()), np.asarray
    return {"jax jit+vmap": setup}, meta_loss


def meta_gradients(min_time):
    rows = []
    for name, sizes, activation, head, T, n, m, K in CONFIGS:
        model = MLP(sizes, activation, head)
        data = problem(name, sizes, head, T, n, m)
        reference = np.asarray(refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K, model=model)[1])
        impls = {"refmaml": refmaml_impl(model, K)}
        for build in (lambda: torch_impls(sizes, activation, head, K), lambda: jax_impl(sizes, activation, head, K)[0]):
            try:
                impls.update(build())
            except ImportError as exc:
                print(f"skipped a peer: {exc}")
        row = {"config": dict(network=name, sizes=list(sizes), activation=activation, head=head, T=T, n=n, m=m,
                              K=K, P=model.size), "results": {}}
        for impl, setup in impls.items():
            call, to_numpy = setup(data)
            out, first, median, calls = measure(call, min_time=min_time)
            err = float(np.linalg.norm(to_numpy(out) - reference) / np.linalg.norm(reference))
            row["results"][impl] = {"first_s": first, "median_s": median, "calls": calls, "rel_err": err,
                                    "agrees": err <= 1e-10}
        best = row["results"]["refmaml"]["median_s"]
        for v in row["results"].values():
            v["ratio_to_refmaml"] = v["median_s"] / best
        rows.append(row)
        print(f"{name} {sizes} K={K}: " + ", ".join(
            f"{k} {v['median_s'] * 1e3:.2f} ms (x{v['ratio_to_refmaml']:.2f}{'' if v['agrees'] else ' !'})"
            for k, v in row["results"].items()), flush=True)
    return rows


def training(iterations):
    """Meta-training iterations per second on the sinusoid, MAML with K = 1: refmaml's train loop
    (validation, meta-gradient, Adam, the held-out curve off) and the same loop in the peers."""
    config = train.Config(family="sinusoid", method="maml", inner_lr=ALPHA, inner_steps=1, meta_batch=25,
                          iterations=iterations, outer_lr=1e-3, support=10, query=10, eval_every=0)
    fam = tasks.family("sinusoid")
    out = {}
    start = time.perf_counter()
    train.train(config)
    out["refmaml"] = iterations / (time.perf_counter() - start)
    sizes = fam.model.sizes
    try:
        import torch
        from torch.func import functional_call, grad, vmap
        net, params = _torch_parts(torch, sizes, "relu")
        F = torch.nn.functional

        def loss(flat, X, y):
            return F.mse_loss(functional_call(net, params(flat), (X,)), y)

        for style in ("torch loop", "torch.func vmap"):
            theta = torch.tensor(fam.initial(0), requires_grad=True)
            opt = torch.optim.Adam([theta], lr=1e-3)
            rng = np.random.default_rng(0)

            def task(th, Xs, ys, Xq, yq):
                return loss(th - ALPHA * grad(loss)(th, Xs, ys), Xq, yq)

            start = time.perf_counter()
            for _ in range(iterations):
                b = fam.sample(rng, 25, 10, 10)
                Xs, ys, Xq, yq = (torch.tensor(a) for a in (b.Xs, b.ys[..., None], b.Xq, b.yq[..., None]))
                opt.zero_grad()
                if style == "torch loop":
                    losses = []
                    for t in range(25):
                        g, = torch.autograd.grad(loss(theta, Xs[t], ys[t]), theta, create_graph=True)
                        losses.append(loss(theta - ALPHA * g, Xq[t], yq[t]))
                    torch.stack(losses).mean().backward()
                else:
                    theta.grad = grad(lambda th: vmap(task, in_dims=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq).mean())(
                        theta.detach())
                opt.step()
            out[style] = iterations / (time.perf_counter() - start)
    except ImportError as exc:
        print(f"skipped a peer: {exc}")
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        _, meta_loss = jax_impl(sizes, "relu", "mse", 1)

        @jax.jit
        def step(theta, m, v, t, *batch):
            g = jax.grad(meta_loss)(theta, *batch)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            theta = theta - 1e-3 * (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            return theta, m, v

        theta = jnp.asarray(fam.initial(0))
        m = v = jnp.zeros_like(theta)
        rng = np.random.default_rng(0)
        b = fam.sample(rng, 25, 10, 10)
        step(theta, m, v, 1.0, b.Xs, b.ys[..., None], b.Xq, b.yq[..., None])[0].block_until_ready()  # compile
        start = time.perf_counter()
        for t in range(1, iterations + 1):
            b = fam.sample(rng, 25, 10, 10)
            theta, m, v = step(theta, m, v, float(t), b.Xs, b.ys[..., None], b.Xq, b.yq[..., None])
        theta.block_until_ready()
        out["jax jit"] = iterations / (time.perf_counter() - start)
    except ImportError as exc:
        print(f"skipped a peer: {exc}")
    print("meta-training iterations per second (sinusoid, MAML, K = 1): "
          + ", ".join(f"{k} {v:.0f}/s" for k, v in out.items()), flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated calls per timing")
    parser.add_argument("--iterations", type=int, default=1000, help="meta-training iterations timed per loop")
    parser.add_argument("--keep-freed-blocks", action="store_true",
                        help="raise glibc's mmap and trim thresholds first, as refmaml demo and train do")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    kept = _malloc.keep_freed_blocks() if args.keep_freed_blocks else False
    info = {**machine(), "keep_freed_blocks": kept}
    print(json.dumps(info), flush=True)
    result = {"machine": info, "meta_gradients": meta_gradients(args.min_time),
              "training": training(args.iterations)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
