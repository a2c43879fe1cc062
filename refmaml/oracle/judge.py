"""Judging answers: each case's relative errors (D4) against the truth and against every diagnosed
bug's answers, where a run goes wrong, its verdict, and how far apart the diagnostic cases hold the
bugs (``derivations/oracle.md`` (O7), (O11))."""

from dataclasses import replace

import numpy as np

from .. import models
from ..check import norm, relative_error
from . import answers
from .answers import DIAGNOSES
from .report import CaseResult, as_dict  # noqa: F401  (as_dict: also read as judge.as_dict)

# Relative error (D4) that still counts as agreement, by the dtype the implementation computes in.
# A correct float64 implementation agrees with refmaml to about 1e-14 on these cases (other
# summation orders, K <= 5 steps); a correct float32 one to about 1e-6, computing from the same
# float32-rounded inputs the truth is computed from. The margins are generous, and still far
# below the gaps between the truth and every diagnosed bug on the diagnostic cases (at least 1e-2,
# ``derivations/oracle.md`` (O7)).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}

# The verdicts besides the named bugs: "nondeterministic", "interface" and "unstable" decided
# before them, "scaled" (a constant multiple of the truth) after them, then "unknown".
VERDICTS = ("nondeterministic", "interface", "unstable") + DIAGNOSES + ("scaled", "unknown")

HUGE = 1e300  # answers beyond this are compared at a quarter of their size (exact: a power of 2), never overflowing

# The conditions ``failing_only_when`` chooses from, in this order, and what each says of a case.
CONDITIONS = ("inner_steps>=1", "inner_steps>=2", "tasks>=2", "l2>0", "saturated", "one_example", "lr_array")

# float32's rounding band for the relative error (D4) of a whole answer: its unit roundoff is
# 2^-24 = 6.0e-8; a float32 computation of these cases errs by about 1e-8 to 1e-5 (accumulated
# over K <= 5 steps), a float64 one by at most about 1e-14.
FLOAT32_BAND = (1e-9, 1e-4)

SEPARATION = 1e-2  # (O7), (O11): the gap a bug needs on the diagnostic cases to be named


def answer_error(produced, reference):
    """(D4) of one part of an answer (``refmaml.check.relative_error``), as the oracle reads it:
    infinite when the shapes differ or ``produced`` is not finite, NaN against a reference that is
    not finite, and against a zero reference 0 for an exact zero and infinite otherwise."""
    a, b = np.asarray(produced, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return np.inf
    if not np.all(np.isfinite(b)):
        return np.nan
    if not np.any(b):
        return 0.0 if not np.any(a) else np.inf
    if max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) > HUGE:
        a, b = a / 4, b / 4   # a - b of two finite numbers near 1.8e308 would overflow
    return relative_error(a, b)


def factor_name(c, case):
    """What a constant ``c`` is on ``case``, in the case's counts: the names among ``"-1"``,
    ``"2"``, ``"1/2"``, ``"T"``, ``"1/T"`` (tasks), ``"n"``, ``"1/n"`` (support examples), ``"m"``,
    ``"1/m"`` (query examples) that ``c`` equals (a tuple, empty for none)."""
    T, n, m = case.T, case.Xs.shape[1], case.Xq.shape[1]
    return tuple(name for name, value in (("-1", -1.0), ("2", 2.0), ("1/2", 0.5), ("T", T), ("1/T", 1 / T),
                                          ("n", n), ("1/n", 1 / n), ("m", m), ("1/m", 1 / m))
                 if value != 1 and abs(c - value) <= 1e-9 * abs(value))


