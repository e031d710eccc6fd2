"""Replay verification: re-execute a recorded run and compare it, checkpoint by checkpoint.

Outcomes: ``identical`` (exit 0); ``diverged`` -- re-execution gives different state, named by the
first tick and subsystem (exit 1); ``tampered`` -- a recorded file no longer matches the hashes
the run wrote, located to the first differing event where the log is concerned (exit 1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.run_data import RunData, open_run
from runtime.recording import RunDirError, SCENARIO_COPY, execute, file_sha256, read_summary, with_baseline_cores
from runtime.recorder import read_stream
from runtime.scenario import ScenarioError, parse
from runtime.world import Checkpoint


@dataclass
class Verdict:
    """What verification found; ``lines`` explain it to a person."""

    status: str  # "identical" | "diverged" | "tampered"
    lines: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when identical, 1 otherwise."""
        return 0 if self.status == "identical" else 1


class _Diverged(Exception):
    def __init__(self, tick: int, subsystems: list[str]) -> None:
        super().__init__(tick, subsystems)
        self.tick = tick
        self.subsystems = subsystems


def first_difference(recorded: Path, replayed: Path) -> tuple[int, int] | None:
    """``(row, tick)`` of the first event where two logs differ, or None when equal."""
    a, _ = read_stream(recorded)
    b, _ = read_stream(replayed)
    n = min(a.num_rows, b.num_rows)
    first = n if a.num_rows != b.num_rows else None
    if a.schema.equals(b.schema):
        for name in b.schema.names:
            x = a.column(name).slice(0, n).to_numpy(zero_copy_only=False)
            y = b.column(name).slice(0, n).to_numpy(zero_copy_only=False)
            neq = np.flatnonzero(x != y)
            if neq.size and (first is None or neq[0] < first):
                first = int(neq[0])
    else:
        first = 0
    if first is None:
        return None
    ticks = b.column("tick").to_numpy() if b.num_rows else np.zeros(1, np.int64)
    return first, int(ticks[min(first, len(ticks) - 1)])


def verify(run_dir: Path, progress: Callable[[int], None] | None = None) -> Verdict:
    """Re-execute the run in ``run_dir`` and compare; see the module docstring for outcomes."""
    summary, problems = read_summary(run_dir)
    if not summary or any("summary" in p or SCENARIO_COPY in p for p in problems):
        return Verdict("tampered", problems)
    if summary.get("format") == "agora-sharded-run-1":
        raise RunDirError(f"{run_dir}: a sharded run ({summary.get('shards')} shards) records totals, not an event log, "
                          "so it cannot be replayed; rerunning it with the same shards and seed gives the same "
                          f"final state hash ({str(summary.get('final_state_hash'))[:16]})")
    try:
        sc = parse((run_dir / SCENARIO_COPY).read_text(), str(run_dir / SCENARIO_COPY), run_dir)
    except ScenarioError as exc:
        return Verdict("tampered", [f"recorded scenario no longer validates: {exc.problems[0]}"])
    if summary.get("cores") == "baseline":
        sc = with_baseline_cores(sc)
    recorded: list[dict[str, Any]] = summary["checkpoints"]
    device = summary.get("device", "cpu")
    if device != "cpu":
        return Verdict("diverged", [f"the run used --device {device}: GPU arithmetic matches the CPU to rounding, "
                                    "not bit for bit, so it cannot be verified; record with --device cpu to replay"])
    position = {"i": 0}

    def compare(cp: Checkpoint) -> None:
        i = position["i"]
        if i >= len(recorded) or recorded[i]["tick"] != cp.tick:
            raise _Diverged(cp.tick, ["checkpoint schedule"])
        want = recorded[i]["hashes"]
        differing = sorted(k for k in set(want) | set(cp.hashes) if want.get(k) != cp.hashes.get(k))
        if differing:
            raise _Diverged(cp.tick, differing)
        position["i"] = i + 1

    with tempfile.TemporaryDirectory(prefix="agora-replay-") as tmp:
        out = Path(tmp)
        try:
            execute(sc, run_dir, out, int(summary["seed"]), int(summary["ticks"]), None, progress, compare)
        except _Diverged as exc:
            return Verdict("diverged", problems + [
                f"diverged at tick {exc.tick}: subsystem(s) {', '.join(exc.subsystems)} differ from the recording"
            ])
        if position["i"] != len(recorded):
            return Verdict("diverged", problems + [f"re-execution made {position['i']} checkpoints, the recording has {len(recorded)}"])
        lines = list(problems)
        status = "tampered" if problems else "identical"
        for name in summary["files"]:
            expected = summary["files"].get(name)
            recorded_ok = (run_dir / name).is_file() and file_sha256(run_dir / name) == expected
            replayed_ok = (out / name).is_file() and file_sha256(out / name) == expected
            if recorded_ok and replayed_ok:
                continue
            if recorded_ok and not replayed_ok:
                status = "diverged" if status == "identical" else status
                lines.append(f"{name}: re-execution writes different bytes than the run did")
            if (run_dir / name).is_file() and name.endswith(".arrows") and (out / name).is_file():
                where = first_difference(run_dir / name, out / name)
                if where is not None:
                    lines.append(f"{name}: first difference from re-execution at row {where[0]} (tick {where[1]})")
        if status == "identical":
            lines.append(f"{len(recorded)} checkpoints and the event log match (final state {summary['final_state_hash'][:16]})")
        return Verdict(status, lines)


def open(run_dir: Path | str) -> RunData:  # noqa: A001 -- `runtime.replay.open(DIR)` reads like the built-in
    """Open a recorded run for analysis: tables, state at any tick, SQL (:class:`runtime.run_data.RunData`)."""
    return open_run(run_dir)
