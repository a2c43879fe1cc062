"""The speed policy (refmaml.policy): the form "auto" takes by the cost formulas of
derivations/dual.md (G8), and task groups in threads that change no bit of the result."""

import ast
import contextlib
import inspect
import pathlib

import numpy as np
import pytest

import refmaml
from refmaml import _threads, _xp, dual, maml, models, policy, problem


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
    (32, 10, 15, 4096, 2) on the SkylakeX kernels); with two tasks the same shapes stay in one
    thread, and primal."""
    monkeypatch.setattr(_threads, "blas_kernels", lambda: ("skylakex",))
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


def test_a_meta_gradient_asks_the_policy_through_one_entry():
    """``meta_value_and_grad`` names of the policy only the forms, the context of its validation
    and :func:`policy.run`, which it calls once; how the call is planned and shared stays behind it."""
    source = inspect.getsource(maml.meta_value_and_grad)
    used = {node.attr for node in ast.walk(ast.parse(source.strip()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "policy"}
    assert used == {"FORMS", "validating", "run"}
    assert source.count("policy.run(") == 1


@pytest.mark.parametrize("way", ["one thread", "pairs", "groups"])
def test_run_computes_as_the_policy_decides(way, monkeypatch):
    """``policy.run`` hands ``compute`` the problem (or each task group), the chosen form and
    whether to compute in pairs, and returns the per-task results in task order."""
    args = _problem(7, "logistic", T=5, n=4, m=6, d=8)
    p = problem.meta(models.get("logistic"), *args.values(), inner_lr=0.2, inner_steps=2)
    monkeypatch.setattr(_threads, "CORES", 2)
    decided = {"one thread": (None, False), "pairs": ("pairs", True), "groups": ("groups", True)}[way]
    monkeypatch.setattr(policy, "sharing", lambda *a: decided)
    calls = []

    def compute(part, chosen, pairs):
        calls.append((part.tasks, chosen, pairs))
        return maml.primal(part, first_order=False, lr_grad=False)

    losses, g, rates = policy.run(p, "primal", lr_grad=False, compute=compute)
    want = maml.primal(p, first_order=False, lr_grad=False)
    assert rates is None and np.array_equal(losses, want[0]) and np.array_equal(g, want[1])
    expected = {"one thread": [(5, "primal", False)], "pairs": [(5, "primal", True)],
                "groups": [(2, "primal", False), (3, "primal", False)]}[way]
    assert sorted(calls) == sorted(expected)
    with pytest.raises(ValueError, match="form='dual' needs rates"):
        policy.run(problem.meta(models.get("logistic"), *args.values(), inner_lr=np.full(8, 0.2),
                                inner_steps=2, l2=0.1), "dual", lr_grad=False, compute=compute)


def test_the_array_module_schedules_no_threads():
    """``_xp`` is a plain module of namespaces, dtypes and devices: it starts no thread and imports
    nothing that does (the finiteness check in two threads is the policy's, ``validating``)."""
    tree = ast.parse(pathlib.Path(_xp.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.update([node.module.split(".")[0]] if node.level == 0 else [a.name for a in node.names])
    assert not imported & {"threading", "concurrent", "multiprocessing", "_threads", "threadpoolctl"}


def test_single_threaded_products_follow_the_blas_kernel(monkeypatch):
    """OpenBLAS computes a product on one thread up to 524,287 multiply-adds whatever its kernel,
    up to 10^6 where the kernel has its small-matrix path (SkylakeX), never beyond; the kernel is
    read only in between."""
    def unread():
        raise AssertionError("the kernel was read")

    monkeypatch.setattr(_threads, "blas_kernels", unread)
    assert policy.single_threaded(25 * 25 * 784) and not policy.single_threaded(100 * 100 * 1024)
    for kernels, between in ((("skylakex",), True), (("cooperlake",), True), (("haswell",), False),
                             (("sandybridge",), False), (("skylakex", None), False), ((), False)):
        monkeypatch.setattr(_threads, "blas_kernels", lambda kernels=kernels: kernels)
        assert policy.single_threaded(25 * 25 * 850) == between
        assert policy.single_threaded(1e6) == between and not policy.single_threaded(1e6 + 1)


def test_a_task_alone_and_in_a_batch_agree_between_the_bounds():
    """At (25, 25, 850) one task's Gram product has 531,250 multiply-adds: one thread in OpenBLAS
    with the SkylakeX kernels, two (and other bits) with the Haswell and Sandybridge kernels, where
    the policy holds no BLAS thread for it. On the kernel this process runs, a task alone and the
    same task in a batch large enough to share the cores give the same bits."""
    args = _problem(8, "logistic", T=12, n=25, m=25, d=850)
    kw = dict(inner_lr=0.1, inner_steps=2, form="dual", reduction="none")
    batch = refmaml.meta_value_and_grad(*args.values(), **kw)
    for t in (0, 11):
        alone = refmaml.meta_value_and_grad(*(a[t] if a.ndim > 1 else a for a in args.values()), **kw)
        assert np.array_equal(alone[0], batch[0][t]) and np.array_equal(alone[1], batch[1][t])


def test_validation_reads_large_arrays_in_two_threads_where_the_policy_holds_blas(monkeypatch):
    """``policy.validating`` gives the validation its finiteness check: the plain one for small
    arrays, the two-thread one (the same answers) where it holds BLAS."""
    small = np.ones((2, 3, 4))
    with policy.validating(small, small) as finite:
        assert finite is _xp.numpy_finite
    monkeypatch.setattr(policy, "HOLD_ELEMENTS", 0)
    monkeypatch.setattr(policy, "PAIRED_CHECK", 0)
    monkeypatch.setattr(_threads, "CORES", 2)
    with policy.validating(small, small) as finite:
        assert finite is policy.finite_in_two_threads
    arrays = [np.ones(5), np.ones((3, 4)), np.ones((2, 3, 4)), np.ones(7)]
    assert finite(*arrays)
    for k in range(len(arrays)):
        bad = [a.copy() for a in arrays]
        bad[k].reshape(-1)[-1] = np.nan
        assert not finite(*bad) and not _xp.numpy_finite(*bad)
