"""Meta-training: Adam (T5)-(T7), each method's direction (T8), (T9), checkpoints and resume."""

import dataclasses
import io
import os
import zipfile

import numpy as np
import pytest

import refmaml
from refmaml import adam, checkpoint, check, evaluate, tasks, train

from .conftest import _gpu_available
from .processes import assert_resumes_exactly, kill_when_saved
from refmaml.models import logistic

SMALL = dict(family="synthetic-binary", iterations=40, meta_batch=4, support=6, query=5, inner_steps=2,
             inner_lr=0.3, outer_lr=0.02, eval_every=10, curve_tasks=5, seed=3)


def test_adam_matches_the_formulas_written_out():
    """(T5)-(T7) coordinate by coordinate in plain Python floats; the array code may differ from
    this order of operations only by rounding: a few ulps of the steps, so 1e-15 relative to the
    whole vector (a coordinate near 0 after cancellation carries the steps' absolute error)."""
    rng = np.random.default_rng(0)
    params = {"theta": rng.standard_normal(4)}
    state = adam.init(params)
    p, m, v = list(params["theta"]), [0.0] * 4, [0.0] * 4
    for t in range(1, 6):
        g = rng.standard_normal(4)
        params, state = adam.step(params, {"theta": g}, state, 0.1)
        for i in range(4):
            m[i] = 0.9 * m[i] + 0.1 * g[i]
            v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
            p[i] -= 0.1 * (m[i] / (1 - 0.9**t)) / ((v[i] / (1 - 0.999**t)) ** 0.5 + 1e-8)
        assert check.relative_error(params["theta"], np.array(p)) < 1e-15
        assert check.relative_error(state.m["theta"], np.array(m)) < 1e-15
    assert state.t == 5


def test_first_adam_step_moves_each_coordinate_by_the_step_size():
    """With m_1 = (1-b1) g and v_1 = (1-b2) g^2, (T6) gives m^ = g, v^ = g^2: the step is lr * sign(g)
    (up to eps / |g|, below 1e-7 relative for these |g| >= 0.1)."""
    g = np.array([0.1, -3.0, 250.0])
    new, _ = adam.step({"theta": np.zeros(3)}, {"theta": g}, adam.init({"theta": np.zeros(3)}), 0.5)
    np.testing.assert_allclose(new["theta"], -0.5 * np.sign(g), rtol=1e-6)


def test_adam_step_is_short_where_gradients_are_small_against_eps():
    """(T7): eps is not only a guard against a zero. With a constant gradient g, (T6) gives
    m^ = g and v^ = g^2 at every step, so each step is lr |g| / (|g| + eps): the full lr for
    |g| >> eps, but 1/1.01 of it at |g| = 1e-6 = 100 eps. Three steps at lr = 0.01 reach
    -0.0297 instead of -0.03. Compared to 1e-14 relative: the only error is the rounding of the
    moments' recurrences and bias corrections, about ten operations per step over three steps."""
    reached = {}
    for g in (1e-6, 1.0):
        params, state = {"theta": np.zeros(1)}, adam.init({"theta": np.zeros(1)})
        for _ in range(3):
            params, state = adam.step(params, {"theta": np.array([g])}, state, 0.01)
        assert check.relative_error(params["theta"], np.array([-0.03 * g / (g + 1e-8)])) < 1e-14
        reached[g] = float(params["theta"][0])
    assert round(reached[1e-6], 4) == -0.0297 and round(reached[1.0], 6) == -0.03


def _batch(config, seed=0):
    fam = tasks.family(config.family)
    b = fam.sample(np.random.default_rng(seed), config.meta_batch, config.support, config.query)
    return fam, (b.Xs, b.ys, b.Xq, b.yq)


