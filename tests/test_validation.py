"""Bad input: every case raises ValueError or TypeError naming the argument, before any work."""

import numpy as np
import pytest

import refmaml
from refmaml.models import logistic, softmax

RNG = np.random.default_rng(0)
GOOD = dict(
    theta=RNG.standard_normal(3),
    Xs=RNG.standard_normal((2, 4, 3)),
    ys=RNG.integers(0, 2, (2, 4)).astype(float),
    Xq=RNG.standard_normal((2, 5, 3)),
    yq=RNG.integers(0, 2, (2, 5)).astype(float),
)
RATE = dict(inner_lr=0.1, inner_steps=2)


def meta(**changes):
    args = {**GOOD, **RATE, **changes}
    return refmaml.meta_value_and_grad(args.pop("theta"), args.pop("Xs"), args.pop("ys"),
                                       args.pop("Xq"), args.pop("yq"), **args)


def with_nan(a, value=np.nan):
    a = np.array(a, dtype=float)
    a.flat[-1] = value
    return a


BAD_META = [
    # (changes, exception, argument named in the message)
    (dict(theta=np.ones((3, 1))), ValueError, "theta"),
    (dict(theta=np.ones(4)), ValueError, "theta"),
    (dict(Xs=np.ones(3)), ValueError, "Xs"),
    (dict(Xs=np.ones((1, 2, 4, 3))), ValueError, "Xs"),
    (dict(Xq=GOOD["Xq"][0]), ValueError, "Xq"),
    (dict(Xq=np.ones((3, 5, 3))), ValueError, "Xq"),
    (dict(Xq=np.ones((2, 5, 4))), ValueError, "Xq"),
    (dict(ys=GOOD["ys"][:, :3]), ValueError, "ys"),
    (dict(yq=GOOD["yq"][0]), ValueError, "yq"),
    (dict(ys=GOOD["ys"] * 2), ValueError, "ys"),
    (dict(yq=GOOD["yq"] - 1), ValueError, "yq"),
    (dict(ys=GOOD["ys"] * 0.5), ValueError, "ys"),
    (dict(yq=with_nan(GOOD["yq"])), ValueError, "yq"),
    (dict(ys=GOOD["ys"].astype(complex)), TypeError, "ys"),
    (dict(ys=GOOD["ys"].astype(str)), TypeError, "ys"),
    (dict(theta=with_nan(GOOD["theta"])), ValueError, "theta"),
    (dict(theta=with_nan(GOOD["theta"], np.inf)), ValueError, "theta"),
    (dict(Xs=with_nan(GOOD["Xs"])), ValueError, "Xs"),
    (dict(Xq=with_nan(GOOD["Xq"], -np.inf)), ValueError, "Xq"),
    (dict(inner_lr=np.nan), ValueError, "inner_lr"),
    (dict(inner_lr=np.inf), ValueError, "inner_lr"),
    (dict(inner_lr=complex(1, np.inf)), ValueError, "inner_lr"),
    (dict(inner_lr=True), TypeError, "inner_lr"),
    (dict(inner_lr="0.1"), TypeError, "inner_lr"),
    (dict(inner_lr=None), TypeError, "inner_lr"),
    (dict(inner_lr=np.array([0.1, 0.2])), ValueError, "inner_lr"),
    (dict(l2=-0.1), ValueError, "l2"),
    (dict(l2=np.nan), ValueError, "l2"),
    (dict(l2=True), TypeError, "l2"),
    (dict(l2="1"), TypeError, "l2"),
    (dict(l2=1j), TypeError, "l2"),
    (dict(l2=np.array([0.1])), TypeError, "l2"),
    (dict(l2=np.array(1j)), TypeError, "l2"),
    (dict(l2=np.array(-1.0)), ValueError, "l2"),
    (dict(inner_steps=-1), ValueError, "inner_steps"),
    (dict(inner_steps=2.0), TypeError, "inner_steps"),
    (dict(inner_steps=2.5), TypeError, "inner_steps"),
    (dict(inner_steps=True), TypeError, "inner_steps"),
    (dict(inner_steps="2"), TypeError, "inner_steps"),
    (dict(inner_steps=None), TypeError, "inner_steps"),
    (dict(Xs=np.ones((2, 0, 3)), ys=np.ones((2, 0))), ValueError, "Xs"),
    (dict(Xq=np.ones((2, 0, 3)), yq=np.ones((2, 0))), ValueError, "Xq"),
    (dict(theta=np.ones(0), Xs=np.ones((2, 4, 0)), Xq=np.ones((2, 5, 0))), ValueError, "Xs"),
    (dict(Xs=np.ones((0, 4, 3)), ys=np.ones((0, 4)), Xq=np.ones((0, 5, 3)), yq=np.ones((0, 5))),
     ValueError, "Xs"),
    (dict(Xs=GOOD["Xs"].astype(np.float16)), TypeError, "Xs"),
    (dict(Xs=GOOD["Xs"].astype(object)), TypeError, "Xs"),
    (dict(Xs=GOOD["Xs"].astype(str)), TypeError, "Xs"),
    (dict(Xs=GOOD["Xs"].astype(complex)), TypeError, "Xs"),
    (dict(theta=GOOD["theta"].astype(np.float16)), TypeError, "theta"),
    (dict(theta=[[1, 2], [3]]), TypeError, "theta"),
    (dict(model="quadratic"), ValueError, "model"),
    (dict(reduction="max"), ValueError, "reduction"),
    (dict(first_order=1), TypeError, "first_order"),
]


