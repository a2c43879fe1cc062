"""The house rules of ``refmaml/`` (README, "Architecture"), read from the source:

* math flows one way: a module imports only from its own layer or the layers below it;
* no module uses another module's underscore names (the package-private modules ``_xp``,
  ``_validate`` and ``_text`` themselves may be imported);
* ``models/`` never imports ``maml``; nothing imports torch, jax or tensorflow; ``cli.py`` holds no
  math (it imports no array library and no module of the core below the applications).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "refmaml"

# Bottom to top. A module may import from its own layer and every layer below it.
LAYERS = [
    ("base", {"errors", "_xp", "_validate", "_text", "_malloc", "_threads", "_atomic", "backends"}),
    ("kernels", {"kernels"}),
    ("checks", {"special", "check"}),
    ("problem", {"problem"}),
    ("models", {"models"}),
    ("dual", {"dual"}),
    ("policy", {"policy"}),
    ("maml", {"maml", "costs"}),
    ("variants", {"variants"}),
    ("instances", {"instances"}),
    ("oracle", {"oracle"}),
    ("applications", {"tasks", "adam", "checkpoint", "evaluate", "train", "presets", "report", "plot", "demo",
                      "verify", "audit", "tutorial", "explain", "figures", "cli", "__main__"}),
]
FOREIGN = {"torch", "jax", "jaxlib", "tensorflow"}


def _layer(module):
    """Layer index of a dotted module name below ``refmaml`` (``None`` for the package itself)."""
    parts = module.split(".")
    if parts == ["refmaml"]:
        return None
    top = parts[1]
    for k, (_, names) in enumerate(LAYERS):
        if top in names:
            return k
    raise AssertionError(f"refmaml.{top} is in no layer of tests/test_architecture.py: place it")


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield path, ".".join(parts), is_package


def _is_module(dotted):
    base = ROOT.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _resolve(node, module, is_package):
    """The absolute module an ImportFrom node reads from."""
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path, module, is_package):
    """``(imported module, name or None, line)`` for every import of a refmaml module or name, and
    the local aliases bound to refmaml modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.append((a.name, None, node.lineno))
                if a.name.startswith("refmaml"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "refmaml"
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, is_package)
            for a in node.names:
                full = f"{source}.{a.name}"
                if source.startswith("refmaml") and _is_module(full):
                    found.append((full, None, node.lineno))
                    aliases[a.asname or a.name] = full
                else:
                    found.append((source, a.name, node.lineno))
    return tree, found, aliases


ALL = list(_modules())


@pytest.mark.parametrize("path, module, is_package", ALL, ids=[m for _, m, _ in ALL])
def test_imports_go_down_the_layers(path, module, is_package):
    own = _layer(module)
    _, found, _ = _imports(path, module, is_package)
    for target, _, line in found:
        if not target.startswith("refmaml") or own is None:
            continue
        layer = _layer(target)
        if layer is None:  # ``from refmaml import __version__`` and the like
            continue
        assert layer <= own, (f"{module} (layer {LAYERS[own][0]}) imports {target} (layer {LAYERS[layer][0]}) "
                              f"at line {line}: imports go down the layers only")


@pytest.mark.parametrize("path, module, is_package", ALL, ids=[m for _, m, _ in ALL])
def test_no_module_uses_another_modules_private_names(path, module, is_package):
    tree, found, aliases = _imports(path, module, is_package)
    for target, name, line in found:
        if name and target.startswith("refmaml") and name.startswith("_") and not name.startswith("__"):
            raise AssertionError(f"{module} imports the private name {name} of {target} (line {line})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            owner = aliases[node.value.id]
            attr = node.attr
            if attr.startswith("_") and not attr.startswith("__") and owner != module:
                raise AssertionError(f"{module} uses {owner}.{attr} (line {node.lineno}), a private name")


@pytest.mark.parametrize("path, module, is_package", ALL, ids=[m for _, m, _ in ALL])
def test_no_framework_imports(path, module, is_package):
    """torch, jax and tensorflow appear only in tests and benchmarks, as referees."""
    _, found, _ = _imports(path, module, is_package)
    for target, _, line in found:
        assert target.split(".")[0] not in FOREIGN, f"{module} imports {target} (line {line})"


def test_models_never_import_maml():
    for path, module, is_package in ALL:
        if module.startswith("refmaml.models"):
            _, found, _ = _imports(path, module, is_package)
            assert not [t for t, _, _ in found if t.startswith("refmaml.maml")], module


def test_cli_holds_no_math():
    """cli.py parses arguments, calls the library and prints: no array library, no core module
    (the oracle's judge, the text tables and the allocator setting are not math)."""
    path = ROOT / "cli.py"
    _, found, _ = _imports(path, "refmaml.cli", False)
    core = {name for _, names in LAYERS[:-1] for name in names}
    for target, _, line in found:
        assert target.split(".")[0] not in {"numpy", "array_api_compat", "cupy"}, f"cli.py imports {target}"
        if target.startswith("refmaml."):
            assert target.split(".")[1] not in core - {"oracle", "_text", "_malloc"}, \
                f"cli.py imports the core module {target} (line {line})"


def test_the_rules_are_not_empty(tmp_path):
    """The checks above see what they are meant to see: a private import, a private attribute and
    an upward import are found in a module written to break all three rules."""
    bad = tmp_path / "probe.py"
    bad.write_text("from refmaml.maml import _sum_to\nfrom refmaml import maml\nmaml._sum_to\n", encoding="utf-8")
    tree, found, aliases = _imports(bad, "refmaml.kernels", False)
    assert ("refmaml.maml", "_sum_to", 1) in found
    assert aliases == {"maml": "refmaml.maml"}
    assert _layer("refmaml.maml") > _layer("refmaml.kernels")
    assert any(isinstance(n, ast.Attribute) and n.attr == "_sum_to" for n in ast.walk(tree))