@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd", "imaml"])
def test_meta_learners_hand_adam_the_library_gradient(method):
    c = train.Config(**{**SMALL, "method": method})
    fam, batch = _batch(c)
    theta = np.random.default_rng(1).standard_normal(fam.d) * 0.3
    params = {"theta": theta} | ({"rates": np.full(fam.d, 0.2)} if method == "metasgd" else {})
    loss, grads = train.meta_gradient(c, fam.model, params, batch)
    if method == "imaml":
        want = refmaml.imaml_value_and_grad(theta, *batch, lam=c.lam, tol=1e-10)[:2]
    else:
        want = refmaml.meta_value_and_grad(theta, *batch, inner_lr=params.get("rates", c.inner_lr),
                                           inner_steps=c.inner_steps, first_order=method == "fomaml",
                                           lr_grad=method == "metasgd")
    assert float(loss) == float(want[0])
    assert np.array_equal(grads["theta"], want[1])
    if method == "metasgd":
        assert np.array_equal(grads["rates"], want[2])


def test_reptile_direction_uses_the_whole_task(method="reptile"):
    """(T8): K steps on support and query together, then theta - theta_K averaged over tasks."""
    c = train.Config(**{**SMALL, "method": method})
    fam, (Xs, ys, Xq, yq) = _batch(c)
    theta = np.zeros(fam.d)
    _, grads = train.meta_gradient(c, fam.model, {"theta": theta}, (Xs, ys, Xq, yq))
    X, y = np.concatenate([Xs, Xq], 1), np.concatenate([ys, yq], 1)
    theta_K = refmaml.adapt(theta, X, y, inner_lr=c.inner_lr, inner_steps=c.inner_steps)
    np.testing.assert_allclose(grads["theta"], (theta - theta_K).mean(axis=0), rtol=1e-15, atol=1e-17)


def test_pretraining_gradient_is_the_pooled_loss_gradient():
    """(T9) against central differences of the pooled loss (1e-6 relative, the float64 budget of
    a central difference, derivations/checks.md (D1))."""
    c = train.Config(**{**SMALL, "method": "pretrain", "l2": 0.1})
    fam, (Xs, ys, Xq, yq) = _batch(c)
    theta = np.random.default_rng(2).standard_normal(fam.d) * 0.5
    loss, grads = train.meta_gradient(c, fam.model, {"theta": theta}, (Xs, ys, Xq, yq))
    X, y = np.concatenate([Xs, Xq], 1), np.concatenate([ys, yq], 1)

    def pooled(t):
        return float(np.mean(logistic.loss(t, X, y, l2=0.1)))

    assert float(loss) == pytest.approx(pooled(theta), rel=1e-15)
    fd = check.central_difference_gradient(pooled, theta)
    assert check.relative_error(grads["theta"], fd) < 1e-6


def test_meta_sgd_learns_where_tasks_differ():
    """The teaching claim of (T1): Meta-SGD's rates grow on the relevant features (where tasks
    differ) and shrink elsewhere. After 300 iterations the mean rate on the 2 relevant features
    is over 10 times the mean absolute rate on the 18 others (measured: about 50 times)."""
    c = train.Config(**{**SMALL, "method": "metasgd", "iterations": 300, "meta_batch": 16, "support": 10,
                        "query": 15, "eval_every": 0, "inner_steps": 1})
    rates = train.train(c).params["rates"]
    assert rates[:2].mean() > 10 * np.abs(rates[2:]).mean()


def test_zero_and_all_methods_run_and_record():
    for method in set(train.METHODS) - set(train.HEAD_ONLY):  # ANIL needs a network: below
        s = train.train(train.Config(**{**SMALL, "method": method, "iterations": 10, "eval_every": 5}))
        if method in train.UNTRAINED:  # the linear families start from zeros (T9)
            assert s.iteration == 0 and not np.any(s.params["theta"]) and s.curve == []
        else:
            assert s.iteration == 10 and len(s.losses) == 10 and np.all(np.isfinite(s.losses))
            assert [i for i, _, _ in s.curve] == [0, 5, 10]


