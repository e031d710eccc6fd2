"""Indicators of an economy, as plain functions of arrays (exact, tested against known answers)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def gini(x: npt.ArrayLike) -> float:
    """Gini coefficient of non-negative wealth ``x`` (0: equal; (n−1)/n: one holds everything).

    ``G = Σ_i (2i − n − 1)·x_(i) / (n·Σx)`` over the sorted values, i = 1..n. Zero total: 0.
    """
    v = np.sort(np.asarray(x, dtype=np.float64))
    n = v.size
    total = v.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * v).sum() / (n * total))


def top_share(x: npt.ArrayLike, fraction: float = 0.01) -> float:
    """Share of the total held by the richest ``ceil(fraction·n)`` holders."""
    v = np.asarray(x, dtype=np.float64)
    total = v.sum()
    if v.size == 0 or total <= 0:
        return 0.0
    k = max(1, math.ceil(fraction * v.size))
    return float(np.partition(v, v.size - k)[v.size - k :].sum() / total)


def volatility(prices: npt.ArrayLike) -> float:
    """Standard deviation (ddof 0) of the log returns of a positive price series."""
    p = np.asarray(prices, dtype=np.float64)
    if p.size < 2:
        return 0.0
    return float(np.std(np.diff(np.log(p))))


def divergence_spells(distinct: npt.ArrayLike) -> list[int]:
    """Lengths (ticks) of the spells in which replicas disagreed (``distinct > 1``), in order.

    A spell still open at the end counts with its length so far.
    """
    spells, run = [], 0
    for d in np.asarray(distinct):
        if d > 1:
            run += 1
        elif run:
            spells.append(run)
            run = 0
    if run:
        spells.append(run)
    return spells


def series_summary(x: npt.ArrayLike) -> dict[str, float]:
    """First, last, mean, standard deviation, min and max of a series."""
    v = np.asarray(x, dtype=np.float64)
    if v.size == 0:
        return {
            "first": math.nan,
            "last": math.nan,
            "mean": math.nan,
            "std": math.nan,
            "min": math.nan,
            "max": math.nan,
        }
    return {
        "first": float(v[0]),
        "last": float(v[-1]),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def mean_ci(values: npt.ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval of the mean (half-width 0 for a single value)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half
