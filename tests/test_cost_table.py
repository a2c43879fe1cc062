"""The cost table of derivations/costs.md is measured: (K1)-(K9).

Each method of the MAML family runs on two fixed small instances (a logistic model and a tanh MLP)
with refmaml's own functions, while the network's four passes (models.md (H8)-(H11)) are counted and
the live support-set points (what ``Model.grad_hvp`` returns: a gradient and the cache of its
Hessian-vector product) are tracked. The counts are deterministic integers: the tests assert them
exactly against the formulas of ``refmaml.costs`` and against the table printed in costs.md. Peak
memory (tracemalloc) depends on NumPy's allocations, so it is held only to loose stated bounds, and
the printed peaks to 25 %. No timing is asserted.

``python -m tests.test_cost_table`` prints the measured tables that costs.md shows.
"""

import math
import pathlib
import re
import tracemalloc
import weakref

import numpy as np
import pytest

import refmaml
from refmaml import check, costs, policy, problem
from refmaml.models import MLP, Model, heads, networks

ROOT = pathlib.Path(__file__).resolve().parent.parent
KS = (1, 2, 4, 8)
RATE = 0.1
PASSES = ("forward", "vjp", "jvp", "r_vjp")


def instance(kind):
    """``(model, theta, data, sizes)``: T = 2 tasks; logistic d = 20, n = 200, m = 10 (n large enough
    that a point, n curvature weights per task, stands out of the allocator's noise); MLP 4-32-32-1
    tanh with the mse head, n = 20, m = 10."""
    rng = np.random.default_rng(0)
    T = 2
    if kind == "logistic":
        n, m, d = 200, 10, 20
        model = Model("logistic", networks.Linear(1), heads.LOGISTIC)  # its own object, to instrument
        theta = 0.1 * rng.standard_normal(d)
        data = dict(Xs=rng.standard_normal((T, n, d)) / np.sqrt(d), ys=rng.integers(0, 2, (T, n)),
                    Xq=rng.standard_normal((T, m, d)) / np.sqrt(d), yq=rng.integers(0, 2, (T, m)))
    else:
        n, m, d = 20, 10, 4
        model = MLP((4, 32, 32, 1), "tanh", "mse")
        theta = model.init(0)
        data = dict(Xs=rng.standard_normal((T, n, d)), ys=rng.standard_normal((T, n)),
                    Xq=rng.standard_normal((T, m, d)), yq=rng.standard_normal((T, m)))
    return model, theta, data, dict(T=T, n=n, m=m, d=d)


def every(K):
    """The checkpoint spacing s = ceil(sqrt K) of (K8)."""
    return math.isqrt(K - 1) + 1 if K > 1 else 1


def runs(model, theta, data, K):
    """{method: a call of refmaml's own function with K inner steps}."""
    meta = dict(inner_lr=RATE, inner_steps=K, model=model)

    def prob():
        return problem.meta(model, theta, **data, inner_lr=RATE, inner_steps=K)

    out = {
        "maml": lambda: refmaml.meta_value_and_grad(theta, **data, **meta, form="primal"),
        "first-order": lambda: refmaml.meta_value_and_grad(theta, **data, **meta, form="primal",
                                                           first_order=True),
        "reptile": lambda: refmaml.reptile_direction(theta, data["Xs"], data["ys"], **meta),
        "meta-sgd": lambda: refmaml.meta_value_and_grad(
            theta, **data, **{**meta, "inner_lr": np.full(theta.shape, RATE)}, form="primal", lr_grad=True),
        "first-order meta-sgd": lambda: refmaml.meta_value_and_grad(
            theta, **data, **{**meta, "inner_lr": np.full(theta.shape, RATE)}, form="primal", lr_grad=True,
            first_order=True),
        "checkpointed": lambda: costs.checkpointed_primal(prob(), every(K)),
        "recomputed": lambda: costs.recomputed_primal(prob()),
    }
    if isinstance(model.network, networks.Linear):
        out["dual"] = lambda: refmaml.meta_value_and_grad(theta, **data, **meta, form="dual")
    return out


class _Point:
    """Stands for one ``hvp`` closure; counts itself alive until it is collected."""

    def __init__(self, meter, hvp):
        self.hvp = hvp
        meter.alive += 1
        meter.most = max(meter.most, meter.alive)
        weakref.finalize(self, meter.release)

    def __call__(self, *a, **k):
        return self.hvp(*a, **k)


