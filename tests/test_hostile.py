"""The causes found by the hostile-input run over the networks, MAML through them, ``refmaml explain``,
train and demo on the sinusoid, network checkpoints and version-2 files: each refused with refmaml's
own error, naming the argument, field or file, before any work (RELIABILITY.md, "Bounds")."""

import json
import re
import struct
import warnings

import numpy as np
import pytest

import refmaml
from refmaml import _validate, checkpoint, cli, explain, oracle, train
from refmaml.models import MLP
from refmaml.oracle import cases, vectors

HUGE = 10**400  # a Python integer beyond float64's range


def _fails(argv, capsys, *words):
    """``refmaml argv`` exits 2 with one line naming ``words``, without a traceback."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)
    return err


# --- huge Python integers --------------------------------------------------------------------------

def test_huge_integers_for_real_arguments_are_named_value_errors():
    X, y = np.ones((1, 4, 2)), np.ones((1, 4))
    for kw, name in ((dict(lam=HUGE), "lam"), (dict(tol=HUGE), "tol"), (dict(l2=HUGE), "l2")):
        with pytest.raises(ValueError, match=f"{name} must be finite; got an integer of about 400 digits"):
            refmaml.imaml_value_and_grad(np.zeros(2), X, y, X, y, model="linear", **{"lam": 1.0, **kw})
    with pytest.raises(ValueError, match="inner_lr must be finite; got an integer of about 400 digits"):
        refmaml.meta_value_and_grad(np.zeros(2), X, y, X, y, inner_lr=HUGE, inner_steps=1, model="linear")
    loss, _ = refmaml.meta_value_and_grad(np.zeros(2), X, y, X, y, inner_lr=2**70, inner_steps=1, model="linear")
    assert np.isfinite(loss)  # beyond int64, within float64: a number like any other
    with pytest.raises(ValueError, match="inner_steps must be an integer from 0 to 100000; got an integer of"):
        refmaml.adapt(np.zeros(2), X, y, inner_lr=0.1, inner_steps=HUGE, model="linear")


@pytest.mark.parametrize("field", ["l2", "lam", "inner_lr", "outer_lr", "seed", "iterations", "support",
                                   "query", "meta_batch", "inner_steps", "eval_every", "curve_tasks"])
def test_a_configuration_with_a_huge_integer_is_refused_naming_the_field(field):
    fields = {**train.Config().as_dict(), field: HUGE}
    with pytest.raises(ValueError, match=f"{field} must be "):
        train.Config.from_dict(fields)


@pytest.mark.parametrize("where", ["meta_loss", "meta_grad"])
def test_a_results_file_with_a_400_digit_integer_is_refused_naming_the_field(tmp_path, capsys, where):
    case = next(c for c in cases.all_cases("3") if c.id.startswith("mlp-4x8x3-tanh-softmax-K1"))
    entry = {"meta_loss": 0.0, "meta_grad": [0.0] * case.theta.size}
    if where == "meta_loss":
        entry["meta_loss"] = HUGE
    else:
        entry["meta_grad"][0] = HUGE
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"format": "refmaml-results", "vectors_version": "3", "results": {case.id: entry}}))
    _fails(["check", str(path)], capsys, f"case {case.id!r}.{where}", "integer of about 400 digits")


def test_a_vectors_file_with_a_400_digit_integer_is_refused_naming_the_field(tmp_path):
    chosen = [c for c in cases.all_cases("2") if c.id.startswith("mlp-4x8x3-tanh-softmax-K1")]
    doc = {"format": "refmaml-vectors", "version": "2", "generator": "test", "conventions": {},
           "cases": [vectors.case_record(c) for c in chosen]}
    doc["cases"][0]["inputs"]["theta"][0] = HUGE
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(vectors.InvalidFile, match=r"inputs\.theta\[0\] is an integer of about 400 digits"):
        vectors.load(path)


# --- checkpoints -----------------------------------------------------------------------------------

SMALL = dict(family="synthetic-binary", method="maml", iterations=2, meta_batch=2, support=3, query=3,
             inner_steps=1, eval_every=1, curve_tasks=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small linear run's checkpoint: its bytes and its fields."""
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    train.train(train.Config(**SMALL), checkpoint_path=path)
    return path.read_bytes(), dict(np.load(path))


