"""The oracle's third version's named bugs (derivations/oracle.md (O14)-(O21)), each got by an
implementation written apart from refmaml (``tests/test_oracle_users.py``: PyTorch with ``torch.func``,
and JAX), on the architecture where the bug lives: the MAML paper's sinusoid network for the shapes
and scales of the mean squared error, a two-output tanh regressor for the sum over outputs, the
ConvNet preset (with and without batch norm) for batch norm, masks and max-pooling.

A bug is named only where the architecture's diagnostic cases separate it from the truth and from
every other bug by at least 1e-2 (``report.named``); each test also asserts that. Tolerances: the
oracle's own, 1e-10 relative in float64 (a bug's answer is computed exactly, so an implementation
with the bug matches it to rounding); the direct check of (O20) against torch's reverse-over-reverse
is 1e-12 relative (both exact to rounding in float64).
"""

import numpy as np
import pytest

from refmaml import oracle
from refmaml.models import MLP
from refmaml.oracle import answers, cases

from .test_oracle_users import CONVNET, PLAIN, SINUSOID, TWO_OUTPUTS, TorchUser, jax_sinusoid, refmaml_model

torch = pytest.importorskip("torch")

SINUSOID_NET = MLP((1, 40, 40, 1), "relu", "mse")
TWO_OUTPUT_NET = MLP((2, 8, 2), "tanh", "mse")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _named(report, bug):
    assert report.diagnosis == bug, report.message
    assert bug in report.named
    assert oracle.MESSAGES[bug][1] in report.message   # the likely cause, in the user's terms


# --- shapes and scales of the mean squared error ------------------------------------------------

def test_broadcast_targets_in_a_pytorch_sinusoid_network():
    """(O14): nn.Linear(40, 1) outputs (n, 1) against the oracle's (T, n) targets in F.mse_loss. The
    message gives both shapes and the fix, quotes PyTorch's warning, and reads the one-example cases,
    the only ones that pass, as the shape hint."""
    report = oracle.check(TorchUser(SINUSOID, "mse", mistake="broadcast"), model=SINUSOID_NET, steps=(1, 2))
    _named(report, "broadcast_targets")
    assert "(n, 1)" in report.message and "(n,)" in report.message and "squeeze(-1)" in report.message
    assert "fn warned: UserWarning: Using a target size" in report.message
    assert report.localization["passing_only_when"] == ["one_example"]
    assert all(c.passed for c in report.cases if "one_example" in c.conditions)


@pytest.mark.slow
def test_broadcast_targets_in_jax():
    """The same mistake in JAX: broadcasting without any warning."""
    pytest.importorskip("jax")
    report = oracle.check(jax_sinusoid("broadcast"), model=SINUSOID_NET, steps=(1,))
    _named(report, "broadcast_targets")
    assert "fn warned" not in report.message


@pytest.mark.parametrize("user", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_half_mse(user):
    """(O15) with c = 1/2: 0.5 * mse in the support and the query loss."""
    if user == "jax":
        pytest.importorskip("jax")
    fn = TorchUser(SINUSOID, "mse", mistake="half") if user == "torch" else jax_sinusoid("half")
    report = oracle.check(fn, model=SINUSOID_NET, steps=(1,), l2=user == "torch")
    _named(report, "half_mse")


def test_mse_summed_over_outputs():
    """(O15) with c = d_out = 2: ((out - y) ** 2).sum(-1).mean() on a two-output regressor."""
    report = oracle.check(TorchUser(TWO_OUTPUTS, "mse", mistake="sum_outputs"), model=TWO_OUTPUT_NET, steps=(1,))
    _named(report, "mse_sum_over_outputs")
    correct = oracle.check(TorchUser(TWO_OUTPUTS, "mse"), model=TWO_OUTPUT_NET, steps=(1,))
    assert correct.passed, correct.message


@pytest.mark.parametrize("user", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_support_and_query_swapped(user):
    """(O19): the sets unpacked as (theta, Xq, yq, Xs, ys)."""
    if user == "jax":
        pytest.importorskip("jax")
    fn = TorchUser(SINUSOID, "mse", mistake="swapped") if user == "torch" else jax_sinusoid("swapped")
    _named(oracle.check(fn, model=SINUSOID_NET, steps=(2,)), "support_query_swapped")


@pytest.mark.slow
def test_support_and_query_swapped_in_a_conv_network():
    _named(oracle.check(TorchUser(CONVNET, mistake="swapped"), model=refmaml_model(CONVNET), steps=(2,)),
           "support_query_swapped")


# --- batch norm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake, bug", [("bn_eval", "bn_eval_statistics"),
                                          ("bn_detached", "bn_detached_statistics"),
                                          ("bn_momentum", "bn_support_statistics_at_query")])
def test_batch_norm_mistakes(mistake, bug):
    """(O16): nn.BatchNorm2d with running statistics (the default) after net.eval(): normalised with
    mean 0 and variance 1. (O17): the batch's mean and variance detached. (O24): running statistics
    with momentum 1, the inner loop in train mode, the query in eval mode: the query normalised with
    the last support batch's statistics (PyTorch's unbiased running variance)."""
    report = oracle.check(TorchUser(CONVNET, mistake=mistake), model=refmaml_model(CONVNET), steps=(0, 2))
    _named(report, bug)
    if bug == "bn_support_statistics_at_query":
        assert "variant: unbiased variance (PyTorch's running_var)" in report.message


def test_batch_norm_bugs_are_not_claimed_without_batch_norm():
    report = oracle.check(TorchUser(PLAIN), model=refmaml_model(PLAIN), steps=(2,))
    assert report.passed and "bn_eval_statistics" not in report.named and "maxpool_no_second_order" in report.named


