"""Hostile input, fuzzed: every public function either returns a finite answer that agrees with
the float64 reference, or raises ValueError/TypeError naming the argument at fault (tests/fuzz.py
says what each mutation must produce). The CI profile tries 5 x its examples per entry point
(150); ``--hypothesis-profile=thorough`` tries 5000."""

import collections
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .fuzz import ENTRIES, NETWORK_ENTRIES, TALLY, leaves, mutations, run  # TALLY: printed by conftest.py

EXAMPLES = 5 * settings.default.max_examples


@pytest.mark.parametrize("entry", list(ENTRIES.values()), ids=list(ENTRIES))
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_hostile_argument(entry, data):
    _hostile_call(entry, data)


@pytest.mark.parametrize("entry", list(NETWORK_ENTRIES.values()), ids=list(NETWORK_ENTRIES))
@settings(max_examples=2 * settings.default.max_examples)
@given(data=st.data())
def test_hostile_argument_on_networks(entry, data):
    """The networks' surfaces (the MLP and its methods, MAML through networks, explain, training on the
    sinusoid): fewer cases than the functions above, each call costing more."""
    _hostile_call(entry, data)


def _hostile_call(entry, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    args, kinds = entry.make(rng, lambda lo, hi: data.draw(st.integers(lo, hi)))
    # The valid call first: it succeeds, is finite, and agrees with the independent reference
    # (tests/reference.py, plain NumPy) to 1e-10 relative where one exists.
    result = entry.call(args)
    for v in leaves(result):
        assert np.all(np.isfinite(v)), f"{entry.name}: the valid call returned a non-finite number"
    if entry.reference is not None:
        want = entry.reference(args)
        if want is not None:
            got = np.asarray(result[0] if isinstance(result, tuple) else result, dtype=np.float64)
            assert np.allclose(got, want, rtol=1e-10, atol=1e-12), entry.name
    name = data.draw(st.sampled_from(sorted(kinds)), label="argument")
    label, value, expectation = data.draw(
        st.sampled_from(mutations(args, kinds, name, rng)), label="mutation"
    )
    outcome = run(entry, args, name, label, value, expectation)
    TALLY.setdefault(entry.name, collections.Counter())[(expectation, outcome)] += 1


# --- the command line ---------------------------------------------------------------------------

HOSTILE_VALUES = ["-1", "0", "nan", "inf", "-inf", "1e309", "", "abc", "2.5", "0x10", "None", "--", "1" * 30]
TRAIN_OPTIONS = {  # option -> harmless values (kept small so that a valid draw runs in well under a second)
    "--family": ["synthetic-binary", "synthetic-nway"],
    "--method": ["maml", "metasgd", "zero", "reptile"],
    "--inner-lr": ["0.1", "-0.3", "1e300"],
    "--inner-steps": ["0", "1", "2"],
    "--meta-batch": ["1", "2"],
    "--iterations": ["0", "1", "2"],
    "--outer-lr": ["0.01"],
    "--support": ["1", "3"],
    "--query": ["1", "2"],
    "--l2": ["0", "0.5"],
    "--lam": ["1", "0.1"],
    "--seed": ["0", "7"],
    "--eval-every": ["0", "1"],
    "--curve-tasks": ["2"],
    "--checkpoint-every": ["0", "1"],
    "--eval-tasks": ["2", "3"],
}
SAFE_VALUES = {
    "--iterations": ["0", "1", "2"],
    "--eval-tasks": ["2", "3"],
    "--meta-batch": ["1", "2"],
    "--support": ["1", "3"],
    "--query": ["1", "2"],
    "--curve-tasks": ["2"],
    "--inner-steps": ["0", "1", "2"],
}  # options whose large valid values would be slow


@settings(max_examples=2 * settings.default.max_examples)
@given(data=st.data())
def test_train_command_line(tmp_path_factory, data):
    """`refmaml train` with hostile options: exit 0, or exit 2 with a message (argparse's own
    usage errors included), never a traceback; a run that starts finishes in well under a second."""
    import contextlib
    import io

    from refmaml import cli

    out = tmp_path_factory.mktemp("cli")
    argv = [
        "train",
        "--quiet",
        "--out",
        str(out / "run"),
        "--iterations",
        "1",
        "--eval-tasks",
        "2",
        "--curve-tasks",
        "2",
    ]
    for _ in range(data.draw(st.integers(1, 4))):
        option = data.draw(st.sampled_from(sorted(TRAIN_OPTIONS)))
        pool = TRAIN_OPTIONS[option] + [
            v
            for v in HOSTILE_VALUES
            if option not in SAFE_VALUES or not v.lstrip("-").isdigit() or v.startswith("-")
        ]
        argv += [option, data.draw(st.sampled_from(pool))]
    if data.draw(st.booleans()):
        argv += ["--checkpoint", str(out / data.draw(st.sampled_from(["ck.npz", "sub/ck.npz", "run"])))]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: a value of the wrong type or an unknown choice
            code = exc.code
    assert code in (0, 2), (argv, code)
    if code == 2:
        assert err.getvalue().strip(), argv


@settings(max_examples=2 * settings.default.max_examples)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_check_command_on_garbage_files(tmp_path_factory, content):
    """`refmaml check` on arbitrary bytes: exit 2 with a reason, never a traceback."""
    import contextlib
    import io

    from refmaml import cli

    path = tmp_path_factory.mktemp("garbage") / "results.json"
    path.write_bytes(content)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["check", str(path)])
    assert code == 2 and "refmaml check:" in err.getvalue()


