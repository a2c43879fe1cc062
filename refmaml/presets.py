"""The settings the comparison and ``refmaml train`` start from: per task family a preset
(:data:`PRESETS`) and a plan of the methods compared (:class:`Plan`); :func:`configs` makes the
training configuration of each method (``derivations/training.md``, "The demo").
"""

import dataclasses

from . import train

METHODS = ("zero", "pretrain", "maml", "fomaml", "reptile", "imaml", "metasgd")
BASELINES = ("zero", "pretrain")
NETWORK_METHODS = ("random", "pretrain", "maml", "fomaml", "reptile", "metasgd")
NETWORK_BASELINES = ("random", "pretrain")
IMAGE_METHODS = ("random", "pretrain", "maml", "fomaml", "anil")

# Settings per family: the linear families run in well under a minute on two cores; the sinusoid
# takes the MAML paper's settings (section 5.1) and runs in about 3 minutes; digit-images is 5-way
# 1-shot (5 support images, 25 query images: 5 of each class) with one inner step at 0.1 in training
# and five in evaluation, sized to run in under 6 minutes (training.md (T14), "Settings").
PRESETS = {
    "synthetic-binary": dict(inner_lr=0.3, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                             support=10, query=15, lam=1.0),
    "synthetic-nway": dict(inner_lr=0.5, inner_steps=5, iterations=2000, meta_batch=32, outer_lr=0.01,
                           support=15, query=15, lam=1.0),
    "digits-binary": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                          support=10, query=20, lam=1.0),
    "digits-nway": dict(inner_lr=0.3, inner_steps=5, iterations=1000, meta_batch=32, outer_lr=0.01,
                        support=15, query=30, lam=1.0),
    "sinusoid": dict(inner_lr=0.01, inner_steps=1, iterations=20000, meta_batch=25, outer_lr=0.001,
                     support=10, query=10, lam=1.0, eval_every=1000, curve_tasks=100),
    "digit-images": dict(inner_lr=0.1, inner_steps=1, iterations=2000, meta_batch=16, outer_lr=0.003,
                         support=5, query=25, lam=1.0, eval_every=250, curve_tasks=100),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the demo runs on a family: the methods, which of them are baselines, settings that
    differ by method, and the number of plain gradient steps of the evaluation."""

    methods: tuple
    baselines: tuple
    per_method: dict
    eval_steps: int = None  # None: the inner_steps of training


PLANS = {
    "sinusoid": Plan(NETWORK_METHODS, NETWORK_BASELINES, {
        # Reptile with one step is multi-task training on the support sets (training.md (T13)); with
        # five, each of its iterations costs twice one of MAML's, so it takes half as many.
        "reptile": dict(inner_steps=5, iterations=10000),
    }, eval_steps=10),
    # MAML, first-order MAML, ANIL (MAML adapting the last layer only, T15) and the two baselines,
    # all at the same settings; evaluated with 5 steps
    "digit-images": Plan(IMAGE_METHODS, NETWORK_BASELINES, {}, eval_steps=5),
}
LINEAR_PLAN = Plan(METHODS, BASELINES, {})


def plan(family):
    """The :class:`Plan` of ``family``."""
    return PLANS.get(family, LINEAR_PLAN)


def configs(family="sinusoid", *, methods=None, seed=0, backend="numpy", **overrides):
    """The training configuration of each method: the family's preset, the method's own settings
    (:data:`PLANS`), then ``overrides``."""
    if family not in PRESETS:
        raise ValueError(f"family must be one of {', '.join(PRESETS)}; got {family!r}")
    known = plan(family).methods
    methods = known if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(known))
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of {', '.join(known)}; got {list(methods)}")
    out = {}
    for m in methods:
        fields = {**PRESETS[family], **plan(family).per_method.get(m, {}), **overrides,
                  "family": family, "seed": seed, "backend": backend, "method": m}
        out[m] = train.Config(**fields).validated()
    return out
