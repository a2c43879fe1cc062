"""The oracle's verdicts in the user's terms (derivations/oracle.md (O12), (O21)-(O23)): another
layout of theta, a constant multiple of the truth, per-layer gradients, nondeterminism; the
localisation that reads the cases right (passing_only_when, the de-confounded cases, which order
of derivative fails, hints for networks, exceptions quoted with their cases, "inf" explained); and
the oracle protecting itself from what ``fn`` does and returns.

The implementations are written apart from refmaml (``tests/test_oracle_users.py``, ``referees.py``)
or are hostile stubs. Tolerances are the oracle's own (1e-10 relative in float64); the checks here
are on verdicts and messages. The test configuration turns every warning into an error, so a
warning that escaped the oracle would fail these tests.
"""

import numpy as np
import pytest

from refmaml import oracle
from refmaml.models import MLP
from refmaml.oracle import format_report, selection

from . import referees
from .test_oracle_users import CONVNET, SINUSOID, TorchUser, refmaml_model

torch = pytest.importorskip("torch")

SINUSOID_NET = MLP((1, 40, 40, 1), "relu", "mse")
CLASSIFIER = [("linear", 4, 8), ("tanh",), ("linear", 8, 3)]
CLASSIFIER_NET = MLP((4, 8, 3), "tanh", "softmax")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- layout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake, said", [("bias_first", "bias before weight in each layer"),
                                           ("in_out", "weights read as (in, out)")])
def test_another_layout_is_named_and_said(mistake, said):
    """(O21): theta read with each layer's bias first, or with (in, out) weights: the answers are the
    truth's in that layout, and the message says which and how to get PyTorch's order."""
    report = oracle.check(TorchUser(CLASSIFIER, mistake=mistake), model=CLASSIFIER_NET, steps=(1,))
    assert report.diagnosis == "layout", report.message
    assert f"theta read with {said}" in report.message and "vector_to_parameters" in report.message


@pytest.mark.slow
def test_a_conv_layout_is_named():
    report = oracle.check(TorchUser(CONVNET, mistake="bias_first"), model=refmaml_model(CONVNET), steps=(2,))
    assert report.diagnosis == "layout" and "bias before weight" in report.message


# --- constant multiples (O22) ----------------------------------------------------------------------

def test_a_clipped_gradient_is_said_as_clipped():
    report = oracle.check(TorchUser(SINUSOID, "mse", mistake="clip"), model=SINUSOID_NET, steps=(1,))
    assert report.diagnosis == "scaled", report.message
    assert "clipped to a fixed norm" in report.message and "0.05" in report.message
    assert report.localization["loss_agrees"]


def test_a_mean_taken_twice_is_said_in_counts():
    report = oracle.check(TorchUser(CLASSIFIER, mistake="double_mean"), model=CLASSIFIER_NET, steps=(1,))
    assert report.diagnosis == "scaled", report.message
    assert "one over the number of tasks T times" in report.message


def test_a_rate_gradient_of_the_opposite_sign():
    report = oracle.check(referees.numpy_logistic("lr_grad_sign"), lr_grad=True, steps=(1, 2))
    assert report.diagnosis == "scaled"
    assert "rate gradient is exactly -1 times" in report.message and "opposite sign" in report.message


def test_the_json_report_carries_notes_and_factors():
    """``as_dict`` (``refmaml check --json``) gives each row's ``notes`` (which layout) and ``factors``
    (each part's constant multiple, the norm fn returned, the factor in the case's counts), as JSON."""
    import json

    report = oracle.check(TorchUser(CLASSIFIER, mistake="bias_first"), model=CLASSIFIER_NET, steps=(1,))
    rows = json.loads(json.dumps(oracle.as_dict(report)))["cases"]
    failing = [r for r in rows if not r["passed"]]
    assert failing and all(r["notes"] == [{"bug": "layout", "variant": "bias before weight in each layer"}]
                           for r in failing if "layout" in r["matches"])
    assert any("layout" in r["matches"] for r in failing)
    assert all(r["notes"] == [] and r["factors"] == [] for r in rows if r["passed"])

    report = oracle.check(TorchUser(CLASSIFIER, mistake="double_mean"), model=CLASSIFIER_NET, steps=(1,))
    rows = json.loads(json.dumps(oracle.as_dict(report)))["cases"]
    diagnostic = next(r for r in rows if r["id"].endswith("-K2-T4-n6-m9-diagnostic"))
    assert [f["part"] for f in diagnostic["factors"]] == ["loss", "grad"]
    for f, result in zip(diagnostic["factors"], next(c for c in report.cases if c.name == diagnostic["id"]).factors,
                         strict=True):
        assert f["factor"] == pytest.approx(0.25, rel=1e-12) and f["names"] == ["1/T"]
        assert f["norm"] == result[2] > 0


