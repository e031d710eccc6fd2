"""The cobweb: farmers who plant for last season's price (Ezekiel 1938).

Ezekiel (1938) explained the regular swings of farm prices by a lag: farmers decide how much to
plant from the price they last saw, and the harvest is sold a season later for whatever buyers
will pay for it. A high price brings a big harvest, which fetches a low price, which brings a
small harvest, and so on. Near the equilibrium the price's deviation is multiplied each season by
minus the ratio of the supply curve's slope to the demand curve's: the swings die out when supply
responds to price less than demand does (ratio below 1), go on unchanged at 1, and grow when supply
responds more (ratio above 1), until farmers stop planting or buyers stop buying.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agora import OpKind, Population, RoleParams

if TYPE_CHECKING:
    from agora import PopulationConfig, Scenario, WorldAPI

# A float64 interval [0, x] stops shrinking (its midpoint equals an end) within about 1,130
# halvings, whatever x; prices away from 0 take about 60.
BISECTIONS_MAX = 1200


def demanded(
    price: float, intercept: npt.NDArray[np.float64], slope: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each buyer's quantity at ``price``: ``max(0, intercept − slope·price)``, units."""
    assert price >= 0.0, f"a price is >= 0, got {price}"
    return np.maximum(0.0, intercept - slope * price)


def supplied(
    price: float, slope: npt.NDArray[np.float64], cost: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each farmer's planting for an expected ``price``: ``max(0, slope·(price − cost))``, units."""
    assert price >= 0.0, f"a price is >= 0, got {price}"
    return np.maximum(0.0, slope * (price - cost))


def falling_root(excess: object, high: float) -> float:
    """The price in ``[0, high]`` where the decreasing function ``excess(price)`` crosses zero, by
    bisection in a fixed order (0.0 when it is <= 0 already at price 0)."""
    assert high >= 0.0, f"the search needs a range, got high = {high}"
    if excess(0.0) <= 0.0:  # type: ignore[operator]
        return 0.0
    low = 0.0
    for _ in range(BISECTIONS_MAX):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if excess(mid) > 0.0:  # type: ignore[operator]
            low = mid
        else:
            high = mid
    assert 0.0 <= low <= high
    return 0.5 * (low + high)


class FarmerParams(RoleParams):
    """A farmer population's own keys."""

    market: str = Field(
        max_length=64,
        description="The consumer population whose market sets the price the farmers plant for.",
    )
    supply_slope: float = Field(
        40.0,
        gt=0,
        le=1e9,
        description="Slope of the aggregate supply "
        "curve, units per credit (each farmer's is this over the count, "
        "times a uniform draw on [0.5, 1.5]).",
    )
    cost_low: float = Field(
        1.0,
        ge=0,
        le=1e6,
        description="Lowest price at which a farmer plants, "
        "credits (each farmer's is uniform on [cost_low, cost_high]).",
    )
    cost_high: float = Field(4.0, ge=0, le=1e6, description="Highest such price, credits.")
    yield_noise: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Deviation of each harvest from what "
        "was planted, relative (normal draws; 0: harvest what was planted).",
    )
    setup_only: ClassVar[frozenset[str]] = frozenset(
        {"market", "supply_slope", "cost_low", "cost_high"}
    )


