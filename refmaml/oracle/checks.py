"""The oracle's entry points, each ending in a :class:`~refmaml.oracle.report.Report`:
:func:`check` runs a user's ``fn`` on the selected cases, :func:`check_results` judges answers
computed elsewhere, :func:`check_file` reads them from a results file (``refmaml check``)."""

import json
from dataclasses import replace

from . import adapter, cases, messages, selection
from .answers import DIAGNOSES
from .judge import TOLERANCE, diagnose, judge, localize, repeated, unanswered
from .report import Report, as_dict, format_report


def _report(results, tol, dtype, *, lr_grad, missing=(), ran="", named=DIAGNOSES, required=(), kinds=(),
            warned=()):
    diagnosis = diagnose(results, dtype, named)
    loc = localize(results, tol=tol, lr_grad=lr_grad)
    message = messages.explain(diagnosis, results, tol, loc, kinds=kinds, warned=warned)
    if missing:
        message = (f"INCOMPLETE: {messages.incomplete(missing, required)}. "
                   + ("The answered cases: " if diagnosis else "") + message)
        diagnosis = diagnosis or "incomplete"
    return Report(diagnosis is None, diagnosis, message, results, tol, dtype, loc, tuple(missing), ran, named)


REPEATS = 8  # failing cases called a second time (diagnostic ones first): nondeterminism is a verdict


