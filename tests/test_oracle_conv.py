"""The oracle on image networks (derivations/oracle.md (O12)-(O13), "Networks"): ``check(fn,
model=ConvNet(...) or Sequential(...), inner_mask=...)`` with images ``(T, n, C, H, W)``, the kink
margins of ReLU and max-pooling at every inner iterate, the separation of the bugs measured per
architecture, and the version-3 vectors (conv cases with and without batch norm; versions 1 and 2
frozen and still read).

The implementations judged are ``tests/test_oracle_users.py``'s, written with ``torch.nn`` and
``torch.func`` apart from refmaml. Tolerances: the oracle's own (1e-10 relative in float64); the
kink margin recomputed here with torch hooks is asserted at the oracle's ``RELU_MARGIN`` (1e-6,
absolute, ten orders of magnitude above the rounding that could move a value across a kink).
"""

import hashlib
import json

import numpy as np
import pytest

import refmaml
from refmaml import oracle
from refmaml.oracle import cases, judge, selection, vectors

from .test_oracle_users import CONVNET, PLAIN, TorchUser, refmaml_model

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- a correct implementation passes -----------------------------------------------------------

def test_a_torch_func_convnet_with_batch_norm_passes():
    """nn.Conv2d, nn.BatchNorm2d(track_running_stats=False), nn.MaxPool2d through torch.func's
    functional_call, create_graph=True: agrees to the oracle's 1e-10 on the cases built for the
    ConvNet preset, images (T, n, 1, 8, 8); the rows are that architecture's."""
    net = refmaml_model(CONVNET)
    report = oracle.check(TorchUser(CONVNET), model=net, steps=(2,))
    assert report.passed, report.message
    assert all(c.name.startswith("convnet-3-2x4-1x8x8-softmax-") for c in report.cases)
    assert max(max(c.loss_error, c.grad_error) for c in report.cases) <= 1e-12   # exact to rounding


@pytest.mark.slow
@pytest.mark.parametrize("spec", [CONVNET, PLAIN], ids=["batch-norm", "no-batch-norm"])
def test_the_conv_networks_pass_with_l2_and_rates(spec):
    """Every case (K = 0, 1, 2, 5, diagnostic, one example, one condition alone), l2 > 0 and one rate
    per parameter (the rate gradient through autograd)."""
    report = oracle.check(TorchUser(spec), model=refmaml_model(spec), l2=True, lr_grad=True)
    assert report.passed, report.message


@pytest.mark.slow
def test_anil_with_inner_mask_passes_and_adapting_everything_is_named():
    """inner_mask=net.mask(-1): the user's inner loop adapts the last Linear only (ANIL); the check's
    cases carry the mask (their ids end in its tag) and the rate gradient is zero outside it. The
    same user adapting everything is all_adapted."""
    net = refmaml_model(CONVNET)
    mask = net.mask(-1)
    report = oracle.check(TorchUser(CONVNET, adapt=(-1,)), model=net, inner_mask=mask, l2=True, lr_grad=True,
                          steps=(1, 2))
    assert report.passed, report.message
    assert all(c.name.endswith(cases.mask_tag(mask)) for c in report.cases)
    assert "inner_mask adapting 51 of 255 parameters" in report.ran
    assert "all_adapted" in report.named and "maxpool_no_second_order" not in report.named   # (O11) under the mask
    wrong = oracle.check(TorchUser(CONVNET), model=net, inner_mask=mask, steps=(2,))
    assert wrong.diagnosis == "all_adapted", wrong.message


def test_inner_mask_is_checked():
    net = refmaml_model(CONVNET)
    with pytest.raises(TypeError, match="boolean"):
        oracle.check(TorchUser(CONVNET), model=net, inner_mask=np.ones(net.size))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        oracle.check(TorchUser(CONVNET), model=net, inner_mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="adapts no parameter"):
        oracle.check(TorchUser(CONVNET), model=net, inner_mask=np.zeros(net.size, dtype=bool))
    with pytest.raises(ValueError, match="needs a network"):
        oracle.check(TorchUser(CONVNET), model="logistic", inner_mask=np.ones(4, dtype=bool))


