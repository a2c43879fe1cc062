"""The comparison behind ``refmaml demo``: every method trained on one task family, then
evaluated on the same held-out tasks (``derivations/training.md``, "The demo").

For each method: meta-train (:mod:`refmaml.train`), then on ``eval_tasks`` held-out
tasks record the query accuracy and loss after ``0..inner_steps`` plain gradient
steps from the learned initialisation, with the learned rates where the method has
them (Meta-SGD), else the shared rate ``inner_lr``: the two baselines fine-tune with
it too, so that only the initialisation differs. Each baseline is also scored with
its own rate, from :data:`RATE_GRID`, the one that gives the lowest mean query loss
after ``inner_steps`` steps on training tasks (never on held-out tasks). The paired
comparisons are against the best of these four baseline rows. iMAML is also
scored at its own proximal solution; synthetic families also report the accuracy
of each task's true parameters, the ceiling no method can pass on average.
"""

import json
import os
import platform
import time

import numpy as np

from . import __version__, _text, _xp, tasks, train
from .evaluate import adaptation_curve, proximal_metrics, query_metrics, summarize

METHODS = ("zero", "pretrain", "maml", "fomaml", "reptile", "imaml", "metasgd")
BASELINES = ("zero", "pretrain")
TUNED = "-tuned"
LABELS = {"zero": "zero init + fine-tune", "pretrain": "multi-task pre-training + fine-tune",
          "zero-tuned": "zero init + fine-tune, tuned rate",
          "pretrain-tuned": "pre-training + fine-tune, tuned rate",
          "maml": "MAML (exact)", "fomaml": "first-order MAML", "reptile": "Reptile",
          "imaml": "iMAML", "metasgd": "Meta-SGD", "imaml-proximal": "iMAML, proximal solve",
          "truth": "true task parameters (ceiling)"}
RATE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TUNE_TASKS = 200

# Settings per family: chosen so that the demo runs in well under a minute on two cores.
PRESETS = {
    "synthetic-binary": dict(inner_lr=0.3, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                             support=10, query=15, lam=1.0),
    "synthetic-nway": dict(inner_lr=0.5, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                           support=15, query=15, lam=1.0),
    "digits-binary": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                          support=10, query=20, lam=1.0),
    "digits-nway": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                        support=15, query=30, lam=1.0),
}


def configs(family="synthetic-binary", *, methods=METHODS, seed=0, backend="numpy", **overrides):
    """The training configuration of each method: the family's preset, then ``overrides``."""
    if family not in PRESETS:
        raise ValueError(f"family must be one of {', '.join(PRESETS)}; got {family!r}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of {', '.join(METHODS)}; "
                         f"got {list(methods)}")
    base = {**PRESETS[family], **overrides, "family": family, "seed": seed, "backend": backend}
    return {m: train.Config(**{**base, "method": m}).validated() for m in methods}


def tune_rate(state, put):
    """The fine-tuning rate of a baseline: lowest mean query loss after ``inner_steps`` steps
    on ``TUNE_TASKS`` training tasks (their indices from a generator of their own)."""
    c = state.config
    family = tasks.family(c.family)
    indices = np.random.default_rng([c.seed, 1]).integers(0, tasks.INDEX_LIMIT, TUNE_TASKS)
    b = family.batch("train", indices, c.support, c.query)
    data = [put(a) for a in (b.Xs, b.ys, b.Xq, b.yq)]
    scores = {}
    for rate in RATE_GRID:
        try:
            _, loss = adaptation_curve(family.model, state.params["theta"], *data, inner_lr=rate,
                                       steps=c.inner_steps, l2=c.l2)
        except ValueError:  # the inner loop diverged at this rate
            continue
        scores[rate] = float(loss[-1].mean())
    return min(scores, key=scores.get)


def _row(accuracy, loss):
    """Per-step summaries of ``(steps + 1, T)`` accuracy and loss."""
    return {"accuracy": [summarize(a).as_dict() for a in accuracy],
            "loss": [summarize(q).as_dict() for q in loss]}


