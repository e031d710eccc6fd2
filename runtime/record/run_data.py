"""A recorded run as data: its tables, its state at any tick, SQL over it.

``runtime.record.replay.open(DIR)`` returns a :class:`RunData`. Tables come back as pyarrow objects
(``.to_pandas()`` / ``polars.from_arrow(...)`` from there); :meth:`RunData.query` runs DuckDB SQL
over the views ``events``, ``metrics`` and ``state_deltas``. Money columns name their unit
(``_micro``: int64 micro-credits, exact; ``_credits``: floats for people);
``docs/reference/run-files.md`` describes every column.

Every file is read only if it is a regular file inside the run (:func:`regular_file`), and SQL runs
in a DuckDB sandbox (:func:`sandbox`) that can read the run's tables and nothing else.

A sharded run (``[distributed] shards = K``) keeps each shard's logs in ``shard-K/``. Read as one
run: ``events`` is every shard's events with a ``shard`` column, ordered by tick, shard and seq;
``shard_metrics`` is every shard's metrics rows with a ``shard`` column; ``metrics`` is one row
per tick for the whole world (:data:`SHARD_MERGE` says how each column combines). Its state
``state_deltas`` hold each account's rows as its home shard recorded them, and
:meth:`RunData.state_at` gives every account as its home shard held it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc

from economy.rates import MICRO
from runtime.record.recorder import read_stream
from runtime.record.recording import SCENARIO_COPY, SUMMARY, RunDirError
from runtime.record.state_log import (
    STATE_DIR,
    STATE_SCHEMA,
    _stream_batches,
    state_at,
    state_hash,
)

if TYPE_CHECKING:  # duckdb is imported when SQL runs, so opening a run does not load it
    import duckdb

SANDBOX_SETTINGS: dict[str, bool | str] = {
    # The run's tables arrive as Arrow objects Agora read itself, so SQL needs no file or network.
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    # A table name resolves to a registered view only, never to a Python object in a caller's frame.
    "python_enable_replacements": False,
    # No spilling to disk: a query keeps to memory and writes no file.
    "temp_directory": "",
}
"""DuckDB settings of every connection :meth:`RunData.query` opens; :func:`sandbox` locks them."""

PRICE_COLUMN = re.compile(r"price_(\d+)_micro")
"""A metrics column holding one skill's price (the skill's index is the group)."""

SHARDED_FORMAT = "agora-sharded-run-2"  # runtime.scale.sharded.FORMAT
MAX_SHARDS = 4096

SHARD_MERGE = {
    "first": ("time", "supply_held_micro", "supply_issued_micro", "fee_rate"),
    "max": ("distinct_roots", "replica_lag_max"),
}
"""How a sharded run's per-tick metrics rows combine into the world's: the supply and the fee rate
as the first shard's replicas count them (every replica sees the whole ledger), the largest
``distinct_roots`` and lag of any shard, the mean of prices (``price_<k>_micro``,
``mean_price_micro``) and of every float column (gauges), and the sum of every other integer
column (counters: volume, tasks, messages, agents alive)."""

COORDINATION_SUMS = ("r_sum_cos", "r_sum_sin", "r_count")
"""A shard's sums of its phases' cos and sin, and its agents: the world's ``r_global`` is the
modulus of their sums over the shards over the agents."""
TENSION_CHOICE = ("tension_core_edges", "tension_core_first")
"""Which shard's ``tension`` is the world's: the one holding the largest component of the graph
(most edges in its 2-core, then the lowest agent id), as the one-process reading picks it."""

READ_ONLY_FORMS = "SELECT, WITH … SELECT, VALUES, FROM …, DESCRIBE, SHOW or SUMMARIZE"
"""The statements :meth:`RunData.query` runs, as a person would write them (all parse as SELECT)."""


class QueryRefused(Exception):
    """SQL that :meth:`RunData.query` does not run: anything but one read-only query (exit 2)."""


def regular_file(path: Path, within: Path | None = None) -> Path:
    """``path`` itself, after checking it is a regular file: not a symbolic link, directory, FIFO,
    socket or device.

    A link could point a reader at a file outside the run, and a FIFO or device (``/dev/zero``) can
    block a reader or feed it without end. With ``within`` (a directory above ``path``), every
    directory between the two must be a real directory too, not a link.

    Raises:
        RunDirError: naming the file, what it is instead, and the fix.
    """
    path = Path(path)
    steps = [path]
    if within is not None:
        relative = path.relative_to(within)  # raises ValueError: a caller's mistake, not a user's
        assert relative.parts and ".." not in relative.parts, f"{path}: not below {within}"
        steps = [within.joinpath(*relative.parts[: i + 1]) for i in range(len(relative.parts))]
    for step in steps:
        try:
            mode = os.lstat(step).st_mode
        except FileNotFoundError:
            raise RunDirError(
                f"{step}: no such file; the run directory is incomplete, record it "
                "again with `agora run`"
            ) from None
        except OSError as exc:
            raise RunDirError(f"{step}: cannot be read ({exc.strerror})") from None
        expected = stat.S_ISREG(mode) if step == path else stat.S_ISDIR(mode)
        if not expected:
            want = "a regular file" if step == path else "a directory"
            raise RunDirError(
                f"{step}: is {_file_kind(mode)}, expected {want}; a run directory "
                "holds only what `agora run` wrote: put the file itself there"
            )
    assert steps[-1] == path, "the file itself is the last step checked"
    return path


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def sandbox(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with ``tables`` registered as views, then locked down.

    The connection opens with :data:`SANDBOX_SETTINGS` (no file, network or extension access),
    registers each table under its name, and then sets ``lock_configuration``, so no statement can
    turn any setting back. The caller closes it.
    """
    import duckdb

    assert tables, "a sandbox with no tables has nothing to query"
    con = duckdb.connect(config=dict(SANDBOX_SETTINGS))
    try:
        for name, table in tables.items():
            con.register(name, table)
        con.execute("SET lock_configuration = true")
        locked = con.execute(
            "SELECT current_setting('lock_configuration'), "
            "current_setting('enable_external_access')"
        ).fetchall()
    except BaseException:
        con.close()
        raise
    assert locked == [(True, False)], f"the sandbox is not locked: {locked}"
    return con


