"""The audit of the seed tutorial (derivations/seed-errata.md, refmaml/audit.py).

Every claim with a check reproduces its verdict; the errata's quotes of the
audit stay true; and each erratum is asserted here on its own, with the
tolerance stated: complex-step references are exact to rounding (1e-12),
central differences keep about two thirds of the digits (1e-6), and a
formula is called wrong when it misses the reference by more than 10%.
The section 5.3 transcription is checked against the listing itself, run in
PyTorch, where PyTorch is installed.
"""

import pathlib
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmaml import audit, check, cli, meta_value_and_grad, tutorial
from refmaml.models import logistic, softmax

ROOT = pathlib.Path(__file__).resolve().parent.parent
ERRATA = (ROOT / "derivations" / "seed-errata.md").read_text(encoding="utf-8")
EXACT, CENTRAL, WRONG = 1e-12, 1e-6, 0.1
CHECKED = [c for c in audit.CLAIMS if c.check is not None]


# --- the table and the document agree ---------------------------------------------------------

@pytest.mark.parametrize("claim", CHECKED, ids=lambda c: c.id)
def test_every_check_reproduces_its_verdict(claim):
    evidence = claim.check()
    assert evidence.reproduced, f"{claim.id}: {evidence.shows}"


def errata_items():
    """``{item: verdict}`` from the headings of seed-errata.md and the first bold verdict after each."""
    heading = re.compile(r"^#{3,4} ((?:\d\.\d[a-z](?:, )?)+)\s", re.M)
    verdict = re.compile(r"\*\*(correct|wrong|ambiguous|incomplete)\b", re.I)
    marks = list(heading.finditer(ERRATA))
    items = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(ERRATA)
        found = verdict.search(ERRATA, m.end(), end)
        assert found, f"no verdict under {m.group(0).strip()}"
        for item in m.group(1).split(", "):
            items[item] = found.group(1).lower()
    return items


def test_errata_cover_every_claim_in_order_with_the_same_verdict():
    items = errata_items()
    assert list(items) == [c.id for c in audit.CLAIMS]
    assert items == {c.id: c.verdict for c in audit.CLAIMS}
    assert all(c.verdict in audit.VERDICTS for c in audit.CLAIMS)


def test_every_section_of_the_tutorial_is_covered():
    sections = {c.section for c in audit.CLAIMS}
    tutorial_sections = {"1.1", "1.2", "1.3", "2.1", "2.2", "3.0", "3.1", "3.2", "4.1", "4.2", "4.3",
                         "5.0", "5.1", "5.2", "5.3"}
    assert sections == tutorial_sections


def test_summary_counts():
    m = re.search(r"(\d+) claims checked: (\d+) correct, (\d+) wrong, (\d+) ambiguous, (\d+)\s+"
                  r"incomplete\. (\d+) verdicts are reproduced by computation; the other (\d+)", ERRATA)
    assert m, "summary sentence not found"
    counts = [int(g) for g in m.groups()]
    verdicts = [c.verdict for c in audit.CLAIMS]
    assert counts == [len(verdicts), *(verdicts.count(v) for v in audit.VERDICTS),
                      len(CHECKED), len(verdicts) - len(CHECKED)]


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?")


def same_numbers(quoted, printed):
    """Equal text; numbers equal as printed, except rounding-level ones (<= 1e-12), which may differ
    between BLAS builds and need only both be at rounding level."""
    a, b = NUMBER.findall(quoted), NUMBER.findall(printed)
    if NUMBER.sub("#", quoted) != NUMBER.sub("#", printed) or len(a) != len(b):
        return False
    return all(x == y or max(abs(float(x)), abs(float(y))) <= EXACT for x, y in zip(a, b, strict=True))


def test_errata_quote_the_audit_truly():
    quotes = re.findall(r"\*\*Shown by\*\* `refmaml audit` \(item (\S+)\): `(.*)`", ERRATA)
    by_id = {c.id: c for c in CHECKED}
    assert sorted(i for i, _ in quotes) == sorted(by_id), "one quote per checked claim"
    for item, quoted in quotes:
        printed = by_id[item].check().shows
        assert same_numbers(quoted, printed), (item, quoted, printed)


