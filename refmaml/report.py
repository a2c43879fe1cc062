"""The report of a comparison: trained runs evaluated on the same held-out tasks, its table and
its files (``derivations/training.md``, "The demo").

On ``eval_tasks`` held-out tasks each run records the query accuracy and loss after
``0..steps`` plain gradient steps from the learned initialisation, with the learned rates where
the method has them (Meta-SGD), else the shared rate ``inner_lr``: the two baselines fine-tune
with it too, so that only the initialisation differs. Each baseline is also scored with its own
rate, from :data:`RATE_GRID`, the one that gives the lowest mean query loss after ``steps`` steps
on training tasks (never on held-out tasks). The paired comparisons are against the best of these
four baseline rows. ANIL adapts the last layer only, in evaluation as in training
(``derivations/training.md`` (T15)). iMAML is also scored at its own proximal solution; synthetic
families also report the accuracy of each task's true parameters, the ceiling no method can pass
on average.
"""

import json
import os
import platform
import textwrap

import numpy as np

from . import __version__, _atomic, _text, _xp, tasks, train
from .evaluate import adaptation_curve, proximal_metrics, query_metrics, summarize
from .maml import adapt
from .presets import plan

TUNED = "-tuned"
LABELS = {"zero": "zero init + fine-tune", "pretrain": "pre-training + fine-tune",
          "zero-tuned": "zero init, tuned rate", "pretrain-tuned": "pre-training, tuned rate",
          "random": "random init + fine-tune", "random-tuned": "random init, tuned rate",
          "maml": "MAML (exact)", "fomaml": "first-order MAML", "anil": "ANIL (head only)",
          "reptile": "Reptile",
          "imaml": "iMAML", "metasgd": "Meta-SGD", "imaml-proximal": "iMAML, proximal solve",
          "truth": "true parameters (ceiling)"}
WIDTH = 100  # the columns every printed table fits in
RATE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TUNE_TASKS = 200


def eval_steps(config):
    """The plain gradient steps of the evaluation: the plan's, else the inner steps of training."""
    return plan(config.family).eval_steps or config.inner_steps


def _query_size(family, config):
    return family.eval_query or config.query


def tune_rate(state, put):
    """The fine-tuning rate of a baseline: lowest mean query loss after the evaluation's number of
    steps on ``TUNE_TASKS`` training tasks (their indices from a generator of their own). A rate at
    which adaptation overflows is a rejected candidate."""
    c = state.config
    family = tasks.family(c.family)
    indices = np.random.default_rng([c.seed, 1]).integers(0, tasks.INDEX_LIMIT, TUNE_TASKS)
    b = family.batch("train", indices, c.support, _query_size(family, c))
    data = [put(a) for a in (b.Xs, b.ys, b.Xq, b.yq)]
    scores = {}
    for rate in RATE_GRID:
        try:
            _, loss = adaptation_curve(family.model, state.params["theta"], *data, inner_lr=rate,
                                       steps=eval_steps(c), l2=c.l2)
        except ValueError:  # the inner loop diverged at this rate
            continue
        scores[rate] = float(loss[-1].mean())
    return min(scores, key=scores.get)


def _curve(model, theta, data, rate, steps, l2, inner_mask=None):
    """:func:`refmaml.evaluate.adaptation_curve`, or, where the adaptation overflows before ``steps``
    (learned rates repeated beyond the steps they were trained for can diverge), the curve up to the
    last step that stays finite, padded with None: ``(accuracy, loss, steps that stayed finite)``.
    ``inner_mask``: the parameters the steps adapt (ANIL: the last layer's), None for all."""
    for k in range(steps, -1, -1):
        try:
            accuracy, loss = adaptation_curve(model, theta, *data, inner_lr=rate, steps=k, l2=l2,
                                              inner_mask=inner_mask)
        except ValueError:  # the inner loop overflowed within k steps
            continue
        if k < steps or not np.all(np.isfinite(loss)):
            finite = [i for i in range(k + 1) if np.all(np.isfinite(loss[i]))]
            k = finite[-1] if finite else -1
            pad = [None] * (steps - k)
            loss = list(loss[:k + 1]) + pad
            accuracy = None if accuracy is None else list(accuracy[:k + 1]) + pad
        return accuracy, loss, k
    raise AssertionError("zero adaptation steps cannot overflow")


