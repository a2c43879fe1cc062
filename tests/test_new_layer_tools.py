"""A layer defined only in the tests works with every tool (README, "Where a new layer goes").

``Scale`` and ``Sine`` live in ``tests/test_layers.py``; nothing in refmaml registers them. A network
built with them goes through ``refmaml.oracle.check`` (with a correct PyTorch MAML through the
equivalent ``nn.Sequential``: it passes, and a first-order one is refused), ``refmaml.verify``'s
identities, ``refmaml explain``'s walk-through and the test-vector writer and reader.
"""

import json

import numpy as np
import pytest

from refmaml import explain, oracle, verify
from refmaml.models import Sequential, layers
from refmaml.oracle import cases, vectors

from . import referees
from .test_layers import Scale, Sine, _torch_network


def network():
    return Sequential([layers.Linear(3, 4), Sine(), Scale(4), layers.Tanh(), layers.Linear(4, 2)],
                      loss="softmax", input_shape=(3,))


def torch_maml(create_graph=True):
    """MAML as a PyTorch user writes it for this network: the equivalent nn.Sequential,
    functional_call, cross-entropy, the inner loop with create_graph=True."""
    import torch
    from torch.func import functional_call

    net = _torch_network(torch, "softmax", 2)

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        t = torch.tensor(theta, requires_grad=True)

        def task_loss(flat, X, y, l2=0.0):
            return torch.nn.functional.cross_entropy(functional_call(net, referees.named_views(net, flat), (X,)), y)

        losses = []
        for k in range(Xs.shape[0]):
            phi = t
            for _ in range(inner_steps):
                g, = torch.autograd.grad(task_loss(phi, torch.tensor(Xs[k]), torch.tensor(ys[k])), phi,
                                         create_graph=create_graph)
                phi = phi - inner_lr * g
            losses.append(task_loss(phi, torch.tensor(Xq[k]), torch.tensor(yq[k])))
        meta = torch.stack(losses).mean()
        grad, = torch.autograd.grad(meta, t)
        return meta.item(), grad.numpy()

    return fn


def test_oracle_checks_maml_through_a_test_only_network():
    """The cases are built for the architecture; a correct float64 implementation passes and a
    first-order one is refused (and named where the cases separate it)."""
    pytest.importorskip("torch")
    model = network()
    report = oracle.check(torch_maml(), model=model)
    assert report.passed, report.message
    wrong = oracle.check(torch_maml(create_graph=False), model=model)
    assert not wrong.passed
    assert wrong.diagnosis == "first_order" or "first_order" not in wrong.named


def test_verify_identities_hold_for_a_test_only_network():
    """Every identity refmaml verify checks for a network (gradient, HVP, Hessian, symmetry, the
    (H12) split, MAML's), on NumPy in float64, at its stated tolerance."""
    rows = verify.check_model(network(), "test network", only=("numpy",), dtypes=("float64",))
    assert len(rows) >= 20
    failed = [(r.identity, r.error, r.tolerance) for r in rows if not r.passed]
    assert not failed


def test_explain_walks_a_test_only_network():
    """The walk-through's numbers agree with the library and the complex step (its own checks)."""
    obj, name, inputs = explain.problem(network(), features=3)
    result = explain.walk(obj, name, inputs)
    assert result["library_meta_grad_relative_difference"] <= 1e-12
    assert result["checks"]["relative_error"] <= 1e-12
    text = explain.to_text(result)
    assert "Sine()" in text and "Scale(4)" in text and "models.md (H9)" in text


def test_vectors_write_and_read_a_test_only_network(tmp_path):
    """A case of the network as a vectors record, written and read back (the reader is told the
    layer kinds it may build); without them it refuses the file, naming the unknown layer."""
    model = network()
    case = cases.network_cases(model)[0]
    doc = {"format": "refmaml-vectors", "version": "2", "generator": "test", "conventions": {},
           "cases": [vectors.case_record(case)]}
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(doc))
    (loaded, outputs), = vectors.load(path, layers={"Sine": Sine, "Scale": Scale})
    assert loaded.id == case.id and np.array_equal(loaded.theta, case.theta)
    with pytest.raises(vectors.InvalidFile, match="unknown layer kind 'Sine'"):
        vectors.load(path)
