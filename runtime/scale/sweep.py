"""Parameter sweeps: the grid of a scenario's runs over parameter values and seeds, on local
processes or Ray.

``agora sweep SCENARIO --set KEY=V1,V2 ... --seeds N --out DIR`` plans one run per combination of
the values and each of N seeds (the scenario's seed, seed + 1, ...), checks every combination's
scenario before running anything, and writes each run as a normal recorded run directory
``DIR/<run id>`` (replayable with ``agora replay --verify``), plus ``DIR/results.parquet``: one
row per run, its swept values, seed, status and the figures of its summary (:func:`summary_row`).

A run id spells out its values and seed (``economy.price_elasticity=0.3__seed=7``), escaped so
that distinct values give distinct ids and :func:`decode_run_id` gives the values back
(:func:`encode_run_id` says how).

A worker records a run into ``DIR/.partial/<driver>/<run id>``; the driver (the process running
:func:`sweep`) checks its summary and moves it into place, so a run directory that exists is a
finished run and nothing is moved into ``DIR`` once the driver has ended. Killing the sweep, or
a worker, at any moment loses no finished run, and running the same command again resumes
(finished runs are not redone). A run that fails, or whose worker dies, is tried once more; a
second failure is reported (a row with status ``failed`` and the error, and exit status 1),
never dropped.

One driver at a time writes into ``DIR``: it holds an ``flock`` on ``DIR/.sweep.lock``, and a
second driver refuses to start while the lock is held (:class:`SweepError`).

Backends: ``local`` runs ``workers`` long-lived worker processes (forked from a server process
that has the libraries loaded), one run at a time each, and replaces a worker that dies. Local
workers end with their driver, even when it is killed with SIGKILL, and hold its lock until they
have ended, so a new sweep never runs beside an old one's workers. ``ray`` submits each run as a
Ray task, to the cluster at ``address`` or to a local Ray started with ``workers`` CPUs. On a
multi-machine cluster ``DIR`` must be on storage every node can write.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import secrets
import select
import shutil
import signal
import string
import threading
import time
import tomllib
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from runtime.kernel.scenario import ScenarioError, parse
from runtime.kernel.settings import SettingError, override, read_value

RESULTS = "results.parquet"
PARTIAL = ".partial"
LOCK = ".sweep.lock"
ATTEMPTS = 2  # the first try and one retry
ID_LENGTH_MAX = 200  # characters of a run id; a file name may have 255 bytes
ID_SEPARATOR = "__"  # between the key=value parts of a run id, and before seed=N
WORKER_STOP_SECONDS = 5.0  # how long a worker told to stop may take before it is killed

# Characters a run id keeps as they are; every other one is %-escaped (its UTF-8 bytes).
_ID_PLAIN = frozenset(string.ascii_letters + string.digits + "._+-")
_TOML_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


# A sweep that cannot start (user mistake: exit 2) is refused with the settings' error, one line
# per problem: a --set key the scenario does not have is the same mistake in a sweep and a fork.
SweepError = SettingError


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, swept values, seed and the scenario text it runs."""

    run_id: str
    values: tuple[tuple[str, Any], ...]
    seed: int
    text: str
    base: str  # the scenario's folder: files it names are relative to it
    out: str  # the sweep's folder
    until: int | None


def parse_sets(items: list[str]) -> list[tuple[str, list[Any]]]:
    """``["economy.price_elasticity=0.3,0.5", ...]`` -> ``[(key, [0.3, 0.5]), ...]``.

    Each value is read by :func:`read_value`.
    """
    out: list[tuple[str, list[Any]]] = []
    problems = []
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not key or not rest.strip():
            problems.append(
                f"--set {item!r}: expected KEY=VALUE[,VALUE...], "
                "e.g. economy.price_elasticity=0.3,0.5"
            )
            continue
        values = [read_value(raw.strip()) for raw in rest.split(",")]
        if any(k == key for k, _ in out):
            problems.append(f"--set {key}: given twice; list every value in one --set")
        if len(set(map(repr, values))) != len(values):
            problems.append(f"--set {key}: a value is listed twice")
        out.append((key, values))
    if problems:
        raise SweepError(problems)
    return out


