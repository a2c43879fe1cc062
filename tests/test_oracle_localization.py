"""The oracle's second version (derivations/oracle.md (O9)-(O11)): where an implementation is wrong
(``Report.localization``), the verdicts ``interface`` and ``unstable``, the bugs named from the
ridge term, the Hessian's point and the gradient alone, and ``refmaml check`` refusing incomplete
results.

Every implementation judged here is written from the definitions, the way users write MAML
(``referees.py``), never with refmaml's code. Tolerances are the oracle's
own (``refmaml.oracle.TOLERANCE``); the checks here are on verdicts, keys and messages.
"""

import json

import numpy as np
import pytest

from refmaml import cli, oracle
from refmaml.oracle import cases, judge, vectors

from . import referees

KEYS = ["loss_agrees", "grad_agrees", "lr_grad_agrees", "failing_only_when", "passing_only_when", "derivative",
        "nonfinite", "raised", "nondeterministic"]


def _torch():
    return pytest.importorskip("torch")


def user(mistake, model="logistic"):
    _torch()
    return referees.torch_user(model, mistake)


# --- localization -------------------------------------------------------------------------------

def test_localization_has_exactly_its_keys_and_is_empty_on_a_pass():
    report = oracle.check(referees.numpy_logistic(), l2=True, lr_grad=True, steps=(1, 2))
    assert report.passed and list(report.localization) == KEYS
    assert report.localization == {"loss_agrees": True, "grad_agrees": True, "lr_grad_agrees": True,
                                   "failing_only_when": [], "passing_only_when": [], "derivative": None,
                                   "nonfinite": [], "raised": [], "nondeterministic": []}
    assert oracle.check(referees.numpy_logistic(), steps=(2,)).localization["lr_grad_agrees"] is None


def test_a_wrong_backward_pass_with_a_right_loss_points_at_the_backward_pass():
    """A sign error in the Hessian-vector term: the loss agrees to rounding everywhere."""
    report = oracle.check(referees.numpy_logistic("hvp_sign"), steps=(1, 2))
    loc = report.localization
    assert report.diagnosis == "unknown"
    assert loc["loss_agrees"] and not loc["grad_agrees"]
    assert "look at the backward pass" in report.message and "Check the conventions" not in report.message


def test_a_wrong_rate_gradient_alone_is_located():
    """A rate gradient of the opposite sign: located on the rate gradient, and said as the factor -1
    (O22)."""
    report = oracle.check(referees.numpy_logistic("lr_grad_sign"), lr_grad=True, steps=(1,))
    loc = report.localization
    assert report.diagnosis == "scaled"
    assert loc["loss_agrees"] and loc["grad_agrees"] and loc["lr_grad_agrees"] is False
    assert "rate gradient is exactly -1 times refmaml's" in report.message and "opposite sign" in report.message


def test_state_carried_between_inner_steps():
    """The inner gradient computed once and reused: right for K <= 1, wrong from K = 2."""
    report = oracle.check(user("reuse_inner_grad"), steps=(0, 1, 2))
    loc = report.localization
    assert report.diagnosis == "unknown"
    assert "inner_steps>=2" in loc["failing_only_when"] and "inner_steps>=1" in loc["failing_only_when"]
    assert "K >= 2" in report.message and "carried between inner steps" in report.message
    assert "at least one inner step" not in report.message   # the most specific step condition only


def test_state_carried_between_tasks():
    """Every task adapting on the first task's support set: right with one task."""
    report = oracle.check(user("first_task_support"), steps=(1, 2))
    assert report.diagnosis == "unknown"
    assert report.localization["failing_only_when"] == ["tasks>=2"]
    assert "carried between tasks" in report.message


def test_a_ridge_term_with_a_norm_is_located_at_the_ridge_term():
    """``l2/2 * torch.norm(theta)``: wrong only where l2 > 0."""
    report = oracle.check(user("l2_norm"), l2=True, steps=(1,))
    assert report.diagnosis == "unknown"
    assert report.localization["failing_only_when"] == ["l2>0"]
    assert "(l2/2)||theta||^2" in report.message