class Meter:
    """Counts the network's passes of one call (nested calls, such as the linear network's
    ``r_vjp`` reusing its ``vjp``, count once, as the outer pass) with the examples each pass ran
    on, and the most support-set points alive at once."""

    def __init__(self, model):
        self.model, self.calls, self.depth, self.alive, self.most = model, [], 0, 0, 0

    def release(self):
        self.alive -= 1

    def _wrap(self, name, original):
        def counted(*a, **k):
            self.depth += 1
            try:
                out = original(*a, **k)
            finally:
                self.depth -= 1
            if self.depth == 0:  # the examples: the outputs' axis 1, or that of the adjoints going in
                examples = {"forward": lambda: out[0], "jvp": lambda: out[0], "vjp": lambda: a[1],
                            "r_vjp": lambda: a[3]}[name]().shape[1]
                self.calls.append((name, examples))
            return out
        return counted

    def run(self, fn):
        net, model = self.model.network, self.model
        grad_hvp = model.grad_hvp

        def tracked(*a, **k):
            g, hvp = grad_hvp(*a, **k)
            return g, _Point(self, hvp)

        for name in PASSES:
            setattr(net, name, self._wrap(name, getattr(net, name)))
        model.grad_hvp = tracked
        try:
            result = fn()
        finally:
            for name in PASSES:
                delattr(net, name)
            del model.grad_hvp
        return result

    def passes(self):
        return {name: sum(1 for c, _ in self.calls if c == name) for name in PASSES}

    def flops(self, d, shape):
        """Flops of the counted gradients (backward passes) and HVPs (R-backward passes), at the
        examples each ran on: (M9), (N9), per call (all tasks)."""
        net = self.model.network
        return sum(net.gradient_flops(n, d, shape) if name == "vjp" else net.hvp_flops(n, d, shape)
                   for name, n in self.calls if name in ("vjp", "r_vjp"))


def measure(kind, method, K):
    model, theta, data, size = instance(kind)
    meter = Meter(model)
    meter.run(runs(model, theta, data, K)[method])
    return meter, size, theta.shape


def formula(method, K):
    """``(passes, points alive at once)`` that (K2)-(K5), (K8), (K9) predict for refmaml's code."""
    if method == "dual":
        return dict.fromkeys(("forward", "backward", "r_forward", "r_backward"), 0), 0
    if method == "checkpointed":
        counts, _, points = costs.checkpointed_passes(K, every(K))
        return counts, points
    if method == "recomputed":
        return costs.recomputed_passes(K), 1
    return costs.passes(method, K), costs.kept_points(method, K)


def _as_formula(passes):
    return dict(zip(("forward", "backward", "r_forward", "r_backward"), passes.values(), strict=True))


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
@pytest.mark.parametrize("K", KS)
def test_counted_passes_are_the_formulas(kind, K):
    """(K2)-(K5), (K8), (K9): the passes of every method and the points it holds at once, exactly."""
    model, theta, data, _ = instance(kind)
    for method in runs(model, theta, data, K):
        meter, _, _ = measure(kind, method, K)
        want, points = formula(method, K)
        assert _as_formula(meter.passes()) == want, (kind, method, K)
        assert meter.most == points, (kind, method, K)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_flops_of_the_counted_passes(kind):
    """(K1): the flops of the counted passes, each at the examples it ran on, are refmaml.costs.flops;
    for exact MAML they are also the primal count that refmaml.policy.costs compares with (G8)."""
    for K in KS:
        for method in costs.METHODS:
            meter, size, shape = measure(kind, method, K)
            n, m, d, T = size["n"], size["m"], size["d"], size["T"]
            extra = 2 * K * math.prod(shape) * T if "meta-sgd" in method else 0
            assert T * meter.flops(d, shape) + extra == costs.flops(meter.model, method, T, n, m, d, shape, K)
        model, theta, data, _ = instance(kind)
        primal, _ = policy.costs(problem.meta(model, theta, **data, inner_lr=RATE, inner_steps=K))
        assert costs.flops(model, "maml", T, n, m, d, shape, K) == T * primal


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_schedules_compute_the_meta_gradient(kind):
    """(K8), (K9) trade memory for time and change nothing else: the same operations in the same
    order as the stored-iterate reverse pass, so the results agree to rounding (1e-14 relative
    bounds the accumulation of a few ulps over 8 steps; on one machine they agree to the bit)."""
    model, theta, data, _ = instance(kind)
    for K in KS:
        p = problem.meta(model, theta, **data, inner_lr=RATE, inner_steps=K)
        _, g, _ = refmaml.maml.primal(p, first_order=False, lr_grad=False)
        for schedule in (costs.checkpointed_primal(p, every(K)), costs.checkpointed_primal(p, 1),
                         costs.checkpointed_primal(p, K), costs.recomputed_primal(p)):
            assert check.relative_error(schedule[1], g) <= 1e-14