# --- which parameters adapt ---------------------------------------------------------------------

def test_head_only_and_biases_not_adapted():
    """(O18): an ANIL loop checked as MAML (every parameter should adapt), and an inner loop that
    adapts only the parameters without 'bias' in their name (batch norm's beta included)."""
    net = refmaml_model(CONVNET)
    _named(oracle.check(TorchUser(CONVNET, adapt=(-1,)), model=net, steps=(2,)), "head_only_adapted")
    _named(oracle.check(TorchUser(CONVNET, mistake="no_bias"), model=net, steps=(2,)), "biases_not_adapted")


@pytest.mark.slow
def test_a_masked_check_names_all_adapted():
    """(O18) under ANIL's mask: adapting every parameter; and the biases left out of ANIL's head."""
    net = refmaml_model(CONVNET)
    mask = net.mask(-1)
    _named(oracle.check(TorchUser(CONVNET), model=net, inner_mask=mask, steps=(2,)), "all_adapted")
    _named(oracle.check(TorchUser(CONVNET, adapt=(-1,), mistake="no_bias"), model=net, inner_mask=mask, steps=(2,)),
           "biases_not_adapted")


# --- max-pooling's second-order signal ------------------------------------------------------------

@pytest.mark.parametrize("spec", [CONVNET, pytest.param(PLAIN, marks=pytest.mark.slow)],
                         ids=["batch-norm", "no-batch-norm"])
def test_maxpool_no_second_order(spec):
    """(O20): a max-pool whose backward pass is a constant for the second derivative (zero for its
    incoming gradient, as cbfinn/maml's special_grads.py returns for TensorFlow's MaxPoolGrad)."""
    _named(oracle.check(TorchUser(spec, mistake="pool_cut"), model=refmaml_model(spec), steps=(2,)),
           "maxpool_no_second_order")


def test_the_pool_cut_product_is_reverse_over_reverse():
    """(O20) directly: ``pool_cut_product(theta, X, y, w)`` is torch's gradient of <grad L(theta), w>
    through the cut max-pool (the transposed Jacobian of the cut gradient, J~^T w; the cut makes that
    Jacobian unsymmetric, so the order of differentiation matters), and it is not the true
    Hessian-vector product. 1e-12 relative: both exact to rounding."""
    net = refmaml_model(CONVNET)
    case = next(c for c in cases.network_cases(net) if c.diagnostic and not c.rates and c.l2)
    user = TorchUser(CONVNET, mistake="pool_cut")
    rng = np.random.default_rng(3)
    w = rng.standard_normal(net.size)
    X, y = case.Xs[0], case.ys[0]
    flat = torch.tensor(case.theta, requires_grad=True)
    loss = user.data_loss(user.unpack(flat), torch.tensor(X), torch.tensor(y)) + case.l2 / 2 * (flat ** 2).sum()
    g, = torch.autograd.grad(loss, flat, create_graph=True)
    expected, = torch.autograd.grad(g @ torch.tensor(w), flat)
    got = answers.pool_cut_product(net, case.theta, X, y, w, case.l2)
    assert np.linalg.norm(got - expected.numpy()) <= 1e-12 * np.linalg.norm(expected.numpy())
    true_hvp = np.asarray(net.hvp(case.theta, X, y, w, l2=case.l2))
    assert np.linalg.norm(got - true_hvp) > 1e-2 * np.linalg.norm(true_hvp)   # the cut changes it


@pytest.mark.slow
def test_the_cut_on_a_miniimagenet_network_in_miniature():
    """(O20) measured, for the claim about cbfinn/maml: the MAML paper's MiniImagenet network in
    miniature (4 blocks of 3x3 convolution, batch norm, ReLU and 2x2 max-pooling with 8 channels on
    3x16x16 images, 5 classes; T = 4 tasks, 5 support and 15 query examples, K = 5 steps at
    alpha = 0.01, the paper's MiniImagenet inner rate and steps), the first draw whose inner loop keeps
    every kink 1e-6 away. The meta-gradient with the second-order signal cut at every max-pool is
    0.22 (relative) from the exact one, first-order MAML 0.47; the cut keeps 0.67 of the second-order
    correction (its projection; cosine 0.90). Asserted with margins around these numbers (the
    computation is exact; the margins only allow other platforms' rounding of the draw, none of
    which moves a number by 1e-3)."""
    from refmaml.models import ConvNet

    net = ConvNet(5, blocks=4, channels=8, input_shape=(3, 16, 16))
    for seed in range(40):
        p = cases.draw(net, np.random.default_rng(seed), 4, 5, 15)
        if cases.kink_distance(net, p, inner_lr=0.01, inner_steps=5) >= cases.RELU_MARGIN:
            break
    assert seed == 6
    case = cases.Case("miniimagenet-in-miniature", net, p.theta, p.Xs, p.ys, p.Xq, p.yq, 0.01, 5, 0.0, True)
    right, first = answers.truth(case, 0.01), answers.first_order(case, 0.01)
    cut, = answers.maxpool_no_second_order(case, 0.01)
    n = np.linalg.norm
    second, kept = right.grad - first.grad, cut.grad - first.grad
    assert abs(n(cut.grad - right.grad) / n(right.grad) - 0.220) < 1e-3
    assert abs(n(first.grad - right.grad) / n(right.grad) - 0.473) < 1e-3
    assert abs(kept @ second / (second @ second) - 0.670) < 1e-3
    assert abs(kept @ second / (n(kept) * n(second)) - 0.898) < 1e-3
