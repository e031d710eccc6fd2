"""Runs that go on: ``agora run --resume`` after a kill, and ``agora fork`` for a what-if branch.

Both start from a world saved at a checkpoint (:mod:`runtime.record.checkpoints`). Before a saved
world is used, its state hashes are compared with the checkpoint hash the run recorded in its event
log, so an altered checkpoint is refused, not run.

* :func:`resume` continues a run directory whose run did not finish (killed, even by SIGKILL) from
  its last saved world: the logs are cut back to where they stood at that checkpoint and written on,
  so the finished run directory holds the bytes of an uninterrupted run.
* :func:`fork` starts a new run directory from a checkpoint of another run, optionally with changed
  parameters (``--set`` keys as in ``agora sweep``). The branch records from the tick after the
  fork; its ``run.json`` and summary name the parent run, the tick and the checkpoint's SHA-256, and
  it keeps a copy of that checkpoint, so it can be verified without its parent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import tomli_w

from runtime.kernel.scenario import GOVERNED, Scenario, ScenarioError, parse
from runtime.kernel.world import Checkpoint, World
from runtime.record.checkpoints import SNAPSHOT_DIR, load_world, snapshot_name, snapshot_ticks
from runtime.record.controlled import write_controls
from runtime.record.recorder import EventLog, MetricsLog
from runtime.record.recording import (
    RUN_FILE,
    SCENARIO_COPY,
    SUMMARY,
    RunDirError,
    _copy_references,
    file_sha256,
    prepare_out,
    run_world,
    summarize,
    with_baseline_cores,
    write_manifest,
)
from runtime.record.snapshot import SnapshotError
from runtime.record.state_log import StateLog

# What a fork may change, by section; anything else is fixed once a world is built.
LIVE_SECTIONS = {
    "world": {"name", "ticks"},
    "bus": {"loss", "duplication", "jitter"},
    "economy": {
        "anti_entropy_every",
        "task_unit_credits",
        "uptime_millicredits_per_hour",
        "price_elasticity",
        "price_max_step",
    },
    "record": {"flush_seconds"},
    "coordination": {
        "coupling",
        "dt",
        "steps_per_tick",
        "graph_every",
        "sync_threshold",
        "close_votes_on_sync",
        "tension_every",
    },
    # The [governance] keys a proposal may change (GOVERNED less the economy's elasticity).
    "governance": set(GOVERNED) - {"price_elasticity"},
}
FIXED_SECTIONS = ("network", "proposal", "vote", "stake_event", "distributed")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: does not parse ({exc})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: not a JSON object")
    return data


def _run_dir(run_dir: Path) -> dict[str, Any]:
    """``run_dir``'s manifest, checked: a directory Agora recorded into."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    for name in (RUN_FILE, SCENARIO_COPY):
        path = run_dir / name
        if path.is_symlink() or not path.is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no {name}; `agora run` writes one)")
    manifest = _read_json(run_dir / RUN_FILE)
    if manifest.get("format") == "agora-sharded-run-2":  # runtime.scale.sharded.FORMAT
        raise RunDirError(
            f"{run_dir}: a sharded run cannot be branched yet (agora run --resume continues "
            "one that did not finish)"
        )
    for key, kind in (("seed", int), ("ticks", int), ("device", str), ("cores", str)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise RunDirError(f"{run_dir / RUN_FILE}: {key!r} is missing or not a {kind.__name__}")
    if manifest.get("engine") == "gpu":
        raise RunDirError(
            f"{run_dir}: a gpu-engine run saves no world to continue or branch from; run the "
            "scenario again (with --until for fewer ticks)"
        )
    return manifest


def _scenario(run_dir: Path, manifest: dict[str, Any]) -> tuple[Scenario, bytes]:
    raw = (run_dir / SCENARIO_COPY).read_bytes()
    try:
        scenario = parse(raw.decode("utf-8"), str(run_dir / SCENARIO_COPY), run_dir)
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{run_dir / SCENARIO_COPY}: not UTF-8 text ({exc})") from None
    return (
        with_baseline_cores(scenario, run_dir) if manifest["cores"] == "baseline" else scenario
    ), raw


def recorded_checkpoint(run_dir: Path, tick: int, upto: int | None = None) -> str | None:
    """The state hash the run recorded at the checkpoint of ``tick`` (its event log's ``checkpoint``
    event), reading at most ``upto`` bytes of the log; None when it recorded none there."""
    path = run_dir / "events.arrows"
    if path.is_symlink() or not path.is_file():
        return None
    data = path.read_bytes()[:upto]
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError):
        return None
    while True:
        try:
            batch = reader.read_next_batch()
        except (StopIteration, pa.ArrowInvalid, OSError):
            return None
        ticks = batch.column("tick").to_numpy()
        if batch.num_rows == 0 or ticks[0] < tick:
            continue
        if ticks[0] > tick:
            return None
        kinds = batch.column("kind").to_pylist()
        details = batch.column("detail").to_pylist()
        return next((d for k, d in zip(kinds, details, strict=True) if k == "checkpoint"), None)


