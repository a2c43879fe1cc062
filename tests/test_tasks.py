"""Task families: determinism, the meta-train / meta-test split, the generative models (T1)-(T4)."""

import numpy as np
import pytest

from refmaml import tasks
from refmaml.models import logistic, softmax



def test_a_task_is_a_function_of_its_split_and_index_alone():
    """(T4): the same (split, index) gives the same arrays, bit for bit, in any batch."""
    fam = tasks.family("synthetic-binary")
    a = fam.batch("test", [3, 7], 5, 6)
    b = fam.batch("test", [7], 5, 6)
    assert np.array_equal(a.Xs[1], b.Xs[0]) and np.array_equal(a.yq[1], b.yq[0])
    assert np.array_equal(a.truth[1], b.truth[0])
    c = fam.held_out(8, 5, 6)
    assert np.array_equal(c.Xq[3], a.Xq[0])


def test_train_and_test_streams_differ():
    fam = tasks.family("synthetic-nway")
    train = fam.batch("train", range(20), 4, 4).truth
    test = fam.batch("test", range(20), 4, 4).truth
    # No training task equals any test task (different spawn keys, continuous parameters).
    assert not any(np.array_equal(t, u) for t in train for u in test)


def test_sample_draws_indices_from_the_generator():
    fam = tasks.family("synthetic-binary")
    a = fam.sample(np.random.default_rng(5), 3, 4, 4)
    b = fam.sample(np.random.default_rng(5), 3, 4, 4)
    assert np.array_equal(a.Xs, b.Xs)
    assert not np.array_equal(a.Xs, fam.sample(np.random.default_rng(6), 3, 4, 4).Xs)


def test_synthetic_binary_structure():
    """(T1): truth = b + spread * z on the relevant features; labels follow sigmoid(x . w)."""
    fam = tasks.family("synthetic-binary", d=12, relevant=3, offset=1.5, spread=2.0)
    b = fam.shared_offset
    assert np.isclose(np.linalg.norm(b), 1.5, rtol=1e-14)
    batch = fam.batch("test", range(400), 50, 50)
    dev = batch.truth - b
    assert np.all(dev[:, 3:] == 0)
    # The task part has mean 0 and standard deviation `spread` per relevant feature: with 400 tasks
    # the sample mean is within 4 standard errors (4 * 2 / 20 = 0.4) of 0.
    assert np.all(np.abs(dev[:, :3].mean(axis=0)) < 0.4)
    assert np.all(np.abs(dev[:, :3].std(axis=0) - 2.0) < 0.3)
    # Labels: the mean label equals the mean true probability to within 4 binomial standard errors.
    X = np.concatenate([batch.Xs, batch.Xq], axis=1)
    y = np.concatenate([batch.ys, batch.yq], axis=1)
    p = logistic.predict(batch.truth, X)
    assert abs(y.mean() - p.mean()) < 4 * np.sqrt(0.25 / y.size)
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_synthetic_nway_labels_follow_the_softmax():
    """(T2): class frequencies match the mean softmax probabilities."""
    fam = tasks.family("synthetic-nway", ways=4, d=6)
    batch = fam.batch("test", range(300), 40, 40)
    assert batch.truth.shape == (300, 6, 4)
    X = np.concatenate([batch.Xs, batch.Xq], axis=1)
    y = np.concatenate([batch.ys, batch.yq], axis=1)
    P = softmax.predict(batch.truth, X)
    freq = np.bincount(y.ravel(), minlength=4) / y.size
    assert np.all(np.abs(freq - P.reshape(-1, 4).mean(axis=0)) < 4 * np.sqrt(0.25 / y.size))