def test_an_exception_on_some_cases_is_listed_and_located():
    """Logits squeezed: with one example per set the shapes no longer match and PyTorch raises."""
    report = oracle.check(user("squeeze"), steps=(1, 2))
    loc = report.localization
    assert report.diagnosis == "unknown"
    assert loc["raised"] == ["logistic-K2-T3-n1-m1-d4-oneexample", "logistic-K1-T1-n1-m1-d4-oneexample-alone"]
    assert loc["failing_only_when"] == ["one_example"]   # version 3: not also tasks>=2 and K>=2
    assert "one example per set" in report.message and "fn raised on 2 cases" in report.message
    # the exception quoted with its cases (O12)
    assert "logistic-K2-T3-n1-m1-d4-oneexample, logistic-K1-T1-n1-m1-d4-oneexample-alone: ValueError: Target size" \
        in report.message


def test_rates_applied_to_the_wrong_parameters_are_located():
    """Per-parameter rates held in PyTorch's (out, in) layout and reshaped, not transposed: every
    case with equal rates passes, every case with distinct rates fails."""
    report = oracle.check(user("rates_transposed", "softmax"), model="softmax", lr_grad=True, steps=(1,))
    assert report.diagnosis == "unknown"
    assert report.localization["failing_only_when"] == ["lr_array"]
    assert "one rate per parameter" in report.message