def _summaries(values):
    return None if values is None else [None if v is None else summarize(v).as_dict() for v in values]


def _row(accuracy, loss):
    """Per-step summaries of ``(steps + 1, T)`` accuracy (None for regression) and loss; None at
    the steps where the adaptation diverged."""
    return {"accuracy": _summaries(accuracy), "loss": _summaries(loss)}


def _paired(a, b):
    """Mean of the per-task difference ``a - b`` with its 95% interval (the same tasks for both);
    None where ``a`` diverged."""
    return None if a is None or b is None else summarize(np.asarray(a) - np.asarray(b)).as_dict()


def _example(fam, states, put, first, steps):
    """One held-out sine (task 0), its support shots, and the predictions of MAML and pre-training
    on a grid before adaptation and after 1 and ``steps`` steps: the MAML paper's Figure 2."""
    A, phi = fam.function("test", 0)
    shots = fam.held_out(1, first.support, 1)
    grid = np.linspace(*fam.INPUT, 200)
    out = {"amplitude": A, "phase": phi, "x_shots": shots.Xs[0, :, 0].tolist(),
           "y_shots": shots.ys[0].tolist(), "x": grid.tolist(), "y": (A * np.sin(grid - phi)).tolist(),
           "predictions": {}}
    for name in ("maml", "pretrain"):
        if name not in states:
            continue
        state = states[name]
        path = adapt(state.params["theta"], put(shots.Xs), put(shots.ys), inner_lr=train.inner_rate(state),
                     inner_steps=steps, model=fam.model, l2=state.config.l2, return_trajectory=True)
        out["predictions"][name] = {
            str(k): _xp.to_numpy(fam.model.predict(path[k, 0, ...], put(grid[:, None])))[:, 0].tolist()
            for k in sorted({0, 1, steps})}
    return out


