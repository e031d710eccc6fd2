"""Elementary float functions with the same bits on every CPU: exp, expm1, log, tanh, sigmoid,
sincos.

numpy's ``np.exp``, ``np.log``, ``np.tanh`` and their kin pick a SIMD kernel by instruction set
(AVX-512, AVX2 or none), and the C library picks an FMA or a plain variant of ``exp``, ``log`` and
``pow`` by processor: their last bits differ between machines. A float that reaches a recorded run
(a price, a learned weight, a drawn latency) must not, so Agora computes these functions here. Each
is a numba function built only from IEEE-754 additions, subtractions, multiplications, divisions,
square roots, ``floor`` and exact bit moves of the exponent, evaluated in a fixed order. Numba
contracts no multiply-add into a fused one unless fastmath is asked for, and vectorising a loop of
them changes no element's value, so the results do not depend on the CPU, the compiler's vector
width or the thread count.

Method, per function (constants are derived from the mathematical values, not copied; see
``tests/economy/test_portable_math.py``, which recomputes them with mpmath and measures the error):

* ``exp``: ``x = k·ln 2 + r`` with Cody–Waite reduction (ln 2 split so that ``k·LN2_HI`` is exact),
  ``|r| ≤ ln(2)/2``, then the Taylor polynomial of ``e^r`` to degree 13 (the next term is below
  5e-18) by Horner's rule, scaled by ``2^k`` built from its bits (one rounding, as ``ldexp``);
* ``expm1``: the Taylor polynomial to degree 19 for ``|x| ≤ 1/2`` (no cancellation), ``exp(x) − 1``
  beyond;
* ``log``: ``x = m·2^e`` read from the bits, ``m`` in ``[√½, √2)``, ``s = (m − 1)/(m + 1)``,
  ``log m = 2·atanh(s)`` by its odd series to ``s^23``, plus ``e·ln 2`` in two parts;
* ``tanh``: ``expm1(2x)/(expm1(2x) + 2)``, odd, saturating at ``|x| > 22``; ``sigmoid`` is
  ``1/(1 + exp(−x))``;
* ``sincos``: reduction by multiples of π/2 (π/2 in three parts, the first two of 30 bits so
  ``k·P1`` and ``k·P2`` are exact for ``|k| < 2^23``), Taylor polynomials of sine (to ``x^15``) and
  cosine (to ``x^16``) on ``[−π/4, π/4]``, the quadrant picked by selects, not branches.

Accuracy against the correctly rounded values: a few units in the last place over the ranges the
tests sweep (they state the bound). ``sincos`` loses accuracy in proportion to ``|x|`` past about
10^7 (the reduction). The array forms (:func:`exp`, :func:`log`, ...) take a float or an array of
any shape and return the same shape; inside numba kernels call the ``*_scalar`` forms."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, overload

import numpy as np
import numpy.typing as npt
from numba import njit

FlatKernel = Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], None]
"""An elementwise kernel over a flat float64 array, writing its second argument."""

# ln 2 in two parts: LN2_HI holds its leading 32 bits (so k·LN2_HI is exact for |k| < 2^21),
# LN2_LO the rest, rounded.
LN2_HI = 0.6931471803691238
LN2_LO = 1.9082149292705877e-10
INV_LN2 = 1.4426950408889634  # 1/ln 2 rounded; only picks k, so its last bit does not matter
SQRT_TWO = 1.4142135623730951  # √2 rounded: the split point of log's reduction
EXP_OVERFLOW = 709.782712893384  # ln(largest double), rounded down: above it exp is inf
EXP_UNDERFLOW = -745.1332191019412  # below it exp rounds to 0
TANH_SATURATION = 22.0  # past it tanh(x) rounds to ±1

# 1/n! for the exponential's Taylor polynomials (rounded to double).
_E2, _E3, _E4, _E5, _E6, _E7 = (
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
    0.0001984126984126984,
)
_E8, _E9, _E10, _E11 = (
    2.48015873015873e-05,
    2.7557319223985893e-06,
    2.755731922398589e-07,
    2.505210838544172e-08,
)
_E12, _E13, _E14, _E15 = (
    2.08767569878681e-09,
    1.6059043836821613e-10,
    1.1470745597729725e-11,
    7.647163731819816e-13,
)
_E16, _E17, _E18, _E19 = (
    4.779477332387385e-14,
    2.8114572543455206e-15,
    1.5619206968586225e-16,
    8.22063524662433e-18,
)

# π/2 in three parts for sincos: P1 and P2 with 30-bit mantissas, P3 the rest.
TWO_OVER_PI = 0.6366197723675814
P1 = 1.570796325802803
P2 = 9.920935791635221e-10
P3 = 5.170182981794105e-19
# (−1)^k/(2k+1)! and (−1)^k/(2k)!, rounded to double.
S3, S5, S7, S9, S11, S13, S15 = (
    -0.16666666666666666,
    0.008333333333333333,
    -0.0001984126984126984,
    2.7557319223985893e-06,
    -2.505210838544172e-08,
    1.6059043836821613e-10,
    -7.647163731819816e-13,
)
C2, C4, C6, C8, C10, C12, C14, C16 = (
    -0.5,
    0.041666666666666664,
    -0.001388888888888889,
    2.48015873015873e-05,
    -2.755731922398589e-07,
    2.08767569878681e-09,
    -1.1470745597729725e-11,
    4.779477332387385e-14,
)


@njit(inline="always")
def exp_scalar(x: float) -> float:
    """``e^x`` in float64, the same bits on every machine (module docstring)."""
    if x != x:
        return x
    if x > EXP_OVERFLOW:
        return math.inf
    if x < EXP_UNDERFLOW:
        return 0.0
    k = math.floor(x * INV_LN2 + 0.5)
    r = (x - k * LN2_HI) - k * LN2_LO
    p = _E12 + r * _E13
    p = _E11 + r * p
    p = _E10 + r * p
    p = _E9 + r * p
    p = _E8 + r * p
    p = _E7 + r * p
    p = _E6 + r * p
    p = _E5 + r * p
    p = _E4 + r * p
    p = _E3 + r * p
    p = _E2 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    return _scale(p, np.int64(k))


@njit(inline="always")
def _pow2(j: int | np.int64) -> float:
    """``2.0**j`` for an integer ``j`` in [−1022, 1023], built from its bits."""
    return np.int64((j + 1023) << 52).view(np.float64)


@njit(inline="always")
def _scale(p: float, k: int | np.int64) -> float:
    """``p·2^k`` rounded once, for ``p`` in [½, 2] and ``k`` in [−1075, 1024] (what ldexp gives)."""
    if k < -1022:  # a subnormal result: scale into the normal range exactly, then round once
        return (p * _pow2(k + 54)) * _pow2(-54)
    if k > 1023:
        return (p * 2.0) * _pow2(k - 1)
    return p * _pow2(k)


@njit(inline="always")
def _expm1_series(x: float) -> float:
    """``e^x − 1`` by its Taylor polynomial to degree 19: accurate for ``|x| ≤ 1/2``."""
    p = _E18 + x * _E19
    p = _E17 + x * p
    p = _E16 + x * p
    p = _E15 + x * p
    p = _E14 + x * p
    p = _E13 + x * p
    p = _E12 + x * p
    p = _E11 + x * p
    p = _E10 + x * p
    p = _E9 + x * p
    p = _E8 + x * p
    p = _E7 + x * p
    p = _E6 + x * p
    p = _E5 + x * p
    p = _E4 + x * p
    p = _E3 + x * p
    p = _E2 + x * p
    return x + x * (x * p)


@njit(inline="always")
def expm1_scalar(x: float) -> float:
    """``e^x − 1`` in float64, accurate near 0, the same bits on every machine."""
    # Both forms are computed and one is selected: a select, not a branch, lets loops vectorise.
    near = _expm1_series(min(max(x, -0.5), 0.5))
    far = exp_scalar(x) - 1.0
    small = (x <= 0.5) & (x >= -0.5)
    return near if small else far


@njit(inline="always")
def log_scalar(x: float) -> float:
    """Natural logarithm in float64 (nan below 0, −inf at 0), the same bits on every machine."""
    tiny = x < 2.2250738585072014e-308  # subnormal (or not positive): scaled by 2^54 first, exactly
    xs = x * 18014398509481984.0 if tiny else x
    bits = np.float64(xs).view(np.int64)
    e = (bits >> 52) - (1023 + 54 if tiny else 1023)
    m = np.int64((bits & 0xFFFFFFFFFFFFF) | (1023 << 52)).view(np.float64)  # in [1, 2)
    high = m >= SQRT_TWO
    m = m * 0.5 if high else m
    e = e + 1 if high else e
    f = m - 1.0  # exact: m lies within a factor of two of 1
    s = f / (2.0 + f)
    z = s * s
    q = 1.0 / 21.0 + z * (1.0 / 23.0)
    q = 1.0 / 19.0 + z * q
    q = 1.0 / 17.0 + z * q
    q = 1.0 / 15.0 + z * q
    q = 1.0 / 13.0 + z * q
    q = 1.0 / 11.0 + z * q
    q = 1.0 / 9.0 + z * q
    q = 1.0 / 7.0 + z * q
    q = 1.0 / 5.0 + z * q
    q = 1.0 / 3.0 + z * q
    two_s = 2.0 * s
    fe = float(e)
    y: float = fe * LN2_HI + (two_s + (two_s * z * q + fe * LN2_LO))
    y = x if x == math.inf else y
    y = -math.inf if x == 0.0 else y
    return math.nan if (x != x) | (x < 0.0) else y


@njit(inline="always")
def tanh_scalar(x: float) -> float:
    """Hyperbolic tangent in float64, the same bits on every machine."""
    ax = min(-x if x < 0.0 else x, TANH_SATURATION)
    e = expm1_scalar(2.0 * ax)
    t = e / (e + 2.0)
    t = 1.0 if ax >= TANH_SATURATION else t
    t = -t if x < 0.0 else t
    return x if x != x else t


@njit(inline="always")
def sigmoid_scalar(x: float) -> float:
    """Logistic function ``1/(1 + e^−x)`` in float64, the same bits on every machine."""
    return 1.0 / (1.0 + exp_scalar(-x))


@njit(inline="always")
def sincos(x: float) -> tuple[float, float]:
    """``(sin x, cos x)`` in float64, the same bits on every machine (module docstring)."""
    k = np.floor(x * TWO_OVER_PI + 0.5)
    r = ((x - k * P1) - k * P2) - k * P3
    z = r * r
    s = r + r * z * (S3 + z * (S5 + z * (S7 + z * (S9 + z * (S11 + z * (S13 + z * S15))))))
    c = 1.0 + z * (
        C2 + z * (C4 + z * (C6 + z * (C8 + z * (C10 + z * (C12 + z * (C14 + z * C16))))))
    )
    q = k - 4.0 * np.floor(k * 0.25)  # quadrant 0..3, exact while k is (|x| < 2^52)
    odd = (q == 1.0) | (q == 3.0)
    sin_x = c if odd else s
    cos_x = s if odd else c
    sin_x = -sin_x if q >= 2.0 else sin_x
    cos_x = -cos_x if (q == 1.0) | (q == 2.0) else cos_x
    return sin_x, cos_x


# ---------------------------------------------------------------------- array forms


@njit(cache=True, error_model="numpy")
def _exp_flat(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    for i in range(x.shape[0]):
        out[i] = exp_scalar(x[i])


@njit(cache=True, error_model="numpy")
def _expm1_flat(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    for i in range(x.shape[0]):
        out[i] = expm1_scalar(x[i])


@njit(cache=True, error_model="numpy")
def _log_flat(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    for i in range(x.shape[0]):
        out[i] = log_scalar(x[i])


@njit(cache=True, error_model="numpy")
def _tanh_flat(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    for i in range(x.shape[0]):
        out[i] = tanh_scalar(x[i])


@njit(cache=True, error_model="numpy")
def _sigmoid_flat(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    for i in range(x.shape[0]):
        out[i] = sigmoid_scalar(x[i])


@njit(cache=True, error_model="numpy")
def _sincos_flat(
    x: npt.NDArray[np.float64], sin_out: npt.NDArray[np.float64], cos_out: npt.NDArray[np.float64]
) -> None:
    for i in range(x.shape[0]):
        sin_out[i], cos_out[i] = sincos(x[i])


def _apply(kernel: FlatKernel, x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """Run an elementwise kernel over a float or an array of any shape; same shape back."""
    arr = np.asarray(x, dtype=np.float64)
    flat = np.ascontiguousarray(arr.reshape(-1))
    out = np.empty_like(flat)
    kernel(flat, out)
    if arr.ndim == 0:
        return float(out[0])
    return out.reshape(arr.shape)


@overload
def exp(x: float) -> float: ...
@overload
def exp(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
@overload
def exp(x: npt.ArrayLike) -> float | npt.NDArray[np.float64]: ...
def exp(x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """``e^x`` elementwise (portable: the same bits on every CPU)."""
    return _apply(_exp_flat, x)


@overload
def expm1(x: float) -> float: ...
@overload
def expm1(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
@overload
def expm1(x: npt.ArrayLike) -> float | npt.NDArray[np.float64]: ...
def expm1(x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """``e^x − 1`` elementwise (portable)."""
    return _apply(_expm1_flat, x)


@overload
def log(x: float) -> float: ...
@overload
def log(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
@overload
def log(x: npt.ArrayLike) -> float | npt.NDArray[np.float64]: ...
def log(x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """Natural logarithm elementwise (portable; nan below 0, −inf at 0)."""
    return _apply(_log_flat, x)


@overload
def tanh(x: float) -> float: ...
@overload
def tanh(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
@overload
def tanh(x: npt.ArrayLike) -> float | npt.NDArray[np.float64]: ...
def tanh(x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """Hyperbolic tangent elementwise (portable)."""
    return _apply(_tanh_flat, x)


@overload
def sigmoid(x: float) -> float: ...
@overload
def sigmoid(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]: ...
@overload
def sigmoid(x: npt.ArrayLike) -> float | npt.NDArray[np.float64]: ...
def sigmoid(x: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """Logistic function ``1/(1 + e^−x)`` elementwise (portable)."""
    return _apply(_sigmoid_flat, x)


def power(base: float | npt.ArrayLike, exponent: float) -> float | npt.NDArray[np.float64]:
    """``base ** exponent`` for ``base ≥ 0`` elementwise, as ``exp(exponent·log base)`` (portable;
    ``0 ** exponent`` is 0 for a positive exponent, 1 for exponent 0)."""
    b = np.asarray(base, dtype=np.float64)
    if (b < 0).any():
        raise ValueError(
            "power: the base must be >= 0 (a negative base has no real power in general)"
        )
    if exponent == 0.0:
        ones = np.ones_like(b)
        return float(ones) if ones.ndim == 0 else ones
    if exponent == 1.0:
        return float(b) if b.ndim == 0 else b.copy()
    result = exp(exponent * log(b))
    return result


def sin_cos(x: float | npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(sin x, cos x)`` elementwise (portable), each the shape of ``x``."""
    arr = np.asarray(x, dtype=np.float64)
    flat = np.ascontiguousarray(arr.reshape(-1))
    s, c = np.empty_like(flat), np.empty_like(flat)
    _sincos_flat(flat, s, c)
    return s.reshape(arr.shape), c.reshape(arr.shape)


