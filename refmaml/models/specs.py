"""Models as JSON-able specs: ``model.spec()`` and :func:`from_spec`, their inverse.

A spec is a dict. The registered pairs are ``{"model": "logistic" | "softmax" | "linear"}``; an MLP
is ``{"model": "mlp", "sizes": [...], "activation": ..., "loss": ...}``; the image preset is
``{"model": "convnet", "classes": ..., "blocks": ..., "channels": ..., "input_shape": [...], "loss": ...}``;
a network of layers is
``{"model": "sequential", "layers": [{"layer": <kind>, <arguments>...}, ...], "loss": ...,
"input_shape": [...]}``. Specs come from files (test vectors, checkpoints, results), so
:func:`from_spec` treats them as untrusted: every field is checked, unknown fields are refused,
and only the layer kinds of ``refmaml.models.layers.KINDS`` (and those the caller names) are built.
"""

from . import layers as layer_kinds
from .convnet import ConvNet
from .mlp import MLP
from .sequential import Sequential

MAX_LAYERS = 1000  # a spec with more layers is refused before any is built


def _fields(spec, where, required, optional=()):
    if not isinstance(spec, dict):
        raise TypeError(f"{where} must be a dict; got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(required) - set(optional), key=str)
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"{where} has unexpected fields {shown}; expected {', '.join(required + optional)}")
    missing = [f for f in required if f not in spec]
    if missing:
        raise ValueError(f"{where} lacks the fields {', '.join(missing)}")


def _layer(spec, kinds, where):
    if not isinstance(spec, dict) or not isinstance(spec.get("layer"), str):
        raise ValueError(f"{where} must be a dict with a string field 'layer'; got {spec!r:.200}")
    kind = kinds.get(spec["layer"])
    if kind is None:
        raise ValueError(f"{where}: unknown layer kind {spec['layer']!r:.100}; known: {', '.join(sorted(kinds))}")
    arguments = {k: v for k, v in spec.items() if k != "layer"}
    for value in arguments.values():
        pair = isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not (pair or isinstance(value, (int, float, str, bool, type(None)))):
            raise TypeError(f"{where}: layer arguments must be numbers, pairs of integers, strings or null; "
                            f"got {value!r:.100}")
    try:
        return kind(**arguments)
    except TypeError as e:
        raise ValueError(f"{where}: {spec['layer']} does not take these arguments ({e})") from None


def from_spec(spec, *, layers=None):
    """The model that ``spec`` describes (``model.spec()`` of any refmaml model gives one).

    ``layers``: more layer kinds, ``{name: class}``, for networks with layers of the caller's own
    (matched against each layer spec's ``"layer"`` field). A malformed spec is a ValueError or
    TypeError that names the field."""
    from . import MODELS

    if not isinstance(spec, dict):
        raise TypeError(f"a model spec must be a dict; got {type(spec).__name__}")
    if not isinstance(spec.get("model"), str):
        raise ValueError(f"a model spec needs a string field 'model'; got {spec!r:.200}")
    kind = spec["model"]
    if kind in MODELS:
        _fields(spec, f"the spec of model {kind!r}", ("model",))
        return MODELS[kind]
    if kind == "mlp":
        _fields(spec, "the MLP spec", ("model", "sizes", "activation", "loss"))
        sizes = spec["sizes"]
        if not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"the MLP spec's sizes must be a list of 2 to {MAX_LAYERS} positive integers; "
                             f"got {sizes!r:.200}")
        return MLP(spec["sizes"], spec["activation"], spec["loss"])
    if kind == "convnet":
        _fields(spec, "the ConvNet spec", ("model", "classes", "blocks", "channels", "input_shape", "loss"))
        if not isinstance(spec["input_shape"], list):
            raise ValueError("the ConvNet spec's input_shape must be a list of three positive integers")
        for field in ("classes", "blocks", "channels"):
            value = spec[field]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10**6:
                raise ValueError(f"the ConvNet spec's {field} must be a positive integer; got {value!r:.100}")
        return ConvNet(spec["classes"], blocks=spec["blocks"], channels=spec["channels"],
                       input_shape=tuple(spec["input_shape"]), loss=spec["loss"])
    if kind == "sequential":
        _fields(spec, "the Sequential spec", ("model", "layers", "loss", "input_shape"))
        if not isinstance(spec["layers"], list) or not 0 < len(spec["layers"]) <= MAX_LAYERS:
            raise ValueError(f"the Sequential spec's layers must be a list of 1 to {MAX_LAYERS} layer specs")
        if not isinstance(spec["input_shape"], list):
            raise ValueError("the Sequential spec's input_shape must be a list of positive integers")
        kinds = {**layer_kinds.KINDS, **(layers or {})}
        built = [_layer(s, kinds, f"layer {i} of the Sequential spec") for i, s in enumerate(spec["layers"])]
        return Sequential(built, loss=spec["loss"], input_shape=tuple(spec["input_shape"]))
    raise ValueError(f"unknown model {kind!r:.100} in the spec; known: {', '.join(MODELS)}, 'mlp', 'convnet', 'sequential'")
