"""Convolutional networks: refmaml's exact meta-gradient through a ConvNet against PyTorch and JAX.

In one process and on the same data, float64 on the CPU: refmaml (``model=ConvNet(...)``), PyTorch
as users write MAML for an image network (the equivalent ``nn.Sequential`` with
``nn.BatchNorm2d(C, track_running_stats=False)`` through ``torch.func.functional_call``: a per-task
loop with ``torch.autograd.grad(..., create_graph=True)``, and ``torch.func`` with ``grad`` through
the inner loop and ``vmap`` over the tasks) and JAX (``lax.conv_general_dilated``, ``reduce_window``
for max-pooling, batch norm by hand with the statistics of each set; ``jit`` + ``vmap``). Every
peer's meta-gradient is compared with refmaml's (assert, 1e-10 relative) before it is timed, and
its parameters after one meta-training step too.

Two things are timed per configuration and K: the meta-gradient, and a meta-training step (the
meta-gradient, then an Adam step: ``refmaml.adam``, ``torch.optim.Adam``, and for JAX both in one
jitted function), on one fixed batch. Each implementation is timed in ``--rounds`` rounds,
interleaved with the others (round 1: all of them, round 2: all of them, ...), each round the
median of repeated calls after a pause of ``bench.SETTLE_S`` and a warm-up; the table gives the
best round and the spread (worst round / best). The first call is timed separately: for JAX it is
the trace and compilation (``jit(...).lower(...).compile()``), excluded from the other times.

    python benchmarks/conv.py [--quick] [--rounds 3] [--keep-freed-blocks] [--one-core] [--out FILE.json]
    python benchmarks/conv.py --only demo            # the demo's configurations only
    python benchmarks/conv.py --profile              # where refmaml's time goes, per layer and rule
    python benchmarks/conv.py --tables FILE.json     # the Markdown tables of benchmarks/README.md

``--one-core`` runs everything on one thread pinned to one core (:func:`one_core`): on a machine that
others use, a two-thread library's threads wait for each other and its times measure the other load.
refmaml is also timed alone, first, before PyTorch or JAX is imported ("refmaml alone"): with glibc's
default thresholds the peers' calls change how the allocator serves refmaml's arrays later.

Besides the times: the flops of refmaml's meta-gradient (``network.gradient_flops`` and
``hvp_flops``: three and six times the convolutions' and the linear layer's forward products per
gradient and Hessian-vector product, ``derivations/mlp.md`` (N9), ``derivations/conv.md`` (C14))
and the rate achieved, against measured GEMM ceilings: NumPy float64 ``matmul`` of a large square
and of the shapes of the convolutions' products (per example, ``(T, 1, O, I k k) @ (T, n, I k k, L)``,
as refmaml's layer computed them before, and one product per task, ``(T, O, I k k) @ (T, I k k, n L)``,
as it does now).

``torch.func`` is timed as ``vmap(grad(task))(...).mean(0)``: ``grad`` of the mean of
``vmap(task)`` gives a meta-gradient off by 0.4 to 2% wherever the network has batch norm (PyTorch
2.13; printed, not timed).

Configurations: the ``digit-images`` preset (``refmaml.presets``: 5-way, T, n, m and K from the
preset, ``ConvNet(5, blocks=2, channels=8)`` on 1 x 8 x 8), also with K = 5; and a larger network,
``ConvNet(5, blocks=4, channels=32)`` on 1 x 28 x 28 (Omniglot's size, the MAML paper's four
blocks), T = 4, n = m = 25, K = 1 and 5. Images are Gaussian, labels balanced (the times do not
depend on the values).

``--keep-freed-blocks`` raises glibc's mmap and trim thresholds first (``refmaml._malloc``, what
``refmaml demo`` and ``refmaml train`` do); the default keeps the C library's defaults. PyTorch
runs with its default threads (``torch.get_num_threads()``, one per core, as in ``bench.py``),
JAX with XLA's, NumPy's BLAS with OpenBLAS's; all are recorded.
"""

import argparse
import collections
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SETTLE_S, machine  # noqa: E402  (re-executes without OPENBLAS_CORETYPE, as bench.py)
from networks import jax_cross_entropy, jax_meta_loss, torch_func_task  # noqa: E402

