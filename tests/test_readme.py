"""The README's examples run as written and say what they claim."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    ns = {}
    for block in blocks:  # later blocks continue the earlier ones
        exec(compile(block, str(README), "exec"), ns)
    T, m, d, C = ns["T"], ns["m"], ns["d"], ns["C"]
    assert ns["grad"].shape == (d, C) and ns["probs"].shape == (T, m, C)
    # softmax.md (S13): rows of the meta-gradient sum to zero, to rounding of their terms
    assert np.all(np.abs(ns["grad"].sum(axis=1)) <= 1e-14 * np.abs(ns["grad"]).sum(axis=1))
    assert np.allclose(ns["probs"].sum(axis=-1), 1.0, rtol=0, atol=1e-15)
