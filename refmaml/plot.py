"""The figure of a report (:mod:`refmaml.report`): query accuracy or MSE against adaptation steps,
the paired differences with the better baseline, the meta-training curves, and for the sinusoid one
held-out task with its predictions (the MAML paper's Figure 2); all with 95% intervals over
held-out tasks. Each panel has its own legend; a tuned baseline row that repeats its untuned row
(the tuning chose the shared rate) is drawn once.
"""

import numpy as np

from . import _atomic
from .report import LABELS, TUNED, same_as_untuned

FONTS = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9}


def _style(report):
    """A colour per method and a line style per rate choice, the same in every panel: tuned-rate
    rows dashed with open markers; rows drawn a little apart on the step axis so that rows that
    coincide stay visible. Tuned rows that repeat their untuned row are left out."""
    names = [n for n in report["methods"] if n not in ("imaml-proximal", "truth")
             and not same_as_untuned(report, n)]
    bases = list(dict.fromkeys(n.removesuffix(TUNED) for n in names))
    out = {}
    for i, name in enumerate(names):
        tuned = name.endswith(TUNED)
        out[name] = dict(color=f"C{bases.index(name.removesuffix(TUNED)) % 10}", ls="--" if tuned else "-",
                         marker="s" if tuned else "o", mfc="white" if tuned else None,
                         offset=0.12 * (i - (len(names) - 1) / 2) / max(len(names), 1))
    return out


def _label(report, name):
    """The legend's name of a row; a row whose tuned twin repeats it says so."""
    label = report["methods"][name]["label"]
    twin = name + TUNED
    if twin in report["methods"] and same_as_untuned(report, twin):
        label += f" (tuned rate: the same, {report['methods'][name]['rate']:g})"
    return label


def draw(report, path):
    """Write the figure to ``path`` (PNG, atomically). Regression (the sinusoid): one held-out task
    with its shots and the predictions of MAML and pre-training before adaptation and after 1 and K
    steps (the MAML paper's Figure 2); the MSE against adaptation steps; the paired differences with
    the better baseline; the meta-training curves. Classification: the accuracy against steps, the
    paired differences, the meta-training curves. All with 95% intervals over held-out tasks."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no backend switch

    with rc_context(FONTS):
        regression = report.get("metric") == "mse"
        if regression:
            fig = Figure(figsize=(15, 11.5), layout="constrained")
            axes = fig.subplots(2, 2)
            example, curves, paired, training = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]
            _plot_example(example, report)
        else:
            fig = Figure(figsize=(18, 6.5), layout="constrained")
            curves, paired, training = fig.subplots(1, 3)
        style = _style(report)
        _plot_curves(curves, report, style, regression)
        _plot_paired(paired, report, style, regression)
        _plot_training(training, report, style, regression)
        with _atomic.replacing(path, binary=True) as f:
            fig.savefig(f, dpi=100, format="png")


def _below(ax, ncol):
    """The panel's legend, under its axes."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=ncol, frameon=False)


def _plot_curves(curves, report, style, regression):
    metric = "loss" if regression else "accuracy"
    label_metric = "query MSE" if regression else "query accuracy"
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
        curves.errorbar(steps + st["offset"], mean, yerr=half, capsize=2, label=_label(report, name),
                        color=st["color"], ls=st["ls"], marker=st["marker"], mfc=st["mfc"], ms=4)
    notes = []
    for name in diverging:
        r = report["methods"][name]
        first = next((k for k, a in enumerate(r[metric]) if a is None or (top is not None and
                                                                         a["mean"] + a["half_width"] > top)), None)
        k = r.get("diverged_after_step")
        notes.append(f"{r['label']}: off the scale from step {first}"
                     + (f", overflows after step {k}" if k is not None else ""))
    if notes:
        curves.text(0.98, 0.5, "\n".join(notes), transform=curves.transAxes, ha="right", va="center",
                    bbox=dict(fc="white", ec="none", alpha=0.8))
    if "truth" in report["methods"] and not regression:
        curves.axhline(report["methods"]["truth"]["accuracy"]["mean"], color="k", ls=":", label=LABELS["truth"])
    curves.set(xlabel="plain gradient steps on the support set", ylabel=f"{label_metric} (held-out tasks)",
               title=f"{report['family']['name']}: {report['eval_tasks']} held-out tasks, 95% intervals")
    curves.set_xticks(steps)
    _below(curves, 2)