# ---------------------------------------------------------------------- products in a fixed order


@njit(cache=True, error_model="numpy")
def _matmul_rows(
    a: npt.NDArray[np.float64], b_t: npt.NDArray[np.float64], out: npt.NDArray[np.float64]
) -> None:
    # out[i, j] = Σ_p a[i, p]·b_t[j, p], summed in rising p: one order whatever the CPU.
    for i in range(a.shape[0]):
        for j in range(b_t.shape[0]):
            acc = 0.0
            for p in range(a.shape[1]):
                acc += a[i, p] * b_t[j, p]
            out[i, j] = acc


def matmul(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``a @ b`` for 1-D or 2-D float arrays, each sum taken in index order.

    BLAS (behind numpy's ``@``) picks its kernel, and so its summation order, by processor; this
    product gives the same bits everywhere. For the small products of agents' cores and votes.
    """
    left = np.asarray(a, dtype=np.float64)
    right = np.asarray(b, dtype=np.float64)
    if left.ndim not in (1, 2) or right.ndim not in (1, 2):
        raise ValueError(f"matmul takes 1-D or 2-D arrays, got {left.ndim}-D and {right.ndim}-D")
    a2 = left.reshape(1, -1) if left.ndim == 1 else left
    b2 = right.reshape(-1, 1) if right.ndim == 1 else right
    if a2.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul: shapes {left.shape} and {right.shape} do not align")
    out = np.empty((a2.shape[0], b2.shape[1]))
    _matmul_rows(np.ascontiguousarray(a2), np.ascontiguousarray(b2.T), out)
    if left.ndim == 1 and right.ndim == 1:
        return out.reshape(())
    if left.ndim == 1:
        return out.reshape(-1)
    if right.ndim == 1:
        return out.reshape(-1)
    return out