def load_saved(
    path: Path, scenario: Scenario, key: bytes | None = None
) -> tuple[World, dict[str, Any]]:
    """The world saved in ``path`` and its logs' positions (not yet checked against its run);
    ``key``: a signed run's key, from which its ledger keys come."""
    from runtime.kernel.world import role_modules

    try:
        world, logs = load_world(path, role_modules(scenario, path.parent.parent))
    except SnapshotError as exc:
        raise RunDirError(f"checkpoint {path.name} cannot be used: {exc}") from None
    world.use_keys(key)
    return world, logs


def _check(world: World, path: Path, recorded: str | None) -> None:
    """Refuse a saved world whose state is not what its run recorded at that checkpoint."""
    state = Checkpoint(world.tick, world.hashes()).state_hash
    if recorded is None:
        raise RunDirError(
            f"{path}: the run recorded no checkpoint at tick {world.tick} to check it against"
        )
    if state != recorded:
        raise RunDirError(
            f"checkpoint {path.name} was altered: its state hash {state[:16]} is not the "
            f"{recorded[:16]} the run recorded at tick {world.tick}"
        )


def attach(
    world: World,
    out: Path,
    base: Path,
    logs: dict[str, Any] | None,
    numbered_from: dict[str, Any] | None = None,
) -> None:
    """Give a restored world its run directory: logs resumed at ``logs``' positions, or new ones
    (whose events are numbered on from ``numbered_from``'s, a fork's parent's)."""
    rec = world.scenario.record
    world.base = base
    world.log = EventLog(
        out / "events.arrows", rec.flush_seconds, None if logs is None else logs.get("events")
    )
    world.metrics = MetricsLog(
        out / "metrics.arrows", rec.flush_seconds, None if logs is None else logs.get("metrics")
    )
    if rec.state:
        world.state_log = StateLog(
            out, rec.flush_seconds, None if logs is None else logs.get("state")
        )
    if rec.snapshots != "none":
        world.snapshots = out / SNAPSHOT_DIR
    if logs is None and numbered_from is not None and "events" in numbered_from:
        world.log.seq = int(numbered_from["events"]["seq"])


def _clean_temporaries(run_dir: Path) -> None:
    for folder in (run_dir, run_dir / "state", run_dir / SNAPSHOT_DIR, run_dir / "cores"):
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink()