def _steps(k):
    return "before adaptation" if k == "0" else f"after {k} step{'' if k == '1' else 's'}"


def _plot_example(ax, report):
    ex = report["example"]
    ax.plot(ex["x"], ex["y"], color="k", lw=2, label="true function")
    ax.plot(ex["x_shots"], ex["y_shots"], "^", color="k", ms=8, label=f"the {len(ex['x_shots'])} shots")
    colours = {"maml": "C2", "pretrain": "C1"}
    names = {"maml": "MAML", "pretrain": "pre-training"}
    for name, predictions in ex["predictions"].items():
        for k, values in predictions.items():
            style = {"0": ":", "1": "--"}.get(k, "-")
            ax.plot(ex["x"], values, style, color=colours[name], lw=1.8, label=f"{names[name]}, {_steps(k)}")
    ax.set(xlabel="x", ylabel="y", title=f"one held-out task, y = {ex['amplitude']:.2f} sin(x - {ex['phase']:.2f})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False,
              title="before adaptation (dotted) MAML and pre-training predict nearly the same curve,\n"
                    "close to the average of all sines; the steps tell them apart", title_fontsize=9)


def _plot_paired(ax, report, style, regression):
    """The paired difference of each meta-learner with the better baseline after the last step, its
    value written beside it: a tie shows as an interval across 0."""
    kind = "loss_difference" if regression else "accuracy_difference"
    names = list(report["paired"])
    ends = [0.0]
    for name in names:
        d = report["paired"][name][kind]
        if d is not None:
            ends += list(d["ci95"])
    lo_all, hi_all = min(ends), max(ends)
    span = (hi_all - lo_all) or 1.0
    ax.set_xlim(lo_all - 0.08 * span, hi_all + 0.08 * span)
    for i, name in enumerate(names):
        d = report["paired"][name][kind]
        colour = style[name]["color"] if name in style else "k"
        if d is None:  # diverged: no difference to show
            ax.text(0.5, i, f"{LABELS[name]} diverged: no difference to show", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", color=colour)
            continue
        lo, hi = d["ci95"]
        ax.errorbar(d["mean"], i, xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", capsize=4, color=colour)
        ax.annotate(f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]", (d["mean"], i), xytext=(0, 9),
                    textcoords="offset points", ha="center", color=colour)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_yticks(range(len(names)), [LABELS[n] for n in names])
    what = "MSE" if regression else "accuracy"
    ax.set(xlabel=f"{what} difference with {LABELS.get(report['better_baseline'], '-')} "
                  + ("(left of 0: lower MSE)" if regression else "(right of 0: more accurate)"),
           title=f"paired with the better baseline on the same tasks, step {report['steps']}, 95% intervals")


def _plot_training(ax, report, style, regression):
    tasks_ = next(iter(report["configs"].values()))["curve_tasks"]
    steps = {}
    for name, r in report["methods"].items():
        if name not in style or name.endswith(TUNED) or not r.get("curve"):
            continue
        steps.setdefault(r["config"]["inner_steps"], []).append(name)
    usual = max(steps, key=lambda K: len(steps[K])) if steps else 0
    for K, names in steps.items():
        for name in names:
            r = report["methods"][name]
            curve = np.array(r["curve"], dtype=float)
            it, mean = curve[:, 0], curve[:, 1]
            own = K != usual
            ax.plot(it, mean, marker=".", color=style[name]["color"], ls="--" if own else "-",
                    label=r["label"] + (f": after K = {K} steps, not comparable" if own else ""))
            if curve.shape[1] > 2 and np.all(np.isfinite(curve[:, 2])):
                ax.fill_between(it, mean - curve[:, 2], mean + curve[:, 2], color=style[name]["color"], alpha=0.2)
    if regression:
        ax.set_yscale("log")
    what = "query MSE" if regression else "query accuracy"
    ax.set(xlabel="meta-training iteration",
           ylabel=f"{what} after K = {usual} step{'' if usual == 1 else 's'}"
                  + (" (dashed: own K)" if len(steps) > 1 else ""),
           title=f"meta-training: {what} after the training's K inner steps,\n"
                 f"first {tasks_} held-out tasks, 95% intervals")
    if steps:
        _below(ax, 2)
