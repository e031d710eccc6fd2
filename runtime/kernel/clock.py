"""The world's clock: a SimPy environment whose pending events can be listed and put back exactly.

A checkpoint holds what is scheduled between ticks (messages in flight) as ``(time, priority,
payload)`` in the order SimPy will process them. Putting them back with :meth:`Clock.schedule_at`
keeps both their exact times (``now + delay`` could round differently) and their order among
events due at one time (SimPy breaks ties by an insertion counter, which the restored events take
in their original order, before anything scheduled later).
"""

from __future__ import annotations

from heapq import heappush
from typing import Any

import simpy
import simpy.rt

# Re-exported for callers that drain a clock.
from simpy.core import EmptySchedule as EmptySchedule


class _Exact:
    """Scheduling at an absolute time, for both the plain and the realtime environment."""

    def schedule_at(self, event: simpy.Event, priority: int, time: float) -> None:
        """Put ``event`` (already triggered) on the queue at absolute ``time`` (not before now)."""
        env: Any = self
        assert time >= env.now, f"cannot schedule at {time}, before now ({env.now})"
        # SimPy's own schedule() takes a delay; the heap entry is (time, priority, insertion,
        # event).
        heappush(env._queue, (time, priority, next(env._eid), event))

    def call_at(self, time: float, priority: int, callback: Any) -> simpy.Event:
        """Call ``callback(event)`` at absolute ``time`` with ``priority`` (SimPy's URGENT or
        NORMAL)."""
        env: Any = self
        event = simpy.Event(env)
        # What Event.succeed() does, at a time and priority of our choosing.
        event._ok = True
        event._value = None
        event.callbacks.append(callback)
        self.schedule_at(event, priority, time)
        return event

    def pending(self) -> list[tuple[float, int, simpy.Event]]:
        """Every scheduled event as ``(time, priority, event)``, in the order they will be
        processed."""
        env: Any = self
        return [
            (time, priority, event)
            for time, priority, _, event in sorted(env._queue, key=lambda e: e[:3])
        ]


class Clock(_Exact, simpy.Environment):
    """Virtual time as fast as the work allows."""


class RealtimeClock(_Exact, simpy.rt.RealtimeEnvironment):
    """Virtual time paced against the wall clock (``factor`` wall seconds per unit)."""

    def sync(self) -> None:
        """Pace from now: the virtual time now is reached at the wall-clock time now. (SimPy's own
        ``sync`` keeps measuring from the initial virtual time, so each later ``run`` would wait
        for all the virtual time before it again.)"""
        self.env_start = self.now
        super().sync()

    def set_factor(self, factor: float) -> None:
        """Wall seconds per unit of virtual time from now on."""
        assert factor > 0
        self._factor = factor
        self.sync()


def make_clock(initial_time: float = 0.0, realtime: float | None = None) -> Clock | RealtimeClock:
    """A clock starting at ``initial_time``, realtime when ``realtime`` (the factor) is given."""
    if realtime:
        return RealtimeClock(initial_time=initial_time, factor=realtime, strict=False)
    return Clock(initial_time=initial_time)
