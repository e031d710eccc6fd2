"""The task market at scale: ticks per second of requesters and workers (no roles) at 10^4..10^6 agents.

80% requesters (post with probability 0.2 per tick) and 20% workers with stakes, two regions; the
same world with recording off and on (event log, metrics, state table). Also the ledger and
population arrays per agent (what the world holds, not the interpreter's overhead).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from runtime.scenario import parse
from runtime.world import World

SCENARIO = """
[world]
seed = 9
ticks = {ticks}
checkpoint_every = {checkpoint_every}
[network]
regions = ["eu", "us"]
links = [{{ a = "eu", b = "us", latency = 0.1 }}]
[[population]]
name = "requesters"
role = "requester"
count = {req}
initial_credits = 50
post_rate = 0.2
[[population]]
name = "workers"
role = "worker"
count = {work}
stake = 5
"""


def _arrays_bytes(obj: object, depth: int = 2) -> int:
    """Bytes of the numpy arrays an object holds (and those of its attributes, ``depth`` levels down)."""
    import numpy as np

    total = 0
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif depth > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            total += _arrays_bytes(value, depth - 1)
    return total


def _held_bytes(world: World) -> int:
    """The world's array state: ledger replicas (with their Merkle trees), populations (with their
    routers), reputation, market."""
    total = sum(_arrays_bytes(ledger) for ledger in world.ledgers)
    total += sum(_arrays_bytes(pop) for pop in world.populations)
    return total + _arrays_bytes(world.reputation) + _arrays_bytes(world.market)


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (agents, recording, ticks/s, agent-steps/s, world arrays per agent)."""
    rows = []
    for n in ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)):
        sc = parse(SCENARIO.format(ticks=1000, checkpoint_every=1000, req=n * 4 // 5, work=n // 5))
        for recording in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                world = World(sc, out=Path(tmp) if recording else None)
                world.run(2)  # compile and warm up
                ticks = 5 if n >= 1_000_000 else 20
                start = time.perf_counter()
                world.run(2 + ticks)
                rate = ticks / (time.perf_counter() - start)
                per_agent = _held_bytes(world) / n
                world.close()
            rows.append((f"{n:,}", "on" if recording else "off", f"{rate:.2f}", f"{rate * n:,.0f}", f"{per_agent:,.0f} B"))
    return rows
