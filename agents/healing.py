"""Healers: watch a worker population's telemetry, detect failing, slow and silent workers, restart
them.

Telemetry per watched worker and tick: tasks taken and failed, mean task latency, and a heartbeat
(lost by the network like any message). Core ``learned`` runs three streaming detectors, each one
batched numba kernel or array expression over the whole population:

* failures -- exponentially weighted counts of tasks and failures, now (fast) and usually (slow);
  an alarm when the binomial z-score of the recent failures against the usual rate passes
  ``z_threshold``;
* latency -- an EWMA of the worker's latency against its usual mean and deviation, same threshold;
* heartbeats -- a worker silent (no heartbeat, no tasks) for ``confirm_ticks`` ticks in a row is
  judged down once the chance that network loss alone silenced it that long is under 0.1%; the loss
  rate is estimated each tick from the heartbeats missing among workers whose tasks came in.

The threshold is lowered by the interaction graph's tension when coordination is on (a network
near a split is watched more closely). After ``confirm_ticks`` consecutive alarms, or a judged
crash, the worker is quarantined (no work is routed to it, which re-routes its share to others)
and restarted, which takes ``restart_ticks``, clears a degradation and brings a crashed worker
back. Core ``baseline``: no healing -- faults run their course. Scores come from the world's ground
truth (:mod:`runtime.kernel.health`), which holds degradations and crashes as episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from numba import njit
from pydantic import Field

from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import MAX_TICKS, PopulationConfig

if TYPE_CHECKING:
    from agents.worker import WorkerPopulation
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World


@njit(cache=True)
def ewma_alarm(
    tasks, failed, fast_t, fast_f, slow_t, slow_f, streak, alpha, z_threshold, min_tasks
):
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
        if (
            known
            and t >= min_tasks
            and (fast_f[i] - t * p) / np.sqrt(t * p * (1.0 - p)) > z_threshold
        ):
            streak[i] += 1
            continue  # an alarming tick does not teach the worker's usual rate
        streak[i] = 0
        slow_t[i] = (1.0 - slow) * slow_t[i] + tasks[i]
        slow_f[i] = (1.0 - slow) * slow_f[i] + failed[i]


@njit(cache=True)
def latency_alarm(latency, tasks, fast, slow_mean, slow_var, seen, alpha, z_threshold, alarm):
    """One tick of the latency detector over every watched worker; sets ``alarm[i]``.

    Per worker that did tasks this tick: an EWMA of its mean task latency now (``alpha``) and, at a
    tenth of the speed, its usual mean and variance; an alarm when the recent latency sits more than
    ``z_threshold`` usual deviations above the usual mean (after five ticks of history). A tick
    without tasks leaves the worker's state alone; a tick whose own latency is that far out does
    not teach the usual level.
    """
    slow = alpha / 10.0
    for i in range(latency.shape[0]):
        alarm[i] = False
        if tasks[i] == 0:
            continue
        x = latency[i]
        if seen[i] == 0:
            fast[i] = x
            slow_mean[i] = x
            slow_var[i] = (0.25 * x) ** 2
            seen[i] = 1
            continue
        fast[i] = (1.0 - alpha) * fast[i] + alpha * x
        sd = np.sqrt(slow_var[i]) + 1e-9
        if seen[i] >= 5 and (fast[i] - slow_mean[i]) / sd > z_threshold:
            alarm[i] = True
        if seen[i] >= 5 and (x - slow_mean[i]) / sd > z_threshold:
            continue  # an outlying tick does not teach the usual level
        seen[i] += 1
        d = x - slow_mean[i]
        slow_mean[i] += slow * d
        slow_var[i] = (1.0 - slow) * (slow_var[i] + slow * d * d)


class HealerParams(RoleParams):
    """A healer's own keys."""

    watches: str | None = Field(
        None, max_length=64, description="The worker population it watches."
    )
    z_threshold: float = Field(3.0, gt=0, le=1000, description="EWMA z-score that raises an alarm.")
    ewma_alpha: float = Field(
        0.3,
        gt=0,
        le=1,
        description=(
            "Weight of the newest tick in the recent (fast) EWMA; the usual rate uses a tenth of "
            "it."
        ),
    )
    confirm_ticks: int = Field(
        2, ge=1, le=MAX_TICKS, description="Consecutive alarms before it acts."
    )
    restart_ticks: int = Field(
        2, ge=1, le=MAX_TICKS, description="Ticks a quarantined agent is down while it restarts."
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"watches"})


