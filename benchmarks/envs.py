"""Environment throughput and the trained negotiator inside a scenario.

Throughput: ``market_v0`` through its parallel API at 10, 100 and 1,000 negotiators (env steps/s
and agent-steps/s, our timing loop around ``env.step``), the same through the AEC API with
PettingZoo's own ``performance_benchmark`` (turns = agent-steps), ``agora/Market-v0`` with
Gymnasium's ``benchmark_step``, and the native vector env. The peer for the market's kernel is the
project's own direct auction (each post scans the standing orders) against the heap auction the
environments use, on the same posts.

Policy: ``scenarios/trained_negotiators.toml`` (5 of 40 contractors use the PPO policy shipped in
``scenarios/policies/``, 35 are ZI-C, one auction) on held-out seeds 101..105: profit per
contractor of each group.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import numpy as np

SEEDS = (101, 102, 103, 104, 105)


def _parallel(n: int, seconds: float) -> tuple[float, float]:
    from environments import market_v0

    env = market_v0.parallel_env(n_agents=n)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shades = rng.random((64, n)).astype(np.float32)
    plans = [{a: shades[k, i : i + 1] for i, a in enumerate(env.possible_agents)} for k in range(64)]
    steps = agent_steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not env.agents:
            env.reset()
        plan = plans[steps % 64]
        live = env.agents
        env.step({a: plan[a] for a in live} if len(live) < n else plan)
        steps += 1
        agent_steps += len(live)
    wall = time.perf_counter() - start
    return steps / wall, agent_steps / wall


def _aec(n: int) -> float:
    from pettingzoo.test import performance_benchmark

    from environments import market_v0

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        performance_benchmark(market_v0.env(n_agents=n))
    found = re.search(r"([0-9.e+]+) turns per second", buf.getvalue())
    return float(found.group(1)) if found else float("nan")


def _vector(num_envs: int, seconds: float) -> float:
    from environments.market import MarketVectorEnv

    env = MarketVectorEnv(num_envs=num_envs)
    env.reset(seed=0)
    actions = np.full((num_envs, 1), 0.3)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions)
        steps += 1
    return steps * num_envs / (time.perf_counter() - start)


def _kernels(n: int) -> tuple[float, float]:
    from agents.auction import arrival_orders, double_auction, double_auction_fast

    rng = np.random.default_rng(1)
    is_buyer = np.arange(2 * n) >= n
    limit = np.concatenate([rng.uniform(0.5, 1.5, n), rng.uniform(1, 2, n)])
    posts = np.concatenate([limit[:n] + rng.random((30, n)) * (2 - limit[:n]), rng.random((30, n)) * limit[n:]], axis=1)
    order = arrival_orders(rng.random((30, 2 * n)))
    out = []
    for f in (double_auction_fast, double_auction):
        f(is_buyer, limit, posts, order)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.5:
            f(is_buyer, limit, posts, order)
            reps += 1
        out.append(reps / (time.perf_counter() - start))
    return out[0], out[1]


def run(quick: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Throughput rows and trained-policy rows."""
    import gymnasium
    from gymnasium.utils.performance import benchmark_step

    import environments  # noqa: F401

    seconds = 0.5 if quick else 3.0
    rows: list[tuple[str, ...]] = []
    for n in (10, 100, 1000):
        sps, aps = _parallel(n, seconds)
        rows.append((f"market_v0 parallel_env, {n} agents", f"{sps:,.0f}", f"{aps:,.0f}"))
    for n in ((10,) if quick else (10, 100, 1000)):
        turns = _aec(n)
        rows.append((f"market_v0 env() (AEC), {n} agents, PettingZoo performance_benchmark",
                     f"{turns / n:,.0f}", f"{turns:,.0f}"))
    single = benchmark_step(gymnasium.make("agora/Market-v0").unwrapped, target_duration=1 if quick else 3, seed=0)
    rows.append(("agora/Market-v0, 8 agents (1 learner), Gymnasium benchmark_step", f"{single:,.0f}", f"{single * 8:,.0f}"))
    for num_envs in (16, 256):
        sps = _vector(num_envs, seconds)
        rows.append((f"MarketVectorEnv, {num_envs} markets of 8", f"{sps:,.0f}", f"{sps * 8:,.0f}"))
    for n in (10, 100, 1000):
        fast, direct = _kernels(n)
        rows.append((f"one auction period, {n} sellers + {n} buyers: heap kernel / direct kernel",
                     f"{fast:,.0f} / {direct:,.0f} (x{fast / direct:.1f})", f"{fast * n:,.0f} / {direct * n:,.0f}"))
    return rows, policy_rows(quick)


def policy_rows(quick: bool, scenario: Path = Path("scenarios/trained_negotiators.toml")) -> list[tuple[str, ...]]:
    """Profit per contractor, trained-policy seats vs ZI-C seats in the same auction, per seed."""
    from runtime.scenario import load
    from runtime.world import World

    sc, _ = load(scenario)
    rows = []
    core, zic = [], []
    for seed in SEEDS[:2] if quick else SEEDS:
        world = World(sc, base=scenario.parent, seed=seed)
        world.run(60 if quick else None)
        m = next(p for p in world.populations if p.role == "negotiator").role_metrics()
        core.append(m["profit_per_core_agent"])
        zic.append(m["profit_per_zic_agent"])
        rows.append((str(seed), f"{core[-1]:.2f}", f"{zic[-1]:.2f}", f"{m['efficiency']:.3f}"))
    rows.append(("mean", f"{np.mean(core):.2f}", f"{np.mean(zic):.2f}", ""))
    return rows
