"""The figures of the derivations (``refmaml figures``, ``refmaml/figures.py``): the numbers each
figure draws, recomputed independently, never its pixels; the command writes the four PNGs; and the
committed ``derivations/figures/figures.json`` is what the data functions compute now."""

import json
import re
import pathlib
import sys

import numpy as np
import pytest

from refmaml import adapt, cli, figures, meta_value_and_grad
from refmaml.models import linear, logistic
from refmaml.models.layers import BatchNorm1d

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "derivations" / "figures"


def rel(a, b):
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def data():
    return figures.compute_all()


def test_unrolled_is_the_forward_and_reverse_pass(data):
    """(M2), (M6): the iterates are adapt's trajectory; each g_k is (I - alpha H_s(theta_k)) g_{k+1}
    with the explicit Hessian (L10); g_0 is meta_value_and_grad's meta-gradient, g_K its first-order
    one (M8); the drawn query loss is the meta-loss."""
    d = data["unrolled"]
    Xs, ys, Xq, yq = (np.array(d[k]) for k in ("Xs", "ys", "Xq", "yq"))
    alpha, K = d["inner_lr"], d["inner_steps"]
    theta, g, hvp = np.array(d["theta"]), np.array(d["g"]), np.array(d["hvp"])
    assert K == 2 and theta.shape == (K + 1, 2)
    assert rel(theta, adapt(theta[0], Xs, ys, inner_lr=alpha, inner_steps=K, return_trajectory=True)) <= 1e-13
    assert rel(g[K], logistic.grad(theta[K], Xq, yq)) <= 1e-13
    for k in range(K):
        H = logistic.hessian(theta[k], Xs, ys)
        assert rel(hvp[k], H @ g[k + 1]) <= 1e-12
        assert rel(g[k], (np.eye(2) - alpha * H) @ g[k + 1]) <= 1e-12
        assert rel(d["support_grad"][k], logistic.grad(theta[k], Xs, ys)) <= 1e-13
        assert d["support_loss"][k] == pytest.approx(float(logistic.loss(theta[k], Xs, ys)), rel=1e-13)
    loss, grad = meta_value_and_grad(theta[0], Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=K)
    assert rel(g[0], grad) <= 1e-12
    assert d["query_loss"] == pytest.approx(float(loss), rel=1e-13)
    _, fo = meta_value_and_grad(theta[0], Xs, ys, Xq, yq, inner_lr=alpha, inner_steps=K, first_order=True)
    assert rel(d["first_order_grad"], fo) <= 1e-13
    assert rel(g[0], g[K]) > 1e-2  # the two differ visibly in the figure


def _linear(d):
    return tuple(np.array(d[k]) for k in ("Xs", "ys", "Xq", "yq"))


