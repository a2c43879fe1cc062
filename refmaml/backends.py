"""The array backends: the namespace and device of each by name, and which are usable here.

``numpy``; ``array-api-strict`` on its default device and on ``device1``, which stands in for a
GPU in tests; ``cupy`` on the first GPU.
"""

import array_api_compat
import numpy as np

NAMES = ("numpy", "cupy", "array-api-strict", "array-api-strict:device1")


def get(name):
    """``(xp, device)`` of the backend ``name`` (one of :data:`NAMES`); an ImportError that says
    what to install when its library is missing."""
    if name not in NAMES:
        raise ValueError(f"backend must be one of {', '.join(NAMES)}; got {name!r}")
    if name == "numpy":
        return array_api_compat.array_namespace(np.empty(0)), "cpu"
    if name == "cupy":
        try:
            import cupy
        except ImportError:
            raise ImportError("backend 'cupy' needs CuPy and an NVIDIA GPU: pip install 'refmaml[gpu]'") \
                from None
        return array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(0)
    import array_api_strict as strict

    return strict, strict.Device("device1") if name.endswith("device1") else strict.Device()


def gpu():
    """Whether CuPy is installed and sees a GPU."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a usable GPU
        return False


def available():
    """``(name, xp, device)`` for every backend usable here: NumPy, array-api-strict on both its
    devices when installed, then CuPy when it sees a GPU."""
    found = [("numpy", *get("numpy"))]
    try:
        found += [(name, *get(name)) for name in ("array-api-strict", "array-api-strict:device1")]
    except ImportError:
        pass
    if gpu():
        try:
            found.append(("cupy", *get("cupy")))
        except Exception:  # a GPU that CuPy counts but cannot allocate on
            pass
    return found
