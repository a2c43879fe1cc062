"""The demo: the comparison's report, its table, its files, and the `refmaml demo` / `train` commands."""

import json
import math
import sys

import numpy as np
import pytest

from refmaml import cli, demo, evaluate, tasks

QUICK = dict(iterations=30, meta_batch=4, eval_every=10, curve_tasks=5)


@pytest.fixture(scope="module")
def report():
    return demo.compare("synthetic-binary", eval_tasks=40, **QUICK)


def test_summarize_is_the_normal_interval_of_the_mean():
    """(T12) against the formula evaluated independently (scipy's normal quantile)."""
    stats = pytest.importorskip("scipy.stats")
    a = np.random.default_rng(0).random(37)
    s = evaluate.summarize(a)
    half = stats.norm.ppf(0.975) * np.std(a, ddof=1) / math.sqrt(37)
    assert s.mean == pytest.approx(a.mean(), rel=1e-15)
    assert s.half_width == pytest.approx(half, rel=1e-14)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.summarize([1.0])


def test_accuracy_counts_ties_as_a_random_tie_break():
    """(T10): theta = 0 ties every class, scoring 1/C; a clear prediction scores 0 or 1."""
    X = np.ones((1, 4, 2))
    a, _ = evaluate.query_metrics("softmax", np.zeros((1, 2, 3)), X, np.array([[0, 1, 2, 2]]))
    assert a[0] == pytest.approx(1 / 3, rel=1e-15)
    theta = np.array([[[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])  # classes 1 and 2 tie, class 0 loses
    a, q = evaluate.query_metrics("softmax", theta, X, np.array([[0, 1, 2, 2]]))
    assert a[0] == pytest.approx((0 + 0.5 + 0.5 + 0.5) / 4, rel=1e-15)
    a, _ = evaluate.query_metrics("logistic", np.array([[2.0, 0.0]]), X, np.array([[1.0, 1.0, 0.0, 1.0]]))
    assert a[0] == 0.75


def test_the_report_holds_every_method_on_the_same_tasks(report):
    tuned = {b + demo.TUNED for b in demo.BASELINES}
    assert set(report["methods"]) == set(demo.METHODS) | {"imaml-proximal", "truth"} | tuned
    K = report["steps"]
    for name in demo.METHODS:
        r = report["methods"][name]
        assert len(r["accuracy"]) == K + 1 and len(r["loss"]) == K + 1
        for s in r["accuracy"] + r["loss"]:
            lo, hi = s["ci95"]
            assert lo <= s["mean"] <= hi and s["tasks"] == 40
    assert report["methods"]["zero"]["accuracy"][0]["mean"] == 0.5  # theta = 0: every example a tie
    assert report["methods"]["pretrain-tuned"]["rate"] in demo.RATE_GRID
    assert report["methods"]["pretrain"]["rate"] == report["methods"]["maml"]["rate"]  # shared rate
    assert len(report["methods"]["metasgd"]["rate"]) == tasks.family("synthetic-binary").d
    assert report["better_baseline"] in set(demo.BASELINES) | tuned
    assert set(report["paired"]) == set(demo.METHODS) - set(demo.BASELINES)


def test_paired_differences_are_computed_on_the_same_tasks(report):
    """Recompute one paired difference from the per-task accuracies (T12)."""
    fam = tasks.family("synthetic-binary")
    held = fam.held_out(40, 10, 15)
    per = {}
    for name in ("metasgd", report["better_baseline"]):
        r = report["methods"][name]
        rate = np.array(r["rate"]) if name == "metasgd" else r["rate"]
        theta = _theta_of(name.removesuffix(demo.TUNED))
        acc, _ = evaluate.adaptation_curve("logistic", theta, held.Xs, held.ys, held.Xq, held.yq,
                                           inner_lr=rate, steps=report["steps"])
        per[name] = acc[-1]
        assert np.mean(acc[-1]) == pytest.approx(r["accuracy"][-1]["mean"], rel=1e-12)
    d = evaluate.summarize(per["metasgd"] - per[report["better_baseline"]])
    assert report["paired"]["metasgd"]["accuracy_difference"]["mean"] == pytest.approx(d.mean, rel=1e-12)


def _theta_of(name):
    from refmaml import train

    cfg = demo.configs("synthetic-binary", methods=(name,), **QUICK)[name]
    return train.train(cfg).params["theta"]


def test_table_and_files(report, tmp_path):
    text = demo.format_table(report)
    for name in report["methods"]:
        assert demo.LABELS[name] in text
    assert "paired with the better baseline" in text
    json_path, figure = demo.write(report, tmp_path / "out")
    with open(json_path) as f:
        assert json.load(f)["methods"]["maml"]["config"]["method"] == "maml"
    if figure is not None:
        with open(figure, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_command_meets_its_claims(tmp_path, capsys):
    """`refmaml demo` as a new user runs it, the sinusoid of the MAML paper: after one step MAML's
    query MSE is at most 0.45, and every baseline's MSE is at least three times MAML's at every
    step from 1 to 10; at least 20,000 meta-iterations for MAML, recorded."""
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "results: " in out and "figure: " in out
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["eval_tasks"] == 500 and r["query"] == 100 and r["metric"] == "mse" and r["steps"] == 10
    assert r["methods"]["maml"]["iterations"] >= 20000
    maml = r["methods"]["maml"]["loss"]
    assert maml[1]["mean"] <= 0.45
    for baseline in ("random", "pretrain", "random-tuned", "pretrain-tuned"):
        for k in range(1, 11):
            assert r["methods"][baseline]["loss"][k]["mean"] >= 3 * maml[k]["mean"], (baseline, k)
    assert r["methods"]["maml"]["accuracy"] is None
    assert r["paired"]["maml"]["loss_difference"]["ci95"][1] < 0  # lower MSE than the better baseline


@pytest.mark.slow
def test_demo_on_the_synthetic_family_meets_its_claims(tmp_path, capsys):
    """`refmaml demo --family synthetic-binary`: on held-out tasks Meta-SGD beats both baselines with
    non-overlapping 95% intervals; exact MAML is not significantly worse than the better baseline."""
    assert cli.main(["demo", "--family", "synthetic-binary", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["eval_tasks"] == 500
    last = {name: m["accuracy"][-1] for name, m in r["methods"].items() if isinstance(m["accuracy"], list)}
    for baseline in ("zero", "pretrain", "zero-tuned", "pretrain-tuned"):
        assert last["metasgd"]["ci95"][0] > last[baseline]["ci95"][1]
    assert r["paired"]["maml"]["accuracy_difference"]["ci95"][1] >= 0


def test_a_sinusoid_report_and_its_figure(tmp_path):
    """The regression report keeps the layout of the others: MSE in the loss rows (steps 0..10),
    no accuracy, paired differences on the loss, the baselines random and pretrain with their tuned
    rows, and the example held-out task of the figure."""
    r = demo.compare("sinusoid", eval_tasks=30, iterations=20, eval_every=10, curve_tasks=5)
    assert set(r["methods"]) == set(demo.NETWORK_METHODS) | {b + demo.TUNED for b in demo.NETWORK_BASELINES}
    for name, m in r["methods"].items():
        assert m["accuracy"] is None and len(m["loss"]) == 11
    assert set(r["paired"]) == {"maml", "fomaml", "reptile", "metasgd"}
    assert all(set(p) == {"against", "loss_difference"} for p in r["paired"].values())
    assert r["methods"]["reptile"]["config"]["inner_steps"] == 5
    assert r["methods"]["random-tuned"]["rate"] in demo.RATE_GRID
    ex = r["example"]
    assert len(ex["x_shots"]) == 10 and set(ex["predictions"]) == {"maml", "pretrain"}
    assert set(ex["predictions"]["maml"]) == {"0", "1", "10"}
    text = demo.format_table(r)
    assert "query MSE on 30 held-out tasks of sinusoid" in text and "step 10" in text
    json_path, figure = demo.write(r, tmp_path)
    if figure is not None:
        with open(figure, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_train_command_and_resume(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    common = ["train", "--iterations", "12", "--meta-batch", "4", "--eval-tasks", "10", "--quiet",
              "--out", str(tmp_path / "out"), "--checkpoint", str(ck), "--checkpoint-every", "5"]
    assert cli.main(common + ["--method", "fomaml"]) == 0
    assert (tmp_path / "out" / "results.json").exists()
    assert cli.main(["train", "--resume", str(ck), "--iterations", "20", "--quiet", "--eval-tasks", "10",
                     "--out", str(tmp_path / "out2")]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(ck), "--method", "maml", "--quiet"]) == 2
    assert "method = 'fomaml' there, 'maml' here" in capsys.readouterr().err
    assert cli.main(["train", "--inner-steps", "-1", "--quiet"]) == 2
    assert "inner_steps" in capsys.readouterr().err


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert cli.main(["demo", "--family", "digits-binary", "--quiet"]) == 2
    assert "pip install 'refmaml[data]'" in capsys.readouterr().err


def test_the_figure_reads_well(tmp_path, monkeypatch):
    """The sinusoid figure: a legend on every panel but the paired one (its rows are named on its
    axis), every text at least 9 points, no "step(s)" labels, a tuned row that repeats its untuned
    row drawn once (its legend entry says so), Reptile's training curve labelled with its own K."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from refmaml import plot

    seen = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: seen.append(self) or save(self, *a, **k))
    r = demo.compare("sinusoid", eval_tasks=12, iterations=20, eval_every=10, curve_tasks=5)
    r["methods"]["random-tuned"] = {**r["methods"]["random"], "label": demo.LABELS["random-tuned"]}
    plot.draw(r, tmp_path / "figure.png")
    fig, = seen
    example, curves, paired, training = fig.axes
    assert paired.get_legend() is None and [t.get_text() for t in paired.get_yticklabels()]
    labels = {}
    for ax in (example, curves, training):
        assert ax.get_legend() is not None
        labels[ax] = [t.get_text() for t in ax.get_legend().get_texts()]
    everything = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert everything and min(t.get_fontsize() for t in everything) >= 9
    assert not any("step(s)" in t.get_text() for t in everything)
    assert not any(demo.LABELS["random-tuned"] in x for x in labels[curves])
    assert any("tuned rate: the same" in x for x in labels[curves])
    assert any(x.startswith("Reptile") and "K = 5" in x for x in labels[training])
    assert "nearly the same curve" in example.get_legend().get_title().get_text()
