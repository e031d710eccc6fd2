"""Zero-intelligence traders in a double auction (Gode & Sunder 1993).

Gode and Sunder (1993) replaced the human traders of a classroom double auction by programs that
bid at random. Traders constrained only never to trade at a loss (ZI-C) extracted nearly all the
surplus the market could give, 97–100% in each of the paper's five markets, as much as people
did; the same random traders without the constraint (ZI-U) extracted far less (about 49–90%), as
traders whose units should not trade bought and sold anyway. The market's rules, not the traders'
intelligence, did most of the allocating.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agora import (
    Control,
    ControlForm,
    OpKind,
    Population,
    RoleParams,
    ScenarioError,
    inputs_problem,
    save_recording,
)

if TYPE_CHECKING:
    from agora import PopulationConfig, Scenario, WorldAPI

# The market of the scenario zi_constrained.toml, of the paper's form (six buyers and six
# sellers, a few units each, prices 1..200): demand and supply cross between 100 and 105 with
# twelve units traded; the other six units on each side are extra-marginal.
BUYER_VALUES = (
    (190, 150, 110),
    (180, 140, 100),
    (170, 130, 90),
    (160, 120, 80),
    (155, 115, 70),
    (145, 105, 60),
)
SELLER_COSTS = (
    (20, 60, 100),
    (30, 70, 110),
    (40, 80, 120),
    (50, 90, 130),
    (55, 95, 140),
    (65, 105, 150),
)


class TraderParams(RoleParams):
    """A zero-intelligence market's own keys."""

    constrained: bool = Field(
        True,
        description="ZI-C: a buyer bids at most its unit's value, "
        "a seller asks at least its unit's cost. False: ZI-U, every bid "
        "and ask uniform on [price_min, price_max].",
    )
    values: list[list[int]] = Field(
        [list(v) for v in BUYER_VALUES],
        min_length=1,
        max_length=1000,
        description="Each buyer's redemption values, in the order its "
        "units trade (one list per buyer), credits.",
    )
    costs: list[list[int]] = Field(
        [list(c) for c in SELLER_COSTS],
        min_length=1,
        max_length=1000,
        description="Each seller's unit costs, in the order its units "
        "trade (one list per seller), credits.",
    )
    price_min: int = Field(1, ge=1, le=1_000_000, description="Lowest price, credits.")
    price_max: int = Field(200, ge=1, le=1_000_000, description="Highest price, credits.")
    orders_per_period: int = Field(
        2000, ge=1, le=1_000_000, description="Orders submitted per trading period (one tick)."
    )
    inputs: str | None = Field(
        None,
        max_length=1024,
        description="An inputs file of a recorded episode (its cores/<population>.npz): its "
        "outside actions drive the same traders again.",
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"values", "costs", "inputs"})


def trade_period(
    values: list[list[int]],
    costs: list[list[int]],
    constrained: bool,
    pick: npt.NDArray[np.float64],
    draw: npt.NDArray[np.float64],
    price_min: int,
    price_max: int,
    held: dict[int, float] | None = None,
) -> list[tuple[int, int, int, int, int]]:
    """One trading period of the continuous double auction; the trades made, in order.

    Traders are numbered buyers first, then sellers. Order ``k`` comes from a trader picked by
    ``pick[k]`` (uniform in [0, 1)) among those with units left; ``draw[k]`` (uniform in [0, 1))
    sets its price. The book holds the best bid and the best ask: a bid at or above the ask trades
    at the ask, an ask at or below the bid trades at the bid (the standing order's price); a bid
    that does not cross stands only if it beats the standing bid (asks alike); a trade clears the
    book. Returns ``(buyer, seller, price, value, cost)`` per trade.

    ``held`` maps traders driven from outside to a shade in [0, 1] that replaces their draw: 0
    posts at the unit's own limit (value or cost), 1 at the far end of the price range.
    """
    assert pick.shape == draw.shape, "one pick and one price draw per order"
    assert price_min <= price_max, f"price_min {price_min} > price_max {price_max}"
    n_buyers = len(values)
    sold = [0] * (n_buyers + len(costs))  # units each trader has traded
    limits = [*values, *costs]
    bid = ask = None  # (price, trader)
    trades = []
    active = [i for i in range(len(limits)) if limits[i]]
    for u_pick, u_draw in zip(pick.tolist(), draw.tolist(), strict=True):
        if not active:
            break
        i = active[int(u_pick * len(active))]
        limit = limits[i][sold[i]]
        low, high = price_min, price_max
        if constrained and i < n_buyers:
            high = min(limit, price_max)
        elif constrained:
            low = max(limit, price_min)
        if low > high:
            continue  # a unit that cannot trade on this price range
        if held is not None and i in held:  # a driven trader: its shade, not a draw
            u_draw = (1.0 - held[i]) if i < n_buyers else held[i]
            u_draw = min(u_draw, 1.0 - 1e-12)
        price = low + int(u_draw * (high - low + 1))
        if i < n_buyers:
            if ask is not None and price >= ask[0]:
                trades.append((i, ask[1], ask[0], limit, limits[ask[1]][sold[ask[1]]]))
                _settle_units(sold, limits, active, i, ask[1])
                bid = ask = None
            elif bid is None or price > bid[0]:
                bid = (price, i)
        elif bid is not None and price <= bid[0]:
            trades.append((bid[1], i, bid[0], limits[bid[1]][sold[bid[1]]], limit))
            _settle_units(sold, limits, active, bid[1], i)
            bid = ask = None
        elif ask is None or price < ask[0]:
            ask = (price, i)
    return trades


