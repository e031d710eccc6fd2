"""Agora's benchmark suite: ``agora bench`` runs it and prints the peers side by side.

Each suite is a module of this package with a ``run(quick)`` function; :data:`SUITES` says what its
tables are called and what their columns hold. Progress (a spinner naming the suite, then its time)
goes to stderr; the tables alone go to stdout, so they can be saved as a results file.
"""

from __future__ import annotations

import importlib
import io
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

Rows = list[tuple[str, ...]]


@dataclass(frozen=True)
class Suite:
    """One benchmark suite: its module, and the title and columns of each table its ``run`` returns
    (a suite with several tables returns a tuple of row lists, one per table)."""

    module: str
    tables: tuple[tuple[str, tuple[str, ...]], ...]
    takes_progress: bool = False


SUITE_TABLES: dict[str, Suite] = {
    "startup": Suite(
        "startup",
        (
            (
                "startup: fresh processes, as a user meets them (this CPU)",
                ("what", "seconds", "target"),
            ),
        ),
    ),
    "kernel": Suite(
        "kernel",
        (
            ("kernel: per-tick overhead, no agents", ("kernel", "us/tick", "vs bare SimPy")),
            (
                "kernel: trivial population (each agent += 1 per tick)",
                ("agents", "implementation", "agent-steps/s", "Agora is"),
            ),
        ),
    ),
    "exchange": Suite(
        "exchange",
        (
            (
                "exchange: Boltzmann wealth exchange, shuffled sequential order",
                ("agents", "implementation", "agent-steps/s", "Agora is"),
            ),
        ),
    ),
    "market": Suite(
        "market",
        (
            (
                "market: requesters and workers, no roles (this CPU)",
                ("agents", "recording", "ticks/s", "agent-steps/s", "world arrays per agent"),
            ),
        ),
    ),
    "marketplace": Suite(
        "marketplace",
        (
            (
                "marketplace: the default scenario with every role, scaled (this CPU, "
                "recording off)",
                (
                    "agents",
                    "implementation",
                    "ticks/s",
                    "agent-steps/s",
                    "us/agent-step",
                    "peak memory per agent",
                    "world arrays per agent",
                    "Agora is",
                ),
            ),
        ),
        takes_progress=True,
    ),
    "cores": Suite(
        "cores",
        (
            (
                "cores: Agora's fixed-order kernels vs torch on the CPU and per-agent Python, "
                "same arithmetic",
                (
                    "core",
                    "size",
                    "Agora /s",
                    "torch 1 thread /s",
                    "torch all threads /s",
                    "per-agent Python /s",
                    "Agora vs torch 1 thread",
                ),
            ),
        ),
    ),
    "coordination": Suite(
        "coordination",
        (
            (
                "coordination: one Kuramoto Euler step on a random graph",
                ("N", "E", "implementation", "steps/s", "edge updates/s", "Agora is"),
            ),
        ),
    ),
    "roles": Suite(
        "roles",
        (
            (
                "roles: learned cores vs baselines, held-out seeds (default scenario)",
                ("role", "seed", "metric", "learned", "baseline"),
            ),
        ),
    ),
    "ledger": Suite(
        "ledger",
        (
            (
                "ledger: array replica vs dict replica (same CRDT)",
                ("measure", "size", "Agora", "dict baseline", "Agora is"),
            ),
        ),
    ),
    "env_throughput": Suite(
        "env_throughput",
        (
            (
                "environments: make_parallel_env on marketplace.toml beside market_v0 (this CPU)",
                ("environment", "steps/s", "agent-steps/s", "in World tick"),
            ),
        ),
    ),
    "serve": Suite(
        "serve",
        (
            (
                "serve: outside agents acting at once on agora serve over loopback",
                (
                    "load",
                    "actions/s acknowledged",
                    "ms to ack p50 / p99",
                    "WebSocket messages per tick",
                    "connections dropped",
                    "refused (status: count)",
                    "acknowledged, missing from the log",
                ),
            ),
        ),
    ),
    "envs": Suite(
        "envs",
        (
            (
                "environments: throughput (this CPU)",
                ("environment", "env steps/s", "agent-steps/s"),
            ),
            (
                "trained PPO negotiators in scenarios/trained_negotiators.toml (5 of 40 "
                "seats), held-out seeds",
                (
                    "seed",
                    "profit per trained contractor",
                    "profit per ZI-C contractor",
                    "efficiency",
                ),
            ),
            (
                "learners on agora/Market-v0: mean episode return, held-out seeds 1001-1005 x "
                "10 episodes "
                "(--quick: 2 seeds x 3, shorter training); margins seed by seed",
                (
                    "contender",
                    "training",
                    "train s",
                    "mean return",
                    "seeds min..max",
                    "minus random: mean (min..max)",
                    "minus ZI-C",
                    "minus agora train (shipped)",
                ),
            ),
            (
                "a negotiator trained in the default scenario (agora train "
                "scenarios/marketplace.toml, benchmarks/results/scenario-training.txt) in seat 0 "
                "vs ZI-C in that seat, the other contractors ZI-C: profit per episode (credits), "
                "held-out seeds 1001-1005 x 2 (--quick: 1 seed, 40 ticks, no faults)",
                ("seed", "trained", "ZI-C", "trained minus ZI-C"),
            ),
        ),
    ),
    "mechanism": Suite(
        "mechanism",
        (
            (
                "mechanism: the task auction as a continuous double auction (cda) and as a call "
                "market per round (call), the default scenario at 10^4 agents, same seeds",
                (
                    "mechanism",
                    "efficiency",
                    "profit per negotiator (credits)",
                    "contracts",
                    "mean price (x posted)",
                ),
            ),
            (
                "mechanism: one tick's auction kernel (30 rounds, ZI-C posts) on this CPU",
                ("agents", "cda ms", "call ms", "call's speed over cda's"),
            ),
        ),
    ),
    "gpu": Suite(
        "gpu",
        (
            (
                "gpu: the GPU kernels against their CPU peers, same inputs, bits compared",
                ("kernel", "size", "CPU", "GPU", "GPU is", "same bits"),
            ),
        ),
    ),
    "scale": Suite(
        "scale",
        (
            (
                "scale: the gpu engine's contract, the default gpu scenario recorded on the CPU "
                "and on the GPU (final state hash)",
                ("GPU", "CPU", "GPU", "same bits"),
            ),
            (
                "scale: the gpu marketplace (every role, faults, coordination) at scale, against "
                "FLAME GPU 2's published circles benchmark",
                (
                    "agents",
                    "device",
                    "ticks/s",
                    "agent-steps/s",
                    "state B/agent",
                    "peak B/agent",
                    "bytes per tick",
                    "of 4.8 TB/s",
                    "payments proved by z3",
                ),
            ),
            (
                "scale: the exact engine and the gpu engine on the same scenario (the default "
                "roles at 10^4 agents, call market, same seed), agora analyze's indicators",
                ("indicator", "exact engine", "gpu engine"),
            ),
        ),
    ),
    "analysis": Suite(
        "analysis",
        (("analysis: state at a tick and analyze on a large run", ("measure", "value")),),
    ),
    "scaleout": Suite(
        "scaleout",
        (
            (
                "scale-out: a sweep of 8 runs (the default scenario, 100 ticks) three ways "
                "(this machine)",
                ("backend", "runs", "seconds", "runs/min", "vs one after another"),
            ),
            (
                "scale-out: a sharded world (requesters and workers, 4 regions, 20 ticks), "
                "strong and weak scaling on this machine",
                (
                    "scaling",
                    "agents",
                    "implementation",
                    "build + settle s",
                    "ms per tick",
                    "agent-steps/s",
                    "speed-up",
                    "bytes between shards per tick",
                    "converged, conserved",
                ),
            ),
            (
                "scale-out: the time per tick at K shards, modelled (compute per shard + barrier + "
                "bytes over a link), against the measured points and Repast4Py's published "
                "strong scaling",
                (
                    "case",
                    "agents",
                    "shards / ranks",
                    "measured ms per tick",
                    "model ms per tick",
                    "model error",
                    "total",
                ),
            ),
        ),
    ),
}
SUITES = tuple(SUITE_TABLES)