def resume(
    run_dir: Path, progress: Callable[[int], None] | None = None, key: bytes | None = None
) -> tuple[dict[str, Any], int]:
    """Continue the run in ``run_dir`` from its last saved world; return the summary and the tick
    it went on from (−1: no checkpoint was saved, so it started again from tick 0). A signed run
    needs its ``key`` (its ledger keys come from it)."""
    manifest = _run_dir(run_dir)
    _key_matches(manifest, key, run_dir)
    if (run_dir / SUMMARY).exists():
        raise RunDirError(
            f"{run_dir}: the run finished ({SUMMARY} is there); nothing to resume "
            "(`agora fork` branches from a finished run)"
        )
    if manifest.get("device", "cpu") != "cpu":
        raise RunDirError(
            f"{run_dir}: a --device {manifest['device']} run cannot be resumed bit for bit"
        )
    scenario, raw = _scenario(run_dir, manifest)
    until = manifest["ticks"]
    _clean_temporaries(run_dir)
    ticks = snapshot_ticks(run_dir)
    if not ticks:  # killed before its first checkpoint: start again from the beginning
        from runtime.record.recording import execute

        for name in ("events.arrows", "metrics.arrows", "state", "cores", SNAPSHOT_DIR):
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        world, wall = execute(
            scenario,
            run_dir,
            run_dir,
            manifest["seed"],
            until,
            None,
            progress,
            device=manifest["device"],
            key_secret=key,
        )
        write_controls(world, run_dir)
        return summarize(world, run_dir, raw, manifest, wall, key), -1
    tick = ticks[-1]
    path = run_dir / SNAPSHOT_DIR / snapshot_name(tick)
    world, logs = load_saved(path, scenario, key)
    _check(world, path, recorded_checkpoint(run_dir, tick, logs.get("events", {}).get("offset")))
    attach(world, run_dir, run_dir, logs)
    world, wall = run_world(world, until, progress)
    write_controls(world, run_dir)  # the actions this run took, past any a killed run wrote
    return summarize(world, run_dir, raw, manifest, wall, key), tick


def _key_matches(manifest: dict[str, Any], key: bytes | None, run_dir: Path) -> None:
    from runtime.record.recording import key_id

    signed = manifest.get("signed")
    if signed is not None and key is None:
        raise RunDirError(
            f"{run_dir}: a signed run (agora run --sign-key); its ledger keys come from the key: "
            "pass --sign-key FILE with the same key"
        )
    if key is not None and signed != key_id(key):
        raise RunDirError(
            f"{run_dir}: "
            + (
                "not a signed run; drop --sign-key"
                if signed is None
                else f"signed with key {signed}, not with this one ({key_id(key)})"
            )
        )


def check_changes(old: Scenario, new: Scenario, tick: int, base: Path = Path(".")) -> list[str]:
    """What a fork at ``tick`` may not change from ``old`` to ``new``: one line per problem."""
    problems = []
    a, b = old.model_dump(), new.model_dump()
    for section, live in LIVE_SECTIONS.items():
        if (a.get(section) is None) != (b.get(section) is None):
            problems.append(f"{section}: a fork cannot add or remove the [{section}] section")
            continue
        for key in sorted(set(a.get(section) or {}) | set(b.get(section) or {})):
            if (a[section] or {}).get(key) != (b[section] or {}).get(key) and key not in live:
                problems.append(
                    f"{section}.{key}: fixed when the world is built; a fork cannot change it "
                    f"(it may change {', '.join(sorted(live))})"
                )
    for section in FIXED_SECTIONS:
        if a.get(section) != b.get(section):
            problems.append(f"{section}: fixed when the world is built; a fork cannot change it")
    if a["world"]["ticks"] != b["world"]["ticks"] and b["world"]["ticks"] <= tick + 1:
        problems.append(
            f"world.ticks: {b['world']['ticks']} leaves no tick after the fork at {tick}"
        )
    problems += _population_changes(old, new, base)
    for i, (was, now) in enumerate(zip(old.fault, new.fault, strict=False)):
        if (was.at <= tick or now.at <= tick) and was != now:
            problems.append(
                f"fault[{i}]: starts at or before the fork's tick {tick}, so it has happened; "
                "only later faults can change"
            )
    for i in range(len(new.fault), len(old.fault)):
        if old.fault[i].at <= tick:
            problems.append(
                f"fault[{i}]: starts at or before the fork's tick {tick}; it cannot be removed"
            )
    for i in range(len(old.fault), len(new.fault)):
        if new.fault[i].at <= tick:
            problems.append(f"fault[{i}]: a new fault must start after the fork's tick {tick}")
    return problems


