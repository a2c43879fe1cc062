"""The hostile-input harness behind tests/test_fuzz.py.

An *entry* is a public function with a generator of valid arguments (a dict)
and, for each argument, its kind. A *mutation* replaces one argument by a
hostile value and says what must happen:

* ``"same"``: a different spelling of the same input (a list, Fortran order,
  a strided or read-only view, integer or boolean features holding the same
  numbers): the call must succeed and agree with the call on the canonical
  float64 input, to 1e-12 relative (the same arithmetic, possibly through
  another BLAS path);
* ``"close32"``: float32 data: the call must succeed, return float32, and agree
  with the float64 call to 2e-3 relative (a few thousand float32 epsilons: the
  K-step loops and the Hessians amplify rounding; 1e-2 for central differences);
* ``"error"``: the call must raise ``ValueError`` or ``TypeError`` whose message
  names the mutated argument (or, where the fault is a mismatch, its partner);
* ``"either"``: a finite answer, or ``ValueError``/``TypeError`` naming one of
  the call's arguments.

Every call, whatever the mutation, must also: raise nothing else, warn
nothing, return only finite numbers, and leave every input array's bytes as
they were.
"""

import dataclasses
import math
import re
import warnings

import numpy as np

import refmaml
from refmaml import check, evaluate, explain, oracle, special, tasks, train
from refmaml.models import MLP, linear, logistic, softmax

from . import reference

ERRORS = (ValueError, TypeError)
TALLY = {}  # entry -> {outcome: count}, reported by test_fuzz.py


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    call: object  # args dict -> result
    make: object  # (rng, draw) -> (args dict, kinds dict)
    partners: dict = dataclasses.field(default_factory=dict)  # argument -> names a mismatch may name
    reference: object = None  # args dict -> result of an independent implementation, or None
    rounding_level: bool = False  # the result is an error measure near 0: compare absolutely
    tol32: float = 2e-3  # float32 against float64, relative
    legitimate: str = ""  # a pattern of errors that any input may meet (a singular system), or ""


# --- valid problems ---------------------------------------------------------------------------


def _labels(rng, model, shape, C):
    if model == "logistic":
        return rng.integers(0, 2, shape).astype(np.float64)
    if model == "linear":
        return rng.standard_normal(shape)
    return rng.integers(0, C, shape)


def _shape(model, s):
    return (s["d"], s["C"]) if model == "softmax" else (s["d"],)


def _sizes(draw):
    return dict(T=draw(0, 3), n=draw(1, 4), m=draw(1, 4), d=draw(1, 4), C=draw(2, 3))


def _model_task(model, with_v=False):
    def make(rng, draw):
        s = _sizes(draw)
        batched = s["T"] > 0
        lead = (s["T"],) if batched else ()
        P = _shape(model, s)
        args = {
            "theta": 0.5 * rng.standard_normal(P),
            "X": rng.standard_normal(lead + (s["n"], s["d"])),
            "y": _labels(rng, model, lead + (s["n"],), s["C"]),
            "l2": float(draw(0, 1)) * 0.1,
        }
        kinds = {"theta": "param", "X": "features", "y": model + "-labels", "l2": "l2"}
        if with_v:
            args["v"] = rng.standard_normal(P)
            kinds["v"] = "param"
        return args, kinds

    return make


def _maml_task(model, query=True, rates=True):
    def make(rng, draw):
        s = _sizes(draw)
        T = max(s["T"], 1)
        P = _shape(model, s)
        args = {
            "theta": 0.3 * rng.standard_normal(P),
            "Xs": rng.standard_normal((T, s["n"], s["d"])),
            "ys": _labels(rng, model, (T, s["n"]), s["C"]),
            "model": model,
            "l2": 0.1 * draw(0, 1),
        }
        kinds = {"theta": "param", "Xs": "features", "ys": model + "-labels", "model": "choice", "l2": "l2"}
        if query:
            args.update(
                Xq=rng.standard_normal((T, s["m"], s["d"])), yq=_labels(rng, model, (T, s["m"]), s["C"])
            )
            kinds.update(Xq="features", yq=model + "-labels")
        if rates:
            args.update(inner_lr=0.3, inner_steps=draw(0, 3))
            kinds.update(inner_lr="rate", inner_steps="steps")
        return args, kinds

    return make


