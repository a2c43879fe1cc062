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

from .fuzz import ENTRIES, TALLY, leaves, mutations, run  # TALLY: printed by conftest.py

EXAMPLES = 5 * settings.default.max_examples


@pytest.mark.parametrize("entry", list(ENTRIES.values()), ids=list(ENTRIES))
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_hostile_argument(entry, data):
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
