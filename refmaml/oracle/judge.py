"""Judging another implementation: agreement with the truth, and which known bug it matches."""

import json
from dataclasses import dataclass, field

import numpy as np

from .. import models as _models_pkg
from . import answers, cases as _cases
from .answers import DIAGNOSES, Answer

# Relative error (D4) that still counts as agreement, by the dtype the implementation computes in.
# A correct float64 implementation agrees with refmaml to about 1e-14 on these cases (other
# summation orders, K <= 5 steps); a correct float32 one to about 1e-6, computing from the same
# float32-rounded inputs the truth is computed from. The margins are generous, and still far
# below the gaps between the truth and every diagnosed bug on the diagnostic cases (at least 1e-2,
# ``derivations/oracle.md`` (O7)).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}

# The verdicts besides the named bugs, decided before them: "interface", then "unstable".
VERDICTS = ("interface", "unstable") + DIAGNOSES + ("unknown",)

# The conditions ``failing_only_when`` chooses from, in this order, and what each says of a case.
CONDITIONS = ("inner_steps>=1", "inner_steps>=2", "tasks>=2", "l2>0", "saturated", "one_example", "lr_array")

# float32's rounding band for the relative error (D4) of a whole answer: its unit roundoff is
# 2^-24 = 6.0e-8; a float32 computation of these cases errs by about 1e-8 to 1e-5 (accumulated
# over K <= 5 steps), a float64 one by at most about 1e-14.
FLOAT32_BAND = (1e-9, 1e-4)

MESSAGES = {
    "l2_on_query": (
        "the query loss carries the ridge term too: the meta-loss is the mean of L_q(theta_K) + "
        "(l2/2)||theta_K||^2",
        "the same regularised loss function used for the inner steps and for the meta-loss",
        "regularise the support loss only; the meta-loss is the plain query loss (maml.md (M3), oracle.md (O9))"),
    "l2_without_half": (
        "the support loss's ridge term is l2 ||theta||^2 instead of (l2/2)||theta||^2: its gradient is "
        "2 l2 theta",
        "the ridge term written without the 1/2 (or weight decay of 2 l2)",
        "add (l2/2)||theta||^2, whose gradient is l2 theta (logistic.md, oracle.md (O9))"),
    "hessian_at_last_iterate": (
        "every reverse step multiplies by (I - alpha H_s(theta_K)), the support Hessian at the last "
        "iterate, instead of at the iterate theta_k of that step",
        "the Hessian-vector products of the backward pass evaluated at the adapted parameters, not at "
        "the stored trajectory",
        "keep the trajectory theta_0..theta_K and take step k's Hessian at theta_k (maml.md (M6), "
        "oracle.md (O10))"),
    "first_order": (
        "the meta-gradient is first-order MAML: the Hessian terms (I - alpha H) of the inner steps are "
        "missing",
        "the inner gradients were computed without keeping their graph (in PyTorch, torch.autograd.grad "
        "without create_graph=True, or parameters updated through .data, detach() or an optimizer's step)",
        "differentiate through the inner loop: grad(..., create_graph=True) and adapted parameters that "
        "are functions of theta (maml.md (M5)-(M6))"),
    "drift": (
        "each task starts from the parameters the previous task ended with, not from theta",
        "the adapted parameters were written back into the model (an in-place update, or theta = theta_K "
        "inside the loop over tasks)",
        "start every task's inner loop from the same theta; keep adapted parameters in a separate, "
        "per-task variable (maml.md (M2))"),
    "sum_over_tasks": (
        "the meta-loss and its gradient are sums over tasks where refmaml takes the mean",
        "the query losses were added up over the batch and not divided by the number of tasks",
        "divide by the number of tasks, or compare with reduction='sum' (maml.md (M3)-(M4))"),
    "sum_over_examples": (
        "losses are sums over examples where refmaml takes the mean: the inner step is n times too long, "
        "or the query loss m times too large",
        "a loss with reduction='sum' (or a sum written out) in the support or query loss",
        "average over examples (reduction='mean'); a summed support loss at rate alpha is the mean at "
        "rate n * alpha (logistic.md (L2), seed-errata.md 3.2b)"),
    "steps_minus_one": (
        "the inner loop takes K - 1 steps instead of K",
        "an off-by-one in the inner loop (range(1, K), or the first step taken outside the loop and "
        "counted twice)",
        "take exactly inner_steps gradient steps (maml.md (M2))"),
    "steps_plus_one": (
        "the inner loop takes K + 1 steps instead of K",
        "an off-by-one in the inner loop (range(K + 1), or an extra step before the loop)",
        "take exactly inner_steps gradient steps (maml.md (M2))"),
    "inner_on_query": (
        "the inner steps use the query set instead of the support set",
        "support and query swapped in the inner loop",
        "adapt on (Xs, ys), evaluate the meta-loss on (Xq, yq) (maml.md (M1)-(M3))"),
    "meta_loss_on_support": (
        "the meta-loss is evaluated on the support set instead of the query set",
        "support and query swapped in the outer loss",
        "evaluate the adapted parameters on (Xq, yq) (maml.md (M3))"),
    "lr_no_grad": (
        "the learned inner learning rate receives no gradient (it comes back as zero)",
        "the rate is not part of the graph: a Python float, a tensor without requires_grad, or one the "
        "inner update detaches",
        "make the rates a differentiable parameter used in the inner step; its gradient is "
        "-g_{k+1} * grad L_s(theta_k), summed over steps (variants.md (V3)-(V4))"),
    "tutorial_code": (
        "the implementation behaves like the seed tutorial's code: in-place inner steps with an optimizer "
        "on the model's own parameters and a gradient buffer that is never zeroed between tasks",
        "optim.SGD(model.parameters()) and loss.backward() inside the loop over tasks, as in the tutorial's "
        "listing",
        "see derivations/seed-errata.md, items 5.3d-5.3j: copy the parameters per task, differentiate "
        "with create_graph=True, and zero the gradients before the outer step"),
}