def test_saturated_only_failures_point_at_numerical_stability():
    """A textbook cross-entropy with its probabilities clipped to [1e-7, 1 - 1e-7], as tutorials do
    to avoid log(0): finite everywhere, wrong only where the logits saturate."""
    torch = _torch()
    F = torch.nn.functional

    def clipped(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        theta = torch.tensor(theta, requires_grad=True)
        Xs, ys, Xq, yq = map(torch.tensor, (Xs, ys, Xq, yq))

        def bce(z, y):
            return F.binary_cross_entropy(torch.clamp(torch.sigmoid(z), 1e-7, 1 - 1e-7), y)

        losses = []
        for t in range(Xs.shape[0]):
            phi = theta
            for _ in range(inner_steps):
                g, = torch.autograd.grad(bce(Xs[t] @ phi, ys[t]), phi, create_graph=True)
                phi = phi - inner_lr * g
            losses.append(bce(Xq[t] @ phi, yq[t]))
        meta = torch.stack(losses).mean()
        return meta.item(), torch.autograd.grad(meta, theta)[0].numpy()

    report = oracle.check(clipped, steps=(2,))
    assert report.diagnosis == "unknown", report.message
    assert "saturated" in report.localization["failing_only_when"]
    assert report.localization["nonfinite"] == []
    assert "numerical stability" in report.message


# --- interface ----------------------------------------------------------------------------------

def test_a_gradient_of_the_wrong_shape_is_an_interface_problem():
    report = oracle.check(user("row_vector"), steps=(1,))
    assert report.diagnosis == "interface"
    assert "expected with shape (4,) and dtype float64" in report.message
    assert "received shape (1, 4)" in report.message


def test_an_fn_that_always_raises_is_an_interface_problem():
    report = oracle.check(user("not_implemented"), steps=(1,))
    assert report.diagnosis == "interface"
    assert "raised on every case: NotImplementedError: this MAML handles one task" in report.message
    assert report.localization["raised"] == [c.name for c in report.cases]


def test_float32_answers_in_a_float64_check_seen_from_their_dtype():
    report = oracle.check(user("float32"), steps=(1,))
    assert report.diagnosis == "interface"
    assert "dtype float32 in a float64 check" in report.message and 'dtype="float32"' in report.message
    assert oracle.check(user("float32"), steps=(1,), dtype="float32").passed   # and it is right in float32


def test_float32_answers_in_a_float64_check_seen_from_their_errors():
    """Computed in float32, returned as float64: every error lies in float32's rounding band."""
    report = oracle.check(referees.numpy_logistic("float32"), steps=(1, 2))
    assert report.diagnosis == "interface"
    assert "float32's rounding band (1e-09 to 1e-04" in report.message
    worst = max(max(c.loss_error, c.grad_error) for c in report.cases)
    assert 1e-9 < worst <= 1e-4
    assert oracle.check(referees.numpy_logistic("float32"), steps=(1, 2), dtype="float32").passed


def test_wrong_number_of_values():
    report = oracle.check(lambda *a, **k: (0.5, np.zeros(4), np.zeros(4)), steps=(0,))
    assert report.diagnosis == "interface" and "got 3 values" in report.message


# --- unstable -----------------------------------------------------------------------------------

def test_the_textbook_cross_entropy_is_unstable():
    """``-mean(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` is NaN or infinite once sigmoid(z)
    rounds to 1 (z beyond about 37): only on the saturated case."""
    report = oracle.check(user("textbook_bce"), steps=(2,))
    assert report.diagnosis == "unstable"
    assert report.localization["nonfinite"] == ["logistic-K2-T2-n4-m5-d2-saturated"]
    assert "largest logit" in report.message and "softplus" in report.message
    assert "log-sum-exp" in report.message
    logit = next(c.largest_logit for c in report.cases if c.name == "logistic-K2-T2-n4-m5-d2-saturated")
    assert logit > 37


# --- the new named bugs -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["logistic", "softmax", "linear"])
@pytest.mark.parametrize("bug", ["l2_on_query", "l2_without_half"])
def test_ridge_bugs_are_named(bug, model):
    report = oracle.check(user(bug, model), model=model, l2=True, steps=(1,))
    assert report.diagnosis == bug, report.message
    assert report.localization["failing_only_when"] == ["l2>0"]
    assert bug in report.named


def test_ridge_bugs_cannot_be_named_without_l2():
    report = oracle.check(user("l2_on_query"), steps=(1,))
    assert report.passed and "l2_on_query" not in report.named and "lr_no_grad" not in report.named


def test_hessian_at_the_last_iterate_is_named():
    report = oracle.check(referees.numpy_logistic("hessian_at_last"), l2=True, lr_grad=True, steps=(2,))
    assert report.diagnosis == "hessian_at_last_iterate", report.message
    assert report.localization["loss_agrees"]


def test_the_right_loss_with_a_bugs_gradient_is_named():
    """The query loss reported, the support loss differentiated: the gradient of
    meta_loss_on_support with the truth's loss (gradient-only matching, (O11))."""
    report = oracle.check(user("loss_reported_grad_of_support", "softmax"), model="softmax", steps=(2,))
    assert report.diagnosis == "meta_loss_on_support", report.message
    assert report.localization["loss_agrees"]


@pytest.mark.parametrize("model", ["logistic", "softmax"])
def test_the_tutorial_with_averaged_query_losses_is_named(model):
    _torch()
    report = oracle.check(referees.torch_tutorial_averaged(model), model=model, steps=(1, 2))
    assert report.diagnosis == "tutorial_code", report.message


def test_check_says_which_cases_it_ran():
    report = oracle.check(referees.numpy_logistic(), steps=(0, 5))
    assert report.ran.startswith(f"{len(report.cases)} cases: logistic; inner_steps 0, 5")
    assert f"ran {report.ran}" in str(report)


# --- linear regression --------------------------------------------------------------------------

def test_linear_regression_users():
    correct = oracle.check(user(None, "linear"), model="linear", l2=True, lr_grad=True)
    assert correct.passed, correct.message
    report = oracle.check(referees.torch_loop("linear", "first_order"), model="linear", steps=(2,))
    assert report.diagnosis == "first_order"


# --- refmaml check: complete results, --json, invalid files ---------------------------------------

def _answers(fn, chosen, *, rate_grads):
    out = {}
    for case in chosen:
        got = fn(case.theta.copy(), case.Xs, case.ys, case.Xq, case.yq,
                 inner_lr=np.asarray(case.inner_lr) if case.rates else case.inner_lr,
                 inner_steps=case.inner_steps, l2=case.l2)
        entry = {"meta_loss": float(got[0]), "meta_grad": np.asarray(got[1]).tolist()}
        if rate_grads:
            entry["inner_lr_grad"] = np.asarray(got[2]).tolist()
        out[case.id] = entry
    return out


def _numpy_any(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2):
    """The hand-written NumPy implementation, asked for the rate gradient always (scalar rates too)."""
    return referees.numpy_logistic()(theta, Xs, ys, Xq, yq, inner_lr=np.asarray(inner_lr, dtype=float),
                                 inner_steps=inner_steps, l2=l2)


def _file(tmp_path, content):
    path = tmp_path / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _logistic(version="1", **opts):
    return cases.select(cases.all_cases(version), models=("logistic",), l2=opts.get("l2", False),
                        rates=opts.get("lr_grad", False))


@pytest.mark.parametrize("opts", [{}, {"l2": True}, {"l2": True, "lr_grad": True}])
def test_complete_results_pass(tmp_path, opts):
    rate_grads = opts.get("lr_grad", False)
    fn = _numpy_any if rate_grads else (lambda *a, **k: referees.numpy_logistic()(*a, **k)[:2])
    content = {"format": "refmaml-results", "vectors_version": "1", "options": opts,
               "results": _answers(fn, _logistic(**opts), rate_grads=rate_grads)}
    code, text = oracle.check_file(_file(tmp_path, content))
    assert code == 0 and "PASSED" in text, text


def test_four_answers_are_not_a_pass(tmp_path):
    chosen = _logistic()[:4]
    content = {"format": "refmaml-results", "vectors_version": "1",
               "results": _answers(lambda *a, **k: referees.numpy_logistic()(*a, **k)[:2], chosen, rate_grads=False)}
    code, text = oracle.check_file(_file(tmp_path, content))
    required = len(_logistic())
    assert code == 1 and "INCOMPLETE" in text and "FAILED: incomplete" in text
    assert f"{required - 4} of the {required} cases the declared options require are missing" in text
    assert "diagnostic" in text and "edge" in text
    code, text = oracle.check_file(_file(tmp_path, content), as_json=True)
    doc = json.loads(text)
    assert code == 1 and not doc["passed"] and doc["diagnosis"] == "incomplete"
    assert len(doc["missing"]) == required - 4
    assert set(doc) >= {"passed", "diagnosis", "message", "localization", "tolerance", "missing", "cases"}
    assert list(doc["localization"]) == KEYS
    assert set(doc["cases"][0]) == {"id", "passed", "loss_error", "grad_error", "lr_grad_error", "matches",
                                    "failure", "notes", "factors"}


def test_declared_rate_gradients_are_required(tmp_path):
    opts = {"lr_grad": True}
    chosen = _logistic(**opts)
    results = _answers(_numpy_any, chosen, rate_grads=True)
    dropped = next(c.id for c in chosen if not c.rates)
    del results[dropped]["inner_lr_grad"]
    content = {"format": "refmaml-results", "vectors_version": "1", "options": opts, "results": results}
    code, text = oracle.check_file(_file(tmp_path, content), as_json=True)
    assert code == 1 and json.loads(text)["missing"] == [dropped]


def test_a_bug_in_an_incomplete_file_is_still_named(tmp_path):
    _torch()
    chosen = [c for c in _logistic() if c.diagnostic or c.inner_steps == 2]
    fn = referees.torch_loop("logistic", "first_order")
    content = {"format": "refmaml-results", "vectors_version": "1",
               "results": _answers(lambda *a, l2, **k: fn(*a, l2=l2, **k), chosen, rate_grads=False)}
    code, text = oracle.check_file(_file(tmp_path, content))
    assert code == 1 and "FAILED: first_order" in text and "INCOMPLETE" in text


def test_version_2_results_with_linear_regression(tmp_path):
    chosen = cases.select(cases.all_cases("2"), models=("linear",), l2=True)
    fn = user(None, "linear")
    content = {"format": "refmaml-results", "vectors_version": "2", "options": {"model": "linear", "l2": True},
               "results": _answers(fn, chosen, rate_grads=False)}
    code, text = oracle.check_file(_file(tmp_path, content))
    assert code == 0, text
    content["options"]["lr_grad"] = True
    code, text = oracle.check_file(_file(tmp_path, content))
    assert code == 1 and "INCOMPLETE" in text


def test_a_nan_in_a_results_file_names_its_case(tmp_path):
    cid = _logistic()[0].id
    text = json.dumps({"format": "refmaml-results", "vectors_version": "1",
                       "results": {cid: {"meta_loss": 0.5, "meta_grad": [0.0, 0.0, 0.0, 0.0]}}})
    code, message = oracle.check_file(_file(tmp_path, text.replace("0.0, 0.0]", "NaN, 0.0]")))
    assert code == 2 and message.startswith("refmaml check: ") and f"case {cid!r}" in message
    assert "not a finite number" in message
    code, message = oracle.check_file(_file(tmp_path, text.replace("0.5", "1e999")))
    assert code == 2 and f"case {cid!r}.meta_loss" in message


def test_a_vectors_file_is_not_a_results_file(tmp_path):
    paths = vectors.write(tmp_path, version="1")
    code, message = oracle.check_file(paths[0])
    assert code == 2 and "this is a vectors file, not a results file" in message


@pytest.mark.parametrize("options, message", [({"l2": "yes"}, "options.l2"), ({"steps": [3]}, "options.steps"),
                                              ({"model": "quadratic"}, "options.model"),
                                              ({"extra": 1}, "unexpected extra")])
def test_invalid_options_are_refused(tmp_path, options, message):
    content = {"format": "refmaml-results", "vectors_version": "1", "options": options,
               "results": {"logistic-K0-T1-n5-m7-d4": {"meta_loss": 0.1, "meta_grad": [0, 0, 0, 0]}}}
    code, text = oracle.check_file(_file(tmp_path, content))
    assert code == 2 and message in text


def test_as_dict_rows_are_json():
    report = oracle.check(user("not_implemented"), steps=(1,))
    doc = json.loads(json.dumps(judge.as_dict(report)))
    assert doc["cases"][0]["loss_error"] == "inf" and "NotImplementedError" in doc["cases"][0]["failure"]


# --- networks -----------------------------------------------------------------------------------

SINUSOID = ((1, 40, 40, 1), "relu", "mse")
CLASSIFIER = ((4, 8, 3), "tanh", "softmax")


@pytest.mark.slow
@pytest.mark.parametrize("arch, kw", [(SINUSOID, dict(l2=True, lr_grad=True)), (CLASSIFIER, dict(l2=True)),
                                      (((2, 5, 2), "tanh", "mse"), dict(steps=(2,)))])
def test_a_pytorch_network_passes(arch, kw):
    """nn.Sequential + vector_to_parameters + torch.func.functional_call, create_graph=True: agrees
    to rounding (the oracle's 1e-10) on the cases built for its own architecture, (T, n, d_out)
    targets included."""
    _torch()
    from refmaml.models import MLP

    report = oracle.check(referees.torch_network(*arch), model=MLP(*arch), **kw)
    assert report.passed, report.message
    assert all(c.name.startswith(cases.network_name(MLP(*arch))) for c in report.cases)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [SINUSOID, CLASSIFIER])
