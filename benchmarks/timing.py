"""How the suites time a call: one warm-up call, then repeated calls on the wall clock."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(
    step: Callable[[], object],
    units: int = 1,
    *,
    repeat: int | None = None,
    seconds: float = 0.5,
    warm_up: bool = True,
) -> float:
    """Units per second of ``step``, which does ``units`` units of work per call.

    ``step`` is called once first (numba compilation, caches) unless ``warm_up`` is false, then
    ``repeat`` times, or, without ``repeat``, until ``seconds`` have passed.
    """
    assert units > 0, f"units={units}: expected a positive count of work per call"
    assert repeat is None or repeat > 0, f"repeat={repeat}: expected a positive count of calls"
    if warm_up:
        step()
    calls, start = 0, time.perf_counter()
    while calls < repeat if repeat is not None else time.perf_counter() - start < seconds:
        step()
        calls += 1
    elapsed = time.perf_counter() - start
    assert calls > 0 and elapsed > 0.0
    return units * calls / elapsed


def milliseconds_per_call(
    step: Callable[[], object], repeat: int, *, warm_up: bool = True
) -> float:
    """Mean wall-clock milliseconds per call of ``step`` over ``repeat`` calls (:func:`rate`)."""
    return 1000.0 / rate(step, repeat=repeat, warm_up=warm_up)