def _paired(a, b):
    """Mean of the per-task difference ``a - b`` with its 95% interval (the same tasks for both)."""
    return summarize(np.asarray(a) - np.asarray(b)).as_dict()


def compare(family="synthetic-binary", *, methods=METHODS, seed=0, backend="numpy", eval_tasks=500,
            progress=False, **overrides):
    """Train every method in ``methods`` and evaluate it on ``eval_tasks`` held-out tasks.

    Returns the report of :func:`report`.
    """
    runs = {}
    for name, c in configs(family, methods=methods, seed=seed, backend=backend, **overrides).items():
        t0 = time.perf_counter()
        state = train.train(c, progress=progress)
        runs[name] = (state, time.perf_counter() - t0)
    return report(runs, eval_tasks=eval_tasks)


def report(runs, *, eval_tasks=500):
    """Evaluate trained runs (method -> ``(train.State, seconds)``, one family) on held-out tasks.

    Returns a JSON-ready dict: the configurations, the versions, the family, and per
    method the rate used, the training time, the training records and, for each step
    ``0..inner_steps``, the mean query accuracy and loss with 95% intervals; plus paired
    differences (same tasks) of each meta-learner against the better baseline.
    """
    states = {name: state for name, (state, _) in runs.items()}
    first = next(iter(states.values())).config
    if any(s.config.family != first.family or s.config.backend != first.backend for s in states.values()):
        raise ValueError("every run of a report must share one family and one backend")
    fam = tasks.family(first.family)
    put, _ = _xp.backend(first.backend)
    held = fam.held_out(eval_tasks, first.support, first.query)
    data = [put(a) for a in (held.Xs, held.ys, held.Xq, held.yq)]
    results, per_task = {}, {}
    for name, state in states.items():
        c = state.config
        entries = [(name, train.inner_rate(state))]
        if name in BASELINES:
            entries.append((name + TUNED, tune_rate(state, put)))
        for key, rate in entries:
            accuracy, loss = adaptation_curve(fam.model, state.params["theta"], *data, inner_lr=rate,
                                              steps=first.inner_steps, l2=c.l2)
            per_task[key] = (accuracy[-1], loss[-1])
            results[key] = {
                "label": LABELS[key], "config": c.as_dict(), "train_seconds": runs[name][1],
                "rate": _xp.to_numpy(rate).tolist() if name in train.LEARNS_RATES else rate,
                "rate_chosen_on_training_tasks": key.endswith(TUNED),
                **_row(accuracy, loss),
                "curve": [list(p) for p in state.curve],
                "train_objective": state.losses,
            }
        if name == "imaml":
            a, q = proximal_metrics(fam.model, state.params["theta"], *data, lam=c.lam, l2=c.l2)
            results["imaml-proximal"] = {"label": LABELS["imaml-proximal"],
                                         "accuracy": summarize(a).as_dict(), "loss": summarize(q).as_dict()}
    if held.truth is not None:
        a, q = query_metrics(fam.model, put(held.truth), data[2], data[3])
        results["truth"] = {"label": LABELS["truth"], "accuracy": summarize(_xp.to_numpy(a)).as_dict(),
                            "loss": summarize(_xp.to_numpy(q)).as_dict()}
    baselines = [b for b in per_task if b.removesuffix(TUNED) in BASELINES]
    best = max(baselines, key=lambda b: per_task[b][0].mean()) if baselines else None
    paired = {}
    if best is not None:
        paired = {m: {"against": best,
                      "accuracy_difference": _paired(per_task[m][0], per_task[best][0]),
                      "loss_difference": _paired(per_task[m][1], per_task[best][1])}
                  for m in per_task if m not in baselines}
    return {
        "refmaml": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "platform": platform.platform(), "backend": first.backend, "family": fam.describe(),
        "eval_tasks": eval_tasks, "steps": first.inner_steps, "seed": first.seed,
        "configs": {m: s.config.as_dict() for m, s in states.items()},
        "methods": results, "better_baseline": best, "paired": paired,
    }


