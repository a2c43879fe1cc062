"""The dual (Gram) form (derivations/dual.md) against the primal form and the complex step.

The MAML tests of ``test_maml.py`` run on both forms; here: every rate the dual form takes,
first order and rate gradients, shapes with n > d as well as n < d, and the choice of form.
Tolerance 1e-12 relative: the two forms compute the same quantities by other sums.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refmaml

from . import reference as ref

MODELS = ["logistic", "softmax", "linear"]


def _problem(seed, model, T, n, m, d, C=3):
    rng = np.random.default_rng(seed)
    shape, k = ((d, C), C) if model == "softmax" else ((d,), 2)

    def labels(size):
        return rng.standard_normal(size) if model == "linear" else rng.integers(0, k, size)

    return dict(theta=0.5 * rng.standard_normal(shape), Xs=rng.standard_normal((T, n, d)),
                ys=labels((T, n)), Xq=rng.standard_normal((T, m, d)), yq=labels((T, m)))


def _rate(kind, model, K, d, rng):
    if kind == "scalar":
        return float(rng.uniform(-0.2, 0.8))
    if kind == "per step":
        return rng.uniform(-0.2, 0.8, (K, 1) if model != "softmax" else (K, 1, 1))
    return rng.uniform(0.0, 0.8, (d,) if model != "softmax" else (d, 1))   # per feature


@st.composite
def cases(draw):
    model = draw(st.sampled_from(MODELS))
    kind = draw(st.sampled_from(["scalar", "per step", "per feature"]))
    T, n, m, d = (draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8)),
                  draw(st.integers(1, 12)))
    K = draw(st.integers(0, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    l2 = 0.0 if kind == "per feature" else draw(st.sampled_from([0.0, 0.3]))
    return model, _problem(seed, model, T, n, m, d), _rate(kind, model, K, d, rng), K, l2


@given(cases(), st.booleans(), st.booleans())
def test_dual_equals_primal(case, first_order, lr_grad):
    model, p, rate, K, l2 = case
    kw = dict(inner_lr=rate, inner_steps=K, model=model, l2=l2, first_order=first_order, lr_grad=lr_grad,
              reduction="none")
    primal = refmaml.meta_value_and_grad(**p, **kw, form="primal")
    dual_ = refmaml.meta_value_and_grad(**p, **kw, form="dual")
    for a, b in zip(dual_, primal, strict=True):
        assert a.shape == b.shape
        assert ref.rel_err(a, b, floor=1e-300) <= 1e-12


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", ["scalar", "per step", "per feature"])
def test_dual_rate_gradient_against_complex_step(backend, model, kind):
    """(G7) against the complex step through the textbook unrolled loop."""
    K, rng = 4, np.random.default_rng(5)
    p = _problem(5, model, T=3, n=4, m=6, d=9)
    rate = _rate(kind, model, K, 9, rng)
    l2 = 0.0 if kind == "per feature" else 0.2
    loss, g, r = refmaml.meta_value_and_grad(**{k: backend.put(v) for k, v in p.items()},
                                             inner_lr=backend.put(rate), inner_steps=K, model=model, l2=l2,
                                             lr_grad=True, form="dual")
    backend.assert_home(r)

    def meta(theta, a):
        losses = []
        for t in range(3):
            phi = theta
            for k in range(K):
                step = a[k] if kind == "per step" else a
                phi = phi - step * ref.GRAD[model](phi, p["Xs"][t], p["ys"][t], l2)
            losses.append(ref.LOSS[model](phi, p["Xq"][t], p["yq"][t]))
        return np.mean(losses)

    want_r = ref.complex_step_gradient(lambda a: meta(p["theta"], a), np.asarray(rate, dtype=float))
    want_g = ref.complex_step_gradient(lambda th: meta(th, rate), p["theta"])
    assert ref.rel_err(backend.get(r), np.reshape(want_r, np.shape(rate))) <= 1e-12
    assert ref.rel_err(backend.get(g), want_g) <= 1e-12


@pytest.mark.parametrize("rate, l2, model", [
    (np.full(4, 0.1), 0.1, "logistic"),              # per feature with l2 > 0
    (np.full((3, 4), 0.1), 0.0, "logistic"),         # per step and parameter
    (np.full((4, 3), 0.1), 0.0, "softmax"),          # per parameter, differing by class
    (np.full(3, 0.1), 0.0, "softmax"),               # per class
])
def test_dual_refuses_rates_it_cannot_take(rate, l2, model):
    p = _problem(0, model, T=2, n=3, m=3, d=4)
    with pytest.raises(ValueError, match="form='dual'"):
        refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=3, model=model, l2=l2, form="dual")
    # auto falls back to the primal form
    a = refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=3, model=model, l2=l2)
    b = refmaml.meta_value_and_grad(**p, inner_lr=rate, inner_steps=3, model=model, l2=l2, form="primal")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_form_must_be_known():
    with pytest.raises(ValueError, match="form"):
        refmaml.meta_value_and_grad(**_problem(0, "logistic", 1, 2, 2, 3), inner_lr=0.1, inner_steps=1,
                                    form="gram")
