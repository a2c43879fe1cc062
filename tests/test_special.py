"""Stable special functions against scipy.special, at moderate and extreme arguments."""

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmaml import special

from . import reference as ref

EXTREME = np.array([-1e300, -1e4, -1e3, -745.0, -40.0, -1.0, -1e-300, 0.0, 1e-300, 1.0, 40.0,
                    745.0, 1e3, 1e4, 1e300])


@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-700, 700)))
def test_values_match_scipy(z):
    # scipy's expit and log_expit are the referees; a few ulps elementwise.  Beyond |z| = 708
    # sigma(z) is subnormal: there scipy's expit returns 0 and ours e^z, see the test below.
    assert np.allclose(special.sigmoid(z), scipy.special.expit(z), rtol=4e-16, atol=0)
    assert np.allclose(special.log_sigmoid(z), scipy.special.log_expit(z), rtol=4e-16, atol=0)
    assert np.allclose(special.softplus(z), np.logaddexp(0.0, z), rtol=4e-16, atol=0)


def test_extreme_arguments_are_finite_and_exact(backend):
    """Logits up to 1e300 in magnitude: no inf, no nan, no warning (warnings are errors here)."""
    z = backend.put(EXTREME)
    s = backend.get(special.sigmoid(z))
    sp = backend.get(special.softplus(z))
    ls = backend.get(special.log_sigmoid(z))
    for out in (s, sp, ls):
        assert np.all(np.isfinite(out))
    # Absolute slack of the smallest normal number: results below it are subnormal, which
    # scipy's expit (and GPU math libraries) may flush to zero while NumPy keeps them.
    tiny = np.finfo(float).tiny
    assert np.allclose(s, scipy.special.expit(EXTREME), rtol=4e-16, atol=tiny)
    assert np.allclose(sp, np.logaddexp(0.0, EXTREME), rtol=4e-16, atol=tiny)
    assert np.allclose(ls, scipy.special.log_expit(EXTREME), rtol=4e-16, atol=tiny)


@pytest.mark.parametrize("z", [-300.0, -30.0, -2.0, -1e-3, 0.0, 1e-3, 2.0, 30.0, 300.0])
def test_complex_step_gives_exact_derivatives(z, backend):
    """(L3), (L5)-(L7): Im f(z + ih)/h equals f'(z), with h = 1e-20 (complex-step safety).

    |z| <= 300 keeps h f'(z) (down to 1e-20 e^-300) in the normal range.
    """
    h = 1e-20
    zc = backend.put(np.array([z + 1j * h]))
    sig = scipy.special.expit(z)
    dsig = backend.get(backend.xp.imag(special.sigmoid(zc)))[0] / h
    dsp = backend.get(backend.xp.imag(special.softplus(zc)))[0] / h
    dls = backend.get(backend.xp.imag(special.log_sigmoid(zc)))[0] / h
    assert ref.rel_err(dsig, sig * scipy.special.expit(-z)) <= 1e-15
    assert ref.rel_err(dsp, sig) <= 1e-15
    assert ref.rel_err(dls, scipy.special.expit(-z)) <= 1e-15


def test_namespace_and_device_are_kept(backend):
    z = backend.put([0.5, -0.5])
    for f in (special.sigmoid, special.softplus, special.log_sigmoid):
        backend.assert_home(f(z))
