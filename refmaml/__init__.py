"""refmaml: a reference implementation of MAML for the logistic model
(binary logistic regression and softmax regression) and linear regression.

Exact second-order meta-gradients, derived by hand (``derivations/``),
on NumPy, CuPy or any array-API library, checked against finite
differences and complex-step derivatives.
"""

__version__ = "0.1.0"

from . import check, models, special  # noqa: E402
from .errors import ConvergenceError  # noqa: E402
from .maml import adapt, meta_value_and_grad  # noqa: E402
from .variants import imaml_value_and_grad, reptile_direction  # noqa: E402

__all__ = [
    "__version__",
    "adapt",
    "meta_value_and_grad",
    "reptile_direction",
    "imaml_value_and_grad",
    "ConvergenceError",
    "check",
    "models",
    "special",
]
