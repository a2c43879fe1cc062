"""The digit-images family (T14): few-shot image classification on the digits turned into 40
classes, its split, its seeding, its labels; ANIL (T15) through training, checkpoints and the demo."""

import json

import numpy as np
import pytest

from refmaml import demo, tasks, train

pytest.importorskip("sklearn")

WAYS = 5


@pytest.fixture(scope="module")
def family():
    return tasks.family("digit-images")


@pytest.fixture(scope="module")
def classes_of():
    """``{image bytes: set of class numbers}`` over all 40 classes (an image symmetric under a
    half turn can belong to two)."""
    images, digits = tasks.load_digit_images()
    out = {}
    for k in range(4):
        turned = np.rot90(images, k=k, axes=(2, 3))
        for x, d in zip(turned, digits, strict=True):
            out.setdefault(np.ascontiguousarray(x).tobytes(), set()).add(tasks.image_class(d, k))
    return out


def _classes(batch, t, classes_of):
    """The class of every image of task ``t``, support then query (the one class it can be, given
    the task's labels)."""
    X = np.concatenate([batch.Xs[t], batch.Xq[t]])
    return [classes_of[x.tobytes()] for x in X]


def test_shapes_and_values(family):
    b = family.held_out(6, 5, 25)
    assert b.Xs.shape == (6, 5, 1, 8, 8) and b.Xq.shape == (6, 25, 1, 8, 8)
    assert b.ys.shape == (6, 5) and b.yq.shape == (6, 25) and b.truth is None
    assert b.Xs.dtype == np.float64 and b.ys.dtype == np.int64
    assert 0 <= b.Xs.min() and b.Xq.max() <= 1 and b.Xq.max() == 1  # pixels / 16
    # 1-shot: one image of each label in the support set, five in the query set, grouped by label
    assert np.array_equal(b.ys, np.tile(np.arange(WAYS), (6, 1)))
    assert np.array_equal(b.yq[0], np.repeat(np.arange(WAYS), 5))
    assert family.classes == WAYS and family.d == 64 and not family.regression
    json.dumps(family.describe())


def test_classes_are_turned_digits_and_the_split_is_by_digit(family, classes_of):
    """(T14): class digit + 10 k is the digit turned by k quarter turns; every turn of 6 and 9 is a
    meta-test class, every turn of the other digits a meta-train class; support and query images
    are distinct, each label is one class, the classes of a task distinct."""
    assert set(family.train_classes) == {d + 10 * k for d in (0, 1, 2, 3, 4, 5, 7, 8) for k in range(4)}
    assert set(family.test_classes) == {d + 10 * k for d in (6, 9) for k in range(4)}
    assert not {c % 10 for c in family.train_classes} & {c % 10 for c in family.test_classes}
    images, digits = tasks.load_digit_images()
    first_six = images[digits == 6][0, 0]
    assert np.array_equal(family._pools[26][0, 0], np.rot90(first_six, 2))  # 6 turned by 180 degrees
    assert np.array_equal(family._pools[16][0, 0], np.rot90(first_six, 1))  # counterclockwise
    seen = {"train": set(), "test": set()}
    for split, allowed in (("train", family.train_classes), ("test", family.test_classes)):
        b = family.batch(split, range(60), 10, 15)
        for t in range(60):
            possible = _classes(b, t, classes_of)
            labels = np.concatenate([b.ys[t], b.yq[t]])
            task = []
            for label in range(WAYS):
                common = set.intersection(*[possible[i] for i in np.flatnonzero(labels == label)])
                assert len(common) >= 1 and common <= set(allowed)
                task.append(common)
            picked = [min(c) for c in task]
            assert len(set(picked)) == WAYS
            seen[split] |= set(picked)
            s = {x.tobytes() for x in b.Xs[t]}
            assert len(s) == 10 and not s & {x.tobytes() for x in b.Xq[t]}
    assert seen["test"] == set(family.test_classes)  # all 8 test classes occur in 60 tasks
    assert len(seen["train"]) >= 30


def test_labels_are_a_random_permutation_per_task(family, classes_of):
    """The class that gets label 0 changes from task to task: over 200 held-out tasks each of the 8
    test classes gets label 0 between 10 and 45 times (expected 25)."""
    b = family.held_out(200, 5, 5)
    first = [min(classes_of[b.Xs[t, 0].tobytes()]) for t in range(200)]
    counts = np.bincount([family.test_classes.index(c) for c in first], minlength=8)
    assert np.all((10 <= counts) & (counts <= 45)), counts