def _population_changes(old: Scenario, new: Scenario, base: Path) -> list[str]:
    from runtime.kernel.roles import resolve

    if [(p.name, p.role, p.count) for p in old.population] != [
        (p.name, p.role, p.count) for p in new.population
    ]:
        return ["population: a fork keeps every population (name, role, count) as it is"]
    problems = []
    for was, now in zip(old.population, new.population, strict=True):
        params = resolve(was.role, base).cls.Params
        fixed = {"initial_credits", "core", *params.setup_only}
        mine = {
            key for key in ("initial_credits", "core") if getattr(was, key) != getattr(now, key)
        }
        before, after = params.model_validate(was.params), params.model_validate(now.params)
        mine |= {key for key in params.model_fields if getattr(before, key) != getattr(after, key)}
        for key in sorted(mine & fixed):
            problems.append(
                f"population.{was.name}.{key}: read when the world is built; a fork cannot "
                f"change it (fixed for a {was.role}: {', '.join(sorted(fixed))})"
            )
    return problems


def forked_scenario(raw: bytes, sets: list[str], label: str, base: Path) -> tuple[Scenario, bytes]:
    """The parent's scenario with ``KEY=VALUE`` changes (keys as in ``agora sweep``)."""
    import tomllib

    from runtime.kernel.settings import SettingError, override, read_value

    data = tomllib.loads(raw.decode("utf-8"))
    problems = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            problems.append(
                f"--set {item!r}: expected KEY=VALUE, e.g. economy.price_elasticity=0.3"
            )
            continue
        try:
            override(data, key.strip(), read_value(value.strip()))
        except SettingError as exc:
            problems += exc.problems
    if problems:
        raise ScenarioError(problems)
    text = tomli_w.dumps(data) if sets else raw.decode("utf-8")
    return parse(text, label, base), text.encode()


def fork(
    parent: Path,
    tick: int,
    sets: list[str],
    out: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Branch a new run into ``out`` from ``parent``'s checkpoint at ``tick``; return its summary.
    A signed parent needs its ``key``; the branch is signed with it too."""
    manifest = _run_dir(parent)
    _key_matches(manifest, key, parent)
    ticks = snapshot_ticks(parent)
    if tick not in ticks:
        near = sorted(ticks, key=lambda t: (abs(t - tick), t))[:3]
        raise RunDirError(
            f"--at {tick}: {parent} saved no world at tick {tick}; "
            + (
                f"the nearest are at ticks {', '.join(map(str, sorted(near)))}"
                if near
                else 'it saved none (record.snapshots = "none")'
            )
        )
    if out.resolve() == parent.resolve():
        raise RunDirError(f"--out {out}: that is the parent run; choose a new folder")
    old, raw = _scenario(parent, manifest)
    scenario, text = forked_scenario(raw, sets, f"{parent / SCENARIO_COPY} with --set", parent)
    if manifest["cores"] == "baseline":
        scenario = with_baseline_cores(scenario, parent)
    problems = check_changes(old, scenario, tick, parent)
    if problems:
        raise ScenarioError([f"--set: {line}" for line in problems])
    source = parent / SNAPSHOT_DIR / snapshot_name(tick)
    world, logs = load_saved(source, old, key)
    _check(world, source, recorded_checkpoint(parent, tick))
    prepare_out(out, overwrite)
    try:
        (out / SCENARIO_COPY).write_bytes(text)
        _copy_references(scenario, parent, out)
        (out / SNAPSHOT_DIR).mkdir()
        shutil.copyfile(source, out / SNAPSHOT_DIR / snapshot_name(tick))
        until = (
            scenario.world.ticks if scenario.world.ticks != old.world.ticks else manifest["ticks"]
        )
        child = {
            **manifest,
            "ticks": until,
            "parent": {
                "run": str(parent),
                "tick": tick,
                "checkpoint_sha256": file_sha256(source),
                "sets": list(sets),
            },
        }
        write_manifest(out, child)
        world.reconfigure(scenario)
        world.final_tick = until - 1
        attach(world, out, out, None, logs)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    world, wall = run_world(world, until, progress)
    return summarize(world, out, text, child, wall, key)