def test_cli_prints_one_row_per_claim(capsys):
    assert cli.main(["audit"]) == 0
    out = capsys.readouterr().out
    for c in audit.CLAIMS:
        assert re.search(rf"^{re.escape(c.id)}\s+{re.escape(c.claim)}\s+{c.verdict}\s", out, re.M), c.id
    assert f"{len(audit.CLAIMS)} claims" in out and "0 do not" in out


def _entries(lines):
    """Item -> its line and the indented evidence and correction lines under it, as one text."""
    out, item = {}, None
    for line in lines:
        if line.strip() and not line.startswith(" "):
            item = line.split()[0]
            out[item] = line
        elif line.strip() and item is not None:
            out[item] += " " + line
    return out


def test_readme_excerpt_matches_the_cli(capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    excerpt = _entries(re.search(r"```\n(item  claim.*?)\n\.\.\.\n```", readme, re.S).group(1).splitlines()[2:])
    cli.main(["audit"])
    out = capsys.readouterr().out
    printed = _entries(out[:out.index("\n\n")].splitlines()[2:])
    assert excerpt and all("evidence:" in text and "correction:" in text for text in excerpt.values())
    for item, text in excerpt.items():
        assert same_numbers(" ".join(text.split()), " ".join(printed[item].split())), item


def test_cli_exits_1_when_a_verdict_is_not_reproduced(capsys, monkeypatch):
    broken = audit.Claim("4.2z", "a claim whose check fails", "wrong", "-",
                         lambda: audit.Evidence("nothing", False))
    monkeypatch.setattr(audit, "CLAIMS", audit.CLAIMS[:2] + [broken])
    assert cli.main(["audit"]) == 1
    assert re.search(r"^4\.2z .* NO$", capsys.readouterr().out, re.M)


# --- section 3 ------------------------------------------------------------------------------

def test_objective_gradient_is_M5_and_not_first_order():
    v = audit.check_maml_objective().values
    assert v["exact"] <= EXACT          # complex step of the composed objective: exact to rounding
    assert v["first_order"] > 0.05      # first-order MAML (M8) misses it by several percent here


def test_sum_over_examples_is_the_mean_at_n_times_the_rate():
    v = audit.check_sum_over_examples().values
    assert v["identity"] <= EXACT
    assert v["step_ratio"] == pytest.approx(v["n"], rel=EXACT)


# --- section 4 ------------------------------------------------------------------------------

def test_linear_model_cross_entropy_is_undefined():
    v = audit.check_linear_cross_entropy().values
    assert np.isnan(v["loss_random"]) and np.isnan(v["loss_zero"])
    assert v["outside"] > 0.5


def test_cross_entropy_with_sigmoid_is_L2():
    assert audit.check_cross_entropy_formula().values["error"] <= EXACT


RIGHT = {1: (), 2: ("linear",), 3: ("sigmoid",)}


@pytest.mark.parametrize("line", [1, 2, 3])
@pytest.mark.parametrize("f", tutorial.OUTPUTS)
def test_gradient_lines_against_finite_differences(line, f):
    e = audit.gradient_line_errors(line)[f]
    if f in RIGHT[line]:
        assert e["complex"] <= EXACT and e["central"] <= CENTRAL
    else:
        assert e["complex"] > WRONG and e["central"] > WRONG


def valid_linear_instances():
    """Instances where every ``theta^T x`` lies in (0, 1): positive features, a positive theta
    scaled so that the largest output is ``top``."""
    @st.composite
    def build(draw):
        n, d = draw(st.integers(1, 8)), draw(st.integers(1, 5))
        seed = draw(st.integers(0, 2**32 - 1))
        top = draw(st.floats(0.05, 0.95))
        rng = np.random.default_rng(seed)
        X = rng.uniform(0.1, 1.0, (n, d))
        theta = rng.uniform(0.1, 1.0, d)
        theta *= top / (X @ theta).max()
        return theta, X, rng.integers(0, 2, n).astype(np.float64)

    return build()


@given(valid_linear_instances())
def test_E3_and_E4_identities(instance):
    theta, X, y = instance
    linear_loss = check.complex_step_gradient(lambda t: tutorial.cross_entropy(t, X, y, "linear"), theta)
    # (E3): line 2 and the one-denominator form are the linear model's gradient
    assert check.relative_error(tutorial.gradient_line(theta, X, y, line=2, f="linear"), linear_loss) <= EXACT
    assert check.relative_error(tutorial.linear_model_gradient(theta, X, y), linear_loss) <= EXACT
    # (E4): line 3 is (L4) for the sigmoid model and the squared-error gradient for the linear one
    assert check.relative_error(tutorial.gradient_line(theta, X, y, line=3, f="sigmoid"),
                                logistic.grad(theta, X, y)) <= EXACT
    squared = check.complex_step_gradient(lambda t: 0.5 * np.mean((y - X @ t) ** 2), theta)
    assert check.relative_error(tutorial.gradient_line(theta, X, y, line=3, f="linear"), squared) <= EXACT


def test_simplified_gradient_is_not_the_linear_models():
    v = audit.check_simplified_gradient().values
    assert v["vs_linear"] > WRONG
    assert v["sigmoid_vs_L4"] <= EXACT and v["linear_vs_squared"] <= EXACT


def test_meta_update_of_4_3_is_first_order():
    v = audit.check_first_order_meta_update().values
    assert v["alpha"] > WRONG
    assert 5 < v["ratio"] < 20   # O(alpha): a tenth of the rate, about a tenth of the error


# --- section 5 ------------------------------------------------------------------------------

def test_cross_entropy_of_one_output_is_zero():
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert tutorial.cross_entropy_one_output(rng.normal(size=4) * 100, rng.normal(size=(7, 4))) == 0.0


def test_listing_facts():
    assert audit.unused_parameters() == ["meta_lr"]
    inside, outside = audit.calls_in_task_loop()
    assert "zero_grad" not in inside and outside.count("zero_grad") == 1
    assert inside.count("backward") == 1 and inside.count("step") == 1


def test_first_batches_repeat_without_shuffling():
    X, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    rng = np.random.default_rng(0)
    same = tutorial.first_batches(X, y, batch_size=3, count=4, shuffle=False, rng=rng)
    assert all(np.array_equal(b[0], X[:3]) for b in same)
    drawn = tutorial.first_batches(X, y, batch_size=3, count=4, shuffle=True, rng=rng)
    assert len({b[1].tobytes() for b in drawn}) > 1


@st.composite
def code_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    N, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    d, C = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    alpha, beta = draw(st.floats(0.05, 1.0)), draw(st.floats(0.05, 1.0))
    rng = np.random.default_rng(seed)

    def batches():
        return [(rng.normal(size=(b, d)), rng.integers(0, C, b)) for _ in range(N)]

    return rng.uniform(-0.5, 0.5, (d, C)), batches(), batches(), alpha, beta


@given(code_cases())
def test_transcription_equals_its_closed_form(case):
    # (E5)-(E6): the two compute the same sums in another order; the update is compared
    # relative to its own size, with 1e-12 for rounding over at most 6 tasks.
    theta0, support, query, alpha, beta = case
    step = tutorial.code_step(theta0, support, query, inner_lr=alpha, outer_lr=beta)
    closed = tutorial.code_step_closed_form(theta0, support, query, inner_lr=alpha, outer_lr=beta)
    assert check.relative_error(step.theta - theta0, closed - theta0) <= EXACT
    for j, theta_j in enumerate(step.trajectory, start=1):   # (E5), task by task
        expected = theta0 - alpha * sum((j - i + 1) * step.support_grads[i - 1] for i in range(1, j + 1))
        assert check.relative_error(theta_j - theta0, expected - theta0) <= EXACT


@given(code_cases())
def test_without_inner_step_the_listing_trains_on_support_and_query(case):
    # (E7): alpha = 0 leaves plain gradient descent on every batch
    theta0, support, query, _, beta = case
    step = tutorial.code_step(theta0, support, query, inner_lr=0.0, outer_lr=beta)
    joint = -beta * sum(softmax.grad(theta0, *s) + softmax.grad(theta0, *q)
                        for s, q in zip(support, query, strict=True))
    assert check.relative_error(step.theta - theta0, joint) <= EXACT


@pytest.mark.parametrize("shuffle", [False, True])
def test_listing_update_is_not_maml(shuffle):
    v = audit.compare_with_maml(shuffle)
    assert v["closed_form"] <= EXACT
    assert v["relative_difference"] > 1 and v["norm_ratio"] > 2
    assert v["printed"] < v["meta_loss"]


def test_maml_update_is_minus_beta_times_the_summed_meta_gradient():
    theta0, support, query = audit.SETTING.batches(False)
    loss, update = audit.maml_update(theta0, support, query, inner_lr=0.1, outer_lr=0.01)
    loss_mean, grad_mean = meta_value_and_grad(theta0, *audit.stack(support), *audit.stack(query),
                                               inner_lr=0.1, inner_steps=1, model="softmax")
    N = len(support)
    assert loss == pytest.approx(N * float(loss_mean), rel=EXACT)
    assert check.relative_error(update, -0.01 * N * grad_mean) <= EXACT


# --- the listing itself, run in PyTorch ----------------------------------------------------------

class _Recorder:
    """A batch sampler that remembers the index lists it hands out."""

    def __init__(self, sampler):
        self.sampler, self.batches = sampler, []

    def __iter__(self):
        for batch in self.sampler:
            self.batches.append(list(batch))
            yield batch

    def __len__(self):
        return len(self.sampler)


@pytest.mark.parametrize("shuffle", [False, True])
def test_transcription_matches_the_listing_run_in_pytorch(shuffle, capsys):
    torch = pytest.importorskip("torch")
    from torch import nn, optim
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

    s = audit.SETTING
    theta0, (X, y), (Xv, yv) = s.data()
    namespace = {"torch": torch, "nn": nn, "optim": optim}
    exec(compile(audit.LISTING, "seed tutorial, section 5.3", "exec"), namespace)

    def loader(X, y, seed):
        data = TensorDataset(torch.tensor(X[:, :-1]), torch.tensor(y))
        order = RandomSampler(data, generator=torch.Generator().manual_seed(seed)) if shuffle \
            else SequentialSampler(data)
        recorder = _Recorder(BatchSampler(order, s.batch_size, drop_last=False))
        return DataLoader(data, batch_sampler=recorder), recorder

    class LinearModel(nn.Module):   # section 5.2, verbatim
        def __init__(self, input_size, output_size):
            super(LinearModel, self).__init__()
            self.linear = nn.Linear(input_size, output_size)

        def forward(self, x):
            return self.linear(x)

    model = LinearModel(s.d, 2).double()
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor(theta0[:-1].T))
        model.linear.bias.copy_(torch.tensor(theta0[-1]))
    optimizer = optim.SGD(model.parameters(), lr=s.outer_lr)
    train_loader, train_batches = loader(X, y, 1)
    val_loader, val_batches = loader(Xv, yv, 2)
    namespace["maml"](model, optimizer, train_loader, val_loader, meta_lr=123.0, inner_lr=s.inner_lr,
                      meta_batch_size=s.meta_batch_size, num_iterations=1)
    printed = float(capsys.readouterr().out.split("Meta Loss = ")[1])

    support = [(X[rows], y[rows]) for rows in train_batches.batches]
    query = [(Xv[rows], yv[rows]) for rows in val_batches.batches]
    step = tutorial.code_step(theta0, support, query, inner_lr=s.inner_lr, outer_lr=s.outer_lr)
    ran = np.vstack([model.linear.weight.detach().numpy().T, model.linear.bias.detach().numpy()[None]])
    # float64 on both sides; only the order of summation differs
    assert check.relative_error(ran - theta0, step.theta - theta0) <= EXACT
    assert printed == pytest.approx(step.printed, rel=EXACT)


