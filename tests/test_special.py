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


# ------------------------------------------------------------------ logsumexp, softmax, log_softmax


@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=st.floats(-700, 700)),
       st.sampled_from([0, 1, -1]))
def test_softmax_family_matches_scipy(z, axis):
    """(S5), (S6) against scipy.special; a few ulps elementwise (absolute slack of the smallest normal
    number for probabilities that underflow)."""
    tiny = np.finfo(float).tiny
    assert np.allclose(special.logsumexp(z, axis=axis), scipy.special.logsumexp(z, axis=axis),
                       rtol=4e-16, atol=0)
    # log_softmax: z - lse can cancel, so the error is a few ulps of |z|, not of the result.
    assert np.allclose(special.log_softmax(z, axis=axis), scipy.special.log_softmax(z, axis=axis),
                       rtol=4e-16, atol=4e-16 * np.max(np.abs(z)))
    # softmax: exp turns the rounding of z_c - z_a (eps |z| absolute) into eps |z| relative.
    assert np.allclose(special.softmax(z, axis=axis), scipy.special.softmax(z, axis=axis),
                       rtol=1e-15 * max(1.0, np.max(np.abs(z))), atol=tiny)


def test_softmax_family_at_extreme_logits(backend):
    """Logits of magnitude 1e4 and 1e300: finite, exact, no warnings (warnings are errors here)."""
    for scale in (1e4, 1e300):
        z = backend.put([[scale, 0.0, -scale], [0.0, 0.0, -scale]])
        lse = backend.get(special.logsumexp(z))
        logp = backend.get(special.log_softmax(z))
        p = backend.get(special.softmax(z))
        assert np.array_equal(lse, [scale, np.log(2.0)])
        log2 = np.log(2.0)
        assert np.array_equal(logp, [[0.0, -scale, -2 * scale], [-log2, -log2, -scale - log2]])
        assert np.array_equal(p, [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])


def test_dominant_class_keeps_its_digits():
    """(S5), (S6): for logits (40, 0, 0) the log-probability of class 0 is -log1p(2 e^-40), not 0."""
    z = np.array([40.0, 0.0, 0.0])
    r = 2 * np.exp(-40.0)
    assert special.log_softmax(z)[0] == pytest.approx(-np.log1p(r), rel=1e-15)
    assert special.logsumexp(z) - 40.0 == 0.0  # the sum itself rounds to 40, as it must
    assert special.softmax(z)[1] == pytest.approx(np.exp(-40.0) / (1 + r), rel=1e-15)


def test_ties_pick_one_pivot():
    """Equal largest logits: the first is the pivot, the others enter r (S5); the results are exact."""
    z = np.array([3.0, 3.0, 3.0, 3.0])
    assert special.logsumexp(z) == pytest.approx(3.0 + np.log(4.0), rel=1e-16)
    assert np.all(special.softmax(z) == 0.25)


@pytest.mark.parametrize("scale", [0.5, 30.0, 300.0])
def test_softmax_family_complex_step(scale, backend):
    """(S5), (S6): Im f(z + i h v)/h is the exact directional derivative: grad lse = p (S3),
    d log_softmax_c = v_c - <p, v> = sum_e p_e (v_c - v_e), d softmax_c = p_c d log_softmax_c.

    The reference uses the sum form, which does not cancel when one class dominates."""
    rng = np.random.default_rng(int(scale))
    z = scale * rng.standard_normal((3, 4))
    v = rng.standard_normal((3, 4))
    h = 1e-20
    zc = backend.put(z + 1j * h * v)
    xp = backend.xp
    p = scipy.special.softmax(z, axis=-1)
    pv = np.sum(p * v, axis=-1, keepdims=True)
    dlogp = np.sum(p[..., None, :] * (v[..., :, None] - v[..., None, :]), axis=-1)
    got = [backend.get(xp.imag(f(zc))) / h for f in (special.logsumexp, special.log_softmax, special.softmax)]
    assert ref.rel_err(got[0], pv[:, 0]) <= 1e-15
    assert ref.rel_err(got[1], dlogp) <= 1e-15
    assert ref.rel_err(got[2], p * dlogp) <= 1e-15


def test_softmax_family_keeps_namespace_and_refuses_an_empty_axis(backend):
    z = backend.put([[0.5, -0.5], [1.0, 2.0]])
    for f in (special.logsumexp, special.softmax, special.log_softmax):
        backend.assert_home(f(z))
        backend.assert_home(f(z, axis=0))
        with pytest.raises(ValueError, match="empty"):
            f(backend.put(np.ones((2, 0))))
        for axis in (2, -3, 1.0, True, None):
            with pytest.raises(ValueError, match="axis must be an integer"):
                f(z, axis=axis)
        with pytest.raises(ValueError, match="axis"):
            f(backend.put(1.0))
