"""Time refmaml's exact meta-gradient against what users would otherwise run.

In one process and on the same data: refmaml (primal, dual and automatic form), PyTorch the
way users write MAML (a per-task loop with ``create_graph=True``, a batched version,
``torch.func`` with ``vmap``) and JAX (``jit`` + ``vmap``). Binary logistic model, float64
(float32 with ``--float32``). Every implementation's meta-gradient is checked against
refmaml's before it is timed. For each configuration: the time of the first call (JAX traces
and compiles per shape and K; ``torch.func`` has a first-call cost too), then the median of
repeated calls after a warm-up, and each peer's ratio to refmaml's fastest form.

    python benchmarks/bench.py                      # the configurations, sweeps and networks of README.md
    python benchmarks/bench.py --quick              # two small configurations
    python benchmarks/bench.py --backend cupy       # refmaml on CuPy (PyTorch CUDA, JAX GPU if present)
    python benchmarks/bench.py --memory             # peak memory of one meta-gradient
    python benchmarks/bench.py --out results.json   # also write the results

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which slow a current NumPy on some processors, are
removed from this process's environment (it re-executes itself); the BLAS library, its
threads and the processor are recorded.
"""

import os
import sys

if any(k in os.environ for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")) and "--keep-env" not in sys.argv:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import refmaml  # noqa: E402
from refmaml import _malloc, models, policy, problem as validated  # noqa: E402

CONFIGS = [(32, 10, 15, 64, 5), (32, 25, 25, 784, 5), (32, 25, 25, 784, 20), (256, 10, 15, 64, 5),
           (8, 100, 100, 1024, 10), (32, 10, 15, 4096, 5)]
K_SWEEP = [(32, 10, 15, 784, K) for K in (1, 2, 5, 10, 20, 50)]
D_SWEEP = [(32, 10, 15, d, 5) for d in (16, 64, 256, 1024, 4096)]
QUICK = [(32, 10, 15, 64, 5), (32, 25, 25, 784, 20)]
GPU_TARGET = [(1024, 25, 25, 784, 10)]   # throughput target of the GPU path, run on every backend
ALPHA = 0.5


def problem(T, n, m, d, seed=0, dtype=np.float64):
    """Binary tasks with features of unit-order logits; theta of small norm."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((T, d))
    Xs = rng.standard_normal((T, n, d)) / np.sqrt(d)
    Xq = rng.standard_normal((T, m, d)) / np.sqrt(d)
    ys = (np.einsum("tnd,td->tn", Xs, w) > 0).astype(dtype)
    yq = (np.einsum("tnd,td->tn", Xq, w) > 0).astype(dtype)
    theta = 0.1 * rng.standard_normal(d)
    return [a.astype(dtype) for a in (theta, Xs, ys, Xq, yq)]


# --- implementations: setup(data, K) -> call() returning the meta-gradient as NumPy ---------------

def refmaml_impl(form, backend):
    def setup(data, K):
        if backend == "cupy":
            import cupy
            args = [cupy.asarray(a) for a in data]

            def call():
                g = refmaml.meta_value_and_grad(*args, inner_lr=ALPHA, inner_steps=K, form=form)[1]
                cupy.cuda.Device().synchronize()
                return g
            return call, lambda g: g.get()
        def call():
            return refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K, form=form)[1]
        return call, np.asarray
    return setup


def torch_impls(device="cpu"):
    import torch
    F = torch.nn.functional

    def tensors(data):
        return [torch.tensor(a, device=device) for a in data]

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    def loop(data, K):
        theta0, Xs, ys, Xq, yq = tensors(data)

        def call():
            theta = theta0.clone().requires_grad_(True)
            losses = []
            for t in range(Xs.shape[0]):
                phi = theta
                for _ in range(K):
                    g, = torch.autograd.grad(F.binary_cross_entropy_with_logits(Xs[t] @ phi, ys[t]), phi,
                                             create_graph=True)
                    phi = phi - ALPHA * g
                losses.append(F.binary_cross_entropy_with_logits(Xq[t] @ phi, yq[t]))
            g, = torch.autograd.grad(torch.stack(losses).mean(), theta)
            sync()
            return g
        return call, lambda g: g.cpu().numpy()

    def batched(data, K):
        theta0, Xs, ys, Xq, yq = tensors(data)

        def call():
            theta = theta0.clone().requires_grad_(True)
            phi = theta.expand(Xs.shape[0], -1)
            for _ in range(K):
                z = torch.einsum("tnd,td->tn", Xs, phi)
                loss = F.binary_cross_entropy_with_logits(z, ys, reduction="none").mean(1).sum()
                g, = torch.autograd.grad(loss, phi, create_graph=True)
                phi = phi - ALPHA * g
            z = torch.einsum("tnd,td->tn", Xq, phi)
            query = F.binary_cross_entropy_with_logits(z, yq, reduction="none").mean(1).mean()
            g, = torch.autograd.grad(query, theta)
            sync()
            return g
        return call, lambda g: g.cpu().numpy()

    def func(data, K):
        from torch.func import grad, vmap
        theta0, Xs, ys, Xq, yq = tensors(data)

        def task(theta, Xs, ys, Xq, yq):
            phi = theta
            for _ in range(K):
                phi = phi - ALPHA * grad(lambda p: F.binary_cross_entropy_with_logits(Xs @ p, ys))(phi)
            return F.binary_cross_entropy_with_logits(Xq @ phi, yq)

        meta_grad = grad(lambda th: vmap(task, in_dims=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq).mean())

        def call():
            g = meta_grad(theta0)
            sync()
            return g
        return call, lambda g: g.cpu().numpy()

    return {"torch loop": loop, "torch batched": batched, "torch.func vmap": func}


def jax_impl():
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)

    def loss(theta, X, y):
        z = X @ theta
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z)

    def setup(data, K):
        def task(theta, Xs, ys, Xq, yq):
            phi = theta
            for _ in range(K):
                phi = phi - ALPHA * jax.grad(loss)(phi, Xs, ys)
            return loss(phi, Xq, yq)

        f = jax.jit(jax.grad(lambda th, *a: jnp.mean(jax.vmap(task, in_axes=(None, 0, 0, 0, 0))(th, *a))))
        args = [jnp.asarray(a) for a in data]
        return (lambda: f(*args).block_until_ready()), np.asarray
    return {"jax jit+vmap": setup}


# --- measuring -----------------------------------------------------------------------------------

SETTLE_S = 0.3


def measure(call, *, min_time, max_calls=50):
    """Seconds of the first call, then the median over repeated calls after one warm-up. It starts
    after a pause of :data:`SETTLE_S`, long enough for the threads an earlier peer left spinning
    (OpenBLAS's, OpenMP's, XLA's) to go to sleep: each implementation is timed on a quiet machine,
    as it would run alone."""
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    out = call()
    first = time.perf_counter() - start
    call()
    times = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < max_calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return out, first, statistics.median(times), len(times)


def machine():
    info = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "refmaml": refmaml.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            names = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
            info["cpu"] = next(names, "")
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads",
                                                               "threading_layer", "architecture")}
                        for lib in threadpool_info()]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    for lib in ("torch", "jax", "cupy"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            pass
    return info


def ceilings(backend):
    """Measured matrix-product rate (flop/s, float64 GEMM 2048^2) and memory bandwidth (bytes/s,
    reading a 512 MiB array)."""
    if backend == "cupy":
        import cupy as xp
        sync = cupy_sync
    else:
        xp, sync = np, (lambda: None)
    a = xp.ones((2048, 2048))
    a @ a
    sync()
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    sync()
    gemm = 3 * 2 * 2048 ** 3 / (time.perf_counter() - start)
    big = xp.ones(64 * 2 ** 20)
    big.sum()
    sync()
    start = time.perf_counter()
    for _ in range(5):
        big.sum()
    sync()
    bandwidth = 5 * big.nbytes / (time.perf_counter() - start)
    return gemm, bandwidth


def cupy_sync():
    import cupy
    cupy.cuda.Device().synchronize()


def floor_seconds(config, form, gemm, bandwidth):
    """The roofline floor: max(fewest flops of the form / GEMM rate, input bytes / bandwidth)."""
    T, n, m, d, K = config
    p = validated.meta(models.get("logistic"), *problem(T, n, m, d), inner_lr=ALPHA, inner_steps=K)  # T counts (pairs)
    primal, dual_cost = policy.costs(p)
    flops = T * (dual_cost if form == "dual" else primal)
    data_bytes = 8 * T * (n + m) * d
    return max(flops / gemm, data_bytes / bandwidth), flops, data_bytes


def run_config(config, impls, args, gemm, bandwidth):
    T, n, m, d, K = config
    data = problem(T, n, m, d, dtype=np.float32 if args.float32 else np.float64)
    reference = np.asarray(refmaml.meta_value_and_grad(*problem(T, n, m, d), inner_lr=ALPHA, inner_steps=K,
                                                       form="primal")[1])
    tolerance = 1e-4 if args.float32 else 1e-10
    row = {"config": dict(T=T, n=n, m=m, d=d, K=K), "results": {}}
    for name, setup in impls.items():
        try:
            call, to_numpy = setup(data, K)
            out, first, median, calls = measure(call, min_time=args.min_time)
        except Exception as exc:  # a peer that cannot run this configuration is reported, not fatal
            row["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        err = float(np.linalg.norm(to_numpy(out) - reference) / np.linalg.norm(reference))
        row["results"][name] = {"first_s": first, "median_s": median, "calls": calls, "rel_err": err,
                                "agrees": err <= tolerance}
    ours = [v["median_s"] for k, v in row["results"].items() if k.startswith("refmaml") and "median_s" in v]
    best = min(ours) if ours else float("nan")
    for v in row["results"].values():
        if "median_s" in v:
            v["ratio_to_refmaml"] = v["median_s"] / best
    p = validated.meta(models.get("logistic"), *problem(2, n, m, d), inner_lr=ALPHA, inner_steps=K)
    row["auto_form"] = policy.choose(p, "auto")
    floor, flops, data_bytes = floor_seconds(config, row["auto_form"], gemm, bandwidth)
    row["roofline"] = {"flops": flops, "bytes": data_bytes, "floor_s": floor,
                       "fraction_of_floor": floor / best if ours else None}
    return row


def table(rows):
    names = []
    for r in rows:
        for k in r["results"]:
            if k not in names:
                names.append(k)
    lines = ["config (T, n, m, d, K)  auto  " + "  ".join(f"{k:>18}" for k in names) + "  floor/best"]
    for r in rows:
        c = r["config"]
        cells = []
        for k in names:
            v = r["results"].get(k, {})
            if "median_s" not in v:
                cells.append(f"{'error' if 'error' in v else '-':>18}")
            else:
                mark = "" if v["agrees"] else "!"
                cells.append(f"{v['median_s'] * 1e3:9.2f}ms x{v['ratio_to_refmaml']:5.2f}{mark}")
        frac = r["roofline"]["fraction_of_floor"]
        head = f"({c['T']:4}, {c['n']:3}, {c['m']:3}, {c['d']:4}, {c['K']:2})  {r['auto_form'][:4]:>4}  "
        lines.append(head + "  ".join(cells) + f"  {frac:6.2f}")
    lines.append("first call (ms):")
    for r in rows:
        c = r["config"]
        lines.append(f"({c['T']:4}, {c['n']:3}, {c['m']:3}, {c['d']:4}, {c['K']:2})        "
                     + "  ".join(f"{r['results'].get(k, {}).get('first_s', float('nan')) * 1e3:18.1f}"
                                 for k in names))
    return "\n".join(lines)


def memory_rows():
    """Peak memory (tracemalloc) of one primal and one dual meta-gradient, against the inputs."""
    out = []
    for T, n, m, d, K in [(8, 10, 15, 784, 5), (8, 10, 15, 784, 20), (8, 10, 15, 784, 50),
                          (32, 10, 15, 784, 5), (8, 10, 15, 3136, 5), (8, 100, 100, 1024, 10)]:
        data = problem(T, n, m, d)
        inputs = sum(a.nbytes for a in data)
        row = {"config": dict(T=T, n=n, m=m, d=d, K=K), "inputs_bytes": inputs}
        for form in ("primal", "dual"):
            refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K, form=form)  # imports, caches
            tracemalloc.start()
            refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K, form=form)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            row[form + "_peak_bytes"] = peak
        # O(T (K n + n d + m d + n^2)) working memory: casts of the inputs, states, Gram matrices
        row["bound_bytes"] = 8 * T * (K * n + (n + m) * d + n * n + m * n + 4 * d)
        out.append(row)
    return out


SHARING = {"one thread": (None, False), "task groups, BLAS free": ("groups", False),
           "task groups, BLAS held": ("groups", True), "pairs, BLAS held": ("pairs", True)}


def thread_rows(min_time):
    """Thread use: refmaml's automatic form computed in one thread, with its tasks in groups over
    the cores (the BLAS library free, and held to one thread), with the dual form's pairs of
    products in two threads, and as ``refmaml.policy.sharing`` decides (``default``)."""
    rows = []
    decide = policy.sharing
    for T, n, m, d, K in CONFIGS + [(64, 10, 15, 784, 5), (64, 10, 15, 4096, 5), (128, 25, 25, 784, 10),
                                    (32, 100, 100, 1024, 10)] + GPU_TARGET:
        data = problem(T, n, m, d)

        def call(data=data, K=K):
            return refmaml.meta_value_and_grad(*data, inner_lr=ALPHA, inner_steps=K)

        p = validated.meta(models.get("logistic"), *data, inner_lr=ALPHA, inner_steps=K)
        form, work = policy.plan(p, "auto")
        mode, hold = decide(p, form, work)
        row = {"config": dict(T=T, n=n, m=m, d=d, K=K), "form": form, "flops": work,
               "default": next(k for k, v in SHARING.items() if v == ((mode, hold) if mode else (None, False)))}
        try:
            for name, choice in SHARING.items():
                if choice[0] == "pairs" and form != "dual":
                    continue
                policy.sharing = lambda *a, choice=choice: choice
                row[name] = measure(call, min_time=min_time)[2]
        finally:
            policy.sharing = decide
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two small configurations")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--float32", action="store_true", help="all implementations in float32")
    parser.add_argument("--memory", action="store_true", help="measure peak memory instead of time")
    parser.add_argument("--threads", action="store_true",
                        help="measure thread use: one BLAS thread, tasks split over two threads")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeated calls per timing")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--keep-env", action="store_true", help="keep OPENBLAS_* variables")
    parser.add_argument("--groups", help="comma-separated groups to run (e.g. 'GPU target', 'networks')")
    parser.add_argument("--keep-freed-blocks", action="store_true",
                        help="raise glibc's mmap and trim thresholds first, as refmaml demo and train do")
    args = parser.parse_args(argv)
    kept = _malloc.keep_freed_blocks() if args.keep_freed_blocks else False
    info = {**machine(), "keep_freed_blocks": kept}
    print(json.dumps(info))
    if args.threads:
        rows = thread_rows(args.min_time)
        for r in rows:
            c = r["config"]
            head = f"({c['T']}, {c['n']}, {c['m']}, {c['d']}, {c['K']}) {r['form']:>6}"
            head += f" {r['flops'] / 1e6:7.0f} Mflop"
            times = ", ".join(f"{name} {r[name] * 1e3:.2f} ms" for name in SHARING if name in r)
            print(f"{head}: {times}; default: {r['default']}")
        result = {"machine": info, "threads": rows}
    elif args.memory:
        rows = memory_rows()
        for r in rows:
            c = r["config"]
            mib = {k.split("_")[0]: r[k] / 2**20
                   for k in ("inputs_bytes", "primal_peak_bytes", "dual_peak_bytes", "bound_bytes")}
            print(f"{c}: inputs {mib['inputs']:.1f} MiB, primal peak {mib['primal']:.1f} MiB, "
                  f"dual peak {mib['dual']:.1f} MiB, bound {mib['bound']:.1f} MiB")
        result = {"machine": info, "memory": rows}
    else:
        impls = {f"refmaml {form}": refmaml_impl(form, args.backend) for form in ("primal", "dual", "auto")}
        device = "cuda" if args.backend == "cupy" else "cpu"
        for build in (lambda: torch_impls(device), jax_impl):
            try:
                impls.update(build())
            except ImportError as exc:
                print(f"skipped a peer: {exc}")
        gemm, bandwidth = ceilings(args.backend)
        print(f"ceilings: GEMM {gemm / 1e9:.1f} GFLOP/s, memory {bandwidth / 1e9:.1f} GB/s")
        groups = {"configurations": QUICK, "GPU target": GPU_TARGET} if args.quick else \
            {"configurations": CONFIGS, "K sweep": K_SWEEP, "d sweep": D_SWEEP, "GPU target": GPU_TARGET}
        if args.groups:
            groups = {k: v for k, v in groups.items() if k in args.groups.split(",")}
        result = {"machine": info, "ceilings": {"gemm_flops": gemm, "bandwidth_bytes": bandwidth},
                  "dtype": "float32" if args.float32 else "float64", "backend": args.backend}
        for title, configs in groups.items():
            rows = [run_config(c, impls, args, gemm, bandwidth) for c in configs]
            result[title] = rows
            print(f"\n{title} (median per call; x = ratio to refmaml's fastest form; ! = disagrees)")
            print(table(rows))
        if args.backend == "numpy" and not args.quick and not args.float32 and \
                (not args.groups or "networks" in args.groups.split(",")):
            import networks  # benchmarks/networks.py: MLPs, and meta-training iterations per second
            print("\nnetworks (median per call; x = ratio to refmaml)")
            result["networks"] = networks.meta_gradients(args.min_time)
            result["network training"] = networks.training(1000)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
