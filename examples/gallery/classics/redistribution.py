"""Redistribution: a tax on every trade, paid back to everyone in equal shares.

In the random-exchange economy of Dragulescu and Yakovenko (2000) money settles into an
exponential distribution, with many agents near zero who cannot pay when they meet. A flat tax on
what each agent receives, handed back to all in equal shares, gives everyone a floor of income:
the bottom of the distribution fills in, the Gini coefficient falls below the exponential's ½,
and fewer meetings fail for want of money, so more money changes hands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agora import OpKind, Population, RoleParams
from classics import TAPE_FIELDS

if TYPE_CHECKING:
    from agora import PopulationConfig, Scenario, WorldAPI

PARTS = 1_000_000  # the tax rate is held in parts per million, so every levy is exact


class TaxAuthorityParams(RoleParams):
    """A tax authority's own keys."""

    taxes: str = Field(
        max_length=64,
        description="The population whose trades are taxed; it must "
        "publish a trade tape (tape_payer, tape_payee, tape_amount).",
    )
    pays: str | None = Field(
        None,
        max_length=64,
        description="The population paid equal shares (default: the taxed one).",
    )
    rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of each trade's amount the payee pays "
        "in tax (rounded down to a micro-credit).",
    )
    every: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="Ticks between payouts; each pays out "
        "everything collected, in equal shares rounded down (the rest waits).",
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"taxes", "pays"})


class TaxAuthority(Population):
    """One agent that taxes another population's trades and pays the proceeds out in equal shares.

    **Papers.** The exchange it taxes is Dragulescu and Yakovenko's (2000), "Statistical mechanics
    of money", *European Physical Journal B* 17, 723–729; Yakovenko and Rosser (2009),
    "Colloquium: statistical mechanics of money, wealth, and income", *Reviews of Modern Physics*
    81, 1703–1725, survey this family of exchange models.

    **Mechanism.** It steps after the traders (phase 5). Each tick it reads the taxed population's
    trade tape (:mod:`classics`) and has each payee pay ``rate`` of what it received, in
    micro-credits rounded down, to the authority's own account through the ledger. Every
    ``every`` ticks it pays its whole balance to the live agents of ``pays``, equal shares rounded
    down; what rounding leaves waits for the next payout. Credits are only moved, never made.

    **Result.** Against the same exchange without the tax (same seeds), the Gini coefficient of
    the agents' money falls and more meetings end in a payment, so volume rises.

    | key | meaning |
    | --- | --- |
    | ``count`` | 1: the authority's account |
    | ``taxes`` | the population whose trades are taxed |
    | ``pays`` | the population paid (default: ``taxes``) |
    | ``rate`` | tax on each trade, a share of its amount |
    | ``every`` | ticks between payouts |

    **Metrics** (per tick): ``<name>/levied_micro`` and ``<name>/paid_out_micro``,
    ``<name>/refused`` (levies the payee could no longer pay).
    """

    role: ClassVar[str] = "tax_authority"
    money_arrays: ClassVar[dict[str, str]] = {"levied": "micro", "paid_out": "micro"}
    Params: ClassVar[type[RoleParams]] = TaxAuthorityParams
    phase: ClassVar[int] = 5

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.levied = np.zeros(self.n, dtype=np.int64)  # micro-credits over the run
        self.paid_out = np.zeros(self.n, dtype=np.int64)
        self.rate_ppm = int(round(self.params.rate * PARTS))

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """One agent; ``taxes`` and ``pays`` name other populations of the scenario."""
        assert isinstance(params, TaxAuthorityParams)
        where = f"{label}: population[{index}]"
        names = [p.name for p in scenario.population]
        problems = []
        if scenario.population[index].count != 1:
            problems.append(
                f"{where}.count: a tax authority is one agent (its account); set count = 1"
            )
        for key in ("taxes", "pays"):
            name = getattr(params, key)
            if name is not None and (name not in names or name == scenario.population[index].name):
                problems.append(
                    f"{where}.{key}: names no other population; populations are {names}"
                )
        return problems

    def setup(self, world: WorldAPI) -> None:
        """Find the taxed and the paid populations; the taxed one must keep a trade tape."""
        self.taxed = self._named(world, self.params.taxes)
        self.paid = self._named(world, self.params.pays or self.params.taxes)
        missing = [f for f in TAPE_FIELDS if not hasattr(self.taxed, f)]
        if missing:
            raise TypeError(
                f"population {self.taxed.name!r} keeps no trade tape (no "
                f"{missing[0]}): a tax authority can only tax a role that publishes "
                "its trades"
            )

    def step(self, world: WorldAPI, tick: int) -> None:
        """Levy this tick's tax on the payees of the taxed trades; pay out on payout ticks."""
        payee = np.asarray(self.taxed.tape_payee, dtype=np.int64)
        amount = np.asarray(self.taxed.tape_amount, dtype=np.int64)
        assert payee.shape == amount.shape, "a trade tape has one payee per amount"
        tax = amount // PARTS * self.rate_ppm + amount % PARTS * self.rate_ppm // PARTS
        due = tax > 0
        account = np.full(int(due.sum()), self.ids[0], dtype=np.int64)
        paid = world.execute_by_home(OpKind.TRANSFER, payee[due], account, tax[due])
        levied = int(tax[due][paid].sum())
        self.levied[0] += levied
        world.count(f"{self.name}/levied_micro", levied)
        world.count(f"{self.name}/refused", int((~paid).sum()))
        world.count(f"{self.name}/paid_out_micro", 0)
        if (tick + 1) % self.params.every == 0:
            self._pay_out(world)

    def _pay_out(self, world: WorldAPI) -> None:
        """Pay the authority's whole balance in equal shares to the live agents of ``pays``."""
        live = self.paid.ids[self.paid.alive]
        held = int(world.rights_at_home(self.ids)[0])
        share = held // max(1, live.size)
        if share == 0:
            return
        sources = np.full(live.size, self.ids[0], dtype=np.int64)
        paid = world.execute_by_home(
            OpKind.TRANSFER, sources, live, np.full(live.size, share, dtype=np.int64)
        )
        assert paid.all(), "the authority paid out no more than it held"
        self.paid_out[0] += share * live.size
        world.count(f"{self.name}/paid_out_micro", share * live.size)

    @staticmethod
    def _named(world: WorldAPI, name: str) -> Population:
        found = [p for p in world.populations if p.name == name]
        assert len(found) == 1, f"population names are unique; {name!r} matched {len(found)}"
        return found[0]

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flag, credits levied and paid out over the run (micro-credits)."""
        return {"alive": self.alive, "levied": self.levied, "paid_out": self.paid_out}
