"""Determinism and thread safety.

* The same seed gives the same training run, bit for bit.
* A task's results are the same bits whether it is computed alone or in a batch, on either
  form: each task runs the same sequence of operations. (The mean over tasks is NumPy's
  pairwise sum, so it can differ at rounding from summing single-task results in another
  order; RELIABILITY.md says where bit-identity holds and where it cannot.)
* The core functions hold no global mutable state: many threads calling them at once get
  exactly the answers of sequential calls.
"""

import concurrent.futures
import dataclasses

import numpy as np
import pytest

import refmaml
from refmaml import train

RNG = np.random.default_rng(42)


def _problem(model, T=5, n=4, m=6, d=7, C=3, rng=RNG):
    P = (d,) if model == "logistic" else (d, C)
    labels = (lambda s: rng.integers(0, 2, s).astype(float)) if model == "logistic" else \
        (lambda s: rng.integers(0, C, s))
    return (0.3 * rng.standard_normal(P), rng.standard_normal((T, n, d)), labels((T, n)),
            rng.standard_normal((T, m, d)), labels((T, m)))


@pytest.mark.parametrize("model", ["logistic", "softmax"])
@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("lr_grad", [False, True])
def test_a_task_alone_gives_the_bits_it_gives_in_a_batch(model, form, lr_grad):
    theta, Xs, ys, Xq, yq = _problem(model)
    rate = np.full(theta.shape, 0.3) if lr_grad else 0.3
    kw = dict(inner_lr=rate, inner_steps=3, model=model, form=form if not lr_grad else "primal",
              lr_grad=lr_grad)
    batch = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, reduction="none", **kw)
    for t in range(Xs.shape[0]):
        alone = refmaml.meta_value_and_grad(theta, Xs[t], ys[t], Xq[t], yq[t], **kw)
        for a, b in zip(alone, batch, strict=True):
            assert np.array_equal(a, b[t])
    mean = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
    for a, b in zip(mean, batch, strict=True):
        assert np.array_equal(a, np.mean(b, axis=0))


def test_adapt_and_imaml_alone_and_batched():
    theta, Xs, ys, Xq, yq = _problem("softmax")
    batch = refmaml.adapt(theta, Xs, ys, inner_lr=0.2, inner_steps=4, model="softmax")
    _, _, info = refmaml.imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=1.0, model="softmax")
    for t in range(Xs.shape[0]):
        assert np.array_equal(refmaml.adapt(theta, Xs[t], ys[t], inner_lr=0.2, inner_steps=4,
                                            model="softmax"), batch[t])
    # iMAML's Newton and CG loops stop when *every* task has converged, so a task in a batch may
    # take more iterations than alone: equal to the solver's tolerance, not to the bit.
    for t in range(Xs.shape[0]):
        alone = refmaml.imaml_value_and_grad(theta, Xs[t], ys[t], Xq[t], yq[t], lam=1.0, model="softmax")[2]
        assert np.allclose(alone["phi"], info["phi"][t], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", train.METHODS)
def test_the_same_seed_gives_the_same_run(method):
    family = "sinusoid" if method in train.HEAD_ONLY else "synthetic-binary"  # ANIL needs a network
    c = train.Config(family=family, method=method, iterations=8, meta_batch=3, support=4, query=3, inner_steps=2,
                     eval_every=4, curve_tasks=3, seed=5)
    a, b = train.train(c), train.train(c)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    assert a.losses == b.losses and a.curve == b.curve
    if method not in train.UNTRAINED:
        other = train.train(dataclasses.replace(c, seed=6))
        assert not np.array_equal(a.params["theta"], other.params["theta"])


def _calls():
    """Many different calls of the core functions, each a closure returning its arrays."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(24):
        model = ("logistic", "softmax")[k % 2]
        theta, Xs, ys, Xq, yq = _problem(model, T=3 + k % 4, d=5 + k % 3, rng=rng)
        kind = k % 4
        if kind == 0:
            out.append(lambda a=(theta, Xs, ys, Xq, yq), m=model: refmaml.meta_value_and_grad(
                *a, inner_lr=0.3, inner_steps=3, model=m, form="dual"))
        elif kind == 1:
            out.append(lambda a=(theta, Xs, ys, Xq, yq), m=model: refmaml.meta_value_and_grad(
                *a, inner_lr=np.full(a[0].shape, 0.2), inner_steps=2, model=m, lr_grad=True))
        elif kind == 2:
            out.append(lambda a=(theta, Xs, ys, Xq, yq), m=model: refmaml.imaml_value_and_grad(
                *a, lam=2.0, model=m)[:2])
        else:
            out.append(lambda a=(theta, Xs, ys), m=model: (refmaml.adapt(
                *a, inner_lr=0.3, inner_steps=3, model=m), refmaml.reptile_direction(
                *a, inner_lr=0.3, inner_steps=3, model=m)))
    return out


def test_threads_get_the_answers_of_sequential_calls():
    calls = _calls()
    want = [call() for call in calls]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda c: c(), calls * 2))
            for g, w in zip(got, want * 2, strict=True):
                for a, b in zip(g, w, strict=True):
                    assert np.array_equal(a, b)


@pytest.mark.slow
def test_threads_share_the_task_groups_pool():
    """Large NumPy calls split their tasks over a process-wide pool; callers from many threads at
    once still get their own tasks' results, in order, bit for bit."""
    from refmaml import models, policy, problem

    rng = np.random.default_rng(3)
    problems = [_problem("logistic", T=32, n=40, m=40, d=1000, rng=rng) for _ in range(6)]
    kw = dict(inner_lr=0.1, inner_steps=5, form="dual")
    p = problem.meta(models.get("logistic"), *problems[0], inner_lr=0.1, inner_steps=5)
    assert 32 * policy.costs(p, lr_grad=False)[1] >= policy.THREAD_FLOPS  # the grouped path, where cores > 1
    want = [refmaml.meta_value_and_grad(*p, **kw) for p in problems]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda p: refmaml.meta_value_and_grad(*p, **kw), problems))
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g[1], w[1]) and float(g[0]) == float(w[0])