def refuse_unless_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Parse ``sql`` with DuckDB's own parser, executing nothing, and refuse it unless it is exactly
    one read-only query (:data:`READ_ONLY_FORMS`).

    Raises:
        QueryRefused: no statement, several, or one of another kind (COPY, ATTACH, INSTALL, …).
        duckdb.ParserException: SQL that does not parse.
    """
    import duckdb

    statements = con.extract_statements(sql)
    if not statements:
        raise QueryRefused(
            f"no statement in {_excerpt(sql)!r}: write one read-only query, "
            "e.g. select kind, count(*) from events group by kind"
        )
    if len(statements) > 1:
        raise QueryRefused(
            f"{len(statements)} statements given, starting {_excerpt(sql)!r}: "
            f"only one read-only query runs at a time ({READ_ONLY_FORMS}); "
            "run them one by one"
        )
    statement = statements[0]
    # SELECT covers every read-only form; EXPLAIN is refused because EXPLAIN ANALYZE executes
    # whatever statement it wraps.
    if statement.type != duckdb.StatementType.SELECT:
        kind = _STATEMENT_NAMES.get(statement.type.name, statement.type.name.replace("_", " "))
        raise QueryRefused(
            f"{kind} statement refused ({_excerpt(statement.query)!r}): only one "
            f"read-only query runs ({READ_ONLY_FORMS})"
        )


# DuckDB's statement types whose names differ from what a person typed
_STATEMENT_NAMES = {
    "LOAD": "INSTALL or LOAD",
    "MULTI": "multi-part (such as PIVOT)",
    "VARIABLE_SET": "SET VARIABLE",
    "COPY_DATABASE": "COPY FROM DATABASE",
}


def _excerpt(sql: str, chars_max: int = 60) -> str:
    text = " ".join(sql.split()).rstrip(";").strip()  # one line, whatever the SQL's layout
    return text if len(text) <= chars_max else text[: chars_max - 1] + "…"


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
        if not os.path.lexists(run_dir / SUMMARY):
            raise RunDirError(
                f"{run_dir}: not a run directory (no {SUMMARY}); `agora run` writes one"
            )
        self.dir = run_dir
        try:
            self.summary: dict[str, Any] = json.loads(self._file(SUMMARY).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{run_dir / SUMMARY}: does not parse ({exc})") from None
        if not isinstance(self.summary, dict):
            raise RunDirError(
                f"{run_dir / SUMMARY}: holds a {type(self.summary).__name__}, expected "
                "a JSON object; record the run again with `agora run`"
            )
        from runtime.kernel.scenario import load

        scenario_name = self.summary.get("scenario_file", SCENARIO_COPY)
        plain_name = isinstance(scenario_name, str) and scenario_name not in ("", ".", "..")
        if not plain_name or Path(scenario_name).name != scenario_name:  # no path out of the run
            raise RunDirError(
                f"{run_dir / SUMMARY}: scenario_file {scenario_name!r} is not a "
                f"file name in the run directory; expected {SCENARIO_COPY!r}, as "
                "`agora run` writes"
            )
        ticks = self.summary.get("ticks")
        if not isinstance(ticks, int) or isinstance(ticks, bool) or ticks < 1:
            raise RunDirError(
                f"{run_dir / SUMMARY}: ticks is {ticks!r}, not a positive whole number: "
                "damaged or edited (agora replay --verify tells which)"
            )
        self.shards: int | None = None  # a sharded run's shard count
        if self.summary.get("format") == SHARDED_FORMAT:
            k = self.summary.get("shards")
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_SHARDS:
                raise RunDirError(
                    f"{run_dir / SUMMARY}: shards is {k!r}, not a whole number from 1 to "
                    f"{MAX_SHARDS}: damaged or edited (agora replay --verify tells which)"
                )
            self.shards = k
        scenario, _ = load(self._file(scenario_name))
        self.scenario = scenario
        self.groups: list[Group] = []
        start = 0
        for p in scenario.population:
            self.groups.append(Group(p.name, p.role, start, p.count))
            start += p.count
        self.n_agents = start

    @property
    def ticks(self) -> int:
        """Ticks the run executed."""
        return int(self.summary["ticks"])

    @property
    def has_state(self) -> bool:
        """Whether the run recorded its state table (``record.state``) in a form read here."""
        if self.shards is not None:
            return all(
                os.path.lexists(self.dir / _shard_dir(k) / STATE_DIR / "deltas.arrows")
                for k in range(self.shards)
            )
        # lexists: a link or FIFO in its place counts as recorded, so reading it is refused by name
        return os.path.lexists(self.dir / STATE_DIR / "deltas.arrows")

    def _no_state(self) -> str:
        """Why the run has no state table."""
        if self.shards is not None:
            return f"{self.dir}: the run's shards recorded no state table (record.state = false)"
        if self.summary.get("engine") == "gpu":
            return (
                f"{self.dir}: a gpu-engine run records checkpoint hashes and the metrics table, "
                "not a per-account state table"
            )
        return f"{self.dir}: the run recorded no state table (record.state = false)"

    def _file(self, *parts: str) -> Path:
        """The run's file at ``parts`` below its directory, checked by :func:`regular_file`."""
        return regular_file(self.dir.joinpath(*parts), within=self.dir)

    def events(self) -> pa.Table:
        """The whole event log (a log cut short reads up to its last complete batch); a sharded
        run's, every shard's with a ``shard`` column, by tick, shard and seq."""
        if self.shards is None:
            return read_stream(self._file("events.arrows"))[0]
        tables = [
            _with_shard(read_stream(self._file(_shard_dir(k), "events.arrows"))[0], k)
            for k in range(self.shards)
        ]
        return pa.concat_tables(tables).sort_by(
            [("tick", "ascending"), ("shard", "ascending"), ("seq", "ascending")]
        )

    def shard_metrics(self) -> pa.Table:
        """A sharded run's metrics rows, every shard's, with a ``shard`` column (by tick, shard)."""
        if self.shards is None:
            raise RunDirError(f"{self.dir}: not a sharded run (its metrics are one row per tick)")
        tables = [
            _with_shard(self._metrics_file(self._file(_shard_dir(k), "metrics.arrows")), k)
            for k in range(self.shards)
        ]
        ticks = {t.num_rows for t in tables}
        if len(ticks) != 1:
            raise RunDirError(
                f"{self.dir}: the shards' metrics hold different numbers of ticks "
                f"({sorted(ticks)}): damaged; agora replay --verify tells what differs"
            )
        return pa.concat_tables(tables, promote_options="default").sort_by(
            [("tick", "ascending"), ("shard", "ascending")]
        )

    def metrics(self) -> pa.Table:
        """The per-tick metrics table (RunDirError when it is empty or lacks its columns:
        damaged); a sharded run's, the whole world's, as :data:`SHARD_MERGE` combines its shards'
        rows."""
        if self.shards is not None:
            return _merge_shards(self.shard_metrics(), self.shards)
        return self._metrics_file(self._file("metrics.arrows"))

    def _metrics_file(self, path: Path) -> pa.Table:
        table = read_stream(path)[0]
        needed = ("tick", "mean_price_micro", "distinct_roots")
        missing = [c for c in needed if c not in table.column_names]
        if missing or table.num_rows == 0:
            raise RunDirError(
                f"{path}: damaged or empty ({table.num_rows} readable rows"
                + (f", no {', '.join(missing)} column" if missing else "")
                + "); agora replay --verify tells what else differs"
            )
        return table

    def state_deltas(self) -> pa.Table:
        """The state deltas: a row per account changed in a tick (the first tick: every account)."""
        if not self.has_state:
            raise RunDirError(self._no_state())
        if self.shards is not None:
            return pa.Table.from_batches(list(self.state_batches()), schema=STATE_SCHEMA)
        return read_stream(self._file(STATE_DIR, "deltas.arrows"))[0]

    def event_batches(self) -> Iterator[pa.RecordBatch]:
        """The event log one tick (record batch) at a time: bounded memory for any run length (a
        sharded run's: each tick's batches of every shard, with a ``shard`` column, as one)."""
        if self.shards is None:
            yield from _batches(self._file("events.arrows"))
            return
        streams = [
            (k, _batches(self._file(_shard_dir(k), "events.arrows"))) for k in range(self.shards)
        ]
        yield from _merge_by_tick(
            streams, lambda batch, k: _with_shard(pa.Table.from_batches([batch]), k)
        )

    def _owner_shards(self) -> npt.NDArray[np.int64]:
        """A sharded run's shard of every account (its home region's shard)."""
        from runtime.kernel.network import Network

        assert self.shards is not None
        n_regions = Network.from_config(self.scenario.network, self.dir).n_regions
        accounts = np.arange(self.n_agents + 1, dtype=np.int64)  # the agents and the treasury
        return (accounts % n_regions) % self.shards

    def state_batches(self) -> Iterator[pa.RecordBatch]:
        """The state deltas one tick at a time (the first holds every account)."""
        if not self.has_state:
            raise RunDirError(self._no_state())
        if self.shards is None:
            yield from _batches(self._file(STATE_DIR, "deltas.arrows"))
            return
        # Each account's rows as its home shard recorded them, every shard's rows of a tick as one.
        owner = self._owner_shards()
        streams = [
            (k, _batches(self._file(_shard_dir(k), STATE_DIR, "deltas.arrows")))
            for k in range(self.shards)
        ]

        def own(batch: pa.RecordBatch, k: int) -> pa.Table:
            accounts = batch.column("account").to_numpy()
            return pa.Table.from_batches([batch]).filter(pa.array(owner[accounts] == k))

        yield from _merge_by_tick(streams, own)

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
        return _state_hash_in(self.event_batches(), tick)

    def state_at(self, tick: int) -> tuple[pa.Table, dict[str, Any]]:
        """The state after ``tick``: a table per account -- account, population, role, balance and
        stake (``*_credits`` for people, ``*_micro`` exact), reputation, alive -- and facts: prices
        per skill that tick (``prices_micro``, keyed by metrics column ``price_<k>_micro``), the
        snapshot it started from, its hash and whether that equals the hash the live run
        recorded."""
        if not self.has_state:
            if self.summary.get("engine") == "gpu" or self.shards is not None:
                raise RunDirError(self._no_state())
            raise RunDirError(
                f"{self.dir}: the run recorded no state table (record.state = false); rerun with "
                "it on"
            )
        if not 0 <= tick < self.ticks:
            raise RunDirError(f"--at {tick}: the run has ticks 0..{self.ticks - 1}")
        shard_facts: list[dict[str, Any]] = []
        if self.shards is None:
            cols, start = self._state_of(self.dir, tick)
            digest = state_hash(cols)
            recorded = self.recorded_hash(tick)
        else:  # every account as its home shard holds it
            owner = self._owner_shards()
            merged: dict[str, npt.NDArray[Any]] = {}
            for k in range(self.shards):
                part, start = self._state_of(self.dir / _shard_dir(k), tick)
                part_hash = state_hash(part)
                part_recorded = _recorded_state_hash(self, k, tick)
                shard_facts.append(
                    {
                        "shard": k,
                        "state_hash": part_hash,
                        "recorded_hash": part_recorded,
                        "matches_live": part_hash == part_recorded,
                    }
                )
                for name, column in part.items():
                    merged.setdefault(name, column.copy())[owner == k] = column[owner == k]
            cols = merged
            digest = state_hash(cols)
            # The live run recorded each shard's table: the whole matches when every part does.
            recorded = digest if all(f["matches_live"] for f in shard_facts) else None
        balance = np.asarray(cols["balance_micro"], dtype=np.int64)
        stake = np.asarray(cols["stake_micro"], dtype=np.int64)
        accounts = np.arange(balance.size, dtype=np.int64)
        names, roles = self.population_of(accounts)
        table = pa.table(
            {
                "account": accounts,
                "population": pa.array(names.tolist(), pa.string()),
                "role": pa.array(roles.tolist(), pa.string()),
                "balance_credits": balance / MICRO,
                "stake_credits": stake / MICRO,
                "balance_micro": balance,
                "stake_micro": stake,
                "reputation": cols["reputation"],
                "alive": cols["alive"],
            }
        )
        metrics = self.metrics()
        rows = np.flatnonzero(metrics.column("tick").to_numpy() == tick)
        if rows.size == 0:
            raise RunDirError(
                f"{self.dir / 'metrics.arrows'}: has no row for tick {tick}: damaged or cut short"
            )
        row = int(rows[0])
        prices = {
            name: int(metrics.column(name)[row].as_py())
            for name in metrics.column_names
            if PRICE_COLUMN.fullmatch(name)
        }
        facts = {
            "tick": tick,
            "from_snapshot": start,
            "state_hash": digest,
            "recorded_hash": recorded,
            "matches_live": recorded == digest,
            "prices_micro": prices,
        }
        if shard_facts:
            facts["shards"] = shard_facts
        return table, facts

    def _state_of(self, folder: Path, tick: int) -> tuple[dict[str, npt.NDArray[Any]], int]:
        """The state table one folder's state files give after ``tick`` (each file checked)."""
        self._file(*folder.relative_to(self.dir).parts, STATE_DIR, "deltas.arrows")
        for snapshot in (folder / STATE_DIR).glob("full_*.arrow"):
            self._file(*folder.relative_to(self.dir).parts, STATE_DIR, snapshot.name)
        return state_at(folder, tick)

    def query(self, sql: str) -> pa.Table:
        """Run one read-only DuckDB query over ``events``, ``metrics`` and (if recorded)
        ``state_deltas`` (a sharded run: ``events``, ``metrics``, ``shard_metrics``); return its
        result.

        The statement is classified by DuckDB's parser before any table is read: anything but one
        query of :data:`READ_ONLY_FORMS` is refused. It then runs in a :func:`sandbox`, where
        reading a file (``read_csv``, ``glob``), the network or an extension fails.

        Raises:
            QueryRefused: the SQL is not one read-only query; nothing ran.
            RunDirError: a table's file is missing, a link or not a regular file.
            duckdb.Error: the query failed (a mistake in it, or an access the sandbox denies).
        """
        import duckdb

        with duckdb.connect(config=dict(SANDBOX_SETTINGS)) as parser:
            refuse_unless_read_only(parser, sql)
        tables = {"events": self.events(), "metrics": self.metrics()}
        if self.shards is not None:
            tables["shard_metrics"] = self.shard_metrics()
        if self.has_state:
            tables["state_deltas"] = self.state_deltas()
        con = sandbox(tables)
        try:
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    return _stream_batches(path)


