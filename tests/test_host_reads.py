"""Host reads: a call on a device array library reads device values on the host once, at its end.

Issue 30, part A. Every check of device values (finiteness of the inputs, labels in range, the
inner loop's overflow, a model function's finite result) is collected as a flag while the call
runs and read in one transfer when it ends (``refmaml._validate.deferred``); the errors are the
eager path's, in the same order (``tests/test_validation.py``, ``test_problem.py`` and
``test_maml.py`` pin the messages on every backend).

The count is taken on array-api-strict's ``device1`` (what a GPU namespace goes through): the
:class:`HostReads` fixture wraps the members of its arrays that hand a value to the host
(``__bool__``, ``__float__``, ``__int__``, ``__index__``, ``__complex__``, ``__array__``,
``__buffer__``, ``__dlpack__``, ``to_device`` and ``asarray`` onto the CPU device) and
``refmaml._xp.to_numpy``, and counts them, a read inside another (``to_numpy``'s transfer)
counted once. Nothing in the library knows about it.
"""

import contextlib
import traceback

import numpy as np
import pytest

import refmaml
from refmaml import _validate, adam, models, tasks, train
from refmaml.variants import reptile_direction

strict = pytest.importorskip("array_api_strict")
from array_api_strict import _array_object  # noqa: E402

DEVICE = strict.Device("device1")
MEMBERS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__", "__buffer__",
           "__dlpack__", "item", "tolist")


class HostReads:
    """Counts the host reads of array-api-strict arrays while installed (see the module's docstring)."""

    def __init__(self, monkeypatch):
        self.count, self.where, self._depth = 0, [], 0
        Array = _array_object.Array
        for name in MEMBERS:
            if hasattr(Array, name):
                monkeypatch.setattr(Array, name, self._counted(getattr(Array, name), name))
        monkeypatch.setattr(Array, "to_device", self._counted(
            Array.to_device, "to_device", lambda a, device, *_, **__: device != a.device and device == strict.Device()))
        monkeypatch.setattr(strict, "asarray", self._counted(strict.asarray, "asarray", self._to_host))
        import refmaml._xp as xp_module

        monkeypatch.setattr(xp_module, "to_numpy", self._counted(xp_module.to_numpy, "to_numpy"))

    @staticmethod
    def _to_host(obj, *args, device=None, **kwargs):
        return isinstance(obj, _array_object.Array) and obj.device != strict.Device() \
            and device is not None and device == strict.Device()

    def _counted(self, member, name, applies=None):
        def wrapper(*args, **kwargs):
            if self._depth == 0 and (applies is None or applies(*args, **kwargs)):
                self.count += 1
                self.where.append(f"{name}:\n" + "".join(traceback.format_stack(limit=8)[:-1]))
            self._depth += 1
            try:
                return member(*args, **kwargs)
            finally:
                self._depth -= 1
        return wrapper

    @contextlib.contextmanager
    def counting(self):
        """Count from zero inside the block; ``self.count`` holds the reads made in it."""
        self.count, self.where = 0, []
        yield self

    def report(self):
        return f"{self.count} host reads:\n" + "\n".join(self.where)


@pytest.fixture
def reads(monkeypatch):
    return HostReads(monkeypatch)


def put(a, dtype=None):
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return strict.asarray(a, device=DEVICE)


# ----------------------------------------------------------------------------- problems

T, N, M, K = 3, 5, 6, 2


