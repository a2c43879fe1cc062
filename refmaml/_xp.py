"""Array namespaces, devices and dtypes.

This is the only module that knows which array library it is talking to.
Everything else receives ``xp`` (an array-API namespace) from here and uses
only what the array API standard, NumPy and CuPy share.

Supported array libraries: NumPy, CuPy and array-api-strict.  Python
scalars, NumPy scalars and (nested) lists are converted with the namespace
of the other arguments of the same call, or with NumPy when there are none.
"""

import contextlib
import math
import numbers

import array_api_compat
import numpy as np

from . import backends

_SUPPORTED = ("numpy", "cupy", "array_api_strict")


def _library(x):
    """Name of the array library an array comes from, or None for non-arrays."""
    if isinstance(x, np.generic):
        return None  # NumPy scalars behave like Python scalars
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    if array_api_compat.is_cupy_array(x):
        return "cupy"
    if type(x).__module__.split(".")[0] == "array_api_strict":
        return "array_api_strict"
    if array_api_compat.is_array_api_obj(x):
        raise TypeError(
            f"arrays of type {type(x).__module__}.{type(x).__name__} are not supported; "
            f"refmaml computes with {', '.join(_SUPPORTED)}: convert the input first"
        )
    return None


def library_of(x):
    """``"numpy"``, ``"cupy"``, ``"array_api_strict"``, the module of another array library, or None
    for what is not an array (lists, scalars)."""
    try:
        return _library(x)
    except TypeError:
        return type(x).__module__.split(".")[0]