def report(runs, *, eval_tasks=500):
    """Evaluate trained runs (method -> ``(train.State, seconds)``, one family) on held-out tasks.

    Returns a JSON-ready dict: the configurations, the versions, the family, and per method the
    rate used, the training time, the training records and, for each step ``0..steps`` of plain
    adaptation, the mean query accuracy (classification) and loss with 95% intervals; plus paired
    differences (same tasks) of each meta-learner against the better baseline, on accuracy and loss
    for classification, on the loss (MSE) for regression.
    """
    states = {name: state for name, (state, _) in runs.items()}
    first = next(iter(states.values())).config
    if any(s.config.family != first.family or s.config.backend != first.backend for s in states.values()):
        raise ValueError("every run of a report must share one family and one backend")
    fam = tasks.family(first.family)
    baseline_names = plan(first.family).baselines
    steps = eval_steps(first)
    put, _ = _xp.backend(first.backend)
    held = fam.held_out(eval_tasks, first.support, _query_size(fam, first))
    data = [put(a) for a in (held.Xs, held.ys, held.Xq, held.yq)]
    results, per_task = {}, {}
    for name, state in states.items():
        c = state.config
        entries = [(name, train.inner_rate(state))]
        if name in baseline_names:
            entries.append((name + TUNED, tune_rate(state, put)))
        for key, rate in entries:
            accuracy, loss, finite = _curve(fam.model, state.params["theta"], data, rate, steps, c.l2,
                                            train.inner_mask(c.method, fam.model, put))
            per_task[key] = (None if accuracy is None else accuracy[-1], loss[-1], accuracy, loss)
            results[key] = {
                "label": LABELS[key], "config": c.as_dict(), "train_seconds": runs[name][1],
                "iterations": 0 if c.method in train.UNTRAINED else c.iterations,
                "rate": _xp.to_numpy(rate).tolist() if name in train.LEARNS_RATES else rate,
                "rate_chosen_on_training_tasks": key.endswith(TUNED),
                "diverged_after_step": None if finite == steps else finite,
                **_row(accuracy, loss),
                "curve": [[None if v != v else v for v in p] for p in state.curve],  # NaN: no interval (version 1)
                "train_objective": state.losses,
            }
        if name == "imaml":
            a, q = proximal_metrics(fam.model, state.params["theta"], *data, lam=c.lam, l2=c.l2)
            results["imaml-proximal"] = {"label": LABELS["imaml-proximal"],
                                         "accuracy": None if a is None else summarize(a).as_dict(),
                                         "loss": summarize(q).as_dict()}
    if held.truth is not None:
        a, q = query_metrics(fam.model, put(held.truth), data[2], data[3])
        results["truth"] = {"label": LABELS["truth"], "accuracy": summarize(_xp.to_numpy(a)).as_dict(),
                            "loss": summarize(_xp.to_numpy(q)).as_dict()}
    baselines = [b for b in per_task if b.removesuffix(TUNED) in baseline_names and per_task[b][1] is not None]
    if fam.regression:
        best = min(baselines, key=lambda b: per_task[b][1].mean()) if baselines else None
    else:
        best = max(baselines, key=lambda b: per_task[b][0].mean()) if baselines else None
    paired, paired_steps = {}, {}
    if best is not None:
        for m in per_task:
            if m in baselines or m.removesuffix(TUNED) in baseline_names:
                continue
            entry = {"against": best, "loss_difference": _paired(per_task[m][1], per_task[best][1])}
            if not fam.regression:
                entry["accuracy_difference"] = _paired(per_task[m][0], per_task[best][0])
            paired[m] = entry
            paired_steps[m] = {
                "loss_difference": [_paired(a, b) for a, b in zip(per_task[m][3], per_task[best][3], strict=True)],
                **({} if fam.regression else {"accuracy_difference": [
                    _paired(a, b) for a, b in zip(per_task[m][2], per_task[best][2], strict=True)]})}
    out = {
        "refmaml": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "platform": platform.platform(), "backend": first.backend, "family": fam.describe(),
        "metric": "mse" if fam.regression else "accuracy",
        "eval_tasks": eval_tasks, "query": _query_size(fam, first), "steps": steps, "seed": first.seed,
        "configs": {m: s.config.as_dict() for m, s in states.items()},
        "methods": results, "better_baseline": best, "paired": paired, "paired_by_step": paired_steps,
    }
    if fam.regression:
        out["example"] = _example(fam, states, put, first, steps)
    return out


def _cell(s):
    if s is None:
        return "diverged"
    if max(abs(s["mean"]), s["half_width"]) >= 1e4:
        return f"{s['mean']:.2e} ± {s['half_width']:.1e}"
    return f"{s['mean']:.3f} ± {s['half_width']:.3f}"


def _rate(r):
    rate = r["rate"]
    return f"{rate:g}" if isinstance(rate, float) else "learned"


def _verdict(d, sign):
    lo, hi = d["ci95"]
    return "better" if sign * lo > 0 and sign * hi > 0 else \
        "worse" if sign * lo < 0 and sign * hi < 0 else "no significant difference"


def same_as_untuned(report, name):
    """Whether the tuned row ``name`` repeats its untuned row: the tuning chose the shared rate,
    so every number is the same computation."""
    base = report["methods"].get(name.removesuffix(TUNED)) if name.endswith(TUNED) else None
    r = report["methods"][name]
    return base is not None and r["rate"] == base["rate"] and r["loss"] == base["loss"] \
        and r["accuracy"] == base["accuracy"]


def _blocks(rows, columns, width):
    """Split ``columns`` (header, cells) into blocks that each fit ``width`` columns next to the
    row labels ``rows`` (header, cells): the label columns repeat at the start of every block."""
    def need(col):
        return max(len(c) for c in [col[0], *col[1]])
    fixed = sum(need(c) + 2 for c in rows)
    blocks, used = [[]], fixed
    for col in columns:
        if blocks[-1] and used + need(col) > width:
            blocks.append([])
            used = fixed
        blocks[-1].append(col)
        used += need(col) + 2
    return blocks


