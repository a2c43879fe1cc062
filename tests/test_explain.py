"""`refmaml explain`: every number of the walk-through is the library's, each line cites its
equation, and the JSON document holds exactly what the command promises.

Tolerances: the walk-through recomputes the reverse pass from the public gradient and HVP
functions, the same operations as the library's reverse pass in another grouping: 1e-14 relative
against ``meta_value_and_grad``; the complex step of the unrolled loss: 1e-12 (exact to rounding).
"""

import json

import numpy as np
import pytest

from refmaml import cli, explain

CASES = [dict(model="logistic"), dict(model="softmax", l2=0.1), dict(model="linear", rates="per-step"),
         dict(model="logistic", rates="per-parameter", steps=3), dict(sizes=(2, 3, 1)),
         dict(sizes=(2, 3, 3), activation="relu", loss="softmax", rates="per-parameter"), dict(model="conv")]


@pytest.mark.parametrize("kw", CASES, ids=[f"{c.get('model', 'mlp')}-{c.get('rates', 'scalar')}" for c in CASES])
@pytest.mark.parametrize("first_order", [False, True])
def test_the_walk_through_is_the_library(kw, first_order):
    obj, name, inputs = explain.problem(**kw)
    result = explain.walk(obj, name, inputs, first_order=first_order)
    K = inputs["inner_steps"]
    assert [f["k"] for f in result["forward"]] == list(range(K + 1))
    assert result["forward"][-1]["grad"] is None and all(f["grad"] is not None for f in result["forward"][:-1])
    assert [r["k"] for r in result["reverse"]] == list(range(K, -1, -1))
    assert result["reverse"][0]["hvp"] is None
    assert result["library_meta_grad_relative_difference"] <= 1e-14
    if "inner_lr_grad" in result:
        assert result["library_inner_lr_grad_relative_difference"] <= 1e-14
    if not first_order:
        assert result["checks"]["relative_error"] <= 1e-12
    for f in result["forward"][:-1]:  # theta_(k+1) = theta_k - alpha_k grad, line by line (M2)
        nxt = result["forward"][f["k"] + 1]["theta"]
        alpha = explain._rate(inputs["inner_lr"], f["k"], inputs["theta"].ndim)
        np.testing.assert_allclose(nxt, f["theta"] - alpha * f["grad"], rtol=1e-15, atol=1e-16)
    text = explain.to_text(result)
    assert "maml.md (M6)" in text and "maml.md (M2)" in text and ("<- the answer" in text)


def test_json_document(capsys):
    """The keys the command promises, floats that survive the round trip exactly."""
    assert cli.main(["explain", "--model", "softmax", "--json", "--steps", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["inputs"]) == {"theta", "Xs", "ys", "Xq", "yq", "inner_lr", "inner_steps", "l2", "model"}
    assert len(doc["forward"]) == 4 and len(doc["reverse"]) == 4
    assert set(doc["forward"][0]) == {"k", "theta", "logits", "probabilities", "grad", "equation"}
    assert set(doc["reverse"][1]) == {"k", "g", "hvp", "equation"}
    assert doc["forward"][3]["grad"] is None and doc["reverse"][0]["hvp"] is None
    for key in ("meta_loss", "meta_grad", "first_order_meta_grad", "checks"):
        assert key in doc
    assert set(doc["checks"]) >= {"complex_step_meta_grad", "relative_error"}
    obj, name, inputs = explain.problem("softmax", steps=3)
    again = explain.walk(obj, name, inputs)
    assert doc["meta_grad"] == again["meta_grad"].tolist()  # shortest round-trip floats: exact


def test_text_and_refusals(capsys):
    assert cli.main(["explain", "--sizes", "2,3,1", "--first-order"]) == 0
    out = capsys.readouterr().out
    assert "dropped by first-order MAML" in out and "mlp.md" in out
    assert cli.main(["explain", "--features", "0"]) == 2
    assert "refmaml explain:" in capsys.readouterr().err
    assert cli.main(["explain", "--sizes", "2,x"]) == 2


@pytest.mark.parametrize("kw", [dict(model="logistic"), dict(model="softmax", l2=0.2), dict(model="linear", rates="per-step")])
def test_the_gram_form_is_the_same_computation(kw, capsys):
    """--form dual: the library's dual form with its blocks and coefficients recorded; its gradient is
    the primal walk-through's to 1e-13 (other sums), and theta_K = c_K theta + X_s^T Gamma_K (G2)."""
    obj, name, inputs = explain.problem(**kw)
    result = explain.walk(obj, name, inputs, form="dual")
    g = result["dual"]
    assert g["relative_difference"] <= 1e-13
    Gam, c = g["forward"][-1]["Gamma"], g["forward"][-1]["c"]
    theta_K = c * inputs["theta"] + inputs["Xs"].T @ Gam
    np.testing.assert_allclose(theta_K, result["forward"][-1]["theta"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g["G"], inputs["Xs"] @ inputs["Xs"].T, rtol=1e-15)
    assert cli.main(["explain", "--form", "dual", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in kw.items()), [])]) == 0
    out = capsys.readouterr().out
    assert "dual.md (G2)-(G6)" in out
    # the Gram blocks are dual.md's script G and M, spelt calG and calM: linear.md's M is the affine map
    assert "  calM = X_q A X_s^T" in out and "  M = X_q" not in out
    assert cli.main(["explain", "--form", "dual", "--sizes", "2,3,1"]) == 2


