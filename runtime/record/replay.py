"""Replay verification: re-execute a recorded run and compare every artifact it made, byte for byte.

:func:`verify` re-runs the run's scenario with its seed, ticks and cores into a temporary folder
(a fork: from the checkpoint of its parent that it carries) and compares, without trusting the run
directory's own list of files:

* every file, whatever its name: the scenario, ``run.json``, the event log, the metrics, every
  state file, every saved checkpoint, every core file and every file the scenario names. A file
  the re-execution does not make is *extra*, one it makes that is absent is *missing*, one with
  other bytes is *different*; links and other non-regular files are refused;
* every figure of ``summary.json`` (totals, roles, checkpoints, final hashes), except the wall time,
  the package versions and the signature;
* the state hashes at each checkpoint as the re-execution reaches it, so a run whose recorded
  state is not what its scenario computes is named by its first diverging tick and subsystem.

Outcomes: ``identical`` (exit 0); ``diverged`` -- re-execution computes another state (exit 1);
``tampered`` -- an artifact is not what the run makes (exit 1), each named. A directory that is not
a finished run raises :class:`RunDirError` (exit 2).

What it proves: that the run directory is exactly what its scenario and seed produce. It does not
prove who made it: anyone can re-run a scenario. A run recorded with ``agora run --sign-key FILE``
carries an HMAC-SHA256 of its summary (which lists the SHA-256 of every file) under that key;
``--key FILE`` checks it, which proves the run was made by a holder of the key. Such a run's ledger
keys come from the key too, never from the public seed, and re-executing it needs the key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.kernel.scenario import Scenario, ScenarioError, parse
from runtime.kernel.world import Checkpoint
from runtime.record.checkpoints import SNAPSHOT_DIR, snapshot_name
from runtime.record.recorder import read_stream
from runtime.record.recording import (
    FORMAT,
    RUN_FILE,
    SCENARIO_COPY,
    SUMMARY,
    RunDirError,
    _canonical,
    _copy_references,
    execute,
    key_id,
    run_world,
    sign,
    summarize,
    with_baseline_cores,
    write_manifest,
)
from runtime.record.run_data import RunData, open_run

SHARDED_FORMAT = "agora-sharded-run-2"  # runtime.scale.sharded.FORMAT (imported when needed)

# Summary fields that are not a function of the scenario and seed.
VOLATILE = frozenset({"wall_seconds", "versions", "summary_sha256", "signature"})
NESTED_RUNS = ("baseline",)  # `agora run --compare-baseline` records its baseline run here
# `agora serve` keeps what its operator did (pause, resume, speed: wall-clock facts that change no
# state, so a re-execution does not make them) in served/; verification leaves the folder aside.
SIDECARS = ("served",)


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


def _read_object(path: Path, what: str) -> dict[str, Any] | str:
    """A JSON object from ``path``, or a line saying why it is not one."""
    if path.is_symlink() or not path.is_file():
        return f"{what} is missing or not a regular file"
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        return f"{what} does not parse ({str(exc).splitlines()[0]})"
    return data if isinstance(data, dict) else f"{what} is not a JSON object"


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    for key, kind in (("seed", int), ("ticks", int), ("device", str), ("cores", str)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            return f"{RUN_FILE}: {key!r} is missing or not a {kind.__name__}"
    if (
        manifest["ticks"] < 1
        or manifest["seed"] < 0
        or manifest["cores"] not in ("baseline", "as written")
    ):
        return f"{RUN_FILE}: ticks, seed or cores hold impossible values"
    parent = manifest.get("parent")
    if parent is not None and not (
        isinstance(parent, dict)
        and isinstance(parent.get("tick"), int)
        and isinstance(parent.get("checkpoint_sha256"), str)
    ):
        return f"{RUN_FILE}: 'parent' is malformed"
    return None


def _files(root: Path, skip: tuple[str, ...]) -> tuple[dict[str, Path], list[str]]:
    """Every regular file under ``root`` by relative path, and lines naming what is not regular."""
    found, odd = {}, []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        if path.is_symlink():
            odd.append(f"{rel}: a symbolic link, not a file the run wrote")
        elif path.is_file():
            found[str(rel)] = path
        elif not path.is_dir():
            odd.append(f"{rel}: not a regular file")
    return found, odd


def _compare_files(run_dir: Path, out: Path) -> list[str]:
    recorded, lines = _files(run_dir, (SUMMARY, *NESTED_RUNS, *SIDECARS))
    made, _ = _files(out, (SUMMARY,))
    for name in sorted(set(recorded) | set(made)):
        if name not in made:
            lines.append(f"{name}: extra (the run does not make this file)")
        elif name not in recorded:
            lines.append(f"{name}: missing (the run makes this file)")
        elif recorded[name].read_bytes() != made[name].read_bytes():
            where = ""
            if name.endswith(".arrows"):
                spot = first_difference(recorded[name], made[name])
                where = f", first difference at row {spot[0]} (tick {spot[1]})" if spot else ""
            lines.append(f"{name}: different bytes than the run makes{where}")
    return lines


def _compare_summary(recorded: dict[str, Any], made: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if path or key not in VOLATILE:
                    walk(
                        a.get(key, "<absent>"),
                        b.get(key, "<absent>"),
                        f"{path}.{key}" if path else str(key),
                    )
        elif a != b and len(lines) < 20:
            lines.append(f"{SUMMARY}: {path} is {str(a)[:40]!r}, the run gives {str(b)[:40]!r}")

    walk(recorded, made, "")
    if recorded.get("summary_sha256") != hashlib.sha256(_canonical(recorded)).hexdigest():
        lines.insert(0, f"{SUMMARY}: its self-hash does not match: edited after the run")
    return lines


def _rerun(
    run_dir: Path,
    out: Path,
    scenario: Scenario,
    raw: bytes,
    manifest: dict[str, Any],
    key: bytes | None,
    compare: Callable[[Checkpoint], None],
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Re-execute the run into ``out`` as ``agora run`` (or ``agora fork``) made it; its summary."""
    (out / SCENARIO_COPY).write_bytes(raw)
    _copy_references(scenario, run_dir, out)
    write_manifest(out, manifest)
    parent = manifest.get("parent")
    if parent is None:
        world, wall = execute(
            scenario,
            run_dir,
            out,
            manifest["seed"],
            manifest["ticks"],
            None,
            progress,
            compare,
            device=manifest["device"],
            key_secret=key,
        )
    else:
        world, wall = _rerun_fork(run_dir, out, scenario, manifest, key, compare, progress)
    return summarize(world, out, raw, manifest, wall, key)


