"""The report of a check: a row per case (:class:`CaseResult`), the whole (:class:`Report`), and
its two renderings, text (:func:`format_report`) and a dict for JSON (:func:`as_dict`)."""

from dataclasses import dataclass, field

import numpy as np

from .. import _text
from .answers import DIAGNOSES


@dataclass(frozen=True)
class CaseResult:
    """One case of a check: errors against the truth (D4), whether it passed, and which bugs'
    answers it matches (``matches``; ``matched`` is the one key, or ``"unknown"``).

    ``kind`` says what went wrong before any comparison: ``""``, ``"raised"`` (``fn`` raised),
    ``"interface"`` (a wrong number, type or shape of returned values), ``"float32"`` (float32
    answers in a float64 check), ``"nonfinite"`` (NaN or infinity returned) or
    ``"nondeterministic"`` (two calls on the same inputs disagreed). ``conditions``: the names of
    ``CONDITIONS`` that hold for the case; ``largest_logit``: the largest ``|X theta_k|`` over its
    iterates (linear networks; None otherwise); ``notes``: ``(bug, variant)`` for the matched bugs
    whose answers come in variants (``layout``: which layout); ``factors``: ``(part, c, norm, name)``
    for each part (``"loss"``, ``"grad"``, ``"lr_grad"``) that is ``c`` times the truth's, with the
    norm of what fn returned and the names of ``c`` in the case's counts (``("1/T",)``, ...;
    :func:`refmaml.oracle.judge.factor_name`) (O22)."""

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
    notes: tuple = ()
    factors: tuple = ()

    @property
    def matched(self):
        if self.passed:
            return None
        return self.matches[0] if len(self.matches) == 1 else "unknown"


@dataclass(frozen=True)
class Report:
    """``passed``; ``diagnosis`` (None, or one of ``VERDICTS``, or ``"incomplete"`` for a results
    file that agrees but leaves out cases); ``message``; ``cases`` (one :class:`CaseResult` each);
    ``tolerance``; ``dtype``; ``localization`` (see :func:`refmaml.oracle.judge.localize`);
    ``missing`` (ids of cases a results file should have answered); ``ran`` (which cases ran, in
    words); ``named`` (the bugs the check could name)."""

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


def _number(x):
    return None if x is None else (float(x) if np.isfinite(x) else str(float(x)))


def as_dict(report):
    """The report for machines (``refmaml check --json``): ``passed``, ``diagnosis``, ``message``,
    ``localization``, ``tolerance``, ``missing`` (case ids), ``ran``, ``named`` and one row per case
    (``id``, ``passed``, ``loss_error``, ``grad_error``, ``lr_grad_error``, ``matches``,
    ``failure``, ``notes``: ``[{"bug", "variant"}]`` for the matched bugs whose answers come in
    variants (``layout``: which layout), ``factors``: ``[{"part", "factor", "norm", "names"}]`` for
    each part (``loss``, ``grad``, ``lr_grad``) that is ``factor`` times the truth's, with the norm of
    what fn returned and the names of the factor in the case's counts, (O22)). An infinite number is
    the string ``"inf"``."""
    return {
        "passed": report.passed, "diagnosis": report.diagnosis, "message": report.message,
        "localization": report.localization, "tolerance": report.tolerance, "dtype": report.dtype,
        "missing": list(report.missing), "ran": report.ran, "named": list(report.named),
        "cases": [{"id": r.name, "passed": r.passed, "loss_error": _number(r.loss_error),
                   "grad_error": _number(r.grad_error), "lr_grad_error": _number(r.lr_grad_error),
                   "matches": list(r.matches), "failure": r.failure,
                   "notes": [{"bug": bug, "variant": variant} for bug, variant in r.notes],
                   "factors": [{"part": part, "factor": _number(c), "norm": _number(size), "names": list(names)}
                               for part, c, size, names in r.factors]} for r in report.cases],
    }


INF = ("inf in an error column: no comparison was possible on that case (fn raised, returned the wrong "
       "number, type or shape of values, or NaN or infinity), or the relative error itself is beyond the "
       "largest float (answers near 1.8e308); its row's failure says which")


def format_report(report):
    """The report as text: one row per case, then the verdict (and what ``inf`` means, when a row
    has one)."""
    rows = [("case", "loss err", "grad err", "rate err", "result", "matches")]
    for r in report.cases:
        rate = "-" if r.lr_grad_error is None else f"{r.lr_grad_error:.1e}"
        rows.append((r.name, f"{r.loss_error:.1e}", f"{r.grad_error:.1e}", rate,
                     "ok" if r.passed else "FAIL", ", ".join(r.matches) or ("-" if r.passed else "none")))
    lines = _text.table(rows[0], rows[1:], rule=False, ragged=True).split("\n")
    verdict = "PASSED" if report.passed else f"FAILED: {report.diagnosis}"
    infinite = any(np.isinf(e) for r in report.cases for e in (r.loss_error, r.grad_error, r.lr_grad_error)
                   if e is not None)
    tail = ([f"ran {report.ran}"] if report.ran else []) + ([INF] if infinite else []) + \
        ([f"bugs this check can name: {', '.join(report.named)}"] if not report.passed and report.named else [])
    return "\n".join(lines + ["", f"{verdict} ({report.dtype}, tolerance {report.tolerance:.0e})",
                              report.message] + tail)
