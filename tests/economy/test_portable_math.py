"""economy.portable_math: constants as derived, the bits of a plain evaluation, accuracy, edge
values."""

from __future__ import annotations

import numpy as np
import pytest

import economy.portable_math as pm


def _top_bits(x: float, bits: int) -> float:
    m, e = np.frexp(float(x))
    return float(np.ldexp(np.floor(m * 2.0**bits) / 2.0**bits, e))


def test_constants_are_the_derivation_in_the_docstring():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    half_pi = mpmath.pi / 2
    p1 = _top_bits(half_pi, 30)
    p2 = _top_bits(half_pi - p1, 30)
    assert (pm.P1, pm.P2, pm.P3) == (p1, p2, float(half_pi - p1 - p2))
    assert pm.TWO_OVER_PI == float(2 / mpmath.pi)
    sines = [pm.S3, pm.S5, pm.S7, pm.S9, pm.S11, pm.S13, pm.S15]
    cosines = [pm.C2, pm.C4, pm.C6, pm.C8, pm.C10, pm.C12, pm.C14, pm.C16]
    assert sines == [float((-1) ** k / mpmath.factorial(2 * k + 1)) for k in range(1, 8)]
    assert cosines == [float((-1) ** k / mpmath.factorial(2 * k)) for k in range(1, 9)]
    ln2 = mpmath.log(2)
    assert pm.LN2_HI == _top_bits(ln2, 32)
    assert pm.LN2_LO == float(ln2 - mpmath.mpf(pm.LN2_HI))
    assert pm.INV_LN2 == float(1 / ln2) and pm.SQRT_TWO == float(mpmath.sqrt(2))
    factorials = [
        pm._E2,
        pm._E3,
        pm._E4,
        pm._E5,
        pm._E6,
        pm._E7,
        pm._E8,
        pm._E9,
        pm._E10,
        pm._E11,
        pm._E12,
        pm._E13,
        pm._E14,
        pm._E15,
        pm._E16,
        pm._E17,
        pm._E18,
        pm._E19,
    ]
    assert factorials == [float(1 / mpmath.factorial(n)) for n in range(2, 20)]
    # The thresholds: exp overflows just past EXP_OVERFLOW and rounds to 0 just below EXP_UNDERFLOW.
    assert float(mpmath.exp(pm.EXP_OVERFLOW)) < np.finfo(np.float64).max
    assert float(mpmath.exp(pm.EXP_UNDERFLOW)) <= 2.0**-1075 * 1.0000001


def _numpy_sincos(x):
    """sincos's operations in numpy, one array operation at a time (no fused multiply-adds)."""
    k = np.floor(x * pm.TWO_OVER_PI + 0.5)
    r = ((x - k * pm.P1) - k * pm.P2) - k * pm.P3
    z = r * r
    ps = pm.S13 + z * pm.S15
    for coef in (pm.S11, pm.S9, pm.S7, pm.S5, pm.S3):
        ps = coef + z * ps
    s = r + r * z * ps
    pc = pm.C14 + z * pm.C16
    for coef in (pm.C12, pm.C10, pm.C8, pm.C6, pm.C4, pm.C2):
        pc = coef + z * pc
    c = 1.0 + z * pc
    q = k - 4.0 * np.floor(k * 0.25)
    odd = (q == 1.0) | (q == 3.0)
    sin_x, cos_x = np.where(odd, c, s), np.where(odd, s, c)
    return np.where(q >= 2.0, -sin_x, sin_x), np.where((q == 1.0) | (q == 2.0), -cos_x, cos_x)


def _numpy_exp(x):
    """exp_scalar's operations in numpy (inputs inside the finite range)."""
    k = np.floor(x * pm.INV_LN2 + 0.5)
    r = (x - k * pm.LN2_HI) - k * pm.LN2_LO
    p = pm._E12 + r * pm._E13
    for coef in (
        pm._E11,
        pm._E10,
        pm._E9,
        pm._E8,
        pm._E7,
        pm._E6,
        pm._E5,
        pm._E4,
        pm._E3,
        pm._E2,
        1.0,
        1.0,
    ):
        p = coef + r * p
    return np.ldexp(p, k.astype(np.int64))