def _patched(raw, signature, offset, value):
    """``raw`` with the 16-bit field at ``offset`` of every zip header of ``signature`` set to ``value``."""
    b, i = bytearray(raw), 0
    while (i := b.find(signature, i)) >= 0:
        struct.pack_into("<H", b, i + offset, value)
        i += 4
    return bytes(b)


CENTRAL = b"PK\x01\x02"  # version made by (4), version needed (6), flags (8), compression method (10)


@pytest.mark.parametrize("offset, value, words", [
    (10, 99, "compression method 99"), (10, 12, "compression method 12"),  # unknown; bzip2
    (8, 1, "marked encrypted"), (8, 0x40, "marked encrypted"),  # traditional, strong encryption
    (6, 99, "zip file version 9.9"),
], ids=["method-99", "bzip2", "encrypted", "strong-encryption", "version"])
def test_damaged_zip_headers_are_invalid_checkpoints(tmp_path, saved, offset, value, words):
    path = tmp_path / "damaged.npz"
    path.write_bytes(_patched(saved[0], CENTRAL, offset, value))
    with pytest.raises(checkpoint.InvalidCheckpoint, match=words) as exc:
        train.load(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("member", ["config", "rng"])
def test_deeply_nested_json_in_a_checkpoint_is_an_invalid_checkpoint(tmp_path, saved, member):
    fields = {**saved[1], member: np.array("[" * 100_000 + "]" * 100_000)}
    checkpoint.write(tmp_path / "deep.npz", fields)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="nested too deep"):
        train.load(tmp_path / "deep.npz")


@pytest.mark.parametrize("key, value", [("state", 2**200), ("inc", -5), ("has_uint32", 2**70), ("uinteger", -1)])
def test_an_out_of_range_generator_state_is_an_invalid_checkpoint(tmp_path, saved, key, value):
    state = json.loads(str(saved[1]["rng"]))
    (state["state"] if key in ("state", "inc") else state)[key] = value
    checkpoint.write(tmp_path / "rng.npz", {**saved[1], "rng": np.array(json.dumps(state))})
    with pytest.raises(checkpoint.InvalidCheckpoint, match="checkpoint field 'rng' is not a PCG64 generator state"):
        train.load(tmp_path / "rng.npz")


def test_a_network_checkpoint_forged_as_version_1_is_refused(tmp_path):
    path = tmp_path / "net.npz"
    train.train(train.Config(**{**SMALL, "family": "sinusoid"}), checkpoint_path=path)
    fields = dict(np.load(path))
    fields.update(version=np.array(1, dtype=np.int64), curve=fields["curve"][:, :2])
    checkpoint.write(path, fields)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="version 1 predates the network families"):
        train.load(path)


def test_a_version_1_checkpoint_resumes_to_strict_json(tmp_path):
    """Version 1 kept no interval with its training curve: read as NaN half-widths, written to
    results.json as null (JSON has no NaN), and the file parses under a strict reader."""
    import json

    from refmaml import report

    path = tmp_path / "v1.npz"
    train.train(train.Config(**SMALL), checkpoint_path=path)
    fields = dict(np.load(path))
    fields.update(version=np.array(1, dtype=np.int64), curve=fields["curve"][:, :2])
    checkpoint.write(path, fields)
    state = train.load(path)
    assert np.isnan(np.asarray(state.curve, dtype=float)[:, 2]).all()
    out = report.report({"maml": (state, 0.0)}, eval_tasks=2)
    json_path, _ = report.write(out, str(tmp_path))
    with open(json_path, encoding="utf-8") as f:
        text = f.read()
    curve = json.loads(text, parse_constant=lambda c: pytest.fail(f"results.json holds {c}"))["methods"]["maml"]["curve"]
    assert curve and all(row[2] is None for row in curve)


def test_a_list_of_unexpected_fields_names_the_first_few_and_the_count(tmp_path, capsys):
    vectors.write(tmp_path, version="2")
    err = _fails(["train", "--resume", str(tmp_path / "refmaml-vectors-v2.npz"), "--out", str(tmp_path / "o")],
                 capsys, "does not hold the expected fields", "more (")
    assert len(err) < 1500


# --- the command line ------------------------------------------------------------------------------

def test_train_refuses_a_negative_inner_rate_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(["train", "--family", "sinusoid", "--inner-lr", "-0.5"], capsys, "inner_lr must be >= 0")
    assert not (tmp_path / "refmaml-train").exists()


