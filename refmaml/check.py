"""Derivative checks, public so that users can test their own code with them.

Every function takes its namespace from its inputs (NumPy, CuPy or
array-api-strict) and returns arrays of that namespace, or, for the
``*_error`` functions, the measured error as a Python float.

Two references are provided (``derivations/checks.md`` (D1)-(D3)):

* **central differences** ``(f(x + h e) - f(x - h e)) / (2h)``: truncation
  error ``O(h^2)``, rounding error ``O(eps / h)``; the default step
  ``h = eps^(1/3) max(1, |x_j|)`` balances the two, which leaves about 2/3
  of the digits (about ``1e-10`` relative at best in float64, and ``1e-6``
  is the tolerance the tests use for well-scaled inputs);
* the **complex step** ``Im f(x + i h e) / h``: no subtraction, hence no
  cancellation; with ``h = 1e-20`` the truncation error ``O(h^2)`` is far
  below rounding, so the result is exact to rounding (tolerance ``1e-12``).
  It needs ``f`` to be analytic and written without ``abs``, ``conj`` or
  comparisons on the imaginary part.

``relative_error(a, b) = ||a - b|| / max(||b||, tiny)`` (D4) is the error
measure everywhere; ``b`` is the reference.

Inputs are checked like every other public function's: points and directions
must be finite real (or, for ``a`` and ``b``, complex) arrays of matching
shapes, functions must be callable, steps finite and positive, and a function
that returns anything but one finite number (or an array of the point's shape,
for gradients and Hessian-vector products) is an error that says which.
"""

from array_api_compat import device

from . import _validate, _xp

COMPLEX_STEP = 1e-20
METHODS = ("complex", "central")


def _point(x, name="x", **others):
    """``x`` (and the same-shaped ``others``, such as ``v``) as finite real arrays of one namespace."""
    xp, dev = _xp.namespace(**{name: x}, **others)
    x = _validate.floating(xp, dev, x, name)
    out = [x]
    for other, value in others.items():
        value = _validate.floating(xp, dev, value, other)
        if tuple(value.shape) != tuple(x.shape):
            raise ValueError(f"{other} has shape {tuple(value.shape)} but {name} has shape "
                             f"{tuple(x.shape)}; they must match")
        out.append(value)
    dtype = _validate.compute_dtype(xp, *out)
    return xp, [_validate.cast(xp, a, dtype) for a in out]


def _finite(xp, result, what):
    if not _xp.all_finite(xp, result):
        raise ValueError(f"{what} is not finite: the function overflows near x (or x + step v)")
    return result


def _function(f, name):
    if not callable(f):
        raise TypeError(f"{name} must be callable; got {type(f).__name__}")
    return f


def _step(step, default):
    return default if step is None else _validate.positive(step, "step")


def _method(method):
    return _validate.choice(method, "method", METHODS)


def relative_error(a, b):
    """``||a - b|| / max(||b||, tiny)`` over the whole arrays, as a float: ``derivations/checks.md`` (D4)."""
    xp, dev = _xp.namespace(a=a, b=b)
    a = _validate.floating(xp, dev, a, "a", allow_complex=True)
    b = _validate.floating(xp, dev, b, "b", allow_complex=True)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"a has shape {tuple(a.shape)} but b has shape {tuple(b.shape)}; they must match")
    dtype = xp.result_type(a.dtype, b.dtype, xp.float32)
    tiny = float(xp.finfo(_xp.real_dtype_of(xp, dtype)).smallest_normal)
    diff = float(_norm(xp, a - b))
    return diff / max(float(_norm(xp, b)), tiny)


def norm(a):
    """The 2-norm of the whole array ``a`` (real or complex), as a float: the norm of (D4),
    scaled by the largest magnitude so that no square overflows."""
    xp, dev = _xp.namespace(a=a)
    return float(_norm(xp, _validate.floating(xp, dev, a, "a", allow_complex=True)))


def _norm(xp, a):
    a = xp.reshape(xp.asarray(a), (-1,))
    if _xp.is_complex(xp, a):
        a = xp.abs(a)
    scale = xp.max(xp.abs(a)) if a.shape[0] else xp.asarray(0.0)
    if float(scale) == 0.0:
        return scale
    return scale * xp.sqrt(xp.sum((a / scale) ** 2))