def _with(make, extra, extra_kinds):
    def wrapped(rng, draw):
        args, kinds = make(rng, draw)
        return {**args, **extra}, {**kinds, **extra_kinds}

    return wrapped


def _z(rng, draw):
    shape = tuple(draw(1, 3) for _ in range(draw(1, 3)))
    return {"z": 3 * rng.standard_normal(shape)}, {"z": "param"}


def _z_axis(rng, draw):
    args, kinds = _z(rng, draw)
    return {**args, "axis": -1}, {**kinds, "axis": "axis"}


def _quadratic(x):
    xp = refmaml._xp.array_namespace(x)
    return xp.sum(x * x * x) / 3 + xp.sum(x)


def _quadratic_grad(x):
    return x * x + 1


def _quadratic_hvp(x, v):
    return 2 * x * v


def _point(rng, draw, names=("x",)):
    shape = (draw(1, 4),)
    return {k: rng.standard_normal(shape) for k in names}, {k: "param" for k in names}


def _model_call(module, fn):
    def call(a):
        if fn == "predict":
            return module.predict(a["theta"], a["X"])
        extra = (a["v"],) if fn == "hvp" else ()
        return getattr(module, fn)(a["theta"], a["X"], a["y"], *extra, l2=a["l2"])

    return call


def _maml_call(fn, names):
    def call(a):
        positional = [a[k] for k in names]
        keywords = {k: v for k, v in a.items() if k not in names}
        return fn(*positional, **keywords)

    return call


def _imaml_call(a):
    """iMAML's loss, gradient and adapted parameters; the solver's residuals (rounding-level
    numbers that differ between equally good runs) are checked against ``tol`` instead."""
    loss, g, info = _maml_call(refmaml.imaml_value_and_grad, ("theta", "Xs", "ys", "Xq", "yq"))(a)
    tol = a.get("tol") or 1e-8
    assert info["inner_residual"] <= tol and info["cg_residual"] <= tol, "iMAML missed its tolerance"
    return loss, g, info["phi"]


def _reference_meta(a):
    if a.get("reduction", "mean") != "mean" or a.get("lr_grad") or a.get("first_order"):
        return None
    losses = reference.meta_losses(
        a["theta"], a["Xs"], a["ys"], a["Xq"], a["yq"], a["inner_lr"], a["inner_steps"], a["l2"], a["model"]
    )
    return float(np.mean(losses))


def _reference_loss(model):
    def ref(a):
        f = reference.LOSS[model]
        if a["X"].ndim == 2:
            return f(a["theta"], a["X"], a["y"], a["l2"])
        return np.array([f(a["theta"], X, y, a["l2"]) for X, y in zip(a["X"], a["y"], strict=True)])

    return ref


LABEL_PARTNERS = {"y": ("X",), "ys": ("Xs",), "yq": ("Xq",)}
FEATURE_PARTNERS = {"X": ("theta", "y"), "Xs": ("theta", "ys", "Xq"), "Xq": ("theta", "yq", "Xs")}


