"""Ground truth of faults and the score of whoever tries to detect and repair them.

An *episode* is one agent being degraded, from the tick its fault starts to the tick it is repaired
(by a healer's restart, or by the fault ending). A *detection* is a healer acting on an agent; it is
true when the agent was degraded at the time. From these: precision (true detections / all),
recall (episodes detected / all episodes), mean time to repair over episodes that ended, and the
credits of the tasks degraded agents failed (work lost to faults).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Episode:
    """One agent degraded from ``start`` until ``end`` (None while it lasts)."""

    agent: int
    start: int
    end: int | None = None
    repaired_by: str = ""
    detected: bool = False


@dataclass
class HealthRecord:
    """All episodes and detections of a run, and the credits lost to faults (micro-credits)."""

    episodes: list[Episode] = field(default_factory=list)
    detections: list[tuple[int, int, bool]] = field(default_factory=list)  # (tick, agent, true?)
    credits_lost: int = 0
    _open: dict[int, Episode] = field(default_factory=dict)

    def start(self, agent: int, tick: int) -> None:
        """``agent`` becomes degraded at ``tick`` (no-op if it already is)."""
        if agent not in self._open:
            ep = Episode(agent, tick)
            self.episodes.append(ep)
            self._open[agent] = ep

    def end(self, agent: int, tick: int, by: str) -> None:
        """``agent`` is healthy again from ``tick`` (no-op if it was not degraded)."""
        ep = self._open.pop(agent, None)
        if ep is not None:
            ep.end, ep.repaired_by = tick, by

    def degraded(self, agent: int) -> bool:
        """Whether ``agent`` is degraded now."""
        return agent in self._open

    def detect(self, agent: int, tick: int) -> bool:
        """A healer acted on ``agent`` at ``tick``; return whether it was truly degraded."""
        true = agent in self._open
        if true:
            self._open[agent].detected = True
        self.detections.append((tick, agent, true))
        return true

    def summary(self) -> dict[str, float | int | None]:
        """Precision, recall, mean time to repair (ticks), credits lost (micro-credits), counts."""
        tp = sum(1 for _, _, t in self.detections if t)
        ended = [e.end - e.start for e in self.episodes if e.end is not None]
        return {
            "episodes": len(self.episodes),
            "detections": len(self.detections),
            "precision": tp / len(self.detections) if self.detections else None,
            "recall": sum(e.detected for e in self.episodes) / len(self.episodes)
            if self.episodes
            else None,
            "mean_time_to_repair": sum(ended) / len(ended) if ended else None,
            "unrepaired_at_end": sum(1 for e in self.episodes if e.end is None),
            "credits_lost_micro": self.credits_lost,
        }
