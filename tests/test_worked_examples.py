"""The worked examples of derivations/ are the output of `refmaml explain`, number for number.

Each derivation file named below has a section "Worked example" with a block that starts with the
command (``$ refmaml explain ...``) followed by its output. The test reruns the command and
compares every line: exactly, except the lines that report a rounding-level difference (the
agreement with the library and with the complex step), whose printed value may differ between
BLAS builds and must only stay below 1e-12.
"""

import pathlib
import re
import shlex

import pytest

from refmaml import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent / "derivations"
FILES = ["logistic.md", "softmax.md", "maml.md", "variants.md", "dual.md", "linear.md", "mlp.md", "models.md"]
ROUNDING = re.compile(r"(relative difference(?: with the primal walk-through)?|relative error of g_0 against it\s+=)"
                      r"\s+([0-9.e+-]+)")


def _example(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "\n## Worked example\n" in text, f"{name} has no worked example"
    section = text[text.index("\n## Worked example\n"):]
    block = re.search(r"```text\n\$ refmaml explain ([^\n]*)\n(.*?)```", section, re.S)
    assert block, f"{name}: the worked example has no `$ refmaml explain ...` block"
    return shlex.split(block.group(1)), block.group(2).rstrip("\n").splitlines()


@pytest.mark.parametrize("name", FILES)
def test_worked_example_is_the_commands_output(name, capsys):
    args, shown = _example(name)
    assert cli.main(["explain", *args]) == 0
    produced = capsys.readouterr().out.rstrip("\n").splitlines()
    assert len(produced) == len(shown), f"{name}: {len(shown)} lines shown, the command prints {len(produced)}"
    for got, want in zip(produced, shown, strict=True):
        a, b = ROUNDING.search(got), ROUNDING.search(want)
        if a and b:
            assert ROUNDING.sub("", got) == ROUNDING.sub("", want), name
            assert float(a.group(2)) <= 1e-12 and float(b.group(2)) <= 1e-12, (name, got)
        else:
            assert got == want, f"{name}: shown {want!r}, the command prints {got!r}"