# --- kink margins at every inner iterate --------------------------------------------------------

def _margins(spec, case):
    """The smallest |ReLU input| and max-pool gap (top two of a window; windows all 0 after a ReLU
    left out, as they carry no tie) over every inner iterate of every task, support and query, read
    by forward pre-hooks on the torch network at refmaml's trajectory."""
    F = torch.nn.functional
    user = TorchUser(spec)
    seen = {"relu": np.inf, "pool": np.inf}

    def relu(mod, inp):
        seen["relu"] = min(seen["relu"], float(inp[0].detach().abs().min()))

    def pool(mod, inp):
        x = inp[0].detach()
        n, C, H, W = x.shape
        win = F.unfold(x.reshape(n * C, 1, H, W), 2, stride=2)
        top = win.topk(2, dim=1).values
        gap = (top[:, 0] - top[:, 1])[~(win == 0).all(dim=1)]
        if gap.numel():
            seen["pool"] = min(seen["pool"], float(gap.min()))

    for mod in user.net:
        if isinstance(mod, torch.nn.ReLU):
            mod.register_forward_pre_hook(relu)
        if isinstance(mod, torch.nn.MaxPool2d):
            mod.register_forward_pre_hook(pool)
    path = np.asarray(refmaml.adapt(case.theta, case.Xs, case.ys, inner_lr=case.inner_lr,
                                    inner_steps=case.inner_steps, model=case.model, l2=case.l2,
                                    inner_mask=case.mask, return_trajectory=True))
    from torch.func import functional_call

    for k in range(path.shape[0]):
        for t in range(case.T):
            params = user.unpack(torch.tensor(path[k, t]))
            for X in (case.Xs[t], case.Xq[t]):
                functional_call(user.net, params, (torch.tensor(X),))
    return seen


@pytest.mark.parametrize("spec", [CONVNET, pytest.param(PLAIN, marks=pytest.mark.slow)],
                         ids=["batch-norm", "no-batch-norm"])
def test_kink_margins_hold_at_every_inner_iterate(spec):
    """(O13): every ReLU input at least RELU_MARGIN from 0 and every max-pool window's top two at
    least RELU_MARGIN apart, at every iterate theta_0..theta_K, support and query, on every case
    built for the network (the ANIL-masked cases too, along their own inner loop)."""
    net = refmaml_model(spec)
    smallest = {"relu": np.inf, "pool": np.inf}
    built = cases.network_cases(net) + [c for c in cases.network_cases(net, mask=net.mask(-1)) if c.diagnostic]
    for case in built:
        for key, value in _margins(spec, case).items():
            smallest[key] = min(smallest[key], value)
    assert smallest["relu"] >= cases.RELU_MARGIN and smallest["pool"] >= cases.RELU_MARGIN, smallest


# --- the separation, per architecture ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("spec, floor, absent", [
    (CONVNET, 0.04, {"broadcast_targets", "half_mse", "mse_sum_over_outputs", "all_adapted"}),
    (PLAIN, 0.1, {"broadcast_targets", "half_mse", "mse_sum_over_outputs", "all_adapted", "bn_eval_statistics",
                  "bn_detached_statistics", "bn_support_statistics_at_query"}),
], ids=["batch-norm", "no-batch-norm"])
def test_the_conv_networks_separate_the_bugs_they_have(spec, floor, absent):
    """(O11) measured on each image network's diagnostic cases (with l2 and rates): every bug the
    network can have is at least 1e-2 (gradients alone) from the truth and from every other bug.
    Measured minima: ConvNet with batch norm 0.050 (biases_not_adapted), then 0.060 (l2_without_half),
    bn_eval_statistics 0.78, bn_detached_statistics 0.59, bn_support_statistics_at_query 0.62,
    maxpool_no_second_order 0.126; without batch
    norm 0.120 (hessian_at_last_iterate), maxpool_no_second_order 0.166. With ANIL's mask (batch
    norm): all_adapted 0.42, hessian_at_last_iterate 0.010, and maxpool_no_second_order 0 (only the
    head adapts, and the cut changes only products on parameters below a max-pool): not named there
    (test_anil_with_inner_mask_passes_and_adapting_everything_is_named)."""
    net = refmaml_model(spec)
    chosen = cases.select(cases.network_cases(net), models=(net,), l2=True, rates=True)
    gaps = judge.separation(chosen, lr_grad=True)
    assert set(gaps) == set(oracle.DIAGNOSES) - absent
    assert min(gaps.values()) >= floor
    assert set(selection.nameable(selection.select((net,), cases.STEPS, l2=True, lr_grad=True), ridge=True,
                                  rates=True)) == set(gaps)