# --- per-layer gradients, and the loss judged beside them -----------------------------------------

def test_per_layer_gradients_are_an_interface_finding_with_the_expected_shape():
    """A list of per-parameter tensors: the expected shape (P,) and parameters_to_vector are said,
    and the meta-loss, which was right, is judged so (loss_agrees)."""
    report = oracle.check(TorchUser(CLASSIFIER, mistake="per_layer"), model=CLASSIFIER_NET, steps=(1,))
    assert report.diagnosis == "interface"
    assert "4-part list or tuple" in report.message and "(67,)" in report.message
    assert "parameters_to_vector" in report.message
    assert report.localization["loss_agrees"] and not report.localization["grad_agrees"]


# --- nondeterminism first ----------------------------------------------------------------------------

@pytest.mark.parametrize("mistake", ["dropout", "noise"])
def test_nondeterminism_comes_first(mistake):
    """Dropout left in training mode, or unseeded noise: two calls on the same inputs differ, and
    that verdict comes before any other (a dropout network's answers would otherwise be 'unknown')."""
    report = oracle.check(TorchUser(CLASSIFIER, mistake=mistake), model=CLASSIFIER_NET, steps=(1,))
    assert report.diagnosis == "nondeterministic", report.message
    assert "dropout" in report.message and "unseeded randomness" in report.message
    assert report.localization["nondeterministic"]


