"""Recorded runs of the gpu engine, and their replay.

A gpu-engine run directory has the files of any run: ``scenario.toml``, ``run.json``,
``events.arrows`` (faults, synchronisations, checkpoints), ``metrics.arrows`` (one row per tick,
all integers) and ``summary.json`` (format ``agora-gpu-run-1``: the SHA-256 of every subsystem at
each checkpoint, the final state, totals, the files' hashes and the summary's own hash). Everything
recorded is an integer computed in a fixed order, so ``agora replay DIR --verify`` re-executes the
run on the CPU (or any device) and compares the bits, whatever device recorded it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.kernel.scenario import Scenario, scenario_hash

FORMAT = "agora-gpu-run-1"


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return str(torch.cuda.get_device_name(0))
    return "cpu"


def record_gpu(
    scenario: Scenario,
    raw: bytes,
    base: Path,
    out: Path,
    manifest: dict[str, Any],
    progress: Callable[[int], None] | None = None,
    key: bytes | None = None,
    on_checkpoint: Callable[[int, dict[str, str]], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` on the gpu engine into ``out`` (prepared, with ``scenario.toml`` and
    ``run.json`` written); return the summary written there."""
    from runtime.record.recorder import EventLog, MetricsLog
    from runtime.record.recording import (
        SCENARIO_COPY,
        SUMMARY,
        _canonical,
        file_sha256,
        key_id,
        sign,
        versions,
    )
    from runtime.tensor.world import TensorWorld

    device = manifest["device"]
    ledger_key = b"agora-gpu-engine" if key is None else hashlib.sha256(b"ledger" + key).digest()
    world = TensorWorld(scenario, seed=manifest["seed"], device=device, base=base, key=ledger_key)
    until = manifest["ticks"]
    flush = scenario.record.flush_seconds
    log = EventLog(out / "events.arrows", flush)
    metrics = MetricsLog(out / "metrics.arrows", flush)
    every = scenario.world.checkpoint_every
    tl = scenario.world.tick_length
    checkpoints: list[dict[str, Any]] = []
    totals = {"tasks_posted": 0, "tasks_served": 0, "contracts": 0, "caught": 0, "cheats": 0}
    totals.update(proved=0, refuted=0, surplus_pm=0, max_surplus_pm=0)
    totals.update(messages_sent=0, messages_lost=0, messages_blocked=0, messages_duplicated=0)
    start = time.perf_counter()
    try:
        for tick in range(until):
            row = world.step()
            for k in totals:
                totals[k] += row.get(k, 0)
            for kind, subsystem, agent, other, amount, detail in world.events:
                log.emit(tick, tick * tl, kind, subsystem, agent, other, amount, 0.0, detail)
            if (tick + 1) % every == 0 or tick == until - 1:
                if not world.conserved():
                    raise AssertionError(
                        f"gpu engine: credits not conserved at tick {tick} "
                        f"({world.total_credits()} held, {int(world.minted) - int(world.burned)} "
                        "issued)"
                    )
                hashes = world.subsystem_hashes()
                state = world.combine(hashes)
                checkpoints.append({"tick": tick, "state": state, "hashes": hashes})
                log.emit(tick, tick * tl, "checkpoint", "world", -1, -1, 0, 0.0, state)
                if on_checkpoint is not None:
                    on_checkpoint(tick, hashes)
            log.end_tick()
            figures: dict[str, int | float] = {k: int(v) for k, v in row.items()}
            if "order_pm" in row:
                figures["r_global"] = row["order_pm"] / 1000  # exact: an integer per mille
            metrics.write(figures)
            if progress is not None:
                progress(tick + 1)
        world.synchronize()
        proved, refuted = world.collect_proofs()  # the last tick's sample
        totals["proved"] += proved
        totals["refuted"] += refuted
    finally:
        world.close()
        log.close()
        metrics.close()
    wall = time.perf_counter() - start
    final = checkpoints[-1]["hashes"]
    prices = world.prices.cpu().numpy()
    summary: dict[str, Any] = {
        "format": FORMAT,
        "engine": "gpu",
        "cores": manifest["cores"],
        "device": device,
        "device_name": _device_name(device),
        "scenario": scenario.world.name,
        "scenario_file": SCENARIO_COPY,
        "scenario_sha256": scenario_hash(raw),
        "seed": manifest["seed"],
        "ticks": until,
        "tick_length": tl,
        "realtime_factor": None,
        "parent": None,
        "wall_seconds": round(wall, 6),
        "versions": versions(),
        "checkpoints": checkpoints,
        "final": final,
        "final_state_hash": hashlib.sha256(json.dumps(final, sort_keys=True).encode()).hexdigest(),
        "totals": {
            "agents": world.N,
            "events": log.seq,
            "supply_held_micro": world.total_credits(),
            "supply_issued_micro": int(world.minted) - int(world.burned),
            # Named as in every run's summary: distinct replica states, batches refused on arrival.
            "distinct_ledger_roots": world.ledger.distinct_states(),
            "ops_refused": world.ledger.rejected,
            "reputation_accuracy": None,
            "params": {},
            "messages": {
                k.removeprefix("messages_"): v
                for k, v in totals.items()
                if k.startswith("messages")
            },
            "mean_price_micro": int(np.asarray(prices, dtype=np.int64).sum()) // len(prices),
            **{
                k: v for k, v in totals.items() if not k.startswith(("messages", "surplus", "max_"))
            },
            "roles": {
                p.cfg.name: {
                    "efficiency": totals["surplus_pm"] / totals["max_surplus_pm"]
                    if totals["max_surplus_pm"]
                    else None
                }
                for p in world.pops
                if p.role == "negotiator"
            },
        },
        "files": {name: file_sha256(out / name) for name in ("events.arrows", "metrics.arrows")},
    }
    if key is not None:
        summary["signature"] = {
            "alg": "HMAC-SHA256",
            "key_id": key_id(key),
            "mac": sign(summary, key),
        }
    summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
    tmp = out / f".{SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / SUMMARY)
    return summary