class HealerPopulation(Population):
    """Healers sharing one detector over their watched population."""

    role: ClassVar[str] = "healer"
    Params: ClassVar[type[RoleParams]] = HealerParams
    has_core: ClassVar[bool] = True
    phase: ClassVar[int] = 3  # after workers, so this tick's telemetry is complete

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.target: WorkerPopulation | None = None
        self.fast = np.zeros((2, 0))  # tasks, failures
        self.slow = np.zeros((2, 0))
        self.streak = np.zeros(0, dtype=np.int64)
        self.back_at = np.zeros(0, dtype=np.int64)  # tick a restarting worker returns, -1 if none
        self.lat = np.zeros((3, 0))  # latency: recent, usual mean, usual variance
        self.lat_seen = np.zeros(0, dtype=np.int64)
        self.missed = np.zeros(0, dtype=np.int64)  # consecutive missed heartbeats
        self.p_loss = np.ones(0)  # chance that network loss alone explains the missed heartbeats

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``watches`` must name a worker population."""
        assert isinstance(params, HealerParams)
        problems = []
        watched = next((q for q in scenario.population if q.name == params.watches), None)
        if watched is None or watched.role != "worker":
            problems.append(
                f"{label}: population[{index}].watches: a {cls.role} watches a worker population; "
                f"got {params.watches!r}"
            )
        return problems

    def setup(self, world: World) -> None:
        """Find the watched population and size the detector state to it."""
        self.target = next(p for p in world.populations if p.name == self.params.watches)  # type: ignore[assignment]
        n = self.target.n
        self.fast = np.zeros((2, n))
        self.slow = np.zeros((2, n))
        self.streak = np.zeros(n, dtype=np.int64)
        self.back_at = np.full(n, -1, dtype=np.int64)
        self.lat = np.zeros((3, n))
        self.lat_seen = np.zeros(n, dtype=np.int64)
        self.missed = np.zeros(n, dtype=np.int64)
        self.p_loss = np.ones(n)
        if self.core not in ("baseline", "learned"):
            self.load_core(
                world.base / self.core
            )  # start from the saved usual levels of the same workers
            self.core = "learned"

    def step(self, world: World, tick: int) -> None:
        """Bring restarted workers back; with the learned core, detect and act."""
        assert self.target is not None
        target = self.target
        world.count("healer_actions", 0)
        back = np.flatnonzero((self.back_at >= 0) & (self.back_at <= tick))
        if back.size:
            target.quarantined[back] = False
            target.alive[back] = True  # a crashed worker the healer restarted is up again
            self.back_at[back] = -1
            world.emit_many(
                "restarted",
                self.name,
                target.ids[back],
                np.full(back.size, -1),
                np.zeros(back.size, np.int64),
                np.zeros(back.size),
            )
        if self.core == "baseline" or not self.alive.any():
            return
        tension = world.coordination.tension if world.coordination is not None else 0.0
        threshold = self.params.z_threshold * (1.0 - 0.5 * tension)
        before = self.streak.copy()
        ewma_alarm(
            target.tel_tasks,
            target.tel_failed,
            self.fast[0],
            self.fast[1],
            self.slow[0],
            self.slow[1],
            self.streak,
            self.params.ewma_alpha,
            threshold,
            3.0,
        )
        slow_alarm = np.zeros(target.n, dtype=np.bool_)
        mean_latency = target.tel_latency / np.maximum(target.tel_tasks, 1)
        latency_alarm(
            mean_latency,
            target.tel_tasks,
            self.lat[0],
            self.lat[1],
            self.lat[2],
            self.lat_seen,
            self.params.ewma_alpha,
            threshold,
            slow_alarm,
        )
        self.streak[:] = np.where((self.streak > before) | slow_alarm, before + 1, 0)
        # Heartbeats: a worker that is not restarting and is silent for confirm_ticks in a row is
        # down.
        expected = self.back_at < 0
        # A worker whose tasks came in this tick is up, whatever happened to its heartbeat; the
        # share
        # of those workers' heartbeats that went missing estimates the network's loss this tick. A
        # silent worker is judged down once the chance that loss alone silenced it so long is <
        # 0.1%.
        busy = target.tel_tasks > 0
        loss = (int((busy & ~target.heartbeat).sum()) + 1) / (int(busy.sum()) + 2)
        silent = expected & ~target.heartbeat & ~busy
        self.missed = np.where(silent, self.missed + 1, 0)
        self.p_loss = np.where(silent, self.p_loss * loss, 1.0)
        down = (self.missed >= self.params.confirm_ticks) & (self.p_loss < 1e-3)
        act = np.flatnonzero(
            ((self.streak >= self.params.confirm_ticks) & ~target.quarantined & target.alive) | down
        )
        if act.size == 0:
            return
        self.missed[act] = 0
        self.p_loss[act] = 1.0
        target.quarantined[act] = True
        self.back_at[act] = tick + self.params.restart_ticks
        self.streak[act] = 0
        self.fast[:, act] = 0.0  # a restarted worker starts a fresh recent record
        truth = np.zeros(act.size)
        for j, i in enumerate(act.tolist()):
            agent = int(target.ids[i])
            if world.health.detect(agent, tick):
                truth[j] = 1.0
                world.health.end(agent, tick + self.params.restart_ticks, "healer restart")
            target.degraded[i] = 0.0  # the restart clears any degradation
        world.emit_many(
            "quarantined",
            self.name,
            target.ids[act],
            np.full(act.size, -1),
            np.zeros(act.size, np.int64),
            truth,
        )
        world.count("healer_actions", int(act.size))

    def core_state(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """What the detectors learned: each worker's usual failure counts and latency (learned
        core)."""
        if self.core == "baseline":
            return None
        return {"slow": self.slow, "latency_usual": self.lat[1:], "latency_seen": self.lat_seen}

    def set_core_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Start from saved usual levels."""
        self.slow = arrays["slow"].copy()
        self.lat[1:] = arrays["latency_usual"]
        self.lat_seen = arrays["latency_seen"].copy()

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and the detector state."""
        return {
            "alive": self.alive,
            "fast": self.fast,
            "slow": self.slow,
            "streak": self.streak,
            "back_at": self.back_at,
            "latency": self.lat,
            "latency_seen": self.lat_seen,
            "missed": self.missed,
            "p_loss": self.p_loss,
        }