# --- the version-3 vectors ----------------------------------------------------------------------

# sha256 of version 2's inputs as test_oracle.py serialises them (network models as their spec),
# taken from the version-2 code before version 3 existed: version 2 stays frozen.
V2_INPUTS_SHA256 = "0ed4c7ba1fb65e1ba4f5e0f4e9958023480f4931ead44784e18b75f3d2c950e6"


def _digest(version):
    h = hashlib.sha256()
    for c in cases.all_cases(version):
        rate = c.inner_lr.tolist() if c.rates else c.inner_lr
        h.update(json.dumps([c.id, c.model if isinstance(c.model, str) else c.model.spec(), c.theta.tolist(),
                             c.Xs.tolist(), c.ys.tolist(), c.Xq.tolist(), c.yq.tolist(), rate, c.inner_steps, c.l2,
                             c.diagnostic, c.note]).encode())
    return h.hexdigest()


def test_version_2_is_frozen_and_version_3_extends_it():
    assert _digest("2") == V2_INPUTS_SHA256
    v2, v3 = [c.id for c in cases.all_cases("2")], [c.id for c in cases.all_cases("3")]
    assert v3[:len(v2)] == v2 and len(v3) == len(set(v3)) == len(v2) + 11 + 6 + 2 * 32 + 32
    conv = [c for c in cases.all_cases("3") if not isinstance(c.model, str) and c.model.input_ndim == 3]
    masked = [c for c in cases.all_cases("3") if c.mask is not None]
    net = refmaml_model(CONVNET)
    assert len(masked) == 32 and masked == [c for c in cases.all_cases("3")[-32:]]
    assert all(c.model == net and np.array_equal(c.mask, net.mask(-1)) for c in masked)
    assert all(c.id.endswith(cases.mask_tag(net.mask(-1))) for c in masked)
    assert all(c.mask is None for c in cases.all_cases("2"))
    assert {cases.network_name(c.model) for c in conv} == {"convnet-3-2x4-1x8x8-softmax",
                                                           cases.network_name(refmaml_model(PLAIN))}
    assert all(c.Xs.shape[2:] == (1, 8, 8) for c in conv)
    assert cases.VERSION == "3" and cases.VERSIONS == ("1", "2", "3")


def test_conv_records_round_trip_and_are_judged(tmp_path):
    """A version-3 file of conv cases reads back exactly (images (T, n, C, H, W), the ConvNet spec);
    a results file for the ConvNet is judged: the torch.func user passes, running statistics in eval
    mode are named."""
    net = refmaml_model(CONVNET)
    chosen = [c for c in cases.all_cases("3") if c.model == net and (c.diagnostic or c.inner_steps == 1)
              and not c.l2 and not c.rates]
    doc = {"format": "refmaml-vectors", "version": "3", "generator": "test", "conventions": {},
           "cases": [vectors.case_record(c) for c in chosen]}
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(doc))
    for (case, outputs), original in zip(vectors.load(path), chosen, strict=True):
        assert case.id == original.id and case.model == net
        for name in ("theta", "Xs", "ys", "Xq", "yq"):
            assert np.array_equal(getattr(case, name), getattr(original, name))
        assert outputs["meta_grad"].shape == (net.size,)
    for mistake, code, verdict in ((None, 0, "PASSED"), ("bn_eval", 1, "FAILED: bn_eval_statistics")):
        fn = TorchUser(CONVNET, mistake=mistake)
        results = {}
        for c in cases.select(cases.all_cases("3"), models=(net,), steps=(1,)):
            loss, grad = fn(c.theta, c.Xs, c.ys, c.Xq, c.yq, inner_lr=c.inner_lr, inner_steps=c.inner_steps)
            results[c.id] = {"meta_loss": loss, "meta_grad": np.asarray(grad).tolist()}
        content = {"format": "refmaml-results", "vectors_version": "3",
                   "options": {"model": "convnet-3-2x4-1x8x8-softmax", "steps": [1]}, "results": results}
        result_path = tmp_path / "results.json"
        result_path.write_text(json.dumps(content))
        got, text = oracle.check_file(result_path)
        assert got == code and verdict in text, text


