"""Identity checks behind ``refmaml verify``.

Each identity is checked on seeded random instances, on every array
backend present (NumPy; array-api-strict on its default device and on
``device1``, which stands in for a GPU; CuPy when a GPU is present), in
float64 and float32.  Tolerances are stated for float64 and scaled by
``eps(dtype) / eps(float64)`` for float32; central-difference identities are
checked in float64 only (in float32 their truncation and rounding errors
leave about 5 digits, too few to say anything).

The structural identities of the softmax model (``derivations/softmax.md``
(S12), (S13)) compare a quantity that is zero in exact arithmetic with the
scale it is made of, so their tolerances sit a few tens of ``eps`` above
rounding (1e-15 for the Hessian's null space, 1e-14 for the row sums of a
meta-gradient, which accumulate K + 1 products); a bug there gives errors of
order one.

The MAML-family identities (``derivations/variants.md``): learned-rate
gradients against the complex step (1e-12); the Taylor relations of Reptile,
first-order MAML and MAML, whose "error" is the distance of the observed
order of their remainders from 2 (tolerance 0.05, float64 only); implicit
MAML against central differences (1e-6) and against the complex step through
60 unrolled proximal gradient steps (1e-10: the solver tolerance ``eps^(3/4)``
times the condition number of (V13), with room), and its solver residuals
against the default tolerance ``eps^(3/4)``.

The identities live in one module per area, each a list of :class:`Identity` records whose
``applies(model)`` reads the model's capabilities: :mod:`~refmaml.verify.models` (gradient, HVP,
Hessian), :mod:`~refmaml.verify.networks` (the (N7) split, the verified networks),
:mod:`~refmaml.verify.maml`, :mod:`~refmaml.verify.dual`, :mod:`~refmaml.verify.variants`,
:mod:`~refmaml.verify.softmax` and :mod:`~refmaml.verify.linear` (linear regression); the instances
they are checked on are :class:`~refmaml.verify.instance.Instance`.
"""

from dataclasses import replace

import numpy as np

from .. import _text, _validate
from .. import models as registry
from ..backends import available as backends
from . import dual, linear, maml, models, networks, softmax, variants
from .identity import EPS64, Identity, Row
from .instance import Instance
from .networks import FLOAT64_ONLY, LAYER_ONLY, PROXIMAL, RELU_MARGIN, VERIFIED, kink_free
from .variants import taylor_remainders

# Every identity, in the order of the table's rows for each model.
CATALOGUE = (models.IDENTITIES + networks.IDENTITIES + maml.IDENTITIES + dual.IDENTITIES + variants.IDENTITIES
             + softmax.IDENTITIES + linear.IDENTITIES)
# What the networks of one image layer each are checked on (networks.LAYER_ONLY).
LAYER_CATALOGUE = models.IDENTITIES + networks.IDENTITIES + maml.IDENTITIES
# The labels of the rows a model's own ``equations`` do not name: the general ones of models.md.
DEFAULT_LABELS = dict(hessian="models.md (H3)", symmetry="models.md (H3)", psd="models.md (H3)",
                      split="models.md (H12)")
LABELS = {**models.LABELS, **networks.LABELS}
MODELS = {"logistic": registry.get("logistic"), "softmax": registry.get("softmax"), **VERIFIED,
          "linear": registry.get("linear")}


def identities(model, name):
    """The identities that apply to ``model``, named ``name`` in the table, with its labels."""
    labels = {**DEFAULT_LABELS, **model.equations, **LABELS.get(model, {})}
    catalogue = LAYER_CATALOGUE if model in LAYER_ONLY else CATALOGUE
    prefix = FLOAT64_ONLY.get(model)
    return [replace(identity, float64_only=True) if prefix and identity.name.startswith(prefix) else identity
            for identity in (identity.bound(name, labels) for identity in catalogue if identity.applies(model))]


# model (its name in :data:`MODELS`, or a model object) -> [Identity or (name, label, float64 tolerance,
# float64 only, check), ...]
IDENTITIES = {name: identities(model, name) for name, model in MODELS.items()}


def _model(key):
    """The model of a key of :data:`IDENTITIES`: a name in :data:`MODELS` or a model object."""
    return registry.get(MODELS.get(key, key))


def _rows(checked, seeds, dtypes, only=None):
    """Rows of ``checked`` (``{model: [identity, ...]}``) on every backend (or those named in
    ``only``) and dtype, each model's instance drawn from ``seeds[model]``."""
    rows = []
    for backend, xp, device in backends():
        if only is not None and backend not in only:
            continue
        for dtype in dtypes:
            scale = float(np.finfo(dtype).eps) / EPS64
            for model, checks in checked.items():
                p = Instance(xp, device, np.dtype(dtype), seeds[model], _model(model),
                             lam=PROXIMAL.get(_model(model)))
                rows += [Row(identity, label, backend, dtype, float(fn(p)), tol * scale)
                         for identity, label, tol, f64_only, fn in checks if dtype == "float64" or not f64_only]
    return rows


def check_model(model, name, *, seed=0, only=None, dtypes=("float64", "float32")):
    """Every identity that applies to ``model`` (for a network: gradient, HVP, Hessian, symmetry, the
    (H12) split, MAML's and the variants'), as ``refmaml verify`` checks its own models; returns a
    list of :class:`Row`. ``only`` names the backends to use (default: every one present); the
    identities cite the model's own equation labels (``model.equations``)."""
    seed = kink_free(_validate.integer(seed, "seed"), model)
    return _rows({model: identities(model, name)}, {model: seed}, dtypes, only)


def run(seed=0, dtypes=("float64", "float32")):
    """Check every identity on every backend and dtype; returns a list of :class:`Row`."""
    seed = _validate.integer(seed, "seed")
    return _rows(IDENTITIES, {model: kink_free(seed, _model(model)) for model in IDENTITIES}, dtypes)


def format_table(rows):
    """The rows as the table ``refmaml verify`` prints."""
    header = ("identity", "equation", "backend", "dtype", "rel. error", "tolerance", "result")
    body = [(r.identity, r.label, r.backend, r.dtype, f"{r.error:.2e}", f"{r.tolerance:.1e}",
             "pass" if r.passed else "FAIL") for r in rows]
    return _text.table(header, body)


__all__ = ["CATALOGUE", "EPS64", "IDENTITIES", "Identity", "Instance", "MODELS", "RELU_MARGIN", "Row", "VERIFIED",
           "backends", "check_model", "format_table", "identities", "run", "taylor_remainders"]