class Farmers(Population):
    """Farmers who plant for the last price and sell the harvest for what it fetches.

    **Paper.** Ezekiel, M. (1938), "The cobweb theorem", *Quarterly Journal of Economics* 52(2),
    255–280.

    **Mechanism.** Each tick (a season) a farmer plants ``slope·(p_last − cost)``, nothing below
    its cost, where ``p_last`` is the price the market of ``market`` cleared at last season (its
    opening price before the first); the harvest comes in at once, give or take ``yield_noise``.
    The consumers' market then sells it (:class:`Consumers`) and pays the farmers in proportion
    to their harvests.

    | key | meaning |
    | --- | --- |
    | ``market`` | the consumer population that clears the market |
    | ``supply_slope`` | slope of aggregate supply, units per credit |
    | ``cost_low``, ``cost_high`` | range of the farmers' costs, credits |
    | ``yield_noise`` | relative deviation of harvests |

    **State**: ``slope``, ``cost`` (credits), ``harvest`` (this season, units), ``revenue``
    (micro-credits, over the run).
    """

    role: ClassVar[str] = "cobweb_farmers"
    money_arrays: ClassVar[dict[str, str]] = {"cost": "credits", "revenue": "micro"}
    Params: ClassVar[type[RoleParams]] = FarmerParams
    phase: ClassVar[int] = 0

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.slope = np.zeros(self.n)
        self.cost = np.zeros(self.n)
        self.harvest = np.zeros(self.n)
        self.revenue = np.zeros(self.n, dtype=np.int64)

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``market`` names a consumer population; the cost range is ordered."""
        assert isinstance(params, FarmerParams)
        where = f"{label}: population[{index}]"
        market = next((p for p in scenario.population if p.name == params.market), None)
        problems = []
        if market is None or not market.role.endswith(":Consumers"):
            problems.append(f"{where}.market: names no Consumers population; got {params.market!r}")
        if params.cost_low > params.cost_high:
            problems.append(
                f"{where}.cost_low: {params.cost_low} is above cost_high {params.cost_high}"
            )
        return problems

    def setup(self, world: WorldAPI) -> None:
        """Draw slopes and costs; find the market."""
        p = self.params
        rng = world.streams(f"population/{self.name}/setup")
        self.slope = p.supply_slope / max(1, self.n) * rng.uniform(0.5, 1.5, self.n)
        self.cost = rng.uniform(p.cost_low, p.cost_high, self.n)
        self.market = next(q for q in world.populations if q.name == p.market)
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, np.int64),
            "starting money",
        )

    def step(self, world: WorldAPI, tick: int) -> None:
        """Plant for last season's price; the harvest is what the market sells this season."""
        rng = world.streams(f"population/{self.name}")
        planted = supplied(self.market.price, self.slope, self.cost) * self.alive
        shock = rng.normal(0.0, 1.0, self.n) * self.params.yield_noise
        self.harvest = np.maximum(0.0, planted * (1.0 + shock))
        assert (self.harvest >= 0.0).all() and self.harvest.shape == (self.n,)

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, slopes, costs, this season's harvest and the revenue over the run."""
        return {
            "alive": self.alive,
            "slope": self.slope,
            "cost": self.cost,
            "harvest": self.harvest,
            "revenue": self.revenue,
        }


class ConsumerParams(RoleParams):
    """A consumer population's own keys: its demand, and the market it runs."""

    farmers: str = Field(max_length=64, description="The farmer population whose harvest is sold.")
    demand_slope: float = Field(
        50.0,
        gt=0,
        le=1e9,
        description="Slope of the aggregate demand "
        "curve, units per credit (each consumer's is this over the count, "
        "times a uniform draw on [0.5, 1.5]).",
    )
    choke_low: float = Field(
        20.0,
        gt=0,
        le=1e6,
        description="Lowest price at which a consumer "
        "buys nothing, credits (each one's is uniform on [choke_low, "
        "choke_high]).",
    )
    choke_high: float = Field(30.0, gt=0, le=1e6, description="Highest such price, credits.")
    price_low: float = Field(
        8.0,
        ge=0,
        le=1e6,
        description="The opening price, the one the first "
        "crop is planted for, is uniform on [price_low, price_high], credits.",
    )
    price_high: float = Field(12.0, ge=0, le=1e6, description="See price_low.")
    setup_only: ClassVar[frozenset[str]] = frozenset(
        {"farmers", "demand_slope", "choke_low", "choke_high", "price_low", "price_high"}
    )


