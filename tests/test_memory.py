"""Peak memory of one meta-gradient (NumPy allocations, traced by tracemalloc): linear in the
data and in K, and never a d x d array (derivations/maml.md (M9), derivations/dual.md (G8))."""

import tracemalloc

import numpy as np
import pytest

import refmaml


def _peak(T, n, m, d, K, model, form):
    rng = np.random.default_rng(0)
    shape, k = ((d,), 2) if model == "logistic" else ((d, 3), 3)
    args = (0.1 * rng.standard_normal(shape), rng.standard_normal((T, n, d)) / np.sqrt(d),
            rng.integers(0, k, (T, n)), rng.standard_normal((T, m, d)) / np.sqrt(d),
            rng.integers(0, k, (T, m)))
    refmaml.meta_value_and_grad(*args, inner_lr=0.3, inner_steps=K, model=model, form=form, l2=0.1)  # imports
    tracemalloc.start()
    refmaml.meta_value_and_grad(*args, inner_lr=0.3, inner_steps=K, model=model, form=form, l2=0.1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("model", ["logistic", "softmax"])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_no_d_by_d_array(model, form):
    """d = 4000: one d x d float64 array would be 128 MB; the whole computation stays far below."""
    T, n, m, d, K = 2, 5, 5, 4000, 3
    C = 1 if model == "logistic" else 3
    data = 8 * T * (n + m) * d
    peak = _peak(T, n, m, d, K, model, form)
    assert peak < 8 * d * d / 20
    assert peak <= 6 * data * C   # a few copies of the data at most


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_memory_grows_linearly_in_K(form):
    """Per step only O(T n C) numbers are kept: going from K = 10 to K = 40 adds about 30 steps'
    worth of O(T n) arrays, far less than another copy of the data."""
    T, n, m, d = 4, 10, 10, 2000
    small, large = _peak(T, n, m, d, 10, "logistic", form), _peak(T, n, m, d, 40, "logistic", form)
    per_step = (large - small) / 30
    assert per_step <= 16 * 8 * T * n
