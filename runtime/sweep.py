"""Parameter sweeps: the grid of a scenario's runs over parameter values and seeds, on local processes or Ray.

``agora sweep SCENARIO --set KEY=V1,V2 ... --seeds N --out DIR`` plans one run per combination of the
values and each of N seeds (the scenario's seed, seed + 1, ...), checks every combination's
scenario before running anything, and writes each run as a normal recorded run directory
``DIR/<run id>`` (replayable with ``agora replay --verify``), plus ``DIR/results.parquet``: one row
per run, its swept values, seed, status and the figures of its summary (:func:`summary_row`).

A run is written into ``DIR/.partial/<run id>`` and moved into place only once its summary is
written, so a run directory that exists is a finished run: killing the sweep, or a worker, at any
moment loses no finished run, and running the same command again resumes (finished runs are not
redone). A run that fails, or whose worker dies, is tried once more; a second failure is reported
(a row with status ``failed`` and the error, and exit status 1), never dropped.

Backends: ``local`` runs ``workers`` long-lived worker processes (forked from a server process that
has the libraries loaded), one run at a time each, and replaces a worker that dies; ``ray`` submits each run as a Ray task, to the cluster at
``address`` or to a local Ray started with ``workers`` CPUs. On a multi-machine cluster ``DIR``
must be on storage every node can write.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.scenario import ScenarioError, parse

RESULTS = "results.parquet"
PARTIAL = ".partial"
ATTEMPTS = 2  # the first try and one retry


class SweepError(Exception):
    """A sweep that cannot start (user mistake: exit 2), with one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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

    Each value is read as a TOML value (``3``, ``0.5``, ``true``, ``"eu"``), or as a bare string
    when it is not one.
    """
    out: list[tuple[str, list[Any]]] = []
    problems = []
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not key or not rest.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE[,VALUE...], e.g. economy.price_elasticity=0.3,0.5")
            continue
        values = []
        for raw in rest.split(","):
            raw = raw.strip()
            try:
                values.append(tomllib.loads(f"v = {raw}")["v"])
            except tomllib.TOMLDecodeError:
                values.append(raw)
        if any(k == key for k, _ in out):
            problems.append(f"--set {key}: given twice; list every value in one --set")
        if len(set(map(repr, values))) != len(values):
            problems.append(f"--set {key}: a value is listed twice")
        out.append((key, values))
    if problems:
        raise SweepError(problems)
    return out


def _override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; ``population.NAME.field`` addresses a population by name, ``fault.0.at`` a
    list entry by index) in the scenario's TOML data; SweepError naming the key if it does not exist."""
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            named = [entry for entry in node if isinstance(entry, dict) and entry.get("name") == part]
            if not named:
                names = [entry.get("name") for entry in node if isinstance(entry, dict)]
                raise SweepError([f"--set {key}: {where}: no entry named {part!r} (names: {names}; or an index 0..{len(node) - 1})"])
            node = named[0]
        elif isinstance(node, dict):
            node = node.setdefault(part, {}) if part in ("world", "network", "bus", "economy", "record") else node.get(part)
            if node is None:
                raise SweepError([f"--set {key}: the scenario has no {where!r} section"])
        else:
            raise SweepError([f"--set {key}: {where} is a value, not a section"])
    if not isinstance(node, dict):
        raise SweepError([f"--set {key}: {'.'.join(parts[:-1])} is a list; name an entry, e.g. population.workers.stake"])
    node[parts[-1]] = value


def _slug(key: str, value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9._+=-]", "-", f"{key}={value}")
    return text if len(text) <= 80 else f"{text[:60]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def plan(scenario: Path, sets: list[tuple[str, list[Any]]], seeds: int, out: Path,
         until: int | None = None) -> list[RunSpec]:
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
        raise SweepError(["--set world.seed: a sweep's seeds come from --seeds (the scenario's seed, seed + 1, ...); "
                          "change world.seed in the file to move them"])
    specs: list[RunSpec] = []
    problems: list[str] = []
    for combo in itertools.product(*(values for _, values in sets)):
        variant = json.loads(json.dumps(data))  # a deep copy of plain TOML data
        for key, value in zip(keys, combo, strict=True):
            _override(variant, key, value)
        text = tomli_w.dumps(variant)
        label = f"{scenario} with " + (", ".join(f"{k}={v!r}" for k, v in zip(keys, combo, strict=True)) or "no changes")
        try:
            parsed = parse(text, label, scenario.parent)
            if parsed.distributed is not None and parsed.distributed.shards > 1:
                raise SweepError([f"{label}: distributed.shards: sweeping a sharded world is not supported yet; "
                                  "run it with agora run, or sweep the scenario without [distributed]"])
        except ScenarioError as exc:
            problems += exc.problems
            continue
        for seed in range(first_seed, first_seed + seeds):
            run_id = "__".join([*(_slug(k, v) for k, v in zip(keys, combo, strict=True)), f"seed={seed}"])
            specs.append(RunSpec(run_id, tuple(zip(keys, combo, strict=True)), seed, text, str(scenario.parent.resolve()),
                                 str(out), until))
    if problems:
        raise ScenarioError(problems)
    return specs