@pytest.mark.parametrize("name", ["array-api-strict:device1", "cupy"])
def test_training_on_another_device_matches_numpy(name):
    """CuPy, and array-api-strict's second device (which stands in for a GPU: a hidden host
    transfer in the loop fails there): the same numbers to rounding, 1e-12 relative (the same
    float64 operations through another library's kernels, 15 Adam steps of them)."""
    if name == "cupy" and not _gpu_available():
        pytest.skip("CuPy tests need CuPy and an NVIDIA GPU")
    pytest.importorskip("array_api_strict")
    c = train.Config(**{**SMALL, "method": "metasgd", "iterations": 15})
    host = train.train(c)
    dev = train.train(dataclasses.replace(c, backend=name))
    for k in ("theta", "rates"):
        got = refmaml._xp.to_numpy(dev.params[k])
        assert check.relative_error(got, host.params[k]) < 1e-12
    np.testing.assert_allclose(dev.losses, host.losses, rtol=1e-12)
    np.testing.assert_allclose([a for _, a, _ in dev.curve], [a for _, a, _ in host.curve], rtol=0, atol=1e-12)


def test_resume_repeats_the_uninterrupted_run_bit_for_bit(tmp_path):
    c = train.Config(**{**SMALL, "method": "metasgd"})
    straight = train.train(c)
    path = tmp_path / "ck.npz"
    train.train(dataclasses.replace(c, iterations=17), checkpoint_path=path, checkpoint_every=5)
    resumed = train.train(c, resume=path)
    for k in straight.params:
        assert np.array_equal(resumed.params[k], straight.params[k])
        assert np.array_equal(resumed.optimizer.v[k], straight.optimizer.v[k])
    assert resumed.losses == straight.losses and resumed.curve == straight.curve
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state


def test_checkpoints_are_written_at_intervals_and_at_the_end(tmp_path):
    path = tmp_path / "ck.npz"
    seen = []
    real = train.save

    def spy(p, state):
        seen.append(state.iteration)
        real(p, state)

    train.save = spy
    try:
        train.train(train.Config(**{**SMALL, "iterations": 23}), checkpoint_path=path, checkpoint_every=10)
    finally:
        train.save = real
    assert seen == [10, 20, 23]
    assert train.load(path).iteration == 23
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary file left behind


def _saved(tmp_path, **changes):
    path = tmp_path / "ck.npz"
    state = train.train(train.Config(**{**SMALL, "iterations": 5, **changes}))
    train.save(path, state)
    return path, dict(np.load(path, allow_pickle=False))


def _rewrite(path, fields):
    with open(path, "wb") as f:
        np.savez(f, **fields)


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.pop("adam_v_theta"), "missing: adam_v_theta"),
    (lambda f: f.update(extra=np.zeros(2)), "unexpected: extra.npy"),
    (lambda f: f.update(param_theta=np.zeros(3)), "param_theta"),
    (lambda f: f.update(param_theta=np.full(20, np.nan)), "finite"),
    (lambda f: f.update(adam_v_theta=-np.ones(20)), "negative"),
    (lambda f: f.update(version=np.array(7)), "version 7"),
    (lambda f: f.update(format=np.array("something else")), "not a refmaml checkpoint"),
    (lambda f: f.update(config=np.array("{not json")), "invalid configuration"),
    (lambda f: f.update(config=np.array('{"family": "synthetic-binary"}')), "missing"),
    (lambda f: f.update(rng=np.array('{"bit_generator": "MT19937"}')), "PCG64"),
    (lambda f: f.update(iteration=np.array(-1)), "iteration"),
    (lambda f: f.update(losses=np.zeros(2)), "losses"),
    (lambda f: f.update(iteration=np.array([1, 2])), "single integer"),
])
def test_damaged_checkpoints_are_refused_with_a_reason(tmp_path, damage, message):
    path, fields = _saved(tmp_path)
    damage(fields)
    _rewrite(path, fields)
    with pytest.raises(checkpoint.InvalidCheckpoint, match=message):
        train.load(path)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(checkpoint.InvalidCheckpoint):
            train.load(bad)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(checkpoint.InvalidCheckpoint, match="not a readable"):
        train.load(text)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="does not exist"):
        train.load(tmp_path / "missing.npz")