# --- the listing run in PyTorch: what a static reading cannot show ---------------------------------

def _listing_in_pytorch(model_factory, *, meta_batch_size, meta_lr=1e-3, inner_lr=None):
    """Run one iteration of the section 5.3 listing, verbatim, on ``model_factory()`` (float64),
    with unshuffled loaders over ``audit.SETTING``'s data and ``optim.SGD(lr=SETTING.outer_lr)``.
    Returns the parameters before and after the iteration (flat float64 arrays) and the printed loss."""
    torch = pytest.importorskip("torch")
    import contextlib
    import io

    from torch import nn, optim
    from torch.utils.data import DataLoader, TensorDataset

    s = audit.SETTING
    _, (X, y), (Xv, yv) = s.data()
    namespace = {"torch": torch, "nn": nn, "optim": optim}
    exec(compile(audit.LISTING, "seed tutorial, section 5.3", "exec"), namespace)
    torch.manual_seed(0)
    model = model_factory(nn).double()
    initial = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    optimizer = optim.SGD(model.parameters(), lr=s.outer_lr)
    train = DataLoader(TensorDataset(torch.tensor(X[:, :-1]), torch.tensor(y)), batch_size=s.batch_size)
    val = DataLoader(TensorDataset(torch.tensor(Xv[:, :-1]), torch.tensor(yv)), batch_size=s.batch_size)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace["maml"](model, optimizer, train, val, meta_lr=meta_lr,
                          inner_lr=s.inner_lr if inner_lr is None else inner_lr,
                          meta_batch_size=meta_batch_size, num_iterations=1)
    params = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    return initial, params, float(out.getvalue().split("Meta Loss = ")[1])


