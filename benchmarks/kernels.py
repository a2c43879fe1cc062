"""The speed policy's decisions on whichever BLAS kernel this process runs (benchmarks/README.md,
"The policy on other kernels").

For the configurations of the form table ("Choosing the form"): the primal and the dual form as
the policy shares the cores. For those of the thread table ("Thread use"): ``form="auto"`` in one
thread, with its tasks in two groups (BLAS free, and held to one thread), with the dual form's
pairs of products (BLAS held), and whether each way gives the bits of one thread. Prints one JSON
object. To compare kernels, run it under each in turn, interleaved, and take each entry's best:

    for r in 1 2; do
      for k in Haswell Sandybridge SkylakeX; do
        OPENBLAS_CORETYPE=$k python benchmarks/kernels.py > $k-$r.json
      done
    done

(OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when it loads; SkylakeX needs an AVX-512 processor.)
"""

import json
import sys
import time
import timeit

import numpy as np

import refmaml
from refmaml import models, policy, problem

FORM_TABLE = [(8, 100, 100, 1024, 10), (8, 100, 100, 1024, 5), (16, 50, 50, 1024, 10), (16, 50, 50, 1024, 4),
              (32, 10, 15, 4096, 2), (32, 25, 25, 784, 2), (32, 10, 15, 784, 1), (32, 10, 15, 784, 2),
              (256, 10, 15, 64, 2), (32, 10, 15, 64, 5), (32, 25, 25, 784, 5), (32, 10, 15, 1024, 5)]
THREAD_TABLE = [(32, 10, 15, 64, 5), (32, 25, 25, 784, 5), (32, 25, 25, 784, 20), (256, 10, 15, 64, 5),
                (8, 100, 100, 1024, 10), (32, 10, 15, 4096, 5), (64, 10, 15, 784, 5), (64, 10, 15, 4096, 5),
                (128, 25, 25, 784, 10), (32, 100, 100, 1024, 10), (32, 25, 25, 850, 5), (32, 40, 40, 784, 5),
                (1024, 25, 25, 784, 10)]
MODES = {"one thread": (None, False), "groups, BLAS free": ("groups", False),
         "groups, BLAS held": ("groups", True), "pairs, BLAS held": ("pairs", True)}


def data(T, n, m, d):
    rng = np.random.default_rng(T + n + m + d)
    return (0.1 * rng.standard_normal(d), rng.standard_normal((T, n, d)) / np.sqrt(d),
            rng.integers(0, 2, (T, n)).astype(float), rng.standard_normal((T, m, d)) / np.sqrt(d),
            rng.integers(0, 2, (T, m)).astype(float))


def best(call, budget=0.15):
    """The best of five timings of about ``budget / 5`` seconds each, after a pause for BLAS's
    spinning threads to go to sleep."""
    time.sleep(0.05)
    call()
    start = time.perf_counter()
    call()
    number = max(1, int(budget / 5 / max(time.perf_counter() - start, 1e-6)))
    return min(timeit.repeat(call, number=number, repeat=5)) / number


def main():
    from threadpoolctl import threadpool_info

    out = {"kernel": [lib.get("architecture") for lib in threadpool_info() if lib["user_api"] == "blas"],
           "forms": {}, "threads": {}}
    for T, n, m, d, K in FORM_TABLE:
        args = data(T, n, m, d)
        p = problem.meta(models.get("logistic"), *args, inner_lr=0.5, inner_steps=K)
        row = {"auto": policy.choose(p, "auto")}
        for form in ("primal", "dual"):
            row[form] = best(lambda form=form: refmaml.meta_value_and_grad(*args, inner_lr=0.5, inner_steps=K,
                                                                           form=form))
        out["forms"][str((T, n, m, d, K))] = row
    decide = policy.sharing
    for T, n, m, d, K in THREAD_TABLE:
        args = data(T, n, m, d)
        p = problem.meta(models.get("logistic"), *args, inner_lr=0.5, inner_steps=K)
        form, work = policy.plan(p, "auto")
        default = tuple(decide(p, form, work))
        row = {"form": form, "flops": work,
               "default": next((k for k, v in MODES.items() if v == (default if default[0] else (None, False))),
                               str(default))}

        def call():
            return refmaml.meta_value_and_grad(*args, inner_lr=0.5, inner_steps=K, form=form, reduction="none")

        try:
            for name, choice in MODES.items():
                if choice[0] == "pairs" and form != "dual":
                    continue
                policy.sharing = lambda *a, choice=choice: choice
                row[name] = best(call, budget=0.3 if T * d < 1e5 else 0.6)
                result = call()
                if name == "one thread":
                    alone = result
                else:
                    row[name + " same bits"] = all(np.array_equal(a, b) for a, b in zip(alone, result, strict=True))
        finally:
            policy.sharing = decide
        row["default time"] = best(call)
        out["threads"][str((T, n, m, d, K))] = row
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