def _cell(s):
    return f"{s['mean']:.3f} ± {s['half_width']:.3f}"


def format_table(report):
    """The results table: query accuracy (mean ± 95% half-width over tasks) after each step."""
    K = report["steps"]
    head = ["method", "rate"] + [f"step {k}" for k in range(K + 1)] + [f"loss, step {K}"]
    rows = []
    for name, r in report["methods"].items():
        if name in ("imaml-proximal", "truth"):
            cells = [r["label"], "-"] + ["" for _ in range(K)] + [_cell(r["accuracy"]), _cell(r["loss"])]
        else:
            rate = r["rate"]
            rate = f"{rate:g}{' (tuned)' if r['rate_chosen_on_training_tasks'] else ''}" \
                if isinstance(rate, float) else "learned"
            cells = [r["label"], rate] + [_cell(a) for a in r["accuracy"]] + [_cell(r["loss"][-1])]
        rows.append(cells)
    lines = [_text.table(head, rows)]
    fam = report["family"]
    lines.append("")
    lines.append(f"query accuracy on {report['eval_tasks']} held-out tasks of {fam['name']} "
                 f"(mean ± half-width of the 95% interval over tasks), after k plain gradient steps "
                 f"on each task's {next(iter(report['configs'].values()))['support']} support examples")
    if report["paired"]:
        lines.append(f"paired with the better baseline ({LABELS[report['better_baseline']]}) on the same "
                     f"tasks, after step {report['steps']} (difference, 95% interval):")
        for name, p in report["paired"].items():
            cells = []
            for what, sign in (("accuracy", 1), ("loss", -1)):
                d = p[f"{what}_difference"]
                lo, hi = d["ci95"]
                verdict = "better" if sign * lo > 0 and sign * hi > 0 else \
                    "worse" if sign * lo < 0 and sign * hi < 0 else "no significant difference"
                cells.append(f"{what} {d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict:<25}")
            lines.append((f"  {LABELS[name]:<18} " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def plot(report, path):
    """Write the figure: accuracy against adaptation steps (95% intervals) and the training curves."""
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no backend switch

    fig = Figure(figsize=(12, 4.8))
    left, right = fig.subplots(1, 2)
    steps = np.arange(report["steps"] + 1)
    for name, r in report["methods"].items():
        if name in ("imaml-proximal", "truth"):
            continue
        color = f"C{METHODS.index(name.removesuffix(TUNED))}"
        mean = np.array([a["mean"] for a in r["accuracy"]])
        half = np.array([a["half_width"] for a in r["accuracy"]])
        left.errorbar(steps, mean, yerr=half, marker="o", capsize=3, label=r["label"], color=color,
                      ls="--" if name.endswith(TUNED) else "-")
        if r["curve"] and not name.endswith(TUNED):
            it, acc = np.array(r["curve"]).T
            right.plot(it, acc, marker=".", label=r["label"], color=color)
    if "truth" in report["methods"]:
        left.axhline(report["methods"]["truth"]["accuracy"]["mean"], color="k", ls=":",
                     label=LABELS["truth"])
    left.set(xlabel="gradient steps on the support set", ylabel="query accuracy (held-out tasks)",
             title=f"{report['family']['name']}: adaptation ({report['eval_tasks']} tasks, 95% CI)")
    right.set(xlabel="meta-training iteration",
              ylabel=f"query accuracy after {report['steps']} steps",
              title="meta-training (held-out tasks)")
    for ax, where in ((left, "lower right"), (right, "best")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc=where)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(report, out):
    """Write ``results.json`` and, when matplotlib is installed, ``figure.png`` into ``out``.

    Returns ``(json path, figure path or None)``.
    """
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, "results.json")
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, json_path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return json_path, None
    figure = os.path.join(out, "figure.png")
    plot(report, figure)
    return json_path, figure

