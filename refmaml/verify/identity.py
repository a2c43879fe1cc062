"""The record of an identity ``refmaml verify`` checks, and of one check of it (a row of the table)."""

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)


def everywhere(model):
    """``applies`` of an identity every model satisfies."""
    return True


@dataclass(frozen=True)
class Identity:
    """One identity: its name and equation labels, its tolerance in float64 (scaled by
    ``eps(dtype) / eps(float64)`` in float32), whether it is checked in float64 only, its check
    (an instance -> the relative error) and ``applies(model)``, read from the model's capabilities.

    In the catalogue of an area, ``{name}`` in the name stands for the model's name in the table and
    ``{grad}``, ``{hvp}``, ``{hessian}``, ... in the label for the model's own labels (:meth:`bound`).
    """

    name: str
    label: str
    tolerance: float
    float64_only: bool
    check: Callable
    applies: Callable = everywhere

    def bound(self, name, labels):
        """This identity for the model named ``name`` whose equation labels are ``labels``."""
        return replace(self, name=self.name.format(name=name), label=self.label.format_map(labels))

    def __iter__(self):
        """``(name, label, tolerance, float64_only, check)``: an identity unpacks like the plain
        tuples that may stand for one in :data:`refmaml.verify.IDENTITIES`."""
        return iter((self.name, self.label, self.tolerance, self.float64_only, self.check))


@dataclass(frozen=True)
class Row:
    """One identity checked on one backend in one dtype: the error found and the tolerance it met."""

    identity: str
    label: str
    backend: str
    dtype: str
    error: float
    tolerance: float

    @property
    def passed(self):
        return bool(self.error <= self.tolerance)
