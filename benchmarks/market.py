"""The task market at scale: ticks per second of requesters and workers (no roles) at 10^4..10^6
agents.

80% requesters (post with probability 0.2 per tick) and 20% workers with stakes, two regions; the
same world with recording off and on (event log, metrics, state table). Also the ledger and
population arrays per agent (what the world holds, not the interpreter's overhead).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from runtime.kernel.scenario import parse
from runtime.kernel.world import World

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


def world_bytes(world: World) -> int:
    """Bytes of the numpy arrays the world's own objects hold (ledger replicas with their Merkle
    trees, populations and their cores' arrays, reputation, market, coordination and its graph, task
    board), each array once: the simulation's state, not the interpreter's or the libraries'
    memory."""
    import numpy as np

    seen: set[int] = set()
    total = 0
    stack: list[tuple[object, int]] = [(world, 4)]
    while stack:
        obj, depth = stack.pop()
        values = (
            list(obj.values())
            if isinstance(obj, dict)
            else list(obj)
            if isinstance(obj, (list, tuple))
            else list(vars(obj).values())
            if hasattr(obj, "__dict__")
            else []
        )
        for value in values:
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif type(value).__name__ == "Tensor" and hasattr(
                value, "element_size"
            ):  # a core's torch weights
                total += value.element_size() * value.nelement()
            elif depth > 0 and (
                isinstance(value, (dict, list, tuple))
                or type(value).__module__.split(".")[0] in ("economy", "runtime", "agents")
            ):
                stack.append((value, depth - 1))
    return total


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (agents, recording, ticks/s, agent-steps/s, world arrays per agent)."""
    rows = []
    for n in (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000):
        scenario_config = parse(
            SCENARIO.format(ticks=1000, checkpoint_every=1000, req=n * 4 // 5, work=n // 5)
        )
        for recording in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                world = World(scenario_config, out=Path(tmp) if recording else None)
                world.run(2)  # compile and warm up
                ticks = 5 if n >= 1_000_000 else 20
                start = time.perf_counter()
                world.run(2 + ticks)
                rate = ticks / (time.perf_counter() - start)
                per_agent = world_bytes(world) / n
                world.close()
            rows.append(
                (
                    f"{n:,}",
                    "on" if recording else "off",
                    f"{rate:.2f}",
                    f"{rate * n:,.0f}",
                    f"{per_agent:,.0f} B",
                )
            )
    return rows
