"""Executable audit of the seed tutorial: ``derivations/seed-errata.md``.

Every claim of the tutorial has an entry in ``CLAIMS``: the section, the
claim in short, the verdict the errata give it (correct, wrong, ambiguous,
incomplete), where the correction lives and, wherever a computation can
show the verdict, a check. A check computes on a fixed, seeded instance
and returns an ``Evidence``: the numbers it measured, a line that shows
them, and whether they reproduce the documented verdict. Claims about
terminology have no check; the errata cite the literature for them.

The instances are NumPy float64 arrays built here (the audit is a report
on fixed cases, not a library entry point). What the tutorial computes is
transcribed in ``refmaml.tutorial``; the correct results come from the
models and ``meta_value_and_grad``.
"""

import ast
import textwrap
from dataclasses import dataclass, field

import numpy as np

from . import _text, check, tutorial
from .maml import adapt, meta_value_and_grad
from .models import logistic, softmax

VERDICTS = ("correct", "wrong", "ambiguous", "incomplete")
ERRATA = "derivations/seed-errata.md"

# Agreement thresholds, relative errors (D4): a complex-step reference is exact to
# rounding, so an identity holds when it agrees to 1e-12; central differences keep
# about two thirds of the digits, so an identity holds when they agree to 1e-6.
# A claim is shown wrong when it misses the reference by more than WRONG (10%).
EXACT = 1e-12
CENTRAL = 1e-6
WRONG = 0.1

# The listing of the tutorial's section 5.3, verbatim (comments translated).
LISTING = '''\
def maml(model, optimizer, train_loader, val_loader, meta_lr, inner_lr, meta_batch_size, num_iterations):
    for iteration in range(num_iterations):
        # sample a batch of tasks
        meta_train_data = [next(iter(train_loader)) for _ in range(meta_batch_size)]
        meta_val_data = [next(iter(val_loader)) for _ in range(meta_batch_size)]

        # initialise the meta-gradient
        optimizer.zero_grad()
        meta_loss = 0.0

        for train_data, val_data in zip(meta_train_data, meta_val_data):
            # split support set and query set
            inputs, targets = train_data
            val_inputs, val_targets = val_data

            # inner loop: gradient update on the support set
            inner_optimizer = optim.SGD(model.parameters(), lr=inner_lr)
            inner_loss = nn.CrossEntropyLoss()(model(inputs), targets)
            inner_loss.backward()
            inner_optimizer.step()

            # outer loop: loss on the query set and meta-update
            val_loss = nn.CrossEntropyLoss()(model(val_inputs), val_targets)
            meta_loss += val_loss

        meta_loss.backward()
        optimizer.step()

        # print the loss of this iteration
        print(f"Iteration {iteration}: Meta Loss = {meta_loss.item() / meta_batch_size}")
'''


