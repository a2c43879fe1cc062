"""The share of validation in a small meta-gradient call (benchmarks/README.md, "Validation").

The validation alone (``problem.meta(...)`` in the context ``policy.validating`` gives it, plus the
flag and option checks the call makes) against the whole ``refmaml.meta_value_and_grad`` call, on
the same inputs: logistic, inner_lr 0.3, (T, n, m, d, K) = (32, 10, 15, 64, 5) unless given. Each
is the median of ``timeit.repeat(number=200, repeat=25)``; prints one JSON object in microseconds.
For whichever refmaml the interpreter imports (to compare two checkouts, interleave runs under
each, as in ``versions.py``):

    python benchmarks/validation.py [T n m d K]
"""

import inspect
import json
import statistics
import sys
import timeit

import numpy as np

import refmaml
from refmaml import _validate, maml, models, policy, problem


def main(argv):
    T, n, m, d, K = (int(a) for a in argv) if argv else (32, 10, 15, 64, 5)
    rng = np.random.default_rng(0)
    theta = 0.1 * rng.standard_normal(d)
    Xs, Xq = rng.standard_normal((T, n, d)), rng.standard_normal((T, m, d))
    ys, yq = rng.integers(0, 2, (T, n)).astype(float), rng.integers(0, 2, (T, m)).astype(float)
    given = "finite" in inspect.signature(problem.meta).parameters  # the context gives the check

    def validation():
        problem.flag(False, "first_order")
        problem.flag(False, "lr_grad")
        _validate.choice("mean", "reduction", maml.REDUCTIONS)
        _validate.choice("auto", "form", policy.FORMS)
        with policy.validating(Xs, Xq) as finite:
            extra = {"finite": finite} if given else {}
            return problem.meta(models.get("logistic"), theta, Xs, ys, Xq, yq, l2=0.0, inner_lr=0.3,
                                inner_steps=K, **extra)

    def call():
        return refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.3, inner_steps=K)

    out = {"config": [T, n, m, d, K]}
    for name, f in (("validation_us", validation), ("call_us", call)):
        f()
        out[name] = 1e6 * statistics.median(timeit.repeat(f, number=200, repeat=25)) / 200
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
