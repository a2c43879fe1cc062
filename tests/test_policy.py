"""The speed policy (refmaml.policy): the form "auto" takes by the cost formulas of
derivations/dual.md (G8), and task groups in threads that change no bit of the result."""

import numpy as np
import pytest

import refmaml
from refmaml import dual, maml, models, policy, problem


def _problem(seed, model, T, n, m, d, C=3):
    rng = np.random.default_rng(seed)
    shape, k = ((d,), 2) if model == "logistic" else ((d, C), C)
    return dict(theta=0.5 * rng.standard_normal(shape), Xs=rng.standard_normal((T, n, d)),
                ys=rng.integers(0, k, (T, n)), Xq=rng.standard_normal((T, m, d)),
                yq=rng.integers(0, k, (T, m)))


@pytest.mark.parametrize("n, d, K, expected", [(5, 784, 20, "dual"), (25, 64, 1, "primal"),
                                               (5, 784, 0, "primal"), (100, 50, 10, "primal"),
                                               (100, 1024, 10, "dual"), (100, 1024, 5, "primal")])
def test_auto_takes_the_cheaper_form(n, d, K, expected, monkeypatch):
    """(G8): the choice follows the cost formulas as weighted (``policy.weighted_costs``); at n = 100,
    d = 1024 the Gram products are large enough for OpenBLAS to thread them, and the dual form wins
    from K = 10 (measured: 7.8 against 10.1 ms at T = 8), not at K = 5 (8.3 against 6.0 ms)."""
    p = problem.meta(models.get("logistic"), *_problem(0, "logistic", 2, n, n, d).values(), inner_lr=0.1,
                     inner_steps=K)
    primal, dual_cost = policy.weighted_costs(p)
    assert (dual_cost < primal) == (expected == "dual")
    assert policy.choose(p, "auto") == expected
    called = []
    monkeypatch.setattr(dual, "value_and_grad", lambda *a, **k: called.append(1) or maml.primal(*a, **k))
    refmaml.meta_value_and_grad(*_problem(0, "logistic", 2, n, n, d).values(), inner_lr=0.1, inner_steps=K)
    assert bool(called) == (expected == "dual")


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_task_groups_in_threads_give_the_same_bits(form, monkeypatch):
    """Large NumPy calls run their tasks in groups over threads (``policy.THREAD_FLOPS``): every task
    is computed as in one call, so the results are identical, loss, gradient and rates."""
    p = _problem(3, "softmax", T=7, n=4, m=5, d=6)
    kw = dict(inner_lr=np.full((3, 1, 1), 0.3), inner_steps=3, model="softmax", lr_grad=True, form=form)
    monkeypatch.setattr(policy, "THREAD_FLOPS", float("inf"))
    one = refmaml.meta_value_and_grad(**p, **kw, reduction="none")
    monkeypatch.setattr(policy, "THREAD_FLOPS", 0.0)
    monkeypatch.setattr(policy.os, "cpu_count", lambda: 3)
    grouped = refmaml.meta_value_and_grad(**p, **kw, reduction="none")
    assert all(np.array_equal(a, b) for a, b in zip(one, grouped, strict=True))