@dataclass(frozen=True)
class Evidence:
    """What a check measured: ``values`` by name, ``shows`` as one line, and
    ``reproduced``: whether the numbers bear out the documented verdict."""

    shows: str
    reproduced: bool
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """One claim of the tutorial. ``id`` is the section and a letter (``"4.2c"``)."""

    id: str
    claim: str
    verdict: str
    correction: str
    check: object = None  # () -> Evidence, or None for claims the literature settles

    @property
    def section(self):
        return self.id.rstrip("abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Row:
    claim: Claim
    evidence: object  # Evidence or None

    @property
    def reproduced(self):
        return None if self.evidence is None else self.evidence.reproduced


def _rounding(error):
    """A relative error for the evidence: at rounding level (at most :data:`EXACT`) it reads
    "rounding", since its digits depend on the BLAS build; above, its value."""
    return "rounding" if error <= EXACT else f"{error:.0e}"


def _cosine(a, b):
    return float(np.vdot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- instances ---------------------------------------------------------------------------------

def linear_instance():
    """Section 4.2's model where it is defined: ``theta^T x`` in ``(0, 1)`` for every row.

    Returns ``theta (3,)``, ``X (12, 3)``, ``y (12,)`` float64.
    """
    rng = np.random.default_rng(4)
    X = rng.uniform(0.2, 1.0, (12, 3))
    theta = rng.uniform(0.05, 0.25, 3)
    y = rng.integers(0, 2, 12).astype(np.float64)
    z = X @ theta
    assert 0 < z.min() and z.max() < 1
    return theta, X, y


def logistic_tasks(T=3, n=10, m=10, d=4, seed=7):
    """``theta (d,)`` and ``T`` logistic tasks ``Xs (T, n, d)``, ``ys``, ``Xq (T, m, d)``, ``yq``."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=d), rng.normal(size=(T, n, d)), rng.integers(0, 2, (T, n)),
            rng.normal(size=(T, m, d)), rng.integers(0, 2, (T, m)))


def logistic_task(**kw):
    """``theta (d,)`` and one task ``Xs (n, d)``, ``ys``, ``Xq (m, d)``, ``yq``."""
    theta, *task = logistic_tasks(T=1, **kw)
    return (theta, *(a[0] for a in task))


@dataclass(frozen=True)
class CodeSetting:
    """The assumptions under which the section 5.3 listing is run (``derivations/seed-errata.md``).

    One binary problem: ``y = [w^T x + noise > 0]``, standard normal features,
    ``train_size`` rows behind ``train_loader``, ``val_size`` behind ``val_loader``;
    ``nn.Linear(d, 2)`` with its bias as a column of ones, initialised as PyTorch
    does, uniform on ``(-1/sqrt(d), 1/sqrt(d))``; the outer optimizer
    ``optim.SGD(lr=outer_lr)``; one iteration of the loop.
    """

    d: int = 4
    train_size: int = 40
    val_size: int = 40
    batch_size: int = 8
    meta_batch_size: int = 5
    inner_lr: float = 0.1
    outer_lr: float = 0.01
    seed: int = 5

    def data(self):
        """``theta0 (d+1, 2)``, ``(X_train, y_train)``, ``(X_val, y_val)`` with the bias column."""
        rng = np.random.default_rng(self.seed)
        w = rng.normal(size=self.d)

        def rows(n):
            X = rng.normal(size=(n, self.d))
            y = (X @ w + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
            return tutorial.with_bias_column(X), y

        train, val = rows(self.train_size), rows(self.val_size)
        bound = 1 / np.sqrt(self.d)
        theta0 = rng.uniform(-bound, bound, (self.d + 1, 2))
        return theta0, train, val

    def batches(self, shuffle):
        """The listing's ``meta_train_data`` and ``meta_val_data`` for one iteration."""
        theta0, train, val = self.data()
        rng = np.random.default_rng(self.seed + 1)
        kw = dict(batch_size=self.batch_size, count=self.meta_batch_size, shuffle=shuffle, rng=rng)
        return theta0, tutorial.first_batches(*train, **kw), tutorial.first_batches(*val, **kw)


SETTING = CodeSetting()


def stack(batches):
    """``[(X, y), ...]`` -> ``X (T, b, d)``, ``y (T, b)``."""
    return np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])


def maml_update(theta0, support, query, *, inner_lr, outer_lr, first_order=False):
    """The update MAML makes on the same pairs: ``-outer_lr`` times the exact
    meta-gradient of the summed query losses after one inner step (M5), (M6)."""
    loss, grad = meta_value_and_grad(theta0, *stack(support), *stack(query), inner_lr=inner_lr,
                                     inner_steps=1, model="softmax", reduction="sum",
                                     first_order=first_order)
    return float(loss), -outer_lr * grad


# --- checks, in the order of the tutorial --------------------------------------------------------

def check_maml_objective():
    """3.1: the objective's gradient, by complex step through ``sum_i L_q(theta - alpha grad L_s)``,
    is (M5) as ``meta_value_and_grad`` computes it, and first-order MAML is not."""
    theta, Xs, ys, Xq, yq = logistic_tasks()
    alpha = 0.5

    def objective(t):
        return sum(logistic.loss(t - alpha * logistic.grad(t, Xs[i], ys[i]), Xq[i], yq[i])
                   for i in range(Xs.shape[0]))

    reference = check.complex_step_gradient(objective, theta)
    _, exact = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=1, reduction="sum")
    _, fo = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=1, reduction="sum",
                                first_order=True)
    v = dict(exact=check.relative_error(exact, reference), first_order=check.relative_error(fo, reference))
    return Evidence(f"(M5) vs complex step of the objective: {_rounding(v['exact'])}; first-order: "
                    f"{v['first_order']:.2f}", v["exact"] <= EXACT and v["first_order"] > WRONG / 10, v)


