"""Input checks shared by every public function.

Each check names the argument at fault and what was expected, and runs
before any computation.  The dtype rules (README, "Conventions and input rules"):

* features: bool and integer arrays are promoted to float64; float32 and
  float64 are kept; anything else (float16, complex, object, strings) is a
  ``TypeError``;
* parameters (``theta``, directions ``v``) and learning rates may also be
  complex64 or complex128, so that complex-step derivatives work;
* the computation runs in the result type of the parameters and features.

Checks of values (finiteness, labels in range, an overflow of the result) go through
:func:`require`: a flag that says whether the check passes, and the error it raises when not.
Outside a :func:`deferred` scope, or where the flag is a NumPy value (reading it costs nothing), it
is read at once. Inside a scope a flag on a device waits: the scope reads every waiting flag in one
transfer when it ends and raises the error of the first that fails, so that a call on a GPU reads
the host once, at its end, with the errors, and their order, of the eager path. Checks of shapes,
dtypes and options read nothing on a device and raise at once, but never ahead of a waiting check
met before them: an exception raised inside a scope gives way to the first waiting check that
fails.
"""

import contextvars
import math
import numbers
import operator

import array_api_compat
import numpy as np

from . import _xp

_WAITING = contextvars.ContextVar("refmaml_waiting_checks", default=None)

# Bounds on sizes and counts (RELIABILITY.md, "Bounds"): a request beyond them is a ValueError naming
# the argument, raised before any work, instead of a MemoryError or a run without end.
MAX_STEPS = 100_000  # inner steps K (and other iteration counts of one call): adapt, MAML, Reptile
MAX_PARAMETERS = 10**8  # parameters of one network (800 MB per float64 vector)


class Waiting:
    """The checks of device values that a :func:`deferred` scope holds: ``(flag, error)`` pairs in
    the order they were met."""

    __slots__ = ("checks",)

    def __init__(self):
        self.checks = []

    def settle(self):
        """Read the waiting flags in one transfer and forget them; raise ``error()`` of the first
        that fails, if any (with no context: it came before whatever else was raised)."""
        checks, self.checks = self.checks, []
        if checks:
            failed = _first_failure(checks)
            if failed is not None:
                raise failed from None


def _first_failure(checks):
    """The error of the first check whose flag is False, or None: one read of every flag, stacked
    into one array (more only where the error itself reads the values it names)."""
    flags = [flag for flag, _ in checks]
    if len(flags) == 1:
        passed = [bool(flags[0])]
    else:
        try:
            xp = array_api_compat.array_namespace(*flags)
            stacked = xp.stack(flags)
        except (TypeError, ValueError):  # flags of several libraries or devices: read one by one
            passed = [bool(flag) for flag in flags]
        else:
            passed = _xp.to_numpy(stacked).tolist()
    for ok, (_, error) in zip(passed, checks, strict=True):
        if not ok:
            return error()
    return None


def require(flag, error):
    """A check of values: ``flag``, a 0-d boolean array (or a Python or NumPy boolean), says whether
    it passes; ``error()`` gives the exception to raise when it does not. Read at once where the flag
    is a NumPy value or no :func:`deferred` scope is open; otherwise held for the scope's one read."""
    waiting = _WAITING.get()
    if waiting is None or isinstance(flag, (bool, np.generic, np.ndarray)):
        if not flag:
            raise error()
        return
    waiting.checks.append((flag, error))


class deferred:
    """``with deferred():`` a scope whose checks of device values (:func:`require`) are read once,
    when it ends: the first that fails raises its error there, before the block's results are used.

    An exception raised inside (a shape or option check, or anything a computation on unchecked
    values raises) gives way to the first waiting check that fails: that check came first. Scopes
    nest: an inner scope joins the outer one, whose end reads the checks of both (a training step
    opens one around its meta-gradient and optimiser step, so that the calls inside read nothing).
    Checks are per thread (a context variable): a worker thread's are read at once."""

    __slots__ = ("_token", "_waiting")

    def __enter__(self):
        waiting = _WAITING.get()
        if waiting is None:
            waiting = Waiting()
            self._token = _WAITING.set(waiting)
        else:
            self._token = None
        self._waiting = waiting
        return waiting

    def __exit__(self, kind, value, traceback):
        if self._token is not None:
            _WAITING.reset(self._token)
            self._token = None
        elif kind is None:
            return False  # the outer scope reads them
        if self._waiting.checks and (kind is None or issubclass(kind, Exception)):
            self._waiting.settle()
        return False


