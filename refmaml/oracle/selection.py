"""Which cases a check covers, chosen the same way for ``check()`` and for a results file: the
options read (``model``, ``steps``, ``l2``, ``lr_grad``, ``inner_mask``), the cases they select (:func:`select`),
and the bugs those cases can name (:func:`nameable`, ``derivations/oracle.md`` (O11))."""

import json
from dataclasses import dataclass

import numpy as np

from .. import models as registry
from . import answers, cases
from .answers import DIAGNOSES
from .judge import SEPARATION, separation

OPTIONS = ("model", "steps", "l2", "lr_grad", "inner_mask")  # of check(), as a results file declares them


@dataclass(frozen=True)
class Selection:
    """``models`` (registered names, or networks), ``steps`` (numbers of inner steps), the ``l2``
    and ``lr_grad`` options, and ``cases``: what they select (:func:`refmaml.oracle.cases.select`)."""

    models: tuple
    steps: tuple
    l2: bool
    lr_grad: bool
    cases: list
    mask: object = None


def parse_steps(steps):
    """The numbers of inner steps to check: a non-empty selection of ``cases.STEPS``."""
    try:
        chosen = tuple(steps)
    except TypeError:
        raise TypeError(f"steps must be a sequence of step counts from {cases.STEPS}; "
                        f"got {steps!r}") from None
    if isinstance(steps, (str, bytes)) or not chosen or any(
            isinstance(k, bool) or k not in cases.STEPS for k in chosen):
        raise ValueError(f"steps must be a non-empty selection of {cases.STEPS}; got {steps!r}")
    return chosen


def parse_model(model):
    """``model`` as the tuple of registered names it stands for (or the one network)."""
    if not isinstance(model, str) and hasattr(model, "spec"):  # a model object
        spec = model.spec()
        return (spec["model"],) if spec["model"] in cases.MODELS else (model,)
    if model == "both":
        return cases.MODELS[:2]
    if model not in cases.MODELS:
        raise ValueError(f"model must be 'logistic', 'softmax', 'both', 'linear' or a network (a "
                         f"refmaml.models.MLP or Sequential); got {model!r}")
    return (model,)


_NETWORK_CASES = {}


def parse_mask(mask, models):
    """``inner_mask`` for the one model of ``models``: None, or a boolean NumPy array of one task's
    theta shape that adapts at least one parameter."""
    if mask is None:
        return None
    if len(models) != 1 or isinstance(models[0], str):
        raise ValueError("inner_mask needs a network (an MLP or Sequential: a mask has its theta's shape, and "
                         f"the registered models' cases have several); got model={'+'.join(map(str, models))}")
    try:
        array = np.asarray(mask)
    except Exception as exc:  # a hostile object: say what it is
        raise TypeError(f"inner_mask must be a boolean array; got {type(mask).__name__} ({exc})") from None
    if array.dtype != bool:
        raise TypeError(f"inner_mask must be a boolean array (True where the inner loop adapts); got dtype "
                        f"{array.dtype}")
    expected = tuple(registry.get(models[0]).parameter_shape(None, None))
    if array.shape != expected:
        raise ValueError(f"inner_mask has shape {array.shape}; one task's theta has shape {expected}")
    if not array.any():
        raise ValueError("inner_mask adapts no parameter: with nothing adapted MAML is the query loss at theta")
    out = array.copy()
    out.setflags(write=False)
    return out


def network_cases(model, version=cases.VERSION, mask=None):
    """:func:`refmaml.oracle.cases.network_cases`, built once per architecture, version and mask."""
    key = (json.dumps(model.spec(), sort_keys=True), version, None if mask is None else mask.tobytes())
    if key not in _NETWORK_CASES:
        _NETWORK_CASES[key] = cases.network_cases(model, version=version, mask=mask)
    return _NETWORK_CASES[key]


def select(models, steps, *, l2, lr_grad, version=cases.VERSION, mask=None):
    """The :class:`Selection` of these options among the cases of vectors ``version`` (the
    registered models') and of each network in ``models`` (built for it), in that order; with
    ``mask`` (:func:`parse_mask`, networks only) every case carries it."""
    pool = cases.all_cases(version, networks=False) if any(isinstance(m, str) for m in models) else []
    for m in models:
        if not isinstance(m, str):
            pool = pool + network_cases(m, version, mask)
    return Selection(models, steps, l2, lr_grad, cases.select(pool, models=models, steps=steps, l2=l2, rates=lr_grad,
                                                               masked=mask is not None),
                     mask)


def declared(options, answered, version):
    """The :class:`Selection` a results file's ``options`` declare (keys of ``OPTIONS``): absent
    flags are False, an absent ``model`` is the models ``answered`` (in the vectors' order), absent
    ``steps`` all of them; version 1 has no networks. ``inner_mask: true`` selects the cases of a
    network of ``cases.MASKED_NETWORKS`` (by default the one there is) with ANIL's mask
    (:func:`refmaml.oracle.cases.anil_mask`) instead of its unmasked ones."""
    networks = {cases.network_name(m): m for m in cases.all_networks(version)}
    if options.get("inner_mask", False):
        maskable = {cases.network_name(m): m for m in cases.MASKED_NETWORKS(version)}
        name = options.get("model", next(iter(maskable), None))
        if name not in maskable:
            raise ValueError(f"inner_mask: the vectors of version {version} hold masked (ANIL) cases for "
                             f"{', '.join(maskable) or 'no network'} only; got model {name!r}")
        net = maskable[name]
        return select((net,), parse_steps(options.get("steps", cases.STEPS)), l2=bool(options.get("l2", False)),
                      lr_grad=bool(options.get("lr_grad", False)), version=version, mask=cases.anil_mask(net))
    if "model" in options and options["model"] in networks:
        models = (networks[options["model"]],)
    elif "model" in options:
        models = parse_model(options["model"])
    else:
        models = tuple(m for m in cases.MODELS + tuple(networks.values()) if m in answered)
    return select(models, parse_steps(options.get("steps", cases.STEPS)), l2=bool(options.get("l2", False)),
                  lr_grad=bool(options.get("lr_grad", False)), version=version)


_GAPS = {}


def nameable(selection, *, ridge, rates):
    """The bugs a check of ``selection`` can name: the ridge bugs only with ``ridge`` (cases with
    l2 > 0), ``lr_no_grad`` only with ``rates`` (rate gradients), and only those the selection's
    diagnostic cases separate by ``SEPARATION`` (O11): measured here (once per selection) for
    every model, so that a bug with no answer on these cases (a batch-norm bug on a network
    without batch norm) is not claimed either."""
    named = tuple(k for k in DIAGNOSES
                  if (ridge or k not in answers.RIDGE) and (rates or k != "lr_no_grad"))
    diagnostic = [c for c in selection.cases if c.diagnostic]
    key = (tuple(c.id for c in diagnostic), bool(rates),
           tuple(json.dumps(registry.get(c.model).spec(), sort_keys=True) for c in diagnostic[:1]))
    if key not in _GAPS:
        _GAPS[key] = separation(diagnostic, lr_grad=bool(rates))
    gaps = _GAPS[key]
    return tuple(k for k in named if gaps.get(k, 0.0) >= SEPARATION)