def check_sum_over_examples():
    """3.2 step 2: a sum over examples is the mean's step at rate ``n alpha``."""
    theta, Xs, ys, Xq, yq = logistic_task()
    alpha, n = 0.5, Xs.shape[0]
    summed = sum(logistic.grad(theta, Xs[i:i + 1], ys[i:i + 1]) for i in range(n))
    with_sum = theta - alpha * summed
    with_mean = adapt(theta, Xs, ys, inner_lr=alpha, inner_steps=1)
    v = dict(n=n, identity=check.relative_error(with_sum, adapt(theta, Xs, ys, inner_lr=n * alpha,
                                                                  inner_steps=1)),
             step_ratio=float(np.linalg.norm(with_sum - theta) / np.linalg.norm(with_mean - theta)),
             query_mean=float(logistic.loss(with_mean, Xq, yq)),
             query_sum=float(logistic.loss(with_sum, Xq, yq)))
    ok = v["identity"] <= EXACT and abs(v["step_ratio"] - n) <= EXACT * n
    return Evidence(f"the sum's step is {v['step_ratio']:.1f} x the mean's: the mean's at "
                    f"{n} alpha, to {_rounding(v['identity'])}", ok, v)


def check_linear_cross_entropy():
    """4.1: with ``f = theta^T x`` the cross-entropy is undefined for most ``theta``."""
    rng = np.random.default_rng(1)
    X, y, theta = rng.normal(size=(200, 5)), rng.integers(0, 2, 200).astype(np.float64), rng.normal(size=5)
    z = X @ theta
    v = dict(outside=float(np.mean((z <= 0) | (z >= 1))),
             loss_random=float(tutorial.cross_entropy(theta, X, y, "linear")),
             loss_zero=float(tutorial.cross_entropy(np.zeros(5), X, y, "linear")))
    ok = v["outside"] > 0.5 and not np.isfinite(v["loss_random"]) and not np.isfinite(v["loss_zero"])
    return Evidence(f"{v['outside']:.0%} of theta^T x outside (0, 1); loss {v['loss_random']} at a "
                    f"random theta, {v['loss_zero']} at theta = 0", ok, v)


def check_cross_entropy_formula():
    """4.1: the cross-entropy itself is right when ``f`` is a probability: with the sigmoid it is (L2)."""
    rng = np.random.default_rng(2)
    X, y, theta = rng.normal(size=(50, 4)), rng.integers(0, 2, 50).astype(np.float64), rng.normal(size=4)
    v = dict(error=check.relative_error(np.asarray(tutorial.cross_entropy(theta, X, y, "sigmoid")),
                                        logistic.loss(theta, X, y)))
    return Evidence(f"with f = sigmoid(theta^T x) it equals (L2) to {_rounding(v['error'])}", v["error"] <= EXACT, v)


def gradient_line_errors(line):
    """Relative errors of section 4.2's ``line`` against central differences and the complex step
    of the loss it differentiates, for the linear and the sigmoid model."""
    theta, X, y = linear_instance()
    out = {}
    for f in tutorial.OUTPUTS:
        def loss(t, f=f):
            return tutorial.cross_entropy(t, X, y, f)

        g = tutorial.gradient_line(theta, X, y, line=line, f=f)
        out[f] = dict(central=check.relative_error(g, check.central_difference_gradient(loss, theta)),
                      complex=check.relative_error(g, check.complex_step_gradient(loss, theta)))
    return out


def _line_check(line, right_for):
    def run():
        errors = gradient_line_errors(line)
        ok = True
        for f, e in errors.items():
            if f in right_for:
                ok &= e["central"] <= CENTRAL and e["complex"] <= EXACT
            else:
                ok &= e["central"] > WRONG and e["complex"] > WRONG
        v = {f"{f}_{ref}": e[ref] for f, e in errors.items() for ref in e}
        shows = "vs central differences: " + ", ".join(f"{f} {e['central']:.1e}" for f, e in errors.items())
        return Evidence(shows, ok, v)

    run.__doc__ = f"4.2, line {line}: right for {right_for or 'neither model'}."
    return run