def _linear(nn):
    return nn.Linear(audit.SETTING.d, 2)


def _linear_tanh_linear(nn):
    return nn.Sequential(nn.Linear(audit.SETTING.d, 3), nn.Tanh(), nn.Linear(3, 2))


def test_meta_lr_has_no_effect_on_the_listing_run():
    """5.3a, run: meta_lr = 1e-3 and 1e9 leave bit-identical parameters (the listing never reads it;
    the outer rate is the optimizer's)."""
    N = audit.SETTING.meta_batch_size
    initial, a, printed_a = _listing_in_pytorch(_linear, meta_batch_size=N, meta_lr=1e-3)
    _, b, printed_b = _listing_in_pytorch(_linear, meta_batch_size=N, meta_lr=1e9)
    assert np.array_equal(a, b) and printed_a == printed_b
    assert not np.array_equal(a, initial)  # the iteration did move the parameters


def test_listing_crashes_in_place_with_a_hidden_layer_and_two_tasks():
    """5.3, in-place inner steps: a model that saves a parameter for its backward pass (the second
    Linear of Linear-Tanh-Linear saves its weight to pass the gradient to the hidden layer) makes
    meta_loss.backward() fail as soon as a second task's inner step has overwritten that weight.
    One task runs; nn.Linear alone runs with five (it saves only its input)."""
    _listing_in_pytorch(_linear_tanh_linear, meta_batch_size=1)
    _listing_in_pytorch(_linear, meta_batch_size=5)
    for N in (2, 5):
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            _listing_in_pytorch(_linear_tanh_linear, meta_batch_size=N)