def _shard_dir(k: int) -> str:
    return f"shard-{k}"  # runtime.scale.sharded.shard_dir


def _next_batch(it: Iterator[pa.RecordBatch]) -> pa.RecordBatch | None:
    """The next non-empty batch of ``it``, or None at its end."""
    for batch in it:
        if batch.num_rows:
            return batch
    return None


def _merge_by_tick(
    streams: list[tuple[int, Iterator[pa.RecordBatch]]],
    part: Any,
) -> Iterator[pa.RecordBatch]:
    """One batch per tick from shards' streams of one batch per tick (a tick with nothing
    recorded is absent): ``part(batch, shard)`` of each shard's batch of that tick, together."""
    heads: dict[int, pa.RecordBatch] = {}
    for k, it in streams:
        if (b := _next_batch(it)) is not None:
            heads[k] = b
    while heads:
        tick = min(int(b.column("tick")[0].as_py()) for b in heads.values())
        parts = []
        for k, it in streams:
            b = heads.get(k)
            if b is not None and int(b.column("tick")[0].as_py()) == tick:
                parts.append(part(b, k))
                if (nxt := _next_batch(it)) is None:
                    del heads[k]
                else:
                    heads[k] = nxt
        yield from pa.concat_tables(parts).combine_chunks().to_batches()


