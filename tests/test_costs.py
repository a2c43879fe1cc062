"""Operation counts in one unit across the derivations: a flop is one addition or one multiplication,
so a multiply-add is two (logistic.md (L11), softmax.md (S10), maml.md (M9), dual.md (G8), mlp.md (N9)).

The counts are exact integers; every comparison here is exact."""

import numpy as np
import pytest

from refmaml import models, policy, problem


@pytest.mark.parametrize("model, shape", [("logistic", (7,)), ("softmax", (7, 3)), ("linear", (7,))])
def test_a_gradient_and_an_hvp_are_two_products_with_the_data(model, shape):
    """(L11), (S10), (M9): X v and X^T r are n d C multiply-adds each, 2 n d C flops; a gradient and
    an HVP are two such products, 4 n d C flops."""
    n, d = 5, shape[0]
    C = shape[1] if len(shape) == 2 else 1
    net = models.get(model).network
    one_product = 2 * n * d * C  # n d C multiply-adds
    assert net.gradient_flops(n, d, shape) == 2 * one_product == 4 * n * d * C
    assert net.hvp_flops(n, d, shape) == 2 * one_product


def test_network_counts_are_those_of_N9():
    """(N9): a gradient is 6 n sum_l d_l d_(l-1) flops, an HVP twice that."""
    model = models.MLP((3, 5, 4, 2), "tanh", "mse")
    n = 7
    products = 3 * 5 + 5 * 4 + 4 * 2
    assert model.network.gradient_flops(n, 3, (model.size,)) == 6 * n * products
    assert model.network.hvp_flops(n, 3, (model.size,)) == 12 * n * products


def _problem(n, m, d, K, C):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((d, C)) if C > 1 else rng.standard_normal(d)
    labels = C if C > 1 else 2
    return problem.meta(models.get("softmax" if C > 1 else "logistic"), theta,
                        rng.standard_normal((1, n, d)), rng.integers(0, labels, (1, n)),
                        rng.standard_normal((1, m, d)), rng.integers(0, labels, (1, m)),
                        inner_lr=0.1, inner_steps=K)


@pytest.mark.parametrize("C", [1, 3])
def test_query_gradient_cancels_from_the_break_even_of_G8(C):
    """(G8): primal - dual = 8KndC - 2n^2 d - 2mnd - 4ndC - 4Kn^2 C - 4mnC, exactly: the query
    gradient's 4mdC is on both sides and cancels. With n, m << d the dual form is the cheaper (flop
    for flop) exactly when 8KnC > 2n(n + m) + 4nC up to the O(1/d) terms, K > (n + m)/(4C) + 1/2."""
    n, m, d = 4, 6, 10**5
    for K in range(0, 8):
        primal, dual = policy.costs(_problem(n, m, d, K, C))
        assert primal - dual == (8 * K * n * d * C - 2 * n * n * d - 2 * m * n * d - 4 * n * d * C
                                 - 4 * K * n * n * C - 4 * m * n * C)
        assert (dual < primal) == (K > (n + m) / (4 * C) + 0.5)


@pytest.mark.parametrize("C", [1, 3])
def test_flops_columns_of_the_cost_table_for_a_linear_network(C):
    """costs.md (K1)-(K5), the column "flops, linear network": exact MAML 8KndC + 4mdC (M9), first
    order 4(Kn + m)dC, Reptile 4KndC, Meta-SGD's rate gradient 2KdC more, per task."""
    from refmaml import costs
    n, m, d, T = 4, 6, 10, 3
    model = models.get("softmax" if C > 1 else "logistic")
    shape = (d, C) if C > 1 else (d,)
    for K in range(0, 6):
        want = {"maml": 8 * K * n * d * C + 4 * m * d * C, "first-order": 4 * (K * n + m) * d * C,
                "reptile": 4 * K * n * d * C}
        want["meta-sgd"] = want["maml"] + 2 * K * d * C
        want["first-order meta-sgd"] = want["first-order"] + 2 * K * d * C
        for method, flops in want.items():
            assert costs.flops(model, method, T, n, m, d, shape, K) == T * flops


def test_flops_columns_of_the_cost_table_for_a_network():
    """costs.md (K1)-(K5), the column "flops, network", with D = sum_l d_l d_(l-1) (N9): exact MAML
    18KnD + 6mD, first order 6(Kn + m)D, Reptile 6KnD, Meta-SGD 2K|theta| more."""
    from refmaml import costs
    model = models.MLP((3, 5, 4, 2), "tanh", "mse")
    D = 3 * 5 + 5 * 4 + 4 * 2
    n, m, T, shape = 7, 4, 2, (model.size,)
    for K in range(0, 6):
        want = {"maml": 18 * K * n * D + 6 * m * D, "first-order": 6 * (K * n + m) * D, "reptile": 6 * K * n * D}
        want["meta-sgd"] = want["maml"] + 2 * K * model.size
        want["first-order meta-sgd"] = want["first-order"] + 2 * K * model.size
        for method, flops in want.items():
            assert costs.flops(model, method, T, n, m, 3, shape, K) == T * flops
