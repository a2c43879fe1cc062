"""One validated problem (refmaml/problem.py): with and without the pre-check that lets plain
NumPy float64 arrays skip their conversion, validation gives the same problem, or the same error,
on every input, valid or not; ``None`` where an array belongs is a TypeError naming the argument.

The messages of each refusal are tested in ``test_validation.py`` and, for every public function
and argument, by the fuzz harness (``test_fuzz.py``); here the pre-check is held to the rules.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refmaml
from refmaml import models, problem
from refmaml.models import linear, logistic, softmax

from .fuzz import _labels

MODELS = ["logistic", "softmax", "linear"]


def _general(model, theta, Xs, ys, Xq, yq, l2, inner_lr, inner_steps):
    """Validation by the general rules alone (no pre-check)."""
    return problem.meta(model, theta, Xs, ys, Xq, yq, l2=l2, inner_lr=inner_lr, inner_steps=inner_steps,
                        finite=None)


def _same(a, b):
    """Two problems (or calls) hold the same arrays (dtype, shape, values) and settings."""
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
        elif name == "xp":
            assert x is y
        else:
            assert x == y, name


@st.composite
def meta_inputs(draw):
    model = draw(st.sampled_from(MODELS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    T, n, m, d, C = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)),
                     draw(st.integers(1, 4)), draw(st.integers(2, 3)))
    batched = draw(st.booleans())
    lead = (T,) if batched else ()
    P = (d, C) if model == "softmax" else (d,)
    K = draw(st.integers(0, 3))
    rate = draw(st.sampled_from(["python", "int", "per parameter", "per step", "numpy scalar"]))
    inner_lr = {"python": 0.3, "int": 1, "numpy scalar": np.float64(0.3),
                "per parameter": rng.uniform(0.1, 0.5, P),
                "per step": rng.uniform(0.1, 0.5, (K,) + (1,) * len(P))}[rate]
    return model, dict(theta=rng.standard_normal(P), Xs=rng.standard_normal(lead + (n, d)),
                       ys=_labels(rng, model, lead + (n,), C), Xq=rng.standard_normal(lead + (m, d)),
                       yq=_labels(rng, model, lead + (m,), C)), dict(inner_lr=inner_lr, inner_steps=K,
                                                                      l2=draw(st.sampled_from([0.0, 0.1, 1])))


@given(meta_inputs())
def test_the_pre_check_changes_no_problem_on_valid_inputs(case):
    model, arrays, kw = case
    m = models.get(model)
    fast = problem.meta(m, **arrays, **kw)
    general = _general(m, *arrays.values(), kw["l2"], kw["inner_lr"], kw["inner_steps"])
    _same(fast, general)
    no_query = problem.meta(m, arrays["theta"], arrays["Xs"], arrays["ys"], **kw)
    _same(no_query, _general(m, arrays["theta"], arrays["Xs"], arrays["ys"], problem.ABSENT, problem.ABSENT,
                             kw["l2"], kw["inner_lr"], kw["inner_steps"]))


def _hostile(arrays, rng):
    """Inputs the pre-check must leave to the general rules (each one they refuse or convert)."""
    theta, Xs = arrays["theta"], arrays["Xs"]
    return [
        ("theta", theta.astype(np.float32)), ("theta", theta.astype(complex)), ("theta", theta[None]),
        ("theta", np.full_like(theta, np.nan)), ("Xs", Xs.astype(np.float32)), ("Xs", Xs[..., :0]),
        ("Xs", np.where(Xs > 0, np.inf, Xs)), ("Xs", Xs.tolist()), ("Xs", Xs * 1e200),
        ("ys", arrays["ys"][..., :0]), ("ys", None), ("Xq", None), ("ys", arrays["ys"].tolist()),
        ("ys", arrays["ys"] + 0.5), ("yq", arrays["yq"] - 7),
    ]


@given(meta_inputs(), st.data())
def test_the_pre_check_leaves_every_doubt_to_the_general_rules(case, data):
    """Whatever the pre-check meets, ``meta`` ends as the general rules alone do: the same problem
    or the same error (type and message)."""
    model, arrays, kw = case
    m = models.get(model)
    name, value = data.draw(st.sampled_from(_hostile(arrays, np.random.default_rng(0))))
    changed = {**arrays, name: value}
    extra = data.draw(st.sampled_from([{}, {"inner_lr": np.nan}, {"inner_lr": 10**400}, {"inner_steps": -1},
                                       {"l2": -1.0}, {"inner_steps": True}]))
    kw = {**kw, **extra}
    try:
        want = _general(m, *changed.values(), kw["l2"], kw["inner_lr"], kw["inner_steps"])
    except (TypeError, ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)) as got:
            problem.meta(m, **changed, **kw)
        assert str(got.value) == str(exc)
    else:
        _same(problem.meta(m, **changed, **kw), want)


@given(st.sampled_from([logistic, softmax, linear]), st.booleans(), st.integers(0, 2**32 - 1))
def test_model_calls_agree_with_and_without_the_pre_check(module, batched, seed):
    rng = np.random.default_rng(seed)
    name = module.MODEL.name
    lead = (2,) if batched else ()
    P = (3, 2) if name == "softmax" else (3,)
    theta, X, v = rng.standard_normal(P), rng.standard_normal(lead + (4, 3)), rng.standard_normal(P)
    y = _labels(rng, name, lead + (4,), 2)
    for kw in (dict(y=y), dict(y=y, v=v), {}):
        fast = problem.model_call(module.MODEL, theta, X, **kw, l2=0.2)
        general = problem.model_call(module.MODEL, theta, X, **kw, l2=0.2, finite=None)
        _same(fast, general)


def _meta_args():
    rng = np.random.default_rng(0)
    return dict(theta=np.zeros(3), Xs=rng.standard_normal((2, 4, 3)), ys=np.ones((2, 4)),
                Xq=rng.standard_normal((2, 5, 3)), yq=np.zeros((2, 5)))


@pytest.mark.parametrize("name", ["theta", "Xs", "ys", "Xq", "yq"])
def test_none_is_a_type_error_naming_the_argument(name):
    """The query set's ``None`` used to reach the cost model and fail with an AttributeError."""
    args = {**_meta_args(), name: None}
    with pytest.raises(TypeError, match=rf"{name} is None"):
        refmaml.meta_value_and_grad(*args.values(), inner_lr=0.1, inner_steps=1)
    with pytest.raises(TypeError, match=rf"{name} is None"):
        refmaml.imaml_value_and_grad(*args.values(), lam=1.0)
    if name in ("theta", "Xs", "ys"):
        for fn in (refmaml.adapt, refmaml.reptile_direction):
            with pytest.raises(TypeError, match=rf"{name} is None"):
                fn(*(args[k] for k in ("theta", "Xs", "ys")), inner_lr=0.1, inner_steps=1)