def test_a_task_is_a_function_of_the_seed_split_and_index(family):
    a = family.batch("test", [4, 11], 5, 10)
    b = family.batch("test", [11], 5, 10)
    assert np.array_equal(a.Xq[1], b.Xq[0]) and np.array_equal(a.ys[1], b.ys[0])
    again = tasks.family("digit-images").sample(np.random.default_rng(3), 4, 5, 5)
    assert np.array_equal(again.Xs, family.sample(np.random.default_rng(3), 4, 5, 5).Xs)
    other = tasks.family("digit-images", seed=1).batch("test", [4], 5, 10)
    assert not np.array_equal(other.Xs[0], a.Xs[0])


def test_without_rotations_the_ten_digits_split_in_half(classes_of):
    fam = tasks.family("digit-images", rotations=False)
    assert fam.train_classes == (0, 1, 2, 3, 4) and fam.test_classes == (5, 6, 7, 8, 9)
    b = fam.held_out(10, 5, 5)
    for t in range(10):
        picked = {min(c) for c in _classes(b, t, classes_of)}
        assert picked == {5, 6, 7, 8, 9}  # 5-way from 5 classes: every task has all of them


def test_a_half_turn_makes_a_six_look_like_a_nine():
    """(T14): 1-shot nearest neighbour on pixels between two classes (one shot, one query image of
    each, 2000 draws): a 6 turned by 180 degrees is harder to tell from a 9 than an upright 6 is,
    which is why 6 and 9 share the meta-test side; an 8 against an 8 turned by 180 degrees is
    close to chance."""
    images, digits = tasks.load_digit_images()
    rng = np.random.default_rng(0)

    def one_shot(a, b, draws=2000):
        A = np.rot90(images[digits == a[0]], a[1], axes=(2, 3)).reshape(-1, 64)
        B = np.rot90(images[digits == b[0]], b[1], axes=(2, 3)).reshape(-1, 64)
        ia = np.array([rng.choice(len(A), 2, replace=False) for _ in range(draws)])
        ib = np.array([rng.choice(len(B), 2, replace=False) for _ in range(draws)])
        sa, qa, sb, qb = A[ia[:, 0]], A[ia[:, 1]], B[ib[:, 0]], B[ib[:, 1]]
        d = lambda u, v: np.sum((u - v) ** 2, axis=1)  # noqa: E731
        return float(np.mean(np.concatenate([d(qa, sa) < d(qa, sb), d(qb, sb) < d(qb, sa)])))

    upright, turned = one_shot((6, 0), (9, 0)), one_shot((6, 2), (9, 0))
    assert upright > 0.9 and turned < 0.85 and upright - turned > 0.1, (upright, turned)
    assert one_shot((8, 0), (8, 2)) < 0.65


def test_bad_options_are_named():
    fam = tasks.family("digit-images")
    with pytest.raises(ValueError, match="multiple of ways = 5"):
        fam.batch("test", [0], 4, 5)
    with pytest.raises(ValueError, match="smallest class"):
        fam.batch("test", [0], 500, 500)
    with pytest.raises(ValueError, match="ways must be <= 8"):
        tasks.family("digit-images", ways=9)
    with pytest.raises(ValueError, match="ways must be <= 5"):
        tasks.family("digit-images", ways=6, rotations=False)
    with pytest.raises(ValueError, match="blocks"):
        tasks.family("digit-images", blocks=4)
    with pytest.raises(TypeError, match="rotations"):
        tasks.family("digit-images", rotations=1)


# --- the network, ANIL, pre-training, the demo -----------------------------------------------------

TINY = dict(iterations=4, meta_batch=2, support=5, query=10, eval_every=2, curve_tasks=4)


def test_the_model_is_the_declared_convnet(family):
    from refmaml.models import ConvNet

    net = family.model
    assert isinstance(net, ConvNet)
    assert family.parameter_shape == (net.size,)
    # conv 1 -> 8 (80), batch norm (16), conv 8 -> 8 (584), batch norm (16), linear 32 -> 5 (165)
    assert net.size == 80 + 16 + 584 + 16 + 165
    assert np.array_equal(family.initial(3), family.initial(3))
    assert not np.array_equal(family.initial(3), family.initial(4))
    head = net.mask(-1)
    assert head.dtype == bool and head.sum() == 32 * 5 + 5 and head[-165:].all()