# -- run ids -------------------------------------------------------------------------------------


def _toml_text(value: Any) -> str:
    """``value`` written as a TOML inline value (tables and arrays inline, on one line)."""
    import tomli_w

    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            name = key if _TOML_BARE_KEY.fullmatch(key) else _toml_text(key)
            items.append(f"{name} = {_toml_text(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_text(item) for item in value) + "]"
    line = tomli_w.dumps({"v": value})
    assert line.startswith("v = ") and line.endswith("\n") and line.count("\n") == 1, line
    return line[len("v = ") : -1]


def _value_text(value: Any) -> str:
    """How a run id spells a value: as one would write it after ``--set KEY=``, a string bare when
    :func:`read_value` reads it back as the same string, else in TOML quotes."""
    if isinstance(value, str) and read_value(value) == value:
        return value
    return _toml_text(value)


def _escape(text: str) -> str:
    """``text`` with every character outside letters, digits and ``._+-`` %-escaped, and so is an
    ``_`` that touches another ``_`` or an end: an escaped part holds no ``__`` and neither
    starts nor ends with ``_``, so ``__`` between parts is never ambiguous."""
    escaped = []
    for i, char in enumerate(text):
        lone_underscore = (
            char == "_" and 0 < i < len(text) - 1 and text[i - 1] != "_" and text[i + 1] != "_"
        )
        if (char in _ID_PLAIN and char != "_") or lone_underscore:
            escaped.append(char)
        else:
            escaped.append("".join(f"%{byte:02X}" for byte in char.encode()))
    result = "".join(escaped)
    assert ID_SEPARATOR not in result and not result.startswith("_") and not result.endswith("_")
    return result


def encode_run_id(values: Sequence[tuple[str, Any]], seed: int) -> str:
    """The run id of swept ``values`` (``(key, value)`` pairs, in ``--set`` order) and ``seed``.

    Each pair is ``KEY=VALUE``, the value as one would write it after ``--set KEY=`` (a string
    in TOML quotes where it would read as another value: ``"2"``), both %-escaped outside
    ``[A-Za-z0-9._+-]``; pairs and ``seed=N`` are joined by ``__``:
    ``world.name=a%20b__seed=7``. Distinct values give distinct ids, and :func:`decode_run_id`
    reverses it. An id longer than :data:`ID_LENGTH_MAX` characters keeps its first characters
    and ends with ``~`` and 16 hex digits of the SHA-256 of the whole id, then ``__seed=N``:
    still distinct, but no longer reversible (``results.parquet`` holds its values).
    """
    parts = [f"{_escape(key)}={_escape(_value_text(value))}" for key, value in values]
    seed_part = f"seed={seed}"
    exact = ID_SEPARATOR.join([*parts, seed_part])
    if len(exact) <= ID_LENGTH_MAX:
        return exact
    digest = hashlib.sha256(exact.encode()).hexdigest()[:16]
    head = ID_SEPARATOR.join(parts)[: ID_LENGTH_MAX - len(digest) - len(seed_part) - 3]
    shortened = f"{head}~{digest}{ID_SEPARATOR}{seed_part}"
    assert len(shortened) <= ID_LENGTH_MAX and "~" not in exact, shortened
    return shortened


def decode_run_id(run_id: str) -> tuple[tuple[tuple[str, Any], ...], int]:
    """The swept ``(key, value)`` pairs and the seed that :func:`encode_run_id` made ``run_id``
    from; ValueError naming the id when it is not one (or is a shortened one)."""
    if "~" in run_id:
        raise ValueError(
            f"run id {run_id!r}: shortened with a hash (its values are longer than "
            f"{ID_LENGTH_MAX} characters), so it cannot be decoded; read its values "
            f"from the sweep's {RESULTS}"
        )
    *parts, seed_part = run_id.split(ID_SEPARATOR)
    seed_text = seed_part.removeprefix("seed=")
    if seed_text == seed_part or not re.fullmatch(r"-?[0-9]+", seed_text):
        raise ValueError(
            f"run id {run_id!r}: expected it to end with seed=N, e.g. "
            "economy.price_elasticity=0.3__seed=7"
        )
    values = []
    for part in parts:
        key, sep, text = part.partition("=")
        if not sep or not key:
            raise ValueError(f"run id {run_id!r}: part {part!r} is not KEY=VALUE")
        try:
            values.append(
                (
                    urllib.parse.unquote(key, errors="strict"),
                    read_value(urllib.parse.unquote(text, errors="strict")),
                )
            )
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"run id {run_id!r}: part {part!r} escapes bytes that are not UTF-8: {exc}"
            ) from exc
    decoded = (tuple(values), int(seed_text))
    if encode_run_id(*decoded) != run_id:
        raise ValueError(
            f"run id {run_id!r}: not as encode_run_id writes it (expected "
            f"{encode_run_id(*decoded)!r} for the same values)"
        )
    return decoded