@dataclass(frozen=True)
class CaseResult:
    """One case of a check: errors against the truth (D4), whether it passed, and which bugs'
    answers it matches (``matches``; ``matched`` is the one key, or ``"unknown"``).

    ``kind`` says what went wrong before any comparison: ``""``, ``"raised"`` (``fn`` raised),
    ``"interface"`` (a wrong number, type or shape of returned values), ``"float32"`` (float32
    answers in a float64 check) or ``"nonfinite"`` (NaN or infinity returned). ``conditions``:
    the names of ``CONDITIONS`` that hold for the case; ``largest_logit``: the largest ``|X theta_k|``
    over its iterates (linear networks; None otherwise)."""

    name: str
    loss_error: float
    grad_error: float
    lr_grad_error: object  # float, or None when rates were not checked
    passed: bool
    matches: tuple
    diagnostic: bool
    failure: str = ""  # what went wrong before any comparison (an exception, a wrong shape)
    kind: str = ""
    conditions: tuple = ()
    largest_logit: object = None

    @property
    def matched(self):
        if self.passed:
            return None
        return self.matches[0] if len(self.matches) == 1 else "unknown"


@dataclass(frozen=True)
class Report:
    """``passed``; ``diagnosis`` (None, or one of ``VERDICTS``, or ``"incomplete"`` for a results
    file that agrees but leaves out cases); ``message``; ``cases`` (one :class:`CaseResult` each);
    ``tolerance``; ``dtype``; ``localization`` (see :func:`localize`); ``missing`` (ids of cases a
    results file should have answered); ``ran`` (which cases ran, in words); ``named`` (the bugs the
    check could name)."""

    passed: bool
    diagnosis: object
    message: str
    cases: list
    tolerance: float
    dtype: str
    localization: dict = field(default_factory=dict)
    missing: tuple = ()
    ran: str = ""
    named: tuple = DIAGNOSES

    def __str__(self):
        return format_report(self)


def _relative(a, b):
    """(D4), with a reference of zero giving 0 for an exact zero and infinity otherwise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return np.inf
    diff, scale = float(np.linalg.norm(a - b)), float(np.linalg.norm(b))
    if scale == 0:
        return 0.0 if diff == 0 else np.inf
    return diff / scale


def errors(produced, reference):
    """``(loss, grad, lr_grad)`` relative errors; the last is None if either side has no rate gradient."""
    lr = None
    if produced.lr_grad is not None and reference.lr_grad is not None:
        lr = _relative(produced.lr_grad, reference.lr_grad)
    return _relative(produced.loss, reference.loss), _relative(produced.grad, reference.grad), lr


def _agree(errs, tol):
    return all(e is None or e <= tol for e in errs)


def conditions(case, rate):
    """The names of ``CONDITIONS`` that hold for ``case`` run with ``rate``."""
    n, m = case.Xs.shape[1], case.Xq.shape[1]
    holds = (case.inner_steps >= 1, case.inner_steps >= 2, case.T >= 2, case.l2 > 0,
             "saturated" in case.tags, n == 1 or m == 1, case.rates)
    return tuple(c for c, h in zip(CONDITIONS, holds, strict=True) if h)


def largest_logit(case, rate):
    """``max |X theta_k|`` over the support iterates and the query at ``theta_K`` (linear networks)."""
    if not _models_pkg.get(case.model).linear:
        return None
    path = answers.trajectory(case, rate)
    out = 0.0
    for t in range(case.T):
        for k in range(case.inner_steps + 1):
            out = max(out, float(np.max(np.abs(case.Xs[t] @ path[k, t]))))
        out = max(out, float(np.max(np.abs(case.Xq[t] @ path[-1, t]))))
    return out


def _finite(answer):
    parts = [answer.loss, answer.grad] + ([] if answer.lr_grad is None else [answer.lr_grad])
    return all(np.all(np.isfinite(np.asarray(p, dtype=np.float64))) for p in parts)


def _matches(produced, options, right, tol):
    """Whether ``produced`` is one of a bug's ``options``: in full, or (gradient-only matching) with
    the right meta-loss and the bug's gradients."""
    loss_right = errors(produced, right)[0] <= tol
    for o in options:
        errs = errors(produced, o)
        if _agree(errs, tol) or (loss_right and _agree(errs[1:], tol)):
            return True
    return False