def _rerun_fork(
    run_dir: Path,
    out: Path,
    scenario: Scenario,
    manifest: dict[str, Any],
    key: bytes | None,
    compare: Callable[[Checkpoint], None],
    progress: Callable[[int], None] | None,
) -> tuple[Any, float]:
    from runtime.record.resume import attach, load_saved

    tick = int(manifest["parent"]["tick"])
    source = run_dir / SNAPSHOT_DIR / snapshot_name(tick)
    if source.is_symlink() or not source.is_file():
        raise _Tampered([f"{SNAPSHOT_DIR}/{snapshot_name(tick)}: missing (a fork starts from it)"])
    world, logs = load_saved(source, scenario, key)
    (out / SNAPSHOT_DIR).mkdir()
    shutil.copyfile(source, out / SNAPSHOT_DIR / snapshot_name(tick))
    world.reconfigure(scenario)
    world.final_tick = manifest["ticks"] - 1
    world.on_checkpoint = compare
    attach(world, out, out, None, logs)
    return run_world(world, manifest["ticks"], progress)


class _Tampered(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines)
        self.lines = lines


def _authorship(summary: dict[str, Any], key: bytes | None) -> tuple[list[str], list[str]]:
    """(problems, notes) about who made the run."""
    signature = summary.get("signature")
    if key is None:
        if signature is not None:
            raise RunDirError(
                "this run is signed (agora run --sign-key): its ledger keys come from the key, "
                "so re-executing it needs it; pass --key FILE"
            )
        return [], [
            "this proves the run is what its scenario and seed make, not who made it "
            "(record with --sign-key FILE to prove that)"
        ]
    if not isinstance(signature, dict):
        return [f"{SUMMARY}: the run is not signed, so --key cannot check who made it"], []
    if signature.get("mac") != sign(summary, key) or signature.get("key_id") != key_id(key):
        return [
            f"{SUMMARY}: the signature does not verify with this key: not made by its holder, "
            "or the summary was edited"
        ], []
    return [], [f"signed with the key {key_id(key)}: made by a holder of that key"]


