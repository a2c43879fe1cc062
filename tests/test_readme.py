"""The README's examples run as written and say what they claim.

* every Python block runs alone, in a fresh process (and its claims hold, checked in its own
  namespace);
* every shell line after the set-up runs as typed, in the environment the set-up makes (the
  interpreter running these tests and its ``bin`` folder first on ``PATH``), one after another in
  one folder; a line that needs a file the user makes first says so with ``# needs:`` and is left
  out. The two set-up commands themselves are what CI runs (``.ci/run``) and what a new user runs.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def _needs(block):
    needs = re.match(r"# needs: (\w+)", block)
    return needs.group(1) if needs else None


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(BLOCKS)), ids=[f"block{k + 1}" for k in range(len(BLOCKS))])
def test_every_python_block_runs_alone(number, tmp_path):
    block = BLOCKS[number]
    if _needs(block):
        pytest.importorskip(_needs(block))
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _shell_lines():
    after = TEXT[TEXT.index("## Example"):]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", after, re.S):
        lines += [line for line in block.splitlines() if line.strip()]
    return lines


@pytest.mark.slow
def test_every_shell_line_runs_as_typed(tmp_path):
    """In one folder, in order (a later line may use a file an earlier one wrote)."""
    lines = _shell_lines()
    assert len(lines) >= 4
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    ran = 0
    for line in lines:
        if "# needs:" in line:
            continue
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{line}: {done.stderr[-2000:]}"
        ran += 1
    assert ran >= 4


def test_the_set_up_commands_are_the_ones_ci_runs():
    """The test command is the line .ci/run takes from the README; the main command runs the demo."""
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "<!-- the test command" in TEXT and "the test command" in ci
    found = re.search(r"<!-- the test command.*?-->\n```sh\n(python3 -m venv[^\n]*)\n", TEXT, re.S)
    assert found and found.group(1).endswith("python -m pytest")
    assert "pip install torch==2.13.0" in found.group(1) and "crosscheck" in found.group(1)
    setup = re.findall(r"```sh\n(python3 -m venv[^\n]*)\n", TEXT)
    assert setup[0].endswith("refmaml demo") and ". .venv/bin/activate" in setup[0]


def test_readme_examples_say_what_they_claim():
    assert len(BLOCKS) >= 2
    seen = []
    for block in BLOCKS:  # each block in a namespace of its own
        if _needs(block) and importlib.util.find_spec(_needs(block)) is None:
            continue   # an optional extra's example, run where the extra is installed (CI)
        ns = {}
        exec(compile(block, str(README), "exec"), ns)
        seen.append(ns)
    softmax = next(s for s in seen if "C" in s)   # the block of the softmax example
    T, m, d, C = softmax["T"], softmax["m"], softmax["d"], softmax["C"]
    assert softmax["grad"].shape == (d, C) and softmax["probs"].shape == (T, m, C)
    # softmax.md (S13): rows of the meta-gradient sum to zero, to rounding of their terms
    assert np.all(np.abs(softmax["grad"].sum(axis=1)) <= 1e-14 * np.abs(softmax["grad"]).sum(axis=1))
    assert np.allclose(softmax["probs"].sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    # the MAML-family examples: shapes and solver reports as the text says
    family = next(s for s in seen if "meta_sgd" in s)
    assert family["step_rate_grad"].shape == (3, 1) and family["rate_grad"].shape == family["meta_sgd"].shape
    assert family["theta_next"].shape == (family["d"],) and family["grad"].shape == (family["d"],)
    info = family["info"]
    assert info["inner_residual"] <= info["tol"] and info["cg_residual"] <= info["tol"]
    # the residuals the comment quotes: the inner one to the digits shown (Newton's last step leaves
    # it far above rounding), the solve's by its bound (its digits are rounding, which the BLAS kernel sets)
    assert f"{info['inner_residual']:.1e}" == "1.5e-12" and info["cg_residual"] < 1e-15
    # linear regression: the closed form equals reverse accumulation, the optimum zeroes the gradient
    lin = next(s for s in seen if "best" in s)
    assert np.allclose(lin["same"][1], lin["grad"], rtol=1e-12, atol=0)
    import refmaml
    g = refmaml.meta_value_and_grad(lin["best"], lin["Xs"], lin["ys"], lin["Xq"], lin["yq"], inner_lr=0.05,
                                    inner_steps=3, model="linear")[1]
    assert np.linalg.norm(g) <= 1e-10 * np.linalg.norm(lin["grad"])
    # the network example: PyTorch's layout, the flat gradient
    net = next(s for s in seen if "shapes" in s)
    assert net["shapes"] == [((40, 1), (40,)), ((40, 40), (40,)), ((1, 40), (1,))]
    assert net["grad"].shape == (1761,) and np.all(np.isfinite(net["grad"]))