def test_a_pickle_bearing_checkpoint_is_refused_without_unpickling(tmp_path):
    path, fields = _saved(tmp_path)
    fields["config"] = np.array([{"boom": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **fields)  # np.savez pickles object arrays
    with pytest.raises(checkpoint.InvalidCheckpoint, match="no pickled objects"):
        train.load(path)


def test_a_forged_header_cannot_ask_for_more_than_the_file_holds(tmp_path):
    path, fields = _saved(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(buffer, "w") as out:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "losses.npy":
                data = data.replace(b"(5,)", b"(99999999999,)".ljust(4))
            out.writestr(info.filename, data)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(checkpoint.InvalidCheckpoint, match="declares shape"):
        train.load(path)


def test_resuming_with_another_configuration_names_the_fields(tmp_path):
    path, _ = _saved(tmp_path)
    other = train.Config(**{**SMALL, "iterations": 50, "inner_lr": 0.7, "seed": 9})
    with pytest.raises(checkpoint.InvalidCheckpoint,
                       match="inner_lr = 0.3 there, 0.7 here; seed = 3 there, 9 here"):
        train.load(path, other)
    # iterations alone may differ: a run can be continued further.
    assert train.load(path, train.Config(**{**SMALL, "iterations": 50})).config.iterations == 50


@pytest.mark.parametrize("changes, exc, name", [
    (dict(method="sgd"), ValueError, "method"),
    (dict(family=3), TypeError, "family"),
    (dict(inner_steps=-1), ValueError, "inner_steps"),
    (dict(meta_batch=2.0), TypeError, "meta_batch"),
    (dict(outer_lr=0.0), ValueError, "outer_lr"),
    (dict(inner_lr=float("inf")), ValueError, "inner_lr"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(lam=True), TypeError, "lam"),
    (dict(backend="tpu"), ValueError, "backend"),
    (dict(curve_tasks=1), ValueError, "curve_tasks"),
    (dict(method="anil"), ValueError, "last layer only; the family 'synthetic-binary' has a linear model"),
])
def test_bad_configurations_are_named(changes, exc, name):
    with pytest.raises(exc, match=name):
        train.Config(**{**SMALL, **changes}).validated()


def test_a_training_process_killed_mid_way_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    """A real `refmaml train` subprocess, SIGKILLed once its checkpoint shows progress: the file
    left behind loads, and resuming it gives the uninterrupted run's parameters bit for bit."""
    path = tmp_path / "run.npz"
    args = ["--family", "synthetic-binary", "--method", "maml", "--inner-lr", "0.3", "--inner-steps", "3",
            "--meta-batch", "8", "--iterations", "1000000", "--outer-lr", "0.01", "--support", "6",
            "--query", "5", "--l2", "0", "--seed", "11", "--backend", "numpy",
            "--eval-every", "25", "--checkpoint", str(path), "--checkpoint-every", "7", "--quiet",
            "--out", str(tmp_path / "out")]
    killed = kill_when_saved(args, path, 60, tmp_path / "stderr.txt")
    assert 60 <= killed.iteration < 1000000
    assert_resumes_exactly(path, killed, 20)
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    assert len(leftovers) <= 1  # at most the one write the kill interrupted


def test_archives_declaring_more_than_the_limit_are_refused_unread(tmp_path, monkeypatch):
    path, _ = _saved(tmp_path)
    monkeypatch.setattr(checkpoint, "MAX_BYTES", 100)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="declares .* bytes; the limit is 100"):
        train.load(path)


NETWORK = dict(family="sinusoid", iterations=12, meta_batch=4, support=5, query=5, inner_steps=1,
               inner_lr=0.01, outer_lr=0.001, eval_every=4, curve_tasks=3, seed=2)


@pytest.mark.parametrize("method", ["maml", "metasgd", "reptile", "pretrain"])
def test_a_network_trains_checkpoints_and_resumes_bit_for_bit(tmp_path, method):
    """The sinusoid family's MLP: the run starts from MLP.init(seed), the checkpoint holds the flat
    network (and Meta-SGD's rates) with Adam's moments, and a resumed run repeats the uninterrupted
    one exactly."""
    c = train.Config(**{**NETWORK, "method": method})
    fam = tasks.family("sinusoid")
    first = train.start(c)
    assert np.array_equal(first.params["theta"], fam.model.init(c.seed))
    straight = train.train(c)
    path = tmp_path / "net.npz"
    train.train(dataclasses.replace(c, iterations=7), checkpoint_path=path, checkpoint_every=3)
    saved = np.load(path, allow_pickle=False)
    assert saved["param_theta"].shape == (fam.model.size,)
    resumed = train.train(c, resume=path)
    for k in straight.params:
        assert np.array_equal(resumed.params[k], straight.params[k])
    assert resumed.losses == straight.losses and resumed.curve == straight.curve
    assert [i for i, _, _ in straight.curve] == [0, 4, 8, 12] and all(h > 0 for _, _, h in straight.curve)


def test_anil_is_maml_with_a_head_only_inner_loop():
    """(T15): ANIL's meta-gradient is exact MAML's with the per-parameter rate inner_lr on the last
    layer and 0 elsewhere (V1), to rounding (1e-12 relative: the same products in another order);
    its inner steps leave the body where it is, and the body still gets a meta-gradient through
    the head's steps. Trained and scored with the head-only inner loop."""
    c = train.Config(**{**NETWORK, "method": "anil", "inner_steps": 2, "inner_lr": 0.05})
    fam = tasks.family("sinusoid")
    net = fam.model
    mask = train.inner_mask("anil", net)
    assert mask.dtype == bool and mask.sum() == 41 and mask[-41:].all()  # Linear(40, 1)
    assert train.inner_mask("maml", net) is None
    b = fam.sample(np.random.default_rng(0), 4, 5, 5)
    batch = (b.Xs, b.ys, b.Xq, b.yq)
    theta = fam.initial(1)
    loss, grads = train.meta_gradient(c, net, {"theta": theta}, batch)
    want_loss, want = refmaml.meta_value_and_grad(theta, *batch, inner_lr=0.05 * mask.astype(float),
                                                  inner_steps=2, model=net)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-12)
    assert check.relative_error(grads["theta"], want) < 1e-12
    assert np.any(grads["theta"][~mask] != 0)
    adapted = refmaml.adapt(theta, b.Xs, b.ys, inner_lr=0.05, inner_steps=2, model=net, inner_mask=mask)
    assert np.array_equal(adapted[:, ~mask], np.broadcast_to(theta[~mask], (4, int((~mask).sum()))))
    assert np.all(np.any(adapted[:, mask] != theta[mask], axis=1))
    state = train.train(c)
    assert state.iteration == 12 and [i for i, _, _ in state.curve] == [0, 4, 8, 12]
    held = fam.held_out(c.curve_tasks, c.support, c.query)
    _, q = evaluate.adaptation_curve(net, state.params["theta"], held.Xs, held.ys, held.Xq, held.yq,
                                     inner_lr=c.inner_lr, steps=c.inner_steps, inner_mask=mask)
    assert state.curve[-1][1] == pytest.approx(float(q[-1].mean()), rel=1e-13)


def test_random_initialisation_baseline():
    """``random``: no training, the family's initial parameters (a fresh network; zeros for the
    linear models, where it is ``zero``)."""
    s = train.train(train.Config(**{**NETWORK, "method": "random"}))
    assert s.iteration == 0 and np.array_equal(s.params["theta"], tasks.family("sinusoid").model.init(2))


def test_a_version_1_checkpoint_is_still_read(tmp_path):
    """Version 1 kept the training curve without intervals: read with NaN half-widths, resumed, and
    saved again as version 2."""
    c = train.Config(**{**SMALL, "method": "fomaml", "iterations": 10})
    path = tmp_path / "v2.npz"
    state = train.train(c, checkpoint_path=path)
    fields = dict(np.load(path, allow_pickle=False))
    fields["version"] = np.array(1, dtype=np.int64)
    fields["curve"] = fields["curve"][:, :2].copy()
    old = tmp_path / "v1.npz"
    checkpoint.write(old, fields)
    loaded = train.load(old)
    assert [(i, a) for i, a, _ in loaded.curve] == [(i, a) for i, a, _ in state.curve]
    assert all(np.isnan(h) for _, _, h in loaded.curve)
    more = train.train(dataclasses.replace(c, iterations=20), resume=old, checkpoint_path=tmp_path / "again.npz")
    assert train.load(tmp_path / "again.npz").curve[-1][0] == 20 and more.iteration == 20