def _basis(xp, x):
    """The flattened ``x`` and the identity matrix of its size, both of ``x``'s dtype and device."""
    flat = xp.reshape(x, (-1,))
    return flat, xp.eye(flat.shape[0], dtype=x.dtype, device=device(x))


def _scalar(xp, value, dev, name="f"):
    """The value of a scalar function: one finite number, as a 0-d array."""
    try:
        value = xp.asarray(value, device=dev)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must return a number; got {type(value).__name__} ({exc})") from None
    if value.ndim != 0 and value.shape != (1,) * value.ndim:
        raise ValueError(f"{name} must return one number; got an array of shape {tuple(value.shape)}")
    value = xp.reshape(value, ())
    if not (_xp.isdtype(xp, value.dtype, "numeric") and not _xp.isdtype(xp, value.dtype, "bool")):
        raise TypeError(f"{name} must return a number; got dtype {value.dtype}")
    if not bool(xp.isfinite(value)):
        raise ValueError(f"{name} returned {value!r}, not a finite number")
    return value


def _array_result(xp, value, x, name):
    """An array-valued function's result: ``x``'s shape, finite."""
    value = _validate.floating(xp, device(x), value, f"the result of {name}", allow_complex=True)
    if tuple(value.shape) != tuple(x.shape):
        raise ValueError(f"{name} returned shape {tuple(value.shape)}; expected {tuple(x.shape)}, "
                         f"the shape of x")
    return value


def _central_step(xp, x, step):
    eps = _xp.eps(xp, x.dtype)
    h = eps ** (1 / 3) if step is None else step
    return h * xp.maximum(xp.abs(x), xp.ones_like(x))


def central_difference_gradient(f, x, *, step=None):
    """Gradient of the scalar function ``f`` at the real array ``x`` by central differences (D1).

    Coordinate ``j`` uses ``h_j = step * max(1, |x_j|)``; ``step`` defaults to
    ``eps^(1/3)`` of ``x``'s dtype.  Costs ``2 x.size`` calls of ``f``.
    """
    f = _function(f, "f")
    xp, (x,) = _point(x)
    step = _step(step, None)
    flat, eye = _basis(xp, x)
    h = _central_step(xp, flat, step)
    if flat.shape[0] == 0:
        return xp.zeros_like(x)  # no coordinates: the empty gradient
    parts = []
    with _xp.quiet_overflow():
        for j in range(flat.shape[0]):
            e = eye[j, ...] * h
            plus, minus = flat + e, flat - e
            df = _scalar(xp, f(xp.reshape(plus, x.shape)), device(x)) - _scalar(
                xp, f(xp.reshape(minus, x.shape)), device(x))
            parts.append(df / (plus[j] - minus[j]))
    return _finite(xp, xp.reshape(xp.stack(parts), x.shape), "the central-difference gradient")


def complex_step_gradient(f, x, *, step=COMPLEX_STEP):
    """Gradient of the real-analytic scalar ``f`` at the real array ``x`` by the complex step (D2).

    ``grad_j = Im f(x + i h e_j) / h``; ``f`` must accept complex input.
    Costs ``x.size`` calls of ``f``.
    """
    f = _function(f, "f")
    xp, (x,) = _point(x)
    step = _step(step, COMPLEX_STEP)
    flat, eye = _basis(xp, x)
    flat = xp.astype(flat, _xp.complex_dtype_of(xp, x.dtype))
    if flat.shape[0] == 0:
        return xp.zeros_like(x)  # no coordinates: the empty gradient
    parts = []
    with _xp.quiet_overflow():
        for j in range(flat.shape[0]):
            value = _scalar(xp, f(xp.reshape(flat + (1j * step) * eye[j, ...], x.shape)), device(x))
            parts.append(xp.imag(value) / step)
    return _finite(xp, xp.reshape(xp.stack(parts), x.shape), "the complex-step gradient")


