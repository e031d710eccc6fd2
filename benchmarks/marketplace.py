"""The default scenario with every role, scaled to N agents: Agora beside the Mesa-idiomatic peer.

``scaled(n)`` keeps the default scenario (scenarios/marketplace.toml) as it is -- faults,
coordination, healers, critics, forecaster, refactor agents -- and scales its four large
populations (requesters, workers, planners, negotiators: 2,240 of its 2,250 agents) so the world
holds ``n`` agents; the ten service agents stay. The critic's z3 review of every ledger batch is
off (``review_ledger = false``): it does not scale past 10^5 (see the README's limits); the critic
still proves each refund batch.

Each case runs in a fresh process (so peak memory is its own): build, three warm-up ticks (numba
compiles, caches fill), then timed ticks 3.., which are before the scenario's first fault (tick 30).
Reported: ticks/s, agent-steps/s, microseconds per agent-step, the rise of peak resident memory
over the process after a 1,000-agent warm-up world has loaded the libraries and compiled the
kernels (per agent), and Agora's speed over the peer's. The peer is
``benchmarks/mesa_marketplace.py``; its docstring lists what it leaves out.
"""

from __future__ import annotations

import multiprocessing
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "marketplace.toml"
SCALED = {"requesters": 1600, "workers": 400, "planners": 200, "negotiators": 40}  # the default's counts
SERVICE = 10  # healers, critics, forecaster, refactor agents


def scaled_text(n: int, review_ledger: bool = False) -> str:
    """The default scenario's text with its large populations scaled to ``n`` agents in all."""
    text = SCENARIO.read_text()
    f = (n - SERVICE) / sum(SCALED.values())
    for name, count in SCALED.items():
        pattern = rf'(name = "{name}"\nrole = "\w+"\ncount = ){count}\n'
        text, found = re.subn(pattern, lambda m, c=count: f"{m.group(1)}{round(c * f)}\n", text)
        if found != 1:
            raise RuntimeError(f"scenarios/marketplace.toml: population {name!r} with count {count} not found")
    if not review_ledger:
        text = text.replace("check_budget = 0.1\n", "check_budget = 0.1\nreview_ledger = false\n")
    return text


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _case(impl: str, n: int, ticks: int) -> tuple[int, float, int]:
    """In a fresh process: (agents, ticks/s, peak memory rise in bytes)."""
    if impl == "agora":
        from runtime.scenario import parse
        from runtime.world import World

        small = World(parse(scaled_text(1_000), base=SCENARIO.parent), base=SCENARIO.parent)
        small.run(2)  # libraries loaded, kernels compiled: what remains is what N agents cost
        del small
        sc = parse(scaled_text(n), base=SCENARIO.parent)
        before = _rss_now()
        world = World(sc, base=SCENARIO.parent)
        agents, step = world.n_agents, None
        world.run(3)
    else:
        from benchmarks.mesa_marketplace import MesaMarketplace

        small = MesaMarketplace(1_000)
        small.step()
        del small
        before = _rss_now()
        model = MesaMarketplace(n)
        agents, step = len(model.agents), model.step
        for _ in range(3):
            model.step()
    start = time.perf_counter()
    if step is None:
        world.run(3 + ticks)
    else:
        for _ in range(ticks):
            step()
    rate = ticks / (time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return agents, rate, max(0, peak - before)


def measure(impl: str, n: int, ticks: int) -> tuple[int, float, int]:
    """Run one case in a fresh process (see :func:`_case`)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_case, impl, n, ticks).result()


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (agents, implementation, ticks/s, agent-steps/s, us per agent-step, peak memory per agent, Agora is);
    the ratio is of agent-steps/s (the peer has the ten service agents less four refactor agents)."""
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    agora_ticks = {10_000: 20, 100_000: 10, 1_000_000: 5}
    mesa_ticks = {10_000: 5, 100_000: 2}  # the peer at 10^6 would take about half an hour per run
    rows = []
    for n in sizes:
        a_n, a_rate, a_mem = measure("agora", n, 5 if quick else agora_ticks[n])
        rows.append(_row(a_n, "Agora", a_rate, a_mem, "1.0x"))
        if n in mesa_ticks:
            m_n, m_rate, m_mem = measure("mesa", n, 2 if quick else mesa_ticks[n])
            rows.append(_row(m_n, "Mesa 3, object per agent", m_rate, m_mem, f"{a_rate * a_n / (m_rate * m_n):.1f}x"))
    return rows


def _row(n: int, label: str, rate: float, mem: int, ratio: str) -> tuple[str, ...]:
    return (f"{n:,}", label, f"{rate:.2f}", f"{rate * n:,.0f}", f"{1e6 / (rate * n):.3f}", f"{mem / n:,.0f} B", ratio)