def _entries():
    out = []
    for model, module in (("logistic", logistic), ("softmax", softmax), ("linear", linear)):
        for fn in ("loss", "grad", "hvp", "hessian", "predict"):
            make = _model_task(model, with_v=fn == "hvp")
            if fn == "predict":
                make = _drop(make, ("y", "l2"))
            out.append(
                Entry(
                    f"{model}.{fn}",
                    _model_call(module, fn),
                    make,
                    {**LABEL_PARTNERS, **FEATURE_PARTNERS, "theta": ("X",), "v": ("theta",)},
                    _reference_loss(model) if fn == "loss" else None,
                )
            )
        partners = {**LABEL_PARTNERS, **FEATURE_PARTNERS, "theta": ("Xs",), "inner_lr": ("theta",)}
        out.append(
            Entry(
                f"adapt[{model}]",
                _maml_call(refmaml.adapt, ("theta", "Xs", "ys")),
                _with(
                    _maml_task(model, query=False),
                    {"return_trajectory": False},
                    {"return_trajectory": "flag"},
                ),
                partners,
            )
        )
        out.append(
            Entry(
                f"meta_value_and_grad[{model}]",
                _maml_call(refmaml.meta_value_and_grad, ("theta", "Xs", "ys", "Xq", "yq")),
                _with(
                    _maml_task(model),
                    {"first_order": False, "reduction": "mean", "lr_grad": False, "form": "auto"},
                    {"first_order": "flag", "reduction": "choice", "lr_grad": "flag", "form": "choice"},
                ),
                partners,
                lambda a: _reference_meta(a),
            )
        )
        out.append(
            Entry(
                f"reptile_direction[{model}]",
                _maml_call(refmaml.reptile_direction, ("theta", "Xs", "ys")),
                _maml_task(model, query=False),
                partners,
            )
        )
        out.append(
            Entry(
                f"imaml_value_and_grad[{model}]",
                _imaml_call,
                _with(
                    _maml_task(model, rates=False),
                    {"lam": 2.0, "tol": 1e-8},
                    {"lam": "positive", "tol": "positive-or-none"},
                ),
                partners,
            )
        )
    out += _closed_form_entries()
    for fn in ("sigmoid", "softplus", "log_sigmoid"):
        out.append(Entry(f"special.{fn}", (lambda f: lambda a: f(a["z"]))(getattr(special, fn)), _z))
    for fn in ("logsumexp", "log_softmax", "softmax"):
        out.append(
            Entry(
                f"special.{fn}",
                (lambda f: lambda a: f(a["z"], axis=a["axis"]))(getattr(special, fn)),
                _z_axis,
            )
        )
    out.append(
        Entry(
            "check.relative_error",
            lambda a: check.relative_error(a["a"], a["b"]),
            lambda rng, draw: _point(rng, draw, ("a", "b")),
            {"a": ("b",), "b": ("a",)},
        )
    )
    # Central differences in float32 keep about 2/3 of float32's 7 digits, fewer where |f| is
    # large against its gradient: 1e-2 relative.
    out.append(
        Entry(
            "check.central_difference_gradient",
            lambda a: check.central_difference_gradient(a["f"], a["x"], step=a["step"]),
            _with(_point, {"f": _quadratic, "step": None}, {"f": "callable", "step": "positive-or-none"}),
            tol32=1e-2,
        )
    )
    out.append(
        Entry(
            "check.complex_step_gradient",
            lambda a: check.complex_step_gradient(a["f"], a["x"], step=a["step"]),
            _with(_point, {"f": _quadratic, "step": 1e-20}, {"f": "callable", "step": "positive-or-none"}),
        )
    )
    out.append(
        Entry(
            "check.directional_derivative",
            lambda a: check.directional_derivative(a["f"], a["x"], a["v"], method=a["method"]),
            _with(
                lambda rng, draw: _point(rng, draw, ("x", "v")),
                {"f": _quadratic, "method": "complex"},
                {"f": "callable", "method": "choice"},
            ),
            {"v": ("x",), "x": ("v",)},
        )
    )
    out.append(
        Entry(
            "check.hvp_reference",
            lambda a: check.hvp_reference(a["grad_f"], a["x"], a["v"], method=a["method"]),
            _with(
                lambda rng, draw: _point(rng, draw, ("x", "v")),
                {"grad_f": _quadratic_grad, "method": "central"},
                {"grad_f": "callable", "method": "choice"},
            ),
            {"v": ("x",), "x": ("v",)},
            tol32=1e-2,
        )
    )
    out.append(
        Entry(
            "check.hvp_symmetry_error",
            lambda a: check.hvp_symmetry_error(a["hvp_f"], a["x"], a["u"], a["v"]),
            _with(
                lambda rng, draw: _point(rng, draw, ("x", "u", "v")),
                {"hvp_f": _quadratic_hvp},
                {"hvp_f": "callable"},
            ),
            {"u": ("x",), "v": ("x",), "x": ("u", "v")},
            rounding_level=True,
        )
    )
    out.append(
        Entry(
            "evaluate.summarize",
            lambda a: evaluate.summarize(a["values"]).as_dict(),
            lambda rng, draw: ({"values": rng.random(draw(2, 6))}, {"values": "values"}),
        )
    )
    out.append(Entry("oracle.check", _oracle_call, _oracle_args))
    out.append(Entry("tasks.family", _family_call, _family_args, {"name": ("family",)}))
    return {e.name: e for e in out}


