"""Agora's benchmark suite: ``agora bench`` runs it and prints the peers side by side."""

from __future__ import annotations

import platform

from rich.console import Console
from rich.table import Table


def run_all(quick: bool = False, only: str | None = None, console: Console | None = None) -> None:
    """Run the kernel, coordination and ledger suites and print one table each."""
    console = console or Console()
    console.print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
                  f"{'quick sizes' if quick else 'full sizes'}", markup=False)
    if only in (None, "kernel"):
        from benchmarks import kernel

        overhead, rows = kernel.run(quick)
        t = Table(title="kernel: per-tick overhead, no agents")
        for col in ("kernel", "us/tick", "vs bare SimPy"):
            t.add_column(col)
        for row in overhead:
            t.add_row(*row)
        console.print(t)
        t = Table(title="kernel: trivial population (each agent += 1 per tick)")
        for col in ("agents", "implementation", "agent-steps/s", "Agora is"):
            t.add_column(col)
        for row in rows:
            t.add_row(*row)
        console.print(t)
    if only in (None, "coordination"):
        from benchmarks import coordination

        t = Table(title="coordination: one Kuramoto Euler step on a random graph")
        for col in ("N", "E", "implementation", "steps/s", "edge updates/s", "Agora is"):
            t.add_column(col)
        for row in coordination.run(quick):
            t.add_row(*row)
        console.print(t)
    if only in (None, "roles"):
        from benchmarks import roles

        t = Table(title="roles: learned cores vs baselines, held-out seeds (default scenario)")
        for col in ("role", "seed", "metric", "learned", "baseline"):
            t.add_column(col)
        for row in roles.run(quick):
            t.add_row(*row)
        console.print(t)
    if only in (None, "ledger"):
        from benchmarks import ledger

        t = Table(title="ledger: array replica vs dict replica (same CRDT)")
        for col in ("measure", "size", "Agora", "dict baseline", "Agora is"):
            t.add_column(col)
        for row in ledger.run(quick):
            t.add_row(*row)
        console.print(t)
