"""The run's state, tick by tick: full snapshots at checkpoints, changed rows in between.

The state table has one row per ledger account (the agents, then the treasury): ``balance_micro``
and ``stake_micro`` (int64 micro-credits, as the account's home replica sees them),
``reputation`` (the Beta reputation's mean) and ``alive``. Prices per skill are in the metrics
table (``price_<k>_micro``). ``docs/reference/run-files.md`` describes every column.

Files in the run directory:

* ``state/full_<tick>.arrow`` -- the whole table after that tick, one per checkpoint (written to
  a temporary name, then renamed: a file that exists is complete);
* ``state/deltas.arrows`` -- an Arrow IPC stream, one record batch per tick from the run's first
  tick on (tick 0, or the tick after a fork), holding the rows that changed during it (``tick``
  column included; the first batch holds every row).

The hash of the whole table after every tick (:func:`state_hash`) is an event of kind
``state_hash`` in the event log, so a reconstruction can be checked against what the live run held.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc

STATE_SCHEMA = pa.schema(
    [
        ("tick", pa.int64()),
        ("account", pa.int64()),
        ("balance_micro", pa.int64()),
        ("stake_micro", pa.int64()),
        ("reputation", pa.float64()),
        ("alive", pa.bool_()),
    ]
)
COLUMNS = ("balance_micro", "stake_micro", "reputation", "alive")
STATE_DIR = "state"


def state_hash(cols: dict[str, npt.NDArray[np.generic]]) -> str:
    """SHA-256 (hex) of the state table's columns, in :data:`COLUMNS` order."""
    h = hashlib.sha256()
    for name in COLUMNS:
        h.update(name.encode())
        h.update(np.ascontiguousarray(cols[name]).tobytes())
    return h.hexdigest()


def _batch(
    tick: int, rows: npt.NDArray[np.int64], cols: dict[str, npt.NDArray[np.generic]]
) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(rows.size, tick, dtype=np.int64)),
            pa.array(rows),
            *[pa.array(cols[name][rows]) for name in COLUMNS],
        ],
        schema=STATE_SCHEMA,
    )


class StateLog:
    """Writes the state files of one run (see the module docstring)."""

    def __init__(
        self, folder: Path, flush_seconds: float, resume: dict[str, object] | None = None
    ) -> None:
        from runtime.record.recorder import _Stream

        self.folder = folder / STATE_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        offset = None if resume is None else resume["offset"]
        assert offset is None or isinstance(offset, int)
        self.deltas = _Stream(self.folder / "deltas.arrows", STATE_SCHEMA, flush_seconds, offset)
        previous = None if resume is None else resume["previous"]
        assert previous is None or isinstance(previous, dict)
        self.previous: dict[str, npt.NDArray[np.generic]] | None = previous

    def position(self) -> dict[str, object]:
        """Where a resumed state log goes on: the deltas' offset and the last table written."""
        return {"offset": self.deltas.position(), "previous": self.previous}

    def write(self, tick: int, cols: dict[str, npt.NDArray[np.generic]], full: bool) -> None:
        """Record the table after ``tick``: the rows that changed; the whole table when ``full``."""
        if self.previous is None:
            changed = np.arange(cols["balance_micro"].size, dtype=np.int64)
        else:
            diff = np.zeros(cols["balance_micro"].size, dtype=np.bool_)
            for name in COLUMNS:
                diff |= cols[name] != self.previous[name]
            changed = np.flatnonzero(diff).astype(np.int64)
        self.deltas.write(_batch(tick, changed, cols))
        self.previous = {k: v.copy() for k, v in cols.items()}
        if full:
            tmp = self.folder / f".full_{tick:06d}.arrow.tmp"
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, STATE_SCHEMA) as writer:
                every = np.arange(cols["balance_micro"].size, dtype=np.int64)
                writer.write_batch(_batch(tick, every, cols))
            tmp.rename(self.folder / f"full_{tick:06d}.arrow")

    def close(self) -> None:
        """Flush and close the deltas stream."""
        self.deltas.close()


def state_at(run_dir: Path, tick: int) -> tuple[dict[str, npt.NDArray[np.generic]], int]:
    """The state table after ``tick``, rebuilt from the nearest full snapshot at or before it plus
    the deltas after that; returns the columns and the snapshot tick it started from (-1: none)."""
    folder = run_dir / STATE_DIR
    fulls = sorted(int(p.stem.split("_")[1]) for p in folder.glob("full_*.arrow"))
    start = max((t for t in fulls if t <= tick), default=-1)
    cols: dict[str, npt.NDArray[np.generic]] | None = None
    if start >= 0:
        with pa.memory_map(str(folder / f"full_{start:06d}.arrow")) as source:
            table = pa.ipc.open_file(source).read_all()
        cols = {name: table.column(name).to_numpy().copy() for name in COLUMNS}
    for batch in _stream_batches(
        folder / "deltas.arrows"
    ):  # one batch per tick (a fork's from its first)
        if batch.num_rows == 0:
            continue
        t = int(batch.column(0)[0].as_py())
        if t <= start:
            continue
        if t > tick:
            break
        if cols is None:  # no snapshot before: the first delta batch holds every row
            cols = {
                name: batch.column(name).to_numpy(zero_copy_only=False).copy() for name in COLUMNS
            }
            continue
        rows = batch.column(1).to_numpy()
        for name in COLUMNS:
            cols[name][rows] = batch.column(name).to_numpy(zero_copy_only=False)
    if cols is None:
        raise ValueError(f"no state recorded at or before tick {tick}")
    return cols, start


def _stream_batches(path: Path):
    """Record batches of an IPC stream; a stream cut short ends at its last complete batch."""
    with pa.OSFile(str(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError):
            return
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError):
                return
            yield batch