def _print(console: Console, title: str, columns: tuple[str, ...], rows: Rows) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@contextmanager
def _progress(status: Console, name: str) -> Iterator[Callable[[str], None]]:
    """A spinner on ``status`` (stderr) while suite ``name`` runs, and its time when it ends; yields
    a
    function that shows what the suite is doing now. Nothing is drawn where stderr is not a
    terminal."""
    start = time.perf_counter()
    with status.status(f"{name}: running") as spinner:
        yield lambda what: spinner.update(
            f"{name}: {what} ({time.perf_counter() - start:.0f} s so far)"
        )
    status.print(
        f"{name}: done in {time.perf_counter() - start:.0f} s", markup=False, highlight=False
    )


def run_suite(name: str, quick: bool, step: Callable[[str], None]) -> list[Rows]:
    """Run suite ``name``; one list of rows per table of :data:`SUITE_TABLES`."""
    suite = SUITE_TABLES[name]
    module: Any = importlib.import_module(f"benchmarks.{suite.module}")
    result = module.run(quick, progress=step) if suite.takes_progress else module.run(quick)
    tables = list(result) if len(suite.tables) > 1 else [result]
    assert len(tables) == len(suite.tables), f"suite {name} returned {len(tables)} tables"
    return tables


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` where there is no
    ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """What a figure was measured on and with: CPU, cores, Python and the versions that matter."""
    versions = []
    for package in ("agora", "numpy", "numba", "torch", "mesa", "simpy"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; {', '.join(versions)}"
    )


def run_all(
    quick: bool = False,
    only: str | None = None,
    console: Console | None = None,
    status: Console | None = None,
    save: Path | None = None,
) -> None:
    """Run the suites (or ``only`` those of :data:`SUITES` named, comma-separated) and print a table
    for each. Progress goes to ``status`` (stderr by default), the tables to ``console``; with
    ``save``, each suite's tables also go to ``save/<suite>.txt`` under a header naming the command,
    the date and the machine."""
    console = console or Console()
    status = status or Console(stderr=True)
    chosen = set(SUITES) if only is None else set(only.split(","))
    sizes = "quick sizes" if quick else "full sizes"
    console.print(f"machine: {machine_line()}; {sizes}", markup=False)
    for name in SUITES:
        if name not in chosen:
            continue
        with _progress(status, name) as step:
            tables = run_suite(name, quick, step)
        text = io.StringIO()
        record = Console(file=text, width=200, color_system=None)
        for (title, columns), rows in zip(SUITE_TABLES[name].tables, tables, strict=True):
            _print(console, title, columns, rows)
            _print(record, title, columns, rows)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            header = (
                f"# command: agora bench --only {name}{' --quick' if quick else ''}\n"
                f"# measured: {date.today().isoformat()}, {machine_line()}; {sizes}\n"
            )
            (save / f"{name}.txt").write_text(header + text.getvalue())
