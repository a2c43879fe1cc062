"""The comparison behind ``refmaml demo``: every method of a family's plan trained on that task
family (:mod:`refmaml.presets`, :mod:`refmaml.train`), then evaluated on the same held-out tasks
(:mod:`refmaml.report`; its figure: :mod:`refmaml.plot`), ``derivations/training.md``, "The demo".

The names of the presets and of the report are available here too, as ``demo.configs``,
``demo.report``, ``demo.format_table``, ``demo.write`` and the like.
"""

import time

from . import _validate, train
from .presets import (BASELINES, IMAGE_METHODS, LINEAR_PLAN, METHODS, NETWORK_BASELINES, NETWORK_METHODS, PLANS,
                      PRESETS, Plan)
from .presets import configs, plan
from .report import LABELS, RATE_GRID, TUNE_TASKS, TUNED, format_table, report, tune_rate, write

__all__ = ["BASELINES", "IMAGE_METHODS", "LABELS", "LINEAR_PLAN", "METHODS", "NETWORK_BASELINES", "NETWORK_METHODS",
           "PLANS", "PRESETS", "Plan", "RATE_GRID", "TUNED", "TUNE_TASKS", "compare", "configs", "format_table",
           "plan", "report", "tune_rate", "write"]


def compare(family="sinusoid", *, methods=None, seed=0, backend="numpy", eval_tasks=500,
            progress=False, **overrides):
    """Train every method of the family's plan (or ``methods``) and evaluate it on ``eval_tasks``
    held-out tasks. Returns the report of :func:`refmaml.report.report`."""
    _validate.integer(seed, "seed", 0, train.MAX_SEED)
    runs = {}
    for name, c in configs(family, methods=methods, seed=seed, backend=backend, **overrides).items():
        t0 = time.perf_counter()
        state = train.train(c, progress=progress)
        runs[name] = (state, time.perf_counter() - t0)
    return report(runs, eval_tasks=eval_tasks)
