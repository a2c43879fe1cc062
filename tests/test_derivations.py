"""The links between derivations/ and the code stay true.

* every label cited in refmaml/ or tests/ is defined (``\\tag{..}``) in the file
  its prefix belongs to;
* every labelled equation is cited somewhere in refmaml/ or tests/;
* every public function that computes something cites at least one label.
"""

import inspect
import pathlib
import re

import pytest

import refmaml
from refmaml import adam, check, evaluate, maml, oracle, special, train, tutorial
from refmaml.models import MLP, Model, linear, logistic, softmax

ROOT = pathlib.Path(__file__).resolve().parent.parent
TAG = re.compile(r"\\tag\{([A-Z]+)(\d+)\}")
CITE = re.compile(r"\(([A-Z]{1,2})(\d+)\)(?:\s*[-\u2013]\s*\(\1(\d+)\))?")


def defined():
    """{prefix: (file name, set of numbers)}."""
    out = {}
    for path in sorted((ROOT / "derivations").glob("*.md")):
        for prefix, number in TAG.findall(path.read_text(encoding="utf-8")):
            name, numbers = out.setdefault(prefix, (path.name, set()))
            assert name == path.name, f"label prefix {prefix} is used in {name} and {path.name}"
            assert int(number) not in numbers, f"({prefix}{number}) is defined twice"
            numbers.add(int(number))
    return out


def cited(text, prefixes):
    """Labels cited in ``text``, expanding ranges such as (L5)-(L7)."""
    found = set()
    for prefix, first, last in CITE.findall(text):
        if prefix not in prefixes:
            continue
        for k in range(int(first), int(last or first) + 1):
            found.add((prefix, k))
    return found


def sources():
    for folder in ("refmaml", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path


def test_labels_are_numbered_without_gaps():
    for name, numbers in defined().values():
        assert numbers == set(range(1, max(numbers) + 1)), f"{name}: labels {sorted(numbers)}"


def test_every_cited_label_exists():
    labels = defined()
    for path in sources():
        text = path.read_text(encoding="utf-8")
        for prefix, k in cited(text, labels):
            assert k in labels[prefix][1], f"{path.relative_to(ROOT)} cites ({prefix}{k}), " \
                                          f"which {labels[prefix][0]} does not define"


def test_every_label_is_implemented_or_tested():
    labels = defined()
    seen = set()
    for path in sources():
        if path.name == "test_derivations.py":
            continue
        seen |= cited(path.read_text(encoding="utf-8"), labels)
    missing = [f"({p}{k}) in {labels[p][0]}" for p, (_, ks) in labels.items() for k in ks
               if (p, k) not in seen]
    assert not missing, "labelled but neither implemented nor tested: " + ", ".join(missing)


PUBLIC_MATH = [
    special.sigmoid, special.softplus, special.log_sigmoid,
    special.logsumexp, special.log_softmax, special.softmax,
    logistic.loss, logistic.grad, logistic.hvp, logistic.hessian, logistic.predict,
    softmax.loss, softmax.grad, softmax.hvp, softmax.hessian, softmax.predict,
    linear.loss, linear.grad, linear.hvp, linear.hessian, linear.predict,
    linear.affine_map, linear.closed_form_meta_value_and_grad, linear.meta_optimum,
    Model.loss, Model.grad, Model.hvp, Model.hessian, Model.predict, Model.class_probabilities,
    Model.value, Model.grad_state, Model.value_grad, Model.hvp_state, Model.hessian_matrix,
    MLP.init, MLP.unflatten, MLP.hessian,
    maml.adapt, maml.meta_value_and_grad, refmaml.reptile_direction, refmaml.imaml_value_and_grad,
    oracle.check,
    adam.step, train.meta_gradient, evaluate.summarize, evaluate.query_metrics,
    evaluate.adaptation_curve,
    check.relative_error, check.central_difference_gradient, check.complex_step_gradient,
    check.directional_derivative, check.hvp_reference, check.hvp_symmetry_error,
    tutorial.output, tutorial.output_gradient, tutorial.cross_entropy, tutorial.gradient_line,
    tutorial.linear_model_gradient, tutorial.code_step, tutorial.code_step_closed_form,
    tutorial.cross_entropy_one_output,
]


@pytest.mark.parametrize("fn", PUBLIC_MATH, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_public_functions_cite_their_equations(fn):
    assert cited(inspect.getdoc(fn) or "", defined()), f"{fn.__qualname__} cites no equation label"


def test_exports():
    assert refmaml.adapt is maml.adapt
    assert refmaml.meta_value_and_grad is maml.meta_value_and_grad
    assert refmaml.reptile_direction is refmaml.variants.reptile.reptile_direction
    assert refmaml.imaml_value_and_grad is refmaml.variants.imaml.imaml_value_and_grad
    assert issubclass(refmaml.ConvergenceError, ValueError)
    assert re.fullmatch(r"\d+\.\d+\.\d+", refmaml.__version__)