def _numpy_log(x):
    """log_scalar's operations in numpy (positive normal inputs)."""
    m, e = np.frexp(x)  # m in [0.5, 1): the same split as the bits give, one binade lower
    m, e = m * 2.0, e - 1
    high = m >= pm.SQRT_TWO
    m, e = np.where(high, m * 0.5, m), np.where(high, e + 1, e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    q = 1.0 / 21.0 + z * (1.0 / 23.0)
    for denominator in (19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0):
        q = 1.0 / denominator + z * q
    two_s = 2.0 * s
    fe = e.astype(np.float64)
    return fe * pm.LN2_HI + (two_s + (two_s * z * q + fe * pm.LN2_LO))


def test_numba_gives_the_bits_of_the_plain_evaluation():
    # If the compiler fused or reordered operations, some of these would differ in the last bit.
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 20, 200_000)
    s, c = pm.sin_cos(x)
    s_ref, c_ref = _numpy_sincos(x)
    assert np.array_equal(s, s_ref) and np.array_equal(c, c_ref)
    x = rng.uniform(-700, 700, 200_000)
    assert np.array_equal(pm.exp(x), _numpy_exp(x))
    x = np.exp(rng.uniform(-700, 700, 200_000))
    assert np.array_equal(pm.log(x), _numpy_log(x))


def _ulps(got, want):
    return float(np.max(np.abs(got - want) / np.spacing(np.abs(want))))


@pytest.mark.parametrize("span", [1.0, 10.0, 1e5, 1e7])
def test_sincos_within_two_ulps_of_one(span):
    x = np.random.default_rng(1).uniform(-span, span, 200_000)
    s, c = pm.sin_cos(x)
    ulp = np.spacing(1.0)
    assert np.abs(s - np.sin(x)).max() <= 2 * ulp
    assert np.abs(c - np.cos(x)).max() <= 2 * ulp


def test_accuracy_in_units_in_the_last_place():
    rng = np.random.default_rng(2)
    x = rng.uniform(-740, 709, 300_000)
    assert _ulps(pm.exp(x), np.exp(x)) <= 1
    x = rng.uniform(-0.5, 0.5, 300_000)
    assert _ulps(pm.expm1(x), np.expm1(x)) <= 1
    x = np.exp(rng.uniform(-740, 709, 300_000))
    assert _ulps(pm.log(x), np.log(x)) <= 2
    x = rng.uniform(0.5, 2.0, 300_000)  # near 1, where a careless log loses relative accuracy
    assert _ulps(pm.log(x), np.log(x)) <= 2
    x = rng.uniform(-25, 25, 300_000)
    assert _ulps(pm.tanh(x), np.tanh(x)) <= 2
    x = rng.uniform(-1e-6, 1e-6, 300_000)
    assert _ulps(pm.tanh(x), np.tanh(x)) <= 3
    x = rng.uniform(-40, 40, 300_000)
    assert _ulps(pm.sigmoid(x), 1.0 / (1.0 + np.exp(-x))) <= 4
    base = rng.uniform(0, 1e12, 100_000)
    assert np.allclose(pm.power(base, 0.5), np.sqrt(base), rtol=1e-13, atol=0)


def test_edge_values():
    assert (
        pm.exp(0.0) == 1.0 and pm.log(1.0) == 0.0 and pm.expm1(0.0) == 0.0 and pm.tanh(0.0) == 0.0
    )
    assert pm.exp(np.inf) == np.inf and pm.exp(-np.inf) == 0.0 and pm.exp(710.0) == np.inf
    assert pm.exp(-746.0) == 0.0 and pm.exp(-745.0) == 5e-324
    assert pm.log(0.0) == -np.inf and pm.log(np.inf) == np.inf
    assert np.isnan(pm.log(-1.0)) and np.isnan(pm.exp(np.nan)) and np.isnan(pm.tanh(np.nan))
    assert pm.log(5e-324) == np.log(5e-324)  # a subnormal input
    assert pm.tanh(30.0) == 1.0 and pm.tanh(-30.0) == -1.0
    assert pm.sigmoid(-800.0) == 0.0 and pm.sigmoid(800.0) == 1.0
    assert pm.power(0.0, 0.5) == 0.0 and pm.power(7.0, 0.0) == 1.0
    with pytest.raises(ValueError, match="base must be >= 0"):
        pm.power(np.array([1.0, -2.0]), 0.5)
    s, c = pm.sin_cos(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(s).all() and np.isnan(c).all()


def test_shapes_are_kept():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    for fn in (pm.exp, pm.expm1, pm.log, pm.tanh, pm.sigmoid):
        out = fn(np.abs(x) + 0.1)
        assert out.shape == (3, 4)
    assert isinstance(pm.exp(1.0), float)