def _closed_form_entries():
    """linear.affine_map, linear.closed_form_meta_value_and_grad and linear.meta_optimum. The
    optimum's draws have T m >= d most of the time; a singular system is a named ValueError."""
    partners = {**LABEL_PARTNERS, **FEATURE_PARTNERS, "theta": ("Xs",), "inner_lr": ("theta", "Xs")}
    make = _maml_task("linear")

    def without(names):
        return _drop(make, names)

    def regular(rng, draw):
        """A valid problem whose system (Q8) is regular: at least d query examples per task."""
        args, kinds = without(("theta", "model"))(rng, draw)
        T, m, d = args["Xq"].shape
        if m < d:
            args["Xq"] = rng.standard_normal((T, d, d))
            args["yq"] = rng.standard_normal((T, d))
        return args, kinds

    return [
        Entry("linear.affine_map", _maml_call(linear.affine_map, ("Xs", "ys")),
              _drop(_maml_task("linear", query=False), ("theta", "model")), partners),
        Entry("linear.closed_form_meta_value_and_grad",
              _maml_call(linear.closed_form_meta_value_and_grad, ("theta", "Xs", "ys", "Xq", "yq")),
              without(("model",)), partners),
        Entry("linear.meta_optimum", _maml_call(linear.meta_optimum, ("Xs", "ys", "Xq", "yq")),
              regular, partners, legitimate="no unique minimiser"),
    ]


def _correct(theta, Xs, ys, Xq, yq, **kw):
    return refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)


def _oracle_call(a):
    report = oracle.check(a["fn"], a["model"], steps=a["steps"], l2=a["l2"], dtype=a["dtype"])
    return np.array([float(report.passed)])


def _oracle_args(rng, draw):
    args = {"fn": _correct, "model": ("logistic", "softmax")[draw(0, 1)], "steps": (0,), "l2": False,
            "dtype": "float64"}
    return args, {"fn": "implementation", "model": "choice", "steps": "steps-selection", "l2": "flag",
                  "dtype": "choice"}


def _family_call(a):
    fam = tasks.family(a["name"], **{k: v for k, v in a.items() if k != "name"})
    batch = fam.batch("test", [0, 1], 2, 2)
    return batch.Xs, batch.Xq, np.asarray(batch.ys, dtype=float)


def _family_args(rng, draw):
    args = {"name": "synthetic-binary", "d": draw(1, 6), "relevant": 1, "offset": 1.0, "spread": 2.0,
            "seed": draw(0, 3)}
    return args, {"name": "choice", "d": "count", "relevant": "count", "offset": "nonnegative",
                  "spread": "nonnegative", "seed": "count"}


def _drop(make, names):
    def wrapped(rng, draw):
        args, kinds = make(rng, draw)
        return (
            {k: v for k, v in args.items() if k not in names},
            {k: v for k, v in kinds.items() if k not in names},
        )

    return wrapped


ENTRIES = _entries()


# --- networks: the MLP and its methods, MAML through networks, explain, training on the sinusoid ------

HEAD_LABELS = {"mse": "linear", "logistic": "logistic", "softmax": "softmax"}  # the labels' kind, as above


def _network(draw):
    """A small MLP of any head and activation, with or without a hidden layer: ``(net, d, C)``."""
    loss = ("mse", "logistic", "softmax")[draw(0, 2)]
    d, C = draw(1, 3), draw(2, 3)
    out = C if loss == "softmax" else 1
    sizes = (d, draw(1, 3), out) if draw(0, 1) else (d, out)
    return MLP(sizes, ("tanh", "relu")[draw(0, 1)], loss), d, C


def _network_task(with_v=False, predict=False):
    def make(rng, draw):
        net, d, C = _network(draw)
        T = draw(0, 2)
        lead = (T,) if T else ()
        n = draw(1, 4)
        kind = HEAD_LABELS[net.loss_name]
        args = {"net": net, "theta": net.init(draw(0, 3)), "X": rng.standard_normal(lead + (n, d))}
        kinds = {"theta": "param", "X": "features"}
        if not predict:
            args.update(y=_labels(rng, kind, lead + (n,), C), l2=0.1 * draw(0, 1))
            kinds.update(y=kind + "-labels", l2="l2")
        if with_v:
            args["v"] = rng.standard_normal(net.size)
            kinds["v"] = "param"
        return args, kinds

    return make


def _network_method(fn):
    def call(a):
        net = a["net"]
        if fn == "predict":
            return net.predict(a["theta"], a["X"])
        extra = (a["v"],) if fn == "hvp" else ()
        return getattr(net, fn)(a["theta"], a["X"], a["y"], *extra, l2=a["l2"])

    return call