def test_a_pytorch_network_without_create_graph_is_first_order(arch):
    _torch()
    from refmaml.models import MLP

    report = oracle.check(referees.torch_network(*arch, create_graph=False), model=MLP(*arch), steps=(2,))
    assert report.diagnosis == "first_order", report.message
    assert "first_order" in report.named


@pytest.mark.parametrize("arch", [SINUSOID, CLASSIFIER])
def test_network_cases_separate_the_bugs_they_name(arch):
    """The separation (O7)/(O11) is measured when a network's cases are built; every bug the check
    names is at least 1e-2 from the truth and from every other bug there. Measured minima: about
    0.011 (sinusoid network, l2_without_half, with rates) and 0.12 (classifier)."""
    from refmaml.models import MLP

    model = MLP(*arch)
    chosen = cases.select(cases.network_cases(model), models=(model,), l2=True, rates=True)
    gaps = judge.separation(chosen, lr_grad=True)
    named = [k for k in oracle.DIAGNOSES if gaps.get(k, 0.0) >= judge.SEPARATION]
    # these two architectures separate every bug they have: no batch norm, max-pool or mask here, one
    # output of mse (sinusoid) or none (classifier)
    absent = {"bn_eval_statistics", "bn_detached_statistics", "bn_support_statistics_at_query",
              "maxpool_no_second_order", "all_adapted", "mse_sum_over_outputs"} | ({"broadcast_targets", "half_mse"} if arch == CLASSIFIER else set())
    assert set(named) == set(oracle.DIAGNOSES) - absent
    assert min(gaps.values()) >= 1e-2