# -- planning ------------------------------------------------------------------------------------


def plan(
    scenario: Path,
    sets: list[tuple[str, list[Any]]],
    seeds: int,
    out: Path,
    until: int | None = None,
) -> list[RunSpec]:
    """Every run of the grid, each combination's scenario already validated (ScenarioError lists
    every problem; SweepError for keys that do not exist)."""
    import tomli_w

    if seeds < 1:
        raise SweepError([f"--seeds: must be >= 1, got {seeds}"])
    if not scenario.is_file():
        raise ScenarioError([f"{scenario}: (file): no such scenario file"])
    raw = scenario.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError([f"{scenario}: (toml): not a valid scenario file: {exc}"]) from None
    first_seed = int(data.get("world", {}).get("seed", 0))
    keys = [k for k, _ in sets]
    if "world.seed" in keys:
        raise SweepError(
            [
                "--set world.seed: a sweep's seeds come from --seeds (the scenario's "
                "seed, seed + 1, ...); change world.seed in the file to move them"
            ]
        )
    specs: list[RunSpec] = []
    problems: list[str] = []
    for combo in itertools.product(*(values for _, values in sets)):
        variant = json.loads(json.dumps(data))  # a deep copy of plain TOML data
        pairs = tuple(zip(keys, combo, strict=True))
        for key, value in pairs:
            override(variant, key, value)
        text = tomli_w.dumps(variant)
        label = f"{scenario} with " + (", ".join(f"{k}={v!r}" for k, v in pairs) or "no changes")
        try:
            parse(text, label, scenario.parent)
        except ScenarioError as exc:
            problems += exc.problems
            continue
        for seed in range(first_seed, first_seed + seeds):
            specs.append(
                RunSpec(
                    encode_run_id(pairs, seed),
                    pairs,
                    seed,
                    text,
                    str(scenario.parent.resolve()),
                    str(out),
                    until,
                )
            )
    if problems:
        raise ScenarioError(problems)
    assert len({s.run_id for s in specs}) == len(specs), "two runs of the grid share a run id"
    return specs


# -- one run -------------------------------------------------------------------------------------


