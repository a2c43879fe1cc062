"""The refmaml command."""

import subprocess
import sys

import pytest

import refmaml
from refmaml import cli, verify


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"refmaml {refmaml.__version__}"


@pytest.mark.slow
def test_verify_passes_and_prints_the_table(capsys, monkeypatch):
    seen = []
    run = verify.run
    monkeypatch.setattr(verify, "run", lambda **kw: seen.append(run(**kw)) or seen[-1])
    assert cli.main(["verify", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "identity" in out and "tolerance" in out and "FAIL" not in out
    rows, = seen
    assert all(r.passed for r in rows)
    backends = {r.backend for r in rows}
    assert "numpy" in backends
    labels = {r.label for r in rows}
    for needed in ("(L4)", "(L10)", "(L11)", "(M5)", "(M6)", "(M7)", "(M8)", "(S4)", "(S9)",
                   "(S10)", "(S11)", "(S12)", "(S13)", "(S14)", "(Q2)", "(Q3)", "(Q5)", "(Q7)", "(Q8)",
                   "(N3)", "(N4)-(N6)", "(N7)"):
        assert any(needed in label for label in labels), needed
    assert {r.identity.split()[0] for r in rows} >= {"logistic", "softmax", "linear", "MLP"}
    assert {r.dtype for r in rows} == {"float64", "float32"}


@pytest.mark.slow
def test_verify_reports_a_failure_with_exit_status_1(monkeypatch, capsys):
    broken = list(verify.IDENTITIES["softmax"])
    name, label, tol, f64, _ = broken[0]
    broken[0] = (name, label, tol, f64, lambda p: 1.0)
    monkeypatch.setattr(verify, "IDENTITIES", {"softmax": broken})
    assert cli.main(["verify"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "refmaml", "--version"], capture_output=True,
                         text=True, check=True)
    assert refmaml.__version__ in out.stdout


def test_a_missing_cupy_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    assert cli.main(["demo", "--backend", "cupy", "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "refmaml demo: backend 'cupy' needs CuPy and an NVIDIA GPU: pip install 'refmaml[gpu]'"
    assert not any("Traceback" in line for line in err)
    assert cli.main(["train", "--backend", "cupy", "--quiet", "--out", str(tmp_path)]) == 2
    assert "needs CuPy" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    for needed in ("default maml", "synthetic-binary: 0.3", "(default 100)", "presets", "sinusoid"):
        assert needed in text, needed
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "array library (default numpy" in capsys.readouterr().out