def _settle_units(
    sold: list[int], limits: list[list[int]], active: list[int], *traders: int
) -> None:
    """Count one unit traded by each of ``traders``; drop from ``active`` those with none left."""
    for t in traders:
        sold[t] += 1
        if sold[t] == len(limits[t]):
            active.remove(t)


def max_surplus(values: list[list[int]], costs: list[list[int]]) -> int:
    """The most surplus any set of trades can make: values high to low against costs low to high,
    while the value exceeds the cost (the competitive allocation), credits."""
    demand = sorted((v for units in values for v in units), reverse=True)
    supply = sorted(c for units in costs for c in units)
    # Past the shorter side no trade is possible.
    total = sum(v - c for v, c in zip(demand, supply, strict=False) if v > c)
    assert total >= 0, "a sum of positive gaps"
    return total


class ZeroIntelligenceTraders(Population):
    """Buyers and sellers who bid and ask at random in a double auction, one period a tick.

    **Paper.** Gode, D. K. and Sunder, S. (1993), "Allocative efficiency of markets with
    zero-intelligence traders: market as a partial substitute for individual rationality",
    *Journal of Political Economy* 101(1), 119–137.

    **Mechanism.** The first ``len(values)`` agents are buyers, the rest sellers; each holds the
    units of its row of ``values`` or ``costs``, traded in that order, and gets them afresh each
    period (tick). In a period, ``orders_per_period`` times, a trader with units left is picked at
    random and posts one order for its next unit (:func:`trade_period`). ZI-C prices are uniform
    on ``[price_min, value]`` for a buyer and ``[cost, price_max]`` for a seller; ZI-U prices are
    uniform on ``[price_min, price_max]``. The buyer pays the seller the trade's price through the
    ledger at the end of the period.

    **Result.** Allocative efficiency, the surplus of the trades made (value minus cost) over the
    largest surplus possible, is 97% or more for ZI-C and markedly lower for ZI-U, whose
    extra-marginal units trade and whose marginal units trade at a loss.

    | key | meaning |
    | --- | --- |
    | ``count`` | ``len(values) + len(costs)``: one agent per buyer and per seller |
    | ``initial_credits`` | each trader's money, which must cover its purchases for the run |
    | ``constrained`` | ZI-C (true) or ZI-U (false) |
    | ``values``, ``costs`` | the induced demand and supply, credits per unit |
    | ``price_min``, ``price_max`` | the price range, credits |
    | ``orders_per_period`` | orders per period |

    **Metrics** (per tick): ``<name>/trades``, ``<name>/surplus_credits``,
    ``<name>/efficiency`` (surplus over the largest possible), ``<name>/mean_price_credits``.
    """

    role: ClassVar[str] = "zero_intelligence"
    money_arrays: ClassVar[dict[str, str]] = {"profit": "credits"}
    Params: ClassVar[type[RoleParams]] = TraderParams

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.n_buyers = len(self.params.values)
        self.is_buyer = np.arange(self.n) < self.n_buyers
        self.units_traded = np.zeros(self.n, dtype=np.int64)  # over the whole run
        self.profit = np.zeros(self.n, dtype=np.int64)  # credits, over the whole run
        self.best_surplus = max_surplus(self.params.values, self.params.costs)
        self.control: Control | None = None  # outside control of some traders (control_form)
        self.tick_profit = np.zeros(self.n, dtype=np.int64)  # credits, the last period
        self.last_price = 0.0  # mean trade price of the last period, credits (0: none)

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``count`` is one agent per buyer and seller; limits lie on the price range."""
        assert isinstance(params, TraderParams)
        where = f"{label}: population[{index}]"
        count = scenario.population[index].count
        need = len(params.values) + len(params.costs)
        problems = []
        if count != need:
            problems.append(
                f"{where}.count: {len(params.values)} buyers and {len(params.costs)} "
                f"sellers need count = {need}, got {count}"
            )
        if params.price_min > params.price_max:
            problems.append(
                f"{where}.price_min: {params.price_min} is above price_max {params.price_max}"
            )
        limits = [x for units in (*params.values, *params.costs) for x in units]
        if any(not params.price_min <= x <= params.price_max for x in limits):
            problems.append(
                f"{where}.values: every value and cost must lie in [price_min, price_max]"
            )
        if params.inputs is not None and (
            problem := inputs_problem(base / params.inputs, cls.role)
        ):
            problems.append(f"{where}.inputs: {problem}")
        return problems

    def setup(self, world: WorldAPI) -> None:
        """Mint each trader's money."""
        amounts = np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64)
        world.mint(self.ids, amounts, "trading money")
        if self.params.inputs is not None:  # a recorded episode: its actions drive them again
            try:
                self.control = Control.replaying(world.base / self.params.inputs, self)
            except ValueError as exc:
                raise ScenarioError([f"population {self.name!r}: inputs: {exc}"]) from None

    def step(self, world: WorldAPI, tick: int) -> None:
        """Run one trading period, settle its trades through the ledger, record its efficiency."""
        p = self.params
        rng = world.streams(f"population/{self.name}")
        pick = rng.random(p.orders_per_period)
        draw = rng.random(p.orders_per_period)
        held = None
        if self.control is not None:
            actions = self.control.take(tick)
            acting = self.control.acting(actions)
            held = {
                int(seat): (float(a) + 1.0) / 2.0
                for seat, a in zip(self.control.seats[acting], actions[acting, 0], strict=True)
            }
        trades = trade_period(
            p.values, p.costs, p.constrained, pick, draw, p.price_min, p.price_max, held
        )
        buyer, seller, price, value, cost = (
            np.array([t[k] for t in trades], dtype=np.int64) for k in range(5)
        )
        paid = world.execute_by_home(
            OpKind.TRANSFER, self.ids[buyer], self.ids[seller], price * world.MICRO
        )
        assert paid.all(), "a buyer ran out of money: raise initial_credits for this many periods"
        np.add.at(self.units_traded, buyer, 1)
        np.add.at(self.units_traded, seller, 1)
        self.tick_profit = np.zeros(self.n, dtype=np.int64)
        np.add.at(self.tick_profit, buyer, value - price)
        np.add.at(self.tick_profit, seller, price - cost)
        self.profit += self.tick_profit
        self.last_price = int(price.sum()) / len(trades) if trades else 0.0
        surplus = int((value - cost).sum())
        world.count(f"{self.name}/trades", len(trades))
        world.count(f"{self.name}/surplus_credits", surplus)
        world.gauge(f"{self.name}/efficiency", surplus / self.best_surplus)
        world.gauge(f"{self.name}/mean_price_credits", int(price.sum()) / max(1, len(trades)))

    # ------------------------------------------------------------------ outside control
    def control_form(self) -> ControlForm:
        """One trader driven from outside, for a period at a time.

        Observation ``Box(-1, 1, (4,))``: its side (1 a buyer, -1 a seller), the mean limit of its
        units and the last period's mean price (each scaled from the price range to [-1, 1]), and
        the share of the run left. Action ``Box(-1, 1, (1,))``: the shade ``s = (a + 1)/2`` of
        every order it posts in the period, held for all of them (0: at its unit's value or cost,
        1: at the far end of the price range); ZI-C draws a fresh shade per order. Reward
        ``"profit"``: the period's value less price (a buyer) or price less cost (a seller).
        """
        from gymnasium import spaces

        return ControlForm(
            observation_space=spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
            action_space=spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            action_meaning="an action in [-1, 1]: shade (a + 1)/2 of every order this period, "
            "from the unit's own limit (0) to the far end of the price range (1)",
            rewards={
                "profit": lambda world, pop, seats, before: pop.tick_profit[seats].astype(float)
            },
            bankrupt_leaves=False,
        )

    def attach_control(self, world: WorldAPI, seats: npt.NDArray[np.int64]) -> Control:
        """Drive ``seats`` from outside from the next tick on (before tick 0)."""
        assert self.control is None, "one control per population"
        self.control = Control.live(seats, 1)
        return self.control

    def observe(self, world: WorldAPI, seats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each seat's observation for the coming period, ``float32[len(seats), 4]``."""
        p = self.params
        span = max(1, p.price_max - p.price_min)
        units = [*p.values, *p.costs]
        # The mean limit of each seat's units: integer sums, one division each (a fixed order).
        limit = np.array([sum(units[int(i)]) / len(units[int(i)]) for i in seats])
        side = np.where(self.is_buyer[seats], 1.0, -1.0)
        price = self.last_price if self.last_price else (p.price_min + p.price_max) / 2
        left = 1.0 - world.tick / (world.final_tick + 1)
        obs = np.column_stack(
            [
                side,
                2.0 * (limit - p.price_min) / span - 1.0,
                np.full(seats.size, 2.0 * (price - p.price_min) / span - 1.0),
                np.full(seats.size, 2.0 * left - 1.0),
            ]
        )
        return np.clip(obs, -1.0, 1.0).astype(np.float32)

    def save_core(self, folder: Path) -> Path | None:
        """With outside control, its actions so far (an inputs file the ``inputs`` key replays)."""
        return None if self.control is None else save_recording(folder, self, self.control)

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, sides, units traded and profits (credits) over the run."""
        return {
            "alive": self.alive,
            "is_buyer": self.is_buyer,
            "units_traded": self.units_traded,
            "profit": self.profit,
        }