class Consumers(Population):
    """Consumers with linear demand, whose market sells each harvest at the price that clears it.

    **Mechanism.** Consumer ``j`` buys ``max(0, g_j·(choke_j − p))`` at price ``p``. Each season,
    after the farmers (phase 1), the market finds the price at which the consumers take the whole
    harvest (0 when the harvest is more than they take even for free; the rest is wasted), by
    bisection (:func:`falling_root`) over sums computed with ``math.fsum``, which rounds once and so
    does not depend on the order of the terms. Each consumer pays ``p`` times what it bought,
    split among the farmers in proportion to their harvests, through the ledger.

    **Result.** Near the equilibrium ``p*`` the deviation ``p_t − p*`` is ``−(K/G)·(p_{t−1} −
    p*)``, with ``K`` and ``G`` the sums of the farmers' and consumers' slopes: the price
    oscillates, and converges when ``K/G < 1``, diverges when ``K/G > 1`` until planting or buying
    stops at the kinks of the curves, where it settles into a two-season boom and bust.

    | key | meaning |
    | --- | --- |
    | ``farmers`` | the farmer population |
    | ``demand_slope`` | slope of aggregate demand, units per credit |
    | ``choke_low``, ``choke_high`` | range of the consumers' choke prices, credits |
    | ``price_low``, ``price_high`` | range of the opening price, credits |

    **Metrics** (per tick): ``<name>/price_credits``, ``<name>/quantity`` (units sold),
    ``<name>/equilibrium_price_credits`` (credits: where supply meets demand),
    ``<name>/slope_ratio``
    (``K/G``), ``<name>/spent_micro`` (micro-credits).
    """

    role: ClassVar[str] = "cobweb_consumers"
    money_arrays: ClassVar[dict[str, str]] = {"price": "credits"}
    Params: ClassVar[type[RoleParams]] = ConsumerParams
    phase: ClassVar[int] = 1

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.slope = np.zeros(self.n)
        self.intercept = np.zeros(self.n)  # units bought at price 0
        self.bought = np.zeros(self.n)  # this season, units
        self.price = 0.0  # credits: the last clearing price (the opening price before the first)
        self.equilibrium = 0.0

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``farmers`` names a Farmers population; ranges are ordered."""
        assert isinstance(params, ConsumerParams)
        where = f"{label}: population[{index}]"
        farmers = next((p for p in scenario.population if p.name == params.farmers), None)
        problems = []
        if farmers is None or not farmers.role.endswith(":Farmers"):
            problems.append(f"{where}.farmers: names no Farmers population; got {params.farmers!r}")
        for low, high in (("choke_low", "choke_high"), ("price_low", "price_high")):
            if getattr(params, low) > getattr(params, high):
                problems.append(f"{where}.{low}: is above {high}")
        return problems

    def setup(self, world: WorldAPI) -> None:
        """Draw slopes and choke prices, the opening price, and find the equilibrium."""
        p = self.params
        rng = world.streams(f"population/{self.name}/setup")
        self.slope = p.demand_slope / max(1, self.n) * rng.uniform(0.5, 1.5, self.n)
        self.intercept = self.slope * rng.uniform(p.choke_low, p.choke_high, self.n)
        self.price = float(rng.uniform(p.price_low, p.price_high))
        self.farmers = next(q for q in world.populations if q.name == p.farmers)
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, np.int64),
            "starting money",
        )

    def step(self, world: WorldAPI, tick: int) -> None:
        """Clear the market for this season's harvest; consumers pay the farmers."""
        harvest = self.farmers.harvest
        quantity = math.fsum(harvest.tolist())
        top = float(np.max(self.intercept / self.slope)) if self.n else 0.0
        self.price = falling_root(lambda price: self._demand(price) - quantity, top)
        self.bought = demanded(self.price, self.intercept, self.slope)
        spent = self._pay(world, harvest, quantity)
        self.equilibrium = falling_root(self._excess_demand, top)
        far, near = self.farmers.slope, self.slope
        world.gauge(f"{self.name}/price_credits", self.price)
        world.gauge(f"{self.name}/quantity", math.fsum(self.bought.tolist()))
        world.gauge(f"{self.name}/equilibrium_price_credits", self.equilibrium)
        world.gauge(f"{self.name}/slope_ratio", math.fsum(far.tolist()) / math.fsum(near.tolist()))
        world.count(f"{self.name}/spent_micro", spent)

    def _demand(self, price: float) -> float:
        """Units all consumers buy at ``price``."""
        return math.fsum(demanded(price, self.intercept, self.slope).tolist())

    def _excess_demand(self, price: float) -> float:
        """Units demanded minus units the farmers would plant, at ``price``."""
        planted = supplied(price, self.farmers.slope, self.farmers.cost)
        return self._demand(price) - math.fsum(planted.tolist())

    def _pay(self, world: WorldAPI, harvest: npt.NDArray[np.float64], quantity: float) -> int:
        """Each consumer pays price × units bought, split among the farmers by harvest; returns
        the micro-credits paid."""
        if quantity <= 0.0 or self.price <= 0.0:
            return 0
        bill = (self.price * self.bought * world.MICRO).astype(np.int64)
        share = harvest / quantity
        amounts = (bill[:, None] * share[None, :]).astype(np.int64)  # consumer × farmer
        payer, payee = np.nonzero(amounts > 0)
        paid = world.execute_by_home(
            OpKind.TRANSFER, self.ids[payer], self.farmers.ids[payee], amounts[payer, payee]
        )
        assert paid.all(), "a consumer ran out of money: raise its initial_credits"
        np.add.at(self.farmers.revenue, payee, amounts[payer, payee])
        return int(amounts[payer, payee].sum())

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, demand slopes and intercepts, this season's purchases; the price."""
        return {
            "alive": self.alive,
            "slope": self.slope,
            "intercept": self.intercept,
            "bought": self.bought,
            "price": np.array([self.price]),
        }
