"""The World: a Mesa model whose clock is a SimPy environment.

One SimPy process drives the ticks. At each tick boundary the kernel applies the fault schedule,
steps every population once with array operations (in phase order), runs a ledger anti-entropy
round when due, writes the tick's events and metrics, and at checkpoints hashes each subsystem.
Between ticks the message bus delivers ledger ops and sync messages at their latency.

The World owns the clock and the tick loop and composes services, each in its own module:

* :class:`runtime.kernel.replication.Replication`: the ledger replicas, the ops they run and the
  gossip and anti-entropy messages that keep them in step;
* :class:`runtime.kernel.fault_schedule.FaultSchedule`: the scenario's faults by tick;
* :class:`runtime.kernel.telemetry.Telemetry`: events, counters, gauges, metrics rows, the state
  table and the subsystem hashes.

The methods a population calls on the world (:class:`runtime.kernel.world_api.WorldAPI`) are
thin delegates to those services.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import mesa
import numpy as np
import numpy.typing as npt
import simpy
from mesa.agent import AgentSet

from economy.ledger import Replica
from economy.market import Market
from economy.ops import OpKind
from economy.rates import MICRO, Rates
from economy.reputation import BetaReputation
from runtime.coordination.organisation import Organisation
from runtime.coordination.service import Coordination
from runtime.kernel import roles
from runtime.kernel.bus import Delivery, MessageBus
from runtime.kernel.clock import Clock, RealtimeClock, make_clock
from runtime.kernel.errors import RoleFailure, ScenarioError
from runtime.kernel.fault_schedule import FaultSchedule
from runtime.kernel.health import HealthRecord
from runtime.kernel.network import Network
from runtime.kernel.outside_inputs import OutsideInputs, read_outside_inputs
from runtime.kernel.population import Population
from runtime.kernel.replication import REVIEWED, Replication, ledger_keys
from runtime.kernel.rng import Streams
from runtime.kernel.scenario import EconomyConfig, Scenario
from runtime.kernel.tasks import TaskBoard
from runtime.kernel.telemetry import MetricsRow, Telemetry
from runtime.record.checkpoints import save_world, snapshot_name
from runtime.record.recorder import EventLog, MetricsLog
from runtime.record.state_log import StateLog, state_hash

__all__ = [
    "REVIEWED",
    "SETTLE_ROUNDS",
    "Checkpoint",
    "SettleOutcome",
    "World",
    "ledger_keys",
    "role_modules",
]

# Anti-entropy rounds a run's settle phase may take before it reports no convergence.
SETTLE_ROUNDS = 50


@dataclass(frozen=True)
class Checkpoint:
    """Hashes of every subsystem at the end of ``tick``."""

    tick: int
    hashes: dict[str, str]

    @property
    def state_hash(self) -> str:
        """One hash over all subsystems."""
        digest = hashlib.sha256()
        for name in sorted(self.hashes):
            digest.update(f"{name}={self.hashes[name]};".encode())
        return digest.hexdigest()


class SettleOutcome(TypedDict):
    """What :meth:`World.settle` found: the anti-entropy rounds it ran, whether every replica ended
    on one Merkle root, and how many distinct roots the replicas hold."""

    rounds: int
    converged: bool
    distinct_roots: int


def role_modules(scenario: Scenario, base: Path = Path(".")) -> tuple[str, ...]:
    """The modules of a scenario's role classes (those a checkpoint of its world may hold)."""
    return roles.role_modules([p.role for p in scenario.population], base)


def earning_rates(economy: EconomyConfig) -> Rates:
    """The earning rates of a scenario's economy, in micro-credits."""
    return Rates(
        task_unit=economy.task_unit_credits * MICRO,
        uptime_hour=economy.uptime_millicredits_per_hour * 1000,
    )