def check_simplified_gradient():
    """4.2, line 3: wrong for the linear model, and exactly (L4), the sigmoid model's gradient,
    which is also the gradient of the squared error of a linear ``f`` (E4)."""
    theta, X, y = linear_instance()
    line3 = tutorial.gradient_line(theta, X, y, line=3, f="linear")
    truth = tutorial.linear_model_gradient(theta, X, y)
    sigmoid_line3 = tutorial.gradient_line(theta, X, y, line=3, f="sigmoid")

    def squared(t):
        return 0.5 * np.mean((y - X @ t) ** 2)

    v = dict(vs_linear=check.relative_error(line3, truth),
             sigmoid_vs_L4=check.relative_error(sigmoid_line3, logistic.grad(theta, X, y)),
             linear_vs_squared=check.relative_error(line3, check.complex_step_gradient(squared, theta)))
    ok = v["vs_linear"] > WRONG and v["sigmoid_vs_L4"] <= EXACT and v["linear_vs_squared"] <= EXACT
    return Evidence(f"off the linear model's gradient by {v['vs_linear']:.2f}; equals (L4) with the "
                    f"sigmoid to {_rounding(v['sigmoid_vs_L4'])}", ok, v)


def check_first_order_meta_update():
    """4.3: the gradient of section 4.2 evaluated at ``theta'`` is first-order MAML (M8):
    off the exact meta-gradient (M5) by an amount proportional to ``alpha``."""
    theta, Xs, ys, Xq, yq = logistic_task()
    v = {}
    for name, alpha in (("alpha", 0.5), ("alpha_10", 0.05)):
        _, exact = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=1)
        _, fo = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=1, first_order=True)
        v[name] = check.relative_error(fo, exact)
        v[f"cosine_{name}"] = _cosine(fo, exact)
    v["ratio"] = v["alpha"] / v["alpha_10"]
    ok = v["alpha"] > WRONG and 5 < v["ratio"] < 20
    return Evidence(f"alpha = 0.5: off by {v['alpha']:.3f} (cosine {v['cosine_alpha']:.4f}); "
                    f"alpha = 0.05: {v['alpha_10']:.4f}", ok, v)


