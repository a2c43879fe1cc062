"""The oracle (derivations/oracle.md): cases, diagnosis, test vectors, ``refmaml check``.

The referees are independent implementations in PyTorch and JAX (``referees.py``), written the way
users write MAML; they need the ``crosscheck`` extra and are skipped without it. Tolerances: the
oracle's own (1e-10 in float64, 1e-4 in float32, ``refmaml.oracle.TOLERANCE``), and 1e-12 where a
correct referee is checked to agree to rounding (O8).
"""

import itertools
import json

import numpy as np
import pytest

import refmaml
from refmaml import cli, oracle
from refmaml.oracle import answers, cases, judge, vectors

from . import referees

DIAGNOSTIC = [c for c in cases.all_cases(networks=False) if c.diagnostic]
# the bugs of networks only: masks, batch norm, max-pooling, a layout of layers, several mse outputs
NETWORK_ONLY = {"bn_eval_statistics", "bn_detached_statistics", "bn_support_statistics_at_query", "all_adapted",
                "head_only_adapted", "biases_not_adapted", "maxpool_no_second_order", "layout",
                "mse_sum_over_outputs"}


def _model(theta, ys):
    """The model of a case from what fn receives: softmax has a 2-D theta, logistic 0/1 labels,
    linear regression real targets."""
    if theta.ndim == 2:
        return "softmax"
    return "logistic" if np.all(np.isin(ys, (0.0, 1.0))) else "linear"


def refmaml_fn(**fixed):
    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        out = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=inner_lr, inner_steps=inner_steps,
                                          l2=l2, lr_grad=np.ndim(inner_lr) > 0, model=_model(theta, ys), **fixed)
        return tuple(np.asarray(o) for o in out)
    return fn


# --- the cases and the bugs' answers ------------------------------------------------------------

@pytest.mark.parametrize("lr_grad", [False, True])
def test_diagnostic_cases_separate_every_pair(lr_grad):
    """(O7) and (O11): on the diagnostic cases of every model the truth and every bug's answers
    differ pairwise by at least 1e-2 (relative), a hundred times the float32 tolerance, and so do
    their gradients alone (gradient-only matching names a bug from them). Measured minimum: about
    0.029 (truth against hessian_at_last_iterate, logistic, K = 3)."""
    smallest, gradients = np.inf, np.inf
    for case in DIAGNOSTIC:
        if case.rates and not lr_grad:
            continue
        rate = case.rate(lr_grad)
        options = [("truth", answers.truth(case, rate))]
        options += [(k, a) for k, found in answers.wrong(case, rate, lr_grad=lr_grad).items() for a in found]
        expected = {"truth", *answers.DIAGNOSES} - (set() if lr_grad else {"lr_no_grad"}) \
            - (set() if case.l2 else set(answers.RIDGE)) \
            - ({"hessian_at_last_iterate"} if case.model == "linear" else {"broadcast_targets", "half_mse"}) \
            - NETWORK_ONLY
        assert {k for k, _ in options} == expected
        for (k1, a), (k2, b) in itertools.permutations(options, 2):
            if k1 != k2:
                errs = judge.errors(a, b)
                smallest = min(smallest, max(e for e in errs if e is not None))
                gradients = min(gradients, max(e for e in errs[1:] if e is not None))
    assert smallest >= gradients >= 1e-2
    assert gradients <= 0.1   # the measured minimum (about 0.029) is what the docs state


def test_bugs_that_need_a_ridge_term_or_a_curved_loss_are_the_truth_without():
    """(O9) with l2 = 0 and (O10) for linear regression (constant Hessian) are the truth: the
    oracle does not offer them there."""
    for case in cases.all_cases(networks=False):
        if case.diagnostic and not case.rates and case.inner_steps == 2:
            rate = case.inner_lr
            right = answers.truth(case, rate)
            same = answers.unrolled(case, rate, query_l2=0.0, hessian_at_last=case.model == "linear")
            assert max(judge.errors(same, right)[:2]) <= 1e-13