import numpy as np  # noqa: E402

import refmaml  # noqa: E402
from refmaml import _malloc, adam  # noqa: E402
from refmaml.models import ConvNet  # noqa: E402

TOLERANCE = 1e-10
# The first Adam step divides each gradient entry by its own size: the convolutions' biases ahead of
# batch norm have a gradient of exactly 0 (the normalisation removes them), computed as rounding noise
# of 1e-17 that the step turns into moves of about outer_lr * 1e-9, different in every implementation.
STEP_TOLERANCE = 1e-8
OUTER_LR = 0.003
CLASSES = 5


def demo_preset():
    """The ``digit-images`` preset's T, n, m, K and inner_lr; the fallback of the issue where the
    preset is absent."""
    try:
        from refmaml import presets
        p = presets.PRESETS["digit-images"]
        return dict(T=p["meta_batch"], n=p["support"], m=p["query"], K=p["inner_steps"],
                    inner_lr=p["inner_lr"], outer_lr=p["outer_lr"], source="refmaml.presets")
    except (ImportError, KeyError):
        return dict(T=8, n=25, m=25, K=5, inner_lr=0.1, outer_lr=OUTER_LR, source="fallback")


def configs(quick=False):
    demo = demo_preset()
    base = dict(input_shape=(1, 8, 8), blocks=2, channels=8, T=demo["T"], n=demo["n"], m=demo["m"],
                inner_lr=demo["inner_lr"], outer_lr=demo["outer_lr"], rounds=None, min_time=None)
    out = [dict(base, name="demo", K=demo["K"], preset=demo["source"])]
    if demo["K"] != 5:
        out.append(dict(base, name="demo", K=5, preset=demo["source"] + ", K = 5"))
    large = dict(name="28x28", input_shape=(1, 28, 28), blocks=4, channels=32, T=4, n=25, m=25,
                 inner_lr=0.4, outer_lr=OUTER_LR, preset="-", rounds=2, min_time=0.0)
    out += [dict(large, K=1)] + ([] if quick else [dict(large, K=5)])
    return out


def network(c):
    return ConvNet(CLASSES, blocks=c["blocks"], channels=c["channels"], input_shape=c["input_shape"])


