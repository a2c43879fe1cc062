"""Judging another implementation: agreement with the truth, and which known bug it matches."""

from dataclasses import dataclass

import numpy as np

from . import answers, cases as _cases
from .answers import DIAGNOSES, Answer

# Relative error (D4) that still counts as agreement, by the dtype the implementation computes in.
# A correct float64 implementation agrees with refmaml to about 1e-14 on these cases (other
# summation orders, K <= 5 steps); a correct float32 one to about 1e-6, computing from the same
# float32-rounded inputs the truth is computed from. The margins are generous, and still far
# below the gaps between the truth and every diagnosed bug on the diagnostic cases (at least 1e-2,
# ``derivations/oracle.md`` (O7)).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}

MESSAGES = {
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
    answers it matches (``matches``; ``matched`` is the one key, or ``"unknown"``)."""

    name: str
    loss_error: float
    grad_error: float
    lr_grad_error: object  # float, or None when rates were not checked
    passed: bool
    matches: tuple
    diagnostic: bool
    failure: str = ""  # what went wrong before any comparison (an exception, a wrong shape)

    @property
    def matched(self):
        if self.passed:
            return None
        return self.matches[0] if len(self.matches) == 1 else "unknown"


@dataclass(frozen=True)
class Report:
    passed: bool
    diagnosis: object  # None, a key of MESSAGES, or "unknown"
    message: str
    cases: list
    tolerance: float
    dtype: str

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


def judge(case, rate, produced, *, tol, lr_grad):
    """Compare ``produced`` (an :class:`Answer`) with the truth of ``case``; if it disagrees,
    with every diagnosed bug's answers."""
    errs = errors(produced, answers.truth(case, rate))
    if lr_grad and errs[2] is None:
        errs = errs[:2] + (np.inf,)
    passed = _agree(errs, tol)
    matches = ()
    if not passed:
        matches = tuple(key for key, options in answers.wrong(case, rate, lr_grad=lr_grad).items()
                        if any(_agree(errors(produced, o), tol) for o in options))
    return CaseResult(case.id, errs[0], errs[1], errs[2] if lr_grad else None, passed, matches,
                      case.diagnostic)


def diagnose(results):
    """The one bug every failing case agrees with (the diagnostic cases decide when they fail),
    ``"unknown"`` when there is none, ``None`` when everything passed."""
    failing = [r for r in results if not r.passed]
    if not failing:
        return None
    pool = [r for r in failing if r.diagnostic] or failing
    common = set(DIAGNOSES)
    for r in pool:
        common &= set(r.matches)
    return common.pop() if len(common) == 1 else "unknown"


def explain(diagnosis, results, tol):
    failing = [r for r in results if not r.passed]
    if diagnosis is None:
        return f"all {len(results)} cases agree with refmaml to {tol:.0e} (relative)"
    head = f"{len(failing)} of {len(results)} cases disagree with refmaml (tolerance {tol:.0e} relative)"
    if diagnosis == "unknown":
        worst = sorted(failing, key=lambda r: -max(r.grad_error, r.loss_error))[:3]
        listing = "; ".join(f"{r.name}: loss {r.loss_error:.1e}, gradient {r.grad_error:.1e}"
                            + (f" ({r.failure})" if r.failure else "") for r in worst)
        return (f"{head}, and they match none of the known bugs. Worst: {listing}. Check the conventions "
                "first: mean over examples and over tasks, l2 on the support loss only, labels 0/1 "
                "(logistic) or class indices (softmax), theta of shape (d,) or (d, C).")
    what, cause, fix = MESSAGES[diagnosis]
    return f"{head}: {what}. Likely cause: {cause}. Fix: {fix}."


def _as_float64(x, name):
    """NumPy, or anything ``np.asarray`` takes; CPU tensors of PyTorch are detached first."""
    if x is None:
        return None
    for method in ("detach", "cpu"):
        if hasattr(x, method):
            x = getattr(x, method)()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be read as an array of numbers: {exc}") from None


def _call(fn, case, rate, dtype, *, l2, lr_grad):
    args = [case.theta.astype(dtype), case.Xs.astype(dtype), case.ys.copy(), case.Xq.astype(dtype),
            case.yq.copy()]
    kw = dict(inner_lr=np.asarray(rate, dtype=dtype) if lr_grad else float(rate),
              inner_steps=case.inner_steps)
    if l2:
        kw["l2"] = case.l2
    out = fn(*args, **kw)
    expected = "(meta_loss, meta_grad, inner_lr_grad)" if lr_grad else "(meta_loss, meta_grad)"
    if not isinstance(out, (tuple, list)) or len(out) != (3 if lr_grad else 2):
        raise TypeError(f"fn must return {expected}; got {type(out).__name__}")
    loss = _as_float64(out[0], "meta_loss")
    if loss.shape != ():
        raise ValueError(f"meta_loss must be a scalar; got shape {loss.shape}")
    grad = _as_float64(out[1], "meta_grad")
    rate_grad = _as_float64(out[2], "inner_lr_grad") if lr_grad else None
    if lr_grad and rate_grad is None:
        rate_grad = np.zeros(np.shape(rate))
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


def check(fn, model="logistic", *, steps=_cases.STEPS, l2=False, lr_grad=False, dtype="float64"):
    """Check a MAML implementation ``fn`` against refmaml; returns a :class:`Report`.

    ``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps)`` receives NumPy arrays (tasks
    stacked on the leading axis; features and theta of ``dtype``; logistic labels float64 0/1,
    softmax labels int64) and returns ``(meta_loss, meta_grad)``: the mean over tasks of the query
    loss after ``inner_steps`` gradient steps on the support loss, and its exact gradient
    (``derivations/maml.md`` (M3), (M6)). With ``l2=True`` it also receives ``l2=`` (the ridge
    coefficient of the support loss) and the cases include ``l2 > 0``. With ``lr_grad=True``
    ``inner_lr`` is an array of ``theta``'s shape (one rate per parameter) and ``fn`` returns
    ``(meta_loss, meta_grad, inner_lr_grad)`` (``derivations/variants.md`` (V3)-(V4)).

    ``model``: ``"logistic"``, ``"softmax"`` or ``"both"``; ``steps``: the numbers of inner steps
    to run (the edge and diagnostic cases always run); ``dtype``: ``"float64"`` or ``"float32"``,
    the precision ``fn`` computes in, which sets the tolerance (``TOLERANCE``).

    ``report.passed`` is a bool; ``report.diagnosis`` is None when it passed, else one of the keys
    of ``MESSAGES`` or ``"unknown"`` (``derivations/oracle.md`` (O1)-(O8)); ``report.message``
    says it in words; ``report.cases`` holds a :class:`CaseResult` per case.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    models = _cases.MODELS if model == "both" else (model,)
    if any(m not in _cases.MODELS for m in models):
        raise ValueError(f"model must be 'logistic', 'softmax' or 'both'; got {model!r}")
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype must be one of {', '.join(TOLERANCE)}; got {dtype!r}")
    for name, flag in (("l2", l2), ("lr_grad", lr_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    steps = _steps(steps)
    tol = TOLERANCE[dtype]
    results = []
    for case in _cases.select(_cases.all_cases(), models=models, steps=steps, l2=l2, rates=lr_grad):
        case = case.rounded(dtype)
        rate = case.rate(lr_grad)
        try:
            produced = _call(fn, case, rate, dtype, l2=l2, lr_grad=lr_grad)
        except Exception as exc:  # the implementation's failure is a finding, not a crash of the check
            results.append(CaseResult(case.id, np.inf, np.inf, np.inf if lr_grad else None, False, (),
                                      case.diagnostic, f"{type(exc).__name__}: {exc}"))
            continue
        results.append(judge(case, rate, produced, tol=tol, lr_grad=lr_grad))
    diagnosis = diagnose(results)
    return Report(diagnosis is None, diagnosis, explain(diagnosis, results, tol), results, tol, dtype)


def check_results(produced, dtype="float64"):
    """Judge answers computed elsewhere on this version's cases: ``produced`` maps case ids to
    :class:`Answer` (a rate gradient is compared where one is given). Returns a :class:`Report`."""
    tol = TOLERANCE[dtype]
    known = {c.id: c for c in _cases.all_cases()}
    results = []
    for cid, answer in produced.items():
        case = known[cid].rounded(dtype)
        results.append(judge(case, case.inner_lr, answer, tol=tol, lr_grad=answer.lr_grad is not None))
    diagnosis = diagnose(results)
    return Report(diagnosis is None, diagnosis, explain(diagnosis, results, tol), results, tol, dtype)


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
    return "\n".join(lines + ["", f"{verdict} ({report.dtype}, tolerance {report.tolerance:.0e})",
                              report.message])