def factor(produced, reference, tol):
    """``c`` when ``produced`` is ``c * reference`` to ``tol`` (D4) with ``c != 1`` (a constant
    multiple: a clipped norm, a missing or extra mean, a sign), else None; exact arithmetic on
    arrays scaled to magnitude 1."""
    a, b = np.asarray(produced, dtype=np.float64).reshape(-1), np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or not a.size or not np.all(np.isfinite(a)) or not np.any(b) or not np.any(a):
        return None
    sa, sb = float(np.max(np.abs(a))), float(np.max(np.abs(b)))
    a, b = a / sa, b / sb
    c = float(a @ b) / float(b @ b)
    if c == 0 or np.linalg.norm(a - c * b) > tol * abs(c) * np.linalg.norm(b):
        return None
    c *= sa / sb
    return None if abs(c - 1) <= tol else c


def errors(produced, reference):
    """``(loss, grad, lr_grad)`` relative errors; the last is None if either side has no rate gradient."""
    lr = None
    if produced.lr_grad is not None and reference.lr_grad is not None:
        lr = answer_error(produced.lr_grad, reference.lr_grad)
    return answer_error(produced.loss, reference.loss), answer_error(produced.grad, reference.grad), lr


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
    if not models.get(case.model).linear:
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


def _matches(produced, options, loss_right, tol):
    """The first of a bug's ``options`` that ``produced`` is (in full, or, gradient-only matching,
    with the right meta-loss ``loss_right`` and the bug's gradients), or None."""
    for o in options:
        errs = errors(produced, o)
        if _agree(errs, tol) or (loss_right and _agree(errs[1:], tol)):
            return o
    return None


def judge(case, rate, produced, *, tol, lr_grad):
    """Compare ``produced`` (an :class:`Answer`) with the truth of ``case``; if it disagrees,
    with every diagnosed bug's answers (in full, or with the right loss and a bug's gradients)."""
    right = answers.truth(case, rate)
    errs = errors(produced, right)
    if lr_grad and errs[2] is None:
        errs = errs[:2] + (np.inf,)
    passed = _agree(errs, tol)
    matches, kind, logit, notes, factors, failure = (), "", None, (), (), ""
    if not passed and not _finite(produced):
        kind, logit = "nonfinite", largest_logit(case, rate)
    elif not passed:
        found = {key: _matches(produced, options, errs[0] <= tol, tol)
                 for key, options in answers.wrong(case, rate, lr_grad=lr_grad).items()}
        matches = tuple(key for key, o in found.items() if o is not None)
        notes = tuple((key, o.note) for key, o in found.items() if o is not None and o.note)
        parts = (("loss", produced.loss, right.loss, errs[0]), ("grad", produced.grad, right.grad, errs[1]),
                 ("lr_grad", produced.lr_grad, right.lr_grad, errs[2] if lr_grad else None))
        factors = []
        for name, a, b, e in parts:
            c = factor(a, b, tol) if e is not None and e > tol and a is not None else None
            if c is not None:
                factors.append((name, c, norm(np.asarray(a, dtype=np.float64)), factor_name(c, case)))
        factors = tuple(factors)
        size = max(abs(produced.loss), float(np.max(np.abs(produced.grad))) if produced.grad.size else 0.0)
        if size > HUGE:
            failure = (f"fn returned values of magnitude {size:.1e}, near float64's largest (1.8e308); they "
                       "were compared at a quarter of their size, without overflow")
    return CaseResult(case.id, errs[0], errs[1], errs[2] if lr_grad else None, passed, matches,
                      case.diagnostic, failure=failure, kind=kind, conditions=conditions(case, rate),
                      largest_logit=logit, notes=notes, factors=factors)


def unanswered(case, rate, failure, kind, *, lr_grad, loss=None):
    """The result of a case ``fn`` gave no answer on (``kind``: ``"raised"``, ``"interface"`` or
    ``"float32"``; ``failure``: what went wrong): infinite errors, no match; ``loss``, the meta-loss
    when it could be read (a wrong gradient beside it), is compared."""
    loss_error = np.inf if loss is None else answer_error(loss, answers.truth(case, rate).loss)
    return CaseResult(case.id, loss_error, np.inf, np.inf if lr_grad else None, False, (), case.diagnostic,
                      failure, kind, conditions(case, rate))


