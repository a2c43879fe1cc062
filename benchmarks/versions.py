"""refmaml's own three forms on every benchmark configuration, for comparing two versions.

Prints one JSON object, ``{"(T, n, m, d, K)|form": seconds}`` (the median of five timings of
about 0.1 s each), for whichever refmaml the interpreter imports. To compare two checkouts,
interleave runs of this script under each (old, new, old, new, ...) and take each entry's best:

    for r in 1 2 3; do
      PYTHONPATH=../old python benchmarks/versions.py > old-$r.json
      python benchmarks/versions.py > new-$r.json
    done

benchmarks/README.md, "The CPU speed work, measured", was made so.
"""

import json
import statistics
import time
import timeit

from bench import CONFIGS, D_SWEEP, GPU_TARGET, K_SWEEP

import numpy as np
import refmaml


def main():
    out = {}
    for config in dict.fromkeys(CONFIGS + K_SWEEP + D_SWEEP + GPU_TARGET):
        T, n, m, d, K = config
        rng = np.random.default_rng(sum(config))
        data = (0.1 * rng.standard_normal(d), rng.standard_normal((T, n, d)),
                rng.integers(0, 2, (T, n)).astype(float), rng.standard_normal((T, m, d)),
                rng.integers(0, 2, (T, m)).astype(float))
        for form in ("primal", "dual", "auto"):
            def call(form=form):
                return refmaml.meta_value_and_grad(*data, inner_lr=0.1, inner_steps=K, form=form)

            call()
            start = time.perf_counter()
            call()
            number = max(1, int(0.1 / (time.perf_counter() - start)))
            out[f"{config}|{form}"] = statistics.median(timeit.timeit(call, number=number) / number
                                                        for _ in range(5))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