def check_one_output():
    """5: ``CrossEntropyLoss`` on ``nn.Linear(d, 1)`` is identically zero; with two outputs
    it is the binary model of the difference of the columns (S14)."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    one = max(abs(float(tutorial.cross_entropy_one_output(10 * rng.normal(size=3), X))) for _ in range(5))
    theta = rng.normal(size=(3, 2))
    two = check.relative_error(softmax.loss(theta, X, y), logistic.loss(theta[:, 1] - theta[:, 0], X, y))
    v = dict(one_output=one, two_outputs=two)
    return Evidence(f"1 output: loss {one} for every theta; 2 outputs: binary model to {_rounding(two)}",
                    one == 0.0 and two <= EXACT, v)


def _listing_function():
    return ast.parse(LISTING).body[0]


def unused_parameters():
    """Parameters of the listing's ``maml()`` that its body never reads."""
    fn = _listing_function()
    read = {node.id for node in ast.walk(fn) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return [a.arg for a in fn.args.args if a.arg not in read]


def calls_in_task_loop():
    """Method names called inside and outside the listing's loop over tasks."""
    fn = _listing_function()
    outer_loop = fn.body[0]
    task_loop = next(s for s in outer_loop.body if isinstance(s, ast.For))

    def calls(nodes):
        return [n.func.attr for s in nodes for n in ast.walk(s)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]

    inside = calls(task_loop.body)
    outside = calls([s for s in outer_loop.body if s is not task_loop])
    return inside, outside


def check_unused_meta_lr():
    """5.3, signature: ``meta_lr`` is never read."""
    unused = unused_parameters()
    return Evidence(f"parameters never read: {', '.join(unused) or 'none'}", unused == ["meta_lr"],
                    dict(unused=unused))


def check_task_sampling():
    """5.3, sampling: ``next(iter(loader))`` gives the same batch every time without shuffling."""
    v = {}
    for shuffle in (False, True):
        _, support, _ = SETTING.batches(shuffle)
        v[f"distinct_{'shuffle' if shuffle else 'no_shuffle'}"] = len({b[0].tobytes() for b in support})
    N = SETTING.meta_batch_size
    return Evidence(f"distinct batches among {N}: {v['distinct_no_shuffle']} unshuffled, "
                    f"{v['distinct_shuffle']} shuffled, all of one data set",
                    v["distinct_no_shuffle"] == 1 and v["distinct_shuffle"] == N, v)


def code_run(shuffle, inner_lr=None):
    """The listing's iteration under ``SETTING`` and the MAML update on the same pairs."""
    theta0, support, query = SETTING.batches(shuffle)
    rates = dict(inner_lr=SETTING.inner_lr if inner_lr is None else inner_lr, outer_lr=SETTING.outer_lr)
    return theta0, support, query, rates, tutorial.code_step(theta0, support, query, **rates)


def check_in_place_inner_step():
    """5.3, ``inner_optimizer.step()``: the meta-parameters themselves move; task ``j`` starts
    where task ``j-1`` ended."""
    theta0, _, _, _, step = code_run(False)
    drift = float(np.linalg.norm(step.trajectory[-2] - theta0) / np.linalg.norm(theta0))
    return Evidence(f"task {SETTING.meta_batch_size} starts {drift:.2f} (relative) away from theta",
                    drift > WRONG, dict(drift=drift))


def check_accumulated_inner_gradient():
    """5.3, ``inner_loss.backward()`` with no ``zero_grad()`` in the task loop: the inner step of
    task ``j`` uses ``g_1 + ... + g_j`` (E5)."""
    inside, outside = calls_in_task_loop()
    _, _, _, rates, step = code_run(False)
    last = float(np.linalg.norm(step.trajectory[-1] - step.trajectory[-2])
                 / (rates["inner_lr"] * np.linalg.norm(step.support_grads[-1])))
    v = dict(last_step_ratio=last, zero_grad_inside=inside.count("zero_grad"),
             backward_inside=inside.count("backward"), zero_grad_outside=outside.count("zero_grad"))
    ok = (v["zero_grad_inside"] == 0 and v["backward_inside"] == 1 and v["zero_grad_outside"] == 1
          and last > 2)
    return Evidence(f"no zero_grad() in the task loop; the last inner step is {last:.1f} x "
                    f"alpha ||g_{SETTING.meta_batch_size}||", ok, v)


def check_first_order_backward():
    """5.3, ``meta_loss.backward()``: the inner step ran under ``no_grad``, so even with copied
    parameters and a zeroed buffer the result would be first-order MAML (M8)."""
    theta0, support, query = SETTING.batches(False)
    rates = dict(inner_lr=SETTING.inner_lr, outer_lr=SETTING.outer_lr)
    _, exact = maml_update(theta0, support, query, **rates)
    _, fo = maml_update(theta0, support, query, first_order=True, **rates)
    v = dict(first_order=check.relative_error(fo, exact), cosine=_cosine(fo, exact))
    return Evidence(f"first-order MAML on these tasks is off by {v['first_order']:.3f} "
                    f"(cosine {v['cosine']:.4f})", v["first_order"] > WRONG / 10, v)


def compare_with_maml(shuffle):
    """The listing's update against MAML's on the same pairs, and against its closed form (E6)."""
    theta0, support, query, rates, step = code_run(shuffle)
    loss, true = maml_update(theta0, support, query, **rates)
    code = step.theta - theta0
    closed = tutorial.code_step_closed_form(theta0, support, query, **rates) - theta0
    return dict(relative_difference=check.relative_error(code, true), cosine=_cosine(code, true),
                norm_ratio=float(np.linalg.norm(code) / np.linalg.norm(true)),
                closed_form=check.relative_error(code, closed),
                outer_step_drift=float(np.linalg.norm(step.trajectory[-1] - theta0) / np.linalg.norm(code)),
                printed=step.printed, meta_loss=loss / SETTING.meta_batch_size)


def _update_check(shuffle):
    def run():
        v = compare_with_maml(shuffle)
        ok = v["relative_difference"] > 1 and v["closed_form"] <= EXACT
        return Evidence(f"vs MAML: rel. diff {v['relative_difference']:.1f}, cosine {v['cosine']:.3f}, "
                        f"norm ratio {v['norm_ratio']:.1f}; = (E6) to {_rounding(v['closed_form'])}", ok, v)

    run.__doc__ = f"5.3, the whole update, loaders with shuffle={shuffle}."
    return run


def check_outer_step_point():
    """5.3, ``optimizer.step()``: applied at ``theta_N``, so most of the update is inner-loop drift."""
    v = compare_with_maml(False)
    return Evidence(f"||theta_N - theta|| is {v['outer_step_drift']:.2f} of the whole update",
                    v["outer_step_drift"] > 0.5, dict(outer_step_drift=v["outer_step_drift"]))


def check_no_inner_rate():
    """5.3 at ``inner_lr = 0``: the update is plain gradient descent on support plus query (E7)."""
    theta0, support, query, rates, step = code_run(False, inner_lr=0.0)
    joint = -rates["outer_lr"] * sum(softmax.grad(theta0, *s) + softmax.grad(theta0, *q)
                                     for s, q in zip(support, query, strict=True))
    v = dict(error=check.relative_error(step.theta - theta0, joint))
    return Evidence(f"alpha = 0: -beta sum(grad L_s + grad L_q)(theta) to {_rounding(v['error'])}",
                    v["error"] <= EXACT, v)


def check_printed_loss():
    """5.3, the print: the mean query loss at the drifted parameters, not the meta-loss at theta."""
    v = compare_with_maml(False)
    v = dict(printed=v["printed"], meta_loss=v["meta_loss"])
    return Evidence(f"prints {v['printed']:.4f}; the meta-loss at theta is {v['meta_loss']:.4f}",
                    abs(v["printed"] - v["meta_loss"]) > WRONG * v["meta_loss"], v)


# --- the claims ------------------------------------------------------------------------------

HOSPEDALES = "Hospedales et al. 2021"
FINN = "Finn et al. 2017"

CLAIMS = [
    Claim("1.1a", "scarce labels defeat conventional learners", "correct", "Wang et al. 2020"),
    Claim("1.2a", "meta-learning: many tasks teach fast learning", "correct",
          f"Thrun & Pratt 1998; {HOSPEDALES}"),
    Claim("1.3a", "'All You Need is Mapping' is a key concept", "wrong",
          "seed-errata.md 1.3a"),
    Claim("2.1a", "paradigms: model-, metric-, optimization-based", "correct",
          f"{HOSPEDALES}; Huisman et al. 2021"),
    Claim("2.1b", "model-based methods learn an initialization", "wrong",
          "Santoro et al. 2016; Munkhdalai & Yu 2017"),
    Claim("2.1c", "metric-based: a performance metric, e.g. MAML", "wrong",
          f"Snell et al. 2017; Vinyals et al. 2016; {FINN}"),
    Claim("2.1d", "optimization-based = learned optimizers (L2O)", "incomplete",
          f"Andrychowicz et al. 2016; {FINN}"),
    Claim("2.2a", "f* = argmin_f L(f(D_train), D_test), new task", "ambiguous",
          "seed-errata.md 2.2a"),
    Claim("2.2b", "f is learned on meta-training tasks T_1..T_n", "correct", f"{HOSPEDALES}"),
    Claim("3.0a", "all meta-learning learns an initialization", "wrong", f"{HOSPEDALES}"),
    Claim("3.1a", "inner step theta' = theta - alpha grad L", "correct", f"maml.md (M2); {FINN}"),
    Claim("3.1b", "objective sum_i L_i(theta - alpha grad L_i)", "correct", "maml.md (M5)",
          check_maml_objective),
    Claim("3.1c", "support gradient, query loss, optimize theta", "correct",
          f"{FINN} Alg. 1"),
    Claim("3.2a", "sample tasks, split each into support/query", "correct", f"{FINN} Alg. 1"),
    Claim("3.2b", "inner gradient of a sum over examples", "ambiguous", "logistic.md (L2); maml.md (M2)",
          check_sum_over_examples),
    Claim("3.2c", "meta-update theta -= beta grad sum_i L_i(theta_i')", "correct",
          "maml.md (M4)-(M6)"),
    Claim("3.2d", "repeat steps 1-3 until convergence", "correct", f"{FINN} Alg. 1"),
    Claim("4.1a", "binary model f_theta(x) = theta^T x", "wrong", "logistic.md (L1)",
          check_linear_cross_entropy),
    Claim("4.1b", "cross-entropy -E[y log f + (1-y) log(1-f)]", "correct", "logistic.md (L2)",
          check_cross_entropy_formula),
    Claim("4.2a", "line 1: -E[y/f f' - (1-y)/(1-f) (1-f)']", "wrong", "seed-errata.md (E2)",
          _line_check(1, ())),
    Claim("4.2b", "line 2: -E[(y/f - (1-y)/(1-f)) x]", "correct", "seed-errata.md (E3)",
          _line_check(2, ("linear",))),
    Claim("4.2c", "grad f = x for the linear model", "correct", "seed-errata.md (E3)"),
    Claim("4.2d", "line 3 (simplified): -E[(y - f) x]", "wrong", "logistic.md (L4); seed-errata.md (E4)",
          check_simplified_gradient),
    Claim("4.3a", "inner step with the gradient of 4.2", "ambiguous", "logistic.md (L4)"),
    Claim("4.3b", "meta-update: the gradient of 4.2 at theta'", "incomplete", "maml.md (M5), (M8)",
          check_first_order_meta_update),
    Claim("5.0a", "a binary problem with CrossEntropyLoss", "ambiguous", "softmax.md (S14)",
          check_one_output),
    Claim("5.1a", "imports", "correct", "PyTorch documentation"),
    Claim("5.2a", "LinearModel returns logits of nn.Linear", "correct", "softmax.md (S1)"),
    Claim("5.3a", "maml(..., meta_lr, ...) signature", "wrong", "seed-errata.md 5.3a", check_unused_meta_lr),
    Claim("5.3b", "tasks = [next(iter(loader)) ...]", "wrong", "seed-errata.md 5.3b", check_task_sampling),
    Claim("5.3c", "'split support and query sets'", "wrong", "seed-errata.md 5.3c"),
    Claim("5.3d", "inner SGD on model.parameters()", "wrong", "maml.md (M2)", check_in_place_inner_step),
    Claim("5.3e", "inner_loss.backward() per task", "wrong", "seed-errata.md (E5)",
          check_accumulated_inner_gradient),
    Claim("5.3f", "meta_loss.backward() gives the meta-gradient", "wrong", "maml.md (M5), (M8)",
          check_first_order_backward),
    Claim("5.3g", "optimizer.step() is the meta-update", "wrong", "seed-errata.md (E6)",
          check_outer_step_point),
    Claim("5.3h", "the update (loaders not shuffled)", "wrong", "seed-errata.md (E6)", _update_check(False)),
    Claim("5.3i", "the update (loaders shuffled)", "wrong", "seed-errata.md (E6)", _update_check(True)),
    Claim("5.3j", "the update without inner step (alpha = 0)", "wrong", "seed-errata.md (E7)",
          check_no_inner_rate),
    Claim("5.3k", "printed 'Meta Loss'", "ambiguous", "maml.md (M3)", check_printed_loss),
    Claim("5.3l", "the text after the listing (truncated)", "incomplete", "seed-errata.md 5.3l"),
]


def run(claims=None):
    """Run every check; returns one ``Row`` per claim, in the tutorial's order."""
    claims = CLAIMS if claims is None else claims
    return [Row(c, c.check() if c.check is not None else None) for c in claims]


def format_table(rows, width=100):
    """The audit as plain text at most ``width`` columns wide: one line per claim (item, that is
    section and letter, claim, verdict, whether the check reproduced it), then, indented under
    it, the evidence of the check and the correction (files are in ``derivations/``)."""
    header = ("item", "claim", "verdict", "checked")
    body = [(r.claim.id, r.claim.claim, r.claim.verdict, {None: "-", True: "yes", False: "NO"}[r.reproduced])
            for r in rows]
    lines = _text.table(header, body, ragged=True).split("\n")
    indent = " " * (max(len(line[0]) for line in [header, *body]) + 2)
    out = lines[:2]
    for r, line in zip(rows, lines[2:], strict=True):
        out.append(line)
        for name, text in (("evidence", r.evidence.shows if r.evidence is not None else None),
                           ("correction", r.claim.correction)):
            if text:
                out += textwrap.wrap(text, width, initial_indent=f"{indent}{name + ':':<12}",
                                     subsequent_indent=indent + " " * 12, break_on_hyphens=False)
    return "\n".join(out)