# Figures of a summary that depend on where and when the run was made, not on what it computed.
_CIRCUMSTANCES = (
    "wall_seconds",
    "device",
    "device_name",
    "versions",
    "summary_sha256",
    "signature",
)


def verify_gpu(
    run_dir: Path,
    scenario: Scenario,
    raw: bytes,
    summary: dict[str, Any],
    manifest: dict[str, Any],
    key: bytes | None,
    progress: Callable[[int], None] | None,
    device: str = "cpu",
) -> tuple[str, list[str]]:
    """Re-execute a gpu-engine run on ``device`` and compare every checkpoint, file and figure;
    ``(status, lines)`` with status ``identical``, ``diverged`` or ``tampered``."""
    from runtime.record.recording import (
        RUN_FILE,
        SCENARIO_COPY,
        SUMMARY,
        _canonical,
        write_manifest,
    )

    listed = summary.get("checkpoints")
    recorded = {
        c.get("tick"): c.get("hashes")
        for c in (listed if isinstance(listed, list) else [])
        if isinstance(c, dict)
    }
    files = summary.get("files")
    files = files if isinstance(files, dict) else {}
    trusted = summary.get("summary_sha256") == hashlib.sha256(_canonical(summary)).hexdigest()

    class Diverged(Exception):
        pass

    def compare(tick: int, hashes: dict[str, str]) -> None:
        if not trusted:
            return
        want = recorded.get(tick)
        if not isinstance(want, dict):
            raise Diverged(tick, ["checkpoint schedule (the summary has no checkpoint here)"])
        differing = sorted(k for k in set(want) | set(hashes) if want.get(k) != hashes.get(k))
        if differing:
            raise Diverged(tick, differing)

    with tempfile.TemporaryDirectory(prefix="agora-replay-") as tmp:
        out = Path(tmp)
        (out / SCENARIO_COPY).write_bytes(raw)
        again = {**manifest, "device": device}
        write_manifest(out, again)
        try:
            made = record_gpu(scenario, raw, run_dir, out, again, progress, key, compare)
        except Diverged as exc:
            tick, subsystems = exc.args
            return "diverged", [
                f"diverged at tick {tick}: subsystem(s) {', '.join(subsystems)} differ from the "
                "recording"
            ]
        lines = []
        made_files = {SCENARIO_COPY, RUN_FILE, SUMMARY, *made["files"]}
        for path in sorted(run_dir.iterdir()):
            if path.name not in made_files:
                lines.append(f"{path.name}: extra (a gpu-engine run does not make it)")
        if set(files) != set(made["files"]):
            lines.append("summary.json: 'files' does not list the run's files")
        for name in sorted(made["files"]):
            digest = files.get(name)
            if not (run_dir / name).is_file() or (run_dir / name).is_symlink():
                lines.append(f"{name} is missing")
            elif hashlib.sha256((run_dir / name).read_bytes()).hexdigest() != digest:
                lines.append(f"{name} was modified after the run (SHA-256 mismatch)")
            elif made["files"].get(name) != digest:
                lines.append(f"{name} differs from a re-execution")
        for k in sorted(set(summary) | set(made)):
            if k in _CIRCUMSTANCES:
                continue
            if summary.get(k) != made.get(k):
                lines.append(f"summary.json: {k!r} differs from a re-execution")
        if not trusted:
            lines.insert(0, "summary.json: its self-hash does not match: edited after the run")
    if lines:
        return "tampered", lines
    return "identical", [
        f"{len(made['checkpoints'])} checkpoints, both files and every figure of the summary match "
        f"a re-execution on {made['device_name']} (recorded on {summary.get('device_name')}; "
        f"final state {made['final_state_hash'][:16]})"
    ]