def test_a_bug_a_network_cannot_separate_is_not_named():
    """Without a hidden layer and with mse the Hessian is constant: hessian_at_last_iterate is the
    truth there, so the check cannot (and does not claim to) name it."""
    from refmaml.models import MLP

    model = MLP((3, 1), "tanh", "mse")
    report = oracle.check(referees.torch_network((3, 1), "tanh", "mse"), model=model, steps=(2,)) \
        if _has_torch() else None
    chosen = cases.select(cases.network_cases(model), models=(model,), steps=(2,))
    gaps = judge.separation(chosen, lr_grad=False)
    assert gaps.get("hessian_at_last_iterate", 0.0) < judge.SEPARATION
    if report is not None:
        assert report.passed and "hessian_at_last_iterate" not in report.named


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_relu_cases_keep_their_margin():
    """Every hidden pre-activation of every ReLU case at least RELU_MARGIN from 0 at every inner
    iterate, support and query (recomputed here from the layers)."""
    import refmaml
    from refmaml.models import MLP

    model = MLP(*SINUSOID)
    smallest = np.inf
    for case in cases.network_cases(model):
        path = np.asarray(refmaml.adapt(case.theta, case.Xs, case.ys, inner_lr=case.inner_lr,
                                        inner_steps=case.inner_steps, model=model, l2=case.l2,
                                        return_trajectory=True))
        for k in range(case.inner_steps + 1):
            for t in range(case.T):
                for X in (case.Xs[t], case.Xq[t]):
                    h = X
                    for W, b in model.unflatten(path[k, t])[:-1]:
                        z = h @ W.T + b
                        smallest = min(smallest, float(np.min(np.abs(z))))
                        h = np.maximum(z, 0)
    assert smallest >= cases.RELU_MARGIN


