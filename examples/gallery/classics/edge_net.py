"""A self-sustaining compute marketplace: nodes that both sell compute and buy it ("edge-net").

A marketplace where one side only spends and the other only earns runs down: the spenders' money
ends up with the earners and demand stops. Here every node is both: it offers its spare CPU-hours
to the network and earns for the work it does, and it submits tasks of its own and pays for them.
Money goes round, so trade goes on. New credits come from one stated rule, a reward per CPU-hour
done scaled by the contribution curve ``1 + 9·exp(−c/10^6)`` (``c``: the network's CPU-hours so
far), which pays early contributors up to ten times more; a fee on every payment goes to the
treasury, which governance may spend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agora import OpKind, Population, RoleParams, contribution_multiplier
from classics import gini

if TYPE_CHECKING:
    from agora import PopulationConfig, Scenario, Stream, WorldAPI


class NodeParams(RoleParams):
    """An edge-net population's own keys (money in credits, compute in CPU-hours)."""

    capacity_max: int = Field(
        8,
        ge=1,
        le=10_000,
        description="Most CPU-hours a node offers per "
        "tick; each node's capacity is uniform on 1..capacity_max.",
    )
    demand_rate: float = Field(
        0.5, ge=0, le=1, description="Probability a node has work to run in a tick."
    )
    spend_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Share of its money a node with work "
        "spends on compute in a tick (price and fee).",
    )
    task_max: int = Field(1000, ge=1, le=1_000_000, description="Most CPU-hours one task buys.")
    cost_low: float = Field(
        0.2,
        ge=0,
        le=1e6,
        description="Lowest reservation price of a "
        "provider, credits per CPU-hour (each node's is uniform on "
        "[cost_low, cost_high]).",
    )
    cost_high: float = Field(
        0.8, ge=0, le=1e6, description="Highest reservation price, credits per CPU-hour."
    )
    price_start: float = Field(
        1.0, gt=0, le=1e6, description="Price at tick 0, credits per CPU-hour."
    )
    price_step: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Largest relative price move per tick (the price follows demand minus supply).",
    )
    fee_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Fee the buyer pays the treasury on top of each payment, as a share of it.",
    )
    reward: float = Field(
        0.05,
        ge=0,
        le=1e6,
        description="Credits minted per CPU-hour done, at contribution multiplier 1.",
    )
    max_bonus: float = Field(
        10.0,
        ge=1,
        le=1e3,
        description="Contribution multiplier of a network with no compute done yet.",
    )
    compute_decay: float = Field(
        1e6,
        gt=0,
        le=1e15,
        description="CPU-hours over which the multiplier's bonus falls by a factor e.",
    )
    split_roles: bool = Field(
        False,
        description="The first half of the nodes only submit and the "
        "second half only provide (one-sided, like the shipped marketplace); "
        "otherwise every node does both.",
    )
    setup_only: ClassVar[frozenset[str]] = frozenset(
        {"capacity_max", "cost_low", "cost_high", "price_start", "split_roles"}
    )


def match_units(
    rng: Stream, task_units: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], ...]:
    """Match the CPU-hours of tasks to the providers' free CPU-hours at random.

    ``task_units: int64[n_tasks]`` (CPU-hours per task), ``slots: int64[n_slots]`` (a provider's
    index once per CPU-hour it offers). Tasks are served in a random order, each by random slots,
    until demand or supply runs out (the last task served may be served in part). Returns, per
    CPU-hour served, the task's index and the provider's index.
    """
    assert (task_units > 0).all(), "every task asks for at least one CPU-hour"
    order = rng.permutation(task_units.size)
    wanted = np.repeat(order, task_units[order])
    offered = rng.permutation(slots)
    served = min(wanted.size, offered.size)
    assert served <= wanted.size and served <= offered.size
    return wanted[:served], offered[:served]


