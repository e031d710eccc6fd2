"""Requesters: post tasks they can afford, at the market's price, and pay for completed work.

With ``income`` above zero, each live requester earns that many credits a tick from outside the
economy (minted at its home replica, recorded as ``income`` and counted in ``minted_micro``): the
demand side's wages. Without it a requester only spends, and demand ends when its starting credits
are gone.

With ``forecasts_from`` naming a world-model population, a requester about to post first buys
the forecast of its task's price next tick (``forecast_fee`` credits, through the ledger) and,
when the forecast is lower than today's price by more than the fee, defers the task by one tick
and posts it then at whatever the price has become. Deferral savings (today's price minus the
price posted at, negative when the forecast was wrong) and the fees are in the role metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from economy.scatter import add_at
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import MAX_CREDITS, PopulationConfig, Probability

if TYPE_CHECKING:
    from agents.world_model import WorldModelPopulation
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World


class RequesterParams(RoleParams):
    """A requester's own keys."""

    post_rate: Probability = Field(0.2, description="Probability of posting a task per tick.")
    task_units: int = Field(
        1, ge=1, le=1_000_000, description="Most task units per task (uniform 1..task_units)."
    )
    forecasts_from: str | None = Field(
        None,
        max_length=64,
        description=(
            "A world_model population to buy next tick's price from before posting; a task is "
            "deferred a tick when the forecast says its price falls."
        ),
    )
    forecast_fee: float = Field(
        0.001, ge=0, le=MAX_CREDITS, description="Credits paid per forecast bought."
    )
    income: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description=(
            "Credits each live requester earns per tick from outside the economy (minted, "
            "recorded as income); 0: it only spends its starting credits."
        ),
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"forecasts_from"})