def judge(case, rate, produced, *, tol, lr_grad):
    """Compare ``produced`` (an :class:`Answer`) with the truth of ``case``; if it disagrees,
    with every diagnosed bug's answers (in full, or with the right loss and a bug's gradients)."""
    right = answers.truth(case, rate)
    errs = errors(produced, right)
    if lr_grad and errs[2] is None:
        errs = errs[:2] + (np.inf,)
    passed = _agree(errs, tol)
    matches, kind, logit = (), "", None
    if not passed and not _finite(produced):
        kind, logit = "nonfinite", largest_logit(case, rate)
    elif not passed:
        matches = tuple(key for key, options in answers.wrong(case, rate, lr_grad=lr_grad).items()
                        if _matches(produced, options, right, tol))
    return CaseResult(case.id, errs[0], errs[1], errs[2] if lr_grad else None, passed, matches,
                      case.diagnostic, kind=kind, conditions=conditions(case, rate), largest_logit=logit)


def localize(results, *, tol, lr_grad):
    """Where an implementation is wrong, from its case results (the keys of ``Report.localization``):
    ``loss_agrees``, ``grad_agrees``, ``lr_grad_agrees`` (None without rates), ``failing_only_when``,
    ``nonfinite``, ``raised``."""
    def agree(attr, r):
        e = getattr(r, attr)
        return r.passed or e is None or e <= tol   # None: no rate gradient on this case (a results file)

    failing = [r for r in results if not r.passed]
    only = [c for c in CONDITIONS
            if failing and all(c in r.conditions for r in failing) and any(c not in r.conditions for r in results)]
    return {
        "loss_agrees": all(agree("loss_error", r) for r in results),
        "grad_agrees": all(agree("grad_error", r) for r in results),
        "lr_grad_agrees": all(agree("lr_grad_error", r) for r in results) if lr_grad else None,
        "failing_only_when": only,
        "nonfinite": [r.name for r in results if r.kind == "nonfinite"],
        "raised": [r.name for r in results if r.kind == "raised"],
    }


def _float32_band(results):
    """Every case's loss and gradient errors within ``FLOAT32_BAND`` on most cases and below its top
    on all: what float32 answers look like against float64 truth."""
    if not results or any(r.kind for r in results):
        return False
    lo, hi = FLOAT32_BAND
    if any(max(r.loss_error, r.grad_error, r.lr_grad_error or 0.0) > hi for r in results):
        return False
    inside = sum(r.loss_error >= lo and r.grad_error >= lo for r in results)
    return inside >= len(results) / 2


def diagnose(results, dtype="float64", named=DIAGNOSES):
    """The verdict, in this order: ``"interface"``, ``"unstable"``, the one bug every failing case
    agrees with (the diagnostic cases decide when they fail), ``"unknown"``; ``None`` when
    everything passed."""
    failing = [r for r in results if not r.passed]
    if not failing:
        return None
    if any(r.kind in ("interface", "float32") for r in failing) or all(r.kind == "raised" for r in results):
        return "interface"
    if dtype == "float64" and _float32_band(results):
        return "interface"
    if any(r.kind == "nonfinite" for r in failing):
        return "unstable"
    pool = [r for r in failing if r.diagnostic] or failing
    common = set(named)
    for r in pool:
        common &= set(r.matches)
    return common.pop() if len(common) == 1 else "unknown"


def _ids(names, limit=4):
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