def _problem(kind, rng):
    """``(model, theta, Xs, ys, Xq, yq)`` as NumPy arrays, for a model of ``kind``."""
    d = 4
    Xs, Xq = rng.standard_normal((T, N, d)), rng.standard_normal((T, M, d))
    if kind == "logistic":
        return ("logistic", 0.3 * rng.standard_normal(d), Xs, (rng.random((T, N)) < 0.5) * 1.0, Xq,
                (rng.random((T, M)) < 0.5) * 1.0)
    if kind == "logistic-int":  # integer labels: checked for 0/1 on the device
        return ("logistic", 0.3 * rng.standard_normal(d), Xs, rng.integers(0, 2, (T, N)), Xq,
                rng.integers(0, 2, (T, M)))
    if kind == "softmax":
        return ("softmax", 0.3 * rng.standard_normal((d, 3)), Xs, rng.integers(0, 3, (T, N)), Xq,
                rng.integers(0, 3, (T, M)))
    if kind == "linear":
        return ("linear", 0.3 * rng.standard_normal(d), Xs, rng.standard_normal((T, N)), Xq,
                rng.standard_normal((T, M)))
    if kind in ("mlp-tanh", "mlp-relu"):
        net = models.MLP([d, 5, 2], kind[4:], "mse")
        return (net, net.init(0), Xs, rng.standard_normal((T, N, 2)), Xq, rng.standard_normal((T, M, 2)))
    if kind == "convnet":
        net = models.ConvNet(3, blocks=1, channels=2, input_shape=(1, 4, 4))
        return (net, net.init(0), rng.standard_normal((T, N, 1, 4, 4)), rng.integers(0, 3, (T, N)),
                rng.standard_normal((T, M, 1, 4, 4)), rng.integers(0, 3, (T, M)))
    raise AssertionError(kind)


def _on_device(problem):
    model, *arrays = problem
    return (model, *(put(a) for a in arrays))


def _mask(model, theta):
    """A mask that leaves some parameters out: the network's last layer, or the first feature."""
    if hasattr(model, "mask"):
        return put(model.mask(-1))
    mask = np.ones(np.shape(theta), dtype=bool)
    mask[0, ...] = False
    return put(mask)


LINEAR = ("logistic", "logistic-int", "softmax", "linear")
NETWORKS = ("mlp-tanh", "mlp-relu", "convnet")
# (kind, form, lr_grad, masked); a mask is a rate per parameter, which the dual form does not take
CONFIGS = [(kind, form, lr_grad, masked) for kind in LINEAR + NETWORKS
           for form in (("primal", "dual", "auto") if kind in LINEAR else ("auto",))
           for lr_grad in (False, True) for masked in (False, True) if not (masked and form == "dual")]


# ----------------------------------------------------------------------------- the count

@pytest.mark.parametrize("kind,form,lr_grad,masked", [
    pytest.param(*c, id=f"{c[0]}-{c[1]}-{'lr_grad' if c[2] else 'plain'}-{'masked' if c[3] else 'all'}")
    for c in CONFIGS])
def test_meta_value_and_grad_reads_the_host_once(reads, kind, form, lr_grad, masked):
    model, theta, Xs, ys, Xq, yq = _on_device(_problem(kind, np.random.default_rng(0)))
    mask = _mask(model, theta) if masked else None
    with reads.counting():
        out = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=0.1, inner_steps=K, model=model,
                                          l2=0.01 if form == "primal" else 0.0, inner_mask=mask,
                                          lr_grad=lr_grad, form=form)
    assert reads.count == 1, reads.report()
    assert "_first_failure" in reads.where[0], reads.report()  # the one read is that of every check, at the end
    assert len(out) == (3 if lr_grad else 2)
    # the same numbers, to the bit, as NumPy's path (which reads as it goes)
    model_np, *arrays = _problem(kind, np.random.default_rng(0))
    mask_np = None if mask is None else np.asarray(refmaml._xp.to_numpy(mask))
    expected = refmaml.meta_value_and_grad(*arrays, inner_lr=0.1, inner_steps=K, model=model_np,
                                           l2=0.01 if form == "primal" else 0.0, inner_mask=mask_np,
                                           lr_grad=lr_grad, form=form)
    for a, b in zip(out, expected, strict=True):
        np.testing.assert_array_equal(refmaml._xp.to_numpy(a), b)


@pytest.mark.parametrize("variant", ["first_order", "none", "per-step rates", "array rate", "one task", "K=0"])
def test_meta_value_and_grad_variants_read_once(reads, variant):
    model, theta, Xs, ys, Xq, yq = _on_device(_problem("logistic", np.random.default_rng(1)))
    kwargs = dict(inner_lr=0.1, inner_steps=K, model=model)
    if variant == "first_order":
        kwargs["first_order"] = True
    elif variant == "none":
        kwargs["reduction"] = "none"
    elif variant == "per-step rates":
        kwargs.update(inner_lr=put(np.full((K, 4), 0.1)), lr_grad=True)
    elif variant == "array rate":
        kwargs.update(inner_lr=put(0.1), lr_grad=True)
    elif variant == "one task":
        Xs, ys, Xq, yq = Xs[0, ...], ys[0, ...], Xq[0, ...], yq[0, ...]
    elif variant == "K=0":
        kwargs["inner_steps"] = 0
    with reads.counting():
        refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kwargs)
    assert reads.count == 1, reads.report()