def as_array(xp, device, x, name):
    """``x`` as an array of namespace ``xp`` on ``device`` (no copy when it already is one)."""
    try:
        return xp.asarray(x, device=device)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None


def _float_dtype(xp, x, name, *, allow_complex):
    dt = x.dtype
    if _xp.isdtype(xp, dt, "bool") or _xp.isdtype(xp, dt, "integral"):
        return xp.float64
    if dt in (xp.float32, xp.float64):
        return dt
    if allow_complex and dt in (xp.complex64, xp.complex128):
        return dt
    allowed = "bool, integer, float32, float64" + (", complex64, complex128" if allow_complex else "")
    raise TypeError(f"{name} has dtype {dt}; expected one of {allowed}")


def check_finite(xp, x, name):
    """Every entry of ``x`` is finite, or a ValueError naming ``name`` (:func:`require`)."""
    require(_xp.finite_flag(xp, x),
            lambda: ValueError(f"{name} contains NaN or infinity; every entry must be finite"))


def floating(xp, device, x, name, *, allow_complex=False, ndims=None):
    """Convert, check the dtype and rank, and check that every entry is finite."""
    x = as_array(xp, device, x, name)
    dtype = _float_dtype(xp, x, name, allow_complex=allow_complex)
    if ndims is not None and x.ndim not in ndims:
        expected = " or ".join(f"{k}-D" for k in ndims)
        raise ValueError(f"{name} must be {expected}; got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    check_finite(xp, x, name)
    return x


def nonempty(x, name, axes):
    """Each named axis (``{axis: meaning}``) of ``x`` must have positive length."""
    for axis, meaning in axes.items():
        if x.shape[axis] == 0:
            raise ValueError(f"{name} has shape {tuple(x.shape)}: it needs at least one {meaning}")


def real_number(value, name):
    """A finite real number (Python, NumPy or 0-d array of any namespace), as float."""
    real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not real and getattr(value, "ndim", None) == 0 and hasattr(value, "dtype"):
        xp = _xp.namespace(**{name: value})[0]
        real = xp.isdtype(value.dtype, ("integral", "real floating"))
    if not real:
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # a Python integer beyond float64's range
        raise ValueError(f"{name} must be finite; got {_short(int(value))}, beyond float64's range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return value


def nonnegative(value, name):
    """A finite real number >= 0, as float."""
    value = real_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}")
    return value


def l2(value):
    """The ridge coefficient: a finite real number >= 0, as float."""
    return nonnegative(value, "l2")


def positive(value, name):
    """A finite real number > 0, as float."""
    value = real_number(value, name)
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    return value


def integer(value, name, minimum=0, maximum=None):
    """An integer >= ``minimum`` (and <= ``maximum`` if given; booleans and floats are refused)."""
    what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
    if maximum is not None:
        what = f"an integer from {minimum} to {maximum}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}; got a boolean")
    try:
        k = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {what}; got {value!r}") from None
    if k < minimum or (maximum is not None and k > maximum):
        raise ValueError(f"{name} must be {what}; got {_short(k)}")
    return k


def _short(k):
    """An integer for a message: its digits, or how many there are when they are too many."""
    if abs(k) < 10**30:
        return str(k)
    return f"an integer of about {int(abs(k).bit_length() * 0.30103)} digits"  # str() refuses 4,300 digits


def listing(names, first=5):
    """``names`` for a message, of bounded length: the first ``first`` (each cut to 80 characters) and
    how many more there are."""
    names = [n if len(n) <= 80 else n[:77] + "..." for n in map(str, names)]
    more = len(names) - first
    return ", ".join(names[:first]) + (f" and {more} more ({len(names)} in all)" if more > 0 else "")


def steps(value, name="inner_steps"):
    """A non-negative integer of at most :data:`MAX_STEPS` (booleans and floats are refused)."""
    return integer(value, name, 0, MAX_STEPS)