def _intact(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a run directory with an intact summary."""
    from runtime.record.recording import RunDirError, read_summary

    try:
        _, problems = read_summary(run_dir)
    except RunDirError:
        return False
    return not problems


def finished(spec: RunSpec) -> bool:
    """Whether the run's directory is in place with an intact summary (a finished run)."""
    return _intact(Path(spec.out) / spec.run_id)


def record_run(spec: RunSpec, partial_root: Path) -> Path:
    """Record one run into ``partial_root/<run id>`` and return that folder (raises on failure).

    The run is not in place yet: :func:`move_into_place`, called by the driver, puts it there.
    While it runs, ``partial_root/<run id>.pid`` holds the id of the process that runs it.
    """
    from runtime.record.recording import record_scenario

    partial = partial_root / spec.run_id
    if partial.exists():
        shutil.rmtree(partial)  # what an earlier try of this run left
    if not partial_root.is_dir():
        # the driver made this folder; a later sweep into the same folder cleared it, so the
        # driver that asked for this run is gone (a Ray task can outlive a killed driver)
        raise SweepError([f"{partial_root}: the sweep that started this run is gone"])
    (partial_root / f"{spec.run_id}.pid").write_text(str(os.getpid()))
    scenario = parse(spec.text, spec.run_id, Path(spec.base))
    if scenario.distributed is not None and scenario.distributed.shards > 1:
        # A sharded world in a sweep: its shards step in this worker, in turn (the same bits as
        # on Ray actors); the sweep runs its worlds side by side.
        from runtime.scale.sharded_recording import record_sharded_text

        until = scenario.world.ticks if spec.until is None else spec.until
        record_sharded_text(
            spec.text.encode(), Path(spec.base), partial, spec.seed, until, backend="inline"
        )
        return partial
    record_scenario(
        scenario, spec.text.encode(), Path(spec.base), partial, seed=spec.seed, until=spec.until
    )
    return partial


def move_into_place(spec: RunSpec, partial_root: Path) -> None:
    """Move a run recorded by :func:`record_run` from ``partial_root`` to the sweep's folder."""
    partial = partial_root / spec.run_id
    final = Path(spec.out) / spec.run_id
    assert partial.is_dir(), partial
    if final.exists():
        shutil.rmtree(final)  # an unfinished directory of an earlier version of this sweep
    partial.rename(final)
    (partial_root / f"{spec.run_id}.pid").unlink(missing_ok=True)
    assert final.is_dir() and not partial.exists(), final


def _place(spec: RunSpec, error: str, partial_root: Path) -> str:
    """After one try of a run: move it into place if it succeeded with an intact summary, else
    clear what it left; return the try's error ('' when the run is now in place)."""
    if not error:
        if _intact(partial_root / spec.run_id):
            try:
                move_into_place(spec, partial_root)
                return ""
            except OSError as exc:
                error = f"moving the run into {spec.out} failed: {exc}"
        else:
            error = "the run left no intact summary"
    shutil.rmtree(partial_root / spec.run_id, ignore_errors=True)
    (partial_root / f"{spec.run_id}.pid").unlink(missing_ok=True)
    assert error
    return error


def summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run's summary as one flat row (what a sweep's table holds per run)."""
    if summary.get("format") == "agora-sharded-run-2":  # runtime.scale.sharded.FORMAT
        return _sharded_row(summary)
    t = summary["totals"]
    row: dict[str, Any] = {
        "seed": summary["seed"],
        "ticks": summary["ticks"],
        "final_state_hash": summary["final_state_hash"],
        "wall_seconds": summary["wall_seconds"],
        "agents": t["agents"],
        "events": t["events"],
        "supply_held_micro": t["supply_held_micro"],
        "supply_issued_micro": t["supply_issued_micro"],
        "distinct_ledger_roots": t["distinct_ledger_roots"],
        "ops_refused": t["ops_refused"],
        "tasks_posted": t["tasks_posted"],
        "mean_price_micro": t["mean_price_micro"],
        "reputation_accuracy": t["reputation_accuracy"],
    }
    row.update({f"messages.{k}": v for k, v in sorted(t["messages"].items())})
    row.update({f"params.{k}": v for k, v in sorted(t["params"].items())})
    for key, value in sorted((t.get("health") or {}).items()):
        if isinstance(value, (int, float)) or value is None:
            row[f"health.{key}"] = value
    for name, metrics in sorted(t.get("roles", {}).items()):
        for key, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) or value is None:
                row[f"roles.{name}.{key}"] = value
    return row


def _sharded_row(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`summary_row` of a sharded run: its totals, the shards' figures added up."""
    reports = summary["shard_reports"]
    messages: dict[str, int] = {}
    for rep in reports:
        for k, v in rep["messages"].items():
            messages[k] = messages.get(k, 0) + int(v)
    row: dict[str, Any] = {
        "seed": summary["seed"],
        "ticks": summary["ticks"],
        "final_state_hash": summary["final_state_hash"],
        "wall_seconds": summary["wall_seconds"],
        "shards": summary["shards"],
        "agents": sum(rep["agents"] for rep in reports),
        "events": sum(summary["events"]),
        "supply_held_micro": summary["credits_held_micro"],
        "supply_issued_micro": summary["supply_issued_micro"],
        "distinct_ledger_roots": len(set(summary["roots"].values())),
        "ops_refused": sum(rep["ops_refused"] for rep in reports),
        "tasks_posted": sum(rep["tasks_posted"] for rep in reports),
    }
    row.update({f"messages.{k}": v for k, v in sorted(messages.items())})
    return row