HINTS = {  # what a failure confined to one kind of case points at, most specific first
    "inner_steps>=2": "only cases with K >= 2 inner steps fail: look at state carried between inner steps "
                      "(an inner gradient computed once and reused, a buffer or optimizer state not reset, "
                      "the Hessian of the wrong step)",
    "inner_steps>=1": "only cases with at least one inner step fail: look at the inner loop and at what the "
                      "meta-gradient does through it",
    "tasks>=2": "only cases with several tasks fail: look at state carried between tasks (parameters or "
                "gradients not reset, a reduction over the batch)",
    "l2>0": "only cases with l2 > 0 fail: look at the ridge term; refmaml's support loss carries "
            "(l2/2)||theta||^2 (gradient l2 theta, Hessian l2 I) and the query loss none",
    "saturated": "only the saturated cases fail: look at numerical stability (losses through softplus or "
                 "log-sum-exp, not log(sigmoid(z)) or log(softmax(z)))",
    "one_example": "only the cases with one example per set fail: look at shapes that collapse when n = 1 "
                   "(a squeeze(), a mean over the wrong axis)",
    "lr_array": "only the cases with one rate per parameter fail: apply the rate elementwise and return its "
                "gradient in the rate's shape (variants.md (V3)-(V4))",
}


def _unknown(results, loc, tol):
    failing = [r for r in results if not r.passed]
    worst = sorted(failing, key=lambda r: -max(r.grad_error, r.loss_error))[:3]
    listing = "; ".join(f"{r.name}: loss {r.loss_error:.1e}, gradient {r.grad_error:.1e}"
                        + (f" ({r.failure})" if r.failure else "") for r in worst)
    parts = [f"they match none of the known bugs. Worst: {listing}."]
    raised = [r for r in results if r.kind == "raised"]
    if raised:
        parts.append(f"fn raised on {len(raised)} cases ({_ids(loc['raised'])}).")
        if len(raised) == len(failing):
            parts.append("Every failing case raised: fix the exception first.")
        if all("inner_steps>=1" not in r.conditions for r in raised):
            parts.append("Every case that raised has K = 0 inner steps, where the meta-gradient is the query "
                         "gradient at theta and the rate takes no part: an autograd call must accept an input "
                         "the graph does not use (PyTorch: allow_unused=True, and a zero gradient for it).")
    only = [c for c in loc["failing_only_when"]
            if not (c == "inner_steps>=1" and "inner_steps>=2" in loc["failing_only_when"])]
    # the most specific first: the condition that holds for the fewest cases run
    for c in sorted(only, key=lambda c: sum(c in r.conditions for r in results)):
        parts.append(HINTS[c][0].upper() + HINTS[c][1:] + ".")
    # what the cases that did not raise show (an exception is no evidence about the formulas)
    answered = localize([r for r in results if r.kind != "raised"], tol=tol,
                        lr_grad=loc["lr_grad_agrees"] is not None)
    where = " that did not raise" if raised else ""
    if len(raised) < len(failing):
        if answered["loss_agrees"] and not answered["grad_agrees"]:
            parts.append(f"The meta-loss agrees on every case{where}; only the meta-gradient differs: the forward "
                         "pass is right, look at the backward pass (the reverse steps g <- g - alpha H_s(theta_k) g: "
                         "their sign, the rate, the point each Hessian is taken at; maml.md (M6)).")
        elif answered["loss_agrees"] and answered["grad_agrees"] and answered["lr_grad_agrees"] is False:
            parts.append(f"The meta-loss and meta-gradient agree on every case{where}; only the rate gradient "
                         "differs: it is -g_{k+1} * grad L_s(theta_k) summed over steps (variants.md (V3)-(V4)).")
        elif not only and not answered["loss_agrees"]:
            parts.append("Check the conventions first: mean over examples and over tasks, l2 on the support "
                         "loss only, labels 0/1 (logistic) or class indices (softmax), theta of shape (d,) or (d, C).")
    return " ".join(parts)