def repeated(result, first, second, tol):
    """``result`` marked ``"nondeterministic"`` when two calls of fn on the same inputs (``first``,
    ``second``: :class:`Answer`) differ by more than ``tol`` (D4) in any part."""
    errs = [e for e in errors(second, first) if e is not None]
    if not errs or max(errs) <= tol or not (_finite(first) and _finite(second)):
        return result
    return replace(result, kind="nondeterministic", matches=(), notes=(), factors=(),
                   failure=f"two calls of fn on the same inputs differ by {max(errs):.1e} (relative)")


def localize(results, *, tol, lr_grad):
    """Where an implementation is wrong, from its case results (the keys of ``Report.localization``,
    (O12)): ``loss_agrees``, ``grad_agrees``, ``lr_grad_agrees`` (None without rates),
    ``failing_only_when`` (the conditions every failing case has and some case run lacks),
    ``passing_only_when`` (the conditions every passing case has and some failing case lacks),
    ``derivative`` (``"first"`` when a case with K = 0 fails, whose meta-gradient is the query
    gradient alone; ``"second"`` when only cases with K >= 1 fail; None otherwise), ``nonfinite``,
    ``raised``, ``nondeterministic``."""
    def agree(attr, r):
        e = getattr(r, attr)
        return r.passed or e is None or e <= tol   # None: no rate gradient on this case (a results file)

    failing = [r for r in results if not r.passed]
    passing = [r for r in results if r.passed]
    only = [c for c in CONDITIONS
            if failing and all(c in r.conditions for r in failing) and any(c not in r.conditions for r in results)]
    passes = [c for c in CONDITIONS
              if failing and passing and all(c in r.conditions for r in passing)
              and any(c not in r.conditions for r in failing)]
    zero = [r for r in results if "inner_steps>=1" not in r.conditions and r.kind != "raised"]
    derivative = None
    if failing and zero:
        derivative = "first" if any(not r.passed for r in zero) else "second"
    return {
        "loss_agrees": all(agree("loss_error", r) for r in results),
        "grad_agrees": all(agree("grad_error", r) for r in results),
        "lr_grad_agrees": all(agree("lr_grad_error", r) for r in results) if lr_grad else None,
        "failing_only_when": only,
        "passing_only_when": passes,
        "derivative": derivative,
        "nonfinite": [r.name for r in results if r.kind == "nonfinite"],
        "raised": [r.name for r in results if r.kind == "raised"],
        "nondeterministic": [r.name for r in results if r.kind == "nondeterministic"],
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


def scaled(results, tol):
    """Whether every failing case answers a constant multiple of the truth in its failing parts
    (``CaseResult.factors``) and agrees in the others: a clipped gradient, a missing or doubled
    mean, a sign (O22)."""
    failing = [r for r in results if not r.passed]
    if not failing or any(r.kind for r in failing):
        return False
    for r in failing:
        off = {name for name, e in (("loss", r.loss_error), ("grad", r.grad_error), ("lr_grad", r.lr_grad_error))
               if e is not None and e > tol}
        if not off or not off <= {f[0] for f in r.factors}:
            return False
    return True


def diagnose(results, dtype="float64", named=DIAGNOSES):
    """The verdict, in this order: ``"nondeterministic"``, ``"interface"``, ``"unstable"``, the one
    bug every failing case agrees with (the diagnostic cases decide when they fail), ``"scaled"``,
    ``"unknown"``; ``None`` when everything passed."""
    failing = [r for r in results if not r.passed]
    if not failing:
        return None
    if any(r.kind == "nondeterministic" for r in failing):
        return "nondeterministic"
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
    if len(common) == 1:
        return common.pop()
    return "scaled" if scaled(results, TOLERANCE.get(dtype, TOLERANCE["float64"])) else "unknown"


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