@pytest.mark.parametrize("kw", [dict(model="conv"), dict(sizes=(1, 2, 1), steps=1), dict(sizes=(2, 3, 3), loss="softmax",
                                                                                         activation="relu")])
def test_layer_by_layer_is_the_network(kw):
    """The layer-by-layer part (models.md (H8)-(H11)): its gradient blocks are the support gradient at
    theta_0, its R{gradient} blocks the Hessian-vector product along alpha_0 g_1 (the reverse pass's
    last vector), its last output the network's outputs; 1e-15: the same arithmetic, reordered."""
    obj, name, inputs = explain.problem(**kw)
    result = explain.walk(obj, name, inputs, layers=True)
    flat = np.concatenate([np.ravel(q) for layer in result["layers"] for q in layer["gradient"]])
    theta, Xs, ys = inputs["theta"], inputs["Xs"], inputs["ys"]
    assert np.linalg.norm(flat - obj.grad(theta, Xs, ys)) <= 1e-15 * np.linalg.norm(flat)
    hvp = np.concatenate([np.ravel(q) for layer in result["layers"] for q in layer["R_gradient"]])
    np.testing.assert_allclose(hvp, result["reverse"][-1]["hvp"], rtol=0, atol=1e-15 * np.abs(hvp).max())
    out = result["layers"][-1]["output"]
    np.testing.assert_allclose(np.ravel(out), np.ravel(result["forward"][0]["logits"][0]), rtol=1e-15)


def test_every_line_cites_its_equation():
    """The header cites the rate's equation (M2) or (V1); every reverse line the model's HVP equation;
    g_K cites (M6); the logistic walk-through shows the curvature weights (L10) and the query outputs;
    linear regression shows its affine map and the closed form (Q4), (Q5), (Q7), equal to the reverse
    pass to rounding (1e-14)."""
    text = explain.to_text(explain.walk(*explain.problem("logistic", steps=2)))
    assert "[maml.md (M2)]" in text.splitlines()[0]
    assert text.count("[HVP logistic.md (L11)]") == 2
    assert "grad L_q(theta_K) = " in text and "[maml.md (M6)]" in text
    assert "curvature weights p (1 - p)" in text and "query outputs X_q theta_K" in text
    rates = explain.walk(*explain.problem("linear", rates="per-step"))
    assert "[variants.md (V1)]" in explain.to_text(rates).split("\n\n")[0]
    assert rates["closed_form"]["relative_difference"] <= 1e-14
    assert "f(X_s; theta_0)" in explain.to_text(explain.walk(*explain.problem(sizes=(1, 2, 1))))


@pytest.mark.parametrize("args, message", [
    (["--sizes", "a,b"], "sizes (--sizes) must be layer widths separated by commas"),
    (["--features", "-1"], "features (--features) must be an integer from 1 to 100; got -1"),
    (["--seed", "-1"], "seed (--seed) must be an integer from 0"),
    (["--query", "0"], "query (--query) must be an integer from 1 to 1000; got 0"),
    (["--support", "1000000000"], "support (--support) must be an integer from 1 to 1000"),
    (["--steps", "1000000000"], "steps (--steps) must be an integer from 0 to 100"),
    (["--sizes", "1000000,1000000,1"], "each layer width in sizes (--sizes) must be an integer from 1 to 10000"),
    (["--sizes", "100,100,1"], "make 10201 parameters; the walk-through prints every one and takes at most 10000"),
    (["--activation", "relu"], "activation (--activation) applies to a network given by sizes (--sizes) only"),
    (["--model", "softmax", "--sizes", "2,3,1"], "model (--model softmax) and sizes (--sizes) name two models"),
])
def test_arguments_are_refused_naming_the_flag(args, message, capsys):
    """Every size the walk-through would print is bounded (explain.LIMITS) and every refusal names the
    flag, before any work; flags that do not apply to the chosen model are refused, not ignored."""
    assert cli.main(["explain", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