def test_pretraining_is_the_pooled_loss_with_each_tasks_labels(family):
    """(T9) on a network: the mean over tasks of the gradient of each task's loss on its own support
    and query images together (one set, so one set of batch statistics per task)."""
    from refmaml.models import get

    c = train.Config(family="digit-images", method="pretrain", **TINY)
    b = family.sample(np.random.default_rng(0), 3, 5, 10)
    theta = family.initial(0)
    loss, g = train.meta_gradient(c, family.model, {"theta": theta}, (b.Xs, b.ys, b.Xq, b.yq))
    m = get(family.model)
    per = [m.grad(theta, np.concatenate([b.Xs[t], b.Xq[t]]), np.concatenate([b.ys[t], b.yq[t]]))
           for t in range(3)]
    np.testing.assert_allclose(g["theta"], np.mean(per, axis=0), rtol=1e-12, atol=1e-14)


def test_anil_round_trips_through_a_checkpoint(tmp_path):
    """The method name travels in the configuration of a checkpoint; a resumed ANIL run repeats the
    uninterrupted one bit for bit."""
    c = train.Config(family="digit-images", method="anil", **TINY).validated()
    whole = train.train(c)
    path = tmp_path / "anil.npz"
    half = train.train(train.Config(**{**c.as_dict(), "iterations": 2}), checkpoint_path=path)
    assert half.iteration == 2
    saved = train.load(path)
    assert saved.config.method == "anil" and saved.config == train.Config(**{**c.as_dict(), "iterations": 2})
    resumed = train.train(c, resume=path)
    assert np.array_equal(resumed.params["theta"], whole.params["theta"])
    assert resumed.losses == whole.losses and resumed.curve == whole.curve


def test_a_tiny_demo_has_the_tables_rows(tmp_path, monkeypatch):
    """`refmaml demo --family digit-images` in miniature: every method of the plan, the tuned
    baseline rows, accuracy and loss per step with intervals, the paired rows, the files. (The
    baselines' rates are tuned on 8 training tasks here, not 200.)"""
    from refmaml import report

    monkeypatch.setattr(report, "TUNE_TASKS", 8)
    r = demo.compare("digit-images", eval_tasks=6, **TINY)
    names = set(demo.IMAGE_METHODS) | {b + demo.TUNED for b in demo.NETWORK_BASELINES}
    assert set(r["methods"]) == names
    K = r["steps"]
    for name, m in r["methods"].items():
        assert len(m["accuracy"]) == K + 1 and len(m["loss"]) == K + 1
        assert all(s["tasks"] == 6 and 0 <= s["mean"] <= 1 for s in m["accuracy"])
    assert r["metric"] == "accuracy" and r["family"]["name"] == "digit-images"
    assert set(r["paired"]) == {"maml", "fomaml", "anil"}
    assert all(set(p) == {"against", "accuracy_difference", "loss_difference"} for p in r["paired"].values())
    assert r["methods"]["anil"]["config"]["method"] == "anil"
    text = demo.format_table(r)
    for name in names:
        assert demo.LABELS[name] in text
    assert "query accuracy on 6 held-out tasks of digit-images" in text and f"loss, step {K}" in text
    json_path, figure = demo.write(r, tmp_path)
    with open(json_path) as f:
        assert json.load(f)["methods"]["anil"]["label"] == demo.LABELS["anil"]
    if figure is not None:
        with open(figure, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_scikit_learn_the_demo_says_how_to_install(monkeypatch, capsys):
    import sys

    from refmaml import cli

    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert cli.main(["demo", "--family", "digit-images", "--quiet"]) == 2
    assert "pip install 'refmaml[data]'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_digit_images_demo_meets_its_claims(tmp_path, capsys):
    """`refmaml demo --family digit-images` as the README shows it (seed 0): after 1 to 5 steps on
    500 held-out 5-way 1-shot tasks, exact MAML is more accurate than first-order MAML, which is more
    accurate than ANIL, which is more accurate than both baselines at every rate, with the 95%
    intervals apart; each meta-learner's paired difference with the better baseline is above 0."""
    from refmaml import cli

    assert cli.main(["demo", "--family", "digit-images", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["eval_tasks"] == 500 and r["steps"] == 5 and r["query"] == 25
    assert r["methods"]["maml"]["iterations"] == 2000
    acc = {name: m["accuracy"] for name, m in r["methods"].items()}
    order = ["maml", "fomaml", "anil"]
    for k in range(1, 6):
        for better, worse in zip(order, order[1:]):
            assert acc[better][k]["ci95"][0] > acc[worse][k]["ci95"][1], (better, worse, k)
        for baseline in ("random", "pretrain", "random-tuned", "pretrain-tuned"):
            assert acc["anil"][k]["ci95"][0] > acc[baseline][k]["ci95"][1], (baseline, k)
    for name in order:
        assert r["paired"][name]["accuracy_difference"]["ci95"][0] > 0
        assert r["paired"][name]["loss_difference"]["ci95"][1] < 0