def test_landscape_points_and_values(data):
    """theta* zeroes the exact meta-gradient (M6), the first-order fixed point the first-order one
    (M8), the pooled solution the gradient of the pooled loss; the grid holds meta_value_and_grad's
    values, none below F(theta*); the exact path descends to theta*, the first-order path to its
    fixed point."""
    d = data["landscape"]
    Xs, ys, Xq, yq = _linear(d)
    kw = dict(inner_lr=d["inner_lr"], inner_steps=d["inner_steps"], model="linear")
    scale = np.linalg.norm(meta_value_and_grad(np.zeros(2), Xs, ys, Xq, yq, **kw)[1])
    star, fo, pooled = (np.array(d[k]) for k in ("theta_star", "first_order_fixed_point", "pooled"))
    assert np.linalg.norm(meta_value_and_grad(star, Xs, ys, Xq, yq, **kw)[1]) <= 1e-10 * scale
    assert np.linalg.norm(meta_value_and_grad(fo, Xs, ys, Xq, yq, first_order=True, **kw)[1]) <= 1e-10 * scale
    Xp, yp = np.concatenate([Xs, Xq], axis=1), np.concatenate([ys, yq], axis=1)
    assert np.linalg.norm(np.mean(linear.grad(pooled, Xp, yp), axis=0)) <= 1e-10 * scale
    for a, b in ((star, fo), (star, pooled), (fo, pooled)):  # three points the figure tells apart
        assert np.linalg.norm(a - b) > 0.5
    F, t0, t1 = np.array(d["meta_loss"]), np.array(d["theta0"]), np.array(d["theta1"])
    assert F.shape == (t1.size, t0.size)
    for i, j in ((0, 0), (7, 40), (30, 30), (t1.size - 1, t0.size - 1)):
        value = meta_value_and_grad(np.array([t0[j], t1[i]]), Xs, ys, Xq, yq, **kw)[0]
        assert F[i, j] == pytest.approx(float(value), rel=1e-12)
    F_star = d["meta_loss_at"]["theta_star"]
    M, c = linear.affine_map(Xs, ys, inner_lr=d["inner_lr"], inner_steps=d["inner_steps"])
    S = sum(Mt.T @ (2 * Xt.T @ Xt / Xt.shape[0]) @ Mt for Mt, Xt in zip(M, Xq))
    for i, j in ((0, 0), (0, t0.size - 1), (t1.size - 1, 20)):  # (Q12): F - F* = (1/2T) u^T S u
        u = np.array([t0[j], t1[i]]) - star
        assert F[i, j] - F_star == pytest.approx(u @ S @ u / (2 * Xs.shape[0]), abs=1e-12 * F[i, j])
    assert F_star == pytest.approx(float(meta_value_and_grad(star, Xs, ys, Xq, yq, **kw)[0]), rel=1e-13)
    assert F.min() >= F_star * (1 - 1e-12)
    assert d["meta_loss_at"]["first_order_fixed_point"] > F_star and d["meta_loss_at"]["pooled"] > F_star
    exact, first = (np.array(d["paths"][k]["theta"]) for k in ("exact", "first_order"))
    values = np.array(d["paths"]["exact"]["meta_loss"])
    assert np.all(np.diff(values) <= 1e-12 * F_star)  # gradient descent on a quadratic, step <= 1 / L
    for j in (0, 5, len(exact) - 1):
        assert values[j] == pytest.approx(float(meta_value_and_grad(exact[j], Xs, ys, Xq, yq, **kw)[0]), rel=1e-12)
    assert np.linalg.norm(exact[-1] - star) < 0.1 * np.linalg.norm(exact[0] - star)
    assert np.linalg.norm(first[-1] - fo) < 0.01 * np.linalg.norm(first[0] - fo)
    step = d["outer_lr"] * meta_value_and_grad(exact[3], Xs, ys, Xq, yq, **kw)[1]
    assert rel(exact[4], exact[3] - step) <= 1e-13