def _network_maml(query=True):
    def make(rng, draw):
        net, d, C = _network(draw)
        T, n, m = draw(1, 3), draw(1, 4), draw(1, 4)
        kind = HEAD_LABELS[net.loss_name]
        args = {"theta": net.init(draw(0, 3)), "Xs": rng.standard_normal((T, n, d)),
                "ys": _labels(rng, kind, (T, n), C), "model": net, "l2": 0.1 * draw(0, 1),
                "inner_lr": 0.3, "inner_steps": draw(0, 3)}
        kinds = {"theta": "param", "Xs": "features", "ys": kind + "-labels", "model": "choice", "l2": "l2",
                 "inner_lr": "rate", "inner_steps": "steps"}
        if query:
            args.update(Xq=rng.standard_normal((T, m, d)), yq=_labels(rng, kind, (T, m), C))
            kinds.update(Xq="features", yq=kind + "-labels")
        return args, kinds

    return make


def _mlp_args(rng, draw):
    sizes = tuple(draw(1, 4) for _ in range(draw(2, 4)))
    return ({"sizes": sizes, "activation": ("tanh", "relu")[draw(0, 1)], "loss": "mse", "seed": draw(0, 3)},
            {"sizes": "sizes", "activation": "choice", "loss": "choice", "seed": "count"})


def _explain_call(a):
    obj, name, inputs = explain.problem(**a)
    return explain.walk(obj, name, inputs)


def _explain_args(network):
    def make(rng, draw):
        rates = explain.RATES[draw(0, 2)]
        args = {"features": draw(1, 3), "support": draw(1, 3), "query": draw(1, 3),
                "steps": draw(int(rates == "per-step"), 2), "inner_lr": 0.5, "rates": rates, "l2": 0.1 * draw(0, 1),
                "seed": draw(0, 3)}
        kinds = {"features": "bounded-count", "support": "bounded-count", "query": "bounded-count",
                 "steps": "bounded-count", "inner_lr": "rate", "rates": "choice", "l2": "l2", "seed": "train-seed"}
        if network:
            args.update(sizes=",".join(str(draw(1, 3)) for _ in range(draw(2, 3))),
                        activation=("tanh", "relu")[draw(0, 1)], loss="mse")
            kinds.update(sizes="sizes-text", activation="optional-choice", loss="optional-choice")
        else:
            args["model"] = ("logistic", "softmax", "linear")[draw(0, 2)]
            kinds["model"] = "optional-choice"
        return args, kinds

    return make


def _train_call(a):
    state = train.train(train.Config(**a))
    return state.params["theta"], np.array(state.losses), np.array(state.curve).reshape(-1, 3)


def _train_args(rng, draw):
    args = {"family": "sinusoid", "method": ("maml", "fomaml", "anil", "metasgd", "reptile", "pretrain")[draw(0, 5)],
            "inner_lr": 0.01, "inner_steps": draw(0, 2), "meta_batch": draw(1, 2), "iterations": draw(0, 2),
            "outer_lr": 0.01, "support": draw(1, 3), "query": draw(1, 2), "l2": 0.0, "lam": 1.0,
            "seed": draw(0, 3), "eval_every": draw(0, 1), "curve_tasks": 2}
    kinds = {"family": "choice", "method": "choice", "inner_lr": "rate", "inner_steps": "steps",
             "meta_batch": "train-count", "iterations": "train-count", "outer_lr": "positive",
             "support": "train-count", "query": "train-count", "l2": "l2", "lam": "positive", "seed": "train-seed",
             "eval_every": "train-count", "curve_tasks": "train-count"}
    return args, kinds


def _network_entries():
    partners = {**LABEL_PARTNERS, **FEATURE_PARTNERS, "theta": ("X", "Xs"), "v": ("theta",), "inner_lr": ("theta",)}
    out = [Entry(f"MLP.{fn}", _network_method(fn), _network_task(with_v=fn == "hvp", predict=fn == "predict"),
                 partners) for fn in ("loss", "grad", "hvp", "hessian", "predict")]
    out.append(Entry("MLP(sizes).init", lambda a: MLP(a["sizes"], a["activation"], a["loss"]).init(a["seed"]),
                     _mlp_args))
    out.append(Entry("adapt[MLP]", _maml_call(refmaml.adapt, ("theta", "Xs", "ys")), _network_maml(query=False),
                     partners))
    out.append(Entry("meta_value_and_grad[MLP]",
                     _maml_call(refmaml.meta_value_and_grad, ("theta", "Xs", "ys", "Xq", "yq")), _network_maml(),
                     partners))
    out.append(Entry("reptile_direction[MLP]", _maml_call(refmaml.reptile_direction, ("theta", "Xs", "ys")),
                     _network_maml(query=False), partners))
    out.append(Entry("explain[linear models]", _explain_call, _explain_args(False)))
    out.append(Entry("explain[MLP]", _explain_call, _explain_args(True)))
    out.append(Entry("train[sinusoid]", _train_call, _train_args, {"support": ("meta_batch",),
                                                                   "query": ("meta_batch",)}))
    return {e.name: e for e in out}