def explain(diagnosis, results, tol, loc=None):
    failing = [r for r in results if not r.passed]
    if diagnosis is None:
        return f"all {len(results)} cases agree with refmaml to {tol:.0e} (relative)"
    if loc is None:
        loc = localize(results, tol=tol, lr_grad=any(r.lr_grad_error is not None for r in results))
    head = f"{len(failing)} of {len(results)} cases disagree with refmaml (tolerance {tol:.0e} relative)"
    if diagnosis == "interface":
        return f"{head}: fn's answers do not have the form the check needs: {_interface(results)}"
    if diagnosis == "unstable":
        bad = [r for r in results if r.kind == "nonfinite"]
        logits = ", ".join(f"{r.name} (largest logit {r.largest_logit:.1f})" if r.largest_logit is not None
                           else r.name for r in bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        return (f"{head}: fn returned NaN or infinity on {len(bad)} cases whose right answer is finite: "
                f"{logits}. The loss is computed in a numerically unstable form: write it with softplus "
                "(log(1 + exp(z)) = logaddexp(0, z); binary_cross_entropy_with_logits) and log-sum-exp "
                "(log_softmax, cross_entropy on logits), never log(sigmoid(z)) or log(softmax(z)).")
    if diagnosis == "unknown":
        return f"{head}, and {_unknown(results, loc, tol)}"
    what, cause, fix = MESSAGES[diagnosis]
    return f"{head}: {what}. Likely cause: {cause}. Fix: {fix}."


def _interface(results):
    for kind in ("interface", "float32"):
        bad = [r for r in results if r.kind == kind]
        if bad:
            extra = (" Compute in float64, or check a float32 implementation with dtype=\"float32\" "
                     "(tolerance 1e-4)." if kind == "float32" else "")
            return f"on {len(bad)} cases ({_ids(r.name for r in bad)}), {bad[0].failure}.{extra}"
    raised = [r for r in results if r.kind == "raised"]
    if raised and len(raised) == len(results):
        return f"fn raised on every case: {raised[0].failure}."
    lo, hi = FLOAT32_BAND
    return (f"every case's relative errors lie in float32's rounding band ({lo:.0e} to {hi:.0e}; float32's "
            "unit roundoff is 6e-8): the answers were computed in float32. Compute in float64, or check "
            "with dtype=\"float32\".")


class _Interface(Exception):
    """fn's return value has the wrong form: a finding about its interface."""

    def __init__(self, message, kind="interface"):
        super().__init__(message)
        self.kind = kind


def _as_float64(x, name):
    """NumPy, or anything ``np.asarray`` takes; CPU tensors of PyTorch are detached first. Returns
    the array and the dtype it came with (its name)."""
    if x is None:
        return None, ""
    for method in ("detach", "cpu"):
        if hasattr(x, method):
            x = getattr(x, method)()
    dtype = str(getattr(x, "dtype", ""))
    try:
        return np.asarray(x, dtype=np.float64), dtype
    except (TypeError, ValueError) as exc:
        raise _Interface(f"{name} could not be read as an array of numbers: {exc}") from None


def _low_precision(dtype):
    return any(p in dtype for p in ("float32", "float16", "bfloat16"))


def _call(fn, case, rate, dtype, *, l2, lr_grad):
    args = [case.theta.astype(dtype), case.Xs.astype(dtype), case.ys.copy(), case.Xq.astype(dtype),
            case.yq.copy()]
    if _models_pkg.get(case.model).targets == "real":
        args[2], args[4] = args[2].astype(dtype), args[4].astype(dtype)
    kw = dict(inner_lr=np.asarray(rate, dtype=dtype) if lr_grad else float(rate),
              inner_steps=case.inner_steps)
    if l2:
        kw["l2"] = case.l2
    try:
        out = fn(*args, **kw)
    except Exception as exc:  # the implementation's failure is a finding, not a crash of the check
        raise _Interface(f"{type(exc).__name__}: {exc}", "raised") from None
    expected = "(meta_loss, meta_grad, inner_lr_grad)" if lr_grad else "(meta_loss, meta_grad)"
    if not isinstance(out, (tuple, list)) or len(out) != (3 if lr_grad else 2):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        raise _Interface(f"fn must return {expected}; got {got}")
    loss, loss_dtype = _as_float64(out[0], "meta_loss")
    if loss is None or loss.shape != ():
        raise _Interface(f"meta_loss must be a scalar; got shape {None if loss is None else loss.shape}")
    grad, grad_dtype = _as_float64(out[1], "meta_grad")
    if grad is None or grad.shape != case.theta.shape:
        raise _Interface(f"meta_grad expected with shape {case.theta.shape} and dtype {dtype} (theta's); "
                         f"received shape {None if grad is None else grad.shape} and dtype {grad_dtype or '-'}")
    rate_grad, rate_dtype = _as_float64(out[2], "inner_lr_grad") if lr_grad else (None, "")
    if lr_grad and rate_grad is None:
        rate_grad = np.zeros(np.shape(rate))
    if lr_grad and rate_grad.shape != np.shape(rate):
        raise _Interface(f"inner_lr_grad expected with shape {np.shape(rate)} (inner_lr's) and dtype {dtype}; "
                         f"received shape {rate_grad.shape} and dtype {rate_dtype or '-'}")
    if dtype == "float64":
        low = [(n, d) for n, d in (("meta_loss", loss_dtype), ("meta_grad", grad_dtype),
                                   ("inner_lr_grad", rate_dtype)) if _low_precision(d)]
        if low:
            raise _Interface(f"{low[0][0]} has dtype {low[0][1]} in a float64 check (received float32 "
                             "answers; expected float64)", "float32")
    return Answer(float(loss), grad, rate_grad)


def _steps(steps):
    """The numbers of inner steps to check: a non-empty selection of ``cases.STEPS``."""
    try:
        chosen = tuple(steps)
    except TypeError:
        raise TypeError(f"steps must be a sequence of step counts from {_cases.STEPS}; "
                        f"got {steps!r}") from None
    if isinstance(steps, (str, bytes)) or not chosen or any(
            isinstance(k, bool) or k not in _cases.STEPS for k in chosen):
        raise ValueError(f"steps must be a non-empty selection of {_cases.STEPS}; got {steps!r}")
    return chosen


def _models(model):
    """``model`` as the tuple of registered names it stands for (or the one network)."""
    if not isinstance(model, str) and hasattr(model, "spec"):  # a model object
        spec = model.spec()
        return (spec["model"],) if spec["model"] in _cases.MODELS else (model,)
    if model == "both":
        return _cases.MODELS[:2]
    if model not in _cases.MODELS:
        raise ValueError(f"model must be 'logistic', 'softmax', 'both', 'linear' or a network (a "
                         f"refmaml.models.MLP or Sequential); "
                     f"got {model!r}")
    return (model,)


def _named(l2, lr_grad):
    """The bugs a check with these options can name: the ridge bugs need l2 > 0, lr_no_grad rates."""
    return tuple(k for k in DIAGNOSES
                 if (l2 or k not in answers.RIDGE) and (lr_grad or k != "lr_no_grad"))


SEPARATION = 1e-2  # (O7), (O11): the gap a bug needs on the diagnostic cases to be named


def separation(chosen, *, lr_grad):
    """``{bug: gap}``: for each bug, the smallest over the diagnostic cases among ``chosen`` of its
    distance from the truth and from every other bug, by the gradients alone (O11). For the
    registered models (O7)/(O11) are asserted by the tests; for a network they are measured here,
    when its cases are built."""
    gaps = {}
    for case in chosen:
        if not case.diagnostic:
            continue
        rate = case.rate(lr_grad)
        options = [("truth", answers.truth(case, rate))]
        options += [(k, a) for k, found in answers.wrong(case, rate, lr_grad=lr_grad).items() for a in found]
        for k1, a in options:
            if k1 == "truth":
                continue
            for k2, b in options:
                if k2 != k1:
                    gap = max(e for e in errors(a, b)[1:] if e is not None)
                    gaps[k1] = min(gaps.get(k1, np.inf), gap)
    return gaps


_NETWORK_CASES = {}


def _network_cases(model):
    key = json.dumps(model.spec(), sort_keys=True)
    if key not in _NETWORK_CASES:
        _NETWORK_CASES[key] = _cases.network_cases(model)
    return _NETWORK_CASES[key]


def _ran(results, models, steps, l2, lr_grad):
    extras = (["l2 > 0 cases"] if l2 else []) + (["one rate per parameter, rate gradients"] if lr_grad else [])
    return (f"{len(results)} cases: {', '.join(map(str, models))}; inner_steps {', '.join(map(str, steps))}, plus the "
            "diagnostic (K = 2, 3) and edge cases (K = 2)" + "".join(f"; {e}" for e in extras))


def _report(results, tol, dtype, *, lr_grad, missing=(), ran="", named=DIAGNOSES, required=()):
    diagnosis = diagnose(results, dtype, named)
    loc = localize(results, tol=tol, lr_grad=lr_grad)
    message = explain(diagnosis, results, tol, loc)
    if missing:
        message = (f"INCOMPLETE: {_missing_text(missing, required)}. "
                   + ("The answered cases: " if diagnosis else "") + message)
        diagnosis = diagnosis or "incomplete"
    return Report(diagnosis is None, diagnosis, message, results, tol, dtype, loc, tuple(missing), ran, named)


def _missing_text(missing, required):
    by_id = {c.id: c for c in required}
    cs = [by_id[i] for i in missing]
    kinds = {}
    for c in cs:
        name = _cases.network_name(c.model)
        for key in (name, "diagnostic" if c.diagnostic else ("edge" if _cases.EDGE & set(c.tags) else
                                                                  f"K = {c.inner_steps}")):
            kinds[key] = kinds.get(key, 0) + 1
    listing = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return (f"{len(missing)} of the {len(required)} cases the declared options require are missing "
            f"({listing}; for example {_ids(missing, 3)})")


def check(fn, model="logistic", *, steps=_cases.STEPS, l2=False, lr_grad=False, dtype="float64"):
    """Check a MAML implementation ``fn`` against refmaml; returns a :class:`Report`.

    ``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps)`` receives NumPy arrays (tasks
    stacked on the leading axis; features and theta of ``dtype``; logistic labels float64 0/1,
    softmax labels int64, linear-regression targets of ``dtype``) and returns ``(meta_loss,
    meta_grad)``: the mean over tasks of the query loss after ``inner_steps`` gradient steps on the
    support loss, and its exact gradient (``derivations/maml.md`` (M3), (M6)). With ``l2=True`` it
    also receives ``l2=`` (the ridge coefficient of the support loss) and the cases include
    ``l2 > 0``. With ``lr_grad=True`` ``inner_lr`` is an array of ``theta``'s shape (one rate per
    parameter) and ``fn`` returns ``(meta_loss, meta_grad, inner_lr_grad)``
    (``derivations/variants.md`` (V3)-(V4)).

    ``model``: ``"logistic"``, ``"softmax"``, ``"both"`` (those two), ``"linear"``, or a network
    ``refmaml.models.MLP(sizes, activation, loss)``, for which the cases are built for that
    architecture (:func:`refmaml.oracle.cases.network_cases`; ``theta`` flat in PyTorch's parameter
    order, ``mse`` targets ``(T, n, d_out)`` or ``(T, n)``) and a bug is named only where they
    separate it (:func:`separation`, ``report.named``); ``steps``: the
    numbers of inner steps to run (the edge and diagnostic cases always run; ``report.ran`` says
    which ran); ``dtype``: ``"float64"`` or ``"float32"``, the precision ``fn`` computes in, which
    sets the tolerance (``TOLERANCE``).

    ``report.passed`` is a bool; ``report.diagnosis`` is None when it passed, else one of
    ``VERDICTS`` (``interface``, ``unstable``, a key of ``MESSAGES``, ``unknown``;
    ``derivations/oracle.md`` (O1)-(O11)); ``report.message`` says it in words;
    ``report.localization`` says where it is wrong (:func:`localize`); ``report.cases`` holds a
    :class:`CaseResult` per case.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    models = _models(model)
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype must be one of {', '.join(TOLERANCE)}; got {dtype!r}")
    for name, flag in (("l2", l2), ("lr_grad", lr_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    steps = _steps(steps)
    tol = TOLERANCE[dtype]
    named = _named(l2, lr_grad)
    if not isinstance(models[0], str):  # a network: its cases are built for it
        chosen = _cases.select(_network_cases(model), models=models, steps=steps, l2=l2, rates=lr_grad)
        gaps = separation(chosen, lr_grad=lr_grad)
        named = tuple(k for k in named if gaps.get(k, 0.0) >= SEPARATION)
    else:
        chosen = _cases.select(_cases.all_cases(networks=False), models=models, steps=steps, l2=l2,
                               rates=lr_grad)
    results = []
    for case in chosen:
        case = case.rounded(dtype)
        rate = case.rate(lr_grad)
        try:
            produced = _call(fn, case, rate, dtype, l2=l2, lr_grad=lr_grad)
        except _Interface as exc:
            results.append(CaseResult(case.id, np.inf, np.inf, np.inf if lr_grad else None, False, (),
                                      case.diagnostic, str(exc), exc.kind, conditions(case, rate)))
            continue
        results.append(judge(case, rate, produced, tol=tol, lr_grad=lr_grad))
    return _report(results, tol, dtype, lr_grad=lr_grad, ran=_ran(results, models, steps, l2, lr_grad),
                   named=named)


OPTIONS = ("model", "steps", "l2", "lr_grad")  # of check(), as a results file declares them


def check_results(produced, dtype="float64", *, options=None, version=None):
    """Judge answers computed elsewhere on the cases of vectors ``version``: ``produced`` maps case
    ids to :class:`Answer`. ``options`` (a dict with keys of ``OPTIONS``; absent flags are False,
    an absent ``model`` is the models answered, absent ``steps`` all of them) says which cases
    ``check()`` would run: every one must be answered, with a rate gradient exactly when
    ``lr_grad`` is declared, or the report is not a pass (``report.missing``). A rate gradient given
    without ``lr_grad`` is compared too. Returns a :class:`Report`."""
    options = dict(options or {})
    tol = TOLERANCE[dtype]
    known = {c.id: c for c in _cases.all_cases()}
    if version is None:
        version = "1" if all(cid in {c.id for c in _cases.all_cases("1")} for cid in produced) else _cases.VERSION
    answered = {known[cid].model for cid in produced}
    networks = {_cases.network_name(m): m for m in _cases.NETWORKS()} if version != "1" else {}
    if "model" in options and options["model"] in networks:
        models = (networks[options["model"]],)
    elif "model" in options:
        models = _models(options["model"])
    else:
        models = tuple(m for m in _cases.MODELS + tuple(networks.values()) if m in answered)
    steps = _steps(options.get("steps", _cases.STEPS))
    l2, lr_grad = bool(options.get("l2", False)), bool(options.get("lr_grad", False))
    results = []
    for cid, answer in produced.items():
        case = known[cid].rounded(dtype)
        results.append(judge(case, case.inner_lr, answer, tol=tol, lr_grad=answer.lr_grad is not None))
    required = _cases.select(_cases.all_cases(version), models=models, steps=steps, l2=l2, rates=lr_grad)
    missing = [c.id for c in required
               if c.id not in produced or (lr_grad and produced[c.id].lr_grad is None)]
    ran = (f"{len(results)} answered cases of vectors version {version}; options "
           f"model={'+'.join(map(str, models))}, steps={list(steps)}, l2={l2}, lr_grad={lr_grad}")
    # the bugs the answered cases can show, declared or not (a file without options still has its
    # l2 > 0 and rate-gradient answers judged, as in version 1)
    named = _named(l2 or any(known[cid].l2 > 0 for cid in produced),
                   lr_grad or any(a.lr_grad is not None for a in produced.values()))
    nets = [c for c in required if not _models_pkg.get(c.model).linear]
    if nets:  # a bug is named only where the network's diagnostic cases separate it
        gaps = separation(nets, lr_grad=lr_grad)
        named = tuple(k for k in named if gaps.get(k, 0.0) >= SEPARATION)
    return _report(results, tol, dtype, lr_grad=lr_grad or any(a.lr_grad is not None for a in produced.values()),
                   missing=missing, ran=ran, named=named, required=required)


def _number(x):
    return None if x is None else (float(x) if np.isfinite(x) else str(float(x)))


def as_dict(report):
    """The report for machines (``refmaml check --json``): ``passed``, ``diagnosis``, ``message``,
    ``localization``, ``tolerance``, ``missing`` (case ids), ``ran``, ``named`` and one row per case
    (``id``, ``passed``, ``loss_error``, ``grad_error``, ``lr_grad_error``, ``matches``,
    ``failure``). An infinite error is the string ``"inf"``."""
    return {
        "passed": report.passed, "diagnosis": report.diagnosis, "message": report.message,
        "localization": report.localization, "tolerance": report.tolerance, "dtype": report.dtype,
        "missing": list(report.missing), "ran": report.ran, "named": list(report.named),
        "cases": [{"id": r.name, "passed": r.passed, "loss_error": _number(r.loss_error),
                   "grad_error": _number(r.grad_error), "lr_grad_error": _number(r.lr_grad_error),
                   "matches": list(r.matches), "failure": r.failure} for r in report.cases],
    }


def format_report(report):
    """The report as text: one row per case, then the verdict."""
    rows = [("case", "loss err", "grad err", "rate err", "result", "matches")]
    for r in report.cases:
        rate = "-" if r.lr_grad_error is None else f"{r.lr_grad_error:.1e}"
        rows.append((r.name, f"{r.loss_error:.1e}", f"{r.grad_error:.1e}", rate,
                     "ok" if r.passed else "FAIL", ", ".join(r.matches) or ("-" if r.passed else "none")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    verdict = "PASSED" if report.passed else f"FAILED: {report.diagnosis}"
    tail = ([f"ran {report.ran}"] if report.ran else []) + \
        ([f"bugs this check can name: {', '.join(report.named)}"] if not report.passed and report.named else [])
    return "\n".join(lines + ["", f"{verdict} ({report.dtype}, tolerance {report.tolerance:.0e})",
                              report.message] + tail)


def check_file(path, *, as_json=False):
    """Everything ``refmaml check RESULTS [--json]`` does: read and validate the results file,
    judge it, format the report. Returns ``(exit_code, text)``: 0 agree (text to stdout), 1 disagree
    or incomplete (text to stdout), 2 invalid file (text, starting ``refmaml check:``, to stderr)."""
    import json

    from . import vectors

    try:
        dtype, produced, options, version = vectors.read_results(path)
    except vectors.InvalidFile as exc:
        return 2, f"refmaml check: {exc}"
    report = check_results(produced, dtype, options=options, version=version)
    text = json.dumps(as_dict(report), indent=1) if as_json else format_report(report)
    return (0 if report.passed else 1), text