# --- network checkpoints and their zip structure -----------------------------------------------------

ZIP_FIELDS = {  # signature -> offsets of its 16-bit fields: versions, flags, compression method, lengths
    b"PK\x03\x04": (4, 6, 8, 26, 28),
    b"PK\x01\x02": (4, 6, 8, 10, 28, 30, 32),
    b"PK\x05\x06": (8, 10),
}
HOSTILE_JSON = [10**400, -1, 2**64, "x", None, True, [], {}, 1.5, "__DEEP__"]


def _network_checkpoint(tmp_path_factory):
    """A sinusoid (network) run of two iterations with learned rates, saved; made once."""
    global _SAVED
    if _SAVED is None:
        from refmaml import train

        path = tmp_path_factory.mktemp("net-ckpt") / "run.npz"
        config = train.Config(family="sinusoid", method="metasgd", iterations=2, meta_batch=2, support=3, query=2,
                              inner_lr=0.01, inner_steps=1, eval_every=1, curve_tasks=2)
        train.train(config, checkpoint_path=path)
        _SAVED = path.read_bytes(), dict(np.load(path))
    return _SAVED


_SAVED = None


def _json_edit(text, draw_key, value):
    """``text`` (a JSON object) with one key, at the top or one level down, set to ``value``."""
    import json

    doc = json.loads(text)
    inner = [k for k, v in doc.items() if isinstance(v, dict)]
    target = doc[inner[0]] if inner and draw_key(0, 1) else doc
    keys = sorted(target)
    target[keys[draw_key(0, len(keys) - 1)]] = value
    return json.dumps(doc).replace('"__DEEP__"', "[" * 100_000 + "]" * 100_000)