@pytest.mark.parametrize("kind", ["logistic", "softmax", "mlp-relu", "convnet"])
def test_adapt_and_reptile_read_once(reads, kind):
    model, theta, Xs, ys, _, _ = _on_device(_problem(kind, np.random.default_rng(2)))
    for trajectory in (False, True):
        with reads.counting():
            refmaml.adapt(theta, Xs, ys, inner_lr=0.1, inner_steps=K, model=model, return_trajectory=trajectory)
        assert reads.count == 1, reads.report()
    with reads.counting():
        reptile_direction(theta, Xs, ys, inner_lr=0.1, inner_steps=K, model=model)
    assert reads.count == 1, reads.report()


@pytest.mark.parametrize("kind", ["logistic", "logistic-int", "softmax", "linear", "mlp-tanh", "convnet"])
def test_model_functions_read_once(reads, kind):
    model, theta, X, y, _, _ = _on_device(_problem(kind, np.random.default_rng(3)))
    m = models.get(model)
    v = put(np.ones(tuple(theta.shape)))
    calls = {"loss": lambda: m.loss(theta, X, y, l2=0.1), "grad": lambda: m.grad(theta, X, y),
             "hvp": lambda: m.hvp(theta, X, y, v), "predict": lambda: m.predict(theta, X)}
    for name, call in calls.items():
        with reads.counting():
            call()
        assert reads.count == 1, f"{name}: {reads.report()}"


# ----------------------------------------------------------------------------- training

# every method but implicit MAML, whose solvers read their residuals at every iteration
TRAINED = [("synthetic-binary", "maml"), ("synthetic-binary", "fomaml"), ("synthetic-binary", "metasgd"),
           ("synthetic-binary", "reptile"), ("synthetic-binary", "pretrain"), ("synthetic-nway", "maml"),
           ("sinusoid", "maml"), ("sinusoid", "anil")]


@pytest.mark.parametrize("family,method", TRAINED)
def test_training_step_reads_nothing_inside(reads, family, method):
    """The training step's inner computation (the meta-gradient and Adam's step) reads nothing on
    the host inside a deferred scope; the scope's end reads every check once."""
    config = train.Config(family=family, method=method, inner_steps=2, meta_batch=3, support=4, query=5,
                          iterations=1, backend="array-api-strict:device1", eval_every=0)
    state = train.start(config)
    fam = tasks.family(family)
    batch = fam.sample(np.random.default_rng(0), config.meta_batch, config.support, config.query)
    batch = tuple(put(a) for a in (batch.Xs, batch.ys, batch.Xq, batch.yq))
    xp = strict
    with reads.counting():
        with _validate.deferred():
            _, grads = train.meta_gradient(config, fam.model, state.params, batch)
            params, optimizer = adam.step(state.params, grads, state.optimizer, config.outer_lr)
            arrays = [*params.values(), *optimizer.m.values(), *optimizer.v.values()]
            _validate.require(refmaml._xp.finite_flag(xp, *arrays), lambda: ValueError("diverged"))
            inside = reads.count
    assert inside == 0, reads.report()
    assert reads.count == 1, reads.report()


def test_imaml_inside_a_deferred_scope(reads):
    """Implicit MAML reads its solvers' residuals as it goes (by its nature); inside a training
    step's scope it gives the same result, and its input checks wait for the scope's end."""
    from refmaml.variants import imaml_value_and_grad

    _, theta, Xs, ys, Xq, yq = _on_device(_problem("logistic", np.random.default_rng(4)))
    want = imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=1.0, tol=1e-10)
    with _validate.deferred():
        got = imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=1.0, tol=1e-10)
    for a, b in zip(got[:2], want[:2], strict=True):
        assert np.array_equal(refmaml._xp.to_numpy(a), refmaml._xp.to_numpy(b))
    bad = put(np.where(np.arange(Xs.size).reshape(Xs.shape) == 0, np.nan, refmaml._xp.to_numpy(Xs)))
    with pytest.raises(ValueError, match="Xs contains NaN or infinity"), _validate.deferred():
        imaml_value_and_grad(theta, bad, ys, Xq, yq, lam=1.0, tol=1e-10)


