"""The MAML family beyond plain MAML: ``derivations/variants.md``.

Learned inner learning rates (Meta-SGD, per-step rates) live in
``refmaml.maml`` itself, since they change only how the inner step and its
reverse pass are written; here are the methods with another update rule:
Reptile (:mod:`.reptile`) and implicit MAML (:mod:`.imaml`).
"""

from .imaml import imaml_value_and_grad
from .reptile import reptile_direction

__all__ = ["imaml_value_and_grad", "reptile_direction"]