@settings(max_examples=2 * settings.default.max_examples)
@given(data=st.data())
def test_damaged_network_checkpoints(tmp_path_factory, data):
    """A network checkpoint damaged anywhere (a zip header's field, a byte, a cut, a member's value, a JSON
    field of the configuration or generator state, the version): ``train.load`` gives a state that resumes
    to finite numbers, or an InvalidCheckpoint naming the file or the field; nothing else, no warning."""
    import json
    import struct
    import warnings

    from refmaml import checkpoint, train

    raw, fields = _network_checkpoint(tmp_path_factory)
    draw = lambda lo, hi: data.draw(st.integers(lo, hi))  # noqa: E731
    path = tmp_path_factory.mktemp("damaged") / "run.npz"
    how = data.draw(st.sampled_from(["zip header", "byte", "cut", "member", "config", "rng", "version"]), label="how")
    if how in ("zip header", "byte", "cut"):
        b = bytearray(raw)
        if how == "zip header":
            signature = data.draw(st.sampled_from(sorted(ZIP_FIELDS)))
            starts = [i for i in range(len(b)) if b.startswith(signature, i)]
            offset = data.draw(st.sampled_from(ZIP_FIELDS[signature]))
            struct.pack_into("<H", b, data.draw(st.sampled_from(starts)) + offset, draw(0, 2**16 - 1))
        elif how == "byte":
            b[draw(0, len(b) - 1)] = draw(0, 255)
        else:
            del b[draw(0, len(b) - 1):]
        path.write_bytes(bytes(b))
    else:
        f = dict(fields)
        if how == "member":
            name = data.draw(st.sampled_from(sorted(f)))
            f[name] = data.draw(st.sampled_from([
                np.array(np.nan), np.zeros((0,)), np.full_like(f[name], np.nan) if f[name].dtype.kind == "f" else
                np.array(1.5), np.array("x" * 1000), np.zeros(3, dtype=np.complex128), np.array(10**18),
                f[name].astype(np.float32) if f[name].dtype.kind == "f" else np.array(-1)]))
        elif how in ("config", "rng"):
            f[how] = np.array(_json_edit(str(f[how]), draw, data.draw(st.sampled_from(HOSTILE_JSON))))
        else:
            f["version"] = np.array(data.draw(st.sampled_from([0, 1, 3, -1, 2**62])), dtype=np.int64)
        checkpoint.write(path, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            state = train.load(path)
        except checkpoint.InvalidCheckpoint as exc:
            assert str(path) in str(exc) or "checkpoint field" in str(exc), str(exc)
            TALLY.setdefault("network checkpoints", collections.Counter())[(how, "refused")] += 1
            return
        state.config = train.Config(**{**state.config.as_dict(), "iterations": state.iteration + 1})
        try:
            state = train.run(state)
        except ValueError as exc:  # a valid but absurd configuration (outer_lr = 2^64): training diverges
            assert "overflow" in str(exc) or "diverged" in str(exc), str(exc)
            TALLY.setdefault("network checkpoints", collections.Counter())[(how, "diverged")] += 1
            return
    for v in (state.params["theta"], state.losses, [p[:2] for p in state.curve]):
        assert np.all(np.isfinite(np.asarray(v, dtype=float))), how
    TALLY.setdefault("network checkpoints", collections.Counter())[(how, "resumed")] += 1


# --- version-2 vectors and results files ---------------------------------------------------------------

_V2 = None


def _v2_document():
    """A version-2 vectors document of a few network and linear cases, and a results file answering them."""
    global _V2
    if _V2 is None:
        import refmaml
        from refmaml.oracle import cases, vectors

        chosen = [c for c in cases.all_cases("2") if c.id.startswith(("mlp-4x8x3-tanh-softmax-K1", "logistic-K1"))][:4]
        doc = {"format": "refmaml-vectors", "version": "2", "generator": "test", "conventions": {},
               "cases": [vectors.case_record(c) for c in chosen]}
        results = {"format": "refmaml-results", "vectors_version": "2", "dtype": "float64",
                   "results": {c.id: {"meta_loss": 0.0, "meta_grad": np.zeros(np.shape(c.theta)).tolist()}
                               for c in chosen}}
        _V2 = doc, results, refmaml
    return _V2


def _paths(value, where=()):
    """Every path to a value inside a JSON document."""
    yield where
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, where + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, where + (i,))


@settings(max_examples=2 * settings.default.max_examples)
@given(data=st.data())
def test_damaged_version_2_files(tmp_path_factory, data):
    """A version-2 vectors file or results file with any value replaced by a hostile one (a 400-digit
    integer, NaN, a string, null, a boolean, an empty list or object, nesting 100,000 deep): the vectors
    load or are refused with ``InvalidFile``; ``refmaml check`` exits 0, 1 or 2 (2 with its one-line
    reason), never a traceback."""
    import contextlib
    import copy
    import io
    import json

    from refmaml import cli
    from refmaml.oracle import vectors

    doc, results, _ = _v2_document()
    which = data.draw(st.sampled_from(["vectors", "results"]), label="file")
    target = copy.deepcopy(doc if which == "vectors" else results)
    paths = [p for p in _paths(target) if p]
    where = data.draw(st.sampled_from(paths), label="where")
    value = data.draw(st.sampled_from(HOSTILE_JSON + ["NaN"]), label="value")
    parent = target
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    text = json.dumps(target).replace('"__DEEP__"', "[" * 100_000 + "]" * 100_000).replace('"NaN"', "NaN")
    path = tmp_path_factory.mktemp("v2") / f"{which}.json"
    path.write_text(text)
    if which == "vectors":
        try:
            vectors.load(path)
            outcome = "loaded"
        except vectors.InvalidFile:
            outcome = "refused"
    else:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["check", str(path)])
        assert code in (0, 1, 2)
        if code == 2:
            assert err.getvalue().startswith("refmaml check:") and err.getvalue().count("\n") == 1, err.getvalue()
        outcome = {0: "agreed", 1: "judged", 2: "refused"}[code]
    TALLY.setdefault(f"version-2 {which}", collections.Counter())[(which, outcome)] += 1