NETWORK_ENTRIES = _network_entries()


# --- mutations ----------------------------------------------------------------------------------


def _strided(a):
    big = np.zeros(a.shape + (2,), dtype=a.dtype)
    big[..., 0] = a
    return big[..., 0]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _poison(a, rng, value):
    a = np.array(a, dtype=np.float64)
    if a.size:
        a.flat[rng.integers(a.size)] = value
    return a


def _array_mutations(a, rng, kind):
    """(label, value, expectation) for an array argument ``a`` of ``kind``."""
    out = [
        ("list", a.tolist(), "same"),
        ("fortran", np.asfortranarray(a), "same"),
        ("strided", _strided(a), "same"),
        ("read-only", _readonly(a), "same"),
        ("none", None, "error"),
        ("object", a.astype(object), "error"),
        ("string", a.astype(str), "error"),
        ("nan", _poison(a, rng, np.nan), "error"),
        ("+inf", _poison(a, rng, np.inf), "error"),
        ("-inf", _poison(a, rng, -np.inf), "error"),
        ("extra axis", a[None, ...], "either"),
        ("scalar", 1.5, "either"),
        ("empty", np.zeros((0,) + a.shape[1:]), "either"),
        ("transposed", a.T.copy(), "either"),
    ]
    if a.ndim:
        out.append(("one axis fewer", a[0, ...].copy(), "either"))
        out.append(("zero-length last axis", a[..., :0].copy(), "either"))
    if kind in ("param", "features", "values"):
        out += [
            ("float32", a.astype(np.float32), "close32"),
            ("float16", a.astype(np.float16), "error"),
            ("huge", a * 1e300, "either"),
            ("tiny", a * 1e-300, "either"),
        ]
        if kind != "param":
            out.append(("complex", a.astype(np.complex128), "error"))
    if kind == "features":
        out += [("integer", np.rint(3 * a).astype(np.int32), "same"), ("boolean", a > 0, "same")]
    if kind == "logistic-labels":
        out += [
            ("boolean", a > 0.5, "same"),
            ("int8", a.astype(np.int8), "same"),
            ("two", np.full_like(a, 2.0), "error"),
            ("half", np.full_like(a, 0.5), "error"),
            ("minus one", np.full_like(a, -1.0), "error"),
        ]
    if kind == "linear-labels":
        out += [
            ("integer", np.rint(3 * a).astype(np.int32), "same"),
            ("float32", a.astype(np.float32), "either"),
            ("boolean", a > 0, "error"),
            ("complex", a.astype(np.complex128), "error"),
            ("huge", a * 1e300, "either"),
        ]
    if kind == "softmax-labels":
        C = 4  # larger than any class count the valid problems draw: out of range for every theta
        out += [
            ("uint8", a.astype(np.uint8), "same"),
            ("float", a.astype(np.float64), "either"),
            ("too large", np.full_like(a, C + 10), "error"),
            ("negative", np.full_like(a, -1), "error"),
            ("half", a + 0.5, "error"),
        ]
    return out