def finished(spec: RunSpec) -> bool:
    """Whether the run's directory is in place with an intact summary (a finished run)."""
    from runtime.recording import RunDirError, read_summary

    try:
        _, problems = read_summary(Path(spec.out) / spec.run_id)
    except RunDirError:
        return False
    return not problems


def run_one(spec: RunSpec) -> str:
    """Record one run into ``.partial/<id>`` and move it into place; return its id (raises on failure)."""
    from runtime.recording import record_scenario

    out = Path(spec.out)
    partial = out / PARTIAL / spec.run_id
    if partial.exists():
        shutil.rmtree(partial)  # what an interrupted attempt left
    partial.parent.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL / f"{spec.run_id}.pid").write_text(str(os.getpid()))  # which process runs it, while it runs
    sc = parse(spec.text, spec.run_id, Path(spec.base))
    record_scenario(sc, spec.text.encode(), Path(spec.base), partial, seed=spec.seed, until=spec.until)
    final = out / spec.run_id
    if final.exists():
        shutil.rmtree(final)  # an unfinished directory of an earlier version of this sweep
    partial.rename(final)
    (out / PARTIAL / f"{spec.run_id}.pid").unlink(missing_ok=True)
    return spec.run_id


def summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run's summary as one flat row (what a sweep's table holds per run)."""
    t = summary["totals"]
    row: dict[str, Any] = {
        "seed": summary["seed"], "ticks": summary["ticks"], "final_state_hash": summary["final_state_hash"],
        "wall_seconds": summary["wall_seconds"], "agents": t["agents"], "events": t["events"],
        "supply_held_micro": t["supply_held_micro"], "supply_issued_micro": t["supply_issued_micro"],
        "distinct_ledger_roots": t["distinct_ledger_roots"], "ops_refused": t["ops_refused"],
        "tasks_posted": t["tasks_posted"], "mean_price_micro": t["mean_price_micro"],
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


@dataclass
class Outcome:
    """What became of one run: ``done`` (this time), ``skipped`` (finished before), or ``failed``."""

    spec: RunSpec
    status: str
    attempts: int = 0
    error: str = ""


def _share_cores(threads: int) -> None:
    """Numba's threads for a worker: this machine's cores split among the workers (results do not
    depend on the thread count, only the speed does)."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _ray_run(spec: RunSpec, threads: int) -> str:  # a Ray task
    _share_cores(threads)
    return run_one(spec)


def _worker(tasks: Any, results: Any, threads: int) -> None:  # a local worker process: runs until told to stop
    _share_cores(threads)
    while True:
        spec = tasks.get()
        if spec is None:
            return
        try:
            run_one(spec)
            results.put((spec.run_id, ""))
        except BaseException as exc:  # reported to the driver, which tries the run again once
            lines = traceback.format_exception_only(type(exc), exc)
            results.put((spec.run_id, (lines[-1].strip() if lines else type(exc).__name__) or "failed"))


