"""The run's recording: append-only Arrow IPC streams for events and per-tick metrics.

Record batches are cut at tick boundaries (deterministic), so the same run gives the same bytes.
The file is flushed to the operating system at least every ``flush_seconds`` of wall time, so a
process killed with SIGKILL leaves every batch written before its last flush readable; the
reader stops cleanly at a truncated tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("tick", pa.int64()),
        ("time", pa.float64()),
        ("kind", pa.string()),
        ("subsystem", pa.string()),
        ("agent", pa.int64()),
        ("other", pa.int64()),
        ("amount_micro", pa.int64()),  # money events: micro-credits (docs/reference/run-files.md)
        ("value", pa.float64()),
        ("detail", pa.string()),
    ]
)


class _Tap:
    """A sink for pyarrow's IPC writer that keeps what it is given until :meth:`take`.

    The writer writes a stream's schema with its first batch; a stream resumed at a byte offset
    already holds it, so the bytes pass through here and the stream decides what reaches the file.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


class _Stream:
    """One Arrow IPC stream file, written batch by batch; resumable at a batch boundary.

    ``resume_at`` (a byte offset a checkpoint recorded) reopens an existing file, drops whatever
    follows that offset (the tail of a killed run) and goes on writing there: the file then holds
    the bytes an uninterrupted run would have written.
    """

    def __init__(
        self, path: Path, schema: pa.Schema, flush_seconds: float, resume_at: int | None = None
    ) -> None:
        self.tap = _Tap()
        self.writer = pa.ipc.new_stream(self.tap, schema)
        # The schema message the writer will put before its first batch: a resumed file holds it.
        self._skip = b"" if resume_at is None else schema.serialize().to_pybytes()
        if resume_at is None:
            self.file: BinaryIO = open(path, "wb")  # closed by close()
        else:
            self.file = open(path, "r+b")  # closed by close()
            size = self.file.seek(0, 2)
            if not len(self._skip) <= resume_at <= size:
                self.file.close()
                raise ValueError(f"{path}: cannot resume at byte {resume_at} of {size}")
            self.file.truncate(resume_at)
            self.file.seek(resume_at)
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.file.flush()

    def _out(self) -> bytes:
        data = self.tap.take()
        if self._skip:
            assert data.startswith(self._skip), "the writer's first message is the schema"
            data, self._skip = data[len(self._skip) :], b""
        return data

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.file.write(self._out())
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            self.file.flush()
            self._last_flush = now

    def position(self) -> int:
        """Bytes written so far, all of them handed to the operating system (a resumable offset)."""
        self.file.flush()
        return self.file.tell()

    def close(self) -> None:
        self.writer.close()
        data = self.tap.take()
        if self._skip:  # closed with no batch written since resuming: the schema is already there
            data = data[len(self._skip) :] if data.startswith(self._skip) else data
        self.file.write(data)
        self.file.close()


class EventLog:
    """Buffers a tick's events column-wise and writes them as one record batch per tick."""

    def __init__(
        self, path: Path, flush_seconds: float, resume: dict[str, Any] | None = None
    ) -> None:
        self._stream = _Stream(
            path, EVENT_SCHEMA, flush_seconds, None if resume is None else int(resume["offset"])
        )
        self.seq = 0 if resume is None else int(resume["seq"])
        self._cols: dict[str, list[npt.NDArray[np.generic]]] = {n: [] for n in EVENT_SCHEMA.names}
        self._count = 0
        if resume is not None and "pending" in resume:  # events of a tick not yet written
            self._count = int(resume["count"])
            if self._count:
                pending = resume["pending"]
                self._cols = {
                    n: [
                        np.array(pending[n], dtype=object)
                        if isinstance(pending[n], list)
                        else np.asarray(pending[n])
                    ]
                    for n in EVENT_SCHEMA.names
                }
        # Called with each tick's batch as it is written (agora serve's event feeds); not state.
        self.on_batch: Callable[[pa.RecordBatch], None] | None = None

    def emit(
        self,
        tick: int,
        time_: float,
        kind: str,
        subsystem: str,
        agent: int = -1,
        other: int = -1,
        amount: int = 0,
        value: float = 0.0,
        detail: str = "",
    ) -> None:
        """Record one event."""
        self.emit_many(
            tick,
            time_,
            kind,
            subsystem,
            np.array([agent]),
            np.array([other]),
            np.array([amount]),
            np.array([value]),
            detail,
        )

    def emit_many(
        self,
        tick: int,
        time_: float,
        kind: str,
        subsystem: str,
        agent: npt.NDArray[np.int64],
        other: npt.NDArray[np.int64],
        amount: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        detail: str = "",
    ) -> None:
        """Record ``len(agent)`` events of one kind from arrays."""
        n = len(agent)
        if n == 0:
            return
        c = self._cols
        c["seq"].append(np.arange(self.seq, self.seq + n, dtype=np.int64))
        c["tick"].append(np.full(n, tick, dtype=np.int64))
        c["time"].append(np.full(n, time_, dtype=np.float64))
        c["kind"].append(np.full(n, kind, dtype=object))
        c["subsystem"].append(np.full(n, subsystem, dtype=object))
        c["agent"].append(np.asarray(agent, dtype=np.int64))
        c["other"].append(np.asarray(other, dtype=np.int64))
        c["amount_micro"].append(np.asarray(amount, dtype=np.int64))
        c["value"].append(np.asarray(value, dtype=np.float64))
        c["detail"].append(np.full(n, detail, dtype=object))
        self.seq += n
        self._count += n

    def position(self) -> dict[str, int]:
        """Where a resumed log goes on (between ticks): the file offset and the next event's seq."""
        assert self._count == 0, "a position is taken between ticks"
        return {"offset": self._stream.position(), "seq": self.seq}

    def cut(self) -> dict[str, Any]:
        """:meth:`position` at any moment: also the events emitted since the last batch was
        written (a sharded world's tick barrier may fall after some), which a log resumed from it
        takes back and writes with the next batch."""
        pending: dict[str, Any] = {}
        for name, arrays in self._cols.items():  # one column each: arrays, strings as a list
            column = np.concatenate(arrays) if arrays else np.empty(0)
            pending[name] = column.tolist() if column.dtype == object else column
        return {
            "offset": self._stream.position(),
            "seq": self.seq,
            "pending": pending,
            "count": self._count,
        }

    def end_tick(self) -> None:
        """Write the tick's events as one record batch (nothing when there were none)."""
        if self._count == 0:
            return
        arrays = [pa.array(np.concatenate(self._cols[f.name]), type=f.type) for f in EVENT_SCHEMA]
        batch = pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)
        self._stream.write(batch)
        if self.on_batch is not None:
            self.on_batch(batch)
        self._cols = {n: [] for n in EVENT_SCHEMA.names}
        self._count = 0

    def close(self) -> None:
        """Write what is buffered and close the file."""
        self.end_tick()
        self._stream.close()