@pytest.mark.slow
def test_version_2_vectors_record_their_networks(tmp_path):
    paths = vectors.write(tmp_path, version="2")   # frozen: version 3 (the default) extends it
    assert paths[0].name == "refmaml-vectors-v2.json"
    doc = json.loads(paths[0].read_text())
    nets = [c for c in doc["cases"] if c["model"] == "mlp"]
    assert {(tuple(c["sizes"]), c["activation"], c["loss"]) for c in nets} == {SINUSOID, CLASSIFIER}
    loaded = vectors.load(paths[0])
    assert len(loaded) == len(doc["cases"]) == 186
    one = vectors.write(tmp_path / "v1", version="1")
    assert one[0].name == "refmaml-vectors-v1.json"
    assert [c.id for c, _ in vectors.load(one[0])] == [c.id for c in cases.all_cases("1")]
    assert json.loads(one[0].read_text())["version"] == "1"


@pytest.mark.slow
def test_version_2_results_for_a_network(tmp_path):
    """A results file for the sinusoid network: the PyTorch network passes, first-order is named."""
    _torch()
    from refmaml.models import MLP

    model = MLP(*SINUSOID)
    chosen = cases.select(cases.all_cases("2"), models=(model,), steps=(1,))
    for create_graph, expected in ((True, 0), (False, 1)):
        fn = referees.torch_network(*SINUSOID, create_graph=create_graph)
        content = {"format": "refmaml-results", "vectors_version": "2",
                   "options": {"model": cases.network_name(model), "steps": [1]},
                   "results": _answers(fn, chosen, rate_grads=False)}
        code, text = oracle.check_file(_file(tmp_path, content))
        assert code == expected, text
        if not create_graph:
            assert "FAILED: first_order" in text


@pytest.mark.parametrize("field, value, message", [("sizes", [1, 0, 1], "sizes must be"),
                                                   ("activation", "sigmoid", "activation must be"),
                                                   ("loss", "hinge", "loss must be"),
                                                   ("sizes", [4, 40, 3], "theta has shape")])
def test_invalid_network_records_are_refused(tmp_path, field, value, message):
    from refmaml.models import MLP

    case = cases.network_cases(MLP(*CLASSIFIER))[0]
    doc = {"format": "refmaml-vectors", "version": "2", "generator": "test", "conventions": {},
           "cases": [vectors.case_record(case)]}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    assert vectors.load(good)[0][0].id == case.id
    doc["cases"][0][field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(vectors.InvalidFile, match=message):
        vectors.load(bad)


def test_the_command_line_prints_the_json_report_and_writes_either_version(tmp_path, capsys):
    """`refmaml check --json` prints check_file's JSON on stdout with its exit code; an invalid file
    goes to stderr with exit 2; `refmaml vectors --version 1` writes the frozen version."""
    chosen = _logistic()[:4]
    content = {"format": "refmaml-results", "vectors_version": "1",
               "results": _answers(lambda *a, **k: referees.numpy_logistic()(*a, **k)[:2], chosen, rate_grads=False)}
    path = _file(tmp_path, content)
    assert cli.main(["check", str(path), "--json"]) == 1
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(oracle.check_file(path, as_json=True)[1])
    assert cli.main(["vectors", "--out", str(tmp_path / "v1"), "--version", "1"]) == 0
    assert (tmp_path / "v1" / "refmaml-vectors-v1.json").exists()
    capsys.readouterr()
    assert cli.main(["check", str(tmp_path / "v1" / "refmaml-vectors-v1.json"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "this is a vectors file, not a results file" in captured.err
