"""A sharded world's run directory: recorded by :func:`record_sharded`, checked by
:func:`verify_sharded` (what ``agora replay --verify`` does with it).

The directory holds ``scenario.toml`` (and the files it names), ``run.json`` (seed, ticks, shards),
each shard's ``shard-K/events.arrows`` and ``shard-K/metrics.arrows`` (and its state files when the
scenario records them), each shard's part of every barrier cut (``shard-K/checkpoints/``: what
:func:`resume_sharded` goes on from), and ``summary.json``: the totals, each shard's report with
its state hashes at every checkpoint tick, and the SHA-256 of every recorded file.

Verification re-runs the shards with the same K in this process (a shard's results do not depend on
where it runs) into a temporary folder and compares every file byte for byte, every figure of the
summary except how the run was carried out (wall time, versions, the backend, restarts), and the
checkpoint hashes: a run whose recorded state is not what its scenario computes is named by the
first checkpoint tick, the shard and the subsystems that differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runtime.kernel.scenario import ScenarioError, parse, scenario_hash
from runtime.record.recording import (
    RUN_FILE,
    SCENARIO_COPY,
    SUMMARY,
    _canonical,
    _copy_references,
    checked_until,
    file_sha256,
    prepare_out,
    recorded_files,
    versions,
)
from runtime.scale.sharded import CUT_FORMAT, FORMAT, cut_name, run_sharded, shard_dir

CUT_FILE = re.compile(r"cut_(\d{8})\.npz")

# Summary fields that say how the run was carried out, not what it computed.
HOW_IT_RAN = ("backend", "restarts", "resumed_at")


def record_sharded(
    scenario_path: Path,
    out: Path,
    *,
    seed: int | None = None,
    until: int | None = None,
    overwrite: bool = False,
    backend: str = "ray",
) -> dict[str, Any]:
    """Run a sharded scenario file into the run directory ``out``: ``scenario.toml``, ``run.json``,
    each shard's ``shard-K/events.arrows`` and ``shard-K/metrics.arrows``, and ``summary.json``
    (format :data:`FORMAT`: per-shard totals and checkpoint hashes, replica roots, conservation,
    the SHA-256 of every file). Returns the summary."""
    from runtime.kernel.scenario import load

    scenario, raw = load(scenario_path)
    seed = scenario.world.seed if seed is None else seed
    until = checked_until(scenario, until, scenario_path.parent)
    return record_sharded_text(raw, scenario_path.parent, out, seed, until, overwrite, backend)


def record_sharded_text(
    raw: bytes,
    base: Path,
    out: Path,
    seed: int,
    until: int,
    overwrite: bool = False,
    backend: str = "ray",
) -> dict[str, Any]:
    """:func:`record_sharded` for a scenario's bytes (files it names relative to ``base``)."""
    scenario = parse(raw.decode(), "scenario", base)
    prepare_out(out, overwrite, keep=(base,))
    manifest = {"format": FORMAT, "seed": seed, "ticks": until, "shards": None}
    try:
        (out / SCENARIO_COPY).write_bytes(raw)
        _copy_references(scenario, base, out)
        n_shards = scenario.distributed.shards if scenario.distributed is not None else 1
        manifest["shards"] = n_shards
        (out / RUN_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # refused before tick 0: nothing half-made is left
        raise
    result = run_sharded(raw.decode(), base, seed=seed, until=until, backend=backend, out=out)
    return _write_summary(out, raw, scenario, seed, result, backend, None)


def _write_summary(
    out: Path,
    raw: bytes,
    scenario: Any,
    seed: int,
    result: Any,
    backend: str,
    resumed_at: int | None,
) -> dict[str, Any]:
    """Write ``summary.json`` of a finished sharded run (whole, then renamed); return it as a
    reader sees it."""
    assert result.closed is not None
    files = {
        f"{shard_dir(k)}/{name}": file_sha256(out / shard_dir(k) / name)
        for k in range(result.shards)
        for name in recorded_files(out / shard_dir(k))
    }
    summary: dict[str, Any] = {
        "format": FORMAT,
        "scenario": scenario.world.name,
        "scenario_file": SCENARIO_COPY,
        "scenario_sha256": scenario_hash(raw),
        "seed": seed,
        "ticks": result.ticks,
        "shards": result.shards,
        "backend": backend,
        "restarts": result.restarts,
        "resumed_at": resumed_at,
        "wall_seconds": round(result.wall_seconds, 6),
        "versions": versions(),
        "settle_rounds": result.settle_rounds,
        "converged": result.converged,
        "roots": result.roots,
        "credits_held_micro": result.credits_held,
        "supply_issued_micro": result.supply_issued,
        "conserved": result.conserved,
        "lowest_balance_micro": result.lowest_balance,
        "final_state_hash": result.state_hash,
        "shard_reports": result.reports,
        "events": [c["events"] for c in result.closed],
        "files": files,
    }
    summary = json.loads(json.dumps(summary, default=str))  # JSON's types, before hashing
    summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
    text = json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
    tmp = out / f".{SUMMARY}.tmp"  # written whole, then renamed: a summary that exists is complete
    tmp.write_text(text)
    tmp.replace(out / SUMMARY)
    written: dict[str, Any] = json.loads(text)  # as a reader sees it (keys are strings)
    return written


def first_divergence(
    recorded: list[dict[str, Any]], made: list[dict[str, Any]]
) -> tuple[int, int, list[str]] | None:
    """``(tick, shard, subsystems)`` of the first checkpoint where the recorded shard reports'
    hashes differ from a re-execution's (ticks in order, shards in order within a tick), or None."""
    found: list[tuple[int, int, list[str]]] = []
    for k, (want, got) in enumerate(zip(recorded, made, strict=False)):
        want_cps = want.get("checkpoints") if isinstance(want, dict) else None
        by_tick = {
            c.get("tick"): c.get("hashes")
            for c in (want_cps if isinstance(want_cps, list) else [])
            if isinstance(c, dict)
        }
        for cp in got["checkpoints"]:
            hashes = by_tick.get(cp["tick"])
            if not isinstance(hashes, dict):
                found.append((cp["tick"], k, ["checkpoint schedule (no checkpoint recorded here)"]))
                break
            differing = sorted(
                name
                for name in set(hashes) | set(cp["hashes"])
                if hashes.get(name) != cp["hashes"].get(name)
            )
            if differing:
                found.append((cp["tick"], k, differing))
                break
    return min(found, key=lambda f: (f[0], f[1])) if found else None


def verify_sharded(
    run_dir: Path, summary: dict[str, Any], manifest: dict[str, Any]
) -> tuple[str, list[str]]:
    """``(status, lines)`` for a sharded run directory: ``identical``, ``diverged`` or
    ``tampered`` (the module docstring)."""
    from runtime.record.replay import _compare_files, _compare_summary

    bad = [
        f"{RUN_FILE}: {key!r} is missing or not a positive integer"
        for key in ("seed", "ticks", "shards")
        if not isinstance(manifest.get(key), int)
        or isinstance(manifest.get(key), bool)
        or manifest[key] < (0 if key == "seed" else 1)
    ]
    if manifest.get("format") != FORMAT:
        bad.append(f"{RUN_FILE}: 'format' is not a sharded run's ({FORMAT})")
    if bad:
        return "tampered", bad
    path = run_dir / SCENARIO_COPY
    if not path.is_file() or path.is_symlink():
        return "tampered", [f"{SCENARIO_COPY} is missing or not a regular file"]
    raw = path.read_bytes()
    try:
        scenario = parse(raw.decode("utf-8"), str(path), run_dir)
    except (ScenarioError, UnicodeDecodeError) as exc:
        first = exc.problems[0] if isinstance(exc, ScenarioError) else str(exc)
        return "tampered", [f"{SCENARIO_COPY} no longer validates: {first}"]
    shards = scenario.distributed.shards if scenario.distributed is not None else 1
    if shards != manifest["shards"]:
        return "tampered", [
            f"{RUN_FILE} says {manifest['shards']} shards; {SCENARIO_COPY} runs {shards}"
        ]
    trusted = summary.get("summary_sha256") == hashlib.sha256(_canonical(summary)).hexdigest()
    with tempfile.TemporaryDirectory(prefix="agora-replay-") as tmp:
        out = Path(tmp) / "run"
        made = record_sharded_text(
            raw, run_dir, out, manifest["seed"], manifest["ticks"], backend="inline"
        )
        for key in HOW_IT_RAN:
            made[key] = summary.get(key)
        reports = summary.get("shard_reports")
        recorded = reports if isinstance(reports, list) else []
        where = first_divergence(recorded, made["shard_reports"])
        if trusted and where is not None:
            tick, k, subsystems = where
            return "diverged", [
                f"diverged at tick {tick} on shard {k}: subsystem(s) {', '.join(subsystems)} "
                "differ from the recording"
            ]
        lines = _compare_files(run_dir, out) + _compare_summary(summary, made)
    if lines:
        return "tampered", lines
    n_checkpoints = len(made["shard_reports"][0]["checkpoints"])
    return "identical", [
        f"{made['shards']} shards, {n_checkpoints} checkpoint{'' if n_checkpoints == 1 else 's'} "
        f"each: all {len(made['files'])} "
        "recorded files, the scenario and every figure of the summary match a re-execution "
        f"with the same shards (final state {made['final_state_hash'][:16]})"
    ]


def _cut_ticks(run_dir: Path, shards: int) -> list[int]:
    """Barrier ticks for which every shard wrote its part of the cut, newest first."""
    found: set[int] | None = None
    for k in range(shards):
        folder = run_dir / shard_dir(k) / "checkpoints"
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        ticks = {int(m.group(1)) for n in names if (m := CUT_FILE.fullmatch(n))}
        found = ticks if found is None else found & ticks
    return sorted(found or set(), reverse=True)


def _recorded_cut(run_dir: Path, k: int, tick: int) -> str | None:
    """The state hash shard ``k`` recorded for its cut before ``tick`` (its ``cut`` event), or
    None when its event log does not hold it (the run was killed before writing it)."""
    from runtime.record.recorder import read_stream

    path = run_dir / shard_dir(k) / "events.arrows"
    if path.is_symlink() or not path.is_file():
        return None
    events, _ = read_stream(path)
    kinds = events.column("kind").to_pylist()
    barriers = events.column("other").to_pylist()
    for i, (kind, barrier) in enumerate(zip(kinds, barriers, strict=True)):
        if kind == "cut" and barrier == tick:
            return str(events.column("detail")[i].as_py())
    return None


def _check_cut(run_dir: Path, k: int, tick: int, recorded: str, scenario: Any) -> None:
    """Refuse shard ``k``'s cut before ``tick`` when its world is not the state it recorded."""
    from runtime.kernel.world import Checkpoint, World, role_modules
    from runtime.record import snapshot
    from runtime.record.recording import RunDirError

    path = run_dir / shard_dir(k) / "checkpoints" / cut_name(tick)
    try:
        root = snapshot.load(
            path, (*snapshot.AGORA_MODULES, "networkx", *role_modules(scenario, run_dir))
        )
    except snapshot.SnapshotError as exc:
        raise RunDirError(f"{path}: cannot be used: {exc}") from None
    world = root.get("world") if isinstance(root, dict) else None
    if not isinstance(world, World) or root.get("format") != CUT_FORMAT:
        raise RunDirError(f"{path}: not a shard's cut")
    state = Checkpoint(tick, world.hashes()).state_hash
    if state != recorded:
        raise RunDirError(
            f"{path}: altered: its state hash {state[:16]} is not the {recorded[:16]} shard {k} "
            f"recorded at the barrier before tick {tick}"
        )


def resume_sharded(run_dir: Path, backend: str = "ray") -> tuple[dict[str, Any], int]:
    """Go on with the sharded run in ``run_dir`` that did not finish, from the newest barrier cut
    every shard wrote and recorded; return the summary and the tick it went on from (-1: no cut
    could be used, so the run started again). The finished directory holds the bytes of an
    uninterrupted run."""
    from runtime.record.recording import RunDirError

    if (run_dir / SUMMARY).exists():
        raise RunDirError(f"{run_dir}: the run finished ({SUMMARY} is there); nothing to resume")
    try:
        manifest = json.loads((run_dir / RUN_FILE).read_text())
        raw = (run_dir / SCENARIO_COPY).read_bytes()
        scenario = parse(raw.decode("utf-8"), str(run_dir / SCENARIO_COPY), run_dir)
    except (OSError, ValueError, ScenarioError) as exc:
        first = exc.problems[0] if isinstance(exc, ScenarioError) else str(exc)
        raise RunDirError(f"{run_dir}: cannot be resumed: {first}") from None
    seed, until, shards = manifest.get("seed"), manifest.get("ticks"), manifest.get("shards")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seed, until, shards)):
        raise RunDirError(f"{run_dir / RUN_FILE}: seed, ticks or shards is not a whole number")
    runs = scenario.distributed.shards if scenario.distributed is not None else 1
    if runs != shards:
        raise RunDirError(
            f"{run_dir}: {RUN_FILE} says {shards} shards; {SCENARIO_COPY} runs {runs}: "
            "edited after the run started"
        )
    for tick in _cut_ticks(run_dir, shards):
        recorded = [_recorded_cut(run_dir, k, tick) for k in range(shards)]
        if any(r is None for r in recorded):
            continue  # killed before every shard's log held it: an earlier cut
        for k, hash_ in enumerate(recorded):
            assert hash_ is not None
            _check_cut(run_dir, k, tick, hash_, scenario)
        for k in range(shards):  # later cuts are re-made as the run goes on
            folder = run_dir / shard_dir(k) / "checkpoints"
            for p in folder.glob("cut_*.npz"):
                if p.name > cut_name(tick):
                    p.unlink()
        result = run_sharded(
            raw.decode(),
            run_dir,
            seed=seed,
            until=until,
            backend=backend,
            out=run_dir,
            resume_at=tick,
        )
        return _write_summary(run_dir, raw, scenario, seed, result, backend, tick), tick
    for k in range(shards):  # no cut to go on from: start again
        shutil.rmtree(run_dir / shard_dir(k), ignore_errors=True)
    result = run_sharded(
        raw.decode(), run_dir, seed=seed, until=until, backend=backend, out=run_dir
    )
    return _write_summary(run_dir, raw, scenario, seed, result, backend, None), -1
