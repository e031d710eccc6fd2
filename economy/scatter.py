"""Scatter-add: ``np.add.at``'s result, each value added in the order given, without its per-entry
cost.

``np.add.at(out, idx, values)`` is exact about order (an index that repeats is added to one value
after another), which the roles need for float telemetry to be the same bits on every run; it costs
tens of nanoseconds per entry, a numba loop a few. Indices are checked before anything is added, so
a bad index changes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit


@njit(cache=True)
def _in_range(idx: npt.NDArray[np.int64], n: int) -> bool:
    for i in range(idx.shape[0]):
        if idx[i] < 0 or idx[i] >= n:
            return False
    return True


@njit(cache=True)
def _add_each(out: npt.NDArray[Any], idx: npt.NDArray[np.int64], values: npt.NDArray[Any]) -> None:
    for i in range(idx.shape[0]):
        out[idx[i]] += values[i]


@njit(cache=True)
def _add_one(out: npt.NDArray[Any], idx: npt.NDArray[np.int64], value: Any) -> None:
    for i in range(idx.shape[0]):
        out[idx[i]] += value


def add_at(out: npt.NDArray[np.generic], idx: npt.ArrayLike, values: object) -> None:
    """``out[idx[i]] += values[i]`` for each i in order (``values`` may be one scalar), like
    ``np.add.at``.

    ``out`` is one-dimensional; ``values`` is cast to ``out``'s dtype (booleans add 1 or 0). Raises
    ``IndexError`` (and adds nothing) when an index is outside ``[0, len(out))``, ``ValueError``
    when ``values`` is an array of another length.
    """
    index = np.asarray(idx)
    if (
        out.ndim != 1
        or index.ndim != 1
        or not (index.size == 0 or np.issubdtype(index.dtype, np.integer))
    ):
        raise ValueError(
            f"add_at takes a 1-d array and 1-d integer indices, got {out.shape} and "
            f"{index.dtype}{index.shape}"
        )
    if index.size == 0:
        return
    index = index.astype(np.int64, copy=False)
    if not _in_range(index, out.shape[0]):
        raise IndexError(f"add_at: an index is outside [0, {out.shape[0]})")
    if np.ndim(np.asarray(values)) == 0:
        _add_one(out, index, out.dtype.type(values))
        return
    vals = np.asarray(values)
    if vals.shape != index.shape:
        raise ValueError(f"add_at: {index.size} indices but values of shape {vals.shape}")
    _add_each(out, index, vals.astype(out.dtype, copy=False))
