"""Random exchange of conserved money: Boltzmann–Gibbs money (Dragulescu & Yakovenko 2000).

Dragulescu and Yakovenko (2000) treat money like energy in a gas: agents meet in pairs and one
pays the other, money is neither created nor destroyed, and nobody may go below zero. Whatever
the rule for the amount, as long as the exchange is symmetric in time, the money held settles
into the Boltzmann–Gibbs distribution: exponential, ``P(m) = exp(−m/T)/T``, with a "temperature"
``T`` equal to the average money per agent. Half the agents end up below ``T·ln 2`` and the Gini
coefficient of an exponential is ½, starting from perfect equality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agora import OpKind, Population, RoleParams
from classics import gini

if TYPE_CHECKING:
    from agora import PopulationConfig, WorldAPI


class MoneyExchangeParams(RoleParams):
    """A money-exchanging population's own keys."""

    amount_max: float = Field(
        100.0, gt=0, le=1e6, description="Largest amount one exchange moves, credits."
    )
    fixed_amount: bool = Field(
        False,
        description="Every exchange moves exactly amount_max "
        "(Dragulescu & Yakovenko's first rule); otherwise an amount "
        "uniform on [0, amount_max], in micro-credits.",
    )
    rounds: int = Field(
        1,
        ge=1,
        le=100,
        description="Random pairings per tick: in each, every "
        "live agent meets one other (one sits out when their number is odd).",
    )


class MoneyExchange(Population):
    """Agents who meet in random pairs each tick; one of each pair pays the other, if it can.

    **Paper.** Dragulescu, A. and Yakovenko, V. M. (2000), "Statistical mechanics of money",
    *European Physical Journal B* 17, 723–729.

    **Mechanism.** Each round pairs the live agents at random (a random permutation read two by
    two). A fair coin picks the payer of each pair, and an amount is drawn (``amount_max``, or
    uniform micro-credits on ``[0, amount_max]``). The payer pays through the ledger when what
    it may spend covers the amount; otherwise that pair does nothing this round. The rule is
    symmetric (a move and its reverse are equally likely), so every way of splitting the money is
    equally likely at rest, and one agent's share of it is exponential.

    **Result.** The balances converge to an exponential distribution with mean equal to the
    initial average, exactly, since the ledger conserves credits; the Gini coefficient tends to ½.

    | key | meaning |
    | --- | --- |
    | ``initial_credits`` | every agent's starting money: the temperature ``T`` |
    | ``amount_max`` | largest amount moved per exchange, credits |
    | ``fixed_amount`` | move exactly ``amount_max`` each time |
    | ``rounds`` | pairings per tick |

    **Metrics** (per tick): ``<name>/exchanges`` (payments made), ``<name>/unaffordable`` (pairs
    whose payer could not pay), ``<name>/volume_micro`` (micro-credits moved), ``<name>/gini`` (of
    the
    balances after the tick).

    **Trade tape.** ``tape_payer``, ``tape_payee``, ``tape_amount``: this tick's payments
    (:mod:`classics`), which a tax authority may read.
    """

    role: ClassVar[str] = "money_exchange"
    Params: ClassVar[type[RoleParams]] = MoneyExchangeParams
    phase: ClassVar[int] = 0

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.exchanges = np.zeros(self.n, dtype=np.int64)  # payments each agent made or received
        self.tape_payer = np.empty(0, dtype=np.int64)
        self.tape_payee = np.empty(0, dtype=np.int64)
        self.tape_amount = np.empty(0, dtype=np.int64)

    def setup(self, world: WorldAPI) -> None:
        """Mint every agent's starting money (all equal: the least likely state at rest)."""
        amounts = np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64)
        world.mint(self.ids, amounts, "starting money")

    def step(self, world: WorldAPI, tick: int) -> None:
        """Run ``rounds`` random pairings; record the payments and the Gini coefficient."""
        rng = world.streams(f"population/{self.name}")
        amount_max = int(round(self.params.amount_max * world.MICRO))
        assert amount_max > 0, "amount_max is at least one micro-credit"
        tapes: list[tuple[npt.NDArray[np.int64], ...]] = []
        unaffordable = 0
        for _ in range(self.params.rounds):
            live = np.flatnonzero(self.alive)
            order = rng.permutation(live)
            half = order.size // 2
            first, second = order[:half], order[half : 2 * half]
            heads = rng.random(half) < 0.5
            payer = np.where(heads, first, second)
            payee = np.where(heads, second, first)
            if self.params.fixed_amount:
                amount = np.full(half, amount_max, dtype=np.int64)
            else:
                amount = rng.integers(0, amount_max + 1, size=half, dtype=np.int64)
            # The payer "has it" when its home replica lets it spend the amount.
            able = world.rights_at_home(self.ids[payer]) >= amount
            unaffordable += int((~able).sum())
            keep = able & (amount > 0)
            payer, payee, amount = payer[keep], payee[keep], amount[keep]
            paid = world.execute_by_home(OpKind.TRANSFER, self.ids[payer], self.ids[payee], amount)
            assert paid.all(), "the ledger refused a payment its payer's home replica allowed"
            self.exchanges[payer] += 1
            self.exchanges[payee] += 1
            tapes.append((self.ids[payer], self.ids[payee], amount))
        payers, payees, amounts = zip(*tapes, strict=True)
        self.tape_payer = np.concatenate(payers)
        self.tape_payee = np.concatenate(payees)
        self.tape_amount = np.concatenate(amounts)
        world.count(f"{self.name}/exchanges", int(self.tape_amount.size))
        world.count(f"{self.name}/unaffordable", unaffordable)
        world.count(f"{self.name}/volume_micro", int(self.tape_amount.sum()))
        world.gauge(f"{self.name}/gini", gini(world.rights_at_home(self.ids)))

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and each agent's count of payments made or received."""
        return {"alive": self.alive, "exchanges": self.exchanges}
