"""What the oracle says of implementations written apart from refmaml (tests/referees.py, section 3).

Each implementation is judged on the logistic cases with ``l2=True`` (and ``lr_grad=True`` for the
ones that return a rate gradient); the correct ones must pass (no false alarm), each mistake must get
its verdict, or, for a mistake no bug in the catalogue describes, the localisation and the message
that point at it (derivations/oracle.md; the tolerance is check()'s, 1e-10 relative in float64).
"""

import warnings

import pytest

from refmaml import oracle

from . import referees

pytest.importorskip("torch")
pytest.importorskip("jax")


def _check(name, lr_grad=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the textbook loss takes log(0)
        return oracle.check(getattr(referees, name), model="logistic", l2=True, lr_grad=lr_grad)


@pytest.mark.parametrize("name", [
    "torch_correct", pytest.param("jax_correct", marks=pytest.mark.slow), "numpy_correct"])  # JAX compiles: slow
def test_correct_implementations_pass(name):
    report = _check(name)
    assert report.passed and report.diagnosis is None, report.message


@pytest.mark.parametrize("name, diagnosis", [
    ("numpy_hessian_last", "hessian_at_last_iterate"),
    ("torch_ridge_no_half", "l2_without_half"),
    ("torch_ridge_on_query", "l2_on_query"),
    ("numpy_textbook_bce", "unstable"),
    ("torch_float32", "interface"),
    ("torch_grad_2d", "interface"),
])
def test_each_mistake_gets_its_verdict(name, diagnosis):
    report = _check(name)
    assert not report.passed and report.diagnosis == diagnosis, report.message


def test_the_interface_messages_say_what_was_received():
    assert 'dtype="float32"' in _check("torch_float32").message
    assert "(1, 4)" in _check("torch_grad_2d").message
    unstable = _check("numpy_textbook_bce")
    assert unstable.localization["nonfinite"] and "softplus" in unstable.message


def test_a_sign_error_in_the_hessian_term_points_at_the_backward_pass():
    report = _check("numpy_hvp_sign")
    loc = report.localization
    assert report.diagnosis == "unknown" and loc["loss_agrees"] and not loc["grad_agrees"]
    assert "backward pass" in report.message and "Check the conventions" not in report.message


def test_a_reused_inner_gradient_points_at_state_between_steps():
    report = _check("torch_reused_grad")
    assert report.diagnosis == "unknown"
    assert "inner_steps>=2" in report.localization["failing_only_when"]
    assert "state carried between inner steps" in report.message


def test_one_tasks_support_set_for_all_points_at_state_between_tasks():
    report = _check("torch_first_task_support")
    assert report.diagnosis == "unknown" and "tasks>=2" in report.localization["failing_only_when"]
    assert "between tasks" in report.message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torch_correct_lr", "torch_lr_sign_lr"])
def test_an_unused_rate_at_k0_raises_and_is_located(name):
    """Both ask autograd for the gradient of a rate the graph does not use when K = 0."""
    report = _check(name, lr_grad=True)
    raised = report.localization["raised"]
    assert raised and all("-K0-" in case for case in raised)
    assert "K = 0 inner steps" in report.message and "allow_unused" in report.message
    assert "Check the conventions" not in report.message


@pytest.mark.slow
def test_a_negated_rate_gradient_is_located_on_the_rate_gradient():
    right, wrong = _check("torch_correct_lr", lr_grad=True), _check("torch_lr_sign_lr", lr_grad=True)
    bad = {r.name for r in wrong.cases if not r.passed} - {r.name for r in right.cases if not r.passed}
    assert bad and all(r.lr_grad_error > 1e-2 for r in wrong.cases if r.name in bad)
    assert all(r.loss_error <= 1e-10 and r.grad_error <= 1e-10 for r in wrong.cases if r.name in bad)
    assert "only the rate gradient differs" in wrong.message