@pytest.mark.parametrize("argv, message", [
    (["--lam", "2"], "--lam is implicit MAML's proximal strength (--method imaml); it does not apply to --method maml"),
    (["--method", "reptile", "--lam", "0.5"], "does not apply to --method reptile"),
    (["--method", "random", "--iterations", "5"], "--method random is not meta-trained; --iterations"),
    (["--method", "zero", "--meta-batch", "4", "--outer-lr", "0.1"], "--meta-batch, --outer-lr would be ignored"),
])
def test_train_refuses_options_its_method_would_ignore(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(["train", *argv], capsys, message)
    assert not (tmp_path / "refmaml-train").exists()


def test_demo_refuses_a_negative_seed_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(["demo", "--seed", "-1"], capsys, "--seed must be an integer from 0")
    assert not (tmp_path / "refmaml-demo").exists()
    with pytest.raises(ValueError, match="seed must be an integer from 0"):
        refmaml.demo.compare(seed=-1)


def test_a_missing_backend_is_refused_before_any_folder_is_made(tmp_path, capsys, monkeypatch):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    monkeypatch.chdir(tmp_path)
    for command in ("train", "demo"):
        _fails([command, "--backend", "cupy"], capsys, "needs CuPy")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, words", [
    (["--meta-batch", "100000000"], "meta_batch must be an integer from 1 to 100000"),
    (["--support", "1000000000"], "support must be an integer from 1 to 1000000"),
    (["--meta-batch", "10000", "--support", "1000"], "meta_batch x (support + query)"),
    (["--inner-steps", "1000000000"], "inner_steps must be an integer from 0 to 100000"),
    (["--iterations", "10000000000"], "iterations must be an integer from 0 to 1000000000"),
    (["--eval-tasks", "100000000"], "--eval-tasks must be an integer from 2 to 100000"),
    (["--seed", "-1"], "seed must be an integer from 0"),
])
def test_train_bounds_sizes_and_counts_before_any_work(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    _fails(["train", *argv], capsys, words)
    assert not (tmp_path / "refmaml-train").exists()


def test_check_on_a_binary_file_says_what_it_is(tmp_path, capsys):
    vectors.write(tmp_path, version="3")
    _fails(["check", str(tmp_path / "refmaml-vectors-v3.npz")], capsys, "it is a zip archive", "not a JSON file")
    (tmp_path / "r.json").write_bytes(b"\x00\xff\xfe garbage")
    _fails(["check", str(tmp_path / "r.json")], capsys, "it is binary data, not a JSON file")


@pytest.mark.parametrize("argv, words", [
    (["--sizes", "1000000,1000000,1"], "each layer width in sizes (--sizes)"),
    (["--support", "1000000000"], "support (--support) must be an integer from 1 to 1000"),
    (["--sizes", "2,3,1", "--steps", "1000000000"], "steps (--steps) must be an integer from 0 to 100"),
    (["--sizes", "a,b"], "sizes (--sizes) must be layer widths"),
    (["--sizes", "2x3x1"], "sizes (--sizes) must be layer widths"),
    (["--features", "-1"], "features (--features)"),
    (["--seed", "-1"], "seed (--seed)"),
    (["--query", "0"], "query (--query)"),
    (["--activation", "relu"], "activation (--activation) applies to a network given by sizes (--sizes) only"),
    (["--model", "softmax", "--sizes", "2,3,1"], "model (--model softmax) and sizes (--sizes) name two models"),
    (["--sizes", "2,3,1", "--inner-lr", "1e308", "--rates", "per-step"], "inner_lr (--inner-lr) must be at most"),
    (["--inner-lr", "1e307", "--rates", "per-parameter"], "inner_lr (--inner-lr) must be at most"),
    (["--l2", "-1"], "l2 (--l2) must be >= 0"),
])
def test_explain_refuses_with_its_own_words_naming_the_flag_and_no_warning(capsys, argv, words):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fails(["explain", *argv], capsys, words)


def test_explain_takes_no_huge_integer():
    for kw, name in ((dict(l2=HUGE), "l2 (--l2)"), (dict(inner_lr=HUGE), "inner_lr (--inner-lr)")):
        with pytest.raises(ValueError, match=re.escape(f"{name} must be finite")):
            explain.problem(**kw)


# --- networks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(50_000, 50_000, 1), (10**10, 10**10, 1)])
def test_a_network_too_large_is_refused_before_any_allocation(sizes):
    with pytest.raises(ValueError, match="sizes of the MLP make .* parameters; a network takes at most 100000000"):
        MLP(sizes)
    L = refmaml.models.layers
    with pytest.raises(ValueError, match="layers of the network make .* parameters; a network takes at most"):
        refmaml.models.Sequential([L.Linear(sizes[0], sizes[1])], loss="mse", input_shape=(sizes[0],))


def test_inner_steps_are_bounded_before_any_work():
    net = MLP((2, 3, 1))
    X, y = np.ones((4, 2)), np.ones(4)
    for f in (refmaml.adapt, ):
        with pytest.raises(ValueError, match="inner_steps must be an integer from 0 to 100000; got 10000000"):
            f(net.init(0), X, y, inner_lr=0.1, inner_steps=10**18, model=net)
    with pytest.raises(ValueError, match="inner_steps must be an integer from 0 to 100000"):
        refmaml.meta_value_and_grad(net.init(0), X, y, X, y, inner_lr=0.1, inner_steps=_validate.MAX_STEPS + 1,
                                    model=net)


@pytest.mark.parametrize("spelling", ["nested lists", "a list of arrays", "theta per task as lists"])
def test_the_hessian_guard_holds_for_nested_lists(spelling):
    net = MLP((50, 98, 1))  # 5,097 parameters: 0.19 GiB per task, 1.5 GiB for 8
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3, 50)), rng.standard_normal((8, 3))
    theta, XX = net.init(0), X.tolist()
    if spelling == "a list of arrays":
        XX = list(X)
    elif spelling == "theta per task as lists":
        theta, XX, y = np.tile(theta, (8, 1)).tolist(), X[0].tolist(), y[0]
    with pytest.raises(ValueError, match=r"\(8 x 5097 x 5097 float64\) would take 1.5 GiB; use hvp"):
        net.hessian(theta, XX, y.tolist())