def problem(c, seed=0):
    """``theta`` (``ConvNet.init``), Gaussian images and balanced labels."""
    rng = np.random.default_rng(seed)
    theta = network(c).init(seed)
    T, n, m = c["T"], c["n"], c["m"]
    Xs = rng.standard_normal((T, n) + c["input_shape"])
    Xq = rng.standard_normal((T, m) + c["input_shape"])
    ys = np.tile(np.arange(CLASSES), (T, -(-n // CLASSES)))[:, :n]
    yq = np.tile(np.arange(CLASSES), (T, -(-m // CLASSES)))[:, :m]
    return theta, Xs, ys, Xq, yq


def flops(c):
    """refmaml's meta-gradient in floating-point operations: per task K support gradients and
    Hessian-vector products and one query gradient (``derivations/maml.md`` (M9)), with the network's
    counts (N9), (C14)."""
    net = network(c).network
    d = c["input_shape"]
    per_task = c["K"] * (net.gradient_flops(c["n"], d, ()) + net.hvp_flops(c["n"], d, ())) \
        + net.gradient_flops(c["m"], d, ())
    return c["T"] * per_task


# --- implementations: setup(c, data) -> {"grad": (call, to_numpy), "step": (step, theta_numpy)} ---------

def refmaml_impl(c, data):
    net = network(c)
    theta0, Xs, ys, Xq, yq = data
    kw = dict(inner_lr=c["inner_lr"], inner_steps=c["K"], model=net)

    def grad():
        return refmaml.meta_value_and_grad(theta0, Xs, ys, Xq, yq, **kw)[1]

    params = {"theta": theta0.copy()}
    state = [params, adam.init(params)]

    def step():
        p, s = state
        g = refmaml.meta_value_and_grad(p["theta"], Xs, ys, Xq, yq, **kw)[1]
        state[:] = adam.step(p, {"theta": g}, s, c["outer_lr"])
        return state[0]["theta"]

    return {"grad": (grad, np.asarray), "step": (step, np.asarray)}


def torch_net(torch, c):
    """The equivalent ``nn.Sequential`` and ``flat -> {name: view}`` in ``parameters_to_vector``'s order."""
    nn = torch.nn
    layers, ch, (h, w) = [], c["input_shape"][0], c["input_shape"][1:]
    for _ in range(c["blocks"]):
        layers += [nn.Conv2d(ch, c["channels"], 3, padding=1, dtype=torch.float64),
                   nn.BatchNorm2d(c["channels"], track_running_stats=False, dtype=torch.float64),
                   nn.ReLU(), nn.MaxPool2d(2)]
        ch, h, w = c["channels"], h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(ch * h * w, CLASSES, dtype=torch.float64)]
    net = nn.Sequential(*layers)
    shapes = [(name, p.shape, p.numel()) for name, p in net.named_parameters()]
    assert sum(s for _, _, s in shapes) == network(c).size

    def params(flat):
        out, start = {}, 0
        for name, shape, size in shapes:
            out[name] = flat[start:start + size].view(shape)
            start += size
        return out
    return net, params


def torch_impls(c):
    import torch
    from torch.func import functional_call, grad, vmap
    F = torch.nn.functional
    net, params = torch_net(torch, c)
    alpha, K = c["inner_lr"], c["K"]

    def loss(flat, X, y):
        return F.cross_entropy(functional_call(net, params(flat), (X,)), y)

    def loop(data):
        theta0, Xs, ys, Xq, yq = (torch.tensor(a) for a in data)

        def meta_loss(theta):
            losses = []
            for t in range(Xs.shape[0]):
                phi = theta
                for _ in range(K):
                    g, = torch.autograd.grad(loss(phi, Xs[t], ys[t]), phi, create_graph=True)
                    phi = phi - alpha * g
                losses.append(loss(phi, Xq[t], yq[t]))
            return torch.stack(losses).mean()

        def call():
            theta = theta0.clone().requires_grad_(True)
            g, = torch.autograd.grad(meta_loss(theta), theta)
            return g

        theta = theta0.clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=c["outer_lr"])

        def step():
            opt.zero_grad()
            meta_loss(theta).backward()
            opt.step()
            return theta
        return {"grad": (call, lambda g: g.numpy()), "step": (step, lambda t: t.detach().numpy().copy())}

    def func(data):
        theta0, Xs, ys, Xq, yq = (torch.tensor(a) for a in data)

        task = torch_func_task(grad, loss, K, alpha)

        # vmap(grad(task)), the tasks' meta-gradients averaged: grad(vmap(task)) of the mean meta-loss
        # is off by about 2e-2 relative wherever the network has batch norm (``wrong_form``)
        def meta(th):
            return vmap(grad(task), in_dims=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq).mean(0)
        theta = theta0.clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=c["outer_lr"])

        def step():
            theta.grad = meta(theta.detach())
            opt.step()
            return theta
        wrong = grad(lambda th: vmap(task, in_dims=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq).mean())
        return {"grad": ((lambda: meta(theta0)), lambda g: g.numpy()),
                "step": (step, lambda t: t.detach().numpy().copy()),
                "wrong_form": ("grad(vmap(task)) of the mean", lambda: wrong(theta0).numpy())}

    return {"torch.func vmap": func, "torch loop": loop}


def jax_impl(c):
    import jax
    import jax.numpy as jnp
    from jax import lax
    jax.config.update("jax_enable_x64", True)
    alpha, K, eps = c["inner_lr"], c["K"], 1e-5
    blocks, ch = [], c["input_shape"][0]
    offset, (h, w) = 0, c["input_shape"][1:]
    for _ in range(c["blocks"]):
        O = c["channels"]
        blocks.append((offset, O, ch))
        offset += O * ch * 9 + O + 2 * O
        ch, h, w = O, h // 2, w // 2
    features = ch * h * w

    def net(theta, X):
        a = X
        for start, O, I in blocks:
            W = theta[start:start + O * I * 9].reshape(O, I, 3, 3)
            b, gamma, beta = (theta[start + O * I * 9 + j * O:start + O * I * 9 + (j + 1) * O] for j in range(3))
            a = lax.conv_general_dilated(a, W, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW")) + b[None, :, None, None]
            mu = jnp.mean(a, axis=(0, 2, 3), keepdims=True)
            centred = a - mu
            a = centred / jnp.sqrt(jnp.mean(centred * centred, axis=(0, 2, 3), keepdims=True) + eps)
            a = jax.nn.relu(gamma[None, :, None, None] * a + beta[None, :, None, None])
            a = lax.reduce_window(a, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        Wl = theta[offset:offset + CLASSES * features].reshape(CLASSES, features)
        return a.reshape(a.shape[0], -1) @ Wl.T + theta[offset + CLASSES * features:]

    def loss(theta, X, y):
        return jax_cross_entropy(jax, jnp, net(theta, X), y)

    meta_loss = jax_meta_loss(jax, jnp, loss, K, alpha)

    def step_fn(theta, m, v, t, *batch):
        g = jax.grad(meta_loss)(theta, *batch)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - c["outer_lr"] * (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        return theta, m, v

    def setup(data):
        args = [jnp.asarray(a) for a in data]
        start = time.perf_counter()
        f = jax.jit(jax.grad(meta_loss)).lower(*args).compile()
        compile_grad = time.perf_counter() - start
        theta = args[0]
        state = [theta, jnp.zeros_like(theta), jnp.zeros_like(theta), 0]
        start = time.perf_counter()
        s = jax.jit(step_fn).lower(theta, state[1], state[2], 1.0, *args[1:]).compile()
        compile_step = time.perf_counter() - start

        def step():
            state[3] += 1
            state[0], state[1], state[2] = s(state[0], state[1], state[2], float(state[3]), *args[1:])
            return state[0].block_until_ready()
        return {"grad": ((lambda: f(*args).block_until_ready()), np.asarray), "step": (step, np.asarray),
                "compile_s": {"grad": compile_grad, "step": compile_step}}
    return {"jax jit+vmap": setup}


# --- measuring ---------------------------------------------------------------------------------------

def timed(call, *, min_time, min_calls=3, max_calls=50):
    """The median of repeated calls after one warm-up, and their number, after a pause of
    ``bench.SETTLE_S`` (an earlier peer's spinning threads go to sleep)."""
    time.sleep(SETTLE_S)
    call()
    times = []
    while len(times) < min_calls or (sum(times) < min_time and len(times) < max_calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def refmaml_alone(c, args):
    """refmaml's meta-gradient and step, best round and spread, timed as in :func:`run_config`."""
    impl = refmaml_impl(c, problem(c))
    out = {}
    for what in ("grad", "step"):
        rounds = [timed(impl[what][0], min_time=args.min_time if c["min_time"] is None else c["min_time"])[0]
                  for _ in range(c["rounds"] or args.rounds)]
        out[what] = {"best_s": min(rounds), "spread": max(rounds) / min(rounds), "rounds_s": rounds}
    print(f"{label(c)}, refmaml alone: " + ", ".join(f"{w} {v['best_s'] * 1e3:.1f} ms (spread {v['spread']:.2f})"
                                                    for w, v in out.items()), flush=True)
    return out


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def run_config(c, args):
    data = problem(c)
    builders = {"refmaml": lambda d: refmaml_impl(c, d)}
    for build in (lambda: torch_impls(c), lambda: jax_impl(c)):
        try:
            builders.update(build())
        except ImportError as exc:
            print(f"skipped a peer: {exc}")
    impls, row = {}, {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()
                                 if k not in ("rounds", "min_time")},
                      "P": network(c).size, "flops": flops(c), "results": {}}
    reference = step_reference = None
    for name, build in builders.items():
        start = time.perf_counter()
        impl = build(data)
        setup_s = time.perf_counter() - start
        out = {}
        for what in ("grad", "step"):
            call, to_numpy = impl[what]
            start = time.perf_counter()
            value = to_numpy(call())
            first = time.perf_counter() - start
            if what == "grad":
                reference = value if name == "refmaml" else reference
                err = rel(value, reference)
            else:  # the parameters after the first Adam step, against refmaml's
                step_reference = value if name == "refmaml" else step_reference
                err = rel(value - data[0], step_reference - data[0])
            limit = TOLERANCE if what == "grad" else STEP_TOLERANCE
            assert err <= limit, f"{name} {what}: relative error {err:.2e} against refmaml"
            out[what] = {"first_s": first + (setup_s if what == "grad" else 0.0), "rel_err": err, "rounds_s": []}
            if "compile_s" in impl:
                out[what]["compile_s"] = impl["compile_s"][what]
        if "wrong_form" in impl:
            form, call = impl["wrong_form"]
            out["other form"] = {"form": form, "rel_err": rel(call(), reference)}
            print(f"{name}, {form}: relative error {out['other form']['rel_err']:.1e} against refmaml "
                  "(not timed)", flush=True)
        impls[name], row["results"][name] = impl, out
    rounds = c["rounds"] or args.rounds
    min_time = args.min_time if c["min_time"] is None else c["min_time"]
    for _ in range(rounds):
        for name, impl in impls.items():
            for what in ("grad", "step"):
                median, calls = timed(impl[what][0], min_time=min_time)
                row["results"][name][what]["rounds_s"].append(median)
                row["results"][name][what]["calls"] = calls
    for what in ("grad", "step"):
        best = min(row["results"]["refmaml"][what]["rounds_s"])
        for v in row["results"].values():
            r = v[what]
            r["best_s"], r["spread"] = min(r["rounds_s"]), max(r["rounds_s"]) / min(r["rounds_s"])
            r["ratio_to_refmaml"] = r["best_s"] / best
    row["results"]["refmaml"]["grad"]["gflops"] = row["flops"] / row["results"]["refmaml"]["grad"]["best_s"] / 1e9
    return row


def label(c):
    return f"{c['name']} {'x'.join(map(str, c['input_shape']))} {c['blocks']}x{c['channels']}, " \
           f"T={c['T']}, n={c['n']}, m={c['m']}, K={c['K']}"


def print_row(row):
    for what in ("grad", "step"):
        cells = ", ".join(f"{k} {v[what]['best_s'] * 1e3:.1f} ms (x{v[what]['ratio_to_refmaml']:.2f}, "
                          f"spread {v[what]['spread']:.2f})" for k, v in row["results"].items())
        print(f"{label(row['config'])} {what}: {cells}", flush=True)


# --- ceilings ----------------------------------------------------------------------------------------

def _rate(f, flop, min_time=0.2):
    f()
    best, spent = math.inf, 0.0
    while spent < min_time or best == math.inf:
        start = time.perf_counter()
        f()
        t = time.perf_counter() - start
        best, spent = min(best, t), spent + t
    return flop / best


def ceilings(cs):
    """GFLOP/s of NumPy float64 matmul: a 2048 x 2048 square, and per convolution of each network
    and set size the product as refmaml's layer computes it, per example
    ``(T, 1, O, I k k) @ (T, n, I k k, L)``, and as one product per task ``(T, O, I k k) @ (T, I k k, n L)``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048))
    out = {"square 2048": _rate(lambda: a @ a, 2 * 2048 ** 3, 1.0) / 1e9, "conv": []}
    seen = set()
    for c in cs:
        net = network(c)
        for layer, shape in zip(net.layers, net.network.shapes, strict=False):
            if type(layer).__name__ != "Conv2d":
                continue
            O, Kc = layer.out_channels, layer.fan_in
            L = math.prod(layer.output_shape(shape)[1:])
            for n in sorted({c["n"], c["m"]}):
                key = (c["T"], n, O, Kc, L)
                if key in seen:
                    continue
                seen.add(key)
                W = rng.standard_normal((c["T"], 1, O, Kc))
                A = rng.standard_normal((c["T"], n, Kc, L))
                A2 = rng.standard_normal((c["T"], Kc, n * L))
                flop = 2 * c["T"] * n * O * Kc * L
                out["conv"].append({"T": c["T"], "n": n, "O": O, "IKK": Kc, "L": L, "flops": flop,
                                    "per example": _rate(lambda: W @ A, flop) / 1e9,
                                    "per task": _rate(lambda: W[:, 0] @ A2, flop) / 1e9})
    return out


# --- where the time goes -------------------------------------------------------------------------------

def profile(cs, repeats=3):
    """refmaml's time per layer type, rule and set size (the rules wrapped in timers), and the rest
    of the call (the head, the inner loop's updates, validation); in one thread of refmaml's (the
    policy's task groups off; BLAS keeps its threads), so that the parts add up to the call."""
    from refmaml.models import layers as L
    spent = collections.defaultdict(float)
    originals = {}

    def wrap(cls, rule):
        f = getattr(cls, rule)
        originals[(cls, rule)] = f

        def timed_rule(self, params, a, *rest, **kw):
            start = time.perf_counter()
            out = f(self, params, a, *rest, **kw)
            spent[(cls.__name__, rule, a.shape[1])] += time.perf_counter() - start
            return out
        setattr(cls, rule, timed_rule)

    rows = []
    from refmaml import policy
    thresholds = policy.THREAD_FLOPS, policy.UNHELD_THREAD_FLOPS
    policy.THREAD_FLOPS = policy.UNHELD_THREAD_FLOPS = math.inf  # one thread of refmaml's: the parts add up
    try:
        for cls in (L.Conv2d, L.BatchNorm2d, L.ReLU, L.MaxPool2d, L.Flatten, L.Linear):
            for rule in ("forward", "vjp", "jvp", "r_vjp"):
                wrap(cls, rule)
        for c in cs:
            call = refmaml_impl(c, problem(c))["grad"][0]
            call()
            spent.clear()
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            total = (time.perf_counter() - start) / repeats
            parts = {f"{k[0]}.{k[1]} n={k[2]}": v / repeats for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
            rows.append({"config": label(c), "total_s": total, "rules_s": parts,
                         "rest_s": total - sum(parts.values())})
            print(f"\n{label(c)}: {total * 1e3:.1f} ms per call, of which the layers' rules "
                  f"{sum(parts.values()) * 1e3:.1f} ms")
            for k, v in parts.items():
                if v >= 0.01 * total:
                    print(f"  {k:32} {v * 1e3:8.2f} ms  {100 * v / total:5.1f}%")
    finally:
        for (cls, rule), f in originals.items():
            setattr(cls, rule, f)
        policy.THREAD_FLOPS, policy.UNHELD_THREAD_FLOPS = thresholds
    return rows


# --- the README's tables --------------------------------------------------------------------------------

def _ms(s):
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.1f} s"


def _cell(v, what):
    return f"{_ms(v[what]['best_s'])} ±{v[what]['spread'] - 1:.0%}"


def tables(result):
    names = list(result["rows"][0]["results"])
    peers = names[1:]
    for what, title in (("grad", "meta-gradient"), ("step", "meta-training step (meta-gradient + Adam)")):
        print(f"\n{title}: best round, ±: worst round / best - 1; ratio: the peer's time / refmaml's\n")
        print("| network, T, n, m, K | refmaml alone | refmaml | " + " | ".join(peers) + " | "
              + " | ".join(f"{k} / refmaml" for k in peers) + " |")
        print("|" + "---|" * (2 * len(peers) + 3))
        for r in result["rows"]:
            c = r["config"]
            alone = r.get("refmaml alone", {}).get(what)
            head = f"{c['name']} {'x'.join(map(str, c['input_shape']))} {c['blocks']}x{c['channels']}, " \
                   f"{c['T']}, {c['n']}, {c['m']}, {c['K']}"
            print(f"| {head} | {_cell({what: alone}, what) if alone else '-'} | "
                  + " | ".join(_cell(r["results"][k], what) for k in names) + " | "
                  + " | ".join(f"{r['results'][k][what]['ratio_to_refmaml']:.2f}" for k in peers) + " |")
    print("\nrefmaml's meta-gradient: flops and rate; the first call of each (s; JAX: its trace and compilation, "
          "meta-gradient / step)\n")
    print("| network, K | GFLOP | refmaml GFLOP/s | " + " | ".join(f"{k} first" for k in names) + " |")
    print("|" + "---|" * (len(names) + 3))
    for r in result["rows"]:
        c = r["config"]
        firsts = [f"{v['grad']['compile_s']:.1f} / {v['step']['compile_s']:.1f}" if "compile_s" in v["grad"]
                  else f"{v['grad']['first_s']:.2f}" for v in r["results"].values()]
        print(f"| {c['name']}, K={c['K']} | {r['flops'] / 1e9:.3f} | {r['results']['refmaml']['grad']['gflops']:.1f} | "
              + " | ".join(firsts) + " |")
    ceil = result.get("ceilings")
    if ceil:
        print(f"\nGEMM ceiling, NumPy float64 matmul 2048 x 2048: {ceil['square 2048']:.1f} GFLOP/s; the "
              "convolutions' products (GFLOP/s):\n")
        print("| T, n | O x I k k x L | per example, (T, 1, O, I k k) @ (T, n, I k k, L) | "
              "per task, (T, O, I k k) @ (T, I k k, n L) |")
        print("|---|---|---|---|")
        for g in ceil["conv"]:
            print(f"| {g['T']}, {g['n']} | {g['O']} x {g['IKK']} x {g['L']} | {g['per example']:.1f} | "
                  f"{g['per task']:.1f} |")


def one_core():
    """One thread everywhere, on one core: the process pinned to its last allowed core, OpenBLAS held to
    one thread (threadpoolctl), refmaml's task groups off (``policy``), XLA's Eigen pool off and PyTorch
    on one thread (``torch.set_num_threads(1)`` in :func:`main`). On a machine others use, the threads
    of a two-thread library wait for each other (OpenMP's and OpenBLAS's spin), and its times say more
    about the other load than about it; on one core each implementation's time is its own work."""
    from threadpoolctl import threadpool_limits
    from refmaml import policy
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                               " intra_op_parallelism_threads=1").strip()
    one_core.limits = threadpool_limits(1)  # kept for the process's life
    policy.THREAD_FLOPS = policy.UNHELD_THREAD_FLOPS = math.inf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the demo's configuration and the large one at K = 1")
    parser.add_argument("--only", choices=("demo", "28x28"), help="the configurations of one network only")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per timing (2 on the large network)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated calls per round")
    parser.add_argument("--profile", action="store_true", help="refmaml's time per layer and rule, nothing else")
    parser.add_argument("--keep-freed-blocks", action="store_true",
                        help="raise glibc's mmap and trim thresholds first, as refmaml demo and train do")
    parser.add_argument("--one-core", action="store_true",
                        help="every implementation on one thread, the process pinned to one core (a busy machine)")
    parser.add_argument("--tables", metavar="FILE", help="print the Markdown tables of a results file and stop")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.tables:
        with open(args.tables) as f:
            tables(json.load(f))
        return
    kept = _malloc.keep_freed_blocks() if args.keep_freed_blocks else False
    if args.one_core:
        one_core()
    cs = [c for c in configs(args.quick) if args.only in (None, c["name"])]
    load = os.getloadavg()
    # refmaml alone first, before PyTorch or JAX is imported: with glibc's defaults their calls move the
    # allocator's thresholds (bench.machine imports them too), and refmaml's later times with them
    alone = {} if args.profile else {label(c): refmaml_alone(c, args) for c in cs}
    info = {**machine(), "keep_freed_blocks": kept, "load_average": load, "one_core": args.one_core}
    try:
        import torch
        if args.one_core:
            torch.set_num_threads(1)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if args.one_core:
        info["affinity"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(info), flush=True)
    if args.profile:
        result = {"machine": info, "profile": profile(cs)}
    else:
        result = {"machine": info, "rows": []}
        for c in cs:
            result["rows"].append(run_config(c, args))
            result["rows"][-1]["refmaml alone"] = alone[label(c)]
            print_row(result["rows"][-1])
        result["ceilings"] = ceilings(cs)
        result["machine"]["load_average_after"] = os.getloadavg()
        tables(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