# ----------------------------------------------------------------------------- the same errors

from .test_validation import BAD_META, BAD_SOFTMAX, GOOD, RATE, SOFTMAX  # noqa: E402

ARRAYS = ("theta", "Xs", "ys", "Xq", "yq", "inner_lr")


def _strict(args):
    """``args`` with its NumPy arrays on ``device1``; None where one has a dtype array-api-strict lacks."""
    out = dict(args)
    for name in ARRAYS:
        if isinstance(out.get(name), np.ndarray):
            if out[name].dtype.kind not in "biufc":
                return None
            try:
                out[name] = put(out[name])
            except (TypeError, ValueError):
                return None
    return out


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    raise AssertionError("no error")


def _meta(args):
    args = dict(args)
    return lambda: refmaml.meta_value_and_grad(args.pop("theta"), args.pop("Xs"), args.pop("ys"), args.pop("Xq"),
                                               args.pop("yq"), **args)


def with_nan(a, value=np.nan, flat=-1):
    a = np.array(a, dtype=float)
    a.flat[flat] = value
    return a


# Two faults: the first comes first in the order of the checks and is a check of values (it waits on
# a device), the second a check of shapes, options or form that raises at once, or an overflow.
SOFT_RATES = np.full((3, 4), 0.1)  # rates per parameter: the dual form does not take them
TWO_FAULTS = [
    (dict(Xs=with_nan(GOOD["Xs"]), Xq=np.ones((2, 5, 4))), "Xs contains NaN"),
    (dict(theta=with_nan(GOOD["theta"]), ys=GOOD["ys"][:, :3]), "theta contains NaN"),
    (dict(Xq=with_nan(GOOD["Xq"]), inner_steps=-1), "Xq contains NaN"),
    (dict(ys=GOOD["ys"] * 2, yq=GOOD["yq"][0]), "ys must hold only the labels 0 and 1"),
    (dict(ys=with_nan(GOOD["ys"]), yq=with_nan(GOOD["yq"])), "ys contains NaN"),
    (dict(inner_lr=np.array(np.nan), l2=-1.0), "inner_lr contains NaN"),
    (dict(inner_lr=with_nan(np.full(3, 0.1)), inner_mask=np.ones(4, bool)), "inner_lr contains NaN"),
    (dict(Xs=with_nan(GOOD["Xs"]), inner_lr=1e308), "Xs contains NaN"),
    (dict(theta=with_nan(GOOD["theta"], np.inf), Xs=with_nan(GOOD["Xs"])), "Xs contains NaN"),  # Xs first
    (dict(SOFTMAX, model="softmax", ys=np.full((2, 4), 4), inner_lr=SOFT_RATES, form="dual"),
     "ys holds the label 4"),
    (dict(SOFTMAX, model="softmax", yq=np.full((2, 5), -1), reduction="max"), "reduction must be"),  # checked first
    (dict(Xs=np.ones(3), theta=with_nan(GOOD["theta"])), "Xs must be"),  # the shape check comes first
    (dict(inner_lr=-1e3, inner_steps=200, l2=1.0), "inner loop overflowed"),
    (dict(Xq=with_nan(GOOD["Xq"]), inner_lr=-1e3, inner_steps=200, l2=1.0), "Xq contains NaN"),
]


@pytest.mark.parametrize("changes, pattern", TWO_FAULTS, ids=[f"two-{i}" for i in range(len(TWO_FAULTS))])
def test_the_first_failing_check_wins_on_a_device(changes, pattern):
    args = {**GOOD, **RATE, **changes}
    want = _error(_meta(args))
    assert pattern in want[1], want
    assert _error(_meta(_strict(args))) == want


CONVERTIBLE = [(f"meta-{i}", {**GOOD, **RATE, **changes}) for i, (changes, _, _) in enumerate(BAD_META)] \
    + [(f"softmax-{i}", {**SOFTMAX, **RATE, "model": "softmax", **changes})
       for i, (changes, _, _) in enumerate(BAD_SOFTMAX)]
