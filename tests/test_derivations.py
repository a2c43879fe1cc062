"""The links between derivations/ and the code stay true.

* every label cited in refmaml/ or tests/ is defined (``\\tag{..}``) in the file
  its prefix belongs to;
* every labelled equation is cited somewhere in refmaml/ or tests/;
* every public function that computes something cites at least one label;
* and the other way round: under every labelled equation one line
  "implemented in `module.function`; tested in `tests/test_x.py::test_y`" (or "tested in"
  only, for a property that only tests check), naming functions that exist and tests that exist;
* every display of the derivations' own text carries a label (quotes excepted).
"""

import ast
import importlib

import inspect
import pathlib
import re

import pytest

import refmaml
from refmaml import adam, check, costs, evaluate, figures, maml, oracle, special, train, tutorial
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
    Model.value, Model.grad_hvp, Model.value_grad, Model.hessian_matrix,
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
    linear.first_order_fixed_point, linear.pooled_optimum, linear.meta_optimum,
    costs.passes, costs.kept_points, costs.flops, costs.checkpointed_passes, costs.recomputed_passes,
    costs.checkpointed_primal, costs.recomputed_primal,
    figures.unrolled_data, figures.landscape_data, figures.first_order_error_data, figures.batchnorm_coupling_data,
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


# --- links from the equations to the code and the tests -------------------------------------------

DISPLAY = re.compile(r"^( *)\$\$\n(.*?)^\1\$\$\n", re.M | re.S)
LINK = re.compile(r"^ *(?:implemented in (?P<impl>.+?); )?tested in (?P<tests>.+)$")
NAME = re.compile(r"`([^`]+)`")


def link_lines():
    """``{label: (file name, the line under its display, or None)}`` for every labelled display."""
    out = {}
    for path in sorted((ROOT / "derivations").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in DISPLAY.finditer(text):
            for prefix, number in TAG.findall(m.group(2)):
                following = text[m.end():].split("\n", 2)
                line = following[0] if following[0].strip() else following[1]
                out[f"{prefix}{number}"] = (path.name, line if LINK.match(line) else None)
    return out


def resolve(dotted):
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_labelled_equation_says_where_it_is_implemented_and_tested():
    lines = link_lines()
    assert set(lines) == {f"{p}{k}" for p, (_, ks) in defined().items() for k in ks}
    missing = [f"({label}) in {name}" for label, (name, line) in lines.items() if line is None]
    assert not missing, "no 'implemented in ...; tested in ...' line under " + ", ".join(missing)


def _test_functions(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_link_names_an_existing_function_and_test():
    tests = {}
    for label, (name, line) in sorted(link_lines().items()):
        if line is None:
            continue
        m = LINK.match(line)
        for dotted in NAME.findall(m.group("impl") or ""):
            assert dotted.startswith("refmaml."), f"({label}): {dotted} is not in refmaml"
            try:
                obj = resolve(dotted)
            except (ImportError, AttributeError) as e:
                raise AssertionError(f"({label}) in {name}: {dotted} does not exist ({e})") from None
            assert callable(obj), f"({label}): {dotted} is not a function or class"
        named = NAME.findall(m.group("tests"))
        assert named, f"({label}) in {name}: no test named"
        for ref in named:
            file, _, test = ref.partition("::")
            path = ROOT / file
            assert file.startswith("tests/test_") and path.is_file(), f"({label}): no file {file}"
            if path not in tests:
                tests[path] = _test_functions(path)
            assert test.startswith("test") and test in tests[path], f"({label}): no {test} in {file}"


def test_every_display_is_labelled():
    """A display of the derivations' own text carries a label; quotations of the seed tutorial
    (lines starting with ``>``) are not ours to number."""
    unlabelled = []
    for path in sorted((ROOT / "derivations").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in DISPLAY.finditer(text):
            if not TAG.search(m.group(2)):
                unlabelled.append(f"{path.name}:{text[:m.start()].count(chr(10)) + 1}")
    assert not unlabelled, "displays without a label: " + ", ".join(unlabelled)


def test_labels_appear_in_increasing_order():
    """Each file defines its labels in the order of their numbers (a reader meets (O7) before
    (O9)), each prefix counted on its own."""
    disordered = []
    for path in sorted((ROOT / "derivations").glob("*.md")):
        numbers = [(prefix, int(n)) for prefix, n in TAG.findall(path.read_text(encoding="utf-8"))]
        for (p, a), (q, b) in zip(numbers, numbers[1:]):
            if p == q and b < a:
                disordered.append(f"{path.name} defines ({q}{b}) after ({p}{a})")
    assert not disordered, "; ".join(disordered)
