"""Kernel benchmarks: per-tick overhead of an empty world, and a trivial population at scale.

Peers, same work in the same process: a bare SimPy tick loop (the floor any SimPy-clocked kernel
pays), Mesa 3 idiomatic (an Agent object per agent, ``model.agents.do("step")``), SimPy with a
process per agent, and a pure-Python loop over a list (the project's own baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import mesa
import simpy

from runtime.kernel.scenario import parse
from runtime.kernel.world import World


def _best(fn: Callable[[], None], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def empty_world_tick_seconds(ticks: int) -> float:
    """Wall seconds per tick of a world with no agents (SimPy clock, metrics, recording off)."""
    scenario_config = parse(f"[world]\nticks = {ticks}\ncheckpoint_every = {ticks}\n")

    def go() -> None:
        World(scenario_config).run()

    return _best(go) / ticks


def bare_simpy_tick_seconds(ticks: int) -> float:
    """Wall seconds per tick of a SimPy process that only yields a timeout."""

    def go() -> None:
        env = simpy.Environment()

        def proc():  # type: ignore[no-untyped-def]
            for _ in range(ticks):
                yield env.timeout(1)

        env.process(proc())
        env.run()

    return _best(go) / ticks


def agora_ticker(n: int, ticks: int) -> float:
    """Agent-steps/s of Agora's trivial population (numpy, one array op per tick)."""
    scenario_config = parse(
        f"[world]\nticks = {ticks}\ncheckpoint_every = {ticks}\n"
        f'[[population]]\nname = "t"\nrole = "ticker"\ncount = {n}\n'
    )
    world = World(scenario_config)
    seconds = _best(lambda: world.run(world.tick + ticks))
    return n * ticks / seconds


class _Counter(mesa.Agent):
    def __init__(self, model: mesa.Model) -> None:
        super().__init__(model)
        self.counter = 0

    def step(self) -> None:
        self.counter += 1


def mesa_ticker(n: int, ticks: int) -> float:
    """Agent-steps/s of the same population written Mesa-idiomatically."""
    model = mesa.Model(seed=0)
    for _ in range(n):
        _Counter(model)

    def go() -> None:
        for _ in range(ticks):
            model.agents.do("step")

    return n * ticks / _best(go)


def simpy_ticker(n: int, ticks: int) -> float:
    """Agent-steps/s with one SimPy process per agent."""

    def go() -> None:
        env = simpy.Environment()
        counters = [0] * n

        def agent(i: int):  # type: ignore[no-untyped-def]
            for _ in range(ticks):
                counters[i] += 1
                yield env.timeout(1)

        for i in range(n):
            env.process(agent(i))
        env.run()

    return n * ticks / _best(go, repeat=1)


def python_ticker(n: int, ticks: int) -> float:
    """Agent-steps/s of a plain Python loop over a list of counters."""
    counters = [0] * n

    def go() -> None:
        for _ in range(ticks):
            for i in range(n):
                counters[i] += 1

    return n * ticks / _best(go)


def run(quick: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Rows of the overhead table and of the trivial-population table."""
    ticks = 500 if quick else 5000
    empty = empty_world_tick_seconds(ticks)
    bare = bare_simpy_tick_seconds(ticks)
    overhead = [
        ("Agora empty world", f"{empty * 1e6:.1f}", f"{empty / bare:.1f}x"),
        ("bare SimPy timeout loop", f"{bare * 1e6:.1f}", "1.0x"),
    ]
    rows = []
    sizes = [10_000, 100_000] if quick else [10_000, 1_000_000]
    for n in sizes:
        steps = 20 if n <= 10_000 else 10
        agora = agora_ticker(n, steps)
        peers = {"Agora (arrays)": agora}
        if n <= 100_000:
            peers["Mesa 3 agents.do"] = mesa_ticker(n, steps)
            peers["SimPy process/agent"] = simpy_ticker(n, max(2, steps // 4))
            peers["pure-Python loop"] = python_ticker(n, steps)
        for name, rate in peers.items():
            rows.append((f"{n:,}", name, f"{rate:,.0f}", f"{agora / rate:,.1f}x"))
    return overhead, rows