def format_table(report, all_steps=False, width=WIDTH):
    """The results table: the query metric (accuracy, or MSE for regression; mean ± 95% half-width
    over tasks) after 0, 1 and K plain gradient steps (``all_steps``: after every step, in blocks of
    columns), then the paired differences; every line at most ``width`` columns. A tuned baseline
    row whose tuning chose the shared rate repeats its untuned row: it is printed as one note."""
    K = report["steps"]
    regression = report.get("metric") == "mse"
    support = next(iter(report["configs"].values()))["support"]
    shown = list(range(K + 1)) if all_steps else sorted({0, min(1, K), K})
    names = list(report["methods"])
    same = {n for n in names if same_as_untuned(report, n)}
    labels, rates, columns = [], [], {}
    for name in names:
        r = report["methods"][name]
        labels.append(r["label"])
        rates.append("-" if name in ("imaml-proximal", "truth") else _rate(r))
    for k in shown:
        cells = []
        for name in names:
            r = report["methods"][name]
            if name in same:
                cells.append("")
            elif name in ("imaml-proximal", "truth"):  # one number: at the last step
                cells.append(_cell(r["loss"] if regression else r["accuracy"]) if k == K else "")
            else:
                cells.append(_cell((r["loss"] if regression else r["accuracy"])[k]))
        columns[f"step {k}"] = cells
    if not regression:
        columns[f"loss, step {K}"] = ["" if n in same else _cell(report["methods"][n]["loss"] if n in (
            "imaml-proximal", "truth") else report["methods"][n]["loss"][-1]) for n in names]
    lines = []
    for block in _blocks([("method", labels), ("rate", rates)], list(columns.items()), width):
        head = ["method", "rate"] + [h for h, _ in block]
        rows = [[labels[i], rates[i]] + [cells[i] for _, cells in block] for i in range(len(names))]
        text = _text.table(head, rows).split("\n")
        lead = max(len(x) for x in ["method", *labels]) + 2 + max(len(x) for x in ["rate", *rates]) + 2
        for i, name in enumerate(names):
            line = text[2 + i]
            if name in same:
                note = "same as the row above (the tuning chose the shared rate)"
                line = line[:lead] + (note if lead + len(note) <= width else "= the row above")
            text[2 + i] = line
        lines += [line.rstrip() for line in text] + [""]
    fam = report["family"]
    what = "query MSE" if regression else "query accuracy"
    lines += _wrap(f"{what} on {report['eval_tasks']} held-out tasks of {fam['name']} "
                   f"({report.get('query', '')} query examples each; mean ± half-width of the 95% interval "
                   f"over tasks), after k plain gradient steps on each task's {support} support examples", width)
    if len(shown) < K + 1:
        lines.append(f"(steps {', '.join(map(str, shown[:-1]))} and {K} of 0-{K}; every step: --all-steps, "
                     "or results.json)")
    if report["paired"]:
        lines += _wrap(f"paired with the better baseline ({LABELS[report['better_baseline']]}) on the same "
                       f"tasks, after step {K} (difference, 95% interval):", width)
        kinds = (("loss", "MSE", -1),) if regression else (("accuracy", "accuracy", 1), ("loss", "loss", -1))
        pad = max(len(label) for _, label, _ in kinds)
        for name, p in report["paired"].items():
            for i, (what, label, sign) in enumerate(kinds):
                d = p[f"{what}_difference"]
                lead = f"  {LABELS[name] if i == 0 else '':<18} {label:<{pad}} "
                if d is None:
                    lines.append(f"{lead}diverged")
                    continue
                lo, hi = d["ci95"]
                lines.append(f"{lead}{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] {_verdict(d, sign)}")
    return "\n".join(lines)


def _wrap(text, width):
    return textwrap.wrap(text, width, break_on_hyphens=False)


def write(report, out):
    """Write ``results.json`` and, when matplotlib is installed, ``figure.png`` (:mod:`refmaml.plot`)
    into ``out``, each atomically (:mod:`refmaml._atomic`).

    Returns ``(json path, figure path or None)``.
    """
    json_path = os.path.join(out, "results.json")
    with _atomic.replacing(json_path) as f:
        json.dump(report, f, indent=1)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return json_path, None
    from . import plot

    figure = os.path.join(out, "figure.png")
    plot.draw(report, figure)
    return json_path, figure
