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

Requesters offer a control form (:meth:`RequesterPopulation.control_form`): a learner decides, per
seat and tick, how likely the seat is to post and how large its task is; its class docstring gives
the spaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field

from economy.scatter import add_at
from runtime.kernel.control import (
    Control,
    ControlForm,
    inputs_problem,
    ratio_feature,
    save_recording,
    share_feature,
    share_left,
)
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import MAX_CREDITS, PopulationConfig, Probability, ScenarioError

if TYPE_CHECKING:
    from agents.worker import WorkerPopulation
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
    inputs: str | None = Field(
        None,
        max_length=1024,
        description=(
            "An inputs file of a recorded episode (its cores/<population>.npz), relative to the "
            "scenario file: its outside actions drive the same seats again."
        ),
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"forecasts_from", "inputs"})


class RequesterPopulation(Population):
    """Each live requester posts a task with probability ``post_rate`` per tick if it can pay.

    ## Action Space

    ``Box(-1, 1, (2,), float32)`` per seat (:meth:`control_form`):

    | Num | Action | Mapping |
    |-----|--------|---------|
    | 0 | post | the seat posts this tick when the tick's uniform draw is below ``(a + 1)/2`` |
    | 1 | size | task units ``1 + round((a + 1)/2 · (task_units − 1))`` (no effect at 1) |

    The task's skill is drawn as for every requester, its price is the market's, and the seat
    posts only what it can pay. A row of NaN: the seat posts as the scripted rule says.

    ## Observation Space

    ``Box(-1, 1, (4,), float32)`` per seat:

    | Num | Observation | Feature |
    |-----|-------------|---------|
    | 0 | credits over starting credits, ``r`` | ``(r − 1)/(r + 1)``, ``r`` capped at 10 |
    | 1 | mean task-unit price over the base price, ``p`` | ``(p − 1)/(p + 1)`` |
    | 2 | tasks waiting on the board per live requester, ``b`` | ``(b − 1)/(b + 1)`` |
    | 3 | share of the run left | ``2·share − 1`` |

    ## Rewards

    ``"wealth"`` (the change of balance plus stake, credits) and ``"delivered"``: task units
    that workers did and were paid for on the seat's tasks this tick.
    """

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
        self.control: Control | None = None  # outside control of some seats (control_form)

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``forecasts_from`` must name a world_model population; ``inputs`` a requesters' inputs
        file."""
        assert isinstance(params, RequesterParams)
        if params.inputs is not None and (
            problem := inputs_problem(base / params.inputs, cls.role)
        ):
            return [f"{label}: population[{index}].inputs: {problem}"]
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
        if self.params.inputs is not None:
            # A recorded episode: its outside actions drive their seats again.
            try:
                self.control = Control.replaying(world.base / self.params.inputs, self)
            except ValueError as exc:
                raise ScenarioError([f"population {self.name!r}: inputs: {exc}"]) from None

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
        rate: float | npt.NDArray[np.float64] = self.params.post_rate
        if self.control is not None:
            rate, units = self._controlled(tick, self.params.post_rate, units)
        price = world.market.prices[skill] * units
        wants = self.alive & (u < rate)
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

    def _controlled(
        self, tick: int, rate: float, units: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Each requester's posting probability and task units this tick, the driven seats' from
        their actions (the others', and NaN rows', as drawn)."""
        assert self.control is not None
        actions = self.control.take(tick)
        acting = self.control.acting(actions)
        seats = self.control.seats[acting]
        rates = np.full(self.n, rate)
        rates[seats] = (actions[acting, 0] + 1.0) / 2.0
        units = units.copy()
        size = np.rint((actions[acting, 1] + 1.0) / 2.0 * (self.params.task_units - 1))
        units[seats] = 1 + size.astype(np.int64)
        assert (units >= 1).all() and (units <= self.params.task_units).all()
        return rates, units

    # ------------------------------------------------------------------ outside control
    def control_form(self) -> ControlForm:
        """One requester driven from outside: whether it posts and how large (the class
        docstring)."""
        from gymnasium import spaces

        return ControlForm(
            observation_space=spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
            action_space=spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            action_meaning="two actions in [-1, 1]: post when this tick's uniform draw < "
            "(a0 + 1)/2; task units 1 + round((a1 + 1)/2·(task_units − 1))",
            rewards={"delivered": delivered_units},
        )

    def attach_control(self, world: World, seats: npt.NDArray[np.int64]) -> Control:
        """Drive ``seats`` from outside from the next tick on (before tick 0)."""
        assert self.control is None, "one control per population"
        self.control = Control.live(seats, 2)
        return self.control

    def observe(self, world: World, seats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each seat's observation for the coming tick, ``float32[len(seats), 4]`` (the class
        docstring); reads the world, draws nothing."""
        start = max(1, self.cfg.initial_credits * world.MICRO)
        credits = world.rights_at_home(self.ids[seats]) / start
        level = float(world.market.prices.mean()) / max(1, world.rates.task_unit)
        waiting = len(world.task_board) / max(1, int(self.alive.sum()))
        row = [ratio_feature(level), ratio_feature(waiting), share_feature(share_left(world))]
        obs = np.column_stack([ratio_feature(credits), np.tile(row, (seats.size, 1))])
        assert obs.shape == (seats.size, 4)
        return obs.astype(np.float32)

    def save_core(self, folder: Path) -> Path | None:
        """With outside control, its actions so far (an inputs file the ``inputs`` key replays);
        nothing otherwise: requesters have no learned core."""
        return None if self.control is None else save_recording(folder, self, self.control)

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


def delivered_units(
    world: World,
    pop: Population,
    seats: npt.NDArray[np.int64],
    before: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The ``"delivered"`` reward: task units that workers did and were paid for on each seat's
    tasks this tick, ``float64[len(seats)]``."""
    accounts = pop.ids[seats]
    order = np.argsort(accounts, kind="stable")
    ranked = accounts[order]
    out = np.zeros(seats.size)
    for other in world.populations:
        if other.role != "worker":
            continue
        results = cast("WorkerPopulation", other).results
        requester, units = results["requester"], results["units"]
        at = np.minimum(np.searchsorted(ranked, requester), max(0, ranked.size - 1))
        hit = ranked[at] == requester if ranked.size else np.zeros(requester.size, np.bool_)
        add_at(out, order[at[hit]], units[hit].astype(np.float64))
    assert out.shape == seats.shape and (out >= 0).all()
    return out