def verify(
    run_dir: Path, progress: Callable[[int], None] | None = None, key: bytes | None = None
) -> Verdict:
    """Re-execute the run in ``run_dir`` and compare every artifact (module docstring)."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not (run_dir / SUMMARY).exists() and not (run_dir / SUMMARY).is_symlink():
        if (run_dir / RUN_FILE).is_file():
            started = _read_object(run_dir / RUN_FILE, RUN_FILE)
            if isinstance(started, dict) and started.get("engine") == "gpu":
                raise RunDirError(
                    f"{run_dir}: the run did not finish (no {SUMMARY}); a gpu-engine run cannot "
                    "be resumed: run its scenario again"
                )
            if isinstance(started, dict) and started.get("format") == SHARDED_FORMAT:
                raise RunDirError(
                    f"{run_dir}: the sharded run did not finish (no {SUMMARY}); agora run "
                    f"--resume {run_dir}"
                )
            raise RunDirError(
                f"{run_dir}: the run did not finish (no {SUMMARY}); agora run --resume {run_dir}"
            )
        raise RunDirError(
            f"{run_dir}: not a run directory (no {SUMMARY} or {RUN_FILE}); `agora run` writes them"
        )
    summary = _read_object(run_dir / SUMMARY, SUMMARY)
    if isinstance(summary, dict) and summary.get("format") == "agora-sharded-run-1":
        raise RunDirError(
            f"{run_dir}: a sharded run of format agora-sharded-run-1 records totals, not event "
            "logs, so it cannot be replayed; record it again"
        )
    manifest = _read_object(run_dir / RUN_FILE, RUN_FILE)
    problems = [x for x in (summary, manifest) if isinstance(x, str)]
    if not problems and isinstance(summary, dict) and isinstance(manifest, dict):
        if summary.get("format") == SHARDED_FORMAT or manifest.get("format") == SHARDED_FORMAT:
            if key is not None:
                raise RunDirError(f"{run_dir}: a sharded run is not signed; --key does not apply")
            from runtime.scale.sharded_recording import verify_sharded

            return Verdict(*verify_sharded(run_dir, summary, manifest))
        if bad := _manifest_problem(manifest):
            problems.append(bad)
    if problems:
        return Verdict("tampered", problems)
    assert isinstance(summary, dict) and isinstance(manifest, dict)
    if summary.get("format") == "agora-gpu-run-1" or manifest.get("engine") == "gpu":
        return _verify_gpu(run_dir, summary, manifest, progress, key)
    if manifest["device"] != "cpu":
        raise RunDirError(
            f"{run_dir}: the run used --device {manifest['device']}: GPU arithmetic matches the "
            "CPU "
            "to rounding, not bit for bit, so it cannot be verified; record with --device cpu"
        )
    authorship, notes = _authorship(summary, key)
    try:
        raw = (
            (run_dir / SCENARIO_COPY).read_bytes() if (run_dir / SCENARIO_COPY).is_file() else None
        )
        if raw is None or (run_dir / SCENARIO_COPY).is_symlink():
            return Verdict("tampered", [f"{SCENARIO_COPY} is missing or not a regular file"])
        scenario = parse(raw.decode("utf-8"), str(run_dir / SCENARIO_COPY), run_dir)
    except (ScenarioError, UnicodeDecodeError) as exc:
        first = exc.problems[0] if isinstance(exc, ScenarioError) else str(exc)
        return Verdict("tampered", [f"{SCENARIO_COPY} no longer validates: {first}"])
    if scenario.world.engine == "gpu":
        return Verdict(
            "tampered",
            [
                f"{SCENARIO_COPY} selects the gpu engine, but {SUMMARY} and {RUN_FILE} are not a "
                "gpu-engine run's"
            ],
        )
    if manifest["cores"] == "baseline":
        scenario = with_baseline_cores(scenario, run_dir)
    verdict = _replay(run_dir, scenario, raw, summary, manifest, key, progress)
    verdict.lines = authorship + verdict.lines + (notes if verdict.status == "identical" else [])
    if authorship and verdict.status == "identical":
        verdict.status = "tampered"
    for nested in NESTED_RUNS:
        if (run_dir / nested / SUMMARY).is_file():
            inner = verify(run_dir / nested, None, key)
            verdict.lines += [f"{nested}: {line}" for line in inner.lines]
            if inner.status != "identical" and verdict.status == "identical":
                verdict.status = inner.status
    return verdict


def _verify_gpu(
    run_dir: Path,
    summary: dict[str, Any],
    manifest: dict[str, Any],
    progress: Callable[[int], None] | None,
    key: bytes | None,
) -> Verdict:
    """A gpu-engine run, re-executed on the CPU (the engine gives the same integers there)."""
    from runtime.tensor.recording import FORMAT as GPU_FORMAT
    from runtime.tensor.recording import verify_gpu

    made_by = [
        f"{RUN_FILE}: {what}"
        for what, bad in (
            ("'engine' is not \"gpu\"", manifest.get("engine") != "gpu"),
            ("'format' is not this version's", manifest.get("format") != FORMAT),
            ("'device' is neither cpu nor cuda", manifest.get("device") not in ("cpu", "cuda")),
            (
                "a gpu-engine run has no realtime factor",
                manifest.get("realtime_factor") is not None,
            ),
            ("a gpu-engine run has no parent", manifest.get("parent") is not None),
            (
                "'signed' does not match the summary's signature",
                (manifest.get("signed") is None) != (summary.get("signature") is None),
            ),
        )
        if bad
    ]
    if summary.get("format") != GPU_FORMAT:
        made_by.append(f"{SUMMARY}: 'format' is not a gpu-engine run's")
    if made_by:
        return Verdict("tampered", made_by)
    authorship, notes = _authorship(summary, key)
    try:
        path = run_dir / SCENARIO_COPY
        if not path.is_file() or path.is_symlink():
            return Verdict("tampered", [f"{SCENARIO_COPY} is missing or not a regular file"])
        raw = path.read_bytes()
        scenario = parse(raw.decode("utf-8"), str(path), run_dir)
    except (ScenarioError, UnicodeDecodeError) as exc:
        first = exc.problems[0] if isinstance(exc, ScenarioError) else str(exc)
        return Verdict("tampered", [f"{SCENARIO_COPY} no longer validates: {first}"])
    if scenario.world.engine != "gpu":
        return Verdict("tampered", [f"{SCENARIO_COPY}: no longer selects the gpu engine"])
    if manifest["cores"] == "baseline":
        scenario = with_baseline_cores(scenario, run_dir)
    status, lines = verify_gpu(run_dir, scenario, raw, summary, manifest, key, progress)
    lines = authorship + lines + (notes if status == "identical" else [])
    if authorship and status == "identical":
        status = "tampered"
    return Verdict(status, lines)


def _replay(
    run_dir: Path,
    scenario: Scenario,
    raw: bytes,
    summary: dict[str, Any],
    manifest: dict[str, Any],
    key: bytes | None,
    progress: Callable[[int], None] | None,
) -> Verdict:
    recorded = summary.get("checkpoints")
    recorded = recorded if isinstance(recorded, list) else []
    by_tick = {c.get("tick"): c.get("hashes") for c in recorded if isinstance(c, dict)}
    # An edited summary cannot say where a run diverged: then re-execute to the end and list what
    # differs.
    trusted = summary.get("summary_sha256") == hashlib.sha256(_canonical(summary)).hexdigest()

    def compare(cp: Checkpoint) -> None:
        if not trusted:
            return
        want = by_tick.get(cp.tick)
        if not isinstance(want, dict):
            raise _Diverged(cp.tick, ["checkpoint schedule (the summary has no checkpoint here)"])
        differing = sorted(k for k in set(want) | set(cp.hashes) if want.get(k) != cp.hashes.get(k))
        if differing:
            raise _Diverged(cp.tick, differing)

    with tempfile.TemporaryDirectory(prefix="agora-replay-") as tmp:
        out = Path(tmp)
        try:
            made = _rerun(run_dir, out, scenario, raw, manifest, key, compare, progress)
        except _Diverged as exc:
            return Verdict(
                "diverged",
                [
                    f"diverged at tick {exc.tick}: subsystem(s) {', '.join(exc.subsystems)} "
                    "differ from the recording"
                ],
            )
        except _Tampered as exc:
            return Verdict("tampered", exc.lines)
        except RunDirError as exc:
            return Verdict("tampered", [str(exc)])
        lines = _compare_files(run_dir, out) + _compare_summary(summary, made)
    if lines:
        return Verdict("tampered", lines)
    n_files = len(_files(run_dir, (SUMMARY, *NESTED_RUNS, *SIDECARS))[0])
    return Verdict(
        "identical",
        [
            f"{len(made['checkpoints'])} checkpoints, all {n_files} files and every figure "
            f"of the summary match a re-execution (final state {made['final_state_hash'][:16]})"
        ],
    )


# Named like the built-in: `runtime.record.replay.open(DIR)` reads as opening a run.
def open(run_dir: Path | str) -> RunData:
    """Open a recorded run for analysis: tables, state at any tick, SQL
    (:class:`runtime.record.run_data.RunData`)."""
    return open_run(run_dir)