def directional_derivative(f, x, v, *, method="complex", step=None):
    """Derivative of the scalar ``f`` at ``x`` along ``v``, ``d/dt f(x + t v)`` at ``t = 0`` (D1), (D2).

    ``method`` is ``"complex"`` (default step 1e-20) or ``"central"`` (default
    step ``eps^(1/3) max(1, ||x||) / ||v||``).  Returns a 0-d array.
    """
    f = _function(f, "f")
    xp, (x, v) = _point(x, v=v)
    method, step = _method(method), _step(step, None)
    return _along(xp, lambda z: _scalar(xp, f(z), device(x)), x, v, method, step)


def _along(xp, F, x, v, method, step):
    """Derivative of the array-valued ``F`` at ``x`` along ``v``."""
    with _xp.quiet_overflow():
        return _finite(xp, _along_unchecked(xp, F, x, v, method, step), "the directional derivative")


def _along_unchecked(xp, F, x, v, method, step):
    if method == "complex":
        h = COMPLEX_STEP if step is None else step
        z = xp.astype(x, _xp.complex_dtype_of(xp, x.dtype)) + (1j * h) * v
        return xp.imag(F(z)) / h
    if method == "central":
        if step is None:
            vnorm = float(_norm(xp, v))
            if vnorm == 0.0:
                raise ValueError("v must be non-zero")
            step = _xp.eps(xp, x.dtype) ** (1 / 3) * max(1.0, float(_norm(xp, x))) / vnorm
        return (F(x + step * v) - F(x - step * v)) / (2 * step)


def gradient_error(f, grad_f, x, *, method="complex", step=None):
    """Relative error (D4) of ``grad_f(x)`` against the gradient of ``f`` by ``method``."""
    grad_f = _function(grad_f, "grad_f")
    if _method(method) == "complex":
        ref = complex_step_gradient(f, x, step=COMPLEX_STEP if step is None else step)
    else:
        ref = central_difference_gradient(f, x, step=step)
    return relative_error(_array_result(_xp.namespace(x=ref)[0], grad_f(x), ref, "grad_f"), ref)


def directional_error(f, grad_f, x, v, *, method="complex", step=None):
    """Relative error (D4) of ``<grad_f(x), v>`` against the directional derivative of ``f``."""
    grad_f = _function(grad_f, "grad_f")
    ref = directional_derivative(f, x, v, method=method, step=step)
    xp, (x, v) = _point(x, v=v)
    return relative_error(xp.sum(_array_result(xp, grad_f(x), x, "grad_f") * v), ref)


def hvp_reference(grad_f, x, v, *, method="complex", step=None):
    """``H(x) v`` as the derivative of ``grad_f`` along ``v`` (D3), by ``method``."""
    grad_f = _function(grad_f, "grad_f")
    xp, (x, v) = _point(x, v=v)
    method, step = _method(method), _step(step, None)
    return _along(xp, lambda z: _array_result(xp, grad_f(z), z, "grad_f"), x, v, method, step)


def hvp_error(grad_f, hvp_f, x, v, *, method="complex", step=None):
    """Relative error (D4) of ``hvp_f(x, v)`` against differences of ``grad_f`` along ``v`` (D3)."""
    hvp_f = _function(hvp_f, "hvp_f")
    ref = hvp_reference(grad_f, x, v, method=method, step=step)
    xp, (x, v) = _point(x, v=v)
    return relative_error(_array_result(xp, hvp_f(x, v), x, "hvp_f"), ref)


def hvp_symmetry_error(hvp_f, x, u, v):
    """Asymmetry ``|<u, H v> - <H u, v>| / max(||u|| ||H v||, ||H u|| ||v||, tiny)`` (D5).

    The denominator is the Cauchy-Schwarz bound of both inner products, so the
    measure does not blow up when ``<u, H v>`` is small by cancellation.
    """
    hvp_f = _function(hvp_f, "hvp_f")
    xp, (x, u, v) = _point(x, u=u, v=v)
    Hu, Hv = (_array_result(xp, hvp_f(x, w), x, "hvp_f") for w in (u, v))
    gap = abs(float(xp.sum(u * Hv) - xp.sum(Hu * v)))
    scale = max(float(_norm(xp, u)) * float(_norm(xp, Hv)),
                float(_norm(xp, Hu)) * float(_norm(xp, v)),
                float(xp.finfo(_xp.real_dtype_of(xp, x.dtype)).smallest_normal))
    return gap / scale