class EdgeNodes(Population):
    """Nodes that sell their spare compute and buy compute for their own work, one market a tick.

    **Design.** A contribution economy of the edge-computing kind: every node both contributes
    compute (earning for the CPU-hours it does) and submits tasks (spending), with an early
    contributor bonus ``1 + (max_bonus − 1)·exp(−c/compute_decay)`` on minted rewards, computed by
    :func:`agora.contribution_multiplier` (portable ``exp``).

    **Mechanism**, each tick:

    1. *Demand.* A node with work (probability ``demand_rate``) submits one task: as many
       CPU-hours (up to ``task_max``) as ``spend_share`` of its money buys at the price plus fee.
    2. *Supply.* A node offers its capacity when the price covers its reservation cost.
    3. *Match.* CPU-hours of the tasks meet offered CPU-hours at random (:func:`match_units`).
    4. *Settle.* For each CPU-hour served the buyer pays the provider the price, and pays the
       treasury ``fee_rate`` of it; all through the ledger.
    5. *Mint.* Each provider is minted ``reward × multiplier(c)`` credits (rounded down to a
       micro-credit) per CPU-hour it did; ``c``, the network's compute, then grows by them.
    6. *Price.* The price moves by ``price_step × (demand − supply)/max(demand, supply)``.

    **Result.** Money spent comes back as earnings, so the CPU-hours traded stay at the supply
    the price calls forth, tick after tick. Fees take ``fee_rate·price`` out of circulation per
    CPU-hour and rewards put ``reward·multiplier`` in, so the price settles where they balance,
    ``reward·multiplier(c)/fee_rate``, and follows the multiplier down as the network's compute
    grows. Credits held equal credits issued at every tick, and the issued supply grows only by
    the starting credits and the rewards. With ``split_roles = true`` the buyers never earn:
    their money runs down, the price falls below the providers' costs, and trade dies out.

    | key | meaning |
    | --- | --- |
    | ``initial_credits`` | each node's starting money |
    | ``capacity_max`` | most CPU-hours a node offers per tick |
    | ``demand_rate``, ``spend_share``, ``task_max`` | how often and how much a node buys |
    | ``cost_low``, ``cost_high`` | providers' reservation costs, credits per CPU-hour |
    | ``price_start``, ``price_step`` | the price's start and its largest relative move |
    | ``fee_rate``, ``reward``, ``max_bonus``, ``compute_decay`` | fees and minting |
    | ``split_roles`` | one-sided market |

    **Metrics** (per tick): ``<name>/tasks``, ``<name>/units_wanted``, ``<name>/units_offered``,
    ``<name>/units`` (CPU-hours served), ``<name>/volume_micro``, ``<name>/fees_micro`` and
    ``<name>/rewards_micro``, ``<name>/price_credits`` (credits per CPU-hour, before this tick's
    move), ``<name>/multiplier``, ``<name>/gini`` (of the nodes' money), ``<name>/treasury_credits``
    (credits). **Trade tape**: one entry per CPU-hour served (:mod:`classics`).
    """

    role: ClassVar[str] = "edge_nodes"
    money_arrays: ClassVar[dict[str, str]] = {
        "cost": "micro",
        "earned": "micro",
        "spent": "micro",
        "price": "micro",
    }
    Params: ClassVar[type[RoleParams]] = NodeParams
    phase: ClassVar[int] = 0

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        half = self.n // 2
        split = self.params.split_roles
        self.submits = np.arange(self.n) < half if split else np.ones(self.n, dtype=np.bool_)
        self.provides = np.arange(self.n) >= half if split else np.ones(self.n, dtype=np.bool_)
        self.capacity = np.zeros(self.n, dtype=np.int64)  # CPU-hours per tick
        self.cost = np.zeros(self.n, dtype=np.int64)  # micro-credits per CPU-hour
        self.units_done = np.zeros(self.n, dtype=np.int64)
        self.units_bought = np.zeros(self.n, dtype=np.int64)
        self.earned = np.zeros(self.n, dtype=np.int64)  # micro-credits: payments and rewards
        self.spent = np.zeros(self.n, dtype=np.int64)  # micro-credits: payments and fees
        self.price = 0  # micro-credits per CPU-hour
        self.tape_payer = np.empty(0, dtype=np.int64)
        self.tape_payee = np.empty(0, dtype=np.int64)
        self.tape_amount = np.empty(0, dtype=np.int64)

    @classmethod
    def credits_minted_at_most(cls, cfg: PopulationConfig, scenario: Scenario) -> int:
        """Starting credits, and rewards at the largest multiplier for every CPU-hour offered."""
        p = cls.Params.model_validate(cfg.params)
        assert isinstance(p, NodeParams)
        per_tick = cfg.count * p.capacity_max * p.reward * p.max_bonus
        return cfg.count * cfg.initial_credits + int(np.ceil(per_tick * scenario.world.ticks))

    def setup(self, world: WorldAPI) -> None:
        """Draw capacities and costs; mint the starting money; set the first price."""
        p = self.params
        rng = world.streams(f"population/{self.name}/setup")
        self.capacity = rng.integers(1, p.capacity_max + 1, size=self.n, dtype=np.int64)
        self.cost = (rng.uniform(p.cost_low, p.cost_high, self.n) * world.MICRO).astype(np.int64)
        self.price = max(1, int(p.price_start * world.MICRO))
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, np.int64),
            "starting money",
        )

    def step(self, world: WorldAPI, tick: int) -> None:
        """One market: demand, supply, match, settle, mint, move the price (class docstring)."""
        p = self.params
        rng = world.streams(f"population/{self.name}")
        fee_unit = int(self.price * p.fee_rate)  # micro-credits per CPU-hour, rounded down
        working = np.flatnonzero(self.alive & self.submits & (rng.random(self.n) < p.demand_rate))
        budget = world.rights_at_home(self.ids[working]) * p.spend_share
        hours = np.minimum(budget // (self.price + fee_unit), p.task_max).astype(np.int64)
        buyers, hours = working[hours > 0], hours[hours > 0]
        offering = self.alive & self.provides & (self.cost <= self.price)
        slots = np.repeat(np.flatnonzero(offering), self.capacity[offering])
        task, provider = match_units(rng, hours, slots)
        buyer = buyers[task]
        self._settle(world, buyer, provider, fee_unit)
        rewards = self._mint_rewards(world, provider)
        self.tape_payer, self.tape_payee = self.ids[buyer], self.ids[provider]
        self.tape_amount = np.full(buyer.size, self.price, dtype=np.int64)
        wanted = int(hours.sum())
        world.count(f"{self.name}/tasks", int(buyers.size))
        world.count(f"{self.name}/units_wanted", wanted)
        world.count(f"{self.name}/units_offered", int(slots.size))
        world.count(f"{self.name}/units", int(buyer.size))
        world.count(f"{self.name}/volume_micro", int(buyer.size) * self.price)
        world.count(f"{self.name}/fees_micro", int(buyer.size) * fee_unit)
        world.count(f"{self.name}/rewards_micro", rewards)
        world.gauge(f"{self.name}/price_credits", self.price / world.MICRO)
        world.gauge(f"{self.name}/gini", gini(world.rights_at_home(self.ids)))
        treasury = world.rights_at_home(np.array([world.treasury], dtype=np.int64))
        world.gauge(f"{self.name}/treasury_credits", int(treasury[0]) / world.MICRO)
        self._move_price(wanted, int(slots.size))

    def _settle(
        self,
        world: WorldAPI,
        buyer: npt.NDArray[np.int64],
        provider: npt.NDArray[np.int64],
        fee_unit: int,
    ) -> None:
        """Buyers pay providers the price per CPU-hour served, and the treasury the fee."""
        amount = np.full(buyer.size, self.price, dtype=np.int64)
        paid = world.execute_by_home(OpKind.TRANSFER, self.ids[buyer], self.ids[provider], amount)
        assert paid.all(), "a buyer could not pay for CPU-hours it could afford when it asked"
        payers, hours = np.unique(buyer, return_counts=True)
        fees = hours * fee_unit
        keep = fees > 0
        to_treasury = np.full(int(keep.sum()), world.treasury, dtype=np.int64)
        paid = world.execute_by_home(
            OpKind.TRANSFER, self.ids[payers[keep]], to_treasury, fees[keep]
        )
        assert paid.all(), "a buyer could not pay the fee it had set aside"
        np.add.at(self.units_done, provider, 1)
        np.add.at(self.units_bought, buyer, 1)
        np.add.at(self.earned, provider, self.price)
        np.add.at(self.spent, buyer, self.price)
        np.add.at(self.spent, payers, fees)

    def _mint_rewards(self, world: WorldAPI, provider: npt.NDArray[np.int64]) -> int:
        """Mint the contribution reward for this tick's CPU-hours; grow the network's compute.
        Returns the micro-credits minted."""
        p = self.params
        multiplier = float(
            contribution_multiplier(world.network_compute, p.max_bonus, p.compute_decay)
        )
        assert 1.0 <= multiplier <= p.max_bonus, f"multiplier {multiplier} out of [1, max_bonus]"
        world.gauge(f"{self.name}/multiplier", multiplier)
        per_hour = int(p.reward * world.MICRO * multiplier)
        amounts = np.bincount(provider, minlength=self.n).astype(np.int64) * per_hour
        world.mint(self.ids, amounts, "contribution reward")
        self.earned += amounts
        world.network_compute += float(provider.size)
        return int(amounts.sum())

    def _move_price(self, wanted: int, offered: int) -> None:
        """Raise the price when more CPU-hours are wanted than offered, lower it otherwise."""
        excess = (wanted - offered) / max(wanted, offered, 1)
        assert -1.0 <= excess <= 1.0
        self.price = max(1, int(self.price * (1.0 + self.params.price_step * excess)))

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Per node: sides, capacity, cost, CPU-hours done and bought, money earned and spent;
        and the price (one entry)."""
        return {
            "alive": self.alive,
            "submits": self.submits,
            "provides": self.provides,
            "capacity": self.capacity,
            "cost": self.cost,
            "units_done": self.units_done,
            "units_bought": self.units_bought,
            "earned": self.earned,
            "spent": self.spent,
            "price": np.array([self.price], dtype=np.int64),
        }
