"""The World: a Mesa model whose clock is a SimPy environment.

One SimPy process drives the ticks. At each tick boundary the kernel applies the fault schedule,
steps every population once with array operations (in phase order), runs a ledger anti-entropy
round when due, writes the tick's events and metrics, and at checkpoints hashes each subsystem.
Between ticks the message bus delivers ledger ops and sync messages at their latency.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mesa
import numpy as np
import numpy.typing as npt
import simpy
from mesa.agent import AgentSet

from economy.errors import DeltaRejected, OpRejected
from economy.ledger import Delta, Replica, rights_at_homes
from economy.market import Market
from economy.ops import Keyring, Op, OpKind
from economy.rates import MICRO, Rates
from economy.reputation import BetaReputation
from runtime.bus import Delivery, Message, MessageBus
from runtime.checkpoints import save_world, snapshot_name
from runtime.clock import Clock, RealtimeClock, make_clock
from runtime.coordination import Coordination
from runtime.health import HealthRecord
from runtime.network import Network
from runtime.organisation import Organisation
from runtime import roles
from runtime.errors import RoleFailure, ScenarioError
from runtime.population import Population
from runtime.recorder import EventLog, MetricsLog
from runtime.rng import Streams
from runtime.scenario import FaultConfig, Scenario
from runtime.state_log import StateLog, state_hash
from runtime.tasks import TaskBoard

# Batches that draw on what an account holds: a reviewing critic proves them before they execute.
SETTLE_ROUNDS = 50  # anti-entropy rounds a run's settle phase may take before it reports no convergence
REVIEWED = frozenset({OpKind.SPEND, OpKind.TRANSFER, OpKind.STAKE, OpKind.BURN, OpKind.UNSTAKE, OpKind.SLASH})


@dataclass(frozen=True)
class Checkpoint:
    """Hashes of every subsystem at the end of ``tick``."""

    tick: int
    hashes: dict[str, str]

    @property
    def state_hash(self) -> str:
        """One hash over all subsystems."""
        h = hashlib.sha256()
        for name in sorted(self.hashes):
            h.update(f"{name}={self.hashes[name]};".encode())
        return h.hexdigest()


def ledger_keys(n_regions: int, seed: int, key_secret: bytes | None) -> Keyring:
    """The replicas' op keys. A simulation derives them from its seed, so anyone who knows the seed
    can sign as any replica (fine for a model; a run in summary.json names its seed). A signed run
    (``agora run --sign-key``) derives them from its secret key, which never enters the run."""
    if key_secret is None:
        return Keyring.derive(n_regions, f"agora/{seed}".encode())
    return Keyring.derive(n_regions, hmac.new(key_secret, b"agora/ledger-keys", hashlib.sha256).digest())


def role_modules(scenario: Scenario, base: Path = Path(".")) -> tuple[str, ...]:
    """The modules of a scenario's role classes (those a checkpoint of its world may hold)."""
    return roles.role_modules([p.role for p in scenario.population], base)