def test_version_2_files_are_still_read(tmp_path):
    """The frozen versions are written and read back by this refmaml (version 2 with its networks)."""
    chosen = [c for c in cases.all_cases("2") if c.id.startswith("mlp-4x8x3-tanh-softmax-K1")]
    doc = {"format": "refmaml-vectors", "version": "2", "generator": "test", "conventions": {},
           "cases": [vectors.case_record(c) for c in chosen]}
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(doc))
    assert [c.id for c, _ in vectors.load(path)] == [c.id for c in chosen]
    content = {"format": "refmaml-results", "vectors_version": "2",
               "options": {"model": "convnet-3-2x4-1x8x8-softmax"},
               "results": {chosen[0].id: {"meta_loss": 0.0, "meta_grad": [0.0] * chosen[0].theta.size}}}
    result_path = tmp_path / "results.json"
    result_path.write_text(json.dumps(content))
    got, text = oracle.check_file(result_path)
    assert got == 2 and "needs vectors version 3" in text


# --- the version-3 vectors' masked (ANIL) cases ------------------------------------------------------

def _masked_chosen(steps=(1,)):
    net = refmaml_model(CONVNET)
    return net, [c for c in cases.select(cases.all_cases("3"), models=(net,), steps=steps, masked=True)]


def test_masked_records_round_trip_with_their_mask(tmp_path):
    """ANIL's mask travels in each masked case's inputs as a list of JSON booleans and is restored on
    load; the recorded answers are those of the masked inner loop (the rate gradient zero outside it)."""
    net = refmaml_model(CONVNET)
    chosen = [c for c in cases.all_cases("3") if c.mask is not None and c.inner_steps == 1]
    chosen = [c for c in chosen if c.rates][:2] + [c for c in chosen if not c.rates][:1]
    records = [vectors.case_record(c) for c in chosen]
    for record in records:
        mask = record["inputs"]["inner_mask"]
        assert len(mask) == net.size and all(type(b) is bool for b in mask) and sum(mask) == 51
    rated = next(r for r in records if isinstance(r["inputs"]["inner_lr"], list))
    assert not any(np.asarray(rated["outputs"]["inner_lr_grad"])[~np.asarray(net.mask(-1))])
    doc = {"format": "refmaml-vectors", "version": "3", "generator": "test", "conventions": {}, "cases": records}
    path = tmp_path / "masked.json"
    path.write_text(json.dumps(doc))
    for (case, outputs), original in zip(vectors.load(path), chosen, strict=True):
        assert case.id == original.id and np.array_equal(case.mask, original.mask) and case.mask.dtype == bool
        loss, grad = refmaml.meta_value_and_grad(
            original.theta, original.Xs, original.ys, original.Xq, original.yq, inner_lr=original.inner_lr,
            inner_steps=original.inner_steps, model=net, l2=original.l2, inner_mask=original.mask)[:2]
        assert max(judge.errors(oracle.Answer(loss, np.asarray(grad), None),
                                oracle.Answer(outputs["meta_loss"], outputs["meta_grad"], None))[:2]) <= 1e-12
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads((vectors.HERE / "vectors.schema.json").read_text()))


def _bad_mask(record, size):
    return {
        "wrong length": (record | {"inputs": record["inputs"] | {"inner_mask": [True] * (size - 1)}}, "has length"),
        "numbers": (record | {"inputs": record["inputs"] | {"inner_mask": [1] * size}}, "list of booleans"),
        "nested": (record | {"inputs": record["inputs"] | {"inner_mask": [[True]] * size}}, "list of booleans"),
        "not a list": (record | {"inputs": record["inputs"] | {"inner_mask": True}}, "list of booleans"),
        "all false": (record | {"inputs": record["inputs"] | {"inner_mask": [False] * size}}, "adapts no parameter"),
    }