def test_first_order_error(data):
    """K = 1: the first-order error is exactly the dropped term of (M5),
    mean_t alpha H_s^t(theta) grad L_q^t(theta_1), over the exact meta-gradient; for K = 3 the exact
    meta-gradient is the product of the explicit (I - alpha H_s(theta_k)) of (M6); for small alpha
    the K = 1 error is proportional to alpha."""
    d = data["first_order_error"]
    Xs, ys, Xq, yq = _linear(d)
    theta = np.array(d["theta"])
    E = np.array(d["relative_error"])
    rates, Ks = d["inner_lrs"], d["inner_steps"]
    assert E.shape == (len(rates), len(Ks)) and Ks == list(range(1, 11)) and len(rates) >= 3
    T, dim = Xs.shape[0], theta.size

    def exact_and_first_order(alpha, K):
        gs, fos = [], []
        for t in range(T):
            path = adapt(theta, Xs[t], ys[t], inner_lr=alpha, inner_steps=K, return_trajectory=True)
            g = fo = logistic.grad(path[K], Xq[t], yq[t])
            for k in reversed(range(K)):
                g = (np.eye(dim) - alpha * logistic.hessian(path[k], Xs[t], ys[t])) @ g
            gs.append(g)
            fos.append(fo)
        return np.mean(gs, axis=0), np.mean(fos, axis=0)

    for i, alpha in enumerate(rates):
        exact, fo = exact_and_first_order(alpha, 1)
        dropped = np.mean([alpha * logistic.hessian(theta, Xs[t], ys[t])
                           @ logistic.grad(theta - alpha * logistic.grad(theta, Xs[t], ys[t]), Xq[t], yq[t])
                           for t in range(T)], axis=0)
        assert rel(fo - exact, dropped) <= 1e-10
        assert E[i, 0] == pytest.approx(np.linalg.norm(dropped) / np.linalg.norm(exact), rel=1e-10)
        exact, fo = exact_and_first_order(alpha, 3)
        assert E[i, 2] == pytest.approx(np.linalg.norm(fo - exact) / np.linalg.norm(exact), rel=1e-9)
    small = np.array(rates) <= 0.02
    assert small.sum() >= 2
    ratio = E[small, 0] / np.array(rates)[small]
    assert np.max(ratio) / np.min(ratio) < 1.05


def test_batchnorm_jacobian(data):
    """The drawn Jacobian is the complex-step derivative (D2) of the forward map (B1) to 1e-12; its
    cross-task and cross-feature blocks are exactly 0; off the diagonal within a set it is (B6),
    -(phi s / N)(1 + x_k x_l); with the tasks stacked into one set the cross-task blocks are not 0."""
    d = data["batchnorm_coupling"]
    T, n, C = d["tasks"], d["examples"], d["features"]
    layer = BatchNorm1d(C, eps=d["eps"])
    params = (np.array(d["gamma"]), np.array(d["beta"]))
    a = np.array(d["inputs"])
    order = np.arange(a.size).reshape(T, n, C).transpose(0, 2, 1).ravel()

    def complex_step(shape):
        h = 1e-30
        cols = []
        for j in range(a.size):
            x = a.astype(np.complex128).ravel()
            x[j] += 1j * h
            cols.append((layer.forward(params, x.reshape(shape))[0].imag / h).ravel())
        return np.stack(cols, axis=1)[np.ix_(order, order)]

    J, S = np.array(d["jacobian"]), np.array(d["jacobian_stacked"])
    assert J.shape == S.shape == (a.size, a.size)
    assert rel(J, complex_step(a.shape)) <= 1e-12
    assert rel(S, complex_step((1, T * n, C))) <= 1e-12
    blocks = J.reshape(T, C, n, T, C, n)
    stacked = S.reshape(T, C, n, T, C, n)
    _, (x_hat, s) = layer.forward(params, a)
    for t in range(T):
        for c in range(C):
            for u in range(T):
                for e in range(C):
                    if (t, c) != (u, e):
                        assert np.all(blocks[t, c, :, u, e, :] == 0.0)
            block = blocks[t, c, :, t, c, :]
            x = x_hat[t, :, c]
            formula = -(params[0][c] * s[t, 0, c] / n) * (1 + np.outer(x, x))   # (B6)
            off = ~np.eye(n, dtype=bool)
            assert rel(block[off], formula[off]) <= 1e-12
            assert np.min(np.abs(block)) > 0  # every example of the set coupled to every other
            assert rel(np.diag(block), np.diag(formula) + params[0][c] * s[t, 0, c]) <= 1e-12
    for t in range(T):
        for u in range(T):
            if t != u:
                assert np.max(np.abs(stacked[t, :, :, u, :, :])) > 0.01
    assert np.array(d["s"]).shape == (T, C)


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="seed"):
        figures.landscape_data(seed=-1)
    with pytest.raises(ValueError, match="inner_lrs"):
        figures.first_order_error_data(inner_lrs=(0.1, -1.0))
    with pytest.raises(ValueError, match="examples"):
        figures.batchnorm_coupling_data(examples=1)
    with pytest.raises(ValueError, match="inner_lr"):
        figures.unrolled_data(inner_lr=0.0)
    with pytest.raises(ValueError, match="start"):
        figures.landscape_data(start=(1.0, np.inf))
    with pytest.raises(ValueError, match="^start must be two finite numbers"):
        figures.landscape_data(start="ab")
    # sizes are bounded before any work (a grid of 10^6 would ask for terabytes)
    with pytest.raises(ValueError, match="grid must be an integer from 2 to 1000"):
        figures.landscape_data(grid=10**6)
    with pytest.raises(ValueError, match="examples must be an integer from 2 to 64"):
        figures.batchnorm_coupling_data(examples=10**5)
    with pytest.raises(TypeError, match="out_dir"):
        figures.make_all(3)