class World(mesa.Model):
    """A running scenario. ``step()`` advances one tick (Mesa convention); ``run(until)`` many."""

    MICRO = MICRO

    def __init__(self, scenario: Scenario, *, base: Path = Path("."), out: Path | None = None,
                 seed: int | None = None, realtime: float | None = None, device: str = "cpu",
                 shard: tuple[int, int] | None = None, key_secret: bytes | None = None) -> None:
        seed = scenario.world.seed if seed is None else seed
        super().__init__(seed=seed)
        self.scenario = scenario
        self.base = base  # the scenario's folder: files it names are relative to it
        self.device = device  # where the roles' networks and the oscillators run: "cpu" (bit-for-bit replayable) or "cuda"
        self.seed = seed
        # A shard (k, K) of a sharded world holds the agents whose region r has r % K == k, and those
        # regions' ledger replicas; runtime.sharded drives the shards and carries their messages.
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self.streams = Streams(seed, f"shard{shard[0]}of{shard[1]}/" if self.shard else "")
        self.env: Clock | RealtimeClock = make_clock(0.0, realtime)
        self.network = Network.from_config(scenario.network, base)
        R = self.network.n_regions
        eco = scenario.economy
        self.bus = MessageBus(self.env, self.network, self.streams("bus"), scenario.bus.loss,
                              scenario.bus.duplication, scenario.bus.jitter)
        self.local_regions = [r for r in range(R) if self.shard is None or r % self.shard[1] == self.shard[0]]
        self.populations: list[Population] = []
        offset = 0
        for cfg in scenario.population:
            ids = np.arange(offset, offset + cfg.count, dtype=np.int64)
            if self.shard is not None:
                ids = ids[(ids % R) % self.shard[1] == self.shard[0]]
            self.populations.append(roles.resolve(cfg.role, base).cls(cfg, ids, R))
            offset += cfg.count
        self.n_agents = offset
        self.treasury = offset  # one account past the agents: the organisation's treasury
        self.n_accounts = offset + 1
        self._signed = key_secret is not None
        keyring = ledger_keys(R, seed, key_secret)
        # Replicas of regions held by other shards are None here.
        self.ledgers: list[Replica] = [Replica(r, R, self.n_accounts, keyring) if r in self.local_regions else None  # type: ignore[misc]
                                       for r in range(R)]
        if self.shard is not None:
            self.bus.remote = frozenset(set(range(R)) - set(self.local_regions))
        self.rates = Rates(task_unit=eco.task_unit_credits * MICRO, uptime_hour=eco.uptime_millicredits_per_hour * 1000)
        self.market = Market(eco.n_skills, base_price=max(1, self.rates.task_unit), elasticity=eco.price_elasticity,
                             max_step=eco.price_max_step)
        self.reputation = BetaReputation(self.n_accounts)
        self.task_board = TaskBoard()
        self.network_compute = float(eco.network_compute_start)
        self.tick = 0
        self.final_tick = scenario.world.ticks - 1  # always a checkpoint (a recorded run sets its own last tick)
        self.checkpoints: list[Checkpoint] = []
        self.on_checkpoint: Callable[[Checkpoint], None] | None = None
        self.log: EventLog | None = None
        self.metrics: MetricsLog | None = None
        self.state_log: StateLog | None = None
        self.snapshots: Path | None = None  # a folder: the whole world is saved there at each checkpoint
        self.settled: dict[str, object] | None = None  # the settle phase's outcome (:meth:`settle`)
        self.last_metrics: dict[str, int | float] = {}  # the latest tick's metrics row
        self.metrics_history: list[dict[str, int | float]] | None = None  # every row, when a caller asks
        self._in_tick = False
        self._finish_tick = False  # restored from a checkpoint taken inside a tick: run() finishes it
        if out is not None:
            self.log = EventLog(out / "events.arrows", scenario.record.flush_seconds)
            self.metrics = MetricsLog(out / "metrics.arrows", scenario.record.flush_seconds)
            if scenario.record.state:
                self.state_log = StateLog(out, scenario.record.flush_seconds)
        # Kernel counters exist from tick 0 so the metrics table has a fixed set of columns. A
        # counter or gauge that holds money names its unit: ``_micro`` (int64 micro-credits).
        self._counters: dict[str, int] = {"minted_micro": 0, "ops_refused": 0,
                                          "sync_rows_changed": 0}
        self._gauges: dict[str, float] = {}
        self._roots = 1
        self._faults = self._expand_faults(scenario.fault)
        self.health = HealthRecord()
        self._degraded_sets: dict[int, npt.NDArray[np.int64]] = {}
        # Live parameters that governance may change (defaults when the scenario has none).
        gov = scenario.governance
        self.params: dict[str, float] = {
            "fee_rate": gov.fee_rate if gov else 0.0,
            "slash_fraction": gov.slash_fraction if gov else 0.1,
            "price_elasticity": eco.price_elasticity,
        }
        self.organisation: Organisation | None = None
        if gov is not None:
            self.organisation = Organisation(self, gov, scenario.proposal, scenario.vote, scenario.stake_event)
        self.coordination: Coordination | None = None
        if scenario.coordination is not None:
            self.coordination = Coordination(self, scenario.coordination)
        self.bus.subscribe("op", self._on_op)
        self.bus.subscribe("sync_request", self._on_sync_request)
        self.bus.subscribe("sync_delta", self._on_sync_delta)
        # A population that reviews ledger batches (a critic) sees every batch from the first one on.
        self.reviewer: Population | None = next((p for p in self.populations if p.reviews_batches), None)
        self.refused_by_critic = 0  # entries a reviewer dropped before they reached a ledger
        self._op_ticks: list[list[int]] = [[] for _ in range(R)]
        for pop in self.populations:
            try:
                pop.setup(self)
            except ScenarioError:
                raise
            except Exception as exc:  # a role's own code failed while the world was built
                raise RoleFailure(pop.name, pop.cfg.role, -1) from exc
        if self.organisation is not None:
            self.organisation.setup()

    # ------------------------------------------------------------------ the clock
    def run(self, until: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Run ticks until tick ``until`` (exclusive; default: the scenario's ``ticks``).

        A world restored from a checkpoint goes on from there as the run it was saved from would have.
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

    def _ticker(self, until: int, progress: Callable[[int], None] | None, resume: bool):  # type: ignore[no-untyped-def]
        if resume:  # a checkpoint saved at the end of tick self.tick: finish that tick first
            yield from self._after_tick(until, progress)
        while self.tick < until:
            self._tick()
            yield from self._after_tick(until, progress)

    def settle(self, max_rounds: int = SETTLE_ROUNDS) -> dict[str, object]:
        """After the last tick: anti-entropy rounds, no new work, until every replica holds one
        Merkle root or ``max_rounds`` rounds have passed. Each round every replica asks every other
        for what it lacks and the clock runs until nothing is in flight (the bus keeps its loss and
        partitions: a partition still in place at the end cannot settle). Returns ``{"rounds",
        "converged", "distinct_roots"}``; each round is recorded as a ``settle`` event."""
        assert max_rounds >= 0
        self.env.run()  # what the last tick sent arrives first
        rounds = 0
        roots = self.distinct_roots()
        while roots > 1 and rounds < max_rounds:
            rounds += 1
            self._anti_entropy()
            self.env.run()
            roots = self.distinct_roots()
            self.emit("settle", "ledger", amount=rounds, value=float(roots), detail=f"round {rounds}: {roots} roots")
        if self.log is not None:
            self.log.end_tick()
        return {"rounds": rounds, "converged": roots == 1, "distinct_roots": roots}

    def _after_tick(self, until: int, progress: Callable[[int], None] | None):  # type: ignore[no-untyped-def]
        self.tick += 1
        if self.coordination is not None and self.tick < until:
            self.coordination.begin_tick(self.tick)  # next tick's steps, beside the bus deliveries between ticks
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
        t = self.tick
        self._counters = dict.fromkeys(self._counters, 0)
        for fault in self._faults.get(t, []):
            self._apply_fault(fault)
        if self.organisation is not None:
            self.organisation.step(t)
        if self.coordination is not None:
            self.coordination.begin_tick(t)  # oscillator steps beside the populations, where they may
        self.task_board.clear()
        for pop in sorted(self.populations, key=lambda p: p.phase):
            try:
                pop.step(self, t)
            except Exception as exc:  # a role's own code failed: say whose, and when
                raise RoleFailure(pop.name, pop.cfg.role, t) from exc
        if len(self.task_board):
            self.emit_many("task_expired", "board", self.task_board.requester, self.task_board.task_id,
                           self.task_board.price, self.task_board.skill.astype(np.float64))
        self.reputation.step()
        if self.coordination is not None:
            self.coordination.step(t)
        if t % self.scenario.economy.anti_entropy_every == 0:
            self._anti_entropy()
        self._write_metrics()
        last = t == self.final_tick
        checkpoint = (t + 1) % self.scenario.world.checkpoint_every == 0 or last
        if self.state_log is not None:
            cols = self.state_table()
            self.emit("state_hash", "world", detail=state_hash(cols))
            self.state_log.write(t, cols, full=checkpoint)
        if checkpoint:
            cp = Checkpoint(t, self.hashes())
            self.checkpoints.append(cp)
            self.emit("checkpoint", "world", detail=cp.state_hash)
            if self.on_checkpoint is not None:
                self.on_checkpoint(cp)
        if self.log is not None:
            self.log.end_tick()
        if checkpoint and self.snapshots is not None:
            self.save_snapshot(self.snapshots / snapshot_name(t))

    # ------------------------------------------------------------------ checkpoints
    # Not state: the clock (rebuilt from its time and the messages in flight), the open logs, the
    # callbacks of whoever runs the world, Mesa's agent registry (Agora's agents live in arrays)
    # and where the scenario's files are (a replay reads them from its run directory).
    TRANSIENT = frozenset({"env", "log", "metrics", "state_log", "on_checkpoint", "snapshots", "base",
                           "step", "_user_step", "_agents", "_agents_by_type", "_all_agents",
                           "metrics_history"})

    def __getstate__(self) -> dict[str, object]:
        """The world's state for a snapshot (:mod:`runtime.checkpoints`), between ticks."""
        state = {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}
        in_flight = []
        for time, priority, event in self.env.pending():
            if isinstance(event, simpy.Process) and not event.is_alive:
                continue  # a finished run() of this world: nothing waits on it
            callbacks = event.callbacks or []
            if len(callbacks) != 1 or not isinstance(callbacks[0], Delivery):
                raise RuntimeError(f"a checkpoint found an event other than a message in flight: {event!r}")
            in_flight.append((time, priority, callbacks[0].msg))
        state["_clock"] = (float(self.env.now), in_flight)
        state["_finish_tick"] = self._in_tick  # taken at the end of a tick: the restored world finishes it
        state["_in_tick"] = False
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Take up a snapshot's state: the clock at its time with its messages in flight again."""
        state = dict(state)
        now, in_flight = state.pop("_clock")  # type: ignore[misc]
        self.__dict__.update(state)
        self.env = make_clock(now)
        self.bus.env = self.env
        keyring = None if self._signed else ledger_keys(self.network.n_regions, self.seed, None)
        for ledger in self.local_ledgers:
            ledger.keyring = keyring  # type: ignore[assignment]  # a signed run's: see use_keys
        for time, priority, msg in in_flight:
            self.env.call_at(time, priority, Delivery(self.bus, msg))
        self.log = self.metrics = self.state_log = None
        self.metrics_history = None
        self.on_checkpoint = None
        self.snapshots = None
        self.base = Path(".")
        self._user_step = World.step.__get__(self)  # what mesa.Model.__init__ sets up
        self.step = self._wrapped_step  # type: ignore[method-assign]
        self._agents, self._agents_by_type = {}, {}
        self._all_agents = AgentSet([], random=self.random)

    def use_keys(self, key_secret: bytes | None) -> None:
        """After a restore: a signed world's replicas take their keys from the run's key again (they
        are never saved); an unsigned world's came back from its seed and take none."""
        if self._signed != (key_secret is not None):
            raise ValueError("a signed run's world needs its key; an unsigned one takes none")
        if key_secret is not None:
            keyring = ledger_keys(self.network.n_regions, self.seed, key_secret)
            for ledger in self.local_ledgers:
                ledger.keyring = keyring

    def reconfigure(self, scenario: Scenario) -> None:
        """Take up changed parameters mid-run (a fork): of the bus, the market, earning rates,
        governance, coordination, each population's configuration and the fault schedule. Only what
        differs from the current scenario is applied, so live state (parameters governance changed,
        say) stays as it is. What a world is built from (populations, regions, seeds) must be
        unchanged; the caller checks that (:func:`runtime.resume.check_changes`)."""
        old, eco = self.scenario, scenario.economy
        self.scenario = scenario
        if scenario.bus != old.bus:
            self.bus.loss, self.bus.duplication, self.bus.jitter = (scenario.bus.loss, scenario.bus.duplication,
                                                                    scenario.bus.jitter)
        if eco.price_elasticity != old.economy.price_elasticity:
            self.market.elasticity = self.params["price_elasticity"] = eco.price_elasticity
        self.market.max_step = eco.price_max_step
        self.rates = Rates(task_unit=eco.task_unit_credits * MICRO, uptime_hour=eco.uptime_millicredits_per_hour * 1000)
        gov, was = scenario.governance, old.governance
        if gov is not None and was is not None and self.organisation is not None and gov != was:
            for key in ("fee_rate", "slash_fraction"):
                if getattr(gov, key) != getattr(was, key):
                    self.params[key] = getattr(gov, key)
            self.organisation.reconfigure(gov, was)
        if scenario.coordination is not None and self.coordination is not None:
            self.coordination.reconfigure(scenario.coordination)
        configs = {cfg.name: cfg for cfg in scenario.population}
        for pop in self.populations:
            pop.cfg = configs[pop.name]
        self._faults = self._expand_faults(scenario.fault)

    def save_snapshot(self, path: Path) -> str:
        """Save the whole world to ``path`` (between ticks); return the file's SHA-256."""
        return save_world(self, path)

    # ------------------------------------------------------------------ services for populations
    def emit(self, kind: str, subsystem: str, agent: int = -1, other: int = -1, amount: int = 0,
             value: float = 0.0, detail: str = "") -> None:
        """Record one event at the current tick."""
        if self.log is not None:
            self.log.emit(self.tick, float(self.env.now), kind, subsystem, agent, other, amount, value, detail)

    def emit_many(self, kind: str, subsystem: str, agent: npt.NDArray[np.int64], other: npt.NDArray[np.int64],
                  amount: npt.NDArray[np.int64], value: npt.NDArray[np.float64], detail: str = "") -> None:
        """Record one event per element of the arrays."""
        if self.log is not None:
            self.log.emit_many(self.tick, float(self.env.now), kind, subsystem, agent, other, amount, value, detail)

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to this tick's counter ``name`` (a metrics column; money: ``..._micro``)."""
        self._counters[name] = self._counters.get(name, 0) + int(n)

    def gauge(self, name: str, value: float) -> None:
        """Set this tick's gauge ``name`` (a metrics column; money: ``..._micro``)."""
        self._gauges[name] = float(value)

    def home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Home region (ledger replica) of each account."""
        return accounts % self.network.n_regions

    def rights_at_home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Spending rights each account's home replica holds for it."""
        if all(ledger is not None for ledger in self.ledgers):  # every replica here: one kernel pass
            return rights_at_homes(self.ledgers, accounts)
        out = np.zeros(len(accounts), dtype=np.int64)
        homes = self.home(accounts)
        for r, ledger in enumerate(self.ledgers):
            sel = homes == r
            if sel.any():
                out[sel] = ledger.rights_of(accounts[sel])
        return out

    def execute(self, replica: int, kind: OpKind, accounts: npt.NDArray[np.int64], others: npt.NDArray[np.int64],
                amounts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Run a batch op at ``replica``, gossip it, record refusals; return the accepted mask."""
        accepted = np.ones(len(accounts), dtype=np.bool_)
        if len(accounts) == 0:
            return accepted
        if self.reviewer is not None and kind in REVIEWED:
            # A critic reviews the batch before it executes; what it drops never reaches the ledger.
            keep, reason = self.reviewer.review_batch(self, replica, kind, accounts, others, amounts)
            if not keep.all():
                for index in np.flatnonzero(~keep).tolist():
                    self.emit("op_refused", f"ledger/{replica}", int(accounts[index]), int(others[index]),
                              int(amounts[index]), detail=f"{kind.name.lower()}: critic: {reason}")
                self.count("ops_refused", int((~keep).sum()))
                self.refused_by_critic += int((~keep).sum())
                accepted = keep.copy()
                if not keep.any():
                    return accepted
                accounts, others, amounts = accounts[keep], others[keep], amounts[keep]
            index_map = np.flatnonzero(keep)
        else:
            index_map = np.arange(len(accounts))
        op, refused = self.ledgers[replica].execute(kind, accounts, others, amounts)
        for index, reason in refused:
            accepted[index_map[index]] = False
            self.emit("op_refused", f"ledger/{replica}", int(accounts[index]), int(others[index]),
                      int(amounts[index]), detail=f"{kind.name.lower()}: {reason}")
        self.count("ops_refused", len(refused))
        if op is not None:
            self._gossip(replica, op)
        return accepted

    def execute_by_home(self, kind: OpKind, accounts: npt.NDArray[np.int64], others: npt.NDArray[np.int64],
                        amounts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """:meth:`execute` each entry at its account's home replica; return the accepted mask."""
        accepted = np.ones(len(accounts), dtype=np.bool_)
        homes = self.home(accounts)
        for r in range(len(self.ledgers)):
            sel = np.flatnonzero(homes == r)
            if sel.size:
                accepted[sel] = self.execute(r, kind, accounts[sel], others[sel], amounts[sel])
        return accepted

    def mint(self, accounts: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64], reason: str) -> None:
        """Create credits for ``accounts`` at their home replicas; one event per replica."""
        keep = amounts > 0
        accounts, amounts = accounts[keep], amounts[keep]
        homes = self.home(accounts)
        for r in range(len(self.ledgers)):
            sel = homes == r
            if sel.any():
                self.execute(r, OpKind.MINT, accounts[sel], np.zeros(int(sel.sum()), np.int64), amounts[sel])
                self.emit("minted", f"ledger/{r}", amount=int(amounts[sel].sum()), value=float(sel.sum()), detail=reason)
        self.count("minted_micro", int(amounts.sum()))

    def send(self, src_agent: int, dst_agent: int, topic: str, payload: object) -> None:
        """Send a message between two agents over the bus (their regions' latency, loss, partitions).

        Subscribe a handler first with ``world.bus.subscribe(topic, handler)``.
        """
        for agent in (src_agent, dst_agent):
            if not 0 <= agent < self.n_agents:
                raise ValueError(f"agent {agent} does not exist; agents are 0..{self.n_agents - 1}")
        R = self.network.n_regions
        gain = 1.0
        if self.coordination is not None:
            gain = float(self.coordination.gain(np.array([src_agent]), np.array([dst_agent]))[0])
        self.bus.send(src_agent % R, dst_agent % R, topic, payload, src_agent, dst_agent, gain)

    # ------------------------------------------------------------------ replication over the bus
    def _gossip(self, origin: int, op: Op) -> None:
        self._op_ticks[origin].append(self.tick)  # op `seq` of `origin` was made at _op_ticks[origin][seq - 1]
        for dst in range(len(self.ledgers)):
            if dst != origin:
                self.bus.send(origin, dst, "op", op)

    def _on_op(self, msg: Message) -> None:
        try:
            self.ledgers[msg.dst].receive(msg.payload)
        except OpRejected as exc:
            self.emit("op_rejected", f"ledger/{msg.dst}", detail=str(exc))

    def _anti_entropy(self) -> None:
        for a in self.local_regions:
            self.anti_entropy_from(a)

    def anti_entropy_from(self, replica: int) -> None:
        """Replica ``replica`` asks every other replica for the changes it has not seen."""
        for b in range(len(self.ledgers)):
            if b != replica:
                self.bus.send(replica, b, "sync_request", self.ledgers[replica].synced_from.get(b, 0))

    def interact(self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> None:
        """Record that agents ``a[i]`` and ``b[i]`` traded (the interaction graph couples them)."""
        if self.coordination is not None:
            self.coordination.interact(a, b)

    def _on_sync_request(self, msg: Message) -> None:
        self.bus.send(msg.dst, msg.src, "sync_delta", self.ledgers[msg.dst].delta_since(int(msg.payload)))

    def _on_sync_delta(self, msg: Message) -> None:
        delta: Delta = msg.payload
        try:
            changed = self.ledgers[msg.dst].merge_delta(delta)
        except DeltaRejected as exc:  # a forged or altered delta: refused, recorded, nothing merged
            self.emit("delta_rejected", f"ledger/{msg.dst}", detail=str(exc))
            return
        self.count("sync_rows_changed", changed)

    # ------------------------------------------------------------------ faults
    def _expand_faults(self, faults: list[FaultConfig]) -> dict[int, list[tuple[str, int, FaultConfig]]]:
        out: dict[int, list[tuple[str, int, FaultConfig]]] = {}
        for i, f in enumerate(faults):
            out.setdefault(f.at, []).append(("do", i, f))
            if f.duration is not None:
                out.setdefault(f.at + f.duration, []).append(("undo", i, f))
        return out

    def _apply_fault(self, action: tuple[str, int, FaultConfig]) -> None:
        mode, index, f = action
        kind = f.kind
        if kind == "byzantine":  # begin byzantine: traffic the ledger must refuse, made elsewhere
            from runtime.byzantine import inject

            inject(self, index, f)
            return  # end byzantine
        if kind == "degrade":
            self._degrade(index, f, mode == "do")
            return
        if mode == "undo":
            kind = {"crash": "restart", "restart": "crash", "partition": "heal", "heal": "heal", "loss_burst": "loss_end"}[kind]
        if kind in ("crash", "restart"):
            pop = next(p for p in self.populations if p.name == f.population)
            k = math.ceil(f.fraction * pop.n)
            # A crash is a fault episode per agent it takes down, until a restart (scheduled or a healer's).
            for i in range(k):
                if kind == "crash" and pop.alive[i]:
                    self.health.start(int(pop.ids[i]), self.tick)
                elif kind == "restart":
                    self.health.end(int(pop.ids[i]), self.tick, "fault ended")
            pop.alive[:k] = kind == "restart"
            self.emit("fault", pop.name, amount=k, detail=f"{kind} {k} of {pop.n}")
        elif kind == "partition":
            self.network.partition(f.groups)
            self.emit("fault", "network", detail=f"partition {f.groups}")
        elif kind == "heal":
            self.network.heal()
            self.emit("fault", "network", detail="heal")
        elif kind == "loss_burst":
            self.bus.loss = f.loss
            self.emit("fault", "bus", value=f.loss, detail=f"loss burst {f.loss}")
        elif kind == "loss_end":
            self.bus.loss = self.scenario.bus.loss
            self.emit("fault", "bus", value=self.bus.loss, detail="loss burst ends")

    def _degrade(self, index: int, f: FaultConfig, start: bool) -> None:
        """Degrade a seeded random subset of a population (its tasks fail with ``severity``), or end it."""
        pop = next(p for p in self.populations if p.name == f.population)
        k = math.ceil(f.fraction * pop.n)
        if start:
            chosen = np.sort(self.streams(f"faults/{index}").choice(pop.n, size=k, replace=False))
            self._degraded_sets[index] = chosen
        else:
            chosen = self._degraded_sets.pop(index)
        if start:
            pop.degraded[chosen] = f.severity
            for i in chosen.tolist():
                self.health.start(int(pop.ids[i]), self.tick)
            self.emit("fault", pop.name, amount=k, value=f.severity, detail=f"degrade {k} of {pop.n}")
        else:
            still = [i for i in chosen.tolist() if self.health.degraded(int(pop.ids[i]))]
            pop.degraded[still] = 0.0
            for i in still:
                self.health.end(int(pop.ids[i]), self.tick, "fault ended")
            self.emit("fault", pop.name, amount=len(still), detail=f"degrade ends for {len(still)}")

    # ------------------------------------------------------------------ observation
    @property
    def local_ledgers(self) -> list[Replica]:
        """The replicas this world holds (all of them, except in a shard of a sharded world)."""
        return [self.ledgers[r] for r in self.local_regions]

    def distinct_roots(self) -> int:
        """How many different ledger states the (local) replicas hold (1 = converged)."""
        return len({ledger.root() for ledger in self.local_ledgers})

    def hashes(self) -> dict[str, str]:
        """SHA-256 (hex) of each subsystem's state."""
        out = {f"ledger/{r}": self.ledgers[r].root().hex() for r in self.local_regions}
        for pop in self.populations:
            out[f"population/{pop.name}"] = pop.digest().hex()
        out["market"] = hashlib.sha256(self.market.prices.tobytes()).hexdigest()
        out["reputation"] = hashlib.sha256(self.reputation.alpha.tobytes() + self.reputation.beta.tobytes()).hexdigest()
        out["board"] = self.task_board.digest().hex()
        out["rng"] = self.streams.state_digest().hex()
        out["bus"] = hashlib.sha256(repr(sorted(self.bus.counts.items())).encode()).hexdigest()
        if self.organisation is not None:
            out["governance"] = self.organisation.digest().hex()
        if self.coordination is not None:
            out["coordination"] = self.coordination.digest().hex()
        out["network"] = hashlib.sha256(self.network.component.tobytes() + repr(self.network_compute).encode()).hexdigest()
        return out

    def replica_lag(self) -> tuple[int, float]:
        """How far replicas trail the ops made: over every (replica, origin) pair, the age in ticks of
        the oldest op of that origin the replica has not applied yet (0 when it has them all); the
        largest and the mean."""
        lags = []
        for ledger in self.local_ledgers:
            for origin, made in enumerate(self._op_ticks):
                if origin not in self.local_regions:
                    continue  # another shard made those ops; their ticks are not known here
                applied = int(ledger.clock[origin])
                lags.append(self.tick - made[applied] if applied < len(made) else 0)
        return (max(lags), float(np.mean(lags))) if lags else (0, 0.0)

    def state_table(self) -> dict[str, npt.NDArray[np.generic]]:
        """Per account: balance and stake at its home replica (int64 micro-credits), reputation
        mean, alive (treasury: alive); the columns of :data:`runtime.state_log.COLUMNS`."""
        homes = self.home(np.arange(self.n_accounts, dtype=np.int64))
        balance = np.zeros(self.n_accounts, dtype=np.int64)
        stake = np.zeros(self.n_accounts, dtype=np.int64)
        for r, ledger in enumerate(self.ledgers):
            ledger = ledger if ledger is not None else self.local_ledgers[0]  # another shard's accounts, as seen here
            sel = homes == r
            balance[sel] = ledger.balances()[sel]
            stake[sel] = ledger.staked()[sel]
        alive = np.ones(self.n_accounts, dtype=np.bool_)
        for pop in self.populations:
            alive[pop.ids] = pop.alive
        rep = self.reputation
        return {"balance_micro": balance, "stake_micro": stake,
                "reputation": rep.alpha / (rep.alpha + rep.beta), "alive": alive}

    def _write_metrics(self) -> None:
        held, issued = self.local_ledgers[0].supply()
        # Replica agreement every tick for worlds up to 200k accounts (one Merkle root per replica),
        # at checkpoints above that.
        if self.n_accounts <= 200_000 or self.tick % self.scenario.world.checkpoint_every == 0:
            self._roots = self.distinct_roots()
        row: dict[str, int | float] = {"tick": self.tick, "time": float(self.env.now)}
        row.update(sorted(self._counters.items()))
        row.update(sorted(self._gauges.items()))
        row.update({
            "alive": int(sum(int(p.alive.sum()) for p in self.populations)),
            "supply_held_micro": held, "supply_issued_micro": issued,
            "mean_price_micro": float(self.market.prices.mean()),
            **{f"price_{k}_micro": int(p) for k, p in enumerate(self.market.prices)},
            "msgs_sent": self.bus.counts["sent"], "msgs_lost": self.bus.counts["lost"],
            "msgs_blocked": self.bus.counts["blocked"], "msgs_duplicated": self.bus.counts["duplicated"],
            "ops_pending": int(sum(ledger.pending for ledger in self.local_ledgers)),
            "reputation_accuracy": float(self.reputation.accuracy) if self.reputation.predictions else 0.0,
            "fee_rate": float(self.params["fee_rate"]),
        })
        row["distinct_roots"] = self._roots
        row["replica_lag_max"], row["replica_lag_mean"] = self.replica_lag()
        self.last_metrics = row
        if self.metrics_history is not None:
            self.metrics_history.append(row)
        if self.metrics is not None:
            self.metrics.write(row)

    def close(self) -> None:
        """Flush and close the recording."""
        if self.log is not None:
            self.log.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.state_log is not None:
            self.state_log.close()