def test_some_cases_cannot_tell_bugs_apart():
    """Why the diagnostic cases exist: with K = 0 first order is exact, with T = 1 drift and sums
    over tasks are the truth, with one example per set sums over examples are means."""
    by_tag = {c.id: c for c in cases.all_cases()}
    k0 = by_tag["logistic-K0-T3-n5-m7-d4"]
    assert judge.errors(answers.first_order(k0, k0.inner_lr), answers.truth(k0, k0.inner_lr))[1] == 0
    t1 = by_tag["softmax-K2-T1-n5-m7-d4"]
    truth = answers.truth(t1, t1.inner_lr)
    assert max(judge.errors(answers.drift(t1, t1.inner_lr)[0], truth)[:2]) <= 1e-14
    one = by_tag["logistic-K2-T3-n1-m1-d4-oneexample"]
    summed = answers.wrong(one, one.inner_lr, lr_grad=False)["sum_over_examples"]
    assert all(max(judge.errors(a, answers.truth(one, one.inner_lr))[:2]) <= 1e-14 for a in summed)


def test_case_ids_are_unique_and_stable():
    ids = [c.id for c in cases.all_cases("1")]
    assert len(ids) == len(set(ids)) == 86
    assert ids[0] == "logistic-K0-T1-n5-m7-d4" and "softmax-K3-T4-n6-m9-d5-l2-rates-diagnostic" in ids
    v2 = [c.id for c in cases.all_cases("2")]
    assert v2[:86] == ids and len(v2) == len(set(v2)) == 86 + 42 + 2 * 29
    assert all(i.startswith("linear-") for i in v2[86:128])
    assert all(i.startswith(("mlp-1x40x40x1-relu-mse-", "mlp-4x8x3-tanh-softmax-")) for i in v2[128:])


# sha256 of version 1's inputs (ids, data, rates, steps, l2) as this module serialises them,
# taken from the version-1 code before version 2 existed: version 1 stays frozen.
V1_INPUTS_SHA256 = "6c1c0a1945e856cab71e6fb7cabf3b909aa0b4c67f122b5d450ea0480d5df3c7"


def _inputs_digest(version):
    import hashlib
    h = hashlib.sha256()
    for c in cases.all_cases(version):
        rate = c.inner_lr.tolist() if c.rates else c.inner_lr
        h.update(json.dumps([c.id, c.model, c.theta.tolist(), c.Xs.tolist(), c.ys.tolist(), c.Xq.tolist(),
                             c.yq.tolist(), rate, c.inner_steps, c.l2, c.diagnostic, c.note]).encode())
    return h.hexdigest()


def test_version_1_is_frozen():
    assert _inputs_digest("1") == V1_INPUTS_SHA256


def test_tutorial_code_answer_is_the_transcribed_listing():
    """(O6) with K = 1 on the softmax model is the buffer of ``refmaml.tutorial.code_step``."""
    from refmaml import tutorial

    case = next(c for c in DIAGNOSTIC if c.model == "softmax" and not c.l2 and not c.rates)
    case = cases.Case(case.id, case.model, case.theta, case.Xs, case.ys, case.Xq, case.yq, case.inner_lr, 1)
    beta = 0.01
    step = tutorial.code_step(case.theta, list(zip(case.Xs, case.ys, strict=True)),
                              list(zip(case.Xq, case.yq, strict=True)),
                              inner_lr=case.inner_lr, outer_lr=beta)
    buffer = (step.trajectory[-1] - step.theta) / beta
    mean, _, _, _ = answers.tutorial_code(case, case.inner_lr)
    assert refmaml.check.relative_error(mean.grad, buffer) <= 1e-12
    assert mean.loss == pytest.approx(step.printed, rel=1e-14)


# --- check(fn) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(l2=True), dict(lr_grad=True), dict(l2=True, lr_grad=True)])
def test_refmaml_passes_its_own_check(kw):
    for model in ("both", "linear"):
        report = oracle.check(refmaml_fn(), model=model, **kw)
        assert report.passed and report.diagnosis is None
        assert all(c.passed and c.matched is None for c in report.cases)
        assert "agree" in report.message and "PASSED" in str(report)
        assert report.localization == {"loss_agrees": True, "grad_agrees": True,
                                       "lr_grad_agrees": True if kw.get("lr_grad") else None,
                                       "failing_only_when": [], "passing_only_when": [], "derivative": None,
                                       "nonfinite": [], "raised": [], "nondeterministic": []}