SCALAR_MUTATIONS = {
    "rate": [
        ("nan", math.nan, "error"),
        ("inf", math.inf, "error"),
        ("string", "0.1", "error"),
        ("none", None, "error"),
        ("bool", True, "error"),
        ("negative", -0.2, "either"),
        ("numpy float32", np.float32(0.3), "either"),
        ("huge", 1e300, "either"),
        ("list", [0.3], "either"),
        ("complex", 0.3 + 0j, "either"),
        ("object", object(), "error"),
        ("huge int", 10**400, "error"),
    ],
    "steps": [
        ("negative", -1, "error"),
        ("float", 1.5, "error"),
        ("bool", True, "error"),
        ("string", "2", "error"),
        ("none", None, "error"),
        ("numpy int", np.int64(2), "either"),
        ("array", np.array([2]), "error"),
        ("huge", 10**18, "error"),
        ("huge int", 10**400, "error"),
    ],
    "l2": [
        ("negative", -0.1, "error"),
        ("nan", math.nan, "error"),
        ("inf", math.inf, "error"),
        ("string", "0", "error"),
        ("bool", True, "error"),
        ("huge", 1e300, "either"),
        ("array", np.array([0.1, 0.2]), "error"),
        ("huge int", 10**400, "error"),
    ],
    "positive": [
        ("zero", 0.0, "error"),
        ("negative", -1.0, "error"),
        ("nan", math.nan, "error"),
        ("string", "1", "error"),
        ("none", None, "error"),
        ("bool", False, "error"),
        ("huge int", 10**400, "error"),
    ],
    "positive-or-none": [
        ("zero", 0.0, "error"),
        ("negative", -1.0, "error"),
        ("nan", math.nan, "error"),
        ("string", "1", "error"),
        ("bool", False, "error"),
        ("huge int", 10**400, "error"),
    ],
    "flag": [("string", "yes", "error"), ("int", 1, "error"), ("none", None, "error")],
    "choice": [("unknown", "bogus", "error"), ("none", None, "error"), ("int", 3, "error")],
    "optional-choice": [("unknown", "bogus", "error"), ("none", None, "either"), ("int", 3, "error"),
                        ("list", ["tanh"], "error")],  # None: the default
    "sizes": [  # an MLP's layer widths
        ("50000 wide", (50_000, 50_000, 1), "error"), ("beyond int64", (10**10, 10**10, 1), "error"),
        ("huge int", (10**400, 1), "error"), ("zero width", (2, 0, 1), "error"), ("negative", (2, -1, 1), "error"),
        ("one entry", (3,), "error"), ("empty", (), "error"), ("float", (2.0, 1), "error"),
        ("bool", (True, 1), "error"), ("text", "2,3,1", "error"), ("none", None, "error"),
        ("numpy", np.array([2, 3, 1]), "either"), ("list", [2, 3, 1], "either"),
    ],
    "sizes-text": [  # explain's --sizes
        ("letters", "a,b", "error"), ("x-separated", "2x3x1", "error"), ("empty", "", "error"),
        ("wide", "1000000,1000000,1", "error"), ("too many parameters", "100,100,1", "error"),
        ("zero", "2,0,1", "error"), ("negative", "2,-1,1", "error"), ("one entry", "2", "error"),
        ("huge int", "1" * 400 + ",1", "error"), ("tuple", (2, 3, 1), "either"), ("none", None, "either"),
    ],
    "bounded-count": [("negative", -1, "error"), ("float", 2.5, "error"), ("bool", True, "error"),
                      ("string", "3", "error"), ("none", None, "error"), ("huge", 10**9, "error"),
                      ("huge int", 10**400, "error"), ("numpy int", np.int64(2), "either")],
    "train-count": [("negative", -1, "error"), ("float", 2.5, "error"), ("bool", True, "error"),
                    ("string", "3", "error"), ("none", None, "error"), ("huge", 10**10, "error"),
                    ("huge int", 10**400, "error")],
    "train-seed": [("negative", -1, "error"), ("float", 2.5, "error"), ("bool", True, "error"),
                   ("string", "3", "error"), ("none", None, "error"), ("beyond int64", 2**63, "error"),
                   ("large", 2**62, "either")],
    "axis": [
        ("out of range", 7, "error"),
        ("float", 0.5, "error"),
        ("string", "last", "error"),
        ("bool", True, "error"),
    ],
    "implementation": [
        ("not callable", "fn", "error"),
        ("returns nan", lambda *a, **k: (math.nan, np.full(np.shape(a[0]), math.nan)), "either"),
        ("raises", lambda *a, **k: 1 / 0, "either"),
        ("returns None", lambda *a, **k: None, "either"),
        ("wrong shape", lambda *a, **k: (0.0, np.zeros(1)), "either"),
    ],
    "steps-selection": [("negative", -1, "error"), ("string", "0", "error"), ("empty", (), "error"),
                        ("unknown", (3,), "error"), ("bool", (True,), "error"), ("list", [0, 1], "either")],
    "count": [("negative", -1, "error"), ("float", 2.5, "error"), ("bool", True, "error"),
              ("string", "3", "error"), ("none", None, "error")],
    "nonnegative": [("negative", -1.0, "error"), ("nan", math.nan, "error"), ("inf", math.inf, "error"),
                    ("string", "1", "error"), ("bool", True, "error"), ("zero", 0.0, "either")],
    "callable": [
        ("not callable", 3, "error"),
        ("returns nan", lambda *a: math.nan, "error"),
        ("returns a string", lambda *a: "x", "error"),
        ("returns None", lambda *a: None, "error"),
    ],
}


