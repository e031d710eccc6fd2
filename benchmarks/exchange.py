"""Boltzmann wealth exchange, the same model four ways in one process, same N and steps.

Each step every agent, in a shuffled order, gives one unit to a uniformly random agent if it has
any (exact sequential semantics). Peers: Agora (a World stepping an ``exchange`` population: SimPy
clock, numba kernel, counter-based Philox random numbers), Mesa 3 idiomatic (an Agent object per
agent, ``model.agents.shuffle_do("step")``), SimPy with a process per agent (shuffled each step),
and a hand-written numba loop (``np.random.permutation`` and ``np.random.randint`` inside
``@njit``).
"""

from __future__ import annotations

import random
import time

import mesa
import numpy as np
import simpy
from numba import njit

from runtime.kernel.scenario import parse
from runtime.kernel.world import World


@njit(cache=True)
def _numba_steps(wealth, steps):
    n = wealth.shape[0]
    for _ in range(steps):
        order = np.random.permutation(n)
        for a in order:
            if wealth[a] > 0:
                b = np.random.randint(0, n)
                wealth[a] -= 1
                wealth[b] += 1


def numba_loop(n: int, steps: int) -> float:
    """Agent-steps/s of the hand-written numba loop."""
    wealth = np.ones(n, dtype=np.int64)
    _numba_steps(wealth, 1)  # compile
    start = time.perf_counter()
    _numba_steps(wealth, steps)
    return n * steps / (time.perf_counter() - start)


def agora(n: int, steps: int) -> float:
    """Agent-steps/s of an Agora world with one exchange population (recording off)."""
    scenario_config = parse(
        f"[world]\nticks = {steps + 1}\ncheckpoint_every = {steps + 1}\n"
        f'[[population]]\nname = "x"\nrole = "exchange"\ncount = {n}\ninitial_credits = 1\n'
    )
    world = World(scenario_config)
    world.run(1)  # compile and warm up
    start = time.perf_counter()
    world.run(1 + steps)
    return n * steps / (time.perf_counter() - start)


class _MoneyAgent(mesa.Agent):
    def __init__(self, model: mesa.Model) -> None:
        super().__init__(model)
        self.wealth = 1

    def step(self) -> None:
        if self.wealth > 0:
            other = self.random.choice(self.model.pool)
            other.wealth += 1
            self.wealth -= 1


class _MoneyModel(mesa.Model):
    def __init__(self, n: int) -> None:
        super().__init__(seed=1)
        _MoneyAgent.create_agents(self, n)
        self.pool = list(self.agents)

    def step(self) -> None:
        self.agents.shuffle_do("step")


def mesa_run(n: int, steps: int) -> tuple[list[int], float]:
    """Run the Mesa 3 idiomatic model; return the final wealth and the seconds it took."""
    model = _MoneyModel(n)
    start = time.perf_counter()
    for _ in range(steps):
        model.step()
    return [a.wealth for a in model.pool], time.perf_counter() - start


def mesa_model(n: int, steps: int) -> float:
    """Agent-steps/s of the Mesa 3 idiomatic model."""
    return n * steps / mesa_run(n, steps)[1]


def simpy_model(n: int, steps: int) -> float:
    """Agent-steps/s with a SimPy process per agent; a controller reshuffles the order each step."""
    return n * steps / simpy_run(n, steps)[1]


def simpy_run(n: int, steps: int) -> tuple[list[int], float, list[int]]:
    """Run the SimPy model; return the final wealth, the seconds it took and each agent's turn
    count."""
    env = simpy.Environment()
    wealth = [1] * n
    rng = random.Random(1)
    order = list(range(n))
    turns = [env.event() for _ in range(n)]
    acted = [0] * n

    def agent(i: int):  # type: ignore[no-untyped-def]
        while True:
            yield turns[i]
            turns[i] = env.event()
            acted[i] += 1
            if wealth[i] > 0:
                wealth[rng.randrange(n)] += 1
                wealth[i] -= 1

    def controller():  # type: ignore[no-untyped-def]
        for _ in range(steps):
            rng.shuffle(order)
            for i in order:
                turns[i].succeed()
                yield env.timeout(0)  # the agent runs before the next one's turn
            yield env.timeout(1)

    for i in range(n):
        env.process(agent(i))
    start = time.perf_counter()
    env.run(until=env.process(controller()))
    return wealth, time.perf_counter() - start, acted


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (N, implementation, agent-steps/s, Agora is)."""
    rows: list[tuple[str, ...]] = []
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
    for n in sizes:
        steps = max(3, min(200, 2_000_000 // n))
        results = {
            "Agora (World, numba, Philox)": agora(n, steps),
            "hand-written numba loop": numba_loop(n, steps),
        }
        if n <= 100_000:
            slow_steps = max(2, min(20, 200_000 // n))
            results["Mesa 3 shuffle_do"] = mesa_model(n, slow_steps)
            results["SimPy process per agent"] = simpy_model(n, slow_steps)
        mine = results["Agora (World, numba, Philox)"]
        for name, rate in results.items():
            rows.append((f"{n:,}", name, f"{rate:,.0f}", f"{mine / rate:.2f}x"))
    return rows
