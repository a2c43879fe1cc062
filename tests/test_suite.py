"""The test suite's own shape: the fast lane ``pytest -m "not slow"`` covers every test module.

``@pytest.mark.slow`` marks the longer checks (the demo runs, the command-line verification, the
PyTorch and JAX referees on every case, the networks on the array-API backends); CI runs them all.
The fast lane is what a contributor runs after each change, so every module keeps at least one
test in it: a module whose tests are all slow would go unchecked there.
"""

import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).parent


def test_every_test_module_has_a_test_in_the_fast_lane():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         str(TESTS)],
        capture_output=True, text=True, cwd=TESTS.parent, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    collected = {line.split("::")[0].rsplit("/", 1)[-1] for line in run.stdout.splitlines() if "::" in line}
    modules = {path.name for path in TESTS.glob("test_*.py")}
    assert collected <= modules
    assert not modules - collected, f"only slow tests in {sorted(modules - collected)}"
