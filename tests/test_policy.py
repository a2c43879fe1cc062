"""The speed policy (refmaml.policy): the form "auto" takes by the cost formulas of
derivations/dual.md (G8), and task groups in threads that change no bit of the result."""

import contextlib

import numpy as np
import pytest

import refmaml
from refmaml import _threads, dual, maml, models, policy, problem


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
    monkeypatch.setattr(dual, "value_and_grad", lambda p, pairs=False, **k: called.append(1) or maml.primal(p, **k))
    refmaml.meta_value_and_grad(*_problem(0, "logistic", 2, n, n, d).values(), inner_lr=0.1, inner_steps=K)
    assert bool(called) == (expected == "dual")


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_task_groups_in_threads_give_the_same_bits(form, monkeypatch):
    """Large NumPy calls run their tasks in groups over threads (``policy.THREAD_FLOPS``): every task
    is computed as in one call, so the results are identical, loss, gradient and rates."""
    p = _problem(3, "softmax", T=7, n=4, m=5, d=6)
    kw = dict(inner_lr=np.full((3, 1, 1), 0.3), inner_steps=3, model="softmax", lr_grad=True, form=form)
    for name in ("THREAD_FLOPS", "UNHELD_THREAD_FLOPS", "PAIR_FLOPS"):
        monkeypatch.setattr(policy, name, float("inf"))
    one = refmaml.meta_value_and_grad(**p, **kw, reduction="none")
    for name in ("THREAD_FLOPS", "UNHELD_THREAD_FLOPS"):
        monkeypatch.setattr(policy, name, 0.0)
    monkeypatch.setattr(_threads, "CORES", 3)
    pr = problem.meta(models.get("softmax"), **p, inner_lr=kw["inner_lr"], inner_steps=3)
    assert policy.sharing(pr, form, 1.0)[0] == "groups"
    grouped = refmaml.meta_value_and_grad(**p, **kw, reduction="none")
    assert all(np.array_equal(a, b) for a, b in zip(one, grouped, strict=True))


@pytest.mark.parametrize("model", ["logistic", "softmax"])
def test_pairs_of_products_in_two_threads_give_the_same_bits(model, monkeypatch):
    """The dual form's pairs of products in two threads (``policy.PAIR_FLOPS``) are the products of
    one thread: the same bits, with and without learned rates."""
    p = _problem(4, model, T=6, n=5, m=7, d=40)
    for lr_grad in (False, True):
        kw = dict(inner_lr=0.2, inner_steps=4, model=model, form="dual", l2=0.1, reduction="none",
                  lr_grad=lr_grad)
        monkeypatch.setattr(policy, "PAIR_FLOPS", float("inf"))
        one = refmaml.meta_value_and_grad(**p, **kw)
        monkeypatch.setattr(policy, "PAIR_FLOPS", 0.0)
        pr = problem.meta(models.get(model), **p, inner_lr=0.2, inner_steps=4, l2=0.1)
        assert policy.sharing(pr, "dual", 1.0) == ("pairs", True)
        paired = refmaml.meta_value_and_grad(**p, **kw)
        assert all(np.array_equal(a, b) for a, b in zip(one, paired, strict=True))


@pytest.mark.parametrize("form, shape", [("dual", (8, 25, 25, 784)), ("primal", (4, 100, 100, 1024)),
                                         ("primal", (8, 25, 25, 784))])
def test_holding_blas_to_one_thread_changes_no_bit(form, shape, monkeypatch):
    """A call that holds the BLAS library to one thread (``policy.sharing``) computes only products
    whose bits do not depend on BLAS's thread count: the same results held or not. The shapes are
    large enough for OpenBLAS to thread their matrix-vector products when not held."""
    T, n, m, d = shape
    p = _problem(5, "logistic", T, n, m, d)
    kw = dict(inner_lr=0.1, inner_steps=3, form=form, reduction="none")
    pr = problem.meta(models.get("logistic"), **p, inner_lr=0.1, inner_steps=3)
    monkeypatch.setattr(policy, "PAIR_FLOPS", 0.0)
    monkeypatch.setattr(policy, "THREAD_FLOPS", 0.0)
    assert policy.sharing(pr, form, 1.0)[1]
    held = refmaml.meta_value_and_grad(**p, **kw)
    monkeypatch.setattr(_threads, "one_blas_thread", contextlib.nullcontext)
    free = refmaml.meta_value_and_grad(**p, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(held, free, strict=True))


def test_auto_counts_the_pairs_of_products_on_two_cores(monkeypatch):
    """Where the dual form computes its Gram products in pairs on two cores (``policy.PAIR_FLOPS``),
    ``auto`` counts them ``PAIR_SPEEDUP`` times cheaper (measured: 5.3 against 7.1 ms at
    (32, 10, 15, 4096, 2)); with two tasks the same shapes stay in one thread, and primal."""
    kw = dict(inner_lr=0.1, inner_steps=2)
    many = problem.meta(models.get("logistic"), *_problem(6, "logistic", 32, 10, 15, 4096).values(), **kw)
    assert policy.sharing(many, "dual", policy.plan(many, "dual")[1])[0] == "pairs"
    assert policy.choose(many, "auto") == "dual"
    few = problem.meta(models.get("logistic"), *_problem(6, "logistic", 2, 10, 15, 4096).values(), **kw)
    assert policy.choose(few, "auto") == "primal"
    monkeypatch.setattr(policy, "PAIR_FLOPS", float("inf"))
    assert policy.choose(many, "auto") == "primal"


def test_holding_blas_never_leaves_the_process_on_one_thread():
    """The hold is taken and given back in the main thread only (OpenBLAS ignores a thread count
    set from another thread once the main thread has set one): however holds in the main thread
    and in another thread overlap, the BLAS library's thread count afterwards is what it was."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading

    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    before = [c.get_num_threads() for c in blas.lib_controllers]
    inside, release = threading.Event(), threading.Event()

    def worker():
        with _threads.one_blas_thread():
            inside.set()
            release.wait(10)

    with _threads.one_blas_thread():
        thread = threading.Thread(target=worker)
        thread.start()
        assert inside.wait(10)
        assert all(c.get_num_threads() == 1 for c in blas.lib_controllers)
    release.set()
    thread.join()
    assert [c.get_num_threads() for c in blas.lib_controllers] == before


def test_a_forked_child_gets_its_own_worker_threads():
    """A fork copies the pool of worker threads but not the threads: a child that shares the cores
    (``_threads.both``, as the dual form's pairs do) must make its own pool, not wait forever on the
    parent's. Run in a fresh interpreter, away from the libraries this suite loads that object to
    a fork (JAX warns); a child that hung is killed by the time-outs."""
    import subprocess
    import sys

    program = (
        "import multiprocessing\n"
        "from refmaml import _threads\n"
        "def child():\n"
        "    return _threads.both(lambda: 3, lambda: 4)\n"
        "if __name__ == '__main__':\n"
        "    assert _threads.both(lambda: 1, lambda: 2) == (1, 2)  # the parent's pool exists\n"
        "    with multiprocessing.get_context('fork').Pool(1) as children:\n"
        "        print(children.apply_async(child).get(timeout=30))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 4)"
