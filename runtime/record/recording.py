"""Recorded runs: write a run directory from a scenario, and read its summary back with integrity
checks.

A run directory holds ``scenario.toml`` (the exact bytes run), ``events.arrows`` and
``metrics.arrows`` (Arrow IPC streams), and ``summary.json``: scenario hash, seed, package
versions, ticks, wall time, state hashes at every checkpoint, the final state hash, the SHA-256 of
each recorded file, and a SHA-256 of the summary itself, so any edit is detected as tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import secrets
import shutil
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from runtime.kernel.errors import RunDirError
from runtime.kernel.roles import resolve
from runtime.kernel.scenario import Scenario, ScenarioError, load, scenario_hash
from runtime.kernel.world import World
from runtime.record.checkpoints import SNAPSHOT_DIR

SUMMARY = "summary.json"
SCENARIO_COPY = "scenario.toml"
RUN_FILE = "run.json"
FORMAT = "agora-run-1"
RECORDED_FILES = ("events.arrows", "metrics.arrows")


def recorded_files(out: Path) -> list[str]:
    """The run's recorded files, relative to ``out``: the logs, then the state files if recorded."""
    state = sorted(
        str(p.relative_to(out)) for p in (out / "state").glob("*") if not p.name.startswith(".")
    )
    return [*RECORDED_FILES, *state]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(summary: dict[str, Any]) -> bytes:
    body = {k: v for k, v in summary.items() if k != "summary_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on."""
    out = {"python": platform.python_version()}
    for pkg in (
        "agora",
        "numpy",
        "numba",
        "simpy",
        "mesa",
        "networkx",
        "pyarrow",
        "pydantic",
        "torch",
        "z3-solver",
        "scipy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder Agora recorded a run into (it holds run.json or
    summary.json)."""
    return path.is_dir() and any(
        (path / name).is_file() and not (path / name).is_symlink() for name in (RUN_FILE, SUMMARY)
    )


def prepare_out(out: Path, overwrite: bool, keep: tuple[Path, ...] = ()) -> None:
    """Create ``out``; refuse a non-empty directory unless ``overwrite``, and even then replace only
    an Agora run directory (never a folder of other files, nor one holding any of ``keep``)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RunDirError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"--out {out}: directory is not empty; pass --overwrite or choose another --out"
            )
        if not is_run_dir(out):
            raise RunDirError(
                f"--out {out}: not an Agora run directory (no {RUN_FILE} or {SUMMARY}); "
                "--overwrite replaces only runs; choose an empty or new folder"
            )
        here = out.resolve()
        for path in keep:
            if path.resolve() == here or here in path.resolve().parents:
                raise RunDirError(
                    f"--out {out}: holds {path}, which this run reads; choose another folder"
                )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"--out {out}: cannot create it ({exc.strerror})") from None


MAX_ROLE_FILES = 500  # source files a run copies for its own roles, at most


def role_files(scenario: Scenario, base: Path) -> list[str]:
    """The source files of the scenario's own roles that live in its folder (``role =
    "module:Class"`` with the module beside the scenario), relative to it: a run keeps a copy, so it
    replays anywhere.

    The role's module, the ``__init__`` files of its packages, and every module of the folder they
    import (followed from their ``import`` statements, not from what happened to be imported)."""
    todo = [p.role.partition(":")[0] for p in scenario.population if ":" in p.role]
    seen: set[str] = set()
    files: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        for source in _module_files(name, base):
            if source.as_posix() in files:
                continue
            files.add(source.as_posix())
            if len(files) > MAX_ROLE_FILES:
                raise ScenarioError(
                    [
                        f"{base}: the scenario's own roles import more than "
                        f"{MAX_ROLE_FILES} modules of its folder"
                    ]
                )
            todo.extend(_imports(base / source, ".".join(source.parent.parts)))
    return sorted(files)