class RequesterPopulation(Population):
    """Each live requester posts a task with probability ``post_rate`` per tick if it can pay."""

    role: ClassVar[str] = "requester"
    Params: ClassVar[type[RoleParams]] = RequesterParams
    phase: ClassVar[int] = 0
    money_arrays: ClassVar[dict[str, str]] = {"deferred_price": "micro"}

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.posted = np.zeros(self.n, dtype=np.int64)
        self.seller: WorldModelPopulation | None = None
        # Tasks deferred to next tick: requester index, skill, units, the price they would have
        # paid.
        self.deferred = {k: np.empty(0, np.int64) for k in ("who", "skill", "units", "price")}
        self.stats = {
            "forecasts_bought": 0,
            "forecast_fees_micro": 0,
            "deferred": 0,
            "deferral_savings_micro": 0,
        }

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``forecasts_from`` must name a world_model population."""
        assert isinstance(params, RequesterParams)
        if params.forecasts_from is None:
            return []
        seller = next((q for q in scenario.population if q.name == params.forecasts_from), None)
        if seller is None or seller.role != "world_model":
            return [
                f"{label}: population[{index}].forecasts_from: names no world_model population; "
                f"got {params.forecasts_from!r}"
            ]
        return []

    @classmethod
    def credits_minted_at_most(cls, cfg: PopulationConfig, scenario: Scenario) -> int:
        """Starting credits and every tick's income."""
        params = cls.Params.model_validate(cfg.params)
        assert isinstance(params, RequesterParams)
        return cfg.count * cfg.initial_credits + int(
            np.ceil(cfg.count * scenario.world.ticks * params.income)
        )

    def setup(self, world: World) -> None:
        """Mint each requester's initial credits at its home replica."""
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64),
            "initial",
        )
        if self.params.forecasts_from is not None:
            self.seller = next(p for p in world.populations if p.name == self.params.forecasts_from)  # type: ignore[assignment]

    def step(self, world: World, tick: int) -> None:
        """Earn this tick's income, then post this tick's tasks to the board."""
        income = int(round(self.params.income * world.MICRO))
        if income:
            live = self.ids[self.alive]
            world.mint(live, np.full(live.size, income, dtype=np.int64), "income")
        rng = world.streams(f"population/{self.name}")
        u = rng.random(self.n)
        skill = rng.integers(0, world.market.prices.shape[0], size=self.n)
        units = rng.integers(1, self.params.task_units + 1, size=self.n)
        price = world.market.prices[skill] * units
        wants = self.alive & (u < self.params.post_rate)
        # Last tick's deferred tasks are posted now, at today's price, if still affordable.
        d = self.deferred
        self.deferred = {k: np.empty(0, np.int64) for k in d}
        due = d["who"][self.alive[d["who"]]]
        # Rights are read only for those who post or have a task due, a quarter of the requesters at
        # the default post rate; the rest get 0, which no result below uses.
        asking = wants.copy()
        asking[due] = True
        asks = np.flatnonzero(asking)
        rights = np.zeros(self.n, dtype=np.int64)
        rights[asks] = world.rights_at_home(self.ids[asks])
        can_pay = rights >= price
        post = wants & can_pay
        world.count("tasks_unaffordable", int((wants & ~can_pay).sum()))
        world.count("tasks_deferred", 0)
        if due.size:
            sel = self.alive[d["who"]]
            d_skill, d_units, d_then = d["skill"][sel], d["units"][sel], d["price"][sel]
            d_price = world.market.prices[d_skill] * d_units
            ok = rights[due] >= d_price + np.where(post[due], price[due], 0)
            self.stats["deferral_savings_micro"] += int((d_then[ok] - d_price[ok]).sum())
            self._post(world, due[ok], d_skill[ok], d_units[ok], d_price[ok])
        if self.seller is not None and post.any():
            post = self._consult(world, post, skill, units, price, rights)
        idx = np.flatnonzero(post)
        self._post(world, idx, skill[idx], units[idx], price[idx])

    def _consult(
        self,
        world: World,
        post: npt.NDArray[np.bool_],
        skill: npt.NDArray[np.int64],
        units: npt.NDArray[np.int64],
        price: npt.NDArray[np.int64],
        rights: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """Buy forecasts for the tasks about to be posted; defer those whose price should fall.
        Return who posts now."""
        assert self.seller is not None
        fee = int(round(self.params.forecast_fee * world.MICRO))
        buyers = np.flatnonzero(post & (rights >= price + fee))
        paid, ahead = self.seller.sell(world, self.ids[buyers], skill[buyers], fee)
        self.stats["forecasts_bought"] += int(paid.sum())
        self.stats["forecast_fees_micro"] += int(paid.sum()) * fee
        expected = ahead * units[buyers]
        wait = buyers[paid & (expected < price[buyers] - fee)]
        if wait.size:
            self.deferred = {
                "who": wait,
                "skill": skill[wait],
                "units": units[wait],
                "price": price[wait],
            }
            self.stats["deferred"] += int(wait.size)
            world.count("tasks_deferred", int(wait.size))
            post = post.copy()
            post[wait] = False
        return post

    def _post(
        self,
        world: World,
        idx: npt.NDArray[np.int64],
        skill: npt.NDArray[np.int64],
        units: npt.NDArray[np.int64],
        price: npt.NDArray[np.int64],
    ) -> None:
        task_ids = world.task_board.post(self.ids[idx], skill, units, price)
        add_at(self.posted, idx, 1)
        world.emit_many(
            "task_posted", self.name, self.ids[idx], task_ids, price, skill.astype(np.float64)
        )
        world.count("tasks_posted", len(idx))

    def role_metrics(self) -> dict[str, float | int | None]:
        """Forecasts bought, their fees, tasks deferred and what deferring saved (micro-credits)."""
        if self.seller is None:
            return {}
        s = self.stats
        return {**s, "net_value_micro": s["deferral_savings_micro"] - s["forecast_fees_micro"]}

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, tasks posted and tasks deferred."""
        return {
            "alive": self.alive,
            "posted": self.posted,
            **{f"deferred_{k}": v for k, v in self.deferred.items()},
        }