CONVERTIBLE = [(name, args) for name, args in CONVERTIBLE if _strict(args) is not None]


@pytest.mark.parametrize("args", [a for _, a in CONVERTIBLE], ids=[n for n, _ in CONVERTIBLE])
def test_every_refusal_is_the_same_on_a_device(args):
    """Every bad input of ``tests/test_validation.py`` that array-api-strict can hold: the same
    exception, word for word, as on NumPy (but the dtypes a TypeError names, which each library
    spells its own way)."""
    got, want = _error(_meta(_strict(args))), _error(_meta(args))
    assert got[0] is want[0]
    if want[0] is ValueError:
        assert got == want


def test_model_functions_and_adapt_refuse_the_same_on_a_device():
    rng = np.random.default_rng(5)
    theta, X, y = 0.3 * rng.standard_normal(3), rng.standard_normal((2, 4, 3)), rng.integers(0, 2, (2, 4)) * 1.0
    yc = rng.integers(0, 4, (2, 4))
    theta_c = rng.standard_normal((3, 4))
    from refmaml.models import linear, logistic, softmax

    cases = [
        lambda a: logistic.loss(a(with_nan(theta)), a(X), a(y)),
        lambda a: logistic.grad(a(theta), a(with_nan(X)), a(y)),
        lambda a: logistic.grad(a(theta), a(X), a(y * 3)),
        lambda a: logistic.hvp(a(theta), a(X), a(y), a(with_nan(theta))),
        lambda a: logistic.hvp(a(with_nan(theta)), a(X), a(y), a(np.ones(4))),  # value, then shape
        lambda a: logistic.predict(a(theta), a(with_nan(X, np.inf))),
        lambda a: logistic.loss(a(theta * 1e200), a(X), a(y), l2=1e200),  # the result overflows
        lambda a: softmax.grad(a(theta_c), a(X), a(np.full((2, 4), 7))),
        lambda a: linear.loss(a(theta), a(X), a(with_nan(y))),
        lambda a: refmaml.adapt(a(theta), a(with_nan(X)), a(y), inner_lr=0.1, inner_steps=2),
        lambda a: refmaml.adapt(a(theta), a(X), a(y), inner_lr=-1e3, inner_steps=200, l2=1.0),
        lambda a: reptile_direction(a(theta), a(X), a(y), inner_lr=a(np.array(np.inf)), inner_steps=2),
        lambda a: reptile_direction(a(theta), a(X), a(y), inner_lr=-1e3, inner_steps=200, l2=1.0),
    ]
    for i, case in enumerate(cases):
        want = _error(lambda: case(np.asarray))
        got = _error(lambda: case(put))
        assert got == want, (i, got, want)
        assert _validate._WAITING.get() is None  # nothing left waiting after an error


def test_a_scope_holds_the_errors_until_it_ends(reads):
    """Inside an open scope a call on a device reads nothing and raises nothing for bad values: the
    scope's end reads them and raises the first failure (what a training step relies on)."""
    args = _strict({**GOOD, **RATE, "Xs": with_nan(GOOD["Xs"]), "yq": GOOD["yq"] * 2})
    with reads.counting(), pytest.raises(ValueError, match="Xs contains NaN"):
        with _validate.deferred():
            _meta(args)()
            refmaml.adapt(args["theta"], args["Xs"], args["ys"], inner_lr=0.1, inner_steps=2)
            assert reads.count == 0
    assert reads.count == 1
    # a shape error inside the scope gives way to a waiting failure met before it
    with pytest.raises(ValueError, match="Xs contains NaN"), _validate.deferred():
        _meta(args)()
        _meta({**args, "Xq": put(np.ones((2, 5, 4)))})()
    assert _validate._WAITING.get() is None


def test_numpy_checks_are_read_at_once_even_in_a_scope():
    """A NumPy flag costs no transfer: it is read when met, in a scope or not (NumPy's path raises
    before any work, as ``tests/test_validation.py`` pins)."""
    args = {**GOOD, **RATE, "Xs": with_nan(GOOD["Xs"])}
    with _validate.deferred() as waiting:
        with pytest.raises(ValueError, match="Xs contains NaN"):
            _meta(args)()
        assert waiting.checks == []
