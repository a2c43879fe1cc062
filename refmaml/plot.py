"""The figure of a report (:mod:`refmaml.report`): query accuracy or MSE against adaptation steps,
the paired differences with the better baseline, the meta-training curves, and for the sinusoid one
held-out task with its predictions (the MAML paper's Figure 2); all with 95% intervals over
held-out tasks.
"""

import numpy as np

from . import _atomic
from .report import LABELS, TUNED

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


def draw(report, path):
    """Write the figure to ``path`` (PNG, atomically). Regression (the sinusoid): one held-out task
    with its shots and the predictions of MAML and pre-training before adaptation and after 1 and K
    steps (the MAML paper's Figure 2); the MSE against adaptation steps; the paired differences with
    the better baseline; the meta-training curves. Classification: the accuracy against steps, the
    paired differences, the meta-training curves. All with 95% intervals over held-out tasks."""
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
    with _atomic.replacing(path, binary=True) as f:
        fig.savefig(f, dpi=110, format="png")


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