def _module_files(name: str, base: Path) -> list[Path]:
    """The files of module ``name`` in ``base``: its packages' ``__init__`` files and the module."""
    parts = name.split(".")
    found = [
        Path(*parts[:depth], "__init__.py")
        for depth in range(1, len(parts))
        if (base / Path(*parts[:depth], "__init__.py")).is_file()
    ]
    for candidate in (Path(*parts[:-1], parts[-1] + ".py"), Path(*parts, "__init__.py")):
        if (base / candidate).is_file():
            found.append(candidate)
    return found


def _imports(path: Path, package: str) -> list[str]:
    """The modules a source file imports (relative imports resolved against ``package``)."""
    import ast

    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return []  # importing it fails, and says why, when the world is built
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")[: max(len(package.split(".")) - node.level + 1, 0)]
                stem = ".".join(p for p in [*parent, node.module or ""] if p)
            else:
                stem = node.module or ""
            names.append(stem)
            names += [f"{stem}.{alias.name}" if stem else alias.name for alias in node.names]
    return names


def _copy_references(scenario: Scenario, src_base: Path, out: Path) -> None:
    """Copy the files a scenario names (graph, core and policy files, its own roles' source) beside
    its copy, so runs replay anywhere."""
    refs = [scenario.network.graph_file] + [
        p.core for p in scenario.population if p.core not in (None, "baseline", "learned")
    ]
    refs += [p.params["inputs"] for p in scenario.population if p.params.get("inputs")]
    refs += [scenario.record.outside_inputs]
    for ref in [*refs, *role_files(scenario, src_base)]:
        if ref is None:
            continue
        rel = PurePosixPath(ref)
        if rel.is_absolute() or ".." in rel.parts:
            raise ScenarioError(
                [
                    f"{ref!r}: a file a scenario names must lie inside the scenario's folder, so "
                    "runs can be replayed"
                ]
            )
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_base / rel, out / rel)


def key_id(key: bytes) -> str:
    """A public name for a signing key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(b"agora/key-id/" + key).hexdigest()[:16]


def sign(summary: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of a summary's canonical bytes (its signature and self-hash left out)."""
    body = {k: v for k, v in summary.items() if k not in ("signature", "summary_sha256")}
    return hmac.new(
        key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256
    ).hexdigest()


def read_key(path: Path, create: bool = False) -> bytes:
    """A signing key from ``path`` (at least 32 bytes); ``create``: make a new one there first from
    the operating system's random source (mode 0600) when the file does not exist."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read the key ({exc.strerror})") from None
    if len(key) < 32:
        raise RunDirError(f"{path}: a key needs at least 32 bytes, this file has {len(key)}")
    return key


def build(
    scenario: Scenario,
    base: Path,
    out: Path | None,
    seed: int,
    until: int,
    realtime: float | None = None,
    on_checkpoint: Callable[[Any], None] | None = None,
    device: str = "cpu",
    key_secret: bytes | None = None,
) -> World:
    """A world ready to run to ``until`` (saving itself at checkpoints when recorded into ``out``).
    ``key_secret``: a signed run's key, from which its ledger keys come."""
    world = World(
        scenario,
        base=base,
        out=out,
        seed=seed,
        realtime=realtime,
        device=device,
        key_secret=key_secret,
    )
    world.final_tick = until - 1  # a run cut short with --until still ends on a checkpoint
    world.on_checkpoint = on_checkpoint
    if out is not None and scenario.record.snapshots != "none":
        world.snapshots = out / SNAPSHOT_DIR
    return world


def execute(
    scenario: Scenario,
    base: Path,
    out: Path | None,
    seed: int,
    until: int,
    realtime: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_checkpoint: Callable[[Any], None] | None = None,
    device: str = "cpu",
    key_secret: bytes | None = None,
) -> tuple[World, float]:
    """Build and run a world (:func:`build`, :func:`run_world`); return it (closed) and the wall
    time in seconds."""
    world = build(scenario, base, out, seed, until, realtime, on_checkpoint, device, key_secret)
    return run_world(world, until, progress)


