"""runtime.trig: constants as derived, the same bits as a plain float64 evaluation, accurate to 1 ulp."""

from __future__ import annotations

import numpy as np
import pytest

import runtime.trig as trig
from runtime.trig import sincos_array


def test_constants_are_the_derivation_in_the_docstring():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    half_pi = mpmath.pi / 2

    def top_bits(x, bits):
        m, e = np.frexp(float(x))
        return float(np.ldexp(np.floor(m * 2.0**bits) / 2.0**bits, e))

    p1 = top_bits(half_pi, 30)
    p2 = top_bits(half_pi - p1, 30)
    assert (trig.P1, trig.P2, trig.P3) == (p1, p2, float(half_pi - p1 - p2))
    assert trig.TWO_OVER_PI == float(2 / mpmath.pi)
    sines = [trig.S3, trig.S5, trig.S7, trig.S9, trig.S11, trig.S13, trig.S15]
    cosines = [trig.C2, trig.C4, trig.C6, trig.C8, trig.C10, trig.C12, trig.C14, trig.C16]
    assert sines == [float((-1) ** k / mpmath.factorial(2 * k + 1)) for k in range(1, 8)]
    assert cosines == [float((-1) ** k / mpmath.factorial(2 * k)) for k in range(1, 9)]


def _numpy_evaluation(x):
    """The same operations in numpy, one array operation at a time (no fused multiply-adds)."""
    k = np.floor(x * trig.TWO_OVER_PI + 0.5)
    r = ((x - k * trig.P1) - k * trig.P2) - k * trig.P3
    z = r * r
    s = r + r * z * (trig.S3 + z * (trig.S5 + z * (trig.S7 + z * (trig.S9 + z * (trig.S11 + z * (trig.S13 + z * trig.S15))))))
    c = 1.0 + z * (trig.C2 + z * (trig.C4 + z * (trig.C6 + z * (trig.C8 + z * (trig.C10 + z * (trig.C12 + z * (trig.C14 + z * trig.C16)))))))
    q = k - 4.0 * np.floor(k * 0.25)
    odd = (q == 1.0) | (q == 3.0)
    sin_x, cos_x = np.where(odd, c, s), np.where(odd, s, c)
    return np.where(q >= 2.0, -sin_x, sin_x), np.where((q == 1.0) | (q == 2.0), -cos_x, cos_x)


def test_numba_gives_the_bits_of_the_plain_evaluation():
    # If the compiler fused or reordered operations, some of these would differ in the last bit.
    x = np.random.default_rng(0).uniform(-20, 20, 200_000)
    s, c = sincos_array(x)
    s_ref, c_ref = _numpy_evaluation(x)
    assert np.array_equal(s, s_ref) and np.array_equal(c, c_ref)


@pytest.mark.parametrize("span", [1.0, 10.0, 1e5, 1e7])
def test_within_an_ulp_of_numpy(span):
    x = np.random.default_rng(1).uniform(-span, span, 200_000)
    s, c = sincos_array(x)
    ulp = np.spacing(1.0)
    assert np.abs(s - np.sin(x)).max() <= 2 * ulp
    assert np.abs(c - np.cos(x)).max() <= 2 * ulp


def test_quadrant_boundaries_and_special_values():
    x = np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 1.5 * np.pi, 2 * np.pi, -np.pi / 2, -np.pi])
    s, c = sincos_array(x)
    assert np.allclose(s, np.sin(x), atol=1e-15, rtol=0) and np.allclose(c, np.cos(x), atol=1e-15, rtol=0)
    s, c = sincos_array(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(s).all() and np.isnan(c).all()