@pytest.mark.parametrize("changes, exc, name", BAD_META,
                         ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD_META)])
def test_meta_value_and_grad_rejects(changes, exc, name, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("computation started before the input was checked")

    for method in ("grad_hvp", "value", "value_grad"):
        monkeypatch.setattr(logistic.MODEL, method, no_work)
    with pytest.raises(exc, match=name):
        meta(**changes)


SOFTMAX = dict(
    GOOD, theta=RNG.standard_normal((3, 4)), ys=RNG.integers(0, 4, (2, 4)), yq=RNG.integers(0, 4, (2, 5)),
)

BAD_SOFTMAX = [
    # (changes, exception, pattern the message must match)
    (dict(ys=SOFTMAX["ys"].astype(float)), TypeError,
     "ys has dtype float64; softmax labels must be integers"),
    (dict(yq=SOFTMAX["yq"] > 1), TypeError, "yq has dtype bool"),
    (dict(ys=SOFTMAX["ys"].astype(complex)), TypeError, "ys"),
    (dict(ys=np.full((2, 4), 4)), ValueError, r"ys holds the label 4, but theta has 4 classes .*\[0, 4\)"),
    (dict(yq=np.full((2, 5), -1)), ValueError, "yq holds the label -1"),
    (dict(ys=SOFTMAX["ys"][:, :3]), ValueError, "ys has shape"),
    (dict(theta=np.ones((3, 3))), ValueError, "ys holds the label 3, but theta has 3 classes"),
    (dict(theta=np.ones(3)), ValueError, "theta"),
    (dict(theta=np.ones((3, 4, 1))), ValueError, "theta"),
    (dict(theta=np.ones((3, 1)), ys=np.zeros((2, 4), int), yq=np.zeros((2, 5), int)), ValueError,
     "theta has shape .*at least 2 classes"),
    (dict(theta=np.ones((4, 4))), ValueError, "theta has shape .* but Xs has 3 features"),
    (dict(theta=with_nan(np.ones((3, 4)))), ValueError, "theta"),
]


@pytest.mark.parametrize("changes, exc, pattern", BAD_SOFTMAX,
                         ids=[f"softmax-{i}" for i in range(len(BAD_SOFTMAX))])
def test_softmax_meta_value_and_grad_rejects(changes, exc, pattern, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("computation started before the input was checked")

    for name in ("grad_hvp", "value", "value_grad"):
        monkeypatch.setattr(softmax.MODEL, name, no_work)
    args = {**SOFTMAX, **RATE, **changes}
    with pytest.raises(exc, match=pattern):
        refmaml.meta_value_and_grad(args.pop("theta"), args.pop("Xs"), args.pop("ys"), args.pop("Xq"),
                                    args.pop("yq"), model="softmax", **args)


def test_softmax_model_functions_reject():
    theta, X, y = SOFTMAX["theta"], SOFTMAX["Xs"][0], SOFTMAX["ys"][0]
    for f in (softmax.loss, softmax.grad, softmax.hessian):
        with pytest.raises(TypeError, match="y has dtype float64"):
            f(theta, X, y.astype(float))
        with pytest.raises(ValueError, match="y holds the label 7, but theta has 4 classes"):
            f(theta, X, np.full(4, 7))
        with pytest.raises(ValueError, match="theta"):
            f(theta[:, 0], X, y)
    with pytest.raises(ValueError, match="v has shape"):
        softmax.hvp(theta, X, y, np.ones(3))
    with pytest.raises(ValueError, match="v has shape"):
        softmax.hvp(theta, X, y, np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        softmax.predict(np.ones((3, 1)), X)
    with pytest.raises(ValueError, match="theta"):
        softmax.predict(np.ones((2, 4)), X)


def test_softmax_accepts_every_integer_label_dtype():
    want = refmaml.meta_value_and_grad(**SOFTMAX, **RATE, model="softmax")
    for dtype in (np.int8, np.uint8, np.int32, np.uint64):
        got = refmaml.meta_value_and_grad(**{**SOFTMAX, "ys": SOFTMAX["ys"].astype(dtype),
                                             "yq": SOFTMAX["yq"].astype(dtype)}, **RATE, model="softmax")
        assert np.array_equal(got[1], want[1])
    got = refmaml.meta_value_and_grad(**{**SOFTMAX, "ys": SOFTMAX["ys"].tolist()}, **RATE, model="softmax")
    assert np.array_equal(got[1], want[1])


def test_softmax_labels_of_a_narrow_dtype_with_many_classes(backend):
    """300 classes, uint8 labels: no uint8 value reaches C, and no comparison overflows."""
    rng = np.random.default_rng(2)
    theta, X = rng.standard_normal((3, 300)), rng.standard_normal((5, 3))
    y = rng.integers(0, 256, 5).astype(np.uint8)
    got = backend.get(softmax.grad(backend.put(theta), backend.put(X), backend.put(y)))
    # Same backend, same arithmetic: the only change is the labels' dtype, so bit-identical.
    want = backend.get(softmax.grad(backend.put(theta), backend.put(X), backend.put(y.astype(np.int64))))
    assert np.array_equal(got, want)
    # And the right answer: against NumPy's int64 path, to rounding (another library's kernels).
    np.testing.assert_allclose(got, softmax.grad(theta, X, y.astype(np.int64)), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("changes, exc, name", [
    (dict(Xs=np.ones(3)), ValueError, "Xs"),
    (dict(ys=np.full((2, 4), 3)), ValueError, "ys"),
    (dict(inner_lr=np.inf), ValueError, "inner_lr"),
    (dict(inner_steps=-2), ValueError, "inner_steps"),
    (dict(return_trajectory="yes"), TypeError, "return_trajectory"),
])
def test_adapt_rejects(changes, exc, name):
    args = {"theta": GOOD["theta"], "Xs": GOOD["Xs"], "ys": GOOD["ys"], **RATE, **changes}
    with pytest.raises(exc, match=name):
        refmaml.adapt(args.pop("theta"), args.pop("Xs"), args.pop("ys"), **args)


X1, y1, th1 = GOOD["Xs"][0], GOOD["ys"][0], GOOD["theta"]


@pytest.mark.parametrize("args, kw, exc, name", [
    ((th1, X1, y1[:3]), {}, ValueError, "y"),
    ((th1[:2], X1, y1), {}, ValueError, "theta"),
    ((np.ones((3, 3)), GOOD["Xs"], GOOD["ys"]), {}, ValueError, "theta"),  # 3 thetas for 2 tasks
    ((np.ones((2, 3)), X1, y1), {}, ValueError, "theta"),  # task axis on theta only
    ((th1, X1, y1 + 2), {}, ValueError, "y"),
    ((th1, X1.astype(np.float16), y1), {}, TypeError, "X"),
    ((with_nan(th1), X1, y1), {}, ValueError, "theta"),
    ((th1, X1, y1), dict(l2=-1.0), ValueError, "l2"),
])
def test_model_functions_reject(args, kw, exc, name):
    for f in (logistic.loss, logistic.grad, logistic.hessian):
        with pytest.raises(exc, match=name):
            f(*args, **kw)


def test_hvp_rejects_bad_direction():
    with pytest.raises(ValueError, match="v"):
        logistic.hvp(th1, X1, y1, np.ones(4))
    with pytest.raises(ValueError, match="v"):
        logistic.hvp(th1, X1, y1, with_nan(np.ones(3)))
    with pytest.raises(ValueError, match="v"):
        logistic.hvp(th1, GOOD["Xs"], GOOD["ys"], np.ones((3, 3)))


def test_predict_rejects():
    with pytest.raises(ValueError, match="theta"):
        logistic.predict(np.ones(2), X1)
    with pytest.raises(ValueError, match="X"):
        logistic.predict(th1, with_nan(X1))


def test_mixed_array_libraries_are_a_type_error():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="Xs"):
        meta(Xs=strict.asarray(GOOD["Xs"]))
    with pytest.raises(TypeError, match="X"):
        logistic.grad(th1, strict.asarray(X1), y1)
    with pytest.raises(TypeError, match="inner_lr"):
        meta(**{k: strict.asarray(v) for k, v in GOOD.items()}, inner_lr=np.array(0.1))


def test_mixed_devices_are_a_value_error():
    strict = pytest.importorskip("array_api_strict")
    args = {k: strict.asarray(v) for k, v in GOOD.items()}
    args["Xq"] = strict.asarray(GOOD["Xq"], device=strict.Device("device1"))
    with pytest.raises(ValueError, match="Xq"):
        refmaml.meta_value_and_grad(*args.values(), **RATE)


def test_unsupported_array_library_is_a_type_error():
    class Foreign:
        def __array_namespace__(self, api_version=None):
            return np

    with pytest.raises(TypeError, match="not supported"):
        logistic.loss(th1, Foreign(), y1)


# ------------------------------------------------------------------ accepted inputs


def test_integer_and_boolean_features_are_promoted_to_float64():
    Xi = (GOOD["Xs"] > 0).astype(np.int32)
    for X in (Xi, Xi.astype(bool)):
        loss, g = meta(Xs=X, Xq=(GOOD["Xq"] > 0))
        assert g.dtype == np.float64
        loss_f, g_f = meta(Xs=Xi.astype(float), Xq=(GOOD["Xq"] > 0).astype(float))
        assert np.array_equal(g, g_f) and loss == loss_f


def test_labels_of_every_accepted_kind_agree():
    ref_out = meta()
    for ys in (GOOD["ys"].astype(bool), GOOD["ys"].astype(np.int64), GOOD["ys"].astype(np.uint8),
               GOOD["ys"].astype(np.float32), GOOD["ys"].tolist()):
        out = meta(ys=ys)
        assert np.array_equal(out[1], ref_out[1])


def test_python_lists_are_converted():
    args = {k: v.tolist() for k, v in GOOD.items()}
    loss, g = meta(**args)
    assert isinstance(g, np.ndarray) and np.array_equal(g, meta()[1])


def test_lists_take_the_namespace_of_the_other_arrays():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    args = {k: strict.asarray(v, device=dev) for k, v in GOOD.items()}
    args["theta"] = GOOD["theta"].tolist()
    loss, g = refmaml.meta_value_and_grad(*args.values(), **RATE)
    assert g.device == dev


def test_complex_theta_and_rate_are_accepted():
    loss, g = meta(theta=GOOD["theta"].astype(complex), inner_lr=0.1 + 0j)
    assert g.dtype == np.complex128
    # complex and real BLAS kernels round differently: agreement to a few ulps of the whole vector
    real = meta()[1]
    assert np.linalg.norm(g.real - real) <= 1e-14 * np.linalg.norm(real)


def test_negative_and_zero_rates_and_zero_steps_are_valid():
    for kw in (dict(inner_lr=-0.5), dict(inner_lr=0), dict(inner_steps=0), dict(inner_lr=np.float32(0.1)),
               dict(inner_steps=np.int64(3)), dict(inner_lr=np.array(0.1)), dict(l2=np.array(0.5)),
               dict(l2=np.float32(0.5)), dict(l2=2)):
        loss, g = meta(**kw)
        assert np.all(np.isfinite(g))


def _awkward(a):
    """Read-only, Fortran-ordered and non-contiguous versions of ``a``."""
    ro = a.copy()
    ro.flags.writeable = False
    fortran = np.asfortranarray(a)
    strided = np.repeat(a, 2, axis=-1)[..., ::2]
    assert not strided.flags.c_contiguous or a.shape[-1] == 1
    return ro, fortran, strided


def test_read_only_fortran_and_strided_inputs_work_and_are_not_modified():
    expected = meta()
    for variant in zip(*(_awkward(GOOD[k]) for k in GOOD), strict=True):
        args = dict(zip(GOOD, variant, strict=True))
        before = {k: v.tobytes() for k, v in args.items()}
        got = meta(**args)
        # BLAS may take another kernel for another memory layout: last-bit differences only.
        assert np.linalg.norm(got[1] - expected[1]) <= 1e-14 * np.linalg.norm(expected[1])
        assert all(args[k].tobytes() == before[k] for k in args)
        adapted = refmaml.adapt(args["theta"], args["Xs"], args["ys"], **RATE)
        assert adapted.flags.writeable
        for f in (logistic.loss, logistic.grad, logistic.hessian):
            f(args["theta"], args["Xs"], args["ys"], l2=0.1)
        assert all(args[k].tobytes() == before[k] for k in args)