@pytest.mark.parametrize("module", [logistic, softmax, linear])
def test_none_in_model_functions(module):
    theta = np.zeros((3, 2)) if module is softmax else np.zeros(3)
    X, y = np.ones((4, 3)), np.zeros(4, dtype=int)
    for args, name in (((None, X, y), "theta"), ((theta, None, y), "X"), ((theta, X, None), "y")):
        with pytest.raises(TypeError, match=rf"{name} is None"):
            module.loss(*args)
    with pytest.raises(TypeError, match="v is None"):
        module.hvp(theta, X, y, None)
    with pytest.raises(TypeError, match="inner_lr is None"):
        refmaml.adapt(theta, X, y, inner_lr=None, inner_steps=1, model=module.MODEL.name)


def test_losses_are_zero_dimensional_arrays_of_the_inputs_namespace():
    """DESIGN: ``meta_loss`` is a 0-d array (``float(meta_loss)`` gives the number), never a NumPy
    scalar; the same for iMAML, the closed form of linear regression and one task's model loss."""
    a = _meta_args()
    for out in (refmaml.meta_value_and_grad(*a.values(), inner_lr=0.1, inner_steps=1)[0],
                refmaml.meta_value_and_grad(*a.values(), inner_lr=0.1, inner_steps=1, reduction="sum")[0],
                refmaml.imaml_value_and_grad(*a.values(), lam=1.0)[0],
                logistic.loss(a["theta"], a["Xs"][0], a["ys"][0]),
                linear.closed_form_meta_value_and_grad(a["theta"], *list(a.values())[1:], inner_lr=0.1,
                                                       inner_steps=1)[0]):
        assert type(out) is np.ndarray and out.shape == ()
