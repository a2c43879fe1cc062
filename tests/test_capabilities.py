"""Tools ask a model what it can do, never what it is (README, "Architecture").

Above ``refmaml/models/`` no module tests a model's class (``isinstance`` of ``MLP``,
``Sequential``, ``Model`` or a network class), compares anything with a model's name (``==``,
``!=``, ``in`` against the strings ``"logistic"``, ``"softmax"``, ``"linear"``, ``"mlp"``,
``"sequential"``), or reads a preset's own fields (``.sizes``, ``.activation``, ``.loss_name``):
they use the capabilities a model declares (``targets``, ``linear``, ``convex``,
``constant_curvature``, ``kinks``, ``dimensions``, ``parameter_shape``, ``random_parameters``,
``equations``, ``slug``, ``spec()``), so a new network works with every tool unchanged.
"""

import ast
import pathlib

import numpy as np
import pytest

from refmaml import models
from refmaml.models import MLP, Sequential, layers

ROOT = pathlib.Path(__file__).resolve().parent.parent / "refmaml"
CLASSES = {"MLP", "Sequential", "Model", "Layered", "Linear"}
NAMES = {"logistic", "softmax", "linear", "mlp", "sequential"}
FIELDS = {"sizes", "activation", "loss_name"}


def _strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def _class_name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def offences(tree):
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                and len(node.args) == 2:
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            hit = {_class_name(k) for k in kinds} & CLASSES
            if hit:
                found.append((node.lineno, f"isinstance with {', '.join(sorted(hit))}"))
        elif isinstance(node, ast.Compare):
            sides = [node.left] + node.comparators
            if any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                hit = set().union(*(_strings(s) for s in sides)) & NAMES
                if hit:
                    found.append((node.lineno, f"comparison with the model name(s) {', '.join(sorted(hit))}"))
        elif isinstance(node, ast.Attribute) and node.attr in FIELDS and isinstance(node.ctx, ast.Load):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in ("args", "self"):  # a command's arguments, an object's own fields
                found.append((node.lineno, f"reads .{node.attr} of a model"))
    return found


def test_no_tool_branches_on_a_models_class_or_name():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        # models/ defines the capabilities; tutorial.py transcribes the seed tutorial, whose
        # output function f is named "linear" or "sigmoid" (not a model)
        if "models" in path.relative_to(ROOT).parts or path.name == "tutorial.py":
            continue
        for line, what in offences(ast.parse(path.read_text(encoding="utf-8"))):
            bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {what}")
    assert not bad, "tools must ask a model's capabilities:\n" + "\n".join(bad)


def test_the_rule_catches_what_it_forbids():
    """The walker itself: each forbidden form is found, the allowed ones are not."""
    code = ("isinstance(m, models.MLP)\nisinstance(m, (str, Sequential))\nm == 'softmax'\n"
            "name in ('logistic', 'x')\nm.sizes\nargs.sizes\nm.targets == 'real'\nisinstance(m, str)\n")
    lines = [line for line, _ in offences(ast.parse(code))]
    assert lines == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("model, targets, linear, convex, constant, kinks", [
    (models.get("logistic"), "binary", True, True, False, False),
    (models.get("softmax"), "classes", True, True, False, False),
    (models.get("linear"), "real", True, True, True, False),
    (MLP((2, 3, 1), "tanh", "mse"), "real", False, False, False, False),
    (MLP((2, 3, 2), "relu", "softmax"), "classes", False, False, False, True),
    (Sequential([layers.Linear(2, 1)], loss="logistic", input_shape=(2,)), "binary", False, False, False, False),
])
def test_capabilities_are_declared(model, targets, linear, convex, constant, kinks):
    assert (model.targets, model.linear, model.convex, model.constant_curvature, model.kinks) == \
        (targets, linear, convex, constant, kinks)
    shape = model.parameter_shape(4, 3)
    d, outputs = model.dimensions(shape)
    theta = np.asarray(model.random_parameters(np.random.default_rng(0), shape, 0.5))
    assert theta.shape == tuple(shape)
    assert set(model.equations) == {"outputs", "residual", "grad", "hvp", "loss"}
    assert models.from_spec(model.spec()) == model and isinstance(model.slug, str)
    X = np.random.default_rng(1).standard_normal((1, 5, d))
    distance = model.kink_distance(theta, X)
    assert (distance < np.inf) == kinks