class MetricsColumnsError(RuntimeError):
    """A metrics row whose columns differ from the first row's: a counter or gauge first set after
    tick 0 (``new``), or one no longer set (``missing``). The metrics table's columns are fixed by
    its first row, so a role sets each of its columns from tick 0 on."""

    def __init__(self, new: list[str], missing: list[str]) -> None:
        parts = [f"new {new}" if new else "", f"missing {missing}" if missing else ""]
        super().__init__(
            f"metrics columns changed after the first tick ({'; '.join(p for p in parts if p)}): "
            "the metrics table's columns are fixed at tick 0; set each column from the first tick "
            "on, e.g. world.count(name, 0) or world.gauge(name, 0.0) in the role's setup() "
            "(counters restart at 0 every tick, gauges keep their last value)"
        )
        self.new = new
        self.missing = missing


class MetricsLog:
    """One row per tick; the columns are fixed by the first row."""

    def __init__(
        self, path: Path, flush_seconds: float, resume: dict[str, object] | None = None
    ) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self._stream: _Stream | None = None
        self._schema: pa.Schema | None = None
        if resume is not None and resume.get("columns"):
            columns = resume["columns"]
            assert isinstance(columns, list)
            self._schema = pa.schema(
                [(name, pa.int64() if kind == "int64" else pa.float64()) for name, kind in columns]
            )
            offset = resume["offset"]
            assert isinstance(offset, int)
            self._stream = _Stream(path, self._schema, flush_seconds, offset)

    def position(self) -> dict[str, object]:
        """Where a resumed table goes on: the file offset and the columns (name, type)."""
        if self._stream is None or self._schema is None:
            return {"offset": 0, "columns": []}
        columns = [[f.name, "int64" if f.type == pa.int64() else "float64"] for f in self._schema]
        return {"offset": self._stream.position(), "columns": columns}

    def write(self, row: dict[str, int | float]) -> None:
        """Append one row."""
        if self._schema is None:
            self._schema = pa.schema(
                [
                    (k, pa.int64() if isinstance(v, (int, np.integer)) else pa.float64())
                    for k, v in row.items()
                ]
            )
            self._stream = _Stream(self.path, self._schema, self.flush_seconds)
        assert self._stream is not None
        if set(row) != set(self._schema.names):
            raise MetricsColumnsError(
                sorted(set(row) - set(self._schema.names)),
                sorted(set(self._schema.names) - set(row)),
            )
        arrays = [pa.array([row[f.name]], type=f.type) for f in self._schema]
        self._stream.write(pa.RecordBatch.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        """Close the file."""
        if self._stream is not None:
            self._stream.close()


def read_stream(path: str | Path) -> tuple[pa.Table, bool]:
    """Read an Arrow IPC stream file; return the table and whether it ended cleanly.

    A truncated tail (a run killed mid-write) or a damaged batch ends the readable part: every
    complete, valid record batch before it is returned.
    """
    data = Path(path).read_bytes()
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(data))
    except (pa.ArrowException, OSError):
        return EVENT_SCHEMA.empty_table(), False
    batches = []
    complete = True
    while True:
        try:
            batch = reader.read_next_batch()
            batch.validate(full=True)  # a damaged batch ends the readable part
            batches.append(batch)
        except StopIteration:
            break
        except (pa.ArrowException, OSError):
            complete = False
            break
    return pa.Table.from_batches(batches, schema=reader.schema), complete