def run_world(
    world: World, until: int, progress: Callable[[int], None] | None = None
) -> tuple[World, float]:
    """Run a built (or restored) world to ``until``, settle its ledger replicas
    (:meth:`World.settle`,
    the result in ``world.settled``) and close its recording; return it and the wall time."""
    start = time.perf_counter()
    try:
        world.run(until, progress)
        world.settled = world.settle()
    finally:
        world.close()
    return world, time.perf_counter() - start


def with_baseline_cores(scenario: Scenario, base: Path = Path(".")) -> Scenario:
    """The same scenario with every role that has a core set to its baseline."""
    pops = [
        p.model_copy(update={"core": "baseline"}) if resolve(p.role, base).cls.has_core else p
        for p in scenario.population
    ]
    return scenario.model_copy(update={"population": pops})


def record(
    scenario_path: Path,
    out: Path,
    *,
    seed: int | None = None,
    until: int | None = None,
    realtime: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    baseline: bool = False,
    device: str = "cpu",
    sign_key: bytes | None = None,
) -> dict[str, Any]:
    """Run a scenario file into ``out`` and return the summary written there.

    ``baseline`` runs every role's baseline core instead (recorded in the summary, and replayed so).
    ``sign_key`` signs the summary and gives the ledger keys that no one without it can derive.
    """
    scenario, raw = load(scenario_path)
    return record_scenario(
        scenario,
        raw,
        scenario_path.parent,
        out,
        seed=seed,
        until=until,
        realtime=realtime,
        overwrite=overwrite,
        progress=progress,
        baseline=baseline,
        device=device,
        sign_key=sign_key,
    )


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write ``run.json``: how the run was started (seed, ticks, device, cores; a fork's parent), so
    that ``agora run --resume`` can go on with it."""
    (out / RUN_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def checked_until(scenario: Scenario, until: int | None, base: Path) -> int:
    """The ticks a run of ``scenario`` goes to (``until``, else the scenario's): at least one, and
    past the scenario's own ticks only if the scenario's checks (the credits it may mint, ...)
    still hold for the longer run; ScenarioError naming what does not."""
    until = scenario.world.ticks if until is None else until
    if until < 1:
        raise ScenarioError([f"--until: must be >= 1 tick, got {until}"])
    if until > scenario.world.ticks:
        from runtime.kernel.scenario import _cross_check

        longer = scenario.model_copy(
            update={"world": scenario.world.model_copy(update={"ticks": until})}
        )
        if problems := _cross_check(longer, base, f"--until {until}"):
            raise ScenarioError(problems)
    return until


def record_scenario(
    scenario: Scenario,
    raw: bytes,
    base: Path,
    out: Path,
    *,
    seed: int | None = None,
    until: int | None = None,
    realtime: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    baseline: bool = False,
    device: str = "cpu",
    sign_key: bytes | None = None,
) -> dict[str, Any]:
    """:func:`record` for a scenario already parsed from ``raw`` (the bytes written as the run's
    scenario.toml); files it names are relative to ``base``."""
    if baseline:
        scenario = with_baseline_cores(scenario, base)
    seed = scenario.world.seed if seed is None else seed
    until = checked_until(scenario, until, base)
    prepare_out(out, overwrite, keep=(base,))
    manifest = {
        "format": FORMAT,
        "seed": seed,
        "ticks": until,
        "device": device,
        "realtime_factor": realtime,
        "cores": "baseline" if baseline else "as written",
        "parent": None,
        "signed": None if sign_key is None else key_id(sign_key),
    }
    if scenario.world.engine == "gpu":
        if realtime is not None:
            raise ScenarioError(["--realtime: the gpu engine runs on virtual time only"])
        from runtime.tensor.recording import record_gpu

        manifest["engine"] = "gpu"
        try:
            (out / SCENARIO_COPY).write_bytes(raw)
            write_manifest(out, manifest)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        return record_gpu(scenario, raw, base, out, manifest, progress, sign_key)
    try:
        (out / SCENARIO_COPY).write_bytes(raw)
        _copy_references(scenario, base, out)
        write_manifest(out, manifest)
        world = build(
            scenario, base, out, seed, until, realtime, device=device, key_secret=sign_key
        )
    except BaseException:
        shutil.rmtree(
            out, ignore_errors=True
        )  # refused before tick 0: no half-made run is left behind
        raise
    world, wall = run_world(
        world, until, progress
    )  # a failure from here on leaves the logs readable
    return summarize(world, out, raw, manifest, wall, sign_key)


def summarize(
    world: World,
    out: Path,
    raw: bytes,
    manifest: dict[str, Any],
    wall: float,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Save the learned cores and write ``summary.json`` for a finished run (signed with ``key``
    when given); return the summary."""
    scenario = world.scenario
    saved = {}
    for pop in world.populations:
        path = pop.save_core(out / "cores")
        if path is not None:
            saved[pop.name] = str(path.relative_to(out))
    held, issued = world.local_ledgers[0].supply()
    final = world.hashes()
    summary: dict[str, Any] = {
        "format": FORMAT,
        "cores": manifest["cores"],
        "device": manifest["device"],
        "scenario": scenario.world.name,
        "scenario_file": SCENARIO_COPY,
        "scenario_sha256": scenario_hash(raw),
        "seed": manifest["seed"],
        "ticks": manifest["ticks"],
        "tick_length": scenario.world.tick_length,
        "realtime_factor": manifest["realtime_factor"],
        "parent": manifest["parent"],
        "wall_seconds": round(wall, 6),
        "versions": versions(),
        "checkpoints": [
            {"tick": c.tick, "state": c.state_hash, "hashes": c.hashes} for c in world.checkpoints
        ],
        "final": final,
        "final_state_hash": hashlib.sha256(json.dumps(final, sort_keys=True).encode()).hexdigest(),
        "totals": {
            "agents": world.n_agents,
            "events": world.log.seq if world.log else 0,
            "supply_held_micro": held,
            "supply_issued_micro": issued,
            "distinct_ledger_roots": world.distinct_roots(),
            "settle": world.settled,
            "ops_refused": sum(len(ledger.rejected) for ledger in world.local_ledgers)
            + world.refused_by_critic,
            "messages": dict(world.bus.counts),
            "tasks_posted": world.task_board.next_id,
            "mean_price_micro": float(world.market.prices.mean()),
            "reputation_accuracy": world.reputation.accuracy
            if world.reputation.predictions
            else None,
            "proposals": world.organisation.outcomes() if world.organisation else [],
            "params": dict(world.params),
            "health": world.health.summary(),
            "roles": {p.name: m for p in world.populations if (m := p.role_metrics())},
        },
        "files": {name: file_sha256(out / name) for name in recorded_files(out)},
        "cores_saved": saved,
    }
    if key is not None:
        summary["signature"] = {
            "alg": "HMAC-SHA256",
            "key_id": key_id(key),
            "mac": sign(summary, key),
        }
    summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
    tmp = out / f".{SUMMARY}.tmp"  # written whole, then renamed: a summary that exists is complete
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / SUMMARY)
    return summary


def read_summary(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Load ``summary.json``; return it and a list of integrity problems (empty when intact)."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    path = run_dir / SUMMARY
    if not path.is_file():
        raise RunDirError(
            f"{run_dir}: no {SUMMARY} (not a run directory, or the run did not finish)"
        )
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("top level is not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, [f"{SUMMARY} does not parse ({exc}): tampered or corrupted"]
    problems = []
    if summary.get("summary_sha256") != hashlib.sha256(_canonical(summary)).hexdigest():
        problems.append(f"{SUMMARY} was modified after the run (its self-hash does not match)")
        return summary, problems
    scen = run_dir / summary.get("scenario_file", SCENARIO_COPY)
    if not scen.is_file() or file_sha256(scen) != summary.get("scenario_sha256"):
        problems.append(f"{scen.name} differs from the scenario that was run (hash mismatch)")
    for name, digest in summary.get("files", {}).items():
        f = run_dir / name
        if not f.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(f) != digest:
            problems.append(f"{name} was modified after the run (SHA-256 mismatch)")
    return summary, problems
