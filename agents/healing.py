"""Healers: watch a worker population's telemetry, detect degraded workers, quarantine and restart them.

Core ``learned``: a streaming detector per watched worker, run as one batched numba kernel --
exponentially weighted counts of the worker's tasks and failures, now (fast) and usually (slow),
and an alarm when the binomial z-score of the recent failures against the usual rate passes
``z_threshold`` (lowered by the interaction graph's tension when coordination
is on: a network near a split is watched more closely), and action after ``confirm_ticks``
consecutive alarms: the worker is quarantined (no work is routed to it) and restarted, which takes
``restart_ticks`` and clears a degradation. Core ``baseline``: no healing -- faults run their course.
Scores come from the world's ground truth (:mod:`runtime.health`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from numba import njit

from runtime.population import Population
from runtime.scenario import PopulationConfig

if TYPE_CHECKING:
    from agents.worker import WorkerPopulation
    from runtime.world import World


@njit(cache=True)
def ewma_alarm(tasks, failed, fast_t, fast_f, slow_t, slow_f, streak, alpha, z_threshold, min_tasks):
    """One tick of the detector over every watched worker.

    Per worker, exponentially weighted counts of tasks and failures at two speeds: fast (weight
    ``alpha`` on the newest tick) for what the worker does now, slow (``alpha / 10``) for what it
    usually does, shrunk toward the population's rate by a prior of ten tasks. The z-score is the
    binomial ``(F − T·p) / sqrt(T·p·(1 − p))`` of the fast counts against the slow rate ``p``;
    past ``z_threshold`` with ``T ≥ min_tasks`` (and ten tasks of history) it extends the worker's
    streak of alarms.
    """
    n = tasks.shape[0]
    slow = alpha / 10.0
    total_t = 0.0
    total_f = 0.0
    for i in range(n):
        total_t += slow_t[i]
        total_f += slow_f[i]
    pop = total_f / total_t if total_t > 0 else 0.1
    for i in range(n):
        fast_t[i] = (1.0 - alpha) * fast_t[i] + tasks[i]
        fast_f[i] = (1.0 - alpha) * fast_f[i] + failed[i]
        t = fast_t[i]
        p = (slow_f[i] + 10.0 * pop) / (slow_t[i] + 10.0)
        p = min(max(p, 0.02), 0.98)
        known = slow_t[i] >= 10.0  # no verdict before a worker has a usual rate of its own
        if known and t >= min_tasks and (fast_f[i] - t * p) / np.sqrt(t * p * (1.0 - p)) > z_threshold:
            streak[i] += 1
            continue  # an alarming tick does not teach the worker's usual rate
        streak[i] = 0
        slow_t[i] = (1.0 - slow) * slow_t[i] + tasks[i]
        slow_f[i] = (1.0 - slow) * slow_f[i] + failed[i]


class HealerPopulation(Population):
    """Healers sharing one detector over their watched population."""

    role: ClassVar[str] = "healer"
    phase: ClassVar[int] = 3  # after workers, so this tick's telemetry is complete

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.target: WorkerPopulation | None = None
        self.fast = np.zeros((2, 0))  # tasks, failures
        self.slow = np.zeros((2, 0))
        self.streak = np.zeros(0, dtype=np.int64)
        self.back_at = np.zeros(0, dtype=np.int64)  # tick a restarting worker returns, -1 if none

    def setup(self, world: World) -> None:
        """Find the watched population and size the detector state to it."""
        self.target = next(p for p in world.populations if p.name == self.cfg.watches)  # type: ignore[assignment]
        n = self.target.n
        self.fast = np.zeros((2, n))
        self.slow = np.zeros((2, n))
        self.streak = np.zeros(n, dtype=np.int64)
        self.back_at = np.full(n, -1, dtype=np.int64)

    def step(self, world: World, tick: int) -> None:
        """Bring restarted workers back; with the learned core, detect and act."""
        assert self.target is not None
        target = self.target
        world.count("healer_actions", 0)
        back = np.flatnonzero((self.back_at >= 0) & (self.back_at <= tick))
        if back.size:
            target.quarantined[back] = False
            self.back_at[back] = -1
            world.emit_many("restarted", self.name, target.ids[back], np.full(back.size, -1), np.zeros(back.size, np.int64),
                            np.zeros(back.size))
        if self.core == "baseline" or not self.alive.any():
            return
        tension = world.coordination.tension if world.coordination is not None else 0.0
        threshold = self.cfg.z_threshold * (1.0 - 0.5 * tension)
        ewma_alarm(target.tel_tasks, target.tel_failed, self.fast[0], self.fast[1], self.slow[0], self.slow[1],
                   self.streak, self.cfg.ewma_alpha, threshold, 3.0)
        act = np.flatnonzero((self.streak >= self.cfg.confirm_ticks) & ~target.quarantined & target.alive)
        if act.size == 0:
            return
        target.quarantined[act] = True
        self.back_at[act] = tick + self.cfg.restart_ticks
        self.streak[act] = 0
        self.fast[:, act] = 0.0  # a restarted worker starts a fresh recent record
        truth = np.zeros(act.size)
        for j, i in enumerate(act.tolist()):
            agent = int(target.ids[i])
            if world.health.detect(agent, tick):
                truth[j] = 1.0
                world.health.end(agent, tick + self.cfg.restart_ticks, "healer restart")
            target.degraded[i] = 0.0  # the restart clears any degradation
        world.emit_many("quarantined", self.name, target.ids[act], np.full(act.size, -1), np.zeros(act.size, np.int64), truth)
        world.count("healer_actions", int(act.size))

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and the detector state."""
        return {"alive": self.alive, "fast": self.fast, "slow": self.slow, "streak": self.streak, "back_at": self.back_at}