@pytest.mark.parametrize("ways", [2, 3])
def test_digits_splits_are_disjoint_and_balanced(ways):
    pytest.importorskip("sklearn")
    fam = tasks.family("digits-binary" if ways == 2 else "digits-nway")
    X, y = tasks.load_digits_data()
    rows = {x.tobytes(): label for x, label in zip(X, y, strict=True)}
    for split, allowed in (("train", tasks.DIGITS_TRAIN_CLASSES), ("test", tasks.DIGITS_TEST_CLASSES)):
        batch = fam.batch(split, range(30), 2 * ways, 3 * ways)
        for t in range(30):
            classes = {rows[x.tobytes()] for x in np.concatenate([batch.Xs[t], batch.Xq[t]])}
            assert classes <= set(allowed) and len(classes) == ways
            # Support and query images are distinct, and each class has n / ways of each.
            s = {x.tobytes() for x in batch.Xs[t]}
            assert not s & {x.tobytes() for x in batch.Xq[t]}
            assert np.array_equal(np.bincount(batch.ys[t].astype(int), minlength=ways), [2] * ways)
            # The label of an image is the position of its class in the task's pick.
            digit = np.array([rows[x.tobytes()] for x in batch.Xs[t]])
            for label in range(ways):
                assert len(set(digit[batch.ys[t] == label])) == 1
    assert batch.truth is None


def test_bad_arguments_are_named():
    fam = tasks.family("synthetic-binary")
    with pytest.raises(ValueError, match="split"):
        fam.batch("validation", [0], 2, 2)
    with pytest.raises(ValueError, match="n \\(support examples\\)"):
        fam.batch("test", [0], 0, 2)
    with pytest.raises(TypeError, match="m \\(query examples\\)"):
        fam.batch("test", [0], 2, 2.5)
    with pytest.raises(ValueError, match="family"):
        tasks.family("omniglot")
    with pytest.raises(ValueError, match="relevant"):
        tasks.family("synthetic-binary", d=3, relevant=4)
    with pytest.raises(ValueError, match="spread"):
        tasks.family("synthetic-binary", spread=float("nan"))
    with pytest.raises(ValueError, match="at least one task"):
        fam.batch("test", [], 2, 2)


def test_digits_sizes_must_split_evenly():
    pytest.importorskip("sklearn")
    fam = tasks.family("digits-nway")
    with pytest.raises(ValueError, match="multiple of ways = 3"):
        fam.batch("test", [0], 4, 3)
    with pytest.raises(ValueError, match="smallest class"):
        fam.batch("test", [0], 300, 300)
    with pytest.raises(ValueError, match="ways must be <= 4"):
        tasks.Digits(ways=5)


def test_sinusoid_tasks():
    """(T13): A sin(x - phi) with A in [0.1, 5], phi in [0, pi], x in [-5, 5]; held-out tasks seeded
    by index, training batches drawn at once from the run's generator."""
    fam = tasks.family("sinusoid")
    held = fam.held_out(20, 10, 100)
    assert held.Xs.shape == (20, 10, 1) and held.Xq.shape == (20, 100, 1) and held.ys.shape == (20, 10)
    for t in (0, 7):
        A, phi = fam.function("test", t)
        assert 0.1 <= A <= 5 and 0 <= phi <= np.pi
        np.testing.assert_array_equal(held.ys[t], A * np.sin(held.Xs[t, :, 0] - phi))
        np.testing.assert_array_equal(held.yq[t], A * np.sin(held.Xq[t, :, 0] - phi))
    assert np.all(np.abs(held.Xs) <= 5) and held.truth is None
    again = fam.held_out(20, 10, 100)
    assert np.array_equal(again.Xq, held.Xq)
    rng = np.random.default_rng(4)
    b = fam.sample(rng, 25, 10, 10)
    assert b.Xs.shape == (25, 10, 1) and b.yq.shape == (25, 10)
    ratio = b.ys / np.sin(b.Xs[..., 0])  # not constant in x: each task has its own phase
    assert np.ptp(ratio[0]) > 0
    c = tasks.family("sinusoid").sample(np.random.default_rng(4), 25, 10, 10)
    assert np.array_equal(c.Xq, b.Xq)  # the generator's stream is the batch
    assert fam.parameter_shape == (1761,) and fam.regression and fam.eval_query == 100
    import json
    json.dumps(fam.describe())