# every form, l2 and rate layout the form takes (the dual form: per-feature rates with l2 = 0 (G5))
SAME_BITS = [(form, l2, rates) for form in ("primal", "dual") for l2 in (0.0, 0.1)
             for rates in ("scalar", "per step", "per feature")
             if not (form == "dual" and rates == "per feature" and l2)]


@pytest.mark.parametrize("model", ["logistic", "softmax", "linear"])
@pytest.mark.parametrize("form, l2, rates", SAME_BITS)
@pytest.mark.parametrize("kind", ["float64", "complex128"])
def test_numpy_and_the_array_api_path_give_the_same_bits(model, form, l2, rates, kind):
    """NumPy calls take the fast validation path, in-place updates and (for float64) the
    ``Gamma_0 = 0``, decay-1 shortcuts of the dual form; array-api-strict takes the general path
    through the array API alone. Both run the same operations in the same order, so the loss, the
    meta-gradient and the rate gradient agree to the bit, real inputs and the complex ones of the
    complex step alike (tolerance 0: any difference is a second formula somewhere)."""
    strict = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(7)
    theta, Xs, ys, Xq, yq = _problem("softmax" if model == "softmax" else "logistic", rng=rng)
    if model == "linear":
        ys, yq = rng.standard_normal(ys.shape), rng.standard_normal(yq.shape)
    K = 3
    rate = {"scalar": 0.3, "per step": np.array([0.3, 0.2, 0.25]).reshape((K,) + (1,) * theta.ndim),
            "per feature": 0.2 + 0.1 * rng.random(theta.shape[:1] + (1,) * (theta.ndim - 1))}[rates]
    if kind == "complex128":
        theta = theta + 1e-20j * rng.standard_normal(theta.shape)
    kw = dict(inner_steps=K, model=model, l2=l2, form=form, reduction="none",
              lr_grad=rates != "scalar")
    on_numpy = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rate, **kw)
    s = lambda a: a if isinstance(a, float) else strict.asarray(a)
    on_strict = refmaml.meta_value_and_grad(s(theta), s(Xs), s(ys), s(Xq), s(yq), inner_lr=s(rate), **kw)
    for a, b in zip(on_numpy, on_strict, strict=True):
        assert np.array_equal(a, np.asarray(b)), np.max(np.abs(a - np.asarray(b)))