def _same(ours, theirs, where="figures.json"):
    """Equal keys, strings and integers; floats and arrays of floats within 1e-9 relative."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), where
        for key in theirs:
            _same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, str) or (isinstance(theirs, int) and not isinstance(theirs, bool)):
        assert ours == theirs, where
    else:
        a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
        assert a.shape == b.shape, where
        assert rel(a, b) <= 1e-9, f"{where}: relative difference {rel(a, b):.1e}"


def test_committed_figures_json_is_current(data):
    """derivations/figures/ holds what the data functions compute now: after a change to them,
    `refmaml figures --out derivations/figures` remakes it."""
    committed = json.loads((COMMITTED / figures.JSON).read_text(encoding="utf-8"))
    _same(json.loads(json.dumps(data)), committed)
    for name in figures.NAMES:
        assert (COMMITTED / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_command_writes_the_figures(tmp_path, capsys, data):
    pytest.importorskip("matplotlib")
    out = tmp_path / "new" / "figs"
    assert cli.main(["figures", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for name in figures.NAMES:
        path = out / f"{name}.png"
        assert str(path) in printed
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    _same(json.loads((out / figures.JSON).read_text(encoding="utf-8")), json.loads(json.dumps(data)))
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in figures.NAMES] + [figures.JSON])


def test_command_refusals(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["figures", "--out", str(blocker / "figs")]) == 2
    assert "--out" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert cli.main(["figures", "--out", str(tmp_path / "figs")]) == 2
    assert "pip install 'refmaml[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "figs").exists()
    with pytest.raises(ImportError, match=r"refmaml\[plot\]"):
        figures.make_all(tmp_path / "figs")


def test_every_committed_figure_is_shown_by_a_derivation():
    """Each PNG of derivations/figures/ is embedded by some derivation file, and every embedded
    figure exists: a figure made and never shown, or shown and never made, fails here."""
    folder = ROOT / "derivations"
    shown = set()
    for path in folder.glob("*.md"):
        shown |= set(re.findall(r"\]\(figures/([^)]+\.png)\)", path.read_text(encoding="utf-8")))
    made = {p.name for p in (folder / "figures").glob("*.png")}
    assert made and shown == made, (sorted(made - shown), sorted(shown - made))


def test_every_derivation_links_its_exercises():
    """Every derivation file ends with a section "Exercises" linking the file that holds its
    exercises, and that file has a section on it."""
    folder = ROOT / "derivations"
    skip = {"README.md", "exercises-core.md", "exercises-networks.md"}
    for path in sorted(folder.glob("*.md")):
        if path.name in skip:
            continue
        text = path.read_text(encoding="utf-8")
        m = re.search(r"\n## Exercises\n\n.*\[(exercises-[a-z]+\.md)\]", text)
        assert m, f"{path.name} links no exercises"
        target = (folder / m.group(1)).read_text(encoding="utf-8")
        assert f"## [{path.name}]({path.name})" in target, f"{m.group(1)} has no section on {path.name}"
