"""What a world tells about itself: events, per-tick counters and gauges, the metrics row, the
state table and the subsystem hashes.

Events go to the run's event log and metrics rows to its metrics table, when the world records
(``log``/``metrics``/``state_log`` are None otherwise). Neither the open logs nor the rows kept
for a caller are state: a snapshot leaves them out, and whoever restores a world opens them again.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from runtime.kernel.world import World
    from runtime.record.recorder import EventLog, MetricsLog
    from runtime.record.state_log import StateLog

MetricsRow = dict[str, int | float]

# Replica agreement (one Merkle root per replica) is measured every tick for worlds up to this
# many accounts, and at checkpoints above it.
ROOTS_EVERY_TICK_MAX_ACCOUNTS = 200_000

# Kernel counters exist from tick 0 so the metrics table has a fixed set of columns. A counter or
# gauge that holds money names its unit: ``_micro`` (int64 micro-credits).
KERNEL_COUNTERS = ("minted_micro", "ops_refused", "sync_rows_changed")


class Telemetry:
    """A world's events, counters, gauges and metrics rows, and the digests of its state."""

    # Open files and rows kept for a caller: rebuilt, never saved.
    TRANSIENT = frozenset({"log", "metrics", "state_log", "metrics_history"})

    def __init__(self, world: World) -> None:
        self.world = world
        self.log: EventLog | None = None
        self.metrics: MetricsLog | None = None
        self.state_log: StateLog | None = None
        self.counters: dict[str, int] = dict.fromkeys(KERNEL_COUNTERS, 0)
        self.gauges: dict[str, float] = {}
        self.distinct_roots = 1  # the latest measure of replica agreement
        self.last_metrics: MetricsRow = {}  # the latest tick's metrics row
        self.metrics_history: list[MetricsRow] | None = None  # every row, when a caller asks

    def __getstate__(self) -> dict[str, Any]:
        """The telemetry's state for a snapshot: counters and the latest row, no open files."""
        return {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Take up a snapshot's state, with nothing recording until a caller opens the logs."""
        self.__dict__.update(state)
        self.log = self.metrics = self.state_log = None
        self.metrics_history = None

    # ------------------------------------------------------------------ events
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
        if self.log is not None:
            world = self.world
            self.log.emit(
                world.tick,
                float(world.env.now),
                kind,
                subsystem,
                agent,
                other,
                amount,
                value,
                detail,
            )

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
        if self.log is not None:
            world = self.world
            self.log.emit_many(
                world.tick,
                float(world.env.now),
                kind,
                subsystem,
                agent,
                other,
                amount,
                value,
                detail,
            )

    # ------------------------------------------------------------------ metrics
    def count(self, name: str, n: int) -> None:
        """Add ``n`` to this tick's counter ``name`` (a metrics column; money: ``..._micro``)."""
        self.counters[name] = self.counters.get(name, 0) + int(n)

    def gauge(self, name: str, value: float) -> None:
        """Set this tick's gauge ``name`` (a metrics column; money: ``..._micro``)."""
        self.gauges[name] = float(value)

    def begin_tick(self) -> None:
        """Zero the counters (every counter seen so far stays a column)."""
        self.counters = dict.fromkeys(self.counters, 0)

    def write_metrics(self) -> MetricsRow:
        """Make, keep and write the tick's metrics row; return it."""
        world = self.world
        ledgers = world.replication.local
        held, issued = ledgers[0].supply()
        if (
            world.n_accounts <= ROOTS_EVERY_TICK_MAX_ACCOUNTS
            or world.tick % world.scenario.world.checkpoint_every == 0
        ):
            self.distinct_roots = world.replication.distinct_roots()
        prices = world.market.prices
        bus_counts = world.bus.counts
        reputation = world.reputation
        row: MetricsRow = {"tick": world.tick, "time": float(world.env.now)}
        row.update(sorted(self.counters.items()))
        row.update(sorted(self.gauges.items()))
        row.update(
            {
                "alive": int(sum(int(p.alive.sum()) for p in world.populations)),
                "supply_held_micro": held,
                "supply_issued_micro": issued,
                "mean_price_micro": float(prices.mean()),
                **{f"price_{skill}_micro": int(price) for skill, price in enumerate(prices)},
                "msgs_sent": bus_counts["sent"],
                "msgs_lost": bus_counts["lost"],
                "msgs_blocked": bus_counts["blocked"],
                "msgs_duplicated": bus_counts["duplicated"],
                "ops_pending": int(sum(ledger.pending for ledger in ledgers)),
                "reputation_accuracy": (
                    float(reputation.accuracy) if reputation.predictions else 0.0
                ),
                "fee_rate": float(world.params["fee_rate"]),
            }
        )
        row["distinct_roots"] = self.distinct_roots
        row["replica_lag_max"], row["replica_lag_mean"] = world.replication.replica_lag()
        self.last_metrics = row
        if self.metrics_history is not None:
            self.metrics_history.append(row)
        if self.metrics is not None:
            self.metrics.write(row)
        return row

    # ------------------------------------------------------------------ state
    def state_table(self) -> dict[str, npt.NDArray[np.generic]]:
        """Per account: balance and stake at its home replica (int64 micro-credits), reputation
        mean, alive (treasury: alive); the columns of :data:`runtime.record.state_log.COLUMNS`."""
        world = self.world
        n_accounts = world.n_accounts
        homes = world.replication.home(np.arange(n_accounts, dtype=np.int64))
        balance = np.zeros(n_accounts, dtype=np.int64)
        stake = np.zeros(n_accounts, dtype=np.int64)
        local = world.replication.local
        for region, replica in enumerate(world.replication.replicas):
            # Another shard's accounts, as this shard's first replica sees them.
            seen_by = replica if replica is not None else local[0]
            selected = homes == region
            balance[selected] = seen_by.balances()[selected]
            stake[selected] = seen_by.staked()[selected]
        alive = np.ones(n_accounts, dtype=np.bool_)
        for population in world.populations:
            alive[population.ids] = population.alive
        reputation = world.reputation
        return {
            "balance_micro": balance,
            "stake_micro": stake,
            "reputation": reputation.alpha / (reputation.alpha + reputation.beta),
            "alive": alive,
        }

    def hashes(self) -> dict[str, str]:
        """SHA-256 (hex) of each subsystem's state."""
        world = self.world
        replication = world.replication
        out = {f"ledger/{r}": replication.replica(r).root().hex() for r in world.local_regions}
        for population in world.populations:
            out[f"population/{population.name}"] = population.digest().hex()
        out["market"] = hashlib.sha256(world.market.prices.tobytes()).hexdigest()
        reputation = world.reputation
        reputation_bytes = reputation.alpha.tobytes() + reputation.beta.tobytes()
        out["reputation"] = hashlib.sha256(reputation_bytes).hexdigest()
        out["board"] = world.task_board.digest().hex()
        out["rng"] = world.streams.state_digest().hex()
        bus_counts = repr(sorted(world.bus.counts.items())).encode()
        out["bus"] = hashlib.sha256(bus_counts).hexdigest()
        if world.organisation is not None:
            out["governance"] = world.organisation.digest().hex()
        if world.coordination is not None:
            out["coordination"] = world.coordination.digest().hex()
        network_bytes = world.network.component.tobytes() + repr(world.network_compute).encode()
        out["network"] = hashlib.sha256(network_bytes).hexdigest()
        return out

    def close(self) -> None:
        """Flush and close the recording."""
        if self.log is not None:
            self.log.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.state_log is not None:
            self.state_log.close()