def check(fn, model="logistic", *, steps=cases.STEPS, l2=False, lr_grad=False, dtype="float64", inner_mask=None):
    """Check a MAML implementation ``fn`` against refmaml; returns a :class:`Report`.

    ``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps)`` receives NumPy arrays (tasks
    stacked on the leading axis; features and theta of ``dtype``; logistic labels float64 0/1,
    softmax labels int64, real targets of ``dtype``), fresh copies on every call, and returns
    ``(meta_loss, meta_grad)``: the mean over tasks of the query loss after ``inner_steps``
    gradient steps on the support loss, and its exact gradient (``derivations/maml.md`` (M3),
    (M6)). With ``l2=True`` it also receives ``l2=`` (the ridge coefficient of the support loss)
    and the cases include ``l2 > 0``. With ``lr_grad=True`` ``inner_lr`` is an array of ``theta``'s
    shape (one rate per parameter) and ``fn`` returns ``(meta_loss, meta_grad, inner_lr_grad)``
    (``derivations/variants.md`` (V3)-(V4)).

    ``model``: ``"logistic"``, ``"softmax"``, ``"both"`` (those two), ``"linear"``, or a network
    (``refmaml.models.MLP(sizes, activation, loss)``, ``ConvNet(...)``, any ``Sequential(layers,
    loss=..., input_shape=...)``, images ``(T, n, C, H, W)`` included), for which the cases are
    built for that architecture (:func:`refmaml.oracle.cases.network_cases`; ``theta`` flat in
    PyTorch's parameter order, ``mse`` targets ``(T, n, d_out)`` or ``(T, n)``; every ReLU input
    and max-pool window at least ``RELU_MARGIN`` from its kink at every inner iterate) and a bug
    is named only where they separate it (:func:`refmaml.oracle.judge.separation`,
    ``report.named``); ``inner_mask`` (networks only): a boolean array of theta's shape, the
    parameters ``fn``'s inner loop adapts (``net.mask(-1)`` for ANIL; the others move only in the
    outer loop, maml.md (M10)); ``steps``: the numbers of inner steps to run (the edge and
    diagnostic cases always run; ``report.ran`` says which ran); ``dtype``: ``"float64"`` or
    ``"float32"``, the precision ``fn`` computes in, which sets the tolerance (``TOLERANCE``).

    ``report.passed`` is a bool; ``report.diagnosis`` is None when it passed, else one of
    ``VERDICTS`` (``nondeterministic``, ``interface``, ``unstable``, a key of ``MESSAGES``,
    ``scaled``, ``unknown``; ``derivations/oracle.md`` (O1)-(O23)); ``report.message`` says it in
    words; ``report.localization`` says where it is wrong
    (:func:`refmaml.oracle.judge.localize`); ``report.cases`` holds a :class:`CaseResult` per case.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    models = selection.parse_model(model)
    if not isinstance(dtype, str) or dtype not in TOLERANCE:
        raise ValueError(f"dtype must be one of {', '.join(TOLERANCE)}; got {dtype!r}")
    for name, flag in (("l2", l2), ("lr_grad", lr_grad)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    mask = selection.parse_mask(inner_mask, models)
    chosen = selection.select(models, selection.parse_steps(steps), l2=l2, lr_grad=lr_grad, mask=mask)
    tol = TOLERANCE[dtype]
    results, answered, warned = [], {}, []
    for case in chosen.cases:
        case = case.rounded(dtype)
        rate = case.rate(lr_grad)
        try:
            produced = adapter.call(fn, case, rate, dtype, l2=l2, lr_grad=lr_grad, caught=warned)
        except adapter.Malformed as exc:
            results.append(unanswered(case, rate, str(exc), exc.kind, lr_grad=lr_grad, loss=exc.loss))
            continue
        answered[case.id] = (case, rate, produced)
        results.append(judge(case, rate, produced, tol=tol, lr_grad=lr_grad))
    results = _repeat(fn, results, answered, dtype, tol, l2=l2, lr_grad=lr_grad)
    extras = (["l2 > 0 cases"] if l2 else []) + (["one rate per parameter, rate gradients"] if lr_grad else []) \
        + ([f"inner_mask adapting {int(mask.sum())} of {mask.size} parameters"] if mask is not None else [])
    ran = (f"{len(results)} cases: {', '.join(map(str, models))}; inner_steps {', '.join(map(str, chosen.steps))}, "
           "plus the diagnostic (K = 2, 3) and edge cases" + "".join(f"; {e}" for e in extras))
    kinds = tuple(messages.kind(m) for m in models)
    return _report(results, tol, dtype, lr_grad=lr_grad, ran=ran, kinds=kinds, warned=tuple(dict.fromkeys(warned)),
                   named=selection.nameable(chosen, ridge=l2, rates=lr_grad))


def _repeat(fn, results, answered, dtype, tol, *, l2, lr_grad):
    """Up to ``REPEATS`` failing cases (diagnostic first) answered a second time, on fresh copies of
    the same inputs: a case whose two answers differ by more than ``tol`` is ``nondeterministic``."""
    failing = sorted((i for i, r in enumerate(results) if not r.passed and r.name in answered and not r.kind),
                     key=lambda i: not results[i].diagnostic)[:REPEATS]
    out = list(results)
    for i in failing:
        case, rate, first = answered[results[i].name]
        try:
            second = adapter.call(fn, case, rate, dtype, l2=l2, lr_grad=lr_grad)
        except adapter.Malformed as exc:
            out[i] = replace(results[i], kind="nondeterministic",
                             failure=f"a second call of fn on the same inputs failed: {exc}")
            continue
        out[i] = repeated(results[i], first, second, tol)
    return out


def check_results(produced, dtype="float64", *, options=None, version=None):
    """Judge answers computed elsewhere on the cases of vectors ``version``: ``produced`` maps case
    ids to :class:`Answer`. ``options`` (a dict with keys of ``selection.OPTIONS``; absent flags are
    False, an absent ``model`` is the models answered, absent ``steps`` all of them; ``inner_mask``
    True: the ConvNet preset's cases with ANIL's mask, :func:`refmaml.oracle.selection.declared`)
    says which cases ``check()`` would run: every one must be answered, with a rate gradient exactly when
    ``lr_grad`` is declared, or the report is not a pass (``report.missing``). A rate gradient given
    without ``lr_grad`` is compared too. Returns a :class:`Report`."""
    options = dict(options or {})
    tol = TOLERANCE[dtype]
    known = {c.id: c for c in cases.all_cases()}
    if version is None:
        version = "1" if all(cid in {c.id for c in cases.all_cases("1")} for cid in produced) else cases.VERSION
    chosen = selection.declared(options, {known[cid].model for cid in produced}, version)
    results = []
    for cid, answer in produced.items():
        case = known[cid].rounded(dtype)
        results.append(judge(case, case.inner_lr, answer, tol=tol, lr_grad=answer.lr_grad is not None))
    missing = [c.id for c in chosen.cases
               if c.id not in produced or (chosen.lr_grad and produced[c.id].lr_grad is None)]
    ran = (f"{len(results)} answered cases of vectors version {version}; options "
           f"model={'+'.join(map(str, chosen.models))}, steps={list(chosen.steps)}, l2={chosen.l2}, "
           f"lr_grad={chosen.lr_grad}" + (f", inner_mask=true (ANIL: {int(chosen.mask.sum())} of {chosen.mask.size} "
                                           "parameters adapt)" if chosen.mask is not None else ""))
    # the bugs the answered cases can show, declared or not (a file without options still has its
    # l2 > 0 and rate-gradient answers judged, as in version 1)
    rates = chosen.lr_grad or any(a.lr_grad is not None for a in produced.values())
    named = selection.nameable(chosen, ridge=chosen.l2 or any(known[cid].l2 > 0 for cid in produced), rates=rates)
    return _report(results, tol, dtype, lr_grad=rates, missing=missing, ran=ran, named=named,
                   required=chosen.cases, kinds=tuple(messages.kind(m) for m in chosen.models))


def check_file(path, *, as_json=False):
    """Everything ``refmaml check RESULTS [--json]`` does: read and validate the results file,
    judge it, format the report. Returns ``(exit_code, text)``: 0 agree (text to stdout), 1 disagree
    or incomplete (text to stdout), 2 invalid file (text, starting ``refmaml check:``, to stderr)."""
    from . import vectors

    try:
        dtype, produced, options, version = vectors.read_results(path)
    except vectors.InvalidFile as exc:
        return 2, f"refmaml check: {exc}"
    report = check_results(produced, dtype, options=options, version=version)
    text = json.dumps(as_dict(report), indent=1) if as_json else format_report(report)
    return (0 if report.passed else 1), text