def test_oracle_check_takes_a_relu_network_without_a_hidden_layer_and_names_a_bad_dtype():
    net = MLP((2, 1), "relu")

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        return refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=inner_lr, inner_steps=inner_steps,
                                           model=net)

    assert oracle.check(fn, net, steps=(1,)).passed
    for dtype in (["float64"], None, np.float64):
        with pytest.raises(ValueError, match="dtype must be one of float64, float32"):
            oracle.check(fn, net, dtype=dtype)


def test_a_checkpoint_with_a_nan_loss_or_a_damaged_member_header_is_refused_naming_the_file(tmp_path, saved):
    losses = saved[1]["losses"].copy()
    losses[0] = np.nan
    checkpoint.write(tmp_path / "nan.npz", {**saved[1], "losses": losses})
    with pytest.raises(checkpoint.InvalidCheckpoint, match="'losses' must be finite"):
        train.load(tmp_path / "nan.npz")
    raw = bytearray(saved[0])
    struct.pack_into("<H", raw, 28, 6)  # the first member's local extra field: its data read 6 bytes late
    assert raw.startswith(b"PK\x03\x04")
    (tmp_path / "magic.npz").write_bytes(bytes(raw))
    with pytest.raises(checkpoint.InvalidCheckpoint, match="member 'format'") as exc:
        train.load(tmp_path / "magic.npz")
    assert str(tmp_path / "magic.npz") in str(exc.value)


def test_a_member_with_a_wrong_npy_magic_is_refused_naming_the_file(tmp_path, saved):
    import io
    import zipfile

    path = tmp_path / "magic.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, value in saved[1].items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value)
            data = buffer.getvalue()
            z.writestr(name + ".npy", b"\x01\x00" + data[2:] if name == "format" else data)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="member 'format' is not a valid .npy array") as exc:
        train.load(path)
    assert str(path) in str(exc.value)


def test_learned_rates_without_their_adam_moments_are_refused(tmp_path):
    path = tmp_path / "rates.npz"
    train.train(train.Config(**{**SMALL, "method": "metasgd"}), checkpoint_path=path)
    fields = dict(np.load(path))
    del fields["adam_m_rates"]
    checkpoint.write(path, fields)
    with pytest.raises(checkpoint.InvalidCheckpoint, match="learned rates need the fields"):
        train.load(path)