@dataclass
class Outcome:
    """What became of one run: ``done`` (this time), ``skipped`` (finished before), or
    ``failed``."""

    spec: RunSpec
    status: str
    attempts: int = 0
    error: str = ""


def _share_cores(threads: int) -> None:
    """Numba's threads for a worker: this machine's cores split among the workers (results do
    not depend on the thread count, only the speed does)."""
    import numba

    # The thread pool's size, fixed when numba loads (its config module sets it at import).
    most = int(vars(numba.config)["NUMBA_NUM_THREADS"])
    numba.set_num_threads(max(1, min(threads, most)))


# -- the driver's lock and folders ---------------------------------------------------------------


def _take_lock(out: Path) -> int:
    """Take the sweep's lock on ``out`` and return its file descriptor; SweepError if another
    sweep holds it. The file is never removed: a removed lock file could be locked twice."""
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SweepError(
            [
                f"--out {out}: another agora sweep (driver pid {holder}, or its worker "
                f"processes) holds {out / LOCK} and is writing runs into this folder; "
                "wait for it to end or stop it, or choose another --out"
            ]
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _clear_partial(out: Path) -> None:
    """Remove what sweeps that were killed left in ``out/.partial`` (the lock is held, so no local
    worker of theirs is still writing)."""
    root = out / PARTIAL
    if not root.is_dir():
        return
    for entry in list(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fresh_partial(out: Path) -> Path:
    """This driver's own folder under ``out/.partial``, after clearing what killed sweeps left.

    A Ray task of a killed sweep may still be running: it finds its driver's folder gone and
    stops; one caught mid-write may leave files, which the end of this sweep clears again."""
    _clear_partial(out)
    (out / PARTIAL).mkdir(exist_ok=True)
    mine = out / PARTIAL / f"{os.getpid()}-{secrets.token_hex(4)}"
    mine.mkdir()
    return mine


# -- local worker processes ----------------------------------------------------------------------


class _InheritedFd:
    """A file descriptor sent to a worker process: it receives a duplicate of it, the same open
    file and so the same ``flock``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[Any], int], tuple[Any]]:
        # multiprocessing sends the descriptor itself along with the process it starts
        return _detach_fd, (reduction.DupFd(self.fd),)


def _detach_fd(duplicate: Any) -> int:
    return int(duplicate.detach())


def _end_with_driver(lifeline: Connection) -> None:
    """End this process the moment the driver's end of ``lifeline`` closes: the driver ended,
    however (SIGKILL included). The driver never writes to it, so readable means closed."""
    # A duplicate stays open for the rest of the process, whatever becomes of the Connection
    # object: the pipe's last close in this process would end the watch.
    fd = os.dup(lifeline.fileno())
    if hasattr(fcntl, "F_SETSIG"):
        # Linux: the kernel itself sends SIGKILL when the pipe's last writer closes, so a worker
        # deep in compiled code that holds the GIL ends at once too.
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGKILL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
        if select.select([fd], [], [], 0)[0]:  # the driver ended before the signal was armed
            os._exit(1)
        return

    def watch() -> None:
        os.read(fd, 1)  # returns at EOF
        os._exit(1)

    threading.Thread(target=watch, name="sweep-lifeline", daemon=True).start()


def _worker(tasks: Connection, lifeline: Connection, lock_fd: int, threads: int) -> None:
    """A local worker process: records the runs its driver sends on ``tasks`` and reports each
    as ``(run id, error or '')``, until sent None or the driver is gone."""
    # lock_fd stays open and unused: the sweep's lock is held while this process lives, so no
    # other sweep starts in the folder before it has ended.
    assert lock_fd >= 0
    _end_with_driver(lifeline)
    _share_cores(threads)
    while True:
        try:
            job = tasks.recv()
        except EOFError:
            return  # the driver is gone
        if job is None:
            return
        spec, partial_root = job
        try:
            record_run(spec, Path(partial_root))
            tasks.send((spec.run_id, ""))
        except BaseException as exc:  # reported to the driver, which tries the run again once
            message = _describe(exc)
            tasks.send((spec.run_id, message))


def _describe(exc: BaseException) -> str:
    """One line for a failed run: the error, and what caused it (a role's own exception, say)."""
    parts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(parts) < 3:
        lines = traceback.format_exception_only(type(cause), cause)
        parts.append((lines[-1].strip() if lines else type(cause).__name__) or "failed")
        cause = cause.__cause__
    return ": ".join(parts)


@dataclass
class _LocalWorker:
    """A worker process, as its driver sees it."""

    proc: Any  # multiprocessing's process object
    tasks: Connection  # jobs out, reports back; EOF when the process has ended
    lifeline: Connection  # held open, never written: closing it ends the process
    run: Outcome | None = None  # the run it is doing


def _stop(pool: list[_LocalWorker]) -> None:
    """Tell every worker to stop, give them :data:`WORKER_STOP_SECONDS`, then kill the rest."""
    for w in pool:
        try:
            w.tasks.send(None)
        except OSError:
            pass  # it has ended already
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for w in pool:
        w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=WORKER_STOP_SECONDS)
        w.tasks.close()
        w.lifeline.close()


def _run_local(
    specs: list[RunSpec],
    workers: int,
    partial_root: Path,
    lock_fd: int,
    done: Callable[[Outcome], None],
) -> list[Outcome]:
    """Long-lived worker processes, one run at a time each; a worker that dies is replaced and
    its run counts as a failed try."""
    from multiprocessing.connection import wait

    # A fork server, not fork: the driver may run threads (a progress bar, numba's pool), and
    # forking a threaded process is unsafe; the server is single-threaded, loads the libraries
    # once, and each worker forks from it quickly.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["runtime.scale.sweep", "runtime.record.recording", "agents", "torch", "z3"]
    )
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    pending = [Outcome(s, "pending") for s in specs]
    finished_runs: list[Outcome] = []

    def spawn() -> _LocalWorker:
        tasks, child_tasks = ctx.Pipe()
        child_lifeline, lifeline = ctx.Pipe(duplex=False)
        args = (child_tasks, child_lifeline, _InheritedFd(lock_fd), threads)
        proc = ctx.Process(target=_worker, args=args, daemon=True)
        proc.start()
        # Only the worker keeps its ends, so each side sees EOF when the other ends.
        child_tasks.close()
        child_lifeline.close()
        return _LocalWorker(proc, tasks, lifeline)

    def settle(outcome: Outcome, error: str) -> None:
        error = _place(outcome.spec, error, partial_root)
        if not error:
            outcome.status, outcome.error = "done", ""
        else:
            outcome.error = error
            if outcome.attempts < ATTEMPTS:
                pending.insert(0, outcome)
                return
            outcome.status = "failed"
        finished_runs.append(outcome)
        done(outcome)

    pool: list[_LocalWorker] = []
    try:
        pool += [spawn() for _ in range(min(workers, len(specs)))]
        while pending or any(w.run for w in pool):
            for w in pool:
                if w.run is None and pending:
                    w.run = pending.pop(0)
                    w.run.attempts += 1
                    w.tasks.send((w.run.spec, str(partial_root)))
            for conn in wait([w.tasks for w in pool if w.run is not None], timeout=1.0):
                i = next(i for i, w in enumerate(pool) if w.tasks is conn)
                outcome = pool[i].run
                assert outcome is not None
                error: str
                try:
                    run_id, error = cast(Connection, conn).recv()
                    assert run_id == outcome.spec.run_id, (run_id, outcome.spec.run_id)
                    pool[i].run = None
                except EOFError:  # the worker ended mid-run
                    dead = pool[i]
                    dead.proc.join(timeout=WORKER_STOP_SECONDS)
                    dead.tasks.close()
                    dead.lifeline.close()
                    pool[i] = spawn()
                    error = f"worker process ended with exit code {dead.proc.exitcode} (killed?)"
                settle(outcome, error)
    finally:
        _stop(pool)
    return finished_runs


# -- Ray -----------------------------------------------------------------------------------------


def _ray_run(spec: RunSpec, partial_root: str, threads: int) -> str:  # a Ray task
    _share_cores(threads)
    record_run(spec, Path(partial_root))
    return spec.run_id


def _run_ray(
    specs: list[RunSpec],
    workers: int,
    address: str | None,
    partial_root: Path,
    done: Callable[[Outcome], None],
) -> list[Outcome]:
    try:
        import ray
    except ImportError:
        raise SweepError(
            ["--backend ray: Ray is not installed; install the extra: pip install -e '.[ray]'"]
        ) from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run)
    pending: dict[Any, Outcome] = {}

    def submit(outcome: Outcome) -> None:
        outcome.attempts += 1
        pending[remote.remote(outcome.spec, str(partial_root), 1)] = outcome

    for spec in specs:
        submit(Outcome(spec, "pending"))
    results: list[Outcome] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        outcome = pending.pop(ready[0])
        try:
            ray.get(ready[0])
            error = ""
        except Exception as exc:  # a task's error, or its worker's death (WorkerCrashedError)
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        error = _place(outcome.spec, error, partial_root)
        if error:
            outcome.error = error
            if outcome.attempts < ATTEMPTS:
                submit(outcome)
                continue
            outcome.status = "failed"
        else:
            outcome.status, outcome.error = "done", ""
        results.append(outcome)
        done(outcome)
    return results