class World(mesa.Model):
    """A running scenario. ``step()`` advances one tick (Mesa convention); ``run(until)`` many."""

    MICRO = MICRO

    def __init__(
        self,
        scenario: Scenario,
        *,
        base: Path = Path("."),
        out: Path | None = None,
        seed: int | None = None,
        realtime: float | None = None,
        device: str = "cpu",
        shard: tuple[int, int] | None = None,
        key_secret: bytes | None = None,
    ) -> None:
        if scenario.world.engine != "exact":
            raise ScenarioError(
                [
                    f"world.engine: {scenario.world.engine!r} scenarios run with `agora run` and "
                    "`agora bench`; this World (serve, the environments, sharding) is the exact "
                    'engine: set engine = "exact" to use it here'
                ]
            )
        seed = scenario.world.seed if seed is None else seed
        super().__init__(seed=seed)
        self.scenario = scenario
        self.base = base  # the scenario's folder: files it names are relative to it
        # Where the roles' networks and the oscillators run: "cpu" (bit-for-bit replayable) or
        # "cuda".
        self.device = device
        self.seed = seed
        self._build_transport(shard, realtime)
        self._build_populations()
        self.replication = Replication(
            self, ledger_keys(self.network.n_regions, seed, key_secret), key_secret is not None
        )
        self._build_economy()
        self._build_run_state(out)
        self._build_governance()
        # A population that reviews ledger batches (a critic) sees every batch from the first on.
        self.reviewer: Population | None = next(
            (p for p in self.populations if p.reviews_batches), None
        )
        self._set_up_populations()

    # ------------------------------------------------------------------ building
    def _build_transport(self, shard: tuple[int, int] | None, realtime: float | None) -> None:
        """The shard this world is, its streams, clock, network and message bus."""
        # A shard (index, count) of a sharded world holds the agents whose region r has
        # r % count == index, and those regions' ledger replicas; runtime.scale.sharded drives
        # the shards and carries their messages.
        self.shard = shard if shard is not None and shard[1] > 1 else None
        prefix = f"shard{self.shard[0]}of{self.shard[1]}/" if self.shard else ""
        self.streams = Streams(self.seed, prefix)
        self.env: Clock | RealtimeClock = make_clock(0.0, realtime)
        self.network = Network.from_config(self.scenario.network, self.base)
        n_regions = self.network.n_regions
        bus = self.scenario.bus
        self.bus = MessageBus(
            self.env, self.network, self.streams("bus"), bus.loss, bus.duplication, bus.jitter
        )
        self.local_regions = [r for r in range(n_regions) if self._holds_region(r)]
        if self.shard is not None:
            self.bus.remote = frozenset(set(range(n_regions)) - set(self.local_regions))
        assert self.local_regions, "a shard holds at least one region"

    def _holds_region(self, region: int) -> bool:
        return self.shard is None or region % self.shard[1] == self.shard[0]

    def _build_populations(self) -> None:
        """Every population of the scenario (in a shard: the agents of its regions)."""
        n_regions = self.network.n_regions
        self.populations: list[Population] = []
        offset = 0
        for cfg in self.scenario.population:
            ids = np.arange(offset, offset + cfg.count, dtype=np.int64)
            if self.shard is not None:
                ids = ids[self._holds_region_of(ids)]
            self.populations.append(roles.resolve(cfg.role, self.base).cls(cfg, ids, n_regions))
            offset += cfg.count
        self.n_agents = offset
        self.treasury = offset  # one account past the agents: the organisation's treasury
        self.n_accounts = offset + 1

    def _holds_region_of(self, agents: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        assert self.shard is not None
        regions = agents % self.network.n_regions
        return cast(npt.NDArray[np.bool_], regions % self.shard[1] == self.shard[0])

    def _build_economy(self) -> None:
        """Earning rates, the market, reputation, the task board and the contribution input."""
        economy = self.scenario.economy
        self.rates = earning_rates(economy)
        self.market = Market(
            economy.n_skills,
            base_price=max(1, self.rates.task_unit),
            elasticity=economy.price_elasticity,
            max_step=economy.price_max_step,
        )
        self.reputation = BetaReputation(self.n_accounts)
        self.task_board = TaskBoard()
        self.network_compute = float(economy.network_compute_start)

    def _build_run_state(self, out: Path | None) -> None:
        """The tick counter, checkpoints, telemetry (with its logs when ``out`` is given), the
        fault schedule and the health record."""
        self.tick = 0
        # Always a checkpoint (a recorded run sets its own last tick).
        self.final_tick = self.scenario.world.ticks - 1
        self.checkpoints: list[Checkpoint] = []
        self.on_checkpoint: Callable[[Checkpoint], None] | None = None
        self.snapshots: Path | None = None  # a folder: the world is saved there at checkpoints
        self.settled: SettleOutcome | None = None  # the settle phase's outcome (settle)
        self._in_tick = False
        self._finish_tick = False  # restored from a checkpoint taken inside a tick: run() ends it
        self.telemetry = Telemetry(self)
        if out is not None:
            record = self.scenario.record
            self.log = EventLog(out / "events.arrows", record.flush_seconds)
            self.metrics = MetricsLog(out / "metrics.arrows", record.flush_seconds)
            if record.state:
                self.state_log = StateLog(out, record.flush_seconds)
        self.fault_schedule = FaultSchedule(self, self.scenario.fault)
        self.outside: OutsideInputs | None = None
        if self.scenario.record.outside_inputs is not None:
            path = self.base / self.scenario.record.outside_inputs
            try:
                self.outside = OutsideInputs(read_outside_inputs(path))
            except ValueError as exc:
                raise ScenarioError([f"record.outside_inputs: {exc}"]) from None
        self.health = HealthRecord()

    def _build_governance(self) -> None:
        """Governed parameters, the organisation and the oscillators, where the scenario has
        them."""
        governance = self.scenario.governance
        # Live parameters that governance may change (defaults when the scenario has none).
        self.params: dict[str, float] = {
            "fee_rate": governance.fee_rate if governance else 0.0,
            "slash_fraction": governance.slash_fraction if governance else 0.1,
            "price_elasticity": self.scenario.economy.price_elasticity,
        }
        scenario = self.scenario
        self.organisation: Organisation | None = None
        if governance is not None:
            self.organisation = Organisation(
                self, governance, scenario.proposal, scenario.vote, scenario.stake_event
            )
        self.coordination: Coordination | None = None
        if scenario.coordination is not None:
            self.coordination = Coordination(self, scenario.coordination)

    def _set_up_populations(self) -> None:
        for population in self.populations:
            try:
                population.setup(self)
            except ScenarioError:
                raise
            except Exception as exc:  # a role's own code failed while the world was built
                raise RoleFailure(population.name, population.cfg.role, -1) from exc
        if self.organisation is not None:
            self.organisation.setup()

    # ------------------------------------------------------------------ the clock
    def run(self, until: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Run ticks until tick ``until`` (exclusive; default: the scenario's ``ticks``).

        A world restored from a checkpoint goes on from there as the run it was saved from would
        have.
        """
        until = self.scenario.world.ticks if until is None else until
        resume, self._finish_tick = self._finish_tick, False
        if isinstance(self.env, RealtimeClock):
            self.env.sync()  # pace from now, not from when the world was built
        done = self.env.process(self._ticker(until, progress, resume))
        self.env.run(until=done)

    def step(self) -> None:
        """Run one tick."""
        self.run(self.tick + 1)

    def _ticker(
        self, until: int, progress: Callable[[int], None] | None, resume: bool
    ) -> Generator[simpy.Event, Any, None]:
        if resume:  # a checkpoint saved at the end of tick self.tick: finish that tick first
            yield from self._after_tick(until, progress)
        while self.tick < until:
            self._tick()
            yield from self._after_tick(until, progress)

    def settle(self, max_rounds: int = SETTLE_ROUNDS) -> SettleOutcome:
        """After the last tick: anti-entropy rounds, no new work, until every replica holds one
        Merkle root or ``max_rounds`` rounds have passed.

        Each round every replica asks every other for what it lacks and the clock runs until
        nothing is in flight (the bus keeps its loss and partitions: a partition still in place at
        the end cannot settle). Returns ``{"rounds", "converged", "distinct_roots"}``; each round
        is recorded as a ``settle`` event.
        """
        assert max_rounds >= 0
        self.env.run()  # what the last tick sent arrives first
        rounds = 0
        roots = self.distinct_roots()
        while roots > 1 and rounds < max_rounds:
            rounds += 1
            self.replication.anti_entropy()
            self.env.run()
            roots = self.distinct_roots()
            detail = f"round {rounds}: {roots} roots"
            self.emit("settle", "ledger", amount=rounds, value=float(roots), detail=detail)
        if self.log is not None:
            self.log.end_tick()
        assert roots >= 1 and rounds <= max_rounds
        return {"rounds": rounds, "converged": roots == 1, "distinct_roots": roots}

    def _after_tick(
        self, until: int, progress: Callable[[int], None] | None
    ) -> Generator[simpy.Event, Any, None]:
        self.tick += 1
        if self.coordination is not None and self.tick < until:
            # The next tick's oscillator steps, beside the bus deliveries between ticks.
            self.coordination.begin_tick(self.tick)
        if progress is not None:
            progress(self.tick)
        yield self.env.timeout(self.scenario.world.tick_length)

    def _tick(self) -> None:
        self._in_tick = True
        try:
            self._tick_body()
        finally:
            self._in_tick = False

    def _tick_body(self) -> None:
        tick = self.tick
        self.telemetry.begin_tick()
        if self.outside is not None:
            self.outside.apply_due(self, tick)
        self.fault_schedule.apply_due(tick)
        if self.organisation is not None:
            self.organisation.step(tick)
        if self.coordination is not None:
            self.coordination.begin_tick(tick)  # oscillator steps beside the populations
        self._step_populations(tick)
        self.reputation.step()
        if self.coordination is not None:
            self.coordination.step(tick)
        if tick % self.scenario.economy.anti_entropy_every == 0:
            self.replication.anti_entropy()
        self._write_metrics()
        self._end_tick(tick)

    def _step_populations(self, tick: int) -> None:
        """Step every population in phase order; record the tasks nobody took."""
        board = self.task_board
        board.clear()
        for population in sorted(self.populations, key=lambda p: p.phase):
            try:
                population.step(self, tick)
            except Exception as exc:  # a role's own code failed: say whose, and when
                raise RoleFailure(population.name, population.cfg.role, tick) from exc
        if len(board):
            skills = board.skill.astype(np.float64)
            self.emit_many(
                "task_expired", "board", board.requester, board.task_id, board.price, skills
            )

    def _end_tick(self, tick: int) -> None:
        """The state log, the checkpoint (when due) and the snapshot (when asked for)."""
        last = tick == self.final_tick
        checkpoint = (tick + 1) % self.scenario.world.checkpoint_every == 0 or last
        if self.state_log is not None:
            columns = self.state_table()
            self.emit("state_hash", "world", detail=state_hash(columns))
            self.state_log.write(tick, columns, full=checkpoint)
        if checkpoint:
            reached = Checkpoint(tick, self.hashes())
            self.checkpoints.append(reached)
            self.emit("checkpoint", "world", detail=reached.state_hash)
            if self.on_checkpoint is not None:
                self.on_checkpoint(reached)
        if self.log is not None:
            self.log.end_tick()
        if checkpoint and self.snapshots is not None:
            self.save_snapshot(self.snapshots / snapshot_name(tick))

    # ------------------------------------------------------------------ checkpoints
    # Not state: the clock (rebuilt from its time and the messages in flight), the callbacks of
    # whoever runs the world, Mesa's agent registry (Agora's agents live in arrays) and where the
    # scenario's files are (a replay reads them from its run directory). The open logs are the
    # telemetry's, which leaves them out itself.
    TRANSIENT = frozenset(
        {
            "env",
            "on_checkpoint",
            "snapshots",
            "base",
            "step",
            "_user_step",
            "_agents",
            "_agents_by_type",
            "_all_agents",
        }
    )

    def __getstate__(self) -> dict[str, object]:
        """The world's state for a snapshot (:mod:`runtime.record.checkpoints`), between ticks."""
        state = {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}
        in_flight = []
        for time, priority, event in self.env.pending():
            if isinstance(event, simpy.Process) and not event.is_alive:
                continue  # a finished run() of this world: nothing waits on it
            callbacks = event.callbacks or []
            if len(callbacks) != 1 or not isinstance(callbacks[0], Delivery):
                raise RuntimeError(
                    f"a checkpoint found an event other than a message in flight: {event!r}"
                )
            in_flight.append((time, priority, callbacks[0].msg))
        state["_clock"] = (float(self.env.now), in_flight)
        # Taken at the end of a tick: the restored world finishes it.
        state["_finish_tick"] = self._in_tick
        state["_in_tick"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Take up a snapshot's state: the clock at its time with its messages in flight again."""
        state = dict(state)
        now, in_flight = state.pop("_clock")
        self.__dict__.update(state)
        self.env = make_clock(now)
        self.bus.env = self.env
        self.replication.restore_keys(self.seed)
        for time, priority, msg in in_flight:
            self.env.call_at(time, priority, Delivery(self.bus, msg))
        self.on_checkpoint = None
        self.snapshots = None
        self.base = Path(".")
        self._user_step = World.step.__get__(self)  # what mesa.Model.__init__ sets up
        self.__dict__["step"] = self._wrapped_step
        self._agents, self._agents_by_type = {}, {}
        self._all_agents = AgentSet([], random=self.random)

    def use_keys(self, key_secret: bytes | None) -> None:
        """After a restore: a signed world's replicas take their keys from the run's key again (they
        are never saved); an unsigned world's came back from its seed and take none."""
        self.replication.use_keys(self.seed, key_secret)

    def reconfigure(self, scenario: Scenario) -> None:
        """Take up changed parameters mid-run (a fork).

        Of the bus, the market, earning rates, governance, coordination, each population's
        configuration and the fault schedule. Only what differs from the current scenario is
        applied, so live state (parameters governance changed, say) stays as it is. What a world
        is built from (populations, regions, seeds) must be unchanged; the caller checks that
        (:func:`runtime.record.resume.check_changes`).
        """
        old, economy = self.scenario, scenario.economy
        self.scenario = scenario
        if scenario.bus != old.bus:
            bus = scenario.bus
            self.bus.loss, self.bus.duplication, self.bus.jitter = (
                bus.loss,
                bus.duplication,
                bus.jitter,
            )
        if economy.price_elasticity != old.economy.price_elasticity:
            self.market.elasticity = self.params["price_elasticity"] = economy.price_elasticity
        self.market.max_step = economy.price_max_step
        self.rates = earning_rates(economy)
        governance, was = scenario.governance, old.governance
        if (
            governance is not None
            and was is not None
            and self.organisation is not None
            and governance != was
        ):
            for key in ("fee_rate", "slash_fraction"):
                if getattr(governance, key) != getattr(was, key):
                    self.params[key] = getattr(governance, key)
            self.organisation.reconfigure(governance, was)
        if scenario.coordination is not None and self.coordination is not None:
            self.coordination.reconfigure(scenario.coordination)
        configs = {cfg.name: cfg for cfg in scenario.population}
        for population in self.populations:
            population.cfg = configs[population.name]
        self.fault_schedule.reschedule(scenario.fault)

    def save_snapshot(self, path: Path) -> str:
        """Save the whole world to ``path`` (between ticks); return the file's SHA-256."""
        return save_world(self, path)

    # ------------------------------------------------------------------ services for populations
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
        """Record one event at the current tick."""
        self.telemetry.emit(kind, subsystem, agent, other, amount, value, detail)

    def emit_many(
        self,
        kind: str,
        subsystem: str,
        agent: npt.NDArray[np.int64],
        other: npt.NDArray[np.int64],
        amount: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        detail: str = "",
    ) -> None:
        """Record one event per element of the arrays."""
        self.telemetry.emit_many(kind, subsystem, agent, other, amount, value, detail)

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to this tick's counter ``name`` (a metrics column; money: ``..._micro``)."""
        self.telemetry.count(name, n)

    def gauge(self, name: str, value: float) -> None:
        """Set this tick's gauge ``name`` (a metrics column; money: ``..._micro``)."""
        self.telemetry.gauge(name, value)

    def home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Home region (ledger replica) of each account."""
        return self.replication.home(accounts)

    def rights_at_home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Spending rights each account's home replica holds for it."""
        return self.replication.rights_at_home(accounts)

    def execute(
        self,
        replica: int,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """Run a batch op at ``replica``, gossip it, record refusals; return the accepted mask."""
        return self.replication.execute(replica, kind, accounts, others, amounts)

    def execute_by_home(
        self,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """:meth:`execute` each entry at its account's home replica; return the accepted mask."""
        return self.replication.execute_by_home(kind, accounts, others, amounts)

    def mint(
        self, accounts: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64], reason: str
    ) -> None:
        """Create credits for ``accounts`` at their home replicas; one event per replica."""
        self.replication.mint(accounts, amounts, reason)

    def send(self, src_agent: int, dst_agent: int, topic: str, payload: object) -> None:
        """Send a message between two agents over the bus (their regions' latency, loss,
        partitions).

        Subscribe a handler first with ``world.bus.subscribe(topic, handler)``.
        """
        for agent in (src_agent, dst_agent):
            if not 0 <= agent < self.n_agents:
                raise ValueError(f"agent {agent} does not exist; agents are 0..{self.n_agents - 1}")
        n_regions = self.network.n_regions
        gain = 1.0
        if self.coordination is not None:
            pair_gain = self.coordination.gain(np.array([src_agent]), np.array([dst_agent]))
            gain = float(pair_gain[0])
        self.bus.send(
            src_agent % n_regions, dst_agent % n_regions, topic, payload, src_agent, dst_agent, gain
        )

    def anti_entropy_from(self, replica: int) -> None:
        """Replica ``replica`` asks every other replica for the changes it has not seen."""
        self.replication.anti_entropy_from(replica)

    def _anti_entropy(self) -> None:
        self.replication.anti_entropy()

    def interact(self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> None:
        """Record that agents ``a[i]`` and ``b[i]`` traded (the interaction graph couples them)."""
        if self.coordination is not None:
            self.coordination.interact(a, b)

    # ------------------------------------------------------------------ observation
    @property
    def ledgers(self) -> list[Replica]:
        """The ledger replicas by region. In a shard of a sharded world, a region another shard
        holds has None here (:attr:`local_ledgers` are the ones this world holds)."""
        return cast(list[Replica], self.replication.replicas)

    @property
    def local_ledgers(self) -> list[Replica]:
        """The replicas this world holds (all of them, except in a shard of a sharded world)."""
        return self.replication.local

    @property
    def refused_by_critic(self) -> int:
        """Entries a reviewer dropped before they reached a ledger."""
        return self.replication.refused_by_critic

    def distinct_roots(self) -> int:
        """How many different ledger states the (local) replicas hold (1 = converged)."""
        return self.replication.distinct_roots()

    def replica_lag(self) -> tuple[int, float]:
        """How far replicas trail the ops made, in ticks: the largest and the mean."""
        return self.replication.replica_lag()

    def hashes(self) -> dict[str, str]:
        """SHA-256 (hex) of each subsystem's state."""
        return self.telemetry.hashes()

    def state_table(self) -> dict[str, npt.NDArray[np.generic]]:
        """Per account: balance and stake at its home replica (int64 micro-credits), reputation
        mean, alive; the columns of :data:`runtime.record.state_log.COLUMNS`."""
        return self.telemetry.state_table()

    def _write_metrics(self) -> None:
        self.telemetry.write_metrics()

    # ------------------------------------------------------------------ recording
    @property
    def log(self) -> EventLog | None:
        """The run's event log, when the world records."""
        return self.telemetry.log

    @log.setter
    def log(self, log: EventLog | None) -> None:
        self.telemetry.log = log

    @property
    def metrics(self) -> MetricsLog | None:
        """The run's metrics table, when the world records."""
        return self.telemetry.metrics

    @metrics.setter
    def metrics(self, metrics: MetricsLog | None) -> None:
        self.telemetry.metrics = metrics

    @property
    def state_log(self) -> StateLog | None:
        """The run's per-account state log, when the scenario asks for one."""
        return self.telemetry.state_log

    @state_log.setter
    def state_log(self, state_log: StateLog | None) -> None:
        self.telemetry.state_log = state_log

    @property
    def metrics_history(self) -> list[MetricsRow] | None:
        """Every metrics row since a caller set this to a list (None: rows are not kept)."""
        return self.telemetry.metrics_history

    @metrics_history.setter
    def metrics_history(self, rows: list[MetricsRow] | None) -> None:
        self.telemetry.metrics_history = rows

    @property
    def last_metrics(self) -> MetricsRow:
        """The latest tick's metrics row."""
        return self.telemetry.last_metrics

    def close(self) -> None:
        """Flush and close the recording."""
        self.telemetry.close()