def _scalar(xp, device, value, name):
    """A Python or NumPy number as a 0-d array (refusing booleans and non-numbers)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or an array of numbers; got a boolean")
    if isinstance(value, int) and abs(value) >= 2**63:  # beyond int64: NumPy makes an object array
        real_number(value, name)  # a ValueError where it is beyond float64's range too
        value = float(value)
    if np.asarray(value).dtype.kind not in "iufc":
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    return as_array(xp, device, np.asarray(value).item(), name)


def scalar(xp, device, value, name):
    """A finite real or complex number, as a 0-d array, and whether it is *weak*.

    As in the array API's rules for Python scalars, a Python or NumPy scalar is
    weak: it takes the precision of the arrays it meets (a real value keeps
    float32 data float32, a complex one only makes the computation complex).
    A 0-d array takes part in type promotion like any array.
    """
    weak = isinstance(value, (numbers.Number, np.generic))
    x = _scalar(xp, device, value, name) if weak else as_array(xp, device, value, name)
    if x.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got an array of shape {tuple(x.shape)}")
    return _finite_rate(xp, x, name, value if weak else None), weak


def _finite_rate(xp, x, name, number=None):
    """``x`` checked and cast to its floating dtype; ``number``: the Python or NumPy number ``x``
    was made from (:func:`_scalar`), whose finiteness is then read on the host."""
    if _xp.isdtype(xp, x.dtype, "bool"):
        raise TypeError(f"{name} must hold numbers; got booleans")
    x = cast(xp, x, _float_dtype(xp, x, name, allow_complex=True))
    if number is None:
        check_finite(xp, x, name)
    else:  # x holds this value in float64 or complex128 (_scalar): finite exactly where it is
        check_finite(_xp.NUMPY, np.asarray(float(number) if type(number) is int else number), name)
    return x


def rate_layout(shape, theta_shape, steps):
    """Whether rates of ``shape`` have a leading step axis (``derivations/variants.md`` (V1)):
    False for at most ``len(theta_shape)`` axes that broadcast against ``theta_shape``, True for
    ``len(theta_shape) + 1`` axes led by ``steps``; None for any other shape."""
    P = len(theta_shape)
    per_step = len(shape) == P + 1
    body = shape[1:] if per_step else shape
    fits = len(body) <= P and all(s in (1, t) for s, t in zip(body, theta_shape[P - len(body):], strict=True))
    if not fits or (per_step and shape[0] != steps):
        return None
    return per_step


def rates(xp, device, value, theta_shape, steps, name="inner_lr"):
    """Inner learning rates (``derivations/variants.md`` (V1)): returns ``(rate, per_step, weak)``.

    * a scalar, or an array of at most ``len(theta_shape)`` axes that broadcasts
      against ``theta_shape``: the same rates serve every step (``per_step`` False);
    * an array of exactly ``len(theta_shape) + 1`` axes whose leading axis has
      length ``steps``: row ``k`` serves step ``k`` and broadcasts against
      ``theta_shape`` (``per_step`` True).

    Any other shape is a ValueError. Real or complex, finite; ``weak`` as in :func:`scalar`.
    """
    weak = isinstance(value, (numbers.Number, np.generic))
    rate = _scalar(xp, device, value, name) if weak else as_array(xp, device, value, name)
    per_step = rate_layout(tuple(rate.shape), tuple(theta_shape), steps)
    if per_step is None:
        P = len(theta_shape)
        raise ValueError(
            f"{name} has shape {tuple(rate.shape)}; expected a scalar, an array of at most "
            f"{P} axes that broadcasts to theta's shape {tuple(theta_shape)} (the same rates at "
            f"every step), or an array of shape ({steps}, ...) with one row per inner step "
            f"(inner_steps={steps}) that broadcasts to {tuple(theta_shape)}"
        )
    return _finite_rate(xp, rate, name, value if weak else None), per_step, weak


def choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def compute_dtype(xp, *arrays):
    """Result type of the arrays: the dtype every computation of the call runs in."""
    return xp.result_type(*(a.dtype for a in arrays))


def cast(xp, x, dtype):
    return x if x.dtype == dtype else xp.astype(x, dtype)


def real_cast(xp, x, dtype):
    """``x`` cast to the real dtype with the precision of ``dtype``."""
    return cast(xp, x, _xp.real_dtype_of(xp, dtype))