def _recorded_state_hash(run: RunData, k: int, tick: int) -> str | None:
    """The state hash shard ``k`` of a sharded run recorded after ``tick``."""
    return _state_hash_in(_batches(run._file(_shard_dir(k), "events.arrows")), tick)


def _state_hash_in(batches: Iterator[pa.RecordBatch], tick: int) -> str | None:
    """The ``state_hash`` event of ``tick`` in an event log's batches (one per tick), or None."""
    for batch in batches:
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


def _with_shard(table: pa.Table, k: int) -> pa.Table:
    return table.append_column("shard", pa.array(np.full(table.num_rows, k, dtype=np.int32)))


def _merge_shards(rows: pa.Table, shards: int) -> pa.Table:
    """One row per tick from a sharded run's per-shard metrics rows (:data:`SHARD_MERGE`)."""
    n = rows.num_rows // shards  # rows come by tick, then shard
    out: dict[str, Any] = {}

    def grid(name: str) -> npt.NDArray[Any]:
        # A column only some shards write (a region's gauges) reads as NaN on the others.
        return np.asarray(rows.column(name).to_numpy(zero_copy_only=False)).reshape(n, shards)

    for name in rows.column_names:
        if name in ("shard", *COORDINATION_SUMS, *TENSION_CHOICE):
            continue
        col = grid(name)
        if name == "tick" or name in SHARD_MERGE["first"]:
            out[name] = col[:, 0]
        elif name in SHARD_MERGE["max"]:
            out[name] = col.max(axis=1)
        elif PRICE_COLUMN.fullmatch(name) or name == "mean_price_micro" or col.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                out[name] = np.nanmean(col.astype(np.float64), axis=1)
        else:
            out[name] = col.sum(axis=1)
    if all(c in rows.column_names for c in COORDINATION_SUMS):
        c, s, count = (grid(name).sum(axis=1) for name in COORDINATION_SUMS)
        out["r_global"] = np.sqrt(c * c + s * s) / np.maximum(count, 1)
    if all(c in rows.column_names for c in (*TENSION_CHOICE, "tension")):
        edges, first = grid(TENSION_CHOICE[0]), grid(TENSION_CHOICE[1])
        first = np.where(first < 0, np.inf, first)
        pick = np.lexsort((first.T, -edges.T), axis=0)[0]  # most edges, then lowest agent id
        out["tension"] = grid("tension")[np.arange(n), pick]
    return pa.table(out)


def open_run(run_dir: Path | str) -> RunData:
    """Open a run directory for analysis (:class:`RunData`)."""
    return RunData(Path(run_dir))
