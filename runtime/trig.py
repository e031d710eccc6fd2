"""Sine and cosine for numba kernels: the same bits on every machine, and vectorisable.

``sincos(x)`` reduces ``x`` by multiples of π/2 (Cody–Waite: π/2 split into three parts, the first
two with 30-bit mantissas so ``k·P1`` and ``k·P2`` are exact for |k| < 2^23), then evaluates the
Taylor polynomials of sine (to x^15) and cosine (to x^16) on [−π/4, π/4], where the first omitted
terms are below 5e-17, and picks the quadrant with selects, not branches. It uses only IEEE-754
additions and multiplications in a fixed order (numba does not contract them into fused
multiply-adds unless fastmath is asked for), so results do not depend on the C library, the
compiler's vector width or the thread count -- unlike ``np.sin``, whose last bit may differ between
libm versions. Measured against ``np.sin``/``np.cos``: at most 2 ulp of 1 on [−10, 10]; for |x| past
about 10^7 the reduction loses accuracy in proportion to |x| (tests/runtime/test_trig.py).

It is about 10× cheaper than numba's ``np.sin`` plus ``np.cos`` on this 2-core CPU (one thread,
the 10^6 marketplace's phases: 4.0 vs 41.9 ms, ``python -m benchmarks.kuramoto_floor 1000000``),
which is what the Kuramoto kernels spend on trigonometry.

The constants are derived, not copied: ``P1``, ``P2``, ``P3`` from π/2 at 60 digits (mpmath), the
coefficients are ±1/n!; ``tests/runtime/test_trig.py`` recomputes them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TWO_OVER_PI = 0.6366197723675814  # 2/π rounded to double
P1 = 1.570796325802803  # π/2 to 30 bits
P2 = 9.920935791635221e-10  # (π/2 − P1) to 30 bits
P3 = 5.170182981794105e-19  # π/2 − P1 − P2
S3, S5, S7, S9, S11, S13, S15 = (-0.16666666666666666, 0.008333333333333333, -0.0001984126984126984,
                                 2.7557319223985893e-06, -2.505210838544172e-08, 1.6059043836821613e-10,
                                 -7.647163731819816e-13)  # (−1)^k / (2k+1)!
C2, C4, C6, C8, C10, C12, C14, C16 = (-0.5, 0.041666666666666664, -0.001388888888888889, 2.48015873015873e-05,
                                      -2.755731922398589e-07, 2.08767569878681e-09, -1.1470745597729725e-11,
                                      4.779477332387385e-14)  # (−1)^k / (2k)!


@njit(inline="always")
def sincos(x):  # type: ignore[no-untyped-def]
    """``(sin x, cos x)`` in float64, bit-reproducible (see the module's docstring)."""
    k = np.floor(x * TWO_OVER_PI + 0.5)
    r = ((x - k * P1) - k * P2) - k * P3
    z = r * r
    s = r + r * z * (S3 + z * (S5 + z * (S7 + z * (S9 + z * (S11 + z * (S13 + z * S15))))))
    c = 1.0 + z * (C2 + z * (C4 + z * (C6 + z * (C8 + z * (C10 + z * (C12 + z * (C14 + z * C16)))))))
    q = k - 4.0 * np.floor(k * 0.25)  # quadrant 0..3, exact while k is (|x| < 2^52)
    odd = (q == 1.0) | (q == 3.0)
    sin_x = c if odd else s
    cos_x = s if odd else c
    sin_x = -sin_x if q >= 2.0 else sin_x
    cos_x = -cos_x if (q == 1.0) | (q == 2.0) else cos_x
    return sin_x, cos_x


@njit(cache=True)
def sincos_array(x):  # type: ignore[no-untyped-def]
    """``sincos`` of each element of a float64 array: ``(sin, cos)`` arrays."""
    s = np.empty_like(x)
    c = np.empty_like(x)
    for i in range(x.shape[0]):
        s[i], c[i] = sincos(x[i])
    return s, c
