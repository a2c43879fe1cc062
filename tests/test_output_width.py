"""Every table refmaml prints fits 100 columns: the demo's (default and --all-steps, regression and
classification), train's, the audit's and verify's; a tuned baseline row that repeats its untuned
row is printed as one note, not as a copy."""

import pytest

from refmaml import _text, cli, demo, report as results

WIDTH = 100
QUICK = dict(iterations=20, eval_every=10, curve_tasks=5)


def _widest(text):
    return max(len(line) for line in text.splitlines())


@pytest.fixture(scope="module")
def sinusoid():
    return demo.compare("sinusoid", eval_tasks=12, **QUICK)


@pytest.fixture(scope="module")
def binary():
    return demo.compare("synthetic-binary", eval_tasks=12, meta_batch=4, **QUICK)


@pytest.mark.parametrize("all_steps", [False, True])
@pytest.mark.parametrize("family", ["sinusoid", "binary"])
def test_the_demo_table_fits_100_columns(family, all_steps, request):
    r = request.getfixturevalue(family)
    text = demo.format_table(r, all_steps=all_steps)
    assert _widest(text) <= WIDTH
    K = r["steps"]
    heads = [line for line in text.splitlines() if line.startswith("method ")]
    columns = {c.strip() for h in heads for c in h.split("  ") if c.strip().startswith("step ")}
    assert columns == ({f"step {k}" for k in range(K + 1)} if all_steps else {"step 0", "step 1", f"step {K}"})
    if not all_steps:
        assert "--all-steps" in text
    for name in r["methods"]:
        assert demo.LABELS[name] in text


def test_a_tuned_row_that_repeats_its_untuned_row_is_a_note(sinusoid):
    r = {**sinusoid, "methods": dict(sinusoid["methods"])}
    r["methods"]["random-tuned"] = {**r["methods"]["random"], "label": demo.LABELS["random-tuned"],
                                    "rate_chosen_on_training_tasks": True}
    assert results.same_as_untuned(r, "random-tuned") and not results.same_as_untuned(r, "random")
    line = next(line for line in demo.format_table(r).splitlines() if line.startswith(demo.LABELS["random-tuned"]))
    assert "same as the row above" in line and "±" not in line
    r["methods"]["random-tuned"] = {**r["methods"]["random-tuned"], "rate": 0.03}  # another rate: its numbers
    line = next(line for line in demo.format_table(r).splitlines() if line.startswith(demo.LABELS["random-tuned"]))
    assert "±" in line


@pytest.mark.parametrize("flags", [[], ["--all-steps"]])
def test_the_demo_command_prints_at_most_100_columns(sinusoid, flags, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo, "compare", lambda *a, **k: sinusoid)
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet", *flags]) == 0
    out = capsys.readouterr().out
    assert "results: " in out and _widest(out) <= WIDTH


def test_the_train_command_prints_at_most_100_columns(tmp_path, capsys):
    assert cli.main(["train", "--family", "synthetic-binary", "--method", "metasgd", "--iterations", "6",
                     "--meta-batch", "2", "--eval-tasks", "6", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Meta-SGD" in out and _widest(out) <= WIDTH


def test_the_audit_prints_at_most_100_columns(capsys):
    assert cli.main(["audit"]) == 0
    out = capsys.readouterr().out
    assert _widest(out) <= WIDTH
    assert "evidence:" in out and "correction:" in out


def test_verify_prints_at_most_100_columns(monkeypatch, capsys):
    from refmaml import verify
    from refmaml.verify.identity import Row

    rows = [Row("MLP (2, 3, 1) tanh " + "x" * 70, "mlp.md (N4)-(N6)", "array-api-strict:device1", "float64",
                1e-16, 1e-12), Row("logistic gradient = complex step", "logistic.md (L4)", "numpy", "float32",
                                   2e-7, 1e-4)]
    monkeypatch.setattr(verify, "run", lambda **kw: rows)
    assert cli.main(["verify"]) == 0
    out = capsys.readouterr().out
    assert _widest(out) <= WIDTH
    lines = out.splitlines()
    for r in rows:  # each row stacked: its identity, then the other cells
        i = lines.index(r.identity)
        assert lines[i + 1].split()[:3] == [r.label.split()[0], r.label.split()[1], r.backend] or \
            r.backend in lines[i + 1]


def test_a_narrow_table_keeps_one_line_per_row():
    assert _text.table(["a", "b"], [["1", "2"]]).splitlines() == ["a  b", "-  -", "1  2"]
    wide = _text.table(["name", "x", "y"], [["n" * 97, "1", "2"]], width=WIDTH)
    assert wide.splitlines() == ["name", "  x  y", "  -  -", "n" * 97, "  1  2"]
    assert _widest(wide) <= WIDTH


@pytest.mark.parametrize("argv", [[], ["--model", "softmax"], ["--model", "linear", "--rates", "per-parameter"],
                                  ["--form", "dual"], ["--sizes", "2,3,1"], ["--sizes", "1,2,1", "--steps", "1", "--layers"],
                                  ["--model", "conv"], ["--sizes", "2,3,3", "--loss", "softmax", "--activation", "relu",
                                                        "--layers"]])
def test_explain_fits_100_columns_with_matrices_aligned(argv, capsys):
    """`refmaml explain` is read line by line next to the derivations: no line wider than 100
    columns (an equation that does not fit goes to the next line), and a matrix's further rows
    start under its first row's opening bracket, each with the same number of entries."""
    assert cli.main(["explain", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _widest("\n".join(lines)) <= WIDTH
    for above, below in zip(lines, lines[1:]):
        if above.rstrip().endswith("],") and below.lstrip().startswith("[") and "= [[" in above:
            j = above.index("= [[") + 2
            while above[j + 1] == "[":
                j += 1  # the innermost opening bracket of the first row
            assert below.index("[") == j, (above, below)