def test_float32_implementations_are_judged_fairly():
    """A correct float32 implementation passes with the float32 tolerance; a float32 one with a
    bug is still diagnosed."""
    def fn32(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, first_order=False):
        assert theta.dtype == Xs.dtype == np.float32
        return refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=np.float32(inner_lr),
                                           inner_steps=inner_steps, first_order=first_order,
                                           model=_model(theta, ys))

    report = oracle.check(fn32, model="both", dtype="float32")
    assert report.passed, report.message
    assert max(c.grad_error for c in report.cases) > 1e-9   # float32 really was judged
    assert not oracle.check(fn32, model="both").passed      # and would fail the float64 tolerance

    def buggy(*args, **kw):
        return fn32(*args, **kw, first_order=True)

    assert oracle.check(buggy, model="both", dtype="float32").diagnosis == "first_order"


BROKEN_WITH_REFMAML = {
    "first_order": dict(first_order=True),
    "sum_over_tasks": dict(reduction="sum"),
}


@pytest.mark.parametrize("key", sorted(BROKEN_WITH_REFMAML))
def test_diagnosis_of_bugs_built_from_refmaml(key):
    report = oracle.check(refmaml_fn(**BROKEN_WITH_REFMAML[key]), model="both", l2=True)
    assert not report.passed and report.diagnosis == key
    assert oracle.MESSAGES[key][0] in report.message


def test_swapped_sets_and_wrong_step_counts_from_refmaml():
    def fn(bug):
        def f(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
            if bug == "inner_on_query":
                Xs, ys = Xq, yq
            if bug == "meta_loss_on_support":
                Xq, yq = Xs, ys
            K = inner_steps + {"steps_minus_one": -1, "steps_plus_one": 1}.get(bug, 0)
            return refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=inner_lr,
                                               inner_steps=max(K, 0), model=_model(theta, ys))
        return f

    for bug in ("inner_on_query", "meta_loss_on_support", "steps_minus_one", "steps_plus_one"):
        assert oracle.check(fn(bug), model="both").diagnosis == bug


def test_an_unexplained_error_is_unknown():
    """A perturbation that is no bug's answer and no multiple of the truth (its first entry moved)."""
    def noisy(*args, **kw):
        loss, grad = refmaml_fn()(*args, **kw)
        grad = np.array(grad)
        grad.reshape(-1)[0] += 1e-3 * (1 + abs(grad.reshape(-1)[0]))
        return loss, grad

    report = oracle.check(noisy)
    assert report.diagnosis == "unknown" and "match none of the known bugs" in report.message


def test_a_constant_multiple_is_scaled():
    """(O22): a gradient 1.001 times the truth is said as that factor."""
    def multiple(*args, **kw):
        loss, grad = refmaml_fn()(*args, **kw)
        return loss, grad * (1 + 1e-3)

    report = oracle.check(multiple)
    assert report.diagnosis == "scaled" and "exactly 1.001 times" in report.message


def test_a_crashing_or_malformed_fn_is_a_finding():
    def crash(*args, **kw):
        raise RuntimeError("boom")

    report = oracle.check(crash)
    assert not report.passed and report.diagnosis == "interface"
    assert all("RuntimeError: boom" in c.failure for c in report.cases)
    assert "raised on every case: RuntimeError: boom" in report.message
    assert report.localization["raised"] == [c.name for c in report.cases]
    report = oracle.check(lambda *a, **k: (0.0,))
    assert "must return (meta_loss, meta_grad)" in report.cases[0].failure
    assert report.diagnosis == "interface"


@pytest.mark.parametrize("kw, exc", [(dict(model="quadratic"), ValueError), (dict(dtype="float16"), ValueError),
                                     (dict(l2=1), TypeError), (dict(lr_grad="yes"), TypeError)])
