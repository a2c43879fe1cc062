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

import dataclasses
import json
import os
import platform
import time

import numpy as np

from . import __version__, _text, _xp, tasks, train
from .evaluate import adaptation_curve, proximal_metrics, query_metrics, summarize
from .maml import adapt

METHODS = ("zero", "pretrain", "maml", "fomaml", "reptile", "imaml", "metasgd")
BASELINES = ("zero", "pretrain")
NETWORK_METHODS = ("random", "pretrain", "maml", "fomaml", "reptile", "metasgd")
NETWORK_BASELINES = ("random", "pretrain")
TUNED = "-tuned"
LABELS = {"zero": "zero init + fine-tune", "pretrain": "multi-task pre-training + fine-tune",
          "zero-tuned": "zero init + fine-tune, tuned rate",
          "pretrain-tuned": "pre-training + fine-tune, tuned rate",
          "random": "random init + fine-tune", "random-tuned": "random init + fine-tune, tuned rate",
          "maml": "MAML (exact)", "fomaml": "first-order MAML", "reptile": "Reptile",
          "imaml": "iMAML", "metasgd": "Meta-SGD", "imaml-proximal": "iMAML, proximal solve",
          "truth": "true task parameters (ceiling)"}
RATE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TUNE_TASKS = 200

# Settings per family: the linear families run in well under a minute on two cores; the sinusoid
# takes the MAML paper's settings (section 5.1) and runs in about 3 minutes.
PRESETS = {
    "synthetic-binary": dict(inner_lr=0.3, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                             support=10, query=15, lam=1.0),
    "synthetic-nway": dict(inner_lr=0.5, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                           support=15, query=15, lam=1.0),
    "digits-binary": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                          support=10, query=20, lam=1.0),
    "digits-nway": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                        support=15, query=30, lam=1.0),
    "sinusoid": dict(inner_lr=0.01, inner_steps=1, iterations=20000, meta_batch=25, outer_lr=0.001,
                     support=10, query=10, lam=1.0, eval_every=1000, curve_tasks=100),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the demo runs on a family: the methods, which of them are baselines, settings that
    differ by method, and the number of plain gradient steps of the evaluation."""

    methods: tuple
    baselines: tuple
    per_method: dict
    eval_steps: int = None  # None: the inner_steps of training


PLANS = {
    "sinusoid": Plan(NETWORK_METHODS, NETWORK_BASELINES, {
        # Reptile with one step is multi-task training on the support sets (training.md (T13)); with
        # five, each of its iterations costs twice one of MAML's, so it takes half as many.
        "reptile": dict(inner_steps=5, iterations=10000),
    }, eval_steps=10),
}
LINEAR_PLAN = Plan(METHODS, BASELINES, {})


def plan(family):
    """The :class:`Plan` of ``family``."""
    return PLANS.get(family, LINEAR_PLAN)


def configs(family="sinusoid", *, methods=None, seed=0, backend="numpy", **overrides):
    """The training configuration of each method: the family's preset, the method's own settings
    (:data:`PLANS`), then ``overrides``."""
    if family not in PRESETS:
        raise ValueError(f"family must be one of {', '.join(PRESETS)}; got {family!r}")
    known = plan(family).methods
    methods = known if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(known))
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of {', '.join(known)}; got {list(methods)}")
    out = {}
    for m in methods:
        fields = {**PRESETS[family], **plan(family).per_method.get(m, {}), **overrides,
                  "family": family, "seed": seed, "backend": backend, "method": m}
        out[m] = train.Config(**fields).validated()
    return out


def _eval_steps(config):
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
                                       steps=_eval_steps(c), l2=c.l2)
        except ValueError:  # the inner loop diverged at this rate
            continue
        scores[rate] = float(loss[-1].mean())
    return min(scores, key=scores.get)


def _curve(model, theta, data, rate, steps, l2):
    """:func:`refmaml.evaluate.adaptation_curve`, or, where the adaptation overflows before ``steps``
    (learned rates repeated beyond the steps they were trained for can diverge), the curve up to the
    last step that stays finite, padded with None: ``(accuracy, loss, steps that stayed finite)``."""
    for k in range(steps, -1, -1):
        try:
            accuracy, loss = adaptation_curve(model, theta, *data, inner_lr=rate, steps=k, l2=l2)
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


def compare(family="sinusoid", *, methods=None, seed=0, backend="numpy", eval_tasks=500,
            progress=False, **overrides):
    """Train every method of the family's plan (or ``methods``) and evaluate it on ``eval_tasks``
    held-out tasks. Returns the report of :func:`report`."""
    runs = {}
    for name, c in configs(family, methods=methods, seed=seed, backend=backend, **overrides).items():
        t0 = time.perf_counter()
        state = train.train(c, progress=progress)
        runs[name] = (state, time.perf_counter() - t0)
    return report(runs, eval_tasks=eval_tasks)


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
    steps = _eval_steps(first)
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
            accuracy, loss, finite = _curve(fam.model, state.params["theta"], data, rate, steps, c.l2)
            per_task[key] = (None if accuracy is None else accuracy[-1], loss[-1], accuracy, loss)
            results[key] = {
                "label": LABELS[key], "config": c.as_dict(), "train_seconds": runs[name][1],
                "iterations": 0 if c.method in train.UNTRAINED else c.iterations,
                "rate": _xp.to_numpy(rate).tolist() if name in train.LEARNS_RATES else rate,
                "rate_chosen_on_training_tasks": key.endswith(TUNED),
                "diverged_after_step": None if finite == steps else finite,
                **_row(accuracy, loss),
                "curve": [list(p) for p in state.curve],
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
    if not isinstance(rate, float):
        return "learned"
    return f"{rate:g}{' (tuned)' if r['rate_chosen_on_training_tasks'] else ''}"


def _verdict(d, sign):
    lo, hi = d["ci95"]
    return "better" if sign * lo > 0 and sign * hi > 0 else \
        "worse" if sign * lo < 0 and sign * hi < 0 else "no significant difference"


def format_table(report):
    """The results table: the query metric (accuracy, or MSE for regression; mean ± 95% half-width
    over tasks) after each number of plain gradient steps, then the paired differences."""
    K = report["steps"]
    regression = report.get("metric") == "mse"
    support = next(iter(report["configs"].values()))["support"]
    head = ["method", "rate"] + [f"step {k}" for k in range(K + 1)] + ([] if regression else [f"loss, step {K}"])
    rows = []
    for name, r in report["methods"].items():
        if name in ("imaml-proximal", "truth"):
            last = [_cell(r["loss"])] if regression else [_cell(r["accuracy"]), _cell(r["loss"])]
            cells = [r["label"], "-"] + ["" for _ in range(K)] + last
        elif regression:
            cells = [r["label"], _rate(r)] + [_cell(q) for q in r["loss"]]
        else:
            cells = [r["label"], _rate(r)] + [_cell(a) for a in r["accuracy"]] + [_cell(r["loss"][-1])]
        rows.append(cells)
    lines = [_text.table(head, rows), ""]
    fam = report["family"]
    what = "query MSE" if regression else "query accuracy"
    lines.append(f"{what} on {report['eval_tasks']} held-out tasks of {fam['name']} "
                 f"({report.get('query', '')} query examples each; mean ± half-width of the 95% interval over "
                 f"tasks), after k plain gradient steps on each task's {support} support examples")
    if report["paired"]:
        lines.append(f"paired with the better baseline ({LABELS[report['better_baseline']]}) on the same "
                     f"tasks, after step {K} (difference, 95% interval):")
        kinds = (("loss", -1),) if regression else (("accuracy", 1), ("loss", -1))
        for name, p in report["paired"].items():
            cells = []
            for what, sign in kinds:
                d = p[f"{what}_difference"]
                if d is None:
                    cells.append(f"{what}: diverged")
                    continue
                lo, hi = d["ci95"]
                label = "MSE" if regression else what
                cells.append(f"{label} {d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] {_verdict(d, sign):<25}")
            lines.append((f"  {LABELS[name]:<18} " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _style(report):
    """A colour per method and a line style per rate choice, the same in every panel: tuned-rate
    rows dashed with open markers; rows drawn a little apart on the step axis so that rows that
    coincide stay visible."""
    names = [n for n in report["methods"] if n not in ("imaml-proximal", "truth")]
    bases = list(dict.fromkeys(n.removesuffix(TUNED) for n in names))
    out = {}
    for i, name in enumerate(names):
        tuned = name.endswith(TUNED)
        out[name] = dict(color=f"C{bases.index(name.removesuffix(TUNED)) % 10}", ls="--" if tuned else "-",
                         marker="s" if tuned else "o", mfc="white" if tuned else None,
                         offset=0.12 * (i - (len(names) - 1) / 2) / max(len(names), 1))
    return out


def plot(report, path):
    """Write the figure. Regression (the sinusoid): one held-out task with its shots and the
    predictions of MAML and pre-training before adaptation and after 1 and K steps (the MAML
    paper's Figure 2); the MSE against adaptation steps; the paired differences with the better
    baseline; the meta-training curves. Classification: the accuracy against steps, the paired
    differences, the meta-training curves. All with 95% intervals over held-out tasks."""
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no backend switch

    regression = report.get("metric") == "mse"
    metric = "loss" if regression else "accuracy"
    label_metric = "query MSE" if regression else "query accuracy"
    style = _style(report)
    fig = Figure(figsize=(14, 9.5))
    axes = fig.subplots(2, 2)
    example, curves, paired, training = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]
    if regression:
        _plot_example(example, report)
    else:
        curves, paired, training = axes[0, 0], axes[0, 1], axes[1, 0]
        axes[1, 1].axis("off")
    steps = np.arange(report["steps"] + 1)
    rows = {}
    for name, r in report["methods"].items():
        if name in style:
            values = r[metric]
            rows[name] = (np.array([np.nan if a is None else a["mean"] for a in values]),
                          np.array([np.nan if a is None else a["half_width"] for a in values]))
    diverging = [n for n, (mean, _) in rows.items() if not np.all(np.isfinite(mean))
                 or report["methods"][n].get("diverged_after_step") is not None]
    top = None
    if regression:  # the scale of the rows that stay finite; a diverging row runs off the top
        kept = [rows[n] for n in rows if n not in diverging] or list(rows.values())
        low = min(float(np.nanmin(m - h)) for m, h in kept)
        top = 1.5 * max(float(np.nanmax(m + h)) for m, h in kept)
        curves.set_yscale("log")
        curves.set_ylim(max(low, 1e-6) / 1.5, top)
    for name, (mean, half) in rows.items():
        st = style[name]
        if top is not None:
            off = ~(mean + half <= top)
            mean, half = np.where(off, np.nan, mean), np.where(off, np.nan, half)
        curves.errorbar(steps + st["offset"], mean, yerr=half, capsize=2, label=report["methods"][name]["label"],
                        color=st["color"], ls=st["ls"], marker=st["marker"], mfc=st["mfc"], ms=4)
    for i, name in enumerate(diverging):
        r = report["methods"][name]
        first = next((k for k, a in enumerate(r[metric]) if a is None or (top is not None and
                                                                         a["mean"] + a["half_width"] > top)), None)
        k = r.get("diverged_after_step")
        curves.annotate(f"{r['label']}: off the scale from step {first}"
                        + (f", overflows after step {k}" if k is not None else ""),
                        xy=(0.98, 0.5 - 0.06 * i), xycoords="axes fraction", ha="right", fontsize=8,
                        color=style[name]["color"], bbox=dict(fc="white", ec="none", alpha=0.8))
    if "truth" in report["methods"] and not regression:
        curves.axhline(report["methods"]["truth"]["accuracy"]["mean"], color="k", ls=":", label=LABELS["truth"])
    curves.set(xlabel="plain gradient steps on the support set", ylabel=f"{label_metric} (held-out tasks)",
               title=f"{report['family']['name']}: {report['eval_tasks']} held-out tasks, 95% intervals")
    _plot_paired(paired, report, style, regression)
    _plot_training(training, report, style, regression)
    handles, labels = curves.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


def _plot_example(ax, report):
    ex = report["example"]
    ax.plot(ex["x"], ex["y"], color="k", lw=2, label="true function")
    ax.plot(ex["x_shots"], ex["y_shots"], "^", color="k", ms=8, label=f"{len(ex['x_shots'])} shots")
    colours = {"maml": "C2", "pretrain": "C1"}
    for name, predictions in ex["predictions"].items():
        for k, values in predictions.items():
            style = {"0": ":", "1": "--"}.get(k, "-")
            ax.plot(ex["x"], values, style, color=colours[name], label=f"{LABELS[name]}, {k} step(s)")
    ax.set(xlabel="x", ylabel="y", title=f"one held-out task, y = {ex['amplitude']:.2f} sin(x - {ex['phase']:.2f})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=3, frameon=False)


def _plot_paired(ax, report, style, regression):
    """The paired difference of each meta-learner with the better baseline after the last step: a
    tie shows as an interval across 0."""
    kind = "loss_difference" if regression else "accuracy_difference"
    names = list(report["paired"])
    for i, name in enumerate(names):
        d = report["paired"][name][kind]
        if d is None:  # diverged: no difference to show
            ax.annotate("diverged", (0.5, i), xycoords=("axes fraction", "data"), fontsize=8, ha="center",
                        va="center", color=style[name]["color"])
            continue
        lo, hi = d["ci95"]
        ax.errorbar(d["mean"], i, xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", capsize=4,
                    color=style[name]["color"])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    what = "MSE" if regression else "accuracy"
    ax.set(xlabel=f"{what} difference with {LABELS.get(report['better_baseline'], '-')}",
           title=f"paired on the same tasks, step {report['steps']}, 95% intervals "
                 + ("(left of 0: lower MSE)" if regression else "(right of 0: more accurate)"))


def _plot_training(ax, report, style, regression):
    tasks_ = next(iter(report["configs"].values()))["curve_tasks"]
    steps = {}
    for name, r in report["methods"].items():
        if name not in style or name.endswith(TUNED) or not r.get("curve"):
            continue
        K = r["config"]["inner_steps"]
        steps.setdefault(K, []).append(LABELS[name])
        curve = np.array(r["curve"], dtype=float)
        it, mean = curve[:, 0], curve[:, 1]
        ax.plot(it, mean, marker=".", color=style[name]["color"], label=r["label"])
        if curve.shape[1] > 2 and np.all(np.isfinite(curve[:, 2])):
            ax.fill_between(it, mean - curve[:, 2], mean + curve[:, 2], color=style[name]["color"], alpha=0.2)
    if regression:
        ax.set_yscale("log")
    usual = max(steps, key=lambda K: len(steps[K])) if steps else 0
    own = "; ".join(f"{', '.join(names)}: K = {K}" for K, names in steps.items() if K != usual)
    K = usual
    ax.set(xlabel="meta-training iteration" + (f" ({own}; the others K = {usual})" if own else ""),
           ylabel=f"{'query MSE' if regression else 'query accuracy'} after {'K' if own else K} step(s)",
           title=f"meta-training, first {tasks_} held-out tasks, 95% intervals")


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

