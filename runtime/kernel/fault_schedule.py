"""The fault schedule: a scenario's ``[[fault]]`` entries as actions at the ticks they fall on.

Each fault starts at its ``at`` tick and, with a ``duration``, ends that many ticks later. The
world applies the actions due at the start of each tick, before any population steps. Crashes and
degradations are recorded as fault episodes in the world's
:class:`runtime.kernel.health.HealthRecord`
(the ground truth healers are scored against).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from runtime.kernel.scenario import FaultConfig

if TYPE_CHECKING:
    from runtime.kernel.population import Population
    from runtime.kernel.world import World

FaultMode = Literal["do", "undo"]
FaultAction = tuple[FaultMode, int, FaultConfig]
"""(``"do"`` at the start or ``"undo"`` at the end, the fault's index in the scenario, the
fault)."""

# What ending a fault does, for the kinds whose end is another kind's start.
ENDED_BY: dict[str, str] = {
    "crash": "restart",
    "restart": "crash",
    "partition": "heal",
    "heal": "heal",
    "loss_burst": "loss_end",
}


def expand(faults: list[FaultConfig]) -> dict[int, list[FaultAction]]:
    """The actions of ``faults`` by the tick they fall on, in the scenario's order."""
    actions: dict[int, list[FaultAction]] = {}
    for index, fault in enumerate(faults):
        actions.setdefault(fault.at, []).append(("do", index, fault))
        if fault.duration is not None:
            actions.setdefault(fault.at + fault.duration, []).append(("undo", index, fault))
    return actions


class FaultSchedule:
    """A world's fault actions by tick, and the state of the faults under way."""

    def __init__(self, world: World, faults: list[FaultConfig]) -> None:
        self.world = world
        self.actions = expand(faults)
        # Per degrade fault under way (by index): the population rows it degraded.
        self.degraded_sets: dict[int, npt.NDArray[np.int64]] = {}

    def reschedule(self, faults: list[FaultConfig]) -> None:
        """Take up a changed schedule (a fork); faults under way keep their state."""
        self.actions = expand(faults)

    def apply_due(self, tick: int) -> None:
        """Apply every action that falls on ``tick``, in the scenario's order."""
        assert tick >= 0, tick
        for action in self.actions.get(tick, []):
            self.apply(action)

    def _population(self, fault: FaultConfig) -> Population:
        return next(p for p in self.world.populations if p.name == fault.population)

    def apply(self, action: FaultAction) -> None:
        """Start or end one fault."""
        mode, index, fault = action
        kind: str = fault.kind
        if kind == "byzantine":  # traffic the ledger must refuse, made elsewhere
            from runtime.faults.byzantine import inject

            inject(self.world, index, fault)
            return
        if kind == "degrade":
            self.degrade(index, fault, mode == "do")
            return
        if mode == "undo":
            kind = ENDED_BY[kind]
        world = self.world
        if kind in ("crash", "restart"):
            self._crash_or_restart(fault, kind == "crash")
        elif kind == "partition":
            world.network.partition(fault.groups)
            world.emit("fault", "network", detail=f"partition {fault.groups}")
        elif kind == "heal":
            world.network.heal()
            world.emit("fault", "network", detail="heal")
        elif kind == "loss_burst":
            world.bus.loss = fault.loss
            world.emit("fault", "bus", value=fault.loss, detail=f"loss burst {fault.loss}")
        elif kind == "loss_end":
            world.bus.loss = world.scenario.bus.loss
            world.emit("fault", "bus", value=world.bus.loss, detail="loss burst ends")

    def _crash_or_restart(self, fault: FaultConfig, crash: bool) -> None:
        world = self.world
        population = self._population(fault)
        n_hit = math.ceil(fault.fraction * population.n)
        assert 0 <= n_hit <= population.n, (n_hit, population.n)
        # A crash is a fault episode per agent it takes down, until a restart (scheduled or a
        # healer's).
        for row in range(n_hit):
            if crash and population.alive[row]:
                world.health.start(int(population.ids[row]), world.tick)
            elif not crash:
                world.health.end(int(population.ids[row]), world.tick, "fault ended")
        population.alive[:n_hit] = not crash
        kind = "crash" if crash else "restart"
        detail = f"{kind} {n_hit} of {population.n}"
        world.emit("fault", population.name, amount=n_hit, detail=detail)

    def degrade(self, index: int, fault: FaultConfig, start: bool) -> None:
        """Degrade a seeded random subset of a population (its tasks fail with ``severity``), or
        end that degradation."""
        world = self.world
        population = self._population(fault)
        n_hit = math.ceil(fault.fraction * population.n)
        if start:
            stream = world.streams(f"faults/{index}")
            chosen = np.sort(stream.choice(population.n, size=n_hit, replace=False))
            self.degraded_sets[index] = chosen
            population.degraded[chosen] = fault.severity
            for row in chosen.tolist():
                world.health.start(int(population.ids[row]), world.tick)
            detail = f"degrade {n_hit} of {population.n}"
            world.emit("fault", population.name, amount=n_hit, value=fault.severity, detail=detail)
            return
        chosen = self.degraded_sets.pop(index)
        still = [row for row in chosen.tolist() if world.health.degraded(int(population.ids[row]))]
        population.degraded[still] = 0.0
        for row in still:
            world.health.end(int(population.ids[row]), world.tick, "fault ended")
        detail = f"degrade ends for {len(still)}"
        world.emit("fault", population.name, amount=len(still), detail=detail)