def test_a_stateful_fn_is_nondeterministic():
    """fn keeps state between calls (a counter scaling its answer): found by calling it twice."""
    calls = []

    def stateful(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        calls.append(1)
        loss, grad = referees.numpy_logistic()(theta, Xs, ys, Xq, yq, inner_lr=inner_lr, inner_steps=inner_steps)
        return loss, grad * (1 + 1e-3 * len(calls))

    report = oracle.check(stateful, steps=(1,))
    assert report.diagnosis == "nondeterministic"


# --- localisation (O12) ---------------------------------------------------------------------------------

def test_an_l2_only_mistake_is_not_also_read_as_tasks():
    """Version 3 has l2 > 0 with one task: a ridge term with a norm is located at l2 alone on a
    network too (version 2's network cases had l2 > 0 only with several tasks)."""
    report = oracle.check(TorchUser(SINUSOID, "mse", mistake="l2_norm"), model=SINUSOID_NET, l2=True, steps=(1,))
    assert report.diagnosis == "unknown", report.message
    assert report.localization["failing_only_when"] == ["l2>0"]
    assert "between tasks" not in report.message


def test_which_order_of_derivative_fails():
    """K = 0 cases need only the first derivative: a wrong Hessian term fails only from K = 1
    ("second"); a wrong gradient fails at K = 0 too ("first")."""
    second = oracle.check(referees.numpy_logistic("hvp_sign"), steps=(0, 1))
    assert second.localization["derivative"] == "second" and "second derivatives" in second.message

    def shifted(*args, **kw):
        loss, grad = referees.numpy_logistic()(*args, **kw)
        grad = np.array(grad)
        grad[0] += 1e-3
        return loss, grad

    first = oracle.check(shifted, steps=(0, 1))
    assert first.localization["derivative"] == "first" and "before any inner step" in first.message


def test_the_hints_are_the_networks_conventions():
    """An unknown mistake on a network recalls PyTorch's layout, target shapes and the mse without a
    1/2, not the linear models' labels and theta shapes."""
    report = oracle.check(TorchUser(CLASSIFIER, mistake="smoothing"), model=CLASSIFIER_NET, steps=(1,))
    assert report.diagnosis == "unknown", report.message
    assert "parameters_to_vector order" in report.message and "no 1/2" in report.message
    assert "theta of shape (d,) or (d, C)" not in report.message
    conv = oracle.check(TorchUser(CONVNET, mistake="smoothing"), model=refmaml_model(CONVNET), steps=(2,))
    assert "NCHW" in conv.message and "track_running_stats=False" in conv.message


def test_inf_in_the_table_is_explained():
    report = oracle.check(referees.torch_user("logistic", "squeeze"), steps=(1,))
    text = format_report(report)
    assert "inf in an error column: no comparison was possible" in text


# --- the oracle protects itself (O23) ----------------------------------------------------------------

class Raises:
    """A return value whose ``method`` raises."""

    def __init__(self, method):
        self.method = method

    def __getattr__(self, name):
        if name == self.method:
            def boom(*a, **k):
                raise RuntimeError(f"{name} says no")
            return boom
        raise AttributeError(name)

    def __array__(self, *a, **k):
        if self.method == "__array__":
            raise RuntimeError("__array__ says no")
        return np.zeros(4)


class FloatRaises:
    """A scalar-like object whose ``__float__`` raises."""

    def __float__(self):
        raise RuntimeError("__float__ says no")


def _returning(loss, grad):
    """An fn that returns ``loss`` and ``grad`` (or ``grad(theta)``)."""
    return lambda theta, *a, **k: (loss, grad(theta) if callable(grad) else grad)


@pytest.mark.parametrize("loss, grad, said", [
    (Raises("detach"), np.zeros(4), "detach says no"),
    (0.5, Raises("__array__"), "__array__ says no"),
    (FloatRaises(), np.zeros(4), "__float__ says no"),
    (0.5 + 1j, np.zeros(4), "meta_loss is complex"),
    (0.5, np.zeros(4) + 1j, "meta_grad is complex"),
    (10 ** 400, np.zeros(4), "too large for a float64"),
    (0.5, [1, 10 ** 400, 0, 0], "too large for a float64"),
    (float("nan"), np.zeros_like, "NaN or infinity"),
    (0.5, lambda theta: np.full(theta.shape, np.inf), "NaN or infinity"),
    (0.5, [[1.0, 2.0], [3.0]], "could not be read"),
])
def test_hostile_return_values_are_findings(loss, grad, said):
    """Each becomes a failed report with a message: no exception escapes, and no warning (a
    ComplexWarning would have let a complex meta-loss pass)."""
    report = oracle.check(_returning(loss, grad), steps=(1,))
    assert not report.passed and said in report.message + " ".join(c.failure for c in report.cases), report.message


def test_answers_near_the_largest_float_are_compared_without_overflow():
    """A gradient of +-1.7e308 against a modest truth: compared at a quarter of its size, reported
    with its magnitude, never an overflow warning (a relative error beyond the largest float is inf,
    and the table says what inf means)."""
    report = oracle.check(_returning(1.7e308, lambda theta: np.where(np.arange(theta.size) % 2, -1.7e308, 1.7e308)
                                     .reshape(theta.shape)), steps=(1,))
    assert not report.passed and report.diagnosis == "unknown"
    assert all("near float64's largest" in c.failure for c in report.cases)
    assert "beyond the largest float" in format_report(report)


def test_an_fn_that_writes_into_its_inputs_changes_nothing():
    """Fresh copies every call: zeroing theta, the features and the rates in place (through
    torch.from_numpy's shared memory) neither makes it pass wrongly nor corrupts later checks; the
    cases are read-only."""
    net = CLASSIFIER_NET
    cached = selection.network_cases(net)   # the cases check() judges against, built once per process
    before = [(c.theta.copy(), c.Xs.copy(), np.array(c.inner_lr)) for c in cached]
    report = oracle.check(TorchUser(CLASSIFIER, mistake="writes_inputs"), model=net, lr_grad=True, steps=(1,))
    assert report.passed, report.message
    for (theta, Xs, rate), c in zip(before, selection.network_cases(net), strict=True):
        assert np.array_equal(theta, c.theta) and np.array_equal(Xs, c.Xs) and np.array_equal(rate, c.inner_lr)
    assert oracle.check(TorchUser(CLASSIFIER), model=net, lr_grad=True, steps=(1,)).passed
    with pytest.raises(ValueError, match="read-only"):
        cached[0].theta[0] = 0.0