def test_imaml_counts():
    """(K6): implicit MAML has no K; its gradient solve after the query gradient is N_cg + 1
    Hessian-vector products (N_cg conjugate-gradient iterations and the final residual), and it never
    holds more than two points, whatever the inner solve's length."""
    for kind in ("logistic", "mlp"):
        model, theta, data, _ = instance(kind)
        meter = Meter(model)
        _, _, info = meter.run(lambda: refmaml.imaml_value_and_grad(theta, **data, lam=2.0, model=model))
        m = data["Xq"].shape[1]
        query = meter.calls.index(("vjp", m))
        after = meter.calls[query + 1:]
        assert [c for c, _ in after] == ["jvp", "r_vjp"] * (info["cg_iterations"] + 1)
        assert meter.most == 2
        gradients = sum(1 for c, _ in meter.calls[:query] if c == "vjp")
        assert gradients == info["inner_iterations"] + 1  # one at theta, one per Newton step


def peak(fn):
    fn()  # imports and caches
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def point_numbers(kind):
    """Numbers one point keeps per task (K2): n curvature weights for the logistic model (the data
    is shared); for the MLP the iterate (|theta|) and, per example, the input of every layer but the
    first and the adjoint of every layer's output (models.md (H8), (H9))."""
    model, theta, data, size = instance(kind)
    if kind == "logistic":
        return size["n"]
    hidden = sum(model.sizes[1:-1])  # each hidden width is the input of an activation and of a Linear
    inputs, adjoints = 2 * hidden, 2 * hidden + model.sizes[-1]  # adjoints: every layer's output
    return theta.size + size["n"] * (inputs + adjoints)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_memory_grows_with_K_only_where_points_are_kept(kind):
    """(K2)-(K4), (K8), (K9): from K = 2 to K = 8 exact MAML's peak grows by 6 points, within a
    factor 2 either way of the numbers (K2) counts (allocator rounding, temporaries of the passes);
    first-order MAML's, Reptile's and the recomputing schedule's grow by less than half a point (the
    same work on more steps), and the checkpointed one by less than half of exact MAML's growth."""
    model, theta, data, size = instance(kind)
    point = 8 * size["T"] * point_numbers(kind)
    peaks = {K: {m: peak(f) for m, f in runs(model, theta, data, K).items()} for K in (2, 8)}
    growth = {m: peaks[8][m] - peaks[2][m] for m in peaks[2]}
    assert 0.5 * 6 * point <= growth["maml"] <= 2 * 6 * point, growth["maml"] / (6 * point)
    for method in ("first-order", "reptile", "recomputed"):
        assert growth[method] <= 0.5 * point, (method, growth[method] / point)
    assert growth["checkpointed"] <= 0.5 * growth["maml"]
    imaml = peak(lambda: refmaml.imaml_value_and_grad(theta, **data, lam=2.0, model=model))
    assert imaml <= peaks[8]["first-order"] + 4 * point, imaml / point  # two points and CG's vectors


# ------------------------------------------------------------------------- the tables of costs.md

ROWS = [  # method, the formula as costs.md writes it (gradients / HVPs; points)
    ("maml", "exact MAML, primal (K2)", "K + 1 / K", "K"),
    ("dual", "exact MAML, dual (K7)", "0 / 0", "0"),
    ("first-order", "first-order MAML (K3)", "K + 1 / 0", "min(K, 2)"),
    ("reptile", "Reptile (K4)", "K / 0", "min(K, 2)"),
    ("meta-sgd", "Meta-SGD (K5)", "K + 1 / K", "K"),
    ("first-order meta-sgd", "first-order Meta-SGD (K5)", "K + 1 / 0", "min(K, 2)"),
    ("checkpointed", "checkpoints every s = ceil(sqrt K) (K8)", "2K + 1 / K", "min(s, K)"),
    ("recomputed", "nothing stored, recomputed (K9)", "K + K(K+1)/2 + 1 / K", "1"),
]