# -- the sweep -----------------------------------------------------------------------------------


def sweep(
    specs: list[RunSpec],
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every unfinished run of ``specs``; write the results table; return each run's outcome.

    SweepError if another sweep is running into the same folder.
    """
    if backend not in ("local", "ray"):
        raise SweepError([f"--backend {backend!r}: expected local or ray"])
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise SweepError([f"--workers: must be >= 1, got {workers}"])
    if not specs:
        return []
    out = Path(specs[0].out)
    assert all(Path(s.out) == out for s in specs), "a sweep's runs share one folder"
    out.mkdir(parents=True, exist_ok=True)
    lock_fd = _take_lock(out)
    try:
        partial_root = _fresh_partial(out)
        skipped = [Outcome(s, "skipped") for s in specs if finished(s)]
        todo = [s for s in specs if not finished(s)]
        report = progress or (lambda _o: None)
        for outcome in skipped:
            report(outcome)
        if not todo:
            ran = []
        elif backend == "ray":
            ran = _run_ray(todo, workers, address, partial_root, report)
        else:
            ran = _run_local(todo, workers, partial_root, lock_fd, report)
        by_id = {o.spec.run_id: o for o in [*skipped, *ran]}
        outcomes = [by_id[s.run_id] for s in specs]
        write_table(out, outcomes)
        _clear_partial(out)
        shutil.rmtree(out / PARTIAL, ignore_errors=True)
    finally:
        os.close(lock_fd)
    return outcomes


def write_table(out: Path, runs: list[Outcome]) -> Path:
    """``results.parquet``: a row per run -- swept values, seed, status, error, the summary's
    figures (:func:`summary_row`) and the economic outcomes (:func:`runtime.analysis.runs.outcomes`:
    volume, prices, Gini, wealth by population, in credits)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runtime.analysis.runs import outcomes
    from runtime.record.recording import read_summary
    from runtime.record.run_data import open_run

    rows = []
    for o in runs:
        row: dict[str, Any] = {
            "run": o.spec.run_id,
            **{f"set.{k}": v for k, v in o.spec.values},
            "seed": o.spec.seed,
            "status": "failed" if o.status == "failed" else "ok",
            "attempts": o.attempts,
            "error": o.error or None,
        }
        if o.status != "failed":
            summary, _ = read_summary(out / o.spec.run_id)
            row.update(summary_row(summary))
            row.update(outcomes(open_run(out / o.spec.run_id)))
        rows.append(row)
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for row in rows:
        for key, values in columns.items():
            values.append(row.get(key))
    arrays = {}
    for key, values in columns.items():
        try:
            arrays[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[key] = pa.array([None if v is None else str(v) for v in values])
    path = out / RESULTS
    pq.write_table(pa.table(arrays), path)
    return path