def test_listing_prints_the_mean_and_steps_along_the_sum():
    """5.3k: the listing prints meta_loss / N but backpropagates meta_loss, the sum of the N query
    losses. At inner_lr = 0 with unshuffled loaders the N pairs are one pair N times: the printed
    number is that pair's query loss whatever N is, and the step is N times the N = 1 step (the
    effective outer rate is N beta). Both compared to rounding of a sum of 5 terms (1e-12)."""
    N = audit.SETTING.meta_batch_size
    start, one, printed_one = _listing_in_pytorch(_linear, meta_batch_size=1, inner_lr=0.0)
    _, many, printed_many = _listing_in_pytorch(_linear, meta_batch_size=N, inner_lr=0.0)
    assert printed_many == pytest.approx(printed_one, rel=EXACT)
    assert check.relative_error(many - start, N * (one - start)) <= EXACT


def test_printed_loss_flatters_only_when_support_and_query_share_a_problem():
    """5.3k, the hedge: on the audit's instance (support and query from one problem) the printed loss
    is below the meta-loss at theta (0.578 < 0.772); with the query labels flipped, so that support
    and query are two opposite problems, training along the path raises it above (1.089 > 0.859).
    The margins are order one, far from rounding."""
    s = audit.SETTING
    theta0, support, query = s.batches(False)
    rates = dict(inner_lr=s.inner_lr, outer_lr=s.outer_lr)
    for pairs, lower in ((query, True), ([(X, 1 - y) for X, y in query], False)):
        printed = tutorial.code_step(theta0, support, pairs, **rates).printed
        meta_loss = audit.maml_update(theta0, support, pairs, **rates)[0] / s.meta_batch_size
        assert (printed < meta_loss - WRONG) if lower else (printed > meta_loss + WRONG)