def count_table():
    lines = ["| method | gradients / HVPs | K = " + " | K = ".join(map(str, KS))
             + " | points at once | K = " + " | K = ".join(map(str, KS)) + " |",
             "|---|---|" + "---|" * len(KS) + "---|" + "---|" * len(KS)]
    for method, name, passes, points in ROWS:
        counted, held = [], []
        for K in KS:
            kinds = ["logistic"] if method == "dual" else ["logistic", "mlp"]
            seen = {(tuple(meter.passes().values()), meter.most)
                    for meter in (measure(kind, method, K)[0] for kind in kinds)}
            assert len(seen) == 1, (method, K, seen)  # the same counts on both instances
            (f, b, jf, jb), most = seen.pop()
            assert f == b and jf == jb, (method, K)
            counted.append(f"{b} / {jb}")
            held.append(str(most))
        lines.append(f"| {name} | {passes} | " + " | ".join(counted) + f" | {points} | " + " | ".join(held) + " |")
    return "\n".join(lines)


def memory_table():
    lines = ["| method | instance | peak KiB, K = " + " | K = ".join(map(str, KS)) + " |",
             "|---|---|" + "---|" * len(KS)]
    for kind in ("logistic", "mlp"):
        model, theta, data, _ = instance(kind)
        for method, name, _, _ in ROWS:
            cells = []
            for K in KS:
                fns = runs(model, theta, data, K)
                if method not in fns:
                    break
                cells.append(f"{peak(fns[method]) / 1024:.0f}")
            if cells:
                lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
        imaml = peak(lambda: refmaml.imaml_value_and_grad(theta, **data, lam=2.0, model=model))
        lines.append(f"| iMAML (K6), which has no K | {kind} | " + " | ".join([f"{imaml / 1024:.0f}"] * len(KS)) + " |")
    return "\n".join(lines)


def _block(name):
    text = (ROOT / "derivations" / "costs.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- {name}: python -m tests.test_cost_table -->\n(.*?)\n<!-- end {name} -->", text, re.S)
    assert m, f"costs.md has no {name} block"
    return m.group(1)


def test_count_table_in_costs_md_is_measured():
    """The table of counts in costs.md is what the instruments count, cell for cell."""
    assert _block("counts") == count_table()


def test_memory_table_in_costs_md_is_measured():
    """The peaks in costs.md are this machine's to 25 %: NumPy's allocation sizes and temporaries
    may differ between versions, the growth in K (the point of the table) does not."""
    shown, measured = _block("memory").splitlines(), memory_table().splitlines()
    assert len(shown) == len(measured)
    for a, b in zip(shown[2:], measured[2:], strict=True):
        ca, cb = a.split(" | "), b.split(" | ")
        assert ca[:2] == cb[:2]
        for x, y in zip(ca[2:], cb[2:], strict=True):
            x, y = float(x.strip(" |")), float(y.strip(" |"))
            assert abs(x - y) <= 0.25 * y, (a, b)


if __name__ == "__main__":
    print("<!-- counts: python -m tests.test_cost_table -->")
    print(count_table())
    print("<!-- end counts -->\n")
    print("<!-- memory: python -m tests.test_cost_table -->")
    print(memory_table())
    print("<!-- end memory -->")


@pytest.mark.parametrize("call, name", [
    (lambda: costs.passes("maml", -3), "K"), (lambda: costs.passes("maml", 2.5), "K"),
    (lambda: costs.kept_points("maml", True), "K"), (lambda: costs.checkpointed_passes(5, 0), "every"),
    (lambda: costs.checkpointed_passes(5, -2), "every"), (lambda: costs.recomputed_passes(-4), "K"),
    (lambda: costs.flops("linear", "maml", -1, 5, 5, 3, (3,), 2), "T"),
    (lambda: costs.flops("linear", "maml", 2, 0, 5, 3, (3,), 2), "n"),
])
def test_cost_formulas_refuse_what_counts_nothing(call, name):
    """A negative, fractional or boolean count, or a checkpoint spacing below 1, is an error naming
    the argument (it would give negative or fractional counts, or divide by zero)."""
    with pytest.raises((TypeError, ValueError), match=rf"^{name} must be"):
        call()
