"""Models: one module per model, each with ``loss``, ``grad``, ``hvp``, ``hessian``, ``predict``."""

from . import logistic, softmax

MODELS = {"logistic": logistic, "softmax": softmax}


def get(name):
    """The model module registered under ``name`` (``"logistic"`` or ``"softmax"``)."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}; got {name!r}")
    return MODELS[name]


__all__ = ["logistic", "softmax", "get", "MODELS"]