@pytest.mark.parametrize("name", ["wrong length", "numbers", "nested", "not a list", "all false", "logistic",
                                  "version 2"])
def test_invalid_masks_are_refused(tmp_path, name):
    """The mask of an untrusted file: booleans only, one per parameter, at least one true, on a
    network case of a version-3 file."""
    net, chosen = _masked_chosen()
    record = vectors.case_record(chosen[0])
    version = "3"
    if name == "logistic":
        record = vectors.case_record(cases.all_cases("1")[0])
        record["inputs"]["inner_mask"] = [True] * 4
        message = "only network cases have an inner_mask"
    elif name == "version 2":
        version, message = "2", "needs vectors version 3"
    else:
        record, message = _bad_mask(record, net.size)[name]
    doc = {"format": "refmaml-vectors", "version": version, "generator": "test", "conventions": {}, "cases": [record]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(vectors.InvalidFile, match=message):
        vectors.load(path)


def _masked_results(fn, chosen, **options):
    results = {}
    for c in chosen:
        loss, grad = fn(c.theta, c.Xs, c.ys, c.Xq, c.yq, inner_lr=c.inner_lr, inner_steps=c.inner_steps)
        results[c.id] = {"meta_loss": loss, "meta_grad": np.asarray(grad).tolist()}
    return {"format": "refmaml-results", "vectors_version": "3",
            "options": {"steps": [1], "inner_mask": True} | options, "results": results}


def test_masked_results_are_judged(tmp_path):
    """A results file declaring ``"inner_mask": true`` answers the masked cases: an ANIL loop written
    with torch.func passes; the same loop adapting every parameter is ``all_adapted``; the JSON report
    says the mask in ``ran``."""
    net, chosen = _masked_chosen()
    path = tmp_path / "results.json"
    content = _masked_results(TorchUser(CONVNET, adapt=(-1,)), chosen)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(content, json.loads((vectors.HERE / "results.schema.json").read_text()))
    path.write_text(json.dumps(content))
    got, text = oracle.check_file(path, as_json=True)
    doc = json.loads(text)
    assert got == 0 and doc["passed"], doc["message"]
    assert "inner_mask=true (ANIL: 51 of 255 parameters adapt)" in doc["ran"] and "all_adapted" in doc["named"]
    del content["results"][chosen[0].id]
    path.write_text(json.dumps(content))
    got, text = oracle.check_file(path)
    assert got == 1 and "INCOMPLETE" in text
    path.write_text(json.dumps(_masked_results(TorchUser(CONVNET), chosen, model="convnet-3-2x4-1x8x8-softmax")))
    got, text = oracle.check_file(path)
    assert got == 1 and "FAILED: all_adapted" in text, text


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["options"].pop("inner_mask"), "declare \"inner_mask\": true"),
    (lambda c: c["options"].update(inner_mask="yes"), "options.inner_mask must be true or false"),
    (lambda c: c["options"].update(model=cases.network_name(refmaml_model(PLAIN))), "masked (ANIL) cases for"),
    (lambda c: c.update(vectors_version="2"), "needs vectors version 3"),
    (lambda c: c["results"].update({cases.all_cases("3")[-33].id: {"meta_loss": 0.0, "meta_grad": [0.0] * 255}}),
     "a case without inner_mask"),
])
def test_masked_results_must_be_declared(tmp_path, edit, message):
    """Masked answers need ``"inner_mask": true``, and that option only masked answers, for the ConvNet
    preset of version 3."""
    net, chosen = _masked_chosen()
    content = {"format": "refmaml-results", "vectors_version": "3", "options": {"inner_mask": True},
               "results": {chosen[0].id: {"meta_loss": 0.0, "meta_grad": [0.0] * net.size}}}
    edit(content)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    got, text = oracle.check_file(path)
    assert got == 2 and message in text, text