def mutations(args, kinds, name, rng):
    value = args[name]
    if isinstance(value, np.ndarray):
        out = _array_mutations(value, rng, kinds[name])
        strict = _strict()
        if strict is not None:
            alone = not any(isinstance(v, np.ndarray) for k, v in args.items() if k != name)
            out.append(("array-api-strict", strict.asarray(value), "same" if alone else "error"))
        return out
    return SCALAR_MUTATIONS[kinds[name]]


def _strict():
    try:
        import array_api_strict
    except ImportError:
        return None
    return array_api_strict


# --- the checks ------------------------------------------------------------------------------------


def leaves(result):
    """Every number-bearing leaf of a result (tuples, dicts, arrays, floats)."""
    if isinstance(result, dict):
        for v in result.values():
            yield from leaves(v)
    elif isinstance(result, (tuple, list)):
        for v in result:
            yield from leaves(v)
    elif isinstance(result, (int, float, np.generic, np.ndarray)) and not isinstance(
        result, (bool, np.bool_)
    ):
        yield np.asarray(result)
    elif hasattr(result, "__array_namespace__"):
        yield refmaml._xp.to_numpy(result)


def _snapshot(args):
    return {
        k: (v.tobytes(), v.dtype, v.shape, v.strides) for k, v in args.items() if isinstance(v, np.ndarray)
    }


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


def run(entry, args, name, label, value, expectation):
    """Call ``entry`` with ``args[name] = value``; assert what ``expectation`` demands. Returns the
    outcome (``"ok"`` or ``"error"``)."""
    canonical = dict(args)
    mutated = {**args, name: value}
    before = _snapshot(mutated)
    where = f"{entry.name}: {name} <- {label}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = entry.call(mutated)
            outcome = "ok"
        except ERRORS as exc:
            outcome, message = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - any other exception is the failure being looked for
            raise AssertionError(f"{where}: raised {type(exc).__name__}: {exc}") from exc
    after = _snapshot(mutated)
    assert before == after, f"{where}: an input array was modified"
    if outcome == "error" and entry.legitimate and re.search(entry.legitimate, message):
        expectation = "either"  # still a named error, whatever the mutation
    if outcome == "error":
        assert expectation in ("error", "either"), f"{where}: raised ({message}), expected success"
        allowed = {name, *entry.partners.get(name, ())} if expectation == "error" else set(mutated)
        named = any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", message) for n in allowed)
        assert named, f"{where}: the message does not name {sorted(allowed)}: {message!r}"
        return "error"
    assert expectation != "error", f"{where}: returned, expected ValueError or TypeError"
    values = list(leaves(result))
    for v in values:
        if v.dtype.kind in "fc":
            assert np.all(np.isfinite(v)), f"{where}: returned a non-finite number"
    if expectation in ("same", "close32"):
        # The same numbers, spelled as the valid input was (dtype and layout of args[name]).
        if expectation == "same":
            host = refmaml._xp.to_numpy(value) if hasattr(value, "__array_namespace__") else np.asarray(value)
            canonical[name] = host.astype(args[name].dtype)
        want = list(leaves(entry.call(canonical)))
        assert len(want) == len(values), f"{where}: a different number of results"
        tol = 1e-12 if expectation == "same" else entry.tol32
        for got, ref in zip(values, want, strict=True):
            if ref.dtype.kind in "fc":
                assert got.shape == ref.shape, f"{where}: shape {got.shape}, expected {ref.shape}"
                if entry.rounding_level:  # both are rounding errors: 1e-14, or 1e-5 (80 float32 eps)
                    gap = float(np.max(np.abs(got - ref)))
                    assert gap <= (1e-14 if expectation == "same" else 1e-5), f"{where}: differs by {gap:.1e}"
                else:
                    assert _rel(got, ref) <= tol, f"{where}: relative difference {_rel(got, ref):.2e} > {tol}"
    return "ok"
