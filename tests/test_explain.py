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
         dict(model="logistic", rates="per-parameter", steps=3), dict(model="mlp", sizes=(2, 3, 1)),
         dict(model="mlp", sizes=(2, 3, 3), activation="relu", loss="softmax", rates="per-parameter")]


@pytest.mark.parametrize("kw", CASES, ids=[f"{c['model']}-{c.get('rates', 'scalar')}" for c in CASES])
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
    assert "dual.md (G2)-(G6)" in capsys.readouterr().out
    assert cli.main(["explain", "--form", "dual", "--sizes", "2,3,1"]) == 2