def library_name(xp):
    """The name :func:`library_of` gives the arrays of namespace ``xp``."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    return xp.__name__.split(".")[0]


NUMPY = array_api_compat.array_namespace(np.empty(0))  # array-api-compat's NumPy namespace
_PLAIN = (np.ndarray, float, int, type(None))  # what :func:`namespace` finds to be NumPy arrays or no arrays


def namespace(**arrays):
    """Array namespace and device shared by the named arguments.

    Parameters are passed by name so that an error can say which argument
    is at fault.  Arguments that are not arrays (lists, scalars, None) take
    no part in the choice.

    Returns
    -------
    xp : module
        The array-API namespace (array-api-compat's wrapper for NumPy and CuPy).
    device : object
        The device the arrays live on.

    Raises
    ------
    TypeError
        When arrays from different libraries are mixed, or a library is unsupported.
    ValueError
        When arrays of one library live on different devices.
    """
    if all(type(x) in _PLAIN for x in arrays.values()):
        return NUMPY, "cpu"  # plain NumPy arrays and Python numbers: what the loop below finds for them
    found = {}
    for name, x in arrays.items():
        lib = _library(x)
        if lib is not None:
            found.setdefault(lib, []).append(name)
    if len(found) > 1:
        parts = "; ".join(f"{', '.join(names)} from {lib}" for lib, names in found.items())
        raise TypeError(
            f"arguments mix array libraries ({parts}); pass every array from one library"
        )
    if not found:
        return array_api_compat.array_namespace(np.empty(0)), "cpu"
    ((_, names),) = found.items()
    first = names[0]
    xp = array_api_compat.array_namespace(arrays[first])
    device = array_api_compat.device(arrays[first])
    for name in names[1:]:
        other = array_api_compat.device(arrays[name])
        if other != device:
            raise ValueError(
                f"argument {name!r} is on device {other}, but {first!r} is on {device}; "
                "move every array to one device"
            )
    return xp, device


def array_namespace(*arrays):
    """``array_api_compat.array_namespace``, with a fast path for NumPy arrays (the common case,
    called several times per inner step)."""
    if all(type(a) is np.ndarray for a in arrays):
        return NUMPY
    return array_api_compat.array_namespace(*arrays)


_KINDS = {}


def isdtype(xp, dtype, kind):
    """``xp.isdtype(dtype, kind)``, remembered per namespace, dtype and kind (dtypes are few;
    the standard function is slow enough to show in profiles of small problems)."""
    key = (id(xp), dtype, kind)
    try:
        return _KINDS[key]
    except KeyError:
        _KINDS[key] = found = xp.isdtype(dtype, kind)
        return found
    except TypeError:  # an unhashable dtype
        return xp.isdtype(dtype, kind)


def task_dot(xp, a, b):
    """Per-task inner products of ``(T, ...)`` arrays: ``(T,)``."""
    return xp.sum(xp.reshape(a * b, (a.shape[0], -1)), axis=1)


def is_complex(xp, x):
    return isdtype(xp, x.dtype, "complex floating")


def real_part(xp, x):
    """Real part of ``x``; ``x`` itself when it is real (no copy)."""
    return xp.real(x) if is_complex(xp, x) else x


def real_dtype_of(xp, dtype):
    """The real floating dtype with the precision of ``dtype``."""
    if dtype == xp.complex64:
        return xp.float32
    if dtype == xp.complex128:
        return xp.float64
    return dtype


def complex_dtype_of(xp, dtype):
    """The complex dtype with the precision of the real or complex ``dtype``."""
    return xp.complex64 if dtype in (xp.float32, xp.complex64) else xp.complex128


def eps(xp, dtype):
    """Machine epsilon of a floating dtype (real or complex)."""
    return float(xp.finfo(real_dtype_of(xp, dtype)).eps)


def finite_flag(xp, *arrays):
    """A 0-d boolean array of ``xp``, on the arrays' device: whether every entry of every array is
    finite. Nothing is read on the host (:func:`refmaml._validate.require` reads it)."""
    flag = xp.all(xp.isfinite(arrays[0]))
    for a in arrays[1:]:
        flag = flag & xp.all(xp.isfinite(a))
    return flag


def all_finite(xp, *arrays):
    """Whether every entry of every array is finite: one device-to-host read of one flag."""
    return bool(finite_flag(xp, *arrays))


def numpy_finite(*arrays):
    """Whether every entry of every float NumPy array is finite.

    By one BLAS pass each: ``vdot(a, a)`` is NaN or infinite when an entry is; when it overflows
    for finite entries (magnitudes above about 1e154) the entries are tested one by one. BLAS
    raises no floating-point warnings, so nothing needs silencing. Except for arrays of more than
    :data:`DOT_ONE_THREAD` and fewer than :data:`DOT_MANY_THREADS` elements, which are tested
    entry by entry: OpenBLAS hands a dot product of more than 10,000 elements to its threads, and
    a check of a few microseconds would wait for a second core that may be busy, then leave the
    thread spinning through the call that follows. The arrays are read one after the other in the
    calling thread (large ones in two threads is :func:`refmaml.policy.validating`'s).
    """
    return all(_finite(a) for a in arrays)


DOT_ONE_THREAD = 10000
DOT_MANY_THREADS = 2 ** 18


def _finite(a):
    if DOT_ONE_THREAD < a.size < DOT_MANY_THREADS:
        return bool(np.isfinite(a).all())
    return math.isfinite(np.vdot(a, a)) or bool(np.isfinite(a).all())


def to_numpy(x):
    """Copy an array to host memory as a NumPy array (documented host transfer)."""
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_numpy_array(x) or isinstance(x, (np.generic, numbers.Number)):
        return np.asarray(x)
    # array-api-strict and other DLPack producers: move to the default device first.
    xp = array_api_compat.array_namespace(x)
    if hasattr(xp, "Device") and array_api_compat.device(x) != xp.Device():
        x = xp.asarray(x, device=xp.Device(), copy=True)
    return np.from_dlpack(x)


@contextlib.contextmanager
def quiet_overflow():
    """Silence NumPy's floating-point warnings inside a block whose results are
    checked for finiteness afterwards (an overflow there becomes a ValueError).

    CuPy and array-api-strict (on NumPy) emit no other warnings to silence.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        yield


BACKENDS = backends.NAMES


def backend(name):
    """``(put, xp)`` for a backend named in :data:`BACKENDS` (found by :func:`refmaml.backends.get`):
    ``put(a)`` copies a NumPy array to that library and device (the one deliberate host-to-device
    transfer), ``xp`` is the namespace. ``array-api-strict:device1`` stands in for a GPU in tests."""
    xp, device = backends.get(name)
    if name == "numpy":
        return np.asarray, xp
    if name == "cupy":
        return xp.asarray, xp  # onto the current GPU, as cupy.asarray
    return (lambda a: xp.asarray(a, device=device)), xp
