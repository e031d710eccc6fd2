"""Requesters: post tasks they can afford, at the market's price, and pay for completed work."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from runtime.population import Population
from runtime.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.world import World


class RequesterPopulation(Population):
    """Each live requester posts a task with probability ``post_rate`` per tick if it can pay."""

    role: ClassVar[str] = "requester"
    phase: ClassVar[int] = 0

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.posted = np.zeros(self.n, dtype=np.int64)

    def setup(self, world: World) -> None:
        """Mint each requester's initial credits at its home replica."""
        world.mint(self.ids, np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64), "initial")

    def step(self, world: World, tick: int) -> None:
        """Post this tick's tasks to the board."""
        rng = world.streams(f"population/{self.name}")
        u = rng.random(self.n)
        skill = rng.integers(0, world.market.prices.shape[0], size=self.n)
        units = rng.integers(1, self.cfg.task_units + 1, size=self.n)
        price = world.market.prices[skill] * units
        wants = self.alive & (u < self.cfg.post_rate)
        can_pay = world.rights_at_home(self.ids) >= price
        post = wants & can_pay
        idx = np.flatnonzero(post)
        task_ids = world.task_board.post(self.ids[idx], skill[idx], units[idx], price[idx])
        self.posted[idx] += 1
        world.emit_many("task_posted", self.name, self.ids[idx], task_ids, price[idx], skill[idx].astype(np.float64))
        world.count("tasks_posted", len(idx))
        world.count("tasks_unaffordable", int((wants & ~can_pay).sum()))

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and tasks posted."""
        return {"alive": self.alive, "posted": self.posted}