def test_check_arguments(kw, exc):
    with pytest.raises(exc):
        oracle.check(refmaml_fn(), **kw)
    with pytest.raises(TypeError, match="callable"):
        oracle.check("not a function")


# --- referees: PyTorch and JAX ------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


REFEREES = {
    "torch-loop": (_torch, referees.torch_loop),
    "torch-batched": (_torch, referees.torch_batched),
    "torch-func": (_torch, referees.torch_func),
    "jax": (lambda: pytest.importorskip("jax"), referees.jax_maml),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", cases.MODELS)
@pytest.mark.parametrize("name", sorted(REFEREES))
def test_correct_referees_pass_to_rounding(name, model):
    """(O8): implementations written the usual way agree with refmaml to about 1e-12 in float64,
    with l2 and learned rates."""
    needs, build = REFEREES[name]
    needs()
    for kw in (dict(l2=True), dict(l2=True, lr_grad=True)):
        report = oracle.check(build(model), model=model, **kw)
        assert report.passed, report.message
        worst = max(max(c.loss_error, c.grad_error, c.lr_grad_error or 0.0) for c in report.cases)
        assert worst <= 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("model", cases.MODELS)
@pytest.mark.parametrize("bug", referees.BUGS)
def test_broken_torch_referees_are_diagnosed(bug, model):
    _torch()
    report = oracle.check(referees.torch_loop(model, bug), model=model, l2=True,
                          lr_grad=bug == "lr_no_grad")
    assert report.diagnosis == bug, report.message


@pytest.mark.slow
def test_first_order_jax_is_diagnosed():
    pytest.importorskip("jax")
    for lr_grad in (False, True):
        report = oracle.check(referees.jax_maml("softmax", bug="first_order"), model="softmax", l2=True,
                              lr_grad=lr_grad, steps=(2,))
        assert report.diagnosis == "first_order", report.message


@pytest.mark.parametrize("model", cases.MODELS)
def test_the_tutorials_code_is_diagnosed(model):
    _torch()
    report = oracle.check(referees.torch_tutorial(model), model=model)
    assert report.diagnosis == "tutorial_code", report.message
    assert "seed-errata.md" in report.message


# --- test vectors -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    assert cli.main(["vectors", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def written_v1(tmp_path_factory):
    """The frozen version 1 (about 1 MB): the corruption tests edit it, not version 2's 13 MB."""
    out = tmp_path_factory.mktemp("vectors-v1")
    vectors.write(out, version="1")
    return out


def test_vectors_regenerate_byte_identically(written, tmp_path):
    again = vectors.write(tmp_path)
    for path in again:
        assert path.read_bytes() == (written / path.name).read_bytes(), path.name


def test_vectors_hold_exact_answers(written):
    loaded = vectors.load(written / f"{vectors.STEM}.json")
    npz = np.load(written / f"{vectors.STEM}.npz", allow_pickle=False)
    assert [c.id for c, _ in loaded] == [c.id for c in cases.all_cases()]
    for (case, outputs), original in zip(loaded, cases.all_cases(), strict=True):
        for name in ("theta", "Xs", "ys", "Xq", "yq"):
            assert np.array_equal(getattr(case, name), getattr(original, name))   # exact round trip
            assert np.array_equal(npz[f"{case.id}/inputs/{name}"], getattr(original, name))
        assert (case.mask is None) == (original.mask is None) == (f"{case.id}/inputs/inner_mask" not in npz)
        if original.mask is not None:   # ANIL's cases (version 3): the mask round-trips, booleans both ways
            assert np.array_equal(case.mask, original.mask)
            assert npz[f"{case.id}/inputs/inner_mask"].dtype == bool
            assert np.array_equal(npz[f"{case.id}/inputs/inner_mask"], original.mask)
        right = answers.truth(original, original.inner_lr)
        assert outputs["meta_loss"] == right.loss and np.array_equal(outputs["meta_grad"], right.grad)
        assert np.array_equal(npz[f"{case.id}/outputs/meta_grad"], right.grad)
        assert outputs["trajectory"].shape == (case.inner_steps + 1, case.T) + case.theta.shape
        start = outputs["trajectory"][0]
        assert np.array_equal(start, np.broadcast_to(case.theta, start.shape))


def test_vectors_match_their_schema(written, written_v1):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((written / "vectors.schema.json").read_text())
    jsonschema.validate(json.loads((written_v1 / "refmaml-vectors-v1.json").read_text()), schema)
    doc = json.loads((written / f"{vectors.STEM}.json").read_text())
    # version 2's linear and network cases, a few of each kind (the whole 13 MB takes 10 s to validate)
    kinds = {}
    for c in doc["cases"][86:]:
        kinds.setdefault((c["model"], c.get("loss"), c["diagnostic"]), []).append(c)
    jsonschema.validate(dict(doc, cases=[c for group in kinds.values() for c in group[:2]]), schema)
    results = {"format": "refmaml-results", "vectors_version": "2", "options": {"l2": True, "model": "both"},
               "results": {c["id"]: {k: c["outputs"][k] for k in ("meta_loss", "meta_grad")}
                           for c in doc["cases"]}}
    jsonschema.validate(results, json.loads((written / "results.schema.json").read_text()))


def _corrupt(written, tmp_path, edit, stem=vectors.STEM):
    doc = json.loads((written / f"{stem}.json").read_text())
    text = edit(doc)
    path = tmp_path / "bad.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if isinstance(text, str) else json.dumps(doc))
    return path


def _compact(doc):
    text = json.dumps(doc, separators=(",", ":"))
    assert '"l2":0.0' in text and '"format":' in text
    return text


def _set(path, value):
    def edit(doc):
        *head, last = path
        target = doc
        for key in head:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return edit


CORRUPTIONS = {
    "format": (_set(["format"], "something else"), "format"),
    "version": (_set(["version"], "4"), "version"),
    "missing field": (_set(["cases", 0, "inputs", "Xs"], KeyError), "missing Xs"),
    "extra field": (_set(["cases", 0, "outputs", "extra"], 1), "unexpected extra"),
    "wrong shape": (_set(["cases", 0, "inputs", "theta"], [1.0, 2.0]), "Xs has shape"),
    "ragged": (_set(["cases", 0, "inputs", "theta"], [[1.0], 2.0, 3.0, 4.0]), "theta"),
    "label": (_set(["cases", 0, "inputs", "ys", 0, 0], 2.0), "labels must be 0 or 1"),
    "softmax label": (_set(["cases", 50, "inputs", "yq", 0, 0], 3), "integers in"),
    "bool number": (_set(["cases", 0, "inputs", "l2"], True), "l2 must be a finite number"),
    "string number": (_set(["cases", 0, "outputs", "meta_loss"], "0.5"), "meta_loss"),
    "negative l2": (_set(["cases", 0, "inputs", "l2"], -1.0), "l2 must be >= 0"),
    "steps": (_set(["cases", 0, "inputs", "inner_steps"], -1), "inner_steps"),
    "trajectory": (_set(["cases", 8, "outputs", "trajectory"], [[[0.0] * 4]]), "trajectory has shape"),
    "empty cases": (_set(["cases"], []), "non-empty"),
    "not an object": (lambda doc: "[1, 2]", "must be an object"),
    "nan": (lambda doc: _compact(doc).replace('"l2":0.0', '"l2":NaN', 1), "finite"),
    "duplicate key": (lambda doc: _compact(doc).replace('"format":', '"format":"x","format":', 1),
                      "duplicate"),
    "not json": (lambda doc: "{not json", "not valid JSON"),
    "truncated": (lambda doc: _compact(doc)[: len(_compact(doc)) // 3], "not valid JSON"),
    "truncated at the end": (lambda doc: _compact(doc)[:-1], "not valid JSON"),
    "deep nesting": (lambda doc: "[" * 100000 + "]" * 100000, "nests arrays or objects too deeply"),
    "huge integer": (lambda doc: _compact(doc).replace('"l2":0.0', '"l2":' + "9" * 5000, 1),
                     "cannot be read"),
    "huge float": (lambda doc: _compact(doc).replace('"l2":0.0', '"l2":1e400', 1), "finite"),
    "not utf-8": (lambda doc: _compact(doc).encode("utf-8")[:100] + b"\xff\xfe", "cannot read"),
}


def test_files_beyond_the_size_limit_are_refused_unread(written, tmp_path, monkeypatch):
    monkeypatch.setattr(vectors, "MAX_FILE_BYTES", 1000)
    with pytest.raises(vectors.InvalidFile, match="bytes; files of more than 1000 are refused"):
        vectors.load(written / f"{vectors.STEM}.json")


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_invalid_vectors_are_refused(written_v1, tmp_path, name):
    edit, message = CORRUPTIONS[name]
    path = _corrupt(written_v1, tmp_path, edit, "refmaml-vectors-v1")
    with pytest.raises(vectors.InvalidFile, match=message):
        vectors.load(path)


# --- refmaml check RESULTS -----------------------------------------------------------------------

def results_of(fn, *, models=("logistic", "softmax"), l2=True, rates=True, version="1"):
    """A results file's content: fn's answers on the vectors' cases it can take."""
    out = {}
    for case in cases.all_cases(version):
        if case.model not in models or (case.l2 and not l2) or (case.rates and not rates):
            continue
        kw = dict(inner_lr=case.inner_lr, inner_steps=case.inner_steps) | (dict(l2=case.l2) if l2 else {})
        got = fn(case.theta.copy(), case.Xs, case.ys, case.Xq, case.yq, **kw)
        entry = {"meta_loss": float(got[0]), "meta_grad": np.asarray(got[1], dtype=float).tolist()}
        if case.rates:
            entry["inner_lr_grad"] = np.asarray(got[2], dtype=float).tolist()
        out[case.id] = entry
    return {"format": "refmaml-results", "vectors_version": version, "results": out}


def _run_check(tmp_path, capsys, content):
    path = tmp_path / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    code = cli.main(["check", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_cli_passes_a_correct_implementation(tmp_path, capsys):
    code, out, _ = _run_check(tmp_path, capsys, results_of(refmaml_fn()))
    assert code == 0 and "PASSED" in out and "86 cases agree" in out


@pytest.mark.slow
@pytest.mark.parametrize("bug", referees.BUGS)
def test_check_cli_names_each_broken_referee(tmp_path, capsys, bug):
    _torch()
    code, out, _ = _run_check(tmp_path, capsys, results_of(referees.torch_loop("logistic", bug),
                                                                       models=("logistic",)))
    assert code == 1 and f"FAILED: {bug}" in out


def test_check_cli_names_the_tutorials_code(tmp_path, capsys):
    _torch()
    content = results_of(referees.torch_tutorial("softmax"), models=("softmax",), l2=False, rates=False)
    code, out, _ = _run_check(tmp_path, capsys, content)
    assert code == 1 and "FAILED: tutorial_code" in out


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ({"format": "refmaml-results", "vectors_version": "1", "results": {"no-such-case": {}}}, "unknown case"),
    ({"format": "refmaml-results", "vectors_version": "0", "results": {}}, "vectors version"),
    ({"format": "refmaml-results", "vectors_version": "1", "results": {}}, "non-empty"),
    ({"format": "refmaml-results", "vectors_version": "1", "dtype": "float16",
      "results": {"logistic-K0-T1-n5-m7-d4": {"meta_loss": 0.1, "meta_grad": [0, 0, 0, 0]}}}, "dtype"),
    ({"format": "refmaml-results", "vectors_version": "1",
      "results": {"logistic-K0-T1-n5-m7-d4": {"meta_loss": 0.1, "meta_grad": [0, 0]}}}, "shape"),
])
def test_check_cli_refuses_unreadable_results(tmp_path, capsys, content, message):
    code, _, err = _run_check(tmp_path, capsys, content)
    assert code == 2 and message in err


def test_check_cli_missing_file(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
