"""A recorded run as data: its tables, its state at any tick, SQL over it.

``runtime.replay.open(DIR)`` returns a :class:`RunData`. Tables come back as pyarrow objects
(``.to_pandas()`` / ``polars.from_arrow(...)`` from there); :meth:`RunData.query` runs DuckDB SQL
over the views ``events``, ``metrics`` and ``state_deltas``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from runtime.recorder import read_stream
from runtime.recording import SCENARIO_COPY, SUMMARY, RunDirError
from runtime.state_log import STATE_DIR, _stream_batches, state_at, state_hash


@dataclass(frozen=True)
class Group:
    """A population's accounts: ids ``start .. start + count − 1``."""

    name: str
    role: str
    start: int
    count: int


class RunData:
    """Read-only access to one run directory."""

    def __init__(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        if not (run_dir / SUMMARY).is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no {SUMMARY}); `agora run` writes one")
        self.dir = run_dir
        try:
            self.summary: dict[str, Any] = json.loads((run_dir / SUMMARY).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{run_dir / SUMMARY}: does not parse ({exc})") from None
        from runtime.scenario import load

        sc, _ = load(run_dir / self.summary.get("scenario_file", SCENARIO_COPY))
        self.scenario = sc
        self.groups: list[Group] = []
        start = 0
        for p in sc.population:
            self.groups.append(Group(p.name, p.role, start, p.count))
            start += p.count
        self.n_agents = start

    @property
    def ticks(self) -> int:
        """Ticks the run executed."""
        return int(self.summary.get("ticks", 0))

    @property
    def has_state(self) -> bool:
        """Whether the run recorded its state table (``record.state``)."""
        return (self.dir / STATE_DIR / "deltas.arrows").is_file()

    def events(self) -> pa.Table:
        """The whole event log (a log cut short reads up to its last complete batch)."""
        return read_stream(self.dir / "events.arrows")[0]

    def metrics(self) -> pa.Table:
        """The per-tick metrics table."""
        return read_stream(self.dir / "metrics.arrows")[0]

    def event_batches(self) -> Iterator[pa.RecordBatch]:
        """The event log one tick (record batch) at a time: bounded memory for any run length."""
        yield from _batches(self.dir / "events.arrows")

    def state_batches(self) -> Iterator[pa.RecordBatch]:
        """The state deltas one tick at a time (the first holds every account)."""
        if not self.has_state:
            raise RunDirError(f"{self.dir}: the run recorded no state table (record.state = false)")
        yield from _batches(self.dir / STATE_DIR / "deltas.arrows")

    def population_of(self, accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Population name and role of each account (the treasury: "treasury")."""
        names = np.full(accounts.size, "treasury", dtype=object)
        roles = np.full(accounts.size, "treasury", dtype=object)
        for g in self.groups:
            sel = (accounts >= g.start) & (accounts < g.start + g.count)
            names[sel], roles[sel] = g.name, g.role
        return names, roles

    def recorded_hash(self, tick: int) -> str | None:
        """The state hash the live run recorded after ``tick`` (None if it recorded none)."""
        for batch in self.event_batches():
            if batch.num_rows == 0:
                continue
            t = int(batch.column("tick")[0].as_py())
            if t < tick:
                continue
            if t > tick:
                break
            kinds = batch.column("kind").to_pylist()
            if "state_hash" in kinds:
                return str(batch.column("detail")[kinds.index("state_hash")].as_py())
        return None

    def state_at(self, tick: int) -> tuple[pa.Table, dict[str, Any]]:
        """The state after ``tick``: a table per account (population, role, balance, stake, reputation,
        alive) and facts: prices per skill that tick, the snapshot it started from, its hash and whether
        that equals the hash the live run recorded."""
        if not self.has_state:
            raise RunDirError(f"{self.dir}: the run recorded no state table (record.state = false); rerun with it on")
        if not 0 <= tick < self.ticks:
            raise RunDirError(f"--at {tick}: the run has ticks 0..{self.ticks - 1}")
        cols, start = state_at(self.dir, tick)
        digest = state_hash(cols)
        recorded = self.recorded_hash(tick)
        accounts = np.arange(cols["balance"].size, dtype=np.int64)
        names, roles = self.population_of(accounts)
        table = pa.table({"account": accounts, "population": pa.array(names.tolist(), pa.string()),
                          "role": pa.array(roles.tolist(), pa.string()), **{k: v for k, v in cols.items()}})
        metrics = self.metrics()
        row = int(np.flatnonzero(metrics.column("tick").to_numpy() == tick)[0])
        prices = {name: int(metrics.column(name)[row].as_py()) for name in metrics.column_names if name.startswith("price_")}
        facts = {"tick": tick, "from_snapshot": start, "state_hash": digest, "recorded_hash": recorded,
                 "matches_live": recorded == digest, "prices_micro": prices}
        return table, facts

    def query(self, sql: str) -> pa.Table:
        """Run DuckDB SQL over ``events``, ``metrics`` and (if recorded) ``state_deltas``."""
        import duckdb

        con = duckdb.connect()
        con.register("events", self.events())
        con.register("metrics", self.metrics())
        if self.has_state:
            con.register("state_deltas", read_stream(self.dir / STATE_DIR / "deltas.arrows")[0])
        try:
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    return _stream_batches(path)


def open_run(run_dir: Path | str) -> RunData:
    """Open a run directory for analysis (:class:`RunData`)."""
    return RunData(Path(run_dir))