def _run_local(specs: list[RunSpec], workers: int, done: Callable[[Outcome], None]) -> list[Outcome]:
    """Long-lived worker processes (forked from a server that has the libraries loaded), one run at a
    time each; a worker that dies is replaced and its run counts as a failed try."""
    import queue as queue_module

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["runtime.sweep", "runtime.recording", "agents", "torch", "z3"])
    results = ctx.Queue()
    pending = [Outcome(s, "pending") for s in specs]
    by_id = {o.spec.run_id: o for o in pending}
    pool: list[dict[str, Any]] = []  # {"proc", "tasks", "run": run id or None}
    finished_runs: list[Outcome] = []

    def spawn() -> dict[str, Any]:
        tasks = ctx.Queue()
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        proc = ctx.Process(target=_worker, args=(tasks, results, threads), daemon=True)
        proc.start()
        return {"proc": proc, "tasks": tasks, "run": None}

    def settle(outcome: Outcome, error: str) -> None:
        if not error and finished(outcome.spec):
            outcome.status, outcome.error = "done", ""
        else:
            outcome.error = error or "the run left no finished directory"
            if outcome.attempts < ATTEMPTS:
                pending.insert(0, outcome)
                return
            outcome.status = "failed"
        finished_runs.append(outcome)
        done(outcome)

    def receive(timeout: float) -> None:
        """Take one finished run's report, if one comes within ``timeout`` seconds."""
        try:
            run_id, error = results.get(timeout=timeout)
        except queue_module.Empty:
            return
        for w in pool:
            if w["run"] == run_id:
                w["run"] = None
        settle(by_id[run_id], error)

    pool = [spawn() for _ in range(min(workers, len(specs)))]
    try:
        while pending or any(w["run"] for w in pool):
            for w in pool:
                if w["run"] is None and pending:
                    outcome = pending.pop(0)
                    outcome.attempts += 1
                    w["run"] = outcome.spec.run_id
                    w["tasks"].put(outcome.spec)
            receive(0.1)
            for i, w in enumerate(pool):
                if w["run"] is not None and not w["proc"].is_alive():
                    receive(0.5)  # it may have reported just before it ended
                    if w["run"] is None:
                        continue
                    code = w["proc"].exitcode
                    outcome = by_id[w["run"]]
                    pool[i] = spawn()
                    settle(outcome, f"worker process ended with exit code {code} (killed?)")
    finally:
        for w in pool:
            if w["proc"].is_alive():
                w["tasks"].put(None)
        for w in pool:
            w["proc"].join(timeout=5)
            if w["proc"].is_alive():
                w["proc"].kill()
    return finished_runs


def _run_ray(specs: list[RunSpec], workers: int, address: str | None, done: Callable[[Outcome], None]) -> list[Outcome]:
    try:
        import ray
    except ImportError:
        raise SweepError(["--backend ray: Ray is not installed; install the extra: pip install -e '.[ray]'"]) from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_run)
    pending: dict[Any, Outcome] = {}

    def submit(outcome: Outcome) -> None:
        outcome.attempts += 1
        pending[remote.remote(outcome.spec, 1)] = outcome

    for spec in specs:
        submit(Outcome(spec, "pending"))
    results: list[Outcome] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        outcome = pending.pop(ready[0])
        try:
            ray.get(ready[0])
            outcome.status = "done"
        except Exception as exc:  # a task's error, or its worker's death (WorkerCrashedError)
            outcome.error = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            if outcome.attempts < ATTEMPTS:
                submit(outcome)
                continue
            outcome.status = "failed"
        results.append(outcome)
        done(outcome)
    return results


def sweep(specs: list[RunSpec], backend: str = "local", workers: int | None = None, address: str | None = None,
          progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every unfinished run of ``specs``; write the results table; return each run's outcome."""
    if backend not in ("local", "ray"):
        raise SweepError([f"--backend {backend!r}: expected local or ray"])
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise SweepError([f"--workers: must be >= 1, got {workers}"])
    if not specs:
        return []
    out = Path(specs[0].out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = [Outcome(s, "skipped") for s in specs if finished(s)]
    todo = [s for s in specs if not finished(s)]
    report = progress or (lambda _o: None)
    for outcome in skipped:
        report(outcome)
    if backend == "ray":
        ran = _run_ray(todo, workers, address, report) if todo else []
    else:
        ran = _run_local(todo, workers, report) if todo else []
    by_id = {o.spec.run_id: o for o in [*skipped, *ran]}
    outcomes = [by_id[s.run_id] for s in specs]
    write_table(out, outcomes)
    partial = out / PARTIAL
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    return outcomes


def write_table(out: Path, outcomes: list[Outcome]) -> Path:
    """``results.parquet``: a row per run (swept values, seed, status, error, :func:`summary_row`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from runtime.recording import read_summary

    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"run": o.spec.run_id, **{f"set.{k}": v for k, v in o.spec.values}, "seed": o.spec.seed,
                               "status": "failed" if o.status == "failed" else "ok", "attempts": o.attempts,
                               "error": o.error or None}
        if o.status != "failed":
            summary, _ = read_summary(out / o.spec.run_id)
            row.update(summary_row(summary))
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
