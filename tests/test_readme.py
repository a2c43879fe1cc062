"""The README's examples run as written and say what they claim."""

import importlib.util
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    ns, seen = {}, []
    for block in blocks:  # later blocks continue the earlier ones
        needs = re.match(r"# needs: (\w+)", block)
        if needs and importlib.util.find_spec(needs.group(1)) is None:
            continue   # an optional extra's example, run where the extra is installed (CI)
        exec(compile(block, str(README), "exec"), dict(ns) if needs else ns)
        seen.append(dict(ns))
    softmax = next(s for s in seen if "C" in s)   # the block of the softmax example
    T, m, d, C = softmax["T"], softmax["m"], softmax["d"], softmax["C"]
    assert softmax["grad"].shape == (d, C) and softmax["probs"].shape == (T, m, C)
    # softmax.md (S13): rows of the meta-gradient sum to zero, to rounding of their terms
    assert np.all(np.abs(softmax["grad"].sum(axis=1)) <= 1e-14 * np.abs(softmax["grad"]).sum(axis=1))
    assert np.allclose(softmax["probs"].sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    # the MAML-family examples: shapes and solver reports as the text says
    rates = next(s for s in seen if "meta_sgd" in s)
    assert rates["per_step"].shape == (3, 1) and rates["rate_grad"].shape == rates["meta_sgd"].shape
    assert ns["theta_next"].shape == (d,) and ns["grad"].shape == (d,)
    info = ns["info"]
    assert info["inner_residual"] <= info["tol"] and info["cg_residual"] <= info["tol"]
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
