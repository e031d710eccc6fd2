"""Agora's benchmark suite: ``agora bench`` runs it and prints the peers side by side."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

SUITES = ("kernel", "exchange", "market", "marketplace", "cores", "coordination", "roles", "ledger", "envs", "analysis", "scaleout")


def _print(console: Console, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@contextmanager
def _progress(status: Console, name: str) -> Iterator[Callable[[str], None]]:
    """A spinner on ``status`` (stderr) while suite ``name`` runs, and its time when it ends; yields a
    function that shows what the suite is doing now. Nothing is drawn where stderr is not a terminal."""
    start = time.perf_counter()
    with status.status(f"{name}: running") as spinner:
        yield lambda what: spinner.update(f"{name}: {what} ({time.perf_counter() - start:.0f} s so far)")
    status.print(f"{name}: done in {time.perf_counter() - start:.0f} s", markup=False, highlight=False)


def run_all(quick: bool = False, only: str | None = None, console: Console | None = None,
            status: Console | None = None) -> None:
    """Run the suites (or ``only`` those of :data:`SUITES` named, comma-separated) and print a table for each,
    then a summary of issue 8's goals when the exchange or marketplace suite ran. Progress (a spinner
    naming the suite, and each suite's time) goes to ``status``, stderr by default, so the tables
    alone go to ``console``."""
    console = console or Console()
    status = status or Console(stderr=True)
    goals: list[tuple[str, str, str, bool]] = []
    chosen = set(SUITES) if only is None else set(only.split(","))
    console.print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
                  f"{'quick sizes' if quick else 'full sizes'}", markup=False)
    if "kernel" in chosen:
        from benchmarks import kernel

        with _progress(status, "kernel"):
            overhead, rows = kernel.run(quick)
        _print(console, "kernel: per-tick overhead, no agents", ("kernel", "us/tick", "vs bare SimPy"), overhead)
        _print(console, "kernel: trivial population (each agent += 1 per tick)",
               ("agents", "implementation", "agent-steps/s", "Agora is"), rows)
    if "exchange" in chosen:
        from benchmarks import exchange

        with _progress(status, "exchange"):
            rows = exchange.run(quick, goals)
        _print(console, "exchange: Boltzmann wealth exchange, shuffled sequential order",
               ("agents", "implementation", "agent-steps/s", "Agora is"), rows)
    if "market" in chosen:
        from benchmarks import market

        with _progress(status, "market"):
            rows = market.run(quick)
        _print(console, "market: requesters and workers, no roles (this CPU)",
               ("agents", "recording", "ticks/s", "agent-steps/s", "world arrays per agent"), rows)
    if "marketplace" in chosen:
        from benchmarks import marketplace

        with _progress(status, "marketplace") as step:
            rows = marketplace.run(quick, goals, step)
        _print(console, "marketplace: the default scenario with every role, scaled (this CPU, recording off)",
               ("agents", "implementation", "ticks/s", "agent-steps/s", "us/agent-step", "peak memory per agent",
                "world arrays per agent", "Agora is"), rows)
    if "cores" in chosen:
        from benchmarks import cores

        with _progress(status, "cores"):
            rows = cores.run(quick)
        _print(console, "cores: Agora's fixed-order kernels vs torch on the CPU and per-agent Python, same arithmetic",
               cores.COLUMNS, rows)
    if "coordination" in chosen:
        from benchmarks import coordination

        with _progress(status, "coordination"):
            rows = coordination.run(quick)
        _print(console, "coordination: one Kuramoto Euler step on a random graph",
               ("N", "E", "implementation", "steps/s", "edge updates/s", "Agora is"), rows)
    if "roles" in chosen:
        from benchmarks import roles

        with _progress(status, "roles"):
            rows = roles.run(quick)
        _print(console, "roles: learned cores vs baselines, held-out seeds (default scenario)",
               ("role", "seed", "metric", "learned", "baseline"), rows)
    if "ledger" in chosen:
        from benchmarks import ledger

        with _progress(status, "ledger"):
            rows = ledger.run(quick)
        _print(console, "ledger: array replica vs dict replica (same CRDT)",
               ("measure", "size", "Agora", "dict baseline", "Agora is"), rows)
    if "envs" in chosen:
        from benchmarks import envs

        with _progress(status, "envs"):
            throughput, policy = envs.run(quick)
        _print(console, "environments: throughput (this CPU)", ("environment", "env steps/s", "agent-steps/s"), throughput)
        _print(console, "trained PPO negotiators in scenarios/trained_negotiators.toml (5 of 40 seats), held-out seeds",
               ("seed", "profit per trained contractor", "profit per ZI-C contractor", "efficiency"), policy)
    if "analysis" in chosen:
        from benchmarks import analysis

        with _progress(status, "analysis"):
            rows = analysis.run(quick)
        _print(console, "analysis: state at a tick and analyze on a large run", ("measure", "value"), rows)
    if "scaleout" in chosen:
        from benchmarks import scaleout

        with _progress(status, "scaleout"):
            sweeps, shards = scaleout.sweep_rates(quick), scaleout.sharded_rates(quick)
        _print(console, "scale-out: a sweep of 8 runs (the default scenario, 100 ticks) three ways (this machine)",
               ("backend", "runs", "seconds", "runs/min", "vs one after another"), sweeps)
        _print(console, "scale-out: a sharded world (requesters and workers, 2 regions, 20 ticks)",
               ("agents", "implementation", "build + settle s", "ticks s", "agent-steps/s", "converged, conserved"),
               shards)
    if goals:
        _print(console, "summary: issue 8's goals as measured in this run (this CPU)", ("goal", "measured", "target", "met"),
               [(name, value, target, "yes" if met else "NO") for name, value, target, met in goals])
        console.print("GPU goals are measured on the lent H100, not here: benchmarks/results/gpu-*.txt "
                      "(exchange, market step, ledger kernels, Kuramoto, roles, training).", markup=False)
