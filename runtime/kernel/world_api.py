"""What a population may use of the world it lives in: the other half of the agent API.

A role's ``setup(world)`` and ``step(world, tick)`` receive the
:class:`runtime.kernel.world.World`; this
protocol names the part of it a role may rely on, which ``tests/runtime/test_world_api.py`` checks
every built-in role keeps to. The rules that keep a role deterministic and replayable:

* draw randomness only from ``world.streams("population/<name>...")`` (named, seeded streams);
* move credits only through the ledger (``mint``, ``execute``, ``execute_by_home``), in integer
  micro-credits (``world.MICRO`` per credit);
* keep any float that reaches the state in a fixed order (numpy elementwise operations, numba loops
  without fastmath, :mod:`economy.portable_math` for exp/log/tanh and kin);
* keep the state in :meth:`Population.state_arrays` (hashed at checkpoints) and in plain
  attributes (saved at checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from economy.market import Market
    from economy.ops import OpKind
    from economy.rates import Rates
    from economy.reputation import BetaReputation
    from runtime.kernel.bus import MessageBus
    from runtime.kernel.health import HealthRecord
    from runtime.kernel.population import Population
    from runtime.kernel.rng import Streams
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.tasks import TaskBoard

Accounts = npt.NDArray[np.int64]
Amounts = npt.NDArray[np.int64]


class WorldAPI(Protocol):
    """The world as a population sees it."""

    MICRO: int  # micro-credits per credit
    tick: int  # the tick being run
    final_tick: int  # the run's last tick (always a checkpoint)
    base: Path  # the scenario's folder: files it names are relative to it
    device: str  # "cpu", or "cuda" where a role's network may run on a GPU
    scenario: Scenario
    streams: Streams  # streams("population/<name>") -> a named, seeded random stream
    market: Market  # prices per skill (int64 micro-credits)
    task_board: TaskBoard  # this tick's posted tasks
    reputation: BetaReputation
    health: HealthRecord  # ground truth of faults, for scoring healers
    populations: list[Population]
    params: dict[str, float]  # governed parameters: fee_rate, slash_fraction, price_elasticity
    rates: Rates  # earning rates: task unit, uptime
    network_compute: float  # CPU-hours of work done so far (the contribution curve's input)
    treasury: int  # the organisation's account
    reviewer: Population | None  # the population that reviews ledger batches, if any
    coordination: Any  # the oscillators and tension reading, or None
    bus: MessageBus  # subscribe(topic, handler) to receive messages sent with send()
    ledgers: list[Any]  # the replicas, for queries (rights_of, staked_of, balances)

    def mint(self, accounts: Accounts, amounts: Amounts, reason: str) -> None:
        """Create credits for accounts at their home replicas."""

    def execute(
        self, replica: int, kind: OpKind, accounts: Accounts, others: Accounts, amounts: Amounts
    ) -> npt.NDArray[np.bool_]:
        """Run a ledger batch (transfer, spend, stake, ...) at a replica; the accepted mask."""

    def execute_by_home(
        self, kind: OpKind, accounts: Accounts, others: Accounts, amounts: Amounts
    ) -> npt.NDArray[np.bool_]:
        """Run each entry at its account's home replica; the accepted mask."""

    def home(self, accounts: Accounts) -> Accounts:
        """Each account's home replica."""

    def rights_at_home(self, accounts: Accounts) -> Amounts:
        """What each account may spend at its home replica, micro-credits."""

    def count(self, name: str, n: int) -> None:
        """Add to this tick's counter ``name`` (a metrics column; money: ``..._micro``)."""

    def gauge(self, name: str, value: float) -> None:
        """Set this tick's gauge ``name`` (a metrics column; money: ``..._micro``)."""

    def emit(
        self,
        kind: str,
        subsystem: str,
        agent: int = -1,
        other: int = -1,
        amount: int = 0,
        value: float = 0.0,
        detail: str = "",
    ) -> None:
        """Record one event (``amount``: micro-credits, the ``amount_micro`` column)."""

    def emit_many(
        self,
        kind: str,
        subsystem: str,
        agent: Accounts,
        other: Accounts,
        amount: Amounts,
        value: npt.NDArray[np.float64],
        detail: str = "",
    ) -> None:
        """Record one event per element of the arrays."""

    def interact(self, a: Accounts, b: Accounts) -> None:
        """Record that agents traded (the interaction graph couples them)."""

    def send(self, src_agent: int, dst_agent: int, topic: str, payload: object) -> None:
        """Send a message between two agents over the bus."""


MEMBERS = frozenset(
    name for name in {*WorldAPI.__annotations__, *vars(WorldAPI)} if not name.startswith("_")
)
"""Every name of the protocol: what a role may use of the world."""
